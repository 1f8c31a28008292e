//! Two esm deployments on one Docker engine: each names what it makes from its own
//! `ESM_NAME`, finds it by its labels and removes it by the engine's id, so neither
//! ever touches the other's objects, even for the same instance id, and even objects
//! an earlier esm made under the names it gave then (`esm-<id>_…` for every
//! deployment, which is how two deployments once collided).
//!
//! Runs when `ESM_TEST_DOCKER=1` (CI starts the engine and builds the test image with
//! `tests/docker/build-test-images.sh`); reported as ignored without it.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::support::docker::{Cleanup, IMAGE, OnEngine, docker, owner_of, start_on_engine, unique};
use crate::support::{Client, eventually, temp_dir};

/// A service that stops at once on SIGTERM, with a named volume: a container or
/// service, a network and a volume per deployment.
fn manifest() -> String {
    format!(
        r#"services:
  app:
    image: {IMAGE}
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumes: ["data:/data"]
volumes:
  data:
"#
    )
}

/// What carries all these labels on the engine, as `<kind> <name>`: containers,
/// networks, volumes and swarm services.
fn labelled(labels: &[String]) -> Vec<String> {
    let mut filters = Vec::new();
    for label in labels {
        filters.extend(["--filter".to_owned(), format!("label={label}")]);
    }
    let mut found = Vec::new();
    for (kind, list) in [
        ("container", ["ps", "-a", "--format", "{{.Names}}"].as_slice()),
        ("network", &["network", "ls", "--format", "{{.Name}}"]),
        ("volume", &["volume", "ls", "--format", "{{.Name}}"]),
        ("service", &["service", "ls", "--format", "{{.Name}}"]),
    ] {
        let out = Command::new("docker").args(list).args(&filters).output().expect("the docker CLI runs");
        // `service ls` fails on an engine that is no swarm manager: it holds no services.
        if out.status.success() || kind != "service" {
            assert!(out.status.success(), "docker {list:?}: {}", String::from_utf8_lossy(&out.stderr));
            found.extend(String::from_utf8_lossy(&out.stdout).lines().map(|name| format!("{kind} {name}")));
        }
    }
    found.sort();
    found
}

/// What the deployment `owner` holds for `instance_id`.
fn held_by(owner: &str, instance_id: &str) -> Vec<String> {
    labelled(&[format!("esm.owner={owner}"), format!("esm.instance_id={instance_id}")])
}

async fn deprovision(client: &Client, id: &str) {
    let (status, body) = client.deprovision(id, true).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = client.settle(id, Duration::from_secs(90)).await;
    assert_eq!(status, 410, "{body}");
}

/// Both deployments provision the same instance id; removing one leaves the other's
/// objects in place and its instance working; then nothing is left.
async fn two_deployments_keep_apart(manifest_type: &str) {
    let dirs = [temp_dir("esm-one"), temp_dir("esm-two")];
    let owners = dirs.each_ref().map(owner_of);
    let _cleanups = owners.clone().map(Cleanup);
    let mut clients = Vec::new();
    let mut esms = Vec::new();
    for dir in &dirs {
        let esm = start_on_engine(dir, manifest_type, &[]).await;
        let client = Client::new(&esm.api);
        client.register_manifest(manifest_type, &manifest()).await;
        clients.push(client);
        esms.push(esm);
    }
    let id = unique("shared");
    for client in &clients {
        let (status, body) = client.provision(&id, true).await;
        assert_eq!(status, 202, "{body}");
        let (status, body) = client.settle(&id, Duration::from_secs(60)).await;
        assert_eq!((status, body["state"].as_str()), (200, Some("succeeded")), "{body}");
    }
    let held = owners.each_ref().map(|owner| held_by(owner, &id));
    let unit = if manifest_type == "docker-swarm" { "service " } else { "container " };
    for (owner, objects) in owners.iter().zip(&held) {
        for kind in [unit, "network ", "volume "] {
            assert!(objects.iter().any(|o| o.starts_with(kind)), "{owner} holds a {kind}: {objects:?}");
        }
    }
    assert!(held[0].iter().all(|object| !held[1].contains(object)), "no name is both deployments': {held:?}");

    deprovision(&clients[0], &id).await;
    assert_eq!(held_by(&owners[0], &id), Vec::<String>::new(), "the first deployment's objects are gone");
    assert_eq!(held_by(&owners[1], &id), held[1], "the second deployment's objects are untouched");
    let (status, view) = clients[1].view(&id).await;
    assert_eq!((status, &view["state"]["state"]), (200, &serde_json::json!("succeeded")), "{view}");

    deprovision(&clients[1], &id).await;
    assert_eq!(labelled(&[format!("esm.instance_id={id}")]), Vec::<String>::new(), "nothing leaks");
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn two_compose_deployments_provision_one_instance_id_and_never_touch_each_other() {
    two_deployments_keep_apart("docker-compose").await;
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn two_swarm_deployments_provision_one_instance_id_and_never_touch_each_other() {
    assert_eq!(docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]), "active", "the swarm tests need a swarm");
    two_deployments_keep_apart("docker-swarm").await;
}

