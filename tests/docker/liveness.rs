//! Liveness of the Docker backends against a real engine: what `observe` sees of each
//! container or swarm task, and how soon `changes` tells that something happened
//! behind esm's back (`docker kill`, `docker start`, a health check turning).
//!
//! Runs when `ESM_TEST_DOCKER=1`, like `tests/docker/backends.rs` (see `build.rs`), with the test
//! image and, for swarm, a single-node swarm. Each test labels what it makes with an
//! owner of its own, and a guard removes whatever carries that owner when the test
//! ends, passed or not.

use std::sync::Arc;
use std::time::Duration;

use esm::backend::Backend;
use esm::backend::conformance;
use esm::backend::docker::{self, ComposeBackend, SwarmBackend};
use esm::domain::instance::{InstanceStatus, ServiceInstance};
use esm::domain::liveness::{Component, ComponentStatus};
use esm::domain::manifest::Manifest;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::support::docker::{Cleanup, IMAGE, docker};
use crate::support::eventually;

/// A service that stops at once on SIGTERM (so removal does not wait for a timeout).
const SLEEPER: &str = r#"[sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]"#;

fn docker_info_swarm() -> bool {
    docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) == "active"
}

/// A backend for `manifest_type` (`docker-compose` or `docker-swarm`) with an owner of
/// its own, the manifest of `content`, and the guard that removes what that owner made.
fn subject(manifest_type: &str, content: String) -> (Arc<dyn Backend>, Manifest, Cleanup) {
    let owner = format!("liveness-{}", uuid::Uuid::new_v4().simple());
    let settings = docker::DockerSettings {
        publish_address: [127, 0, 0, 1].into(),
        advertise_host: "127.0.0.1".into(),
        pull: docker::PullPolicy::Never,
        policy: esm::manifest::Policy::default(),
        ready_timeout: Duration::from_secs(60),
        owner: owner.clone(),
    };
    let backend: Arc<dyn Backend> = if manifest_type == "docker-swarm" {
        Arc::new(SwarmBackend::new(settings).expect("a Docker client"))
    } else {
        Arc::new(ComposeBackend::new(settings).expect("a Docker client"))
    };
    (backend, manifest(manifest_type, content), Cleanup(owner))
}

fn manifest(manifest_type: &str, content: String) -> Manifest {
    conformance::manifest("liveness", manifest_type, content)
}

fn instance(manifest: &Manifest) -> ServiceInstance {
    conformance::instance(&format!("live-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]), manifest)
}

async fn provision(backend: &dyn Backend, instance: &mut ServiceInstance, manifest: &Manifest) {
    let deployment = backend.provision(instance, manifest).await;
    instance.deployment = deployment.unwrap_or_else(|e| panic!("provision {}: {e}", instance.id)).details;
    instance.status = InstanceStatus::Provisioned;
}

async fn observe(backend: &dyn Backend, instance: &ServiceInstance) -> Vec<Component> {
    backend.observe(instance).await.expect("observe").expect("the Docker backends observe")
}

/// `(name, status)` of each component, and the reason of the one named `name`.
fn statuses(components: &[Component]) -> Vec<(&str, ComponentStatus)> {
    components.iter().map(|c| (c.name.as_str(), c.status)).collect()
}

fn reason<'a>(components: &'a [Component], name: &str) -> &'a str {
    components.iter().find(|c| c.name == name).and_then(|c| c.reason.as_deref()).unwrap_or_default()
}

/// Looks once after each change `changes` names for the instance, as the liveness
/// monitor does, until a look satisfies `done`; panics naming `what` after `limit`.
/// No polling: what the engine tells must be enough.
async fn look_on_changes(
    changes: &mut BoxStream<'static, String>,
    backend: &dyn Backend,
    instance: &ServiceInstance,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Component]) -> bool,
) -> Vec<Component> {
    let looked = tokio::time::timeout(limit, async {
        while let Some(id) = changes.next().await {
            if id == instance.id {
                let components = observe(backend, instance).await;
                if done(&components) {
                    return Some(components);
                }
            }
        }
        None
    })
    .await;
    looked.ok().flatten().unwrap_or_else(|| panic!("{what}: not seen within {limit:?} of looks on changes"))
}

