//! The tombstone purge: deprovisioned instances and deleted bindings are kept so that
//! `last_operation` can answer for them, then deleted once they are older than the
//! retention, so the store does not grow forever. After the purge `last_operation`
//! still answers 410 to a platform polling the deprovision or unbind (the operation id
//! names its kind; see `last_operation_gone`).
//!
//! An id provisioned or bound again replaces its tombstone; the new record inherits the
//! tombstone's finished operations (slimmed, within the bounded log), so the earlier
//! deprovision or unbind is still answered by its `operation` id, for the same
//! retention, and then answers 410 as after a purge.

use std::time::Duration;

use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::ReportRecord;
use crate::domain::operation::{OperationKind, OperationLog};
use crate::domain::time::Timestamp;
use crate::error::{OsbError, OsbResult};
use crate::store::{Collection, Record, StoreError, index};

/// How many tombstones one store read returns.
const BATCH: usize = 256;

/// The longest wait between two purges.
const MAX_PERIOD: Duration = Duration::from_secs(3600);

service! {
    /// Deprovisioned instances and deleted bindings: inherited by a new record of the same
    /// id, and purged after the retention.
    Tombstones
}

impl Tombstones<'_> {
    /// Deletes the tombstones that ended more than `retention` ago; returns how many.
    pub async fn purge_tombstones(&self, retention: Duration) -> OsbResult<usize> {
        let Some(cutoff) = self.core.clock().now().checked_sub(retention) else {
            return Ok(0);
        };
        // The index keeps the text, whose order is the timestamps' order.
        let cutoff = Timestamp::at(cutoff).to_string();
        Ok(self.purge::<ServiceInstance>(&cutoff).await? + self.purge::<Binding>(&cutoff).await?)
    }

    async fn purge<T: Record>(&self, cutoff: &str) -> OsbResult<usize> {
        let mut purged = 0;
        loop {
            let expired = self.core.records.expired::<T>(index::GONE_AT, cutoff, BATCH).await?;
            let mut deleted = 0;
            for (id, version) in &expired {
                // Only the version read: a record written since is left for the next round.
                match self.core.records.delete::<T>(id, Some(*version)).await {
                    Ok(true) if T::COLLECTION == Collection::Instances => {
                        // Its latest liveness report goes with it.
                        self.core.records.delete::<ReportRecord>(id, None).await?;
                        deleted += 1;
                    }
                    Ok(true) => deleted += 1,
                    Ok(false) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            purged += deleted;
            if expired.len() < BATCH || deleted == 0 {
                return Ok(purged);
            }
        }
    }

    /// When an operation of an earlier incarnation of a record re-created at
    /// `created_at` is forgotten: once it ended more than the tombstone
    /// retention ago, as its tombstone would have been purged. The record's own
    /// operations (ended after it was created) are kept however old.
    pub(super) fn forgotten_before(&self, created_at: Timestamp) -> Timestamp {
        created_at.min(self.retention_cutoff())
    }

    /// The log of a record re-created over `tombstone`'s id: the tombstone's finished
    /// operations still within the retention, then `current`'s.
    pub(super) fn inherit(&self, tombstone: &OperationLog, current: OperationLog) -> OperationLog {
        let mut log = OperationLog::inherited(tombstone, self.retention_cutoff());
        for op in current.iter() {
            log.push(op.clone());
        }
        log
    }

    /// Now less the tombstone retention; the epoch if that is before it.
    fn retention_cutoff(&self) -> Timestamp {
        let cutoff = self.core.clock().now().checked_sub(self.core.settings.tombstone_retention);
        cutoff.map_or(Timestamp::from_millis(0), Timestamp::at)
    }

    /// Purges now and then every so often (a tenth of the retention, at most hourly),
    /// until shutdown.
    pub fn spawn_purger(&self, retention: Duration) {
        let period = (retention / 10).clamp(Duration::from_secs(1), MAX_PERIOD);
        self.broker.spawn_every(period, move |this| async move {
            match this.tombstones().purge_tombstones(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged tombstones past their retention"),
                Err(e) => tracing::warn!(error = %e, "could not purge tombstones"),
            }
        });
    }
}

/// What `last_operation` answers for a record that is not (or no longer) stored: 410
/// when the platform polls an operation esm handed out that removes it (the record was
/// purged after it), 404 otherwise.
pub(super) fn last_operation_gone(operation: Option<&str>, removal: OperationKind, what: String) -> OsbError {
    let removal_id = operation.and_then(|op| op.strip_prefix(removal.as_str())).and_then(|rest| rest.strip_prefix('-'));
    if removal_id.is_some_and(|uuid| uuid.len() == 32 && uuid.bytes().all(|b| b.is_ascii_hexdigit())) {
        OsbError::Gone
    } else {
        OsbError::NotFound(what)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use std::sync::Arc;

    use super::*;

    use crate::backend::dummy::DummyBackend;
    use crate::broker::Answer;
    use crate::broker::{Broker, fixture};

    use crate::store::memory::MemoryStore;
    use crate::wire::DeleteQuery;

    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    async fn broker() -> Arc<Broker> {
        let broker = fixture::broker(Arc::new(MemoryStore::new()), Arc::new(DummyBackend::new()));
        fixture::register_plan(&broker, "dummy", "x-esm-dummy: {mode: async}\n").await;
        broker
    }

    /// Polls operation `op` (its state, from `poll`) until it has ended; the state it
    /// ended in.
    async fn ended<F: Future<Output = String>>(op: &str, mut poll: impl FnMut() -> F) -> String {
        for _ in 0..1000 {
            let state = poll().await;
            if state != "in progress" {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{op} did not finish");
    }

    /// An asynchronous delete of plan `p`'s instance or binding.
    fn async_delete() -> DeleteQuery {
        serde_json::from_value(json!({"service_id": "s", "plan_id": "p", "accepts_incomplete": true})).expect("query")
    }

    /// The operation a 202 names (`what`: the request, for the message if it was not
    /// accepted).
    fn accepted<T: std::fmt::Debug>(
        what: &str,
        answer: OsbResult<Answer<T>>,
        operation: impl FnOnce(T) -> Option<String>,
    ) -> String {
        match answer {
            Ok(Answer::Accepted(body)) => operation(body).expect("an operation"),
            other => panic!("{what}: not accepted: {other:?}"),
        }
    }

    async fn settle(broker: &Arc<Broker>, id: &str, op: &str) -> String {
        ended(op, || async {
            let answer = broker.instances().last_operation(id, Some(op)).await.expect("polls");
            answer.state.as_str().to_owned()
        })
        .await
    }

    async fn deprovisioned(broker: &Arc<Broker>, id: &str) -> String {
        let answer = broker.instances().provision(id, fixture::provision_request(), true).await;
        settle(broker, id, &accepted("provision", answer, |a| a.operation)).await;
        let op = accepted("deprovision", broker.instances().deprovision(id, &async_delete()).await, |a| a.operation);
        assert_eq!(settle(broker, id, &op).await, "succeeded");
        op
    }

    #[tokio::test(start_paused = true)]
    async fn a_tombstone_lives_out_its_retention_then_goes_and_its_deprovision_still_answers_410() {
        let broker = broker().await;
        let op = deprovisioned(&broker, "old").await;
        tokio::time::advance(WEEK - Duration::from_secs(60)).await;
        let _ = deprovisioned(&broker, "young").await;
        // A tombstone whose events are not in the log yet is kept until they are.
        broker.events().number_waiting().await.expect("numbers");
        assert_eq!(broker.tombstones().purge_tombstones(WEEK).await.expect("purges"), 0, "nothing is a week old yet");
        assert_eq!(
            broker.instances().last_operation("old", Some(&op)).await.expect("kept").state.as_str(),
            "succeeded"
        );

        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(broker.tombstones().purge_tombstones(WEEK).await.expect("purges"), 1, "the week-old tombstone goes");
        assert!(broker.records().get::<ServiceInstance>("old").await.expect("reads").is_none());
        assert!(broker.records().get::<ServiceInstance>("young").await.expect("reads").is_some());
        assert!(matches!(broker.instances().last_operation("old", Some(&op)).await, Err(OsbError::Gone)));
        assert!(matches!(broker.instances().last_operation("old", None).await, Err(OsbError::NotFound(_))));
        assert!(matches!(
            broker.instances().last_operation("never", Some("deprovision-x")).await,
            Err(OsbError::NotFound(_))
        ));
    }

    /// Polls binding `b` of instance `i` until operation `op` has ended; its state.
    async fn settled_binding(broker: &Arc<Broker>, b: &str, op: &str) -> String {
        ended(op, || async {
            let answer = broker.bindings().last_operation("i", b, Some(op)).await.expect("polls");
            answer.state.as_str().to_owned()
        })
        .await
    }

    /// Binds `b` to instance `i` then unbinds it, asynchronously: the unbind's id.
    async fn unbound(broker: &Arc<Broker>, b: &str) -> String {
        let request = json!({"service_id": "s", "plan_id": "p"});
        let answer = broker.bindings().bind("i", b, serde_json::from_value(request).expect("request"), true).await;
        settled_binding(broker, b, &accepted("bind", answer, |a| a.operation)).await;
        let op = accepted("unbind", broker.bindings().unbind("i", b, &async_delete()).await, |a| a.operation);
        assert_eq!(settled_binding(broker, b, &op).await, "succeeded");
        op
    }

    #[tokio::test(start_paused = true)]
    async fn an_id_provisioned_again_still_answers_its_earlier_deprovision_for_the_retention() {
        let broker = broker().await;
        let first = deprovisioned(&broker, "again").await;
        let second = deprovisioned(&broker, "again").await;
        // Provisioned a third time, and left running: the two earlier deprovisions answer.
        deprovisioned_then_provisioned(&broker, "again").await;
        for op in [&first, &second] {
            let answer = broker.instances().last_operation("again", Some(op)).await.expect("remembered");
            assert_eq!(answer.state.as_str(), "succeeded", "{op}");
        }
        tokio::time::advance(WEEK + Duration::from_secs(60)).await;
        assert!(matches!(broker.instances().last_operation("again", Some(&first)).await, Err(OsbError::Gone)));
        assert_eq!(broker.instances().last_operation("again", None).await.expect("live").state.as_str(), "succeeded");
        // However often an id comes back, its record remembers a bounded few operations.
        for _ in 0..10 {
            deprovisioned(&broker, "often").await;
        }
        let kept = broker.records().get::<ServiceInstance>("often").await.expect("reads").expect("kept").record;
        assert!(kept.operations.iter().count() <= 8);
    }

    /// Provisions `id` again after `deprovisioned`, asynchronously, to the end.
    async fn deprovisioned_then_provisioned(broker: &Arc<Broker>, id: &str) {
        let answer = broker.instances().provision(id, fixture::provision_request(), true).await;
        assert_eq!(settle(broker, id, &accepted("provision", answer, |a| a.operation)).await, "succeeded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_binding_bound_again_still_answers_its_earlier_unbind_for_the_retention() {
        let broker = broker().await;
        deprovisioned_then_provisioned(&broker, "i").await;
        let first = unbound(&broker, "b").await;
        let request = json!({"service_id": "s", "plan_id": "p"});
        let answer = broker.bindings().bind("i", "b", serde_json::from_value(request).expect("request"), true).await;
        settled_binding(&broker, "b", &accepted("bind again", answer, |a| a.operation)).await;
        let answer = broker.bindings().last_operation("i", "b", Some(&first)).await.expect("remembered");
        assert_eq!(answer.state.as_str(), "succeeded");
        tokio::time::advance(WEEK + Duration::from_secs(60)).await;
        assert!(matches!(broker.bindings().last_operation("i", "b", Some(&first)).await, Err(OsbError::Gone)));
        assert!(matches!(
            broker.bindings().last_operation("i", "b", Some("bind-x")).await,
            Err(OsbError::BadRequest(_))
        ));
    }

    #[test]
    fn only_a_removal_operation_id_means_gone() {
        let uuid = "0123456789abcdef0123456789abcdef";
        let gone = |op: &str, kind| last_operation_gone(Some(op), kind, String::new());
        assert!(matches!(gone(&format!("deprovision-{uuid}"), OperationKind::Deprovision), OsbError::Gone));
        assert!(matches!(gone(&format!("unbind-{uuid}"), OperationKind::Unbind), OsbError::Gone));
        for op in [format!("provision-{uuid}"), format!("deprovision-{uuid}0"), "deprovision-".into(), "x".into()] {
            assert!(matches!(gone(&op, OperationKind::Deprovision), OsbError::NotFound(_)), "{op}");
        }
        assert!(matches!(last_operation_gone(None, OperationKind::Deprovision, String::new()), OsbError::NotFound(_)));
    }
}
