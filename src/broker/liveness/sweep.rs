//! When liveness looks at steady instances: the sweep, spread over time, and the queue
//! of prompt looks.
//!
//! A steady instance (up, reporting nothing) changes only when its engine says so, and
//! engines tell changes at once (a prompt look). Still, every live instance is looked at
//! once per `ESM_LIVENESS_SWEEP_INTERVAL`, in case a change went untold: a slice in
//! each round, in id order from where the round before stopped, of the live count
//! (read once per pass) divided by the rounds in a sweep. So 100,000 steady instances
//! cost every round the same small share, never a read of all of them at once, and
//! nothing reads every instance more often than the sweep interval.
//!
//! A round looks at every instance at once when a change may have gone untold: at
//! start, after an engine's change stream ended, after a prompt look was dropped; and
//! every round does with a backend that has no change stream (then looking is its only
//! way to learn).

use crate::broker::LivenessMonitor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use crate::domain::instance::ServiceInstance;
use crate::store::{Collection, Query, StoreError, Versioned, index};

/// Instances waiting for a prompt look; beyond this, a sweep catches up.
const PROMPT_QUEUE: usize = 4096;
/// The most instances one store read of a slice returns.
const SLICE_PAGE: usize = 256;

/// An instance to look at soon: its id, and the record as its last write left it, when
/// the writer has it (a look then starts from it rather than reading it again).
pub(in crate::broker) type Look = (String, Option<Versioned<ServiceInstance>>);

/// The queue of instances to look at soon, and where the sweep stands.
pub(super) struct Prompt {
    pub(super) sender: mpsc::Sender<Look>,
    pub(super) receiver: std::sync::Mutex<Option<mpsc::Receiver<Look>>>,
    /// A change may have gone untold: the next round looks at every instance (the
    /// first one does).
    sweep_all: AtomicBool,
    /// A backend has no change stream: its changes are seen only by looking, so every
    /// round looks at every instance.
    always_sweep: AtomicBool,
    /// The spread sweep's progress. A std mutex: never held across an `.await`.
    pass: std::sync::Mutex<Pass>,
}

/// Where the spread sweep stands.
#[derive(Debug, Default, Clone)]
struct Pass {
    /// The last id the pass looked at; `None`: the next slice starts a pass.
    after: Option<String>,
    /// How many instances each round of this pass looks at.
    per_round: usize,
}

impl Prompt {
    pub(in crate::broker) fn new() -> Self {
        let (sender, receiver) = mpsc::channel(PROMPT_QUEUE);
        Self {
            sender,
            receiver: std::sync::Mutex::new(Some(receiver)),
            sweep_all: AtomicBool::new(true),
            always_sweep: AtomicBool::new(false),
            pass: std::sync::Mutex::default(),
        }
    }

    /// A change may have gone untold: the next round looks at every instance.
    pub(in crate::broker) fn sweep_soon(&self) {
        self.sweep_all.store(true, Ordering::SeqCst);
    }

    /// A backend has no change stream: every round looks at every instance.
    pub(in crate::broker) fn sweep_always(&self) {
        self.always_sweep.store(true, Ordering::SeqCst);
    }

    /// Whether this round looks at every instance. One that does starts the spread
    /// sweep over: it has just seen everything.
    pub(in crate::broker) fn take_sweep(&self) -> bool {
        let all = self.sweep_all.swap(false, Ordering::SeqCst) || self.always_sweep.load(Ordering::SeqCst);
        if all {
            *self.pass() = Pass::default();
        }
        all
    }

    fn pass(&self) -> std::sync::MutexGuard<'_, Pass> {
        self.pass.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How many instances of `live` each round looks at for every one to be looked at
/// once per `sweep`, with a round each `interval` (at least one).
fn share(live: u64, interval: Duration, sweep: Duration) -> usize {
    let rounds = (sweep.as_millis() / interval.as_millis().max(1)).max(1);
    usize::try_from(u128::from(live).div_ceil(rounds)).unwrap_or(usize::MAX).max(1)
}

impl LivenessMonitor<'_> {
    /// This round's slice of the spread sweep: the next live instances after where the
    /// last round stopped, up to this pass's share, leaving out those every round
    /// looks at anyway (not up yet, or no longer). Reaching the last live instance
    /// ends the pass; the next round starts another, with the live count read again.
    pub(in crate::broker) async fn sweep_slice(
        &self,
    ) -> Result<BoxStream<'static, Result<Versioned<ServiceInstance>, StoreError>>, StoreError> {
        let Pass { after, mut per_round } = self.room.prompt.pass().clone();
        if after.is_none() {
            let counts = self.core.store().counts(Collection::Instances, index::LIVE).await?;
            let live = counts.iter().map(|(_, n)| n).sum();
            let liveness = &self.core.settings.liveness;
            per_round = share(live, liveness.interval, liveness.sweep);
            self.room.prompt.pass().per_round = per_round;
        }
        let this = Arc::clone(self.broker);
        let pages = futures_util::stream::try_unfold((after, per_round), move |(after, left)| {
            let this = Arc::clone(&this);
            async move {
                if left == 0 {
                    return Ok(None);
                }
                let query = Query {
                    filters: vec![(index::LIVE.to_owned(), "1".to_owned())],
                    after,
                    limit: left.min(SLICE_PAGE),
                };
                let page = this.liveness().core.records.page::<ServiceInstance>(&query).await?;
                let last = page.last().map(|found| found.record.id.clone());
                let ended = page.len() < query.limit;
                // Read is as good as looked at: a look that fails is a round's failure,
                // and the next sweep comes soon enough.
                this.liveness().room.prompt.pass().after = if ended { None } else { last.clone() };
                let left = if ended { 0 } else { left - page.len() };
                Ok(Some((futures_util::stream::iter(page.into_iter().map(Ok)), (last, left))))
            }
        });
        let settled = |found: &Versioned<ServiceInstance>| {
            let status = found.record.liveness_status();
            std::future::ready(!super::UNSETTLED.contains(&status))
        };
        Ok(pages.try_flatten().try_filter(settled).boxed())
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::backend::Backends;
    use crate::backend::dummy::DummyBackend;
    use crate::broker::Broker;
    use crate::broker::{BrokerSettings, LivenessSettings};
    use crate::domain::liveness::{ComponentStatus, LivenessStatus};
    use crate::store::memory::MemoryStore;

