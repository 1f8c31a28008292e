//! One subscriber's view of the log: what it missed, then what happens (see the module
//! docs of `events`).

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::{Delivered, EventLog};
use crate::domain::event::{Event, EventKind};
use crate::store::{Collection, Query, index};

/// How many events a subscriber catching up reads from the store at a time: all it
/// holds of the backlog (500 subscribers resuming from the start hold 500 such pages).
const PAGE: usize = 32;
/// The most bytes ([`Event::size`]) of a page a subscriber holds; the rest of a page
/// read is read again later.
const PAGE_BYTES: usize = 64 * 1024;

/// What a subscriber wants to see; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Events of this instance.
    pub instance_id: Option<String>,
    /// Events of this service.
    pub service_id: Option<String>,
    /// Events of this type.
    pub kind: Option<EventKind>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        let same = |wanted: &Option<String>, actual: Option<&String>| wanted.as_ref().is_none_or(|w| Some(w) == actual);
        same(&self.instance_id, event.instance_id.as_ref())
            && same(&self.service_id, event.service_id.as_ref())
            && self.kind.as_ref().is_none_or(|kind| *kind == event.kind)
    }

    /// The filter as index filters, the most selective first.
    pub(super) fn index_filters(&self) -> Vec<(String, String)> {
        let kind = self.kind.as_ref().map(|kind| kind.as_str().to_owned());
        [
            (index::INSTANCE_ID, self.instance_id.clone()),
            (index::SERVICE_ID, self.service_id.clone()),
            (index::TYPE, kind),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some((field.to_owned(), value?)))
        .collect()
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Item {
    /// An event.
    Event(Arc<Delivered>),
    /// Events `from..=to` are no longer kept (or were never written): the subscriber
    /// asked for more than the log holds.
    Gap {
        /// The first id missed.
        from: u64,
        /// The last id missed.
        to: u64,
    },
    /// The stream has lasted [`Limits::stream_lifetime`](super::Limits::stream_lifetime)
    /// and ends here; the client resumes after `after` (the last id passed on or over).
    /// Always the last item.
    Resume {
        /// Where to resume.
        after: u64,
    },
}

struct State {
    log: Arc<EventLog>,
    receiver: broadcast::Receiver<Arc<Delivered>>,
    filter: Filter,
    /// The last id passed on (or passed over).
    cursor: u64,
    /// While catching up: read the store up to this id, then the broadcast.
    catch_up: Option<u64>,
    /// Whether to check, before catching up, that the log still holds what comes next.
    check_gap: bool,
    /// At most one page of stored events, then what the broadcast gave.
    ready: VecDeque<Item>,
    /// When the stream ends ([`Item::Resume`]); counted from its start, so keep-alives
    /// and events alike leave it where it is.
    ends: Instant,
    ended: bool,
    _counted: Counted,
}

/// Counts a subscriber for as long as it lives.
struct Counted(Arc<EventLog>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.hub.unsubscribed();
    }
}

impl EventLog {
    /// The events matching `filter`: those after id `after` first (from the store, with
    /// a [`Item::Gap`] for what it no longer holds), then each new one as it happens,
    /// until [`Item::Resume`] after the stream's lifetime. Without `after`, only new
    /// ones. The stream ends early if the store fails while catching up; a client
    /// resumes from the last id it saw.
    ///
    /// `None` when [`Limits::subscribers`](super::Limits::subscribers) streams are open
    /// already.
    pub fn subscribe(
        self: &Arc<Self>,
        filter: Filter,
        after: Option<u64>,
    ) -> Option<impl Stream<Item = Item> + Send + use<>> {
        if !self.hub.try_subscribed(self.limits.subscribers) {
            return None;
        }
        let counted = Counted(Arc::clone(self));
        // Subscribe before reading where the tail is, so nothing falls between the two.
        let receiver = self.hub.subscribe();
        let delivered = self.hub.delivered();
        let state = State {
            log: Arc::clone(self),
            receiver,
            filter,
            cursor: after.unwrap_or(delivered),
            catch_up: after.map(|_| delivered),
            check_gap: after.is_some(),
            ready: VecDeque::new(),
            ends: Instant::now() + self.limits.stream_lifetime,
            ended: false,
            _counted: counted,
        };
        Some(futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        }))
    }
}

impl State {
    async fn next(&mut self) -> Option<Item> {
        if self.ended {
            return None;
        }
        // Checked first: a subscriber that always has something to read ends too.
        if Instant::now() < self.ends
            && let Ok(item) = tokio::time::timeout_at(self.ends, self.next_item()).await
        {
            return item;
        }
        // What is ready was passed over, not on: the client resumes before it.
        match self.ready.front() {
            Some(Item::Event(delivered)) => self.cursor = delivered.event.id - 1,
            Some(Item::Gap { from, .. }) => self.cursor = from - 1,
            Some(Item::Resume { .. }) | None => {}
        }
        self.ready.clear();
        self.ended = true;
        Some(Item::Resume { after: self.cursor })
    }

