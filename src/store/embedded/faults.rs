//! The embedded store on a disk that fills up or fails a read: a redb storage backend
//! over the real file whose writes to blocks never written before fail with "No space
//! left on device" while the disk is full, as a full file system fails them (growing
//! the file leaves a hole; overwriting blocks it holds still succeeds), and whose next
//! read can be made to fail with an I/O error.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::handle::Fail;
use super::{EmbeddedStore, FILE_NAME};
use crate::store::{Collection, Store, StoreError};

/// What the tests switch on and off; shared by every backend the store reopens.
#[derive(Debug, Default)]
struct Faults {
    /// The disk is full: writes to blocks not in `written` fail.
    full: AtomicBool,
    /// The file's blocks that have been written (that the file system holds).
    written: Mutex<HashSet<u64>>,
    /// The next read fails (an I/O error).
    fail_read: AtomicBool,
    /// Opening the file fails.
    fail_open: AtomicBool,
    /// How many times the store tried to open the file, failed attempts included.
    open_attempts: AtomicU64,
    /// How many backends were opened: the first open, then each reopening.
    opened: AtomicU64,
}

#[derive(Debug)]
struct FaultyFile {
    file: File,
    faults: Arc<Faults>,
}

/// A file system block.
const BLOCK: u64 = 4096;

fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(28)
}

impl redb::StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        if self.faults.fail_read.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected read error"));
        }
        self.file.read_exact_at(out, offset)
    }

    /// Growing a file only sets its length (the new part is a hole), as on a real file
    /// system: what fails on a full disk is writing into it.
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let blocks = offset / BLOCK..(offset + data.len() as u64).div_ceil(BLOCK);
        let mut written = self.faults.written.lock().expect("faults");
        if self.faults.full.load(Ordering::SeqCst) && blocks.clone().any(|block| !written.contains(&block)) {
            return Err(no_space());
        }
        self.file.write_all_at(data, offset)?;
        written.extend(blocks);
        Ok(())
    }
}

impl Faults {
    fn fill(&self) {
        self.full.store(true, Ordering::SeqCst);
    }

    fn free(&self) {
        self.full.store(false, Ordering::SeqCst);
    }
}

/// A store on a [`FaultyFile`] with a small cache, so reads go to the file.
fn store(dir: &Path, faults: &Arc<Faults>) -> EmbeddedStore {
    let path = dir.join(FILE_NAME);
    let (file_path, faults) = (path.clone(), faults.clone());
    EmbeddedStore::start(
        dir,
        path,
        Box::new(move || {
            faults.open_attempts.fetch_add(1, Ordering::SeqCst);
            if faults.fail_open.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected open error").into());
            }
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&file_path)?;
            faults.opened.fetch_add(1, Ordering::SeqCst);
            redb::Builder::new()
                .set_cache_size(64 << 10)
                .create_with_backend(FaultyFile { file, faults: faults.clone() })
        }),
    )
    .expect("opens")
}

fn record(n: usize) -> serde_json::Value {
    json!({"n": n, "padding": "x".repeat(2000)})
}

/// Writes the 200 records the tests read back.
async fn seed(store: &EmbeddedStore) {
    for n in 0..200 {
        store.insert(Collection::Instances, &format!("i-{n}"), record(n)).await.expect("insert");
    }
}

/// A store over a seeded database in a new temp dir, opened anew (its cache is cold,
/// so a read goes to the file), with the faults it reads through.
async fn seeded_cold() -> (tempfile::TempDir, Arc<Faults>, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = Arc::new(Faults::default());
    seed(&store(dir.path(), &faults)).await;
    let store = store(dir.path(), &faults);
    (dir, faults, store)
}

/// Writes records until one fails (the disk is full); returns the error.
async fn write_until_full(store: &EmbeddedStore) -> StoreError {
    for n in 0..1000 {
        if let Err(e) = store.upsert(Collection::Registry, &format!("more-{n}"), record(n)).await {
            return e;
        }
    }
    panic!("a thousand writes went through on a full disk");
}

