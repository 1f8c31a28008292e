//! Prometheus metrics, served on the operator port at `GET /metrics`.
//!
//! One [`Metrics`] value owns every metric family, registered once when it is made;
//! `app.rs` makes it and hands clones (an `Arc` inside) to what records into it: the
//! API port's request layer ([`http`]), the broker (operations, reconciliation), and
//! the store and backend layers ([`store_calls`], [`backend_calls`]). No
//! global registry: two esm servers in one test process keep separate counts.
//!
//! Every label takes its values from a bounded set: route templates (never raw
//! paths), known methods, status codes, operation kinds, store calls, backend names,
//! and the catalog's service and plan ids. Nothing a client puts in a URL becomes a
//! label value, and no label value is longer than an id may be (`bounded_label`). The
//! pool series of a plan go when its pool goes.
//!
//! The exposition is OpenMetrics text ([`CONTENT_TYPE`]), which is what the
//! `prometheus-client` crate writes and what Prometheus asks for first.
//!
//! - [`http`]: the request layer of the API port.
//! - [`census`]: the instance counts, read from the store's index at most every few
//!   seconds.
//! - `process`: the process families (CPU, memory, descriptors, start time) and
//!   `esm_build_info`, read at each scrape.

pub mod backend_calls;
pub mod census;
pub mod engines;
pub mod http;
mod process;
pub mod store_calls;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::domain::bounded::MAX_ID_BYTES;
use crate::domain::operation::OperationKind;
use crate::store::{Store, StoreError};
use census::Census;
use http::Route;

/// The `Content-Type` of `GET /metrics`: OpenMetrics 1.0 text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram family whose histograms all have the same buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latency buckets, seconds: from a request served from memory to a slow
/// synchronous provision.
fn http_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

/// Operation duration buckets, seconds: a dummy deployment takes milliseconds, a
/// Docker one seconds to minutes, and a plan may allow hours.
fn operation_histogram() -> Histogram {
    Histogram::new([0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])
}

/// Store call buckets, seconds: a memory lookup is microseconds, an fsync'd commit a
/// few milliseconds, a MongoDB outage the driver's 3 s selection timeout.
fn store_histogram() -> Histogram {
    Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
}