    async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if let Some(upto) = self.catch_up {
                if self.cursor >= upto {
                    self.catch_up = None;
                } else if self.check_gap {
                    self.check_gap = false;
                    let oldest = self.log.oldest().await.ok()?.unwrap_or(upto.saturating_add(1));
                    if self.cursor.saturating_add(1) < oldest {
                        let to = oldest - 1;
                        self.ready.push_back(Item::Gap { from: self.cursor + 1, to });
                        self.cursor = to;
                    }
                } else {
                    self.read_stored(upto).await?;
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(delivered) => {
                    if delivered.event.id <= self.cursor {
                        continue;
                    }
                    self.cursor = delivered.event.id;
                    if delivered.matches(&self.filter) {
                        return Some(Item::Event(delivered));
                    }
                }
                // Too slow for the broadcast: read what it missed from the store.
                Err(RecvError::Lagged(_)) => {
                    self.catch_up = Some(self.log.hub.delivered());
                    self.check_gap = true;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Reads the next stored events up to `upto` into `ready`: at most [`PAGE`] of
    /// them and [`PAGE_BYTES`]; `None` if the store failed. The cursor moves past what
    /// was read and queued, so `ready` is empty before the next read.
    async fn read_stored(&mut self, upto: u64) -> Option<()> {
        let page = self.stored_page().await?;
        let mut held = 0;
        for delivered in page.events.iter() {
            let event = &delivered.event;
            if event.id > upto {
                self.cursor = upto;
                return Some(());
            }
            if self.filter.matches(event) {
                let size = event.size();
                if !self.ready.is_empty() && held + size > PAGE_BYTES {
                    // The rest is read again next time.
                    return Some(());
                }
                held += size;
                self.ready.push_back(Item::Event(Arc::clone(delivered)));
            }
            self.cursor = event.id;
        }
        self.cursor = page.covers.min(upto).max(self.cursor);
        Some(())
    }

    /// The page after the cursor: one a subscriber read lately (unfiltered pages are
    /// shared), or read from the store now.
    async fn stored_page(&self) -> Option<Arc<Page>> {
        let shared = self.filter == Filter::default();
        let recent = &self.log.recent_pages;
        if let Some(page) = recent.get(self.cursor).filter(|_| shared) {
            return Some(page);
        }
        let _permit = self.log.catch_up_reads.acquire().await.ok()?;
        // Another subscriber may have read it while this one waited.
        if let Some(page) = recent.get(self.cursor).filter(|_| shared) {
            return Some(page);
        }
        let delivered = self.log.hub.delivered();
        let query = Query { filters: self.filter.index_filters(), after: Some(Event::key(self.cursor)), limit: PAGE };
        let read = match self.log.records.page_values::<Event>(Collection::Events, &query).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event log for a subscriber");
                return None;
            }
        };
        // A full read covers up to its last event; a short one up to the end of the log.
        let end = if read.len() == PAGE { read.last().map_or(delivered, |e| e.id) } else { u64::MAX };
        let covers = end.min(delivered);
        let events = read.into_iter().filter(|e| e.id <= covers).map(|e| Arc::new(Delivered::new(e))).collect();
        let page = Arc::new(Page { after: self.cursor, covers, events });
        if shared {
            recent.put(Arc::clone(&page));
        }
        Some(page)
    }
}

/// A page of the log as subscribers catching up read it.
pub(super) struct Page {
    /// The id it follows.
    after: u64,
    /// It holds every event in `after + 1..=covers` that the log held when read (the
    /// tail had delivered up to `covers`, so no event still committing is missing).
    covers: u64,
    events: Vec<Arc<Delivered>>,
}

/// The unfiltered pages subscribers read lately, by the id they follow: a crowd
/// resuming from the same place reads and serialises each page once, and shares it.
/// A std mutex: held for a scan of [`RECENT_PAGES`] entries, never across an `.await`.
#[derive(Default)]
pub(super) struct RecentPages(std::sync::Mutex<VecDeque<Arc<Page>>>);

/// How many pages [`RecentPages`] keeps: at most this many times [`PAGE`] events.
const RECENT_PAGES: usize = 64;

impl RecentPages {
    fn get(&self, after: u64) -> Option<Arc<Page>> {
        self.0.lock().ok()?.iter().find(|page| page.after == after).cloned()
    }

    fn put(&self, page: Arc<Page>) {
        if let Ok(mut pages) = self.0.lock() {
            if pages.len() >= RECENT_PAGES {
                pages.pop_front();
            }
            pages.push_back(page);
        }
    }
}