/// Writes until one succeeds, within a deadline; returns how long that took.
async fn write_until_it_succeeds(store: &EmbeddedStore) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    loop {
        match store.upsert(Collection::Registry, "after", record(0)).await {
            Ok(_) => return started.elapsed(),
            Err(e) => assert!(Instant::now() < deadline, "writes did not resume: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_reads_and_writes_again_once_freed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = Arc::new(Faults::default());
    let store = store(dir.path(), &faults);
    seed(&store).await;
    assert_eq!(store.health().await, Ok("the store reads and writes".to_owned()));

    faults.fill();
    let refused = write_until_full(&store).await;
    assert!(
        matches!(&refused, StoreError::Unavailable(m) if m.contains("the store cannot write") && m.contains("No space left on device")),
        "{refused:?}"
    );
    let health = store.health().await.expect_err("unhealthy while the disk is full");
    assert!(health.to_string().contains("No space left on device"), "{health}");
    let again = store.insert(Collection::Instances, "refused", record(0)).await.expect_err("still full");
    assert!(again.to_string().contains("the store cannot write"), "{again}");
    // Every record is still read, from the file (the cache is small): the database was
    // reopened after the failed commit, so no read meets the latch.
    for n in 0..200 {
        let doc = store.get(Collection::Instances, &format!("i-{n}")).await.expect("read").expect("kept");
        assert_eq!(doc.body["n"], n);
    }
    assert_eq!(store.list(Collection::Instances).await.expect("list").len(), 200);

    faults.free();
    let took = write_until_it_succeeds(&store).await;
    assert!(took < super::writer::LAST_RETRY * 2, "writes resumed after {took:?}");
    assert_eq!(store.health().await, Ok("the store reads and writes".to_owned()));
    assert!(
        store.get(Collection::Instances, "refused").await.expect("read").is_none(),
        "a refused write did not happen"
    );
}

#[tokio::test]
async fn a_read_that_meets_an_io_error_is_answered_from_the_reopened_database() {
    let (_dir, faults, store) = seeded_cold().await;
    let opened = faults.opened.load(Ordering::SeqCst);
    faults.fail_read.store(true, Ordering::SeqCst);
    let doc = store.get(Collection::Instances, "i-150").await.expect("read").expect("kept");
    assert_eq!(doc.body["n"], 150);
    assert!(!faults.fail_read.load(Ordering::SeqCst), "the read went to the file");
    assert_eq!(faults.opened.load(Ordering::SeqCst), opened + 1, "reopened once");
    store.insert(Collection::Instances, "j", record(2)).await.expect("a read error does not stop writes");
}

#[tokio::test]
async fn a_database_that_cannot_be_reopened_is_tried_again_not_on_every_read() {
    let (_dir, faults, store) = seeded_cold().await;
    let opened = faults.opened.load(Ordering::SeqCst);
    faults.fail_open.store(true, Ordering::SeqCst);
    faults.fail_read.store(true, Ordering::SeqCst);
    let (attempts, started) = (faults.open_attempts.load(Ordering::SeqCst), Instant::now());
    let err = store.get(Collection::Instances, "i-150").await.expect_err("cannot reopen");
    assert!(err.to_string().contains("injected open error"), "{err}");
    for _ in 0..20 {
        assert!(store.get(Collection::Instances, "i-150").await.is_err());
    }
    // At most one attempt per interval, not one per read.
    let tried = faults.open_attempts.load(Ordering::SeqCst) - attempts;
    let intervals = started.elapsed().as_millis() / super::handle::REOPEN_INTERVAL.as_millis() + 1;
    assert!(u128::from(tried) <= intervals, "{tried} attempts in {intervals} intervals");
    assert!(store.health().await.is_err(), "not healthy while the database is not open");
    faults.fail_open.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    let doc = loop {
        match store.get(Collection::Instances, "i-150").await {
            Ok(doc) => break doc.expect("kept"),
            Err(e) => assert!(Instant::now() < deadline, "never reopened: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(doc.body["n"], 150);
    assert_eq!(faults.opened.load(Ordering::SeqCst), opened + 1, "opened once more, when it could be");
    store.insert(Collection::Instances, "after", record(0)).await.expect("writes too");
}

#[tokio::test]
async fn started_on_a_full_disk_it_serves_reads_and_reports_it_cannot_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = Arc::new(Faults::default());
    {
        let store = store(dir.path(), &faults);
        store.insert(Collection::Instances, "i", record(1)).await.expect("insert");
    }
    faults.fill();
    let store = store(dir.path(), &faults);
    assert_eq!(store.get(Collection::Instances, "i").await.expect("read").expect("kept").body["n"], 1);
    let health = store.health().await.expect_err("cannot write");
    assert!(health.to_string().contains("the store cannot write"), "{health}");
    assert_eq!(
        store.get(Collection::Instances, "i").await.expect("read after the failed probe").expect("kept").body["n"],
        1
    );

    faults.free();
    write_until_it_succeeds(&store).await;
    assert!(store.health().await.is_ok());
}

#[test]
fn only_storage_errors_latch_the_database() {
    let latched = |fail: Fail| fail.latched();
    assert!(latched(Fail::Redb(redb::Error::Io(no_space()))));
    assert!(latched(Fail::Redb(redb::Error::PreviousIo)));
    assert!(latched(Fail::Redb(redb::Error::DatabaseClosed)));
    assert!(latched(Fail::Closed("cannot open".into())));
    assert!(!latched(Fail::Redb(redb::Error::TableDoesNotExist("t".into()))));
    assert!(!latched(Fail::Store(StoreError::Conflict("c".into()))));
    assert_eq!(Fail::Redb(redb::Error::Io(no_space())).cause(), no_space().to_string());
}