/// A label value from the catalog or a record (a service or plan id), at most
/// [`MAX_ID_BYTES`](crate::domain::bounded::MAX_ID_BYTES). The wire layer refuses longer
/// ids, but a record stored before it did may hold one: such a value is cut at a
/// character boundary and ends in `~` and a digest of the whole, so two long ids stay
/// two series and a scrape stays small.
pub(crate) fn bounded_label(value: &str) -> String {
    const MAX: usize = crate::domain::bounded::MAX_ID_BYTES;
    if value.len() <= MAX {
        return value.to_owned();
    }
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let digest =
        value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let suffix = format!("~{digest:016x}");
    let mut cut = MAX - suffix.len();
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &value[..cut])
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreCallLabels {
    store: &'static str,
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    store: &'static str,
    call: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendCallLabels {
    backend: &'static str,
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlanLabels {
    plan_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    plan_id: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

/// `metric`, registered in `registry` as `name` with `help` (and `unit`).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, metric: M) -> M {
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

/// Makes and registers each metric, a row each: `field = metric, unit, "name", "help";`.
/// The exposition lists them in the rows' order.
macro_rules! register {
    ($registry:ident; $( $field:ident = $metric:expr, $unit:expr, $name:literal, $help:literal; )*) => {
        $( let $field = registered(&mut $registry, $name, $help, $unit, $metric); )*
    };
}

/// Every metric family of esm. Cheap to clone: the families are shared.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

struct Families {
    /// What `GET /metrics` encodes; immutable once built.
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Histograms<RouteLabels>,
    operations: Family<OperationLabels, Counter>,
    operation_duration: Histograms<KindLabels>,
    store_duration: Histograms<StoreCallLabels>,
    store_errors: Family<StoreErrorLabels, Counter>,
    backend_errors: Family<BackendCallLabels, Counter>,
    reconcile_removals: Family<BackendLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    events_stored: Gauge,
    sse_subscribers: Gauge,
    pool_hits: Family<PlanLabels, Counter>,
    pool_misses: Family<PlanLabels, Counter>,
    pool_refill_duration: Histograms<PlanLabels>,
    pool_members: Family<MemberLabels, Gauge>,
    /// The plans that have pool series, so that those of a pool that is gone can be
    /// removed (a family cannot list its label sets). Held while a pool series is
    /// created or removed, so none exists without its plan here. A std mutex: never
    /// held across an `.await`.
    pool_plans: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The instance counts, encoded from its last snapshot.
    census: Arc<Census>,
    /// Each engine as the last scrape read it.
    engines: Arc<engines::Engines>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let census = Arc::new(Census::default());
        registry.register_collector(Box::new(census.clone()));
        let engines = Arc::new(engines::Engines::default());
        registry.register_collector(Box::new(engines.clone()));
        registry.register_collector(Box::new(process::Process));
        register! { registry;
            http_requests = Family::default(), None, "esm_http_requests", "Requests answered on the API port, by route template (unmatched for paths no route serves), method and status";
            http_duration = Histograms::new_with_constructor(http_histogram), Some(Unit::Seconds), "esm_http_request_duration", "Time from a request reaching the API router to its response head, by route template and method";
            operations = Family::default(), None, "esm_operations", "Runs of operations (provision, update, deprovision, bind, unbind) by how they ended: succeeded, failed, lease_lost (another replica took it over), gone (its record vanished), shutting_down (left for the next start), unstarted (the store failed before the backend call), unrecorded (the store refused the result)";
            operation_duration = Histograms::new_with_constructor(operation_histogram), Some(Unit::Seconds), "esm_operation_duration", "Time one run of an operation took in this process, from its start (or takeover) to its recorded result, by kind";
            store_duration = Histograms::new_with_constructor(store_histogram), Some(Unit::Seconds), "esm_store_call_duration", "Time each store call took, failed ones included, by store kind and call";
            store_errors = Family::default(), None, "esm_store_errors", "Store calls that returned an error, by store kind, call and error class (conflict and not_found are compare-and-set answers; unavailable and corrupt are faults)";
            backend_errors = Family::default(), None, "esm_backend_errors", "Backend calls that failed, by backend and call";
            reconcile_removals = Family::default(), None, "esm_reconcile_removals", "Instances whose resources reconciliation removed because esm does not hold them as live, by backend";
            backend_up = Family::default(), None, "esm_backend_up", "1 when the backend's engine answered its probe at this scrape, 0 when it failed or did not answer in time, by backend";
            events_stored = Gauge::default(), None, "esm_events_stored", "Events held in the event log";
            sse_subscribers = Gauge::default(), None, "esm_sse_subscribers", "Clients connected to the event stream (GET /v2/et/events)";
            pool_hits = Family::default(), None, "esm_pool_hits", "Provisions answered by handing out a warm pool member, by plan (counted by the replica that answered)";
            pool_misses = Family::default(), None, "esm_pool_misses", "Provisions of a pooled plan that found no member to take (pool empty, or other parameters) and deployed cold, by plan";
            pool_refill_duration = Histograms::new_with_constructor(operation_histogram), Some(Unit::Seconds), "esm_pool_refill_duration", "Time a new pool member took from being recorded to ready, by plan";
            pool_members = Family::default(), None, "esm_pool_members", "Unclaimed members of each pool by state (ready, deploying), as of the last scrape or status read";
        }
        Self {
            inner: Arc::new(Families {
                registry,
                http_requests,
                http_duration,
                operations,
                operation_duration,
                store_duration,
                store_errors,
                backend_errors,
                reconcile_removals,
                backend_up,
                events_stored,
                sse_subscribers,
                pool_hits,
                pool_misses,
                pool_refill_duration,
                pool_members,
                pool_plans: std::sync::Mutex::default(),
                census,
                engines,
            }),
        }
    }

    /// The exposition for a scrape: the instance counts are refreshed from `store`
    /// first if they are older than [`census::MAX_AGE`].
    pub async fn render(&self, store: &dyn Store) -> String {
        self.inner.census.refresh(store).await;
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a label.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// A request answered on the API port.
    pub(crate) fn http_request(&self, route: Route, method: &'static str, status: u16, elapsed: Duration) {
        let f = &self.inner;
        f.http_duration.get_or_create(&RouteLabels { route: route.clone(), method }).observe(elapsed.as_secs_f64());
        f.http_requests.get_or_create(&RequestLabels { route, method, status }).inc();
    }

    /// A run of an operation ended with `outcome` after `elapsed`.
    pub fn operation_finished(&self, kind: OperationKind, outcome: &'static str, elapsed: Duration) {
        let kind = kind.as_str();
        self.inner.operations.get_or_create(&OperationLabels { kind, outcome }).inc();
        self.inner.operation_duration.get_or_create(&KindLabels { kind }).observe(elapsed.as_secs_f64());
    }

    /// A store call took `elapsed` and ended with `error`, if any.
    pub fn store_call(&self, store: &'static str, call: &'static str, elapsed: Duration, error: Option<&StoreError>) {
        self.inner.store_duration.get_or_create(&StoreCallLabels { store, call }).observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            let error = match error {
                StoreError::Conflict(_) => "conflict",
                StoreError::NotFound(_) => "not_found",
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Corrupt(_) => "corrupt",
            };
            self.inner.store_errors.get_or_create(&StoreErrorLabels { store, call, error }).inc();
        }
    }

    /// A backend call failed.
    pub fn backend_error(&self, backend: &'static str, call: &'static str) {
        self.inner.backend_errors.get_or_create(&BackendCallLabels { backend, call }).inc();
    }

    /// Reconciliation removed the resources of one instance from `backend`.
    pub fn reconcile_removed(&self, backend: &'static str) {
        self.inner.reconcile_removals.get_or_create(&BackendLabels { backend }).inc();
    }

    /// Sets `esm_backend_up` of `backend`: whether its engine answered the probe.
    pub fn set_backend_up(&self, backend: &'static str, up: bool) {
        self.inner.backend_up.get_or_create(&BackendLabels { backend }).set(i64::from(up));
    }

    /// Sets `esm_events_stored`: how many events the event log holds now. Call it
    /// whenever the log grows or is trimmed (or after counting it at start-up).
    pub fn set_events_stored(&self, events: u64) {
        self.inner.events_stored.set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// A provision of a pooled plan was handed a member (`hit`) or not.
    pub fn pool_claim(&self, plan_id: &str, hit: bool) {
        let family = if hit { &self.inner.pool_hits } else { &self.inner.pool_misses };
        self.with_pool_series(plan_id, |plan_id| {
            family.get_or_create(&PlanLabels { plan_id: plan_id.to_owned() }).inc();
        });
    }

    /// A pool member of `plan_id` became ready after `took`.
    pub fn pool_refilled(&self, plan_id: &str, took: Duration) {
        self.with_pool_series(plan_id, |plan_id| {
            let labels = PlanLabels { plan_id: plan_id.to_owned() };
            self.inner.pool_refill_duration.get_or_create(&labels).observe(took.as_secs_f64());
        });
    }

    /// Sets `esm_pool_members` of a pool.
    pub fn set_pool_members(&self, plan_id: &str, ready: u32, deploying: u32) {
        self.with_pool_series(plan_id, |plan_id| {
            for (state, count) in [("ready", ready), ("deploying", deploying)] {
                let labels = MemberLabels { plan_id: plan_id.to_owned(), state };
                self.inner.pool_members.get_or_create(&labels).set(i64::from(count));
            }
        });
    }

    /// Removes the series of every pool `keep` does not name: the pool keeper calls it
    /// with the pools that exist, so a deleted pool (or one of a deleted plan) leaves
    /// nothing on `/metrics`.
    pub fn forget_pools_except(&self, keep: impl Fn(&str) -> bool) {
        let f = &self.inner;
        let mut plans = f.pool_plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        plans.retain(|plan_id| {
            if keep(plan_id) {
                return true;
            }
            let labels = PlanLabels { plan_id: plan_id.clone() };
            f.pool_hits.remove(&labels);
            f.pool_misses.remove(&labels);
            f.pool_refill_duration.remove(&labels);
            for state in ["ready", "deploying"] {
                f.pool_members.remove(&MemberLabels { plan_id: plan_id.clone(), state });
            }
            false
        });
    }

    /// Records into a pool's series, noting its plan. A plan id longer than any id esm
    /// accepts (only a record from before the bound could hold one) gets no series: no
    /// label value is longer than [`MAX_ID_BYTES`].
    fn with_pool_series(&self, plan_id: &str, record: impl FnOnce(&str)) {
        if plan_id.len() > MAX_ID_BYTES {
            return;
        }
        let mut plans = self.inner.pool_plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !plans.contains(plan_id) {
            plans.insert(plan_id.to_owned());
        }
        record(plan_id);
    }

    /// Sets the `esm_engine_*` families to `rows`, every engine there is now.
    pub fn set_engines(&self, rows: Vec<engines::EngineRow>) {
        self.inner.engines.set(rows);
    }

    /// Whether the `esm_engine_*` rows are due to be read again.
    pub fn engines_due(&self) -> bool {
        self.inner.engines.due()
    }

    /// Sets `esm_sse_subscribers`: how many clients the event stream has now. Call it
    /// when one connects and when one goes away (e.g. with the broadcast channel's
    /// receiver count).
    pub fn set_sse_subscribers(&self, subscribers: u64) {
        self.inner.sse_subscribers.set(i64::try_from(subscribers).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests;
