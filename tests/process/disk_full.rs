//! The embedded store on a disk that fills up, with the real `esm` binary: its data
//! directory on a small tmpfs, filled with a filler file. Writes get 503 with the OSB
//! error body and `Retry-After`, `/health` says the store cannot write, reads go on;
//! once the filler is deleted, writes succeed again without a restart, and nothing that
//! was acknowledged is lost. Started on a full disk with its data, esm serves reads and
//! reports it cannot write; with a new data directory, it stops saying why.
//!
//! Mounting needs root: these run when the build saw `ESM_TEST_ROOT` (CI sets it), and
//! are ignored with that reason otherwise.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::support::{self, Client, Esm, StoreSetup, eventually, temp_dir};

/// A tmpfs mounted on a temporary directory for the test's life.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("esm-disk-full");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount a tmpfs on {} (root is needed)", dir.path().display());
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: an esm still closing its file must not leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with a filler file, to the last block.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    for chunk in [1 << 20, 4096] {
        let bytes = vec![0xa5_u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    let _ = file.sync_all();
    path
}

/// An OSB error body: `error` and `description`.
fn assert_osb_error(body: &Value) {
    assert!(body["error"].is_string() && body["description"].is_string(), "an OSB error body: {body}");
}

/// `/health`: its status and the store check's output.
async fn health(esm: &Esm) -> (u16, String) {
    let response = support::get(format!("{}/health", esm.ops)).await.expect("/health answers");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    let store = body["results"]
        .as_array()
        .and_then(|results| results.iter().find(|r| r["checker"].as_str().is_some_and(|c| c.starts_with("store:"))))
        .cloned()
        .unwrap_or_else(|| panic!("a store check: {body}"));
    assert_eq!(store["passed"] == Value::Bool(true), status == 200, "{body}");
    (status, store["output"].as_str().unwrap_or_default().to_owned())
}

/// Provisions new instances until one is refused with 503 (at most 300 tries: the
/// file's free pages take a few writes first); the acknowledged ones go to `acked`, and
/// one whose outcome could not be recorded (500, to be polled) to neither.
async fn provision_until_refused(client: &Client, prefix: &str, acked: &mut BTreeSet<String>) -> Value {
    for n in 0..300 {
        let id = format!("{prefix}-{n}");
        let (status, body) = client.provision(&id, false).await;
        match status {
            200..=202 => {
                acked.insert(id);
            }
            503 => return body,
            // Its operation was written and run, then its outcome could not be: not a
            // 503, since it may still happen (it is finished once the disk has room).
            500 if outcome_unknown(&body) => {}
            other => panic!("{id}: {other} {body}"),
        }
    }
    panic!("300 provisions went through on a full disk");
}

/// A 500 that names the operation to poll: it ran, but its outcome was not recorded.
fn outcome_unknown(body: &Value) -> bool {
    body["description"].as_str().is_some_and(|d| d.contains("poll last_operation"))
}

/// Every acknowledged instance reads back (its last operation succeeded).
async fn assert_readable(client: &Client, acked: &BTreeSet<String>) {
    for id in acked {
        let (status, body) =
            client.send(Method::GET, &format!("/v2/service_instances/{id}/last_operation"), None).await;
        assert_eq!((status, body["state"].as_str()), (200, Some("succeeded")), "{id}: {body}");
    }
    let (status, listed) = client.send(Method::GET, "/v2/et/service_instances", None).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed.as_array().is_some_and(|all| all.len() >= acked.len()), "{listed}");
    if let Some(id) = acked.first() {
        let (status, bindings) =
            client.send(Method::GET, &format!("/v2/et/service_instances/{id}/bindings"), None).await;
        assert_eq!((status, bindings["bindings"].as_array().map(Vec::len)), (200, Some(0)), "{bindings}");
    }
}

/// Deletes the filler, then provisions until one succeeds; how long that took.
async fn free_and_write(client: &Client, filler: &Path, acked: &mut BTreeSet<String>) -> Duration {
    std::fs::remove_file(filler).expect("filler removed");
    let freed = Instant::now();
    let id = eventually(Duration::from_secs(30), "a write after the disk was freed", || async {
        let id = format!("after-{}", uuid::Uuid::new_v4().simple());
        let (status, body) = client.provision(&id, false).await;
        assert!(matches!(status, 201 | 503) || status == 500 && outcome_unknown(&body), "{id}: {status} {body}");
        (status == 201).then_some(id)
    })
    .await;
    let took = freed.elapsed();
    println!("the first write succeeded {took:?} after the disk was freed");
    acked.insert(id);
    took
}

