//! The first look at a deployment just made or remade. It is taken at the end of its
//! operation's run (`Work::call`, within the operation's lease and deadline), so that
//! its verdict goes in the write of the operation's result: one write, not two, and the
//! instance is `up` the moment it is `succeeded`. What that look does not settle (an
//! instance not seen up, or one that has reported: the first look does not read
//! reports) is left to the prompt look (`look_soon`), which judges it with its latest
//! report and drops it if lost.

use crate::broker::LivenessMonitor;
use std::time::Duration;

use super::{Looked, Transition};
use crate::backend::Backend;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::LivenessStatus;
use crate::store::Versioned;

/// How long the first look waits for the engine. Past it the instance stays
/// `unknown`, and the prompt look asks again.
const FIRST_LOOK_WITHIN: Duration = Duration::from_secs(10);

/// What the first look at a deployment saw.
pub(in crate::broker) struct FirstLook(Looked);

/// A first look folded into its operation's result: the transition it made, if any.
pub(in crate::broker) struct Folded(Option<Transition>);

impl LivenessMonitor<'_> {
    /// Looks at `deployed`, an instance as its operation just deployed it.
    pub(in crate::broker) async fn look_first(&self, backend: &dyn Backend, deployed: &ServiceInstance) -> FirstLook {
        let looked = tokio::time::timeout(FIRST_LOOK_WITHIN, Looked::at(backend, deployed)).await;
        FirstLook(looked.unwrap_or_else(|_| {
            Looked::Unreachable(format!("the engine did not answer within {} s", FIRST_LOOK_WITHIN.as_secs()))
        }))
    }

    /// Records `look` in `instance`, in the write of its operation's result.
    pub(in crate::broker) fn fold_look(&self, instance: &mut ServiceInstance, look: &FirstLook) -> Folded {
        Folded(self.judge(instance, &|liveness| look.0.apply(liveness)).1)
    }

    /// Once the result is written (`instance` at `version`, with the look `folded`
    /// in): tells the transition, and asks for the prompt look unless the instance is
    /// up and has not reported (the prompt look reads the latest report).
    pub(in crate::broker) async fn looked_first(&self, instance: &ServiceInstance, version: u64, folded: Folded) {
        self.told(instance, folded.0);
        let settled = instance.liveness_status() == LivenessStatus::Up
            && matches!(self.latest_report(&instance.id).await, Ok(None));
        if !settled {
            self.look_soon(&instance.id, Some(Versioned { version, record: instance.clone() }));
        }
    }
}
