//! Many clients resuming the event log from its start at once, against the real binary
//! under an address-space cap: each reads the backlog a page at a time and holds no
//! more than that page, so esm's memory grows by a bounded amount however many resume
//! (the figure: 500 resumes from `Last-Event-ID: 0` took RSS from 89 to 483 MB).
//! The backlog is written to the store before esm starts (generated here).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esm::domain::event::{Event, EventKind, Step};
use esm::domain::operation::OperationKind;
use esm::store::embedded::EmbeddedStore;
use esm::store::{Collection, Records, Store, index};

use crate::support::{self, Esm, StoreSetup, temp_dir};

/// Events in the backlog.
const BACKLOG: u64 = 2_000;
/// Clients resuming at once.
const SUBSCRIBERS: usize = 500;
/// What 500 resumes may add to esm's resident memory.
const MAX_GROWTH: u64 = 96 << 20;

/// An event as the broker writes them: an instance's operation with ids and a reason.
fn event(id: u64) -> Event {
    let instance = format!("6f1d0a1e-7b2c-4f0e-9a55-{id:012}");
    let mut event = Event::new(EventKind::Operation(OperationKind::Provision, Step::Failed))
        .on_instance(&instance, "5a1c9e7e-2f64-4d7a-8c1b-3e2f1a0b9c8d", "0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b")
        .because("the deployment did not become ready within 120 s: container web exited with code 1");
    event.operation = Some(format!("op-{id}"));
    event.at = "2026-12-06T10:00:00.000Z".to_owned();
    event.id = id;
    event
}

/// Writes events `1..=count` to the embedded store in `dir`.
async fn seed(dir: &std::path::Path, count: u64) {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir, 8 << 20).expect("the store opens"));
    let records = Records::new(Arc::clone(&store));
    let ids: Vec<u64> = (1..=count).collect();
    for chunk in ids.chunks(256) {
        let inserts = chunk.iter().map(|&id| {
            let (records, event) = (records.clone(), event(id));
            async move {
                let keys = index::event_keys(&event);
                records.insert_value(Collection::Events, &Event::key(id), &event, &keys).await.expect("insert");
            }
        });
        futures_util::future::join_all(inserts).await;
    }
    store.close().await;
}

/// CPU time (user + system) of process `pid`, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) start after its ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// Opens a stream resuming after 0 and reads it until `last` has come; false if the
/// stream failed or ended first.
async fn resume_until(client: &reqwest::Client, api: &str, last: u64) -> bool {
    let response = client
        .get(format!("{api}/v2/et/events"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "0")
        .send()
        .await;
    let Ok(mut response) = response.and_then(reqwest::Response::error_for_status) else { return false };
    let marker = format!("id: {last}\n");
    // The end of what was read, so the marker is found across chunk boundaries.
    let mut tail = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        tail.push_str(&String::from_utf8_lossy(&chunk));
        if tail.contains(&marker) {
            return true;
        }
        let keep = tail.len().saturating_sub(marker.len());
        let keep = (keep..tail.len()).find(|&i| tail.is_char_boundary(i)).unwrap_or(tail.len());
        tail.drain(..keep);
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_resuming_a_large_backlog_at_once_stay_under_a_memory_bound() {
    let _machine = support::machine::heavy().await;
    // Our own side holds one connection per subscriber.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = temp_dir("esm-events-resume");
    seed(dir.path(), BACKLOG).await;
    let subscribers = SUBSCRIBERS.to_string();
    let mut esm =
        Esm::start_capped(&StoreSetup::Embedded(dir.path().to_path_buf()), &[("ESM_MAX_SUBSCRIBERS", &subscribers)])
            .await;
    let client = support::http_builder().timeout(Duration::from_secs(300)).build().expect("a client");
    // One resume first, so what every stream shares (the tail, the store's cache) is
    // warm before the baseline.
    assert!(resume_until(&client, &esm.api, BACKLOG).await, "one resume reads the whole backlog");
    let (before, cpu_before, started) = (esm.rss_bytes(), cpu_seconds(esm.pid()), Instant::now());
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (peak, pid) = (Arc::clone(&peak), esm.pid());
        tokio::spawn(async move {
            // A sample every 20 ms: the peak, not a state to wait for.
            let mut every = tokio::time::interval(Duration::from_millis(20));
            loop {
                every.tick().await;
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .map_or(0, |kb| kb * 1024);
                peak.fetch_max(rss, Ordering::Relaxed);
            }
        })
    };
    let resumes = (0..SUBSCRIBERS).map(|_| resume_until(&client, &esm.api, BACKLOG));
    let done = futures_util::future::join_all(resumes).await;
    sampler.abort();
    let (peak, cpu) = (peak.load(Ordering::Relaxed), cpu_seconds(esm.pid()) - cpu_before);
    eprintln!(
        "{SUBSCRIBERS} resumes of {BACKLOG} events: RSS {} -> peak {} MB, {cpu:.1} CPU-seconds, {:.1} s",
        before >> 20,
        peak >> 20,
        started.elapsed().as_secs_f64()
    );
    assert!(esm.alive(), "esm survived");
    assert_eq!(done.iter().filter(|&&ok| ok).count(), SUBSCRIBERS, "every resume read the whole backlog");
    assert!(peak - before < MAX_GROWTH, "RSS grew by {} MB", (peak - before) >> 20);
}
