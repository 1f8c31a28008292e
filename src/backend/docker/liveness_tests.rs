use bollard::models::{ContainerStatus, Health, HealthcheckResult, TaskStatus};
use serde_json::json;

use super::*;

fn running() -> ContainerState {
    ContainerState { status: Some(ContainerStateStatusEnum::RUNNING), running: Some(true), ..Default::default() }
}

fn exited(code: i64) -> ContainerState {
    ContainerState {
        status: Some(ContainerStateStatusEnum::EXITED),
        running: Some(false),
        exit_code: Some(code),
        ..Default::default()
    }
}

fn with_health(status: HealthStatusEnum, output: Option<&str>) -> ContainerState {
    let log = output.map(|o| vec![HealthcheckResult { output: Some(o.to_owned()), ..Default::default() }]);
    ContainerState { health: Some(Health { status: Some(status), log, ..Default::default() }), ..running() }
}

fn seen(component: &Component) -> (ComponentStatus, Option<&str>) {
    (component.status, component.reason.as_deref())
}

#[test]
fn a_running_container_is_up_starting_or_unhealthy_by_its_health_check() {
    assert_eq!(seen(&container("web", &running())), (ComponentStatus::Up, None));
    assert_eq!(seen(&container("web", &with_health(HealthStatusEnum::HEALTHY, None))), (ComponentStatus::Up, None));
    assert_eq!(
        seen(&container("web", &with_health(HealthStatusEnum::STARTING, None))),
        (ComponentStatus::Starting, Some("health check not passed yet"))
    );
    assert_eq!(
        seen(&container("web", &with_health(HealthStatusEnum::UNHEALTHY, Some("refused\n")))),
        (ComponentStatus::Unhealthy, Some("health check failing: refused"))
    );
    assert_eq!(
        seen(&container("web", &with_health(HealthStatusEnum::UNHEALTHY, None))),
        (ComponentStatus::Unhealthy, Some("health check failing"))
    );
    let component = container("web", &running());
    assert_eq!((component.name.as_str(), component.kind.as_str()), ("web", "container"));
}

#[test]
fn a_container_not_running_is_down_with_why() {
    assert_eq!(seen(&container("db", &exited(137))), (ComponentStatus::Down, Some("exited with code 137")));
    let oom = ContainerState { oom_killed: Some(true), ..exited(137) };
    assert_eq!(seen(&container("db", &oom)), (ComponentStatus::Down, Some("killed: out of memory")));
    let failed_start = ContainerState { error: Some("exec: \"nope\": not found".into()), ..exited(127) };
    assert_eq!(stop_reason(&failed_start), "exited with code 127: the container's command could not be run");
    let dead = ContainerState { status: Some(ContainerStateStatusEnum::DEAD), ..exited(0) };
    assert_eq!(stop_reason(&dead), "dead");
    let restarting = ContainerState { restarting: Some(true), exit_code: Some(1), ..running() };
    assert_eq!(seen(&container("db", &restarting)), (ComponentStatus::Down, Some("restarting after exit code 1")));
    let paused = ContainerState { paused: Some(true), ..running() };
    assert_eq!(seen(&container("db", &paused)), (ComponentStatus::Down, Some("paused")));
}

