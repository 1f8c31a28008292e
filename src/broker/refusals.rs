//! Refused requests are events too: a provision, update, deprovision, bind or unbind
//! about an instance esm knows, refused with 400, 409 or 422, is announced as
//! `<kind>.refused` with the reason. A consumer of the log sees every attempt to change
//! an instance, not only those that ran. (Where the refusal came after the operation
//! was recorded, its `<kind>.failed` is announced with the record's change too.)

use super::core::Core;
use crate::domain::event::{Event, EventKind, Step};
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::OperationKind;
use crate::error::{OsbError, OsbResult};

/// `result` of a `kind` request about instance `instance_id` (and binding
/// `binding_id`), announced as refused if it is a refusal of a known instance.
pub(super) async fn noting<T>(
    core: &Core,
    kind: OperationKind,
    instance_id: &str,
    binding_id: Option<&str>,
    result: OsbResult<T>,
) -> OsbResult<T> {
    if let Err(e) = &result
        && refusal(e)
        && let Ok(Some(found)) = core.records.get::<ServiceInstance>(instance_id).await
        && found.record.pool.is_none()
    {
        let instance = found.record;
        let mut event = Event::new(EventKind::Operation(kind, Step::Refused))
            .on_instance(&instance.id, &instance.service_id, &instance.plan_id)
            .because(e.to_string());
        event.binding_id = binding_id.map(str::to_owned);
        event.to = Some(e.code().to_owned());
        core.events.emit(event);
    }
    result
}

/// Whether `e` refuses the request as it was asked (not a failure of esm or of the
/// backend, which a retry may overcome).
fn refusal(e: &OsbError) -> bool {
    matches!(e.status().as_u16(), 400 | 409 | 422)
}
