//! The Docker engine in tests: its CLI, an esm started on it, and the guard that
//! removes what a test's esm made.

use std::process::Command;
use std::time::Duration;

use super::wait::within_blocking;
use super::{Esm, StoreSetup, TempDir};

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