fn task(slot: i64, created: &str, state: TaskState, err: Option<&str>) -> Task {
    Task {
        slot: Some(slot),
        created_at: Some(created.to_owned()),
        status: Some(TaskStatus {
            state: Some(state),
            err: err.map(str::to_owned),
            message: Some("started".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn each_desired_swarm_slot_is_a_task_component_decided_by_its_newest_task() {
    let killed = task(1, "2026-11-24T05:33:41.281422907Z", TaskState::FAILED, Some("task: non-zero exit (137)"));
    let replacement = task(1, "2026-11-24T05:33:51Z", TaskState::READY, None);
    let other = task(2, "2026-11-24T05:33:41Z", TaskState::RUNNING, None);
    let components = tasks("web", 2, [&killed, &replacement, &other], &HashMap::new());
    let names: Vec<&str> = components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web.1", "web.2"]);
    assert!(components.iter().all(|c| c.kind == "task"));
    assert_eq!(seen(&components[0]), (ComponentStatus::Down, Some("task: non-zero exit (137)")));
    assert_eq!(seen(&components[1]), (ComponentStatus::Up, None));

    // Replaced and running again: the old failure no longer counts.
    let running_again = task(1, "2026-11-24T05:33:52.5Z", TaskState::RUNNING, None);
    assert_eq!(seen(&tasks("web", 1, [&killed, &running_again], &HashMap::new())[0]), (ComponentStatus::Up, None));
    // Waiting for its health check.
    let starting = task(1, "2026-11-24T05:33:52.5Z", TaskState::STARTING, None);
    assert_eq!(seen(&tasks("web", 1, [&starting], &HashMap::new())[0]).0, ComponentStatus::Starting);
}

#[test]
fn where_a_tasks_container_is_on_this_node_its_state_decides() {
    let mut newest = task(1, "2026-11-24T05:33:41Z", TaskState::RUNNING, None);
    let status = newest.status.as_mut().expect("a status");
    status.container_status = Some(ContainerStatus { container_id: Some("c1".into()), ..Default::default() });
    // Stopped here, though the manager has not heard yet.
    let local = HashMap::from([("c1".to_owned(), exited(137))]);
    let component = &tasks("web", 1, [&newest], &local)[0];
    assert_eq!(
        (seen(component), component.kind.as_str()),
        ((ComponentStatus::Down, Some("exited with code 137")), "task")
    );
    // Running here, though the manager still says starting.
    newest.status.as_mut().expect("a status").state = Some(TaskState::STARTING);
    let local = HashMap::from([("c1".to_owned(), running())]);
    assert_eq!(seen(&tasks("web", 1, [&newest], &local)[0]), (ComponentStatus::Up, None));
    // On another node: the manager's word.
    assert_eq!(seen(&tasks("web", 1, [&newest], &HashMap::new())[0]).0, ComponentStatus::Starting);
}

#[test]
fn missing_swarm_slots_are_down_with_the_tasks_state_when_no_error_says_more() {
    let pending = Task {
        status: Some(TaskStatus {
            state: Some(TaskState::PENDING),
            message: Some("no suitable node".into()),
            ..Default::default()
        }),
        slot: Some(1),
        ..Default::default()
    };
    let components = tasks("db", 2, [&pending], &HashMap::new());
    assert_eq!(seen(&components[0]), (ComponentStatus::Down, Some("pending: no suitable node")));
    assert_eq!(seen(&components[1]), (ComponentStatus::Down, Some("no task scheduled")));
    // A slot above the desired count is being scaled away.
    let extra = task(3, "2026-11-24T05:33:41Z", TaskState::RUNNING, None);
    assert_eq!(tasks("db", 1, [&extra], &HashMap::new()).len(), 1);
    assert_eq!(tasks("db", 0, [&extra], &HashMap::new()), [down("db", SERVICE, "scaled to 0 replicas")]);
}

#[test]
fn recorded_units_nothing_is_seen_of_are_removed_unless_nothing_at_all_is_left() {
    let recorded = json!({"web": {"id": "1"}, "db": {"id": "2"}});
    let components = with_removed(vec![up("web", CONTAINER)], Some(&recorded), CONTAINER);
    assert_eq!(components, [down("db", CONTAINER, "removed"), up("web", CONTAINER)]);
    assert_eq!(with_removed(Vec::new(), Some(&recorded), CONTAINER), []);
    // A swarm service is seen through its tasks.
    let components = with_removed(vec![up("web.1", TASK)], Some(&recorded), SERVICE);
    assert_eq!(components, [down("db", SERVICE, "removed"), up("web.1", TASK)]);
    assert_eq!(with_removed(vec![up("web", CONTAINER)], None, CONTAINER), [up("web", CONTAINER)]);
}
