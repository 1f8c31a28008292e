//! The load: workers sending provision, deprovision, bind and unbind over a small pool
//! of ids, so requests on one id race, for a fixed time. A worker polls each operation
//! it is answered 202 for until it ends, as a platform does. Every request is kept, with
//! when it was sent and answered, for the checks in `verify.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use super::nginx::UPSTREAM_HEADER;
use crate::support::VERSION;
use crate::support::wait::within;

/// Unix time in milliseconds: the dummy's call log uses the same clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether requests say `accepts_incomplete=true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// Always (the plan runs only asynchronously).
    Always,
    /// Half of them, at random: a synchronous plan then answers a request sent again
    /// while its operation runs 202 or 422 `ConcurrencyError`, both paths.
    Sometimes,
}

/// What to send, where, for how long.
#[derive(Debug, Clone)]
pub struct Load {
    /// The API base URL (nginx, or one esm).
    pub url: String,
    /// Concurrent workers.
    pub workers: usize,
    /// Instance ids `i0`, `i1`, ...
    pub instances: usize,
    /// Binding ids per instance: `i0-b0`, `i0-b1`, ...
    pub bindings: usize,
    /// No request is started after this (Unix ms).
    pub until: u64,
    /// Whether requests accept asynchronous operations.
    pub accepts: Accepts,
    /// How long a worker polls one operation before giving up on it.
    pub poll_limit: Duration,
    /// Requests answered so far (by any worker): what the scenario times its kill and
    /// restart by, so they fall amid the traffic however fast this machine is.
    pub answered: Arc<AtomicUsize>,
}

/// The four operations the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Provision,
    Deprovision,
    Bind,
    Unbind,
}

impl Action {
    /// As the dummy's call log names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Provision => "provision",
            Action::Deprovision => "deprovision",
            Action::Bind => "bind",
            Action::Unbind => "unbind",
        }
    }

    /// Whether it creates (rather than removes) its record.
    pub fn creates(self) -> bool {
        matches!(self, Action::Provision | Action::Bind)
    }
}

/// How polling an operation answered 202 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollEnd {
    /// `last_operation` said `succeeded`.
    Succeeded,
    /// `last_operation` said `failed`.
    Failed,
    /// The operation is no longer there to ask about (400, 404 or 410): its record was
    /// removed or replaced since, so it had ended.
    Superseded(u16),
    /// Still in progress when the worker gave up (`Load::poll_limit`).
    TimedOut,
}

/// One provision, deprovision, bind or unbind sent, and its answer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub action: Action,
    pub instance: String,
    /// The binding id, for bind and unbind.
    pub binding: Option<String>,
    /// Sent with `accepts_incomplete=true`.
    pub accepts_incomplete: bool,
    /// Unix ms before sending and after the answer.
    pub start: u64,
    pub end: u64,
    /// The HTTP status; 0 when no answer came (connection failed).
    pub status: u16,
    /// How many replicas nginx passed the request to (1 without nginx).
    pub upstreams: usize,
    /// The `operation` of a 202.
    pub operation: Option<String>,
    /// For a 202: how polling ended, and when (Unix ms).
    pub polled: Option<(PollEnd, u64)>,
}

impl Sent {
    /// The id the operation acts on: the binding for bind and unbind.
    pub fn target(&self) -> &str {
        self.binding.as_deref().unwrap_or(&self.instance)
    }
}

/// Everything the load sent.
#[derive(Debug, Default)]
pub struct Traffic {
    pub sent: Vec<Sent>,
    /// `last_operation` polls: (status, answered at, Unix ms).
    pub polls: Vec<(u16, u64)>,
}

/// Runs the load until `load.until`, then waits for the workers to finish polling.
pub async fn run(load: &Load) -> Traffic {
    let http = crate::support::http_builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(load.workers)
        .build()
        .expect("an HTTP client");
    let workers: Vec<_> = (0..load.workers)
        .map(|n| {
            let (load, http) = (load.clone(), http.clone());
            tokio::spawn(
                async move { Worker { load, http, rng: Rng::new(n as u64), seen: BTreeMap::new() }.run().await },
            )
        })
        .collect();
    let mut traffic = Traffic::default();
    for worker in workers {
        let Traffic { sent, polls } = worker.await.expect("a worker panicked");
        traffic.sent.extend(sent);
        traffic.polls.extend(polls);
    }
    traffic.sent.sort_by_key(|s| s.start);
    traffic
}

struct Worker {
    load: Load,
    http: reqwest::Client,
    rng: Rng,
    /// Whether each id existed when this worker last heard.
    seen: BTreeMap<String, bool>,
}

impl Worker {
    async fn run(mut self) -> Traffic {
        let mut traffic = Traffic::default();
        while now_ms() < self.load.until {
            let instance = format!("i{}", self.rng.below(self.load.instances));
            let binding = format!("{instance}-b{}", self.rng.below(self.load.bindings));
            let action = self.next_action(&instance, &binding);
            let binding = matches!(action, Action::Bind | Action::Unbind).then_some(binding);
            let accepts_incomplete = self.load.accepts == Accepts::Always || self.rng.below(2) == 0;
            let mut sent = self.send(action, instance, binding, accepts_incomplete).await;
            self.load.answered.fetch_add(1, Ordering::SeqCst);
            if sent.status == 202 {
                sent.polled = Some(self.poll(&sent, &mut traffic.polls).await);
            }
            self.learn(&sent);
            traffic.sent.push(sent);
        }
        traffic
    }

