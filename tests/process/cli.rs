//! The command-line client end to end: the `esm` binary's client commands against a
//! real esm (with basic auth), in tables and JSON, waiting on asynchronous operations,
//! on a terminal (a pty from `script`), and the exit codes scripts rely on; and against
//! a hostile fake server (`cli/hostile.rs`).

mod engines;
mod hostile;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{self, Esm, StoreSetup, eventually, temp_dir};

const USER: &str = "admin";
const PASSWORD: &str = "s3cret";

/// What one run of the client printed, and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// An esm with basic auth, service `svc` with plans `plan` (asynchronous, a little slow)
/// and `broken` (its provisions fail).
async fn esm() -> (Esm, support::TempDir) {
    let dir = temp_dir("esm-cli");
    let env = [("ESM_BROKER_USERNAME", USER), ("ESM_BROKER_PASSWORD", PASSWORD)];
    let esm = Esm::start_with(&StoreSetup::Embedded(dir.path().to_path_buf()), &env).await;
    let files = dir.path();
    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
        "plans": [{"id": "plan", "name": "plan", "description": "d"}, {"id": "broken", "name": "broken", "description": "d"}]});
    std::fs::write(files.join("svc.json"), service.to_string()).expect("written");
    for (id, plan, script) in [
        ("m", "plan", "x-esm-dummy: {mode: async, delay_ms: 300}\nservices:\n  web: {image: nginx}\n"),
        ("m-broken", "broken", "x-esm-dummy: {mode: async, fail: [provision]}\n"),
    ] {
        let manifest =
            json!({"service_id": "svc", "plan_id": plan, "manifest_type": "dummy", "manifest_content": script});
        std::fs::write(files.join(format!("{id}.json")), manifest.to_string()).expect("written");
    }
    (esm, dir)
}

/// [`esm`] with service `svc` and manifest `manifest` (`m` or `m-broken`) registered
/// through the client.
async fn registered(manifest: &str) -> (Esm, support::TempDir) {
    let (esm, dir) = esm().await;
    let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    ok(&cli(&esm.api, &["services", "register", "-f", &file("svc.json")]).await, "register service");
    let registered =
        cli(&esm.api, &["manifests", "register", manifest, "-f", &file(&format!("{manifest}.json"))]).await;
    ok(&registered, "register manifest");
    let said = format!("registered manifest {manifest} for service svc");
    assert!(registered.stdout.starts_with(&said), "{}", registered.stdout);
    (esm, dir)
}

/// [`registered`] with `m-broken`, and instance `x` provisioned on its plan through the
/// client: the provision fails, and the client says so with exit code 1.
async fn with_a_failed_provision() -> (Esm, support::TempDir) {
    let (esm, dir) = registered("m-broken").await;
    let failed = cli(&esm.api, &["instances", "provision", "x", "--service", "svc", "--plan", "broken"]).await;
    assert_eq!(failed.code, 1, "a failed operation: {} {}", failed.stdout, failed.stderr);
    assert!(failed.stdout.contains("failed"), "{}", failed.stdout);
    (esm, dir)
}

/// `esm <args>` against `api` with the right credentials, for a test that reads its output
/// while it runs (and has it killed when dropped).
fn running(api: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_esm"));
    command
        .args(args)
        .env("ESM_URL", api)
        .env("ESM_BROKER_USERNAME", USER)
        .env("ESM_BROKER_PASSWORD", PASSWORD)
        .kill_on_drop(true);
    command
}

/// Runs `esm <args>` against `api` with the right credentials.
async fn cli(api: &str, args: &[&str]) -> Run {
    cli_as(api, PASSWORD, args).await
}

