//! The first minutes with esm, run as a newcomer runs it: the real binary, its output
//! sent to a file or a pipe, the CLI piped into `head`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{self, Client, Esm, StoreSetup, eventually, temp_dir};

/// Text logs written to a file carry no ANSI escape codes.
#[tokio::test]
async fn text_logs_redirected_to_a_file_have_no_colour_codes() {
    let dir = temp_dir("esm-log-colour");
    let log = dir.path().join("esm.log");
    let esm =
        Esm::start_logging(&StoreSetup::Embedded(dir.path().join("data")), &[("ESM_LOG_FORMAT", "text")], Some(&log))
            .await;
    // A request, so the audit line (the most decorated one) is in the log too.
    let client = support::http();
    let r = client.get(format!("{}/v2/catalog", esm.api)).header("X-Broker-API-Version", "2.17").send().await;
    assert_eq!(r.expect("answers").status().as_u16(), 200);
    let text = eventually(Duration::from_secs(10), "the audit line in the log", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("request served").then_some(text)
    })
    .await;
    let serving = text.lines().find(|l| l.contains("esm is serving")).unwrap_or_else(|| panic!("{text}"));
    // Where to go next, in the start line: the pages and the health check as a browser on
    // this machine reaches them, and what deploys.
    for field in ["ui=http://127.0.0.1:", "dashboard=http://127.0.0.1:", "health=http://127.0.0.1:", "backends="] {
        assert!(serving.contains(field), "{field} in {serving}");
    }
    assert!(!text.contains('\u{1b}'), "escape codes in a log file: {text:?}");
}

/// `esm` with its stdout (or stderr) a pipe nobody reads any more, as in
/// `esm openapi | head` once `head` has exited: the write fails with EPIPE.
fn run_with_closed(stream: &str, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esm"));
    cmd.env_clear().args(args).stdin(Stdio::null());
    match stream {
        "stdout" => cmd.stdout(writer).stderr(Stdio::piped()),
        _ => cmd.stderr(writer).stdout(Stdio::piped()),
    };
    cmd.output().expect("esm runs")
}

#[test]
fn cli_output_into_a_closed_pipe_exits_quietly() {
    for args in [&["openapi"][..], &["--help"], &["--version"]] {
        let out = run_with_closed("stdout", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "esm {args:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "esm {args:?} complained: {stderr}");
    }
    // `esm health` reports on stderr; nothing listens on this port, so it is unhealthy.
    let port = support::free_port().to_string();
    let out = run_with_closed("stderr", &["--check-port", &port, "health"]);
    assert_eq!(out.status.code(), Some(1), "unhealthy, and no panic (101): {:?}", out.status);
}

/// A daemon whose stdout reader went away keeps serving, and says nothing about it on
/// stderr (once per log line, that would be a flood).
#[tokio::test]
async fn a_daemon_whose_log_reader_is_gone_keeps_serving_quietly() {
    let dir = temp_dir("esm-closed-stdout");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let store = StoreSetup::Embedded(dir.path().join("data"));
    // Its log goes into the closed pipe, so the test names the ports.
    let (port, check_port) = (support::free_port().to_string(), support::free_port().to_string());
    let args = ["--port", &port, "--check-port", &check_port];
    let mut esm = Esm::start_with_output(&store, &args, &[], (writer.into(), stderr.into())).await;
    assert!(esm.alive());
    drop(esm);
    let mut stderr = String::new();
    std::fs::File::open(&stderr_path).and_then(|mut f| f.read_to_string(&mut stderr)).expect("stderr");
    assert!(stderr.is_empty(), "{stderr}");
}

/// `--docker-allow-bind-mounts` alone means true; `ESM_...=false` and `=true` in the
/// environment still work.
#[tokio::test]
async fn bare_boolean_flags_and_boolean_variables_both_work() {
    let dir = temp_dir("esm-bool-flags");
    let esm = Esm::start_with_args(
        &StoreSetup::Embedded(dir.path().to_path_buf()),
        &["--docker-allow-bind-mounts"],
        &[("ESM_DOCKER_ALLOW_PRIVILEGED", "false"), ("ESM_DOCKER_ALLOW_EXTERNAL", "true")],
    )
    .await;
    let env: serde_json::Value =
        support::get(format!("{}/environment", esm.ops)).await.expect("answers").json().await.expect("JSON");
    let config = &env["config"];
    assert_eq!(config["ESM_DOCKER_ALLOW_BIND_MOUNTS"], true, "{config}");
    assert_eq!(config["ESM_DOCKER_ALLOW_PRIVILEGED"], false, "{config}");
    assert_eq!(config["ESM_DOCKER_ALLOW_EXTERNAL"], true, "{config}");
}

/// `/health`'s result for `checker`.
async fn health_of(ops: &str, checker: &str) -> (u16, Value) {
    let r = support::get(format!("{ops}/health")).await.expect("/health answers");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("JSON");
    let result = body["results"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["checker"] == checker).cloned())
        .unwrap_or_else(|| panic!("no {checker} in {body}"));
    (status, result)
}