    /// Mostly the next step of the id's life as this worker last saw it (provision,
    /// bind, unbind or deprovision), as a platform would send; one time in five any
    /// step. Other workers act on the same ids, so what it saw is often stale: the
    /// requests race.
    fn next_action(&mut self, instance: &str, binding: &str) -> Action {
        const ALL: [Action; 4] = [Action::Provision, Action::Deprovision, Action::Bind, Action::Unbind];
        if self.rng.below(5) == 0 {
            return ALL[self.rng.below(4)];
        }
        match (self.seen.get(instance), self.seen.get(binding)) {
            (None | Some(false), _) => Action::Provision,
            _ if self.rng.below(3) == 0 => Action::Deprovision,
            (_, Some(true)) => Action::Unbind,
            _ => Action::Bind,
        }
    }

    /// What an answer tells about its ids.
    fn learn(&mut self, sent: &Sent) {
        let done = match sent.polled {
            Some((PollEnd::Succeeded, _)) => true,
            Some(_) => return,
            None => matches!(sent.status, 200 | 201 | 410),
        };
        let exists = match (sent.action, sent.status) {
            (Action::Bind, 404) => {
                self.seen.insert(sent.instance.clone(), false);
                return;
            }
            _ if !done => return,
            (Action::Deprovision | Action::Unbind, _) | (_, 410) => false,
            (Action::Provision | Action::Bind, _) => true,
        };
        if sent.action == Action::Deprovision {
            let bindings = format!("{}-b", sent.instance);
            self.seen.retain(|id, _| !id.starts_with(&bindings));
        }
        self.seen.insert(sent.target().to_owned(), exists);
    }

    async fn send(&self, action: Action, instance: String, binding: Option<String>, accepts: bool) -> Sent {
        let mut path = format!("/v2/service_instances/{instance}");
        if let Some(binding) = &binding {
            path.push_str(&format!("/service_bindings/{binding}"));
        }
        let (method, body) = match action {
            Action::Provision => (
                Method::PUT,
                Some(json!({"service_id": "svc", "plan_id": "plan", "organization_guid": "o", "space_guid": "s"})),
            ),
            Action::Bind => (Method::PUT, Some(json!({"service_id": "svc", "plan_id": "plan"}))),
            Action::Deprovision | Action::Unbind => {
                path.push_str("?service_id=svc&plan_id=plan");
                (Method::DELETE, None)
            }
        };
        if accepts {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str("accepts_incomplete=true");
        }
        let start = now_ms();
        let (status, answer, upstreams) = self.request(method, &path, body.as_ref()).await;
        let operation = (status == 202).then(|| answer["operation"].as_str().map(str::to_owned)).flatten();
        Sent {
            action,
            instance,
            binding,
            accepts_incomplete: accepts,
            start,
            end: now_ms(),
            status,
            upstreams,
            operation,
            polled: None,
        }
    }

    /// Polls the operation of a 202 until it ends, as a platform would.
    async fn poll(&self, sent: &Sent, polls: &mut Vec<(u16, u64)>) -> (PollEnd, u64) {
        let Some(op) = &sent.operation else {
            return (PollEnd::Superseded(202), sent.end);
        };
        let mut path = format!("/v2/service_instances/{}", sent.instance);
        if let Some(binding) = &sent.binding {
            path.push_str(&format!("/service_bindings/{binding}"));
        }
        path.push_str(&format!("/last_operation?operation={op}"));
        let deadline = sent.end + u64::try_from(self.load.poll_limit.as_millis()).unwrap_or(u64::MAX);
        // A std mutex: locked only to push, never across an `.await`.
        let polls = std::sync::Mutex::new(polls);
        let ended = within(Duration::from_millis(deadline.saturating_sub(now_ms())), || async {
            let (status, answer, _) = self.request(Method::GET, &path, None).await;
            let at = now_ms();
            polls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((status, at));
            match (status, answer["state"].as_str()) {
                (200, Some("succeeded")) => Some((PollEnd::Succeeded, at)),
                (200, Some("failed")) => Some((PollEnd::Failed, at)),
                (400 | 404 | 410, _) => Some((PollEnd::Superseded(status), at)),
                // In progress, or no answer (a replica going away): ask again.
                _ => None,
            }
        })
        .await;
        ended.unwrap_or_else(|| (PollEnd::TimedOut, now_ms()))
    }

    /// `(status, JSON body, replicas tried)`; status 0 when no answer came.
    async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value, usize) {
        let mut req =
            self.http.request(method, format!("{}{path}", self.load.url)).header("X-Broker-API-Version", VERSION);
        if let Some(body) = body {
            req = req.json(body);
        }
        let Ok(response) = req.send().await else {
            return (0, Value::Null, 1);
        };
        let status = response.status().as_u16();
        let upstreams = response
            .headers()
            .get(UPSTREAM_HEADER)
            .and_then(|v| v.to_str().ok())
            .map_or(1, |tried| tried.split(',').count());
        (status, response.json().await.unwrap_or(Value::Null), upstreams)
    }
}

/// Answers by status, per kind of request: for the figures.
pub fn statuses<'a>(statuses: impl Iterator<Item = u16> + 'a) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// splitmix64: a worker's own random sequence, the same on every run (seeded by the
/// worker's number), with no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        usize::try_from(z % n as u64).unwrap_or(0)
    }
}
