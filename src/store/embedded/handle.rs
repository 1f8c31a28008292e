//! The open database, and its recovery from redb's latched I/O error.
//!
//! After an I/O error (a full disk, most often) redb latches: every later call on that
//! `Database` fails with "Previous I/O error occurred", reads included as soon as they
//! miss the cache, until it is closed and opened again. So the database sits behind a
//! lock that lets it be swapped: a call that meets the latch reopens it (once per
//! failure: the generation tells whether another call already has), and a read retries
//! once on the reopened database, so a read never fails because a write did. Reopening
//! is cheap even on a full disk (redb repairs a file that was not closed cleanly without
//! growing it: 0.2 s for a 136 MB file in a release build).
//!
//! Whether writes can succeed again is the writer's business (see `writer.rs`): it keeps
//! here why they fail, for every write it refuses meanwhile and for `/health`.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use crate::store::StoreError;

/// Opens the database file (again): `Database::create` on the path in esm, a faulty
/// storage backend in tests.
pub(super) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// Why a call on the database failed, kept as redb's error until the caller has seen
/// whether it latched the database.
#[derive(Debug)]
pub(super) enum Fail {
    /// A refusal or a record that cannot be read: the store's own answer.
    Store(StoreError),
    /// redb failed.
    Redb(redb::Error),
    /// The database is not open: reopening it failed, with this error.
    Closed(String),
}

impl Fail {
    /// Whether the database must be reopened before it can answer again: redb latches
    /// every error of its storage (`Io`, `Backend`), and answers `PreviousIo` after.
    pub(super) fn latched(&self) -> bool {
        matches!(
            self,
            Self::Redb(
                redb::Error::Io(_) | redb::Error::Backend(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ) | Self::Closed(_)
        )
    }

    /// The cause to report for a latched database: the I/O error itself where this call
    /// met it ("No space left on device"), not the latch that follows it.
    pub(super) fn cause(&self) -> String {
        match self {
            Self::Redb(redb::Error::Io(e)) => e.to_string(),
            Self::Redb(redb::Error::PreviousIo) => "an earlier I/O error".to_owned(),
            Self::Redb(e) => e.to_string(),
            Self::Store(e) => e.to_string(),
            Self::Closed(why) => format!("the database is not open: {why}"),
        }
    }
}

impl Fail {
    /// The store's error for it. (A method, not `From`: a second `From` into
    /// `StoreError` would leave `?` in generic code elsewhere without a type to infer.)
    pub(super) fn into_error(self) -> StoreError {
        match self {
            Fail::Store(e) => e,
            Fail::Redb(e) => StoreError::Unavailable(e.to_string()),
            Fail::Closed(why) => StoreError::Unavailable(format!("the database is not open: {why}")),
        }
    }
}

/// Every redb error type converts to a [`Fail`], so `?` works on each redb call.
macro_rules! redb_fails {
    ($($error:ty),*) => {$(
        impl From<$error> for Fail {
            fn from(e: $error) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}
redb_fails!(redb::StorageError, redb::TransactionError, redb::TableError, redb::CommitError, redb::DatabaseError);

/// The database as currently opened.
struct Slot {
    /// Bumped on every reopening, so that a call which met the latch reopens only the
    /// database it met it on.
    generation: u64,
    /// The database, or why opening it again failed.
    db: Result<Database, String>,
    /// When it was last (re)opened: a database that cannot be opened is tried again at
    /// most every [`REOPEN_INTERVAL`], however many reads meet it.
    opened_at: Instant,
}

/// The least time between two attempts to open a database that failed to open.
pub(super) const REOPEN_INTERVAL: Duration = Duration::from_millis(100);

/// The open database, reopened when it latches.
pub(super) struct Handle {
    /// Calls share it (a read lock) while they use the database; reopening takes it
    /// alone, so it never closes a database under a transaction. A std lock: held only
    /// by blocking work (the writer thread, `spawn_blocking`), never across an `.await`.
    slot: RwLock<Slot>,
    open: Opener,
    /// Why writes fail, while they do: set by the writer when a write latches the
    /// database, cleared when its probe writes again.
    cannot_write: Mutex<Option<String>>,
}

impl Handle {
    /// Opens the database.
    pub(super) fn open(open: Opener) -> Result<Self, redb::DatabaseError> {
        let db = open()?;
        Ok(Self {
            slot: RwLock::new(Slot { generation: 0, db: Ok(db), opened_at: Instant::now() }),
            open,
            cannot_write: Mutex::new(None),
        })
    }

    /// Runs `work` on the database once; a failure comes with the generation it met.
    pub(super) fn attempt<R>(&self, work: impl FnOnce(&Database) -> Result<R, Fail>) -> Result<R, (u64, Fail)> {
        let slot = self.slot.read().unwrap_or_else(|p| p.into_inner());
        match &slot.db {
            Ok(db) => work(db).map_err(|fail| (slot.generation, fail)),
            Err(why) => Err((slot.generation, Fail::Closed(why.clone()))),
        }
    }

    /// Runs a read, reopening the database and reading again once if it had latched.
    pub(super) fn read<R>(&self, work: impl Fn(&Database) -> Result<R, Fail>) -> Result<R, StoreError> {
        match self.attempt(&work) {
            Err((generation, fail)) if fail.latched() => {
                self.reopen(generation);
                self.attempt(&work).map_err(|(_, fail)| fail.into_error())
            }
            other => other.map_err(|(_, fail)| fail.into_error()),
        }
    }

    /// Closes the database met at `generation` and opens it again, unless another call
    /// already has. Returns whether the database is open now.
    pub(super) fn reopen(&self, generation: u64) -> bool {
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        let failed_lately = slot.db.is_err() && slot.opened_at.elapsed() < REOPEN_INTERVAL;
        if slot.generation == generation && !failed_lately {
            slot.generation += 1;
            slot.opened_at = Instant::now();
            // Closing a latched database fails (it cannot flush); that is expected, and
            // the file is released either way.
            if let Ok(db) = std::mem::replace(&mut slot.db, Err("it is being reopened".into())) {
                let _ = db.close();
            }
            slot.db = (self.open)().map_err(|e| e.to_string());
            match &slot.db {
                Ok(_) => tracing::info!("reopened the store after an I/O error"),
                Err(e) => tracing::warn!(error = %e, "cannot reopen the store after an I/O error"),
            }
        }
        slot.db.is_ok()
    }

    /// Why writes fail, while they do.
    pub(super) fn cannot_write(&self) -> Option<String> {
        self.cannot_write.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records why writes fail (`None`: they succeed again); logs the changes.
    pub(super) fn set_cannot_write(&self, why: Option<String>) {
        let mut current = self.cannot_write.lock().unwrap_or_else(|p| p.into_inner());
        match (&*current, &why) {
            (None, Some(why)) => tracing::error!(error = %why, "the store cannot write; writes get 503 until it can"),
            (Some(_), None) => tracing::info!("the store can write again"),
            _ => {}
        }
        *current = why;
    }
}
