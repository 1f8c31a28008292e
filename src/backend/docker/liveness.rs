//! How the Docker backends see each component of an instance, for liveness: a
//! container (docker-compose) or a swarm task (docker-swarm) as a [`Component`], as
//! pure functions of what the engine says. The engine calls are the runtimes'; the
//! words are here, so the two backends and the deployment template give the same
//! reasons ("exited with code 137", "killed: out of memory", "removed").

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use bollard::models::{ContainerState, ContainerStateStatusEnum, HealthStatusEnum, Task, TaskState};
use serde_json::{Map, Value};

use crate::domain::liveness::{Component, ComponentStatus};

/// A component's kind for a compose container.
pub const CONTAINER: &str = "container";
/// A component's kind for a swarm task.
pub const TASK: &str = "task";
/// A component's kind for a whole swarm service (removed, or scaled to nothing).
pub const SERVICE: &str = "service";

/// Why a container is not running, in the words liveness and failed deployments use.
pub fn stop_reason(state: &ContainerState) -> String {
    let code = state.exit_code.unwrap_or_default();
    let reason = if state.oom_killed == Some(true) {
        "killed: out of memory".to_owned()
    } else {
        match state.status {
            Some(ContainerStateStatusEnum::DEAD) => "dead".to_owned(),
            Some(ContainerStateStatusEnum::REMOVING) => "being removed".to_owned(),
            Some(ContainerStateStatusEnum::CREATED) => "created, never started".to_owned(),
            _ => format!("exited with code {code}"),
        }
    };
    match state.error.as_deref().filter(|e| !e.is_empty()) {
        // The engine's own text may name runtime paths: said in esm's words.
        Some(error) => format!(
            "{reason}: {}",
            crate::backend::said::in_esm_words("a container's state", error, "the engine gave a reason")
        ),
        None => reason,
    }
}

/// A container as a component, from its inspected state.
pub fn container(name: &str, state: &ContainerState) -> Component {
    let health = state.health.as_ref();
    let (status, reason) = if state.restarting == Some(true) {
        (ComponentStatus::Down, Some(format!("restarting after exit code {}", state.exit_code.unwrap_or_default())))
    } else if state.paused == Some(true) {
        (ComponentStatus::Down, Some("paused".to_owned()))
    } else if state.running == Some(true) {
        match health.and_then(|h| h.status) {
            Some(HealthStatusEnum::STARTING) => {
                (ComponentStatus::Starting, Some("health check not passed yet".to_owned()))
            }
            Some(HealthStatusEnum::UNHEALTHY) => {
                // The last probe's output says why, when it says anything.
                let output = health
                    .and_then(|h| h.log.as_ref()?.last()?.output.clone())
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty());
                let reason = match output {
                    Some(output) => format!("health check failing: {output}"),
                    None => "health check failing".to_owned(),
                };
                (ComponentStatus::Unhealthy, Some(reason))
            }
            _ => (ComponentStatus::Up, None),
        }
    } else {
        (ComponentStatus::Down, Some(stop_reason(state)))
    };
    Component { name: name.to_owned(), kind: CONTAINER.to_owned(), status, reason }
}

/// A component that is up.
pub fn up(name: &str, kind: &str) -> Component {
    Component { name: name.to_owned(), kind: kind.to_owned(), status: ComponentStatus::Up, reason: None }
}

/// One component per slot of a swarm service (`service.N`), decided by the slot's
/// newest task. Where that task's container is on this node (`containers`, by id) its
/// state decides as for compose: the manager hears of a start or a stop a moment after
/// the container event that asked for this look. Elsewhere the task's state decides:
/// running is up, `starting` is a task waiting for its health check, and a slot not
/// running is down with the latest error among its tasks (a failed task is replaced
/// after the restart delay), else the task's state. A service scaled to nothing is one
/// component, down.
pub fn tasks<'a>(
    service: &str,
    desired: u64,
    tasks: impl IntoIterator<Item = &'a Task>,
    containers: &HashMap<String, ContainerState>,
) -> Vec<Component> {
    if desired == 0 {
        return vec![down(service, SERVICE, "scaled to 0 replicas")];
    }
    let mut by_slot: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for task in tasks {
        if let Some(slot) = task.slot.and_then(|s| u64::try_from(s).ok()) {
            by_slot.entry(slot).or_default().push(task);
        }
    }
    for slot_tasks in by_slot.values_mut() {
        slot_tasks.sort_by_key(|t| std::cmp::Reverse(created(t)));
    }
    // Slots above the desired count are being scaled away; their tasks do not count.
    (1..=desired)
        .map(|slot| {
            let name = format!("{service}.{slot}");
            let slot_tasks = by_slot.get(&slot).map(Vec::as_slice).unwrap_or_default();
            let Some(newest) = slot_tasks.first() else {
                return down(&name, TASK, "no task scheduled");
            };
            if let Some(state) = container_of(newest).and_then(|id| containers.get(id)) {
                return Component { kind: TASK.to_owned(), ..container(&name, state) };
            }
            let status = newest.status.clone().unwrap_or_default();
            match status.state {
                Some(TaskState::RUNNING) => up(&name, TASK),
                Some(TaskState::STARTING) => Component {
                    name,
                    kind: TASK.to_owned(),
                    status: ComponentStatus::Starting,
                    reason: Some("starting".to_owned()),
                },
                state => {
                    let error =
                        slot_tasks.iter().find_map(|t| t.status.as_ref()?.err.clone().filter(|e| !e.is_empty()));
                    let reason = error.unwrap_or_else(|| {
                        let state = state.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                        match status.message.filter(|m| !m.is_empty()) {
                            Some(message) => format!("{state}: {message}"),
                            None => state,
                        }
                    });
                    down(&name, TASK, &reason)
                }
            }
        })
        .collect()
}

/// The id of a task's container, once it has one.
pub fn container_of(task: &Task) -> Option<&str> {
    task.status.as_ref()?.container_status.as_ref()?.container_id.as_deref().filter(|id| !id.is_empty())
}

/// When a task was made (a task without a readable time sorts as the oldest).
fn created(task: &Task) -> SystemTime {
    task.created_at.as_deref().and_then(|at| humantime::parse_rfc3339(at).ok()).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A component that is down, and why.
pub fn down(name: &str, kind: &str, reason: &str) -> Component {
    Component {
        name: name.to_owned(),
        kind: kind.to_owned(),
        status: ComponentStatus::Down,
        reason: Some(reason.to_owned()),
    }
}

/// The components seen, plus each unit the deployment record names that nothing was
/// seen of (a container named after it, or a task `<it>.N`): down, "removed". When nothing at
/// all was seen the list stays empty: the whole deployment is gone (deprovisioned, or
/// removed behind esm's back), which liveness reads as down.
pub fn with_removed(mut seen: Vec<Component>, recorded: Option<&Value>, kind: &str) -> Vec<Component> {
    if !seen.is_empty() {
        let names: Vec<String> =
            recorded.and_then(Value::as_object).map(Map::keys).into_iter().flatten().cloned().collect();
        for name in names {
            if !seen.iter().any(|c| unit_of(c) == name) {
                seen.push(down(&name, kind, "removed"));
            }
        }
    }
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    seen
}

/// The deployment unit a component belongs to: a task's service, else itself.
fn unit_of(component: &Component) -> &str {
    match component.name.rsplit_once('.') {
        Some((service, _)) if component.kind == TASK => service,
        _ => &component.name,
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