async fn cli_as(api: &str, password: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_esm"))
        .args(args)
        .env_clear()
        .env("ESM_URL", api)
        .env("ESM_BROKER_USERNAME", USER)
        .env("ESM_BROKER_PASSWORD", password)
        .output()
        .await
        .expect("the client runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what}: stdout {} stderr {}", run.stdout, run.stderr);
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_works_against_a_real_esm_in_tables_and_json() {
    let (esm, dir) = esm().await;
    let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let api = esm.api.as_str();
    let registered = cli(api, &["services", "register", "-f", &file("svc.json")]).await;
    ok(&registered, "register service");
    assert_eq!(registered.stdout.trim(), "registered service svc (plans: plan, broken)");
    for (id, name) in [("m", "m.json"), ("m-broken", "m-broken.json")] {
        ok(&cli(api, &["manifests", "register", id, "-f", &file(name)]).await, "register manifest");
    }
    let again = cli(api, &["manifests", "get", "m"]).await;
    assert!(again.stdout.contains("dummy"), "{}", again.stdout);
    let catalog = cli(api, &["catalog"]).await;
    ok(&catalog, "catalog");
    assert!(catalog.stdout.contains("SERVICE") && catalog.stdout.contains("plan, broken"), "{}", catalog.stdout);
    assert_eq!(json_of(&cli(api, &["catalog", "-o", "json"]).await)["services"][0]["id"], "svc");
    assert!(cli(api, &["manifests", "list"]).await.stdout.contains("m-broken"));
    assert_eq!(json_of(&cli(api, &["manifests", "get", "m", "-o", "json"]).await)[0]["plan_id"], "plan");

    // An asynchronous provision is waited for: progress on stderr, the outcome on stdout.
    let provision = cli(api, &["instances", "provision", "i-1", "--service", "svc", "--plan", "plan"]).await;
    ok(&provision, "provision");
    assert!(provision.stderr.contains("provision of i-1: provision in progress"), "{}", provision.stderr);
    assert!(provision.stdout.contains("succeeded"), "{}", provision.stdout);
    let listed = cli(api, &["instances", "list"]).await;
    assert!(listed.stdout.lines().any(|l| l.contains("i-1") && l.contains("succeeded")), "{}", listed.stdout);
    let header = listed.stdout.lines().next().unwrap_or_default();
    assert!(["PLAN", "STATE", "LIVENESS", "CREATED"].iter().all(|c| header.contains(c)), "{header}");
    let got = cli(api, &["instances", "get", "i-1"]).await;
    let row = |name: &str| got.stdout.lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_owned);
    assert_eq!(row("liveness").as_deref().map(str::split_whitespace).and_then(|mut w| w.nth(1)), Some("up"));
    assert_eq!(row("plan").as_deref().map(str::split_whitespace).and_then(|mut w| w.nth(1)), Some("plan"));
    let page = json_of(&cli(api, &["instances", "list", "-o", "json", "--limit", "5"]).await);
    assert_eq!(page["instances"][0]["context"]["id"], "i-1");
    let shown = json_of(&cli(api, &["instances", "get", "i-1", "-o", "json"]).await);
    assert_eq!(shown["state"]["state"], "succeeded");
    let updated = cli(api, &["instances", "update", "i-1", "--params", r#"{"size": 2}"#, "-o", "json"]).await;
    ok(&updated, "update");
    assert_eq!(json_of(&updated)["state"], "succeeded");
    ok(&cli(api, &["bind", "i-1", "b-1"]).await, "bind");
    ok(&cli(api, &["unbind", "i-1", "b-1"]).await, "unbind");

    // Without waiting: the operation's id, at once.
    let started =
        cli(api, &["instances", "provision", "i-2", "--service", "svc", "--plan", "plan", "--no-wait", "-o", "json"])
            .await;
    ok(&started, "provision --no-wait");
    assert!(
        json_of(&started)["operation"].as_str().is_some_and(|op| op.starts_with("provision-")),
        "{}",
        started.stdout
    );

    let pool = json_of(&cli(api, &["pools", "set", "plan", "--size", "1", "-o", "json"]).await);
    assert_eq!((pool["plan_id"].as_str(), pool["size"].as_u64()), (Some("plan"), Some(1)));
    assert!(cli(api, &["pools", "list"]).await.stdout.lines().any(|l| l.trim_start().starts_with("plan")));
    assert_eq!(json_of(&cli(api, &["pools", "get", "plan", "-o", "json"]).await)["plan_id"], "plan");
    // One member is made at once: `pools get` lists it under the pool.
    let members = eventually(Duration::from_secs(10), "the pool's member listed", || async {
        let shown = cli(api, &["pools", "get", "plan"]).await;
        shown.stdout.lines().any(|l| l.trim_start().starts_with("MEMBER")).then_some(shown.stdout)
    })
    .await;
    assert!(members.lines().any(|l| l.contains("deploying") || l.contains("ready")), "{members}");
    ok(&cli(api, &["pools", "delete", "plan"]).await, "pools delete");

    // What i-1 holds, in the inventory and of the instance.
    let inventory = cli(api, &["inventory", "--owner", "i-1"]).await;
    ok(&inventory, "inventory");
    assert!(inventory.stdout.contains("TYPE") && inventory.stdout.contains("deployment"), "{}", inventory.stdout);
    let page = json_of(&cli(api, &["inventory", "--type", "deployment", "--state", "in_use", "-o", "json"]).await);
    let owners: Vec<&str> =
        page["resources"].as_array().expect("resources").iter().filter_map(|r| r["owner"].as_str()).collect();
    assert!(owners.contains(&"i-1"), "{page}");
    let own = json_of(&cli(api, &["instances", "resources", "i-1", "-o", "json"]).await);
    assert_eq!((own["instance_id"].as_str(), own["resources"][0]["type"].as_str()), (Some("i-1"), Some("deployment")));
    let bad = cli(api, &["inventory", "--state", "busy"]).await;
    assert_eq!(bad.code, 1, "a refused request: {}", bad.stderr);
    assert!(bad.stderr.contains("esm: state \"busy\" is not one of"), "{}", bad.stderr);

    let events = cli(api, &["events", "--type", "provision.succeeded", "-o", "json"]).await;
    ok(&events, "events");
    let kinds: Vec<Value> =
        events.stdout.lines().map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["type"].clone()).collect();
    assert!(!kinds.is_empty() && kinds.iter().all(|k| k == "provision.succeeded"), "{kinds:?}");

    let gone = cli(api, &["instances", "deprovision", "i-1"]).await;
    ok(&gone, "deprovision");
    assert!(gone.stdout.contains("succeeded"), "{}", gone.stdout);
    let completions = cli(api, &["completions", "bash"]).await;
    ok(&completions, "completions");
    assert!(completions.stdout.contains("_esm()"), "a bash completion function");
    drop(esm);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_messages_say_what_went_wrong() {
    let (esm, _dir) = with_a_failed_provision().await;
    let api = esm.api.as_str();

    let refused = cli(api, &["instances", "get", "nobody"]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.starts_with("esm: ") && refused.stderr.contains("does not exist"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("panicked"));

    let wrong = cli_as(api, "wrong", &["catalog"]).await;
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("refused the credentials"), "{}", wrong.stderr);

    let nobody = cli(&format!("http://127.0.0.1:{}", support::free_port()), &["catalog"]).await;
    assert_eq!(nobody.code, 3);
    assert!(nobody.stderr.contains("cannot reach esm"), "{}", nobody.stderr);

    let usage =
        cli(api, &["instances", "provision", "y", "--service", "svc", "--plan", "plan", "--params", "[1]"]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    // Waiting is a flag of the commands that start an operation, not of every command.
    for args in [
        &["catalog", "--no-wait"][..],
        &["instances", "list", "--wait-timeout", "5s"],
        &["bindings", "list", "x", "--no-wait"],
    ] {
        let refused = cli(api, args).await;
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("unexpected argument"), "{}", refused.stderr);
    }
    let missing = cli(api, &["services", "register", "-f", "/nonexistent.json"]).await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot read /nonexistent.json"), "{}", missing.stderr);
    drop(esm);
}

// What a bind is for: the credentials, printed however esm answered (a 202 followed to
// its end, or a re-sent bind's 200), and readable again with `bindings get`.
#[tokio::test(flavor = "multi_thread")]
async fn a_bind_prints_the_credentials_and_bindings_get_reads_them_again() {
    let (esm, _dir) = registered("m").await;
    let api = esm.api.as_str();
    ok(&cli(api, &["instances", "provision", "i-1", "--service", "svc", "--plan", "plan"]).await, "provision");

    let bound = cli(api, &["bind", "i-1", "b-1"]).await;
    ok(&bound, "bind");
    let row = |name: &str| bound.stdout.lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_owned);
    assert!(bound.stdout.contains("CREDENTIAL"), "{}", bound.stdout);
    assert_eq!(row("username").as_deref().map(str::split_whitespace).and_then(|mut w| w.nth(1)), Some("user-b-1"));
    let password = row("password").expect("a password row");
    let password = password.split_whitespace().nth(1).expect("a password").to_owned();

    let again = json_of(&cli(api, &["bind", "i-1", "b-1", "-o", "json"]).await);
    assert_eq!(again["credentials"]["password"], password.as_str(), "the same binding: {again}");
    let fetched = json_of(&cli(api, &["bindings", "get", "i-1", "b-1", "-o", "json"]).await);
    assert_eq!(fetched["credentials"], again["credentials"]);
    let missing = cli(api, &["bindings", "get", "i-1", "nobody"]).await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);

    // `bindings list`: a row per binding, never a credential; pages with --after.
    ok(&cli(api, &["bind", "i-1", "b-2", "--no-wait"]).await, "bind --no-wait");
    let listed = cli(api, &["bindings", "list", "i-1"]).await;
    ok(&listed, "bindings list");
    assert!(listed.stdout.trim_start().starts_with("BINDING") && listed.stdout.contains("STATUS"), "{}", listed.stdout);
    let rows: Vec<&str> = listed.stdout.lines().skip(1).map(str::trim_start).collect();
    assert!(rows.len() == 2 && rows[0].starts_with("b-1") && rows[0].contains("bound"), "{}", listed.stdout);
    assert!(!listed.stdout.contains(&password), "no credentials: {}", listed.stdout);
    let first = cli(api, &["bindings", "list", "i-1", "--limit", "1"]).await;
    let more = first.stdout.lines().last().unwrap_or_default().trim_start();
    let cursor = more.trim_start_matches("(more: --after").trim().trim_end_matches(')');
    assert!(more.starts_with("(more: --after") && !cursor.is_empty(), "{}", first.stdout);
    let rest = json_of(&cli(api, &["bindings", "list", "i-1", "--after", cursor, "-o", "json"]).await);
    assert_eq!(rest["bindings"][0]["binding_id"], "b-2", "{rest}");
    assert!(rest.get("next").is_none() && rest["bindings"][0].get("credentials").is_none(), "{rest}");
    drop(esm);
}