/// Makes a network through the API, which (unlike the CLI) lets an engine before API
/// 1.44 make a second network of a name it has: how the collision began. Returns its
/// id and name; a newer engine refuses the duplicate, and the network gets a name of
/// its own.
async fn old_network(name: &str, owner: &str, instance_id: &str) -> (String, String) {
    let docker = bollard::Docker::connect_with_defaults().expect("a Docker client");
    let labels = HashMap::from([
        ("esm.owner".to_owned(), owner.to_owned()),
        ("esm.instance_id".to_owned(), instance_id.to_owned()),
    ]);
    for name in [name.to_owned(), format!("{name}-{owner}")] {
        let request = bollard::models::NetworkCreateRequest {
            name: name.clone(),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        if let Ok(made) = docker.create_network(request).await {
            return (made.id, name);
        }
    }
    panic!("cannot make network {name}");
}

/// An earlier esm named every deployment's objects `esm-<id>_…`: this deployment's are
/// found by its labels and removed by id; another deployment's network of the very
/// same name stays.
#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn objects_an_earlier_esm_named_are_removed_by_label_and_id_and_no_others() {
    let dir = temp_dir("esm-old-names");
    let (owner, other, ghost) = (owner_of(&dir), unique("other"), unique("ghost"));
    let _cleanups = (Cleanup(owner.clone()), Cleanup(other.clone()));
    let old = format!("esm-{ghost}");
    let labels = [format!("esm.owner={owner}"), format!("esm.instance_id={ghost}")];
    old_network(&format!("{old}_default"), &owner, &ghost).await;
    let (_, others) = old_network(&format!("{old}_default"), &other, &ghost).await;
    let label_args = ["--label", &labels[0], "--label", &labels[1]];
    docker(&[&["volume", "create"], label_args.as_slice(), &[&format!("{old}_data")]].concat());
    // On the default bridge: an engine in a swarm cannot attach a container to one of
    // two networks of one name, even by id.
    let container = format!("{old}_app");
    let run = [&["run", "-d", "--name", &container], label_args.as_slice()].concat();
    docker(&[run.as_slice(), &[IMAGE, "sleep", "3600"]].concat());
    assert_eq!(held_by(&owner, &ghost).len(), 3, "{:?}", held_by(&owner, &ghost));

    // Reconciliation takes them for an instance esm does not know.
    let _esm = start_on_engine(&dir, "docker-compose", &[]).await;
    eventually(Duration::from_secs(30), "the earlier esm's objects to be removed", || async {
        held_by(&owner, &ghost).is_empty().then_some(())
    })
    .await;
    assert_eq!(held_by(&other, &ghost), [format!("network {others}")], "the other deployment's network stays");
}

/// The names esm would give are taken by another deployment's objects (as when an
/// earlier esm named every deployment's objects alike): the provision fails saying so,
/// and mounts or joins nothing of theirs.
#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn names_taken_by_another_deployment_are_refused_never_shared() {
    let other = unique("other");
    let _theirs = Cleanup(other.clone());
    let on = OnEngine::compose("esm-taken", &manifest()).await;
    let (client, owner) = (&on.client, on.owner());
    let project = esm::backend::docker::project(&owner, "taken");
    let theirs = ["--label", &format!("esm.owner={other}"), "--label", "esm.instance_id=taken"];
    for (kind, what) in [("volume", "data"), ("network", "default")] {
        let name = format!("{project}_{what}");
        docker(&[&[kind, "create"], theirs.as_slice(), &[&name]].concat());
        let (status, body) = client.provision("taken", false).await;
        assert_eq!(status, 500, "{body}");
        let expected = format!("{kind} {name} exists and is not this instance's");
        assert!(body["description"].as_str().is_some_and(|d| d.contains(&expected)), "{body}");
        assert_eq!(held_by(&owner, "taken"), Vec::<String>::new(), "the failed provision left nothing");
        assert_eq!(held_by(&other, "taken"), [format!("{kind} {name}")], "theirs stays");
        docker(&[kind, "rm", &name]);
    }
}