/// Provisions `before-0` to `before-9`, each acknowledged (201), into `acked`.
async fn provision_ten(client: &Client, acked: &mut BTreeSet<String>) {
    for n in 0..10 {
        let (status, body) = client.provision(&format!("before-{n}"), false).await;
        assert_eq!(status, 201, "{body}");
        acked.insert(format!("before-{n}"));
    }
}

/// Kills `esm` with SIGKILL, starts it again on `store`, and asserts nothing acknowledged
/// is lost.
async fn assert_nothing_lost_after_a_kill(esm: Esm, store: &StoreSetup, acked: &BTreeSet<String>) {
    esm.kill_hard();
    let esm = Esm::start(store).await;
    assert_readable(&Client::new(&esm.api), acked).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(not(esm_test_root), ignore = "needs root to mount a tmpfs: set ESM_TEST_ROOT=1")]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_without_a_restart() {
    let _machine = support::machine::timed().await;
    let disk = Tmpfs::mount("16m");
    let store = StoreSetup::Embedded(disk.path().join("data"));
    let esm = Esm::start_with(&store, &[("ESM_RETRY_AFTER", "3")]).await;
    let client = Client::new(&esm.api);
    client.register("x-esm-dummy: {mode: sync}").await;
    let mut acked = BTreeSet::new();
    provision_ten(&client, &mut acked).await;
    assert_eq!(health(&esm).await, (200, "the store reads and writes".to_owned()));

    let filler = fill(disk.path());
    let refused = provision_until_refused(&client, "full", &mut acked).await;
    assert_osb_error(&refused);
    let description = refused["description"].as_str().unwrap_or_default();
    assert!(description.contains("cannot write") && description.contains("No space left on device"), "{refused}");
    // Refused at once from now on, with Retry-After.
    let response = support::http()
        .put(format!("{}/v2/service_instances/refused", esm.api))
        .header("X-Broker-API-Version", "2.17")
        .json(&serde_json::json!({"service_id": "svc", "plan_id": "plan", "organization_guid": "o", "space_guid": "s"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
    assert_osb_error(&response.json().await.expect("JSON"));
    let (status, output) = health(&esm).await;
    assert_eq!(status, 503, "{output}");
    assert!(output.contains("the store cannot write: No space left on device"), "{output}");
    assert_readable(&client, &acked).await;

    let took = free_and_write(&client, &filler, &mut acked).await;
    assert!(took < Duration::from_secs(10), "writes resumed after {took:?}");
    assert_eq!(health(&esm).await, (200, "the store reads and writes".to_owned()));
    let (status, _) = client.send(Method::GET, "/v2/service_instances/refused/last_operation", None).await;
    assert_ne!(status, 200, "a provision answered 503 did not happen");

    // Nothing acknowledged is lost: all there after a kill -9 and a restart.
    assert_nothing_lost_after_a_kill(esm, &store, &acked).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(not(esm_test_root), ignore = "needs root to mount a tmpfs: set ESM_TEST_ROOT=1")]
async fn started_on_a_full_disk_it_serves_reads_and_is_unhealthy_until_it_can_write() {
    let disk = Tmpfs::mount("16m");
    let store = StoreSetup::Embedded(disk.path().join("data"));
    let mut acked = BTreeSet::new();
    {
        let (esm, client) = Esm::start_registered(&store, "x-esm-dummy: {mode: sync}").await;
        provision_ten(&client, &mut acked).await;
        esm.terminate();
        assert!(esm.wait().success(), "a clean stop");
    }

    let filler = fill(disk.path());
    let esm = Esm::start(&store).await;
    let client = Client::new(&esm.api);
    assert_readable(&client, &acked).await;
    // The file's free pages may take a few writes; then the disk refuses them.
    provision_until_refused(&client, "full", &mut acked).await;
    let (status, output) = health(&esm).await;
    assert_eq!(status, 503, "{output}");
    assert!(output.contains("No space left on device"), "{output}");
    // Reads never fail because a write did: every one of them, many times over.
    for _ in 0..5 {
        assert_readable(&client, &acked).await;
    }

    free_and_write(&client, &filler, &mut acked).await;
    assert_eq!(health(&esm).await.0, 200);
    assert_nothing_lost_after_a_kill(esm, &store, &acked).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(not(esm_test_root), ignore = "needs root to mount a tmpfs: set ESM_TEST_ROOT=1")]
async fn a_new_data_directory_on_a_full_disk_stops_esm_saying_why() {
    let disk = Tmpfs::mount("4m");
    fill(disk.path());
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_esm"))
            .env_clear()
            .env("ESM_DATA_DIR", disk.path().join("data"))
            .env("ESM_PORT", "0")
            .env("ESM_CHECK_PORT", "0")
            .env("ESM_BACKENDS", "dummy")
            .output(),
    )
    .await
    .expect("esm exits by itself")
    .expect("esm runs");
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("cannot start") && log.contains("No space left on device"), "{log}");
}
