//! The Docker engine in tests: its CLI, an esm started on it, and the guard that
//! removes what a test's esm made.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::wait::within_blocking;
use super::{Client, Esm, StoreSetup, TempDir, temp_dir};

/// The test image (`tests/docker/build-test-images.sh`).
pub const IMAGE: &str = "esm-test/busybox:latest";

/// `docker <args>`, its stdout; panics if the CLI fails (no engine when one is required).
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("the docker CLI runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The `ESM_NAME` (owner label) of the esm a test runs in `dir`: tests run in parallel
/// on one engine, and each esm reconciles only what it made.
pub fn owner_of(dir: &TempDir) -> String {
    dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Starts esm on the engine with `backends`, its embedded store in `dir`, plus `extra`
/// settings. The engine must answer, or the test fails here (it never skips).
pub async fn start_on_engine(dir: &TempDir, backends: &str, extra: &[(&str, &str)]) -> Esm {
    docker(&["version", "--format", "{{.Server.Version}}"]);
    let name = owner_of(dir);
    let docker_host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let mut env = vec![
        ("ESM_BACKENDS", backends),
        ("ESM_PUBLISH_ADDRESS", "127.0.0.1"),
        ("ESM_DOCKER_PULL", "never"),
        ("ESM_DOCKER_READY_TIMEOUT", "30"),
        ("ESM_RECONCILE_INTERVAL", "1"),
        ("ESM_NAME", &name),
        ("DOCKER_HOST", &docker_host),
    ];
    env.extend_from_slice(extra);
    Esm::start_with(&StoreSetup::Embedded(dir.path().to_path_buf()), &env).await
}

/// An esm a test runs on the engine: the one way the Docker tier starts one.
pub struct OnEngine {
    /// The process (dropped, so killed, before its directory goes).
    pub esm: Esm,
    /// A client of it.
    pub client: Client,
    /// What the esm made, removed once the test is over, whatever became of it.
    pub cleanup: Cleanup,
    /// Where its embedded store lives; its name is the esm's owner label.
    pub dir: TempDir,
}

impl OnEngine {
    /// [`start_on_engine`] in a fresh directory named after `prefix`, a client, and the
    /// [`Cleanup`] of what it makes.
    pub async fn start(prefix: &str, backends: &str, extra: &[(&str, &str)]) -> OnEngine {
        let dir = temp_dir(prefix);
        let cleanup = Cleanup(owner_of(&dir));
        let esm = start_on_engine(&dir, backends, extra).await;
        let client = Client::new(&esm.api);
        OnEngine { esm, client, cleanup, dir }
    }

    /// [`OnEngine::start`] on the compose backend, with service `svc` and plan `plan`
    /// deployed by the compose file `manifest`.
    pub async fn compose(prefix: &str, manifest: &str) -> OnEngine {
        let on = Self::start(prefix, "docker-compose", &[]).await;
        on.client.register_manifest("docker-compose", manifest).await;
        on
    }

    /// The owner label of what this esm makes.
    pub fn owner(&self) -> String {
        owner_of(&self.dir)
    }
}

/// A compose file whose service `web` runs the test image's httpd on port 8080 (serving
/// `/`): `web_extra` adds lines to `web`, `rest` more services or top-level keys.
pub fn httpd_manifest(web_extra: &str, rest: &str) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/\"]\n{web_extra}{rest}"
    )
}

/// `web_extra` of [`httpd_manifest`] publishing its port.
pub const PUBLISHED: &str = "    ports: [\"8080\"]\n";

/// A name of a test's own: `prefix-<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The `docker … --filter` of what instance `id` holds.
pub fn instance_filter(id: &str) -> String {
    format!("label=esm.instance_id={id}")
}

/// Everything on the engine that carries instance `id`'s label: containers, networks
/// and volumes.
pub fn leftovers(id: &str) -> Vec<String> {
    let filter = instance_filter(id);
    let mut found = Vec::new();
    for kind in [["ps", "-a"].as_slice(), &["network", "ls"], &["volume", "ls"]] {
        let mut args = kind.to_vec();
        args.extend(["-q", "--filter", &filter]);
        found.extend(docker(&args).lines().map(|l| format!("{} {l}", kind[0])));
    }
    found
}

/// Provisions `id` on `plan` of service `svc` asynchronously (202) and waits, for up to a
/// minute, until its operation is final: the last_operation's body.
pub async fn provision_and_wait(client: &Client, id: &str, plan: &str) -> Value {
    let (status, reply) = client.provision_on(id, plan, true).await;
    assert_eq!(status, 202, "{reply}");
    let (status, body) = client.settle(id, Duration::from_secs(60)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Deprovisions `id` asynchronously (202), waits up to `limit` until it is gone (410),
/// and asserts nothing of it is left on the engine.
pub async fn deprovision_and_wait(client: &Client, id: &str, limit: Duration) {
    let (status, body) = client.deprovision(id, true).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(client.settle(id, limit).await.0, 410);
    assert_eq!(leftovers(id), Vec::<String>::new());
}

/// Removes everything labelled with its owner when dropped: services, containers,
/// networks, volumes. Best effort, and never panics (it runs after a failed test too).
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=esm.owner={}", self.0);
        let listed = |args: &[&str]| -> Vec<String> {
            let out = Command::new("docker").args(args).output().map(|o| o.stdout).unwrap_or_default();
            String::from_utf8_lossy(&out).lines().map(str::to_owned).collect()
        };
        let remove = |what: &[&str], ids: Vec<String>| {
            if !ids.is_empty() {
                let _ = Command::new("docker").args(what).args(&ids).output();
            }
        };
        remove(&["service", "rm"], listed(&["service", "ls", "-q", "--filter", &filter]));
        // A removed service's task containers stop on their own; the networks are free after.
        within_blocking(Duration::from_secs(30), || {
            let containers = listed(&["ps", "-aq", "--filter", &filter]);
            let gone = containers.is_empty();
            remove(&["rm", "-f", "-v"], containers);
            gone.then_some(())
        });
        remove(&["network", "rm"], listed(&["network", "ls", "-q", "--filter", &filter]));
        remove(&["volume", "rm", "-f"], listed(&["volume", "ls", "-q", "--filter", &filter]));
    }
}
