//! The Docker backends (docker-compose and docker-swarm) against a real Docker engine.
//!
//! Runs when `ESM_TEST_DOCKER=1` (CI installs and starts the engine and builds the test
//! image with `tests/docker/build-test-images.sh`). Without the variable they are
//! reported as ignored (see `build.rs`); with it and no engine, they fail. Containers are reached only through ports published
//! on 127.0.0.1, and no test pulls an image (`ESM_DOCKER_PULL=never`).

use std::process::Command;
use std::time::Duration;

use esm::backend::docker::project;
use reqwest::Method;
use serde_json::json;

use crate::support::docker::{
    IMAGE, OnEngine, deprovision_and_wait, docker, instance_filter, leftovers, owner_of, provision_and_wait,
    start_on_engine, unique,
};
use crate::support::{self, Client, eventually, temp_dir};

fn web_manifest() -> String {
    format!(
        r#"version: "3.8"
x-esm-credentials:
  greeting: {{service: web, env: GREETING}}
  realm: esm-tests
services:
  web:
    image: {IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    environment: {{GREETING: hello}}
    ports: ["8080"]
    volumes: ["data:/data"]
  worker:
    image: {IMAGE}
    command: ["sleep", "3600"]
    depends_on: [web]
volumes:
  data:
"#
    )
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_compose_manifest_deploys_answers_binds_and_leaves_no_trace() {
    let OnEngine { dir, esm: _esm, client, cleanup: _cleanup } = OnEngine::compose("esm-docker", &web_manifest()).await;
    let id = unique("web");
    let done = provision_and_wait(&client, &id, "plan").await;
    assert_eq!(done["state"], "succeeded", "{done}");

    // The instance view: the original's flat keys and the structured form.
    let (status, view) = client.view(&id).await;
    assert_eq!(status, 200, "{view}");
    let context = view["context"].as_object().expect("context");
    let web = format!("{}_web", project(&owner_of(&dir), &id));
    assert_eq!(context[&format!("{web}_state")], "Up", "{view}");
    assert_eq!(context[&format!("{web}_image_name")], IMAGE);
    assert_eq!(context[&format!("{web}_environment_GREETING")], "hello");
    assert!(context[&format!("{web}_Ip")].as_str().is_some_and(|ip| !ip.is_empty()), "{view}");
    assert_eq!(context[&format!("{web}_8080/tcp/HostIp")], "127.0.0.1");
    let port: u16 = context[&format!("{web}_8080/tcp/HostPort")]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a published port in {view}"));
    assert_eq!(view["state"]["state"], "succeeded");
    assert_eq!(view["deployment"].as_array().map(Vec::len), Some(2), "{view}");

    // The published port answers.
    let page = support::get(format!("http://127.0.0.1:{port}/index.html")).await.expect("the container answers");
    assert_eq!(page.text().await.expect("body").trim(), "hello from esm");

    // Binding: host and port per service, plus the manifest's x-esm-credentials.
    let (status, binding) = client.bind(&id, "b-1").await;
    assert_eq!(status, 201, "{binding}");
    assert_eq!(binding["credentials"]["host"], "127.0.0.1");
    assert_eq!(binding["credentials"]["services"]["web"]["ports"]["8080/tcp"], port);
    assert_eq!(binding["credentials"]["greeting"], "hello");
    assert_eq!(binding["credentials"]["realm"], "esm-tests");

    // Deprovision removes containers, networks and volumes.
    deprovision_and_wait(&client, &id, Duration::from_secs(60)).await;
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_fails_the_provision_and_leaves_nothing() {
    let manifest = format!(
        "services:\n  ok:\n    image: {IMAGE}\n    command: [sleep, '3600']\n  missing:\n    image: esm-test/never-built:1\n"
    );
    let on = OnEngine::compose("esm-docker", &manifest).await;
    let id = unique("missing");
    let done = provision_and_wait(&on.client, &id, "plan").await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(done["description"].as_str().is_some_and(|d| d.contains("esm-test/never-built:1")), "{done}");
    assert_eq!(leftovers(&id), Vec::<String>::new());
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_container_that_exits_fails_the_provision_and_is_removed() {
    let manifest = format!("services:\n  broken:\n    image: {IMAGE}\n    command: ['false']\n");
    let on = OnEngine::compose("esm-docker", &manifest).await;
    let id = unique("broken");
    // Synchronous this time: the error comes back in the response.
    let (status, body) = on.client.provision(&id, false).await;
    assert_eq!(status, 500, "{body}");
    assert!(body["description"].as_str().is_some_and(|d| d.contains("stopped")), "{body}");
    assert_eq!(leftovers(&id), Vec::<String>::new());
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn containers_of_unknown_instances_are_reconciled_away() {
    let ghost = unique("ghost");
    let dir = temp_dir("esm-docker");
    let owner = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    docker(&[
        "run",
        "-d",
        "--label",
        &format!("esm.instance_id={ghost}"),
        "--label",
        &format!("esm.owner={owner}"),
        IMAGE,
        "sleep",
        "3600",
    ]);
    let _esm = start_on_engine(&dir, "docker-compose", &[]).await;
    eventually(Duration::from_secs(30), "the orphaned container to be removed", || async {
        leftovers(&ghost).is_empty().then_some(())
    })
    .await;
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn an_update_recreates_the_containers_and_keeps_named_volumes() {
    let OnEngine { dir, esm: _esm, client, cleanup: _cleanup } = OnEngine::compose("esm-docker", &web_manifest()).await;
    let id = unique("update");
    assert_eq!(client.provision(&id, false).await.0, 201);
    let filter = instance_filter(&id);
    let before = docker(&["ps", "-q", "--filter", &filter]);
    let volumes = docker(&["volume", "ls", "-q", "--filter", &filter]);
    assert_eq!(volumes, format!("{}_data", project(&owner_of(&dir), &id)));
    let (status, body) = client
        .send(
            Method::PATCH,
            &format!("/v2/service_instances/{id}"),
            Some(&json!({"service_id": "svc", "parameters": {"MODE": "b"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after = docker(&["ps", "-q", "--filter", &filter]);
    assert_ne!(before, after, "containers were recreated");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &filter]), volumes, "the named volume was kept");
    let env =
        docker(&["inspect", "--format", "{{json .Config.Env}}", &format!("{}_web", project(&owner_of(&dir), &id))]);
    assert!(env.contains("MODE=b"), "{env}");
    assert_eq!(client.deprovision(&id, false).await.0, 200);
    assert_eq!(leftovers(&id), Vec::<String>::new());
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_deploys_as_swarm_services_and_leaves_no_trace() {
    assert_eq!(
        docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        "active",
        "the swarm tests need a single-node swarm (docker swarm init --advertise-addr 127.0.0.1)"
    );
    let dir = temp_dir("esm-swarm");
    // Host-mode publishing: this sandbox's kernel lacks what the ingress routing mesh
    // needs. On a port of the test's choosing: an ephemeral one can be handed to a
    // compose test's container running alongside, and the test would reach that.
    let port = support::free_port().to_string();
    let range = format!("{port}-{port}");
    let esm = start_on_engine(&dir, "docker-swarm", &[("ESM_HOST_PORT_RANGE", &range)]).await;
    let client = Client::new(&esm.api);
    let manifest = web_manifest()
        .replace(r#"ports: ["8080"]"#, &format!("ports: [{{target: 8080, published: {port}, mode: host}}]"));
    client.register_manifest("docker-swarm", &manifest).await;
    let id = unique("swarm");
    let done = provision_and_wait(&client, &id, "plan").await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(docker(&["service", "ls", "-q", "--filter", &instance_filter(&id)]).lines().count(), 2);

    let (status, binding) = client.bind(&id, "b-1").await;
    assert_eq!(status, 201, "{binding}");
    assert_eq!(binding["credentials"]["greeting"], "hello");
    assert_eq!(binding["credentials"]["services"]["web"]["ports"]["8080/tcp"].to_string(), port, "{binding}");
    let url = format!("http://127.0.0.1:{port}/index.html");
    let page = eventually(Duration::from_secs(30), "the swarm service to answer", || async {
        let r = support::get(&url).await.ok().filter(|r| r.status().is_success())?;
        r.text().await.ok()
    })
    .await;
    assert_eq!(page.trim(), "hello from esm");

    let (status, view) = client.view(&id).await;
    assert_eq!(status, 200);
    assert_eq!(view["state"]["state"], "succeeded", "{view}");

    deprovision_and_wait(&client, &id, Duration::from_secs(90)).await;
    assert_eq!(docker(&["service", "ls", "-q", "--filter", &instance_filter(&id)]), "");
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_provision_interrupted_by_kill_9_is_finished_after_restart() {
    let OnEngine { dir, esm, client, cleanup: _cleanup } = OnEngine::compose("esm-docker-crash", &web_manifest()).await;
    let id = unique("crash");
    assert_eq!(client.provision(&id, true).await.0, 202);
    // Mid-deployment: killed as soon as the first container exists.
    let containers = instance_filter(&id);
    eventually(Duration::from_secs(30), "the deployment's first container", || async {
        (!docker(&["ps", "-aq", "--filter", &containers]).is_empty()).then_some(())
    })
    .await;
    esm.kill_hard();

    let esm = start_on_engine(&dir, "docker-compose", &[]).await;
    let client = Client::new(&esm.api);
    let (status, done) = client.settle(&id, Duration::from_secs(60)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &containers]).lines().count(),
        2,
        "one container per service, no duplicates"
    );
    assert_eq!(client.deprovision(&id, false).await.0, 200);
    assert_eq!(leftovers(&id), Vec::<String>::new());
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_never_reaches_another_instances_resources_or_a_host_path() {
    let dir = temp_dir("esm-policy");
    let esm = start_on_engine(&dir, "docker-compose", &[("ESM_DOCKER_ALLOW_EXTERNAL", "true")]).await;
    let client = Client::new(&esm.api);
    let plans = ["victim", "steal-volume", "join-network", "bind-in-disguise", "plain-external"];
    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
        "plans": plans.iter().map(|p| json!({"id": p, "name": p, "description": "d"})).collect::<Vec<_>>()});
    assert_eq!(client.send(Method::PUT, "/v2/et/catalog", Some(&service)).await.0, 201);
    let register = |plan: &'static str, content: String| {
        let client = Client::new(&esm.api);
        async move {
            let manifest = json!({"service_id": "svc", "plan_id": plan, "manifest_type": "docker-compose",
                                  "manifest_content": content});
            let (status, body) = client.send(Method::PUT, &format!("/v2/et/manifest/m-{plan}"), Some(&manifest)).await;
            assert_eq!(status, 201, "{plan}: {body}");
        }
    };
    let sleeper = |extra: &str| format!("services:\n  app:\n    image: {IMAGE}\n    command: [sleep, '3600']\n{extra}");
    register("victim", sleeper("    volumes: ['data:/data']\nvolumes:\n  data:\n")).await;
    let victim = unique("victim");
    assert_eq!(provision_and_wait(&client, &victim, "victim").await["state"], "succeeded");
    let victim_filter = instance_filter(&victim);
    let victim_volume = docker(&["volume", "ls", "-q", "--filter", &victim_filter]);
    let victim_network = docker(&["network", "ls", "--format", "{{.Name}}", "--filter", &victim_filter]);
    assert!(!victim_volume.is_empty() && !victim_network.is_empty());

    // A host directory behind a volume's driver options: a bind mount in disguise.
    let host_dir = temp_dir("esm-policy-host");
    let disguised = unique("esm-test-bind");
    let device = format!("device={}", host_dir.path().display());
    docker(&["volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", &device, &disguised]);
    let plain = unique("esm-test-plain");
    docker(&["volume", "create", &plain]);

    let external_volume = |name: &str| {
        sleeper(&format!("    volumes: ['loot:/loot']\nvolumes:\n  loot: {{external: true, name: {name}}}\n"))
    };
    register("steal-volume", external_volume(&victim_volume)).await;
    register(
        "join-network",
        sleeper(&format!("    networks: [n]\nnetworks:\n  n: {{external: true, name: {victim_network}}}\n")),
    )
    .await;
    register("bind-in-disguise", external_volume(&disguised)).await;
    register("plain-external", external_volume(&plain)).await;
    for (plan, expected) in [
        ("steal-volume", "belongs to an esm instance"),
        ("join-network", "belongs to an esm instance"),
        ("bind-in-disguise", "ESM_DOCKER_ALLOW_BIND_MOUNTS"),
    ] {
        let id = unique(plan);
        let done = provision_and_wait(&client, &id, plan).await;
        assert_eq!(done["state"], "failed", "{plan}: {done}");
        assert!(done["description"].as_str().is_some_and(|d| d.contains(expected)), "{plan}: {done}");
        assert_eq!(leftovers(&id), Vec::<String>::new(), "{plan}");
    }
    // A plain volume the operator made is fine, and outlives the instance.
    let id = unique("plain");
    assert_eq!(provision_and_wait(&client, &id, "plain-external").await["state"], "succeeded");
    for instance in [&id, &victim] {
        let (status, body) = client
            .send(Method::DELETE, &format!("/v2/service_instances/{instance}?service_id=svc&plan_id=x"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(leftovers(instance), Vec::<String>::new());
    }
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &format!("name={plain}")]), plain);
    docker(&["volume", "rm", &plain, &disguised]);
}

/// Registers service `svc` with one plan per `(plan, manifest_type, manifest_content)`.
async fn register_plans(client: &Client, plans: &[(&str, &str, &str)]) {
    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
        "plans": plans.iter().map(|(p, _, _)| json!({"id": p, "name": p, "description": "d"})).collect::<Vec<_>>()});
    assert_eq!(client.send(Method::PUT, "/v2/et/catalog", Some(&service)).await.0, 201);
    for (plan, manifest_type, content) in plans {
        let manifest = json!({"service_id": "svc", "plan_id": plan, "manifest_type": manifest_type,
                              "manifest_content": content});
        let (status, body) = client.send(Method::PUT, &format!("/v2/et/manifest/m-{plan}"), Some(&manifest)).await;
        assert_eq!(status, 201, "{plan}: {body}");
    }
}

/// Whether `name` resolves on the networks of container `id` (the engine's DNS).
fn resolves_in(id: &str, name: &str) -> bool {
    let out = Command::new("docker")
        .args(["exec", id, "busybox", "nslookup", name, "127.0.0.11"])
        .output()
        .expect("the docker CLI runs");
    out.status.success()
}

/// One manifest on both backends: the volume's manifest labels, the `hostname` on the
/// network and the wait for a healthy dependency come out the same (swarm's volumes
/// once lacked the manifest's labels).
#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn compose_and_swarm_deploy_one_manifest_alike() {
    assert_eq!(docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]), "active", "the swarm tests need a swarm");
    let dir = temp_dir("esm-alike");
    let esm = start_on_engine(&dir, "docker-compose,docker-swarm", &[]).await;
    let client = Client::new(&esm.api);
    // No published ports: everything checked here happens inside the instance network.
    let manifest = format!(
        r#"services:
  web:
    image: {IMAGE}
    command: [httpd, -f, -p, "8080", -h, /www]
    hostname: web-host
    healthcheck: {{test: [CMD, "true"], interval: 1s}}
    volumes: ["data:/data"]
  worker:
    image: {IMAGE}
    command: [sleep, "3600"]
    depends_on: {{web: {{condition: service_healthy}}}}
volumes:
  data: {{labels: {{backup: daily}}}}
"#
    );
    register_plans(&client, &[("compose", "docker-compose", &manifest), ("swarm", "docker-swarm", &manifest)]).await;
    for plan in ["compose", "swarm"] {
        let id = unique(&format!("alike-{plan}"));
        let done = provision_and_wait(&client, &id, plan).await;
        assert_eq!(done["state"], "succeeded", "{plan}: {done}");
        // The manifest's volume labels are on the volume, whoever made it.
        let filter = instance_filter(&id);
        let volume = docker(&["volume", "ls", "-q", "--filter", &filter]);
        assert_eq!(
            docker(&["volume", "inspect", "--format", "{{index .Labels \"backup\"}}", &volume]),
            "daily",
            "{plan}"
        );
        // The web service answers to its hostname on the instance network (swarm's
        // executor adds it to a task's aliases by itself; esm now asks for it as well).
        let worker = docker(&["ps", "-q", "--filter", &filter, "--filter", "label=esm.service=worker"]);
        assert!(!worker.is_empty(), "{plan}: the worker runs");
        eventually(Duration::from_secs(10), &format!("{plan}: web-host to resolve"), || async {
            resolves_in(&worker, "web-host").then_some(())
        })
        .await;
        assert!(!resolves_in(&worker, "no-such-host"), "{plan}: nslookup tells a miss");

        let path = format!("/v2/service_instances/{id}?service_id=svc&plan_id={plan}&accepts_incomplete=true");
        assert_eq!(client.send(Method::DELETE, &path, None).await.0, 202, "{plan}");
        assert_eq!(client.settle(&id, Duration::from_secs(90)).await.0, 410, "{plan}");
        assert_eq!(leftovers(&id), Vec::<String>::new(), "{plan}");
    }
}