/// Promptly: what the lead's monitor promises for a change behind esm's back.
const PROMPTLY: Duration = Duration::from_secs(2);

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn compose_containers_killed_and_started_behind_esms_back_are_seen_down_then_up() {
    let (backend, manifest, cleanup) = subject(
        "docker-compose",
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: {SLEEPER}\n  worker:\n    image: {IMAGE}\n    command: {SLEEPER}\n"
        ),
    );
    let mut instance = instance(&manifest);
    provision(backend.as_ref(), &mut instance, &manifest).await;
    let components = observe(backend.as_ref(), &instance).await;
    assert_eq!(statuses(&components), [("web", ComponentStatus::Up), ("worker", ComponentStatus::Up)]);
    assert!(components.iter().all(|c| c.kind == "container"), "{components:?}");

    let worker = format!("{}_worker", docker::project(&cleanup.0, &instance.id));
    let mut changes = backend.changes().expect("the Docker backends tell changes");
    docker(&["kill", &worker]);
    let components = look_on_changes(&mut changes, backend.as_ref(), &instance, PROMPTLY, "worker down", |c| {
        statuses(c) == [("web", ComponentStatus::Up), ("worker", ComponentStatus::Down)]
    })
    .await;
    assert_eq!(reason(&components, "worker"), "exited with code 137");

    docker(&["start", &worker]);
    look_on_changes(&mut changes, backend.as_ref(), &instance, PROMPTLY, "worker up again", |c| {
        statuses(c) == [("web", ComponentStatus::Up), ("worker", ComponentStatus::Up)]
    })
    .await;

    // Removed behind esm's back: the record still names it.
    docker(&["rm", "-f", &worker]);
    look_on_changes(&mut changes, backend.as_ref(), &instance, PROMPTLY, "worker removed", |c| {
        reason(c, "worker") == "removed"
    })
    .await;

    backend.deprovision(&instance, Some(&manifest)).await.expect("deprovision");
    assert_eq!(observe(backend.as_ref(), &instance).await, []);
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_compose_health_check_is_seen_starting_then_up_then_unhealthy() {
    // Healthy once /tmp/ok exists: two seconds after start, and whenever the test says.
    // Failures count only after the start period, so it is healthy before it counts.
    let (backend, manifest, cleanup) = subject(
        "docker-compose",
        format!(
            r#"services:
  web:
    image: {IMAGE}
    command: [sh, -c, "trap 'exit 0' TERM; sleep 2; touch /tmp/ok; sleep 3600 & wait"]
    healthcheck: {{test: [CMD, test, -f, /tmp/ok], interval: 1s, retries: 2, start_period: 5s}}
"#
        ),
    );
    let mut instance = instance(&manifest);
    // Watched while the provision waits for it to be healthy.
    let starting = {
        let backend = backend.clone();
        let watched = instance.clone();
        tokio::spawn(async move {
            // Polled while the provision waits: the state between two events is wanted.
            eventually(Duration::from_secs(30), "web starting", || async {
                let components = observe(backend.as_ref(), &watched).await;
                (statuses(&components) == [("web", ComponentStatus::Starting)]).then_some(components)
            })
            .await
        })
    };
    provision(backend.as_ref(), &mut instance, &manifest).await;
    let seen = starting.await.expect("web was seen starting");
    assert_eq!(reason(&seen, "web"), "health check not passed yet");
    assert_eq!(statuses(&observe(backend.as_ref(), &instance).await), [("web", ComponentStatus::Up)]);

    let web = format!("{}_web", docker::project(&cleanup.0, &instance.id));
    let mut changes = backend.changes().expect("changes");
    docker(&["exec", &web, "busybox", "rm", "/tmp/ok"]);
    // Two failed probes a second apart (after the start period), then unhealthy.
    let components =
        look_on_changes(&mut changes, backend.as_ref(), &instance, Duration::from_secs(10), "web unhealthy", |c| {
            statuses(c) == [("web", ComponentStatus::Unhealthy)]
        })
        .await;
    assert!(reason(&components, "web").starts_with("health check failing"), "{components:?}");

    docker(&["exec", &web, "touch", "/tmp/ok"]);
    look_on_changes(&mut changes, backend.as_ref(), &instance, Duration::from_secs(5), "web healthy again", |c| {
        statuses(c) == [("web", ComponentStatus::Up)]
    })
    .await;
    backend.deprovision(&instance, Some(&manifest)).await.expect("deprovision");
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_task_killed_behind_esms_back_is_seen_down_until_swarm_replaces_it() {
    assert!(docker_info_swarm(), "the swarm tests need a swarm (docker swarm init --advertise-addr 127.0.0.1)");
    let (backend, manifest, _cleanup) =
        subject("docker-swarm", format!("services:\n  app:\n    image: {IMAGE}\n    command: {SLEEPER}\n"));
    let mut instance = instance(&manifest);
    provision(backend.as_ref(), &mut instance, &manifest).await;
    let components = observe(backend.as_ref(), &instance).await;
    assert_eq!(statuses(&components), [("app.1", ComponentStatus::Up)]);
    assert_eq!(components[0].kind, "task");

    let mut changes = backend.changes().expect("changes");
    let task = docker(&["ps", "-q", "--filter", &format!("label=esm.instance_id={}", instance.id)]);
    assert_eq!(task.lines().count(), 1, "one task container: {task}");
    docker(&["kill", &task]);
    let components = look_on_changes(&mut changes, backend.as_ref(), &instance, PROMPTLY, "the task down", |c| {
        statuses(c) == [("app.1", ComponentStatus::Down)]
    })
    .await;
    // The killed container's own state says "exited with code 137"; once swarm has
    // scheduled the replacement task (no container yet), the slot's newest task has
    // none, and the manager's error for the killed one speaks: "task: non-zero exit
    // (137)". Which one a look sees depends on swarm's timing.
    let why = reason(&components, "app.1");
    assert!(matches!(why, "exited with code 137" | "task: non-zero exit (137)"), "{why}");
    // Swarm starts a new task in the slot after its restart delay; its container's
    // start is a change too.
    look_on_changes(&mut changes, backend.as_ref(), &instance, Duration::from_secs(30), "the task replaced", |c| {
        statuses(c) == [("app.1", ComponentStatus::Up)]
    })
    .await;

    backend.deprovision(&instance, Some(&manifest)).await.expect("deprovision");
    assert_eq!(observe(backend.as_ref(), &instance).await, []);
}