    /// A broker over the dummy with `n` instances `i0`, `i1`, … provisioned, and rounds
    /// of 10 s in a sweep of 60 s (a sixth of the instances a round).
    async fn provisioned(n: usize) -> (Arc<DummyBackend>, Arc<Broker>) {
        let dummy = Arc::new(DummyBackend::new());
        let liveness = LivenessSettings {
            interval: Duration::from_secs(10),
            sweep: Duration::from_secs(60),
            ..Default::default()
        };
        let settings = BrokerSettings { liveness, ..BrokerSettings::default() };
        let broker = Broker::new(Arc::new(MemoryStore::new()), Backends::new().with(dummy.clone()), settings);
        crate::broker::fixture::register_plan(&broker, "dummy", "x-esm-dummy: {mode: sync}\n").await;
        for i in 0..n {
            broker
                .instances()
                .provision(&format!("i{i}"), crate::broker::fixture::provision_request(), false)
                .await
                .expect("provisions");
        }
        (dummy, broker)
    }

    async fn status(broker: &Arc<Broker>, id: &str) -> LivenessStatus {
        broker.liveness().of(id).await.expect("liveness").1.status
    }

    #[tokio::test]
    async fn a_change_nobody_told_is_seen_when_the_spread_sweep_reaches_its_instance() {
        let (dummy, broker) = provisioned(6).await;
        // The first round looks at every instance.
        broker.liveness().liveness_round().await.expect("a round");
        for i in 0..6 {
            assert_eq!(status(&broker, &format!("i{i}")).await, LivenessStatus::Up, "i{i}");
        }
        // Nobody follows the dummy's changes here: this one goes untold.
        dummy.liveness().set("i3", "main", ComponentStatus::Down, Some("killed"));
        // One instance a round, in id order: i0, i1, i2 …
        for _ in 0..3 {
            broker.liveness().liveness_round().await.expect("a round");
        }
        assert_eq!(status(&broker, "i3").await, LivenessStatus::Up, "not looked at again yet");
        // … then i3.
        broker.liveness().liveness_round().await.expect("a round");
        assert_eq!(status(&broker, "i3").await, LivenessStatus::Down);
        // Once down it is looked at in every round, and seen back up at the next one.
        dummy.liveness().set("i3", "main", ComponentStatus::Up, None);
        broker.liveness().liveness_round().await.expect("a round");
        assert_eq!(status(&broker, "i3").await, LivenessStatus::Up);
    }

    #[tokio::test]
    async fn a_change_that_may_have_gone_untold_makes_the_next_round_look_at_every_instance() {
        let (dummy, broker) = provisioned(6).await;
        broker.liveness().liveness_round().await.expect("a round");
        dummy.liveness().set("i5", "main", ComponentStatus::Down, Some("killed"));
        broker.liveness().room.prompt.sweep_soon();
        broker.liveness().liveness_round().await.expect("a round");
        assert_eq!(status(&broker, "i5").await, LivenessStatus::Down);
    }

    #[test]
    fn a_round_looks_at_its_share_so_that_a_sweep_covers_every_instance() {
        let (ten, minute) = (Duration::from_secs(10), Duration::from_secs(60));
        // Six rounds a sweep: 100,000 instances, 16,667 a round.
        assert_eq!(share(100_000, ten, minute), 16_667);
        assert_eq!(share(6, ten, minute), 1);
        // Nothing to look at still reads once, to see the pass end.
        assert_eq!(share(0, ten, minute), 1);
        // A sweep no longer than a round: every round looks at every instance.
        assert_eq!(share(500, minute, ten), 500);
        assert_eq!(share(500, Duration::ZERO, ten), 1);
    }
}