/// A stand-in for the Docker engine on a unix socket: answers `/version` (and `[]` to
/// listings), enough for `/health`'s check.
async fn fake_engine(socket: &Path) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(socket).expect("binds the socket");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let path = String::from_utf8_lossy(&head).split_whitespace().nth(1).unwrap_or_default().to_owned();
                let body = if path.ends_with("/json") { "[]" } else { r#"{"Version":"0.0-fake","ApiVersion":"1.47"}"# };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    })
}

/// esm (its store in `dir`) with the Docker backend and `DOCKER_HOST` at a socket
/// that does not exist yet.
async fn esm_without_an_engine(dir: &Path, socket: &Path) -> Esm {
    let docker_host = format!("unix://{}", socket.display());
    let env = [("ESM_BACKENDS", "dummy,docker-compose"), ("DOCKER_HOST", docker_host.as_str())];
    Esm::start_with(&StoreSetup::Embedded(dir.join("data")), &env).await
}

/// No engine at start: esm serves anyway, `/health` says why the Docker backend is
/// unavailable, provisions fail at once with that reason, and once the engine's socket
/// appears esm uses it, with no restart.
#[tokio::test(flavor = "multi_thread")]
async fn esm_starts_without_the_docker_engine_and_connects_when_it_appears() {
    let dir = temp_dir("esm-no-engine");
    let socket = dir.path().join("docker.sock");
    let esm = esm_without_an_engine(dir.path(), &socket).await;

    let (status, docker) = health_of(&esm.ops, "backend:docker-compose").await;
    assert_eq!(status, 503, "a backend is down: {docker}");
    assert_eq!(docker["passed"], false, "{docker}");
    let reason = docker["output"].as_str().unwrap_or_default();
    assert!(reason.contains("no socket at") && reason.contains(&*socket.to_string_lossy()), "{reason}");
    assert_eq!(health_of(&esm.ops, "backend:dummy").await.1["passed"], true);

    // Registering needs no engine; provisioning says at once why it cannot work.
    let client = Client::new(&esm.api);
    let manifest = "services:\n  web:\n    image: esm-test/busybox:latest\n";
    client.register_manifest("docker-compose", manifest).await;
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(30), client.provision("now", false)).await.expect("no hang");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "OperationFailed", "{body}");
    assert!(body["description"].as_str().is_some_and(|d| d.contains("Docker engine is not available")), "{body}");
    assert_eq!(client.provision("later", true).await.0, 202);
    let (_, last) = client.settle("later", Duration::from_secs(30)).await;
    assert_eq!(last["state"], "failed", "{last}");
    assert!(last["description"].as_str().is_some_and(|d| d.contains("Docker engine is not available")), "{last}");

    let _engine = fake_engine(&socket).await;
    let docker = eventually(Duration::from_secs(20), "the Docker backend to pass /health", || async {
        let (_, docker) = health_of(&esm.ops, "backend:docker-compose").await;
        (docker["passed"] == true).then_some(docker)
    })
    .await;
    assert!(docker["output"].as_str().is_some_and(|o| o.contains("0.0-fake")), "{docker}");
    assert_eq!(health_of(&esm.ops, "backend:docker-compose").await.0, 200);
}

/// The same against the real engine (`ESM_TEST_DOCKER=1`): its socket appears as a
/// link at the path esm was given.
#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn esm_connects_to_a_real_engine_that_appears_after_it_started() {
    let real = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let dir = temp_dir("esm-late-engine");
    let socket = dir.path().join("docker.sock");
    let esm = esm_without_an_engine(dir.path(), &socket).await;
    assert_eq!(health_of(&esm.ops, "backend:docker-compose").await.1["passed"], false);
    std::os::unix::fs::symlink(&real, &socket).expect("links the engine's socket");
    let docker = eventually(Duration::from_secs(20), "the Docker backend to pass /health", || async {
        let (_, docker) = health_of(&esm.ops, "backend:docker-compose").await;
        (docker["passed"] == true).then_some(docker)
    })
    .await;
    assert!(docker["output"].as_str().is_some_and(|o| o.starts_with("Docker engine ")), "{docker}");
}
