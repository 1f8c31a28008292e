//! The engine's container events about esm's instances: what tells liveness, and a
//! deployment waiting for its units, that a container started, stopped or changed
//! health, without polling. Swarm task containers carry esm's labels too (the
//! service spec's container labels), so one stream serves both backends.

use std::collections::HashMap;
use std::future::ready;
use std::time::SystemTime;

use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::engine::Engine;
use crate::backend::labels;

/// The actions that change how a container is doing. Not `exec_*`: a health check
/// runs one every interval.
const ACTIONS: &[&str] =
    &["start", "restart", "die", "oom", "kill", "stop", "pause", "unpause", "destroy", "health_status"];

/// The ids of the instances of `owner` (only `instance_id`, when given) whose
/// containers changed, one per event, from `since` on: the engine keeps its recent
/// events, so nothing between asking and being subscribed is lost (on an engine whose
/// clock is behind esm's, events come only once its clock passes `since`: the callers
/// also poll). Ends at the first engine error or when the connection drops; the caller
/// subscribes again. Reads only as fast as it is read: nothing is buffered here.
pub fn instance_changes(
    engine: &Engine,
    owner: &str,
    instance_id: Option<&str>,
    since: SystemTime,
) -> BoxStream<'static, String> {
    let docker = match engine.docker() {
        Ok(docker) => docker,
        Err(e) => {
            tracing::debug!(error = %e, "no Docker events: the engine is not available");
            return stream::empty().boxed();
        }
    };
    let instance = match instance_id {
        Some(id) => format!("{}={id}", labels::INSTANCE),
        None => labels::INSTANCE.to_owned(),
    };
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        ("event", ACTIONS.iter().map(|a| (*a).to_owned()).collect()),
        ("label", vec![format!("{}={owner}", labels::OWNER), instance]),
    ]);
    let at = since.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let options =
        EventsOptionsBuilder::new().filters(&filters).since(&format!("{}.{:09}", at.as_secs(), at.subsec_nanos()));
    docker
        .events(Some(options.build()))
        .take_while(|event| {
            if let Err(e) = event {
                tracing::debug!(error = %e, "the Docker event stream ended");
            }
            ready(event.is_ok())
        })
        .filter_map(|event| ready(event.ok().and_then(|e| e.actor?.attributes?.remove(labels::INSTANCE))))
        .boxed()
}

/// [`instance_changes`] of one instance, as a deployment waiting for its units wants
/// them: each item says only "look again".
pub fn unit_changes(engine: &Engine, owner: &str, instance_id: &str, since: SystemTime) -> BoxStream<'static, ()> {
    instance_changes(engine, owner, Some(instance_id), since).map(|_| ()).boxed()
}
