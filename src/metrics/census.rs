//! `esm_instances`: live instances by service, plan, state and liveness.
//!
//! Counting 100,000 instance records on every scrape would make the scrape the most
//! expensive request esm serves. Instead every live instance carries one index entry,
//! [`index::CENSUS`], that joins its four labels, and [`Store::counts`] tallies the
//! index entries per value without reading a record (a walk over one range of the
//! embedded store's index table, a `$group` in MongoDB). The tally is kept as a
//! snapshot and taken again at most every [`MAX_AGE`], by the scrape that finds it
//! stale: scrapes in between encode the snapshot and cost nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::time::Instant;

use crate::store::{Store, index};

/// How old the counts may be before a scrape takes them again.
pub const MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    service_id: String,
    plan_id: String,
    state: String,
    liveness: String,
}

/// The last tally, encoded as the `esm_instances` gauge family.
#[derive(Debug, Default)]
pub(super) struct Census {
    /// The counts as last taken. Replaced whole, so a scrape encoding it while another
    /// refreshes sees one tally or the other, never a mix. A std mutex: held to clone
    /// or swap an `Arc`.
    snapshot: Mutex<Arc<Vec<(InstanceLabels, i64)>>>,
    /// When the tally was last taken; held across the store call, so concurrent
    /// scrapes that find it stale make one call between them.
    taken: tokio::sync::Mutex<Option<Instant>>,
}

impl Census {
    /// Takes the tally again from `store` if it is older than [`MAX_AGE`]. A store that
    /// fails leaves the last tally in place (the failure shows in
    /// `esm_store_errors_total{call="counts"}`), and the next scrape tries again.
    pub(super) async fn refresh(&self, store: &dyn Store) {
        let mut taken = self.taken.lock().await;
        if taken.is_some_and(|at| at.elapsed() < MAX_AGE) {
            return;
        }
        match index::count_census(store).await {
            Ok(counts) => {
                let tally = counts
                    .into_iter()
                    .filter_map(|(labels, n)| {
                        let [service_id, plan_id, state, liveness] = labels.map(|v| super::bounded_label(&v));
                        Some((InstanceLabels { service_id, plan_id, state, liveness }, i64::try_from(n).ok()?))
                    })
                    .collect();
                *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(tally);
                *taken = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "cannot count the instances for /metrics; keeping the last counts"),
        }
    }
}

impl Collector for Census {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut family = encoder.encode_descriptor(
            "esm_instances",
            &format!(
                "Live (not deprovisioned) instances by service id, plan id, state of the last operation and liveness; counted at most every {} s.",
                MAX_AGE.as_secs()
            ),
            None,
            MetricType::Gauge,
        )?;
        for (labels, count) in snapshot.iter() {
            ConstGauge::new(*count).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}
