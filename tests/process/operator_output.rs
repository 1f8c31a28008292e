//! What the real binary shows an operator. Its log: one line per record, whatever a
//! client sent; in both log formats it is fed client text with line breaks, terminal
//! escapes, C1 controls and Unicode line separators through what reaches its log lines
//! (the originating identity, ids in paths and bodies), and its whole log is read back.
//! Its `/environment` (no credentials): only what esm knows to be safe, from its real
//! process environment.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use crate::support::{self, Esm, StoreSetup, VERSION, eventually, temp_dir};

/// A forged record, a carriage return, ESC sequences, BEL, a C1 CSI, NEL, DEL, the
/// Unicode line and paragraph separators and a bidi override.
const HOSTILE: &str = "x\nERROR forged record\r\u{1b}[2J\u{1b}]0;t\u{7}\u{9b}31m\u{85}\u{7f}\u{2028}\u{2029}\u{202e}z";

/// Whether `c` may not appear raw in a log line.
fn raw_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

async fn every_record_is_one_line(format: &str) {
    let dir = temp_dir("esm-log-lines");
    let log = dir.path().join("esm.log");
    let store = StoreSetup::Embedded(dir.path().join("data"));
    let esm = Esm::start_logging(&store, &[("ESM_LOG_FORMAT", format)], Some(&log)).await;
    let http = support::http();
    let identity = base64::engine::general_purpose::STANDARD.encode(json!({"user_id": HOSTILE}).to_string());
    let requests = [
        http.get(format!("{}/v2/catalog", esm.api)),
        http.get(format!("{}/v2/service_instances/a%0Ab%1B%C2%9B", esm.api)),
        http.put(format!("{}/v2/service_instances/i-1", esm.api))
            .json(&json!({"service_id": HOSTILE, "plan_id": HOSTILE, "organization_guid": "o", "space_guid": "s"})),
        http.put(format!("{}/v2/et/manifest/m-1", esm.api))
            .json(&json!({"service_id": HOSTILE, "plan_id": "p", "manifest_type": HOSTILE, "manifest_content": "x"})),
    ];
    let sent = requests.len();
    for request in requests {
        let request = request
            .header("X-Broker-API-Version", VERSION)
            .header("X-Broker-API-Originating-Identity", format!("cloudfoundry {identity}"));
        request.send().await.expect("an answer");
    }
    let text = eventually(Duration::from_secs(10), "every request's audit line", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (audit_lines(&text).len() >= sent).then_some(text)
    })
    .await;
    drop(esm);
    for line in text.lines() {
        let raw: Vec<char> = line.chars().filter(|&c| raw_control(c)).collect();
        assert!(raw.is_empty(), "{format}: raw {raw:?} in {line:?}");
        assert!(!line.starts_with("ERROR forged"), "{format}: a forged record: {line:?}");
        if format == "json" {
            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        }
    }
    assert_eq!(audit_lines(&text).len(), sent, "{format}: one audit line per request:\n{text}");
}

/// The audit lines of the test's requests (the harness's own readiness request has no
/// originating identity), which name the user, escaped.
fn audit_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("esm::audit") && l.contains("forged record")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_log_record_is_one_line_whatever_a_client_sent() {
    every_record_is_one_line("text").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_log_record_is_one_line_whatever_a_client_sent() {
    every_record_is_one_line("json").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_shows_the_process_environment_by_allow_list() {
    let dir = temp_dir("esm-environment");
    let esm = Esm::start_with(
        &StoreSetup::Embedded(dir.path().to_path_buf()),
        &[
            ("ESM_EVENT_WEBHOOK_URL", "https://hook:p4ss@127.0.0.1:9/hooks/s3cr3t?token=k3y"),
            ("ESM_MONGO_URI", "mongodb://admin:pw0rd@db:27017/esm?tlsCertificateKeyFilePassword=k3y2"),
            ("ESM_DEBUG_NOTE", "harmless-looking-s3cr3t"),
            ("ESM_RETRY_AFTER", "3"),
        ],
    )
    .await;
    let text = support::get(format!("{}/environment", esm.ops)).await.expect("answers").text().await.expect("text");
    for secret in ["p4ss", "s3cr3t", "k3y", "pw0rd", "tlsCertificateKeyFilePassword", "/hooks"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let (config, environment) = (&body["config"], &body["environment"]);
    assert_eq!(config["ESM_EVENT_WEBHOOK_URL"], "https://127.0.0.1:9");
    assert_eq!(environment["ESM_EVENT_WEBHOOK_URL"], "https://127.0.0.1:9");
    assert_eq!(config["ESM_MONGO_URI"], "mongodb://db:27017");
    assert_eq!(environment["ESM_MONGO_URI"], "mongodb://db:27017");
    assert_eq!(environment["ESM_DEBUG_NOTE"], "********", "a name esm does not declare");
    assert_eq!(environment["ESM_RETRY_AFTER"], "3", "a setting esm declares, as typed");
}

// What an operator reads after the fact: one line per finished operation (INFO when it
// succeeded, WARN with the reason when it failed), and audit lines without empty fields
// or float noise.
#[tokio::test(flavor = "multi_thread")]
async fn the_log_says_how_each_operation_ended_in_one_line() {
    let dir = temp_dir("esm-outcomes");
    let log = dir.path().join("esm.log");
    let esm = Esm::start_logging(&StoreSetup::Embedded(dir.path().join("data")), &[], Some(&log)).await;
    let client = support::Client::new(&esm.api);
    client.register("x-esm-dummy: {mode: sync, fail: [bind]}\n").await;
    let (status, body) = client.provision("i-1", false).await;
    assert_eq!(status, 201, "{body}");
    let bind = json!({"service_id": "svc", "plan_id": "plan"});
    let (status, body) =
        client.send(reqwest::Method::PUT, "/v2/service_instances/i-1/service_bindings/b-1", Some(&bind)).await;
    assert!(status >= 400, "the bind fails: {status} {body}");
    let text = eventually(Duration::from_secs(10), "both outcomes in the log", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains("provision of i-1 succeeded in ") && text.contains("bind of b-1 failed after ")).then_some(text)
    })
    .await;
    drop(esm);
    let line =
        |needle: &str| text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}")).to_owned();
    let succeeded = line("provision of i-1 succeeded in ");
    assert!(succeeded.contains("INFO") && succeeded.contains(" s "), "{succeeded}");
    let failed = line("bind of b-1 failed after ");
    assert!(failed.contains("WARN") && failed.contains("reason=\""), "{failed}");
    let audits: Vec<&str> = text.lines().filter(|l| l.contains("esm::audit")).collect();
    assert!(audits.len() >= 2, "{text}");
    for audit in audits {
        assert!(!audit.contains("=\"\"") && !audit.contains("request_id=\"-\""), "an empty field: {audit}");
        let millis = audit.split("millis=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("millis");
        assert!(millis.split('.').nth(1).is_none_or(|decimals| decimals.len() <= 2), "float noise: {audit}");
    }
}