// `esm instances list` shows an instance whose provision failed; the client must be able
// to remove it (the OSB fetch answers 404 for it, esm's own view does not).
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_provision_failed_can_be_deprovisioned() {
    let (esm, _dir) = with_a_failed_provision().await;
    let gone = cli(&esm.api, &["instances", "deprovision", "x"]).await;
    ok(&gone, "deprovision of a failed instance");
    assert!(gone.stdout.contains("succeeded"), "{}", gone.stdout);
    let listed = json_of(&cli(&esm.api, &["instances", "list", "-o", "json", "--limit", "10"]).await);
    assert_eq!(listed["instances"], json!([]), "{listed}");
    drop(esm);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_wait_is_a_spinner_with_the_description_and_elapsed_time() {
    let (esm, _dir) = registered("m").await;
    let api = esm.api.as_str();
    // `script` runs the client on a pseudo-terminal and copies what it draws.
    let command = format!("{} instances provision t-1 --service svc --plan plan", env!("CARGO_BIN_EXE_esm"));
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("ESM_URL", api)
        .env("ESM_BROKER_USERNAME", USER)
        .env("ESM_BROKER_PASSWORD", PASSWORD)
        .output()
        .expect("script runs");
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{drawn}");
    assert!(drawn.contains("provision of t-1: provision in progress (0s)"), "{drawn:?}");
    assert!(drawn.contains("\u{1b}[2K"), "the spinner redraws its line: {drawn:?}");
    assert!(drawn.contains("succeeded"), "{drawn:?}");
    drop(esm);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_shows_new_events_as_they_happen() {
    let (esm, _dir) = registered("m").await;
    let api = esm.api.as_str();
    let mut follower = running(api, &["events", "--follow", "--type", "provision.succeeded", "-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the client runs");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    ok(
        &cli(api, &["instances", "provision", "f-1", "--service", "svc", "--plan", "plan", "--no-wait"]).await,
        "provision",
    );
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("an event within 10 s")
        .expect("read")
        .expect("a line");
    let event: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!((event["type"].as_str(), event["instance_id"].as_str()), (Some("provision.succeeded"), Some("f-1")));
    follower.kill().await.expect("the follower stops");
    drop(esm);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_the_waiting_not_the_operation() {
    let (esm, dir) = esm().await;
    let api = esm.api.as_str();
    let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    ok(&cli(api, &["services", "register", "-f", &file("svc.json")]).await, "register service");
    let slow = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": "dummy",
                      "manifest_content": "x-esm-dummy: {mode: async, delay_ms: 2000}\n"});
    std::fs::write(dir.path().join("slow.json"), slow.to_string()).expect("written");
    ok(&cli(api, &["manifests", "register", "m", "-f", &file("slow.json")]).await, "register manifest");
    let mut waiting = running(api, &["instances", "provision", "s-1", "--service", "svc", "--plan", "plan"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client runs");
    let mut progress = BufReader::new(waiting.stderr.take().expect("stderr")).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), progress.next_line()).await.expect("progress in time");
    assert!(first.expect("read").is_some_and(|l| l.contains("provision in progress")));
    support::signal(waiting.id().expect("a pid"), "INT");
    let status =
        tokio::time::timeout(Duration::from_secs(10), waiting.wait()).await.expect("it stops").expect("status");
    assert_eq!(status.code(), Some(130));
    let rest = progress.next_line().await.expect("read").unwrap_or_default();
    assert!(rest.contains("stopped waiting; the provision of s-1 goes on in esm"), "{rest}");
    // The operation goes on in esm and finishes.
    eventually(Duration::from_secs(10), "the provision to finish in esm", || async {
        let shown = cli(api, &["instances", "get", "s-1", "-o", "json"]).await;
        (json_of(&shown)["state"]["state"] == "succeeded").then_some(())
    })
    .await;
    drop(esm);
}

/// `openssl <args>` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A certificate authority (`ca.pem`) and a server certificate it signed for 127.0.0.1
/// (`leaf.pem`, `leaf.key`), made in `dir`.
fn make_certificates(dir: &std::path::Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=esm test CA"],
        ]
        .concat(),
    );
    openssl(dir, &[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat());
    let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("leaf.ext"), ext).expect("written");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// A TLS proxy in front of `api` (`http://127.0.0.1:port`) with the certificate in
/// `dir`, as an operator puts esm behind one: its `https://` URL.
async fn tls_proxy(dir: &std::path::Path, api: &str) -> String {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .expect("leaf.pem")
        .map(|c| c.expect("a certificate"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).expect("leaf.key");
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the certificate and key");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let port = listener.local_addr().expect("address").port();
    let upstream = api.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut esm) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut esm).await;
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_through_a_tls_proxy_with_the_operator_s_certificate_authority() {
    let (esm, dir) = esm().await;
    make_certificates(dir.path());
    let url = tls_proxy(dir.path(), &esm.api).await;
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();

    let trusted = cli(&url, &["--ca-cert", &ca, "catalog", "-o", "json"]).await;
    ok(&trusted, "catalog over https");
    assert_eq!(json_of(&trusted)["services"], json!([]), "{}", trusted.stdout);

    // Without the authority the certificate is refused: esm cannot be reached safely.
    let refused = cli(&url, &["catalog"]).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.starts_with("esm: "), "{}", refused.stderr);
    // A file that holds no certificate is bad input.
    let key = dir.path().join("ca.key").to_string_lossy().into_owned();
    let bad = cli(&url, &["--ca-cert", &key, "catalog"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("no PEM certificate"), "{}", bad.stderr);
    drop(esm);
}
