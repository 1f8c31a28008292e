//! The dummy's scripts.

use super::*;

fn manifest(content: &str) -> Manifest {
    Manifest {
        id: "m".into(),
        service_id: "s".into(),
        plan_id: "p".into(),
        manifest_type: "dummy".into(),
        manifest_content: content.into(),
        endpoints: None,
        config: None,
    }
}

#[test]
fn plain_text_is_a_default_dummy() {
    let m = manifest("some-content");
    assert!(DummyBackend::new().check_manifest(&m).is_ok());
    assert_eq!(DummyBackend::new().execution(&m, OperationKind::Provision), Execution::Either);
}

#[test]
fn the_script_is_checked_at_registration() {
    let err = DummyBackend::new().check_manifest(&manifest("x-esm-dummy:\n  mode: sometimes\n")).unwrap_err();
    assert!(err.contains("sometimes"), "{err}");
    let err = DummyBackend::new().check_manifest(&manifest("x-esm-dummy:\n  fial: [bind]\n")).unwrap_err();
    assert!(err.contains("fial"), "{err}");
    assert!(DummyBackend::new().check_manifest(&manifest("services: [unclosed")).is_err());
}

#[test]
fn modes_map_to_executions() {
    let sync = manifest("x-esm-dummy: {mode: sync}");
    let asynchronous = manifest("x-esm-dummy: {mode: async}");
    assert_eq!(DummyBackend::new().execution(&sync, OperationKind::Bind), Execution::Synchronous);
    assert_eq!(DummyBackend::new().execution(&asynchronous, OperationKind::Bind), Execution::Asynchronous);
}

#[test]
fn each_operation_can_have_its_own_mode_and_delay() {
    let m = manifest("x-esm-dummy: {mode: {provision: async, bind: sync}, delay_ms: {unbind: 5}}");
    let dummy = DummyBackend::new();
    assert_eq!(dummy.execution(&m, OperationKind::Provision), Execution::Asynchronous);
    assert_eq!(dummy.execution(&m, OperationKind::Bind), Execution::Synchronous);
    assert_eq!(dummy.execution(&m, OperationKind::Update), Execution::Either, "left out: the default");
    let script = dummy.parse_now(&m).expect("parses").script;
    assert_eq!((script.delay_ms.of(OperationKind::Unbind), script.delay_ms.of(OperationKind::Bind)), (5, 0));
    let err = dummy.check_manifest(&manifest("x-esm-dummy: {mode: {provison: async}}")).unwrap_err();
    assert!(err.contains("provison"), "{err}");
}

#[tokio::test]
async fn a_call_log_gets_one_line_per_finished_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("calls.jsonl");
    let m = manifest(&format!("x-esm-dummy: {{fail: [unbind], call_log: {:?}}}", path.display()));
    let dummy = DummyBackend::new();
    let script = dummy.parse_now(&m).expect("parses in test builds").script;
    dummy.play(&script, OperationKind::Bind, "b-1", Some("bind-1")).await.expect("binds");
    dummy.play(&script, OperationKind::Unbind, "b-1", None).await.expect_err("told to fail");
    let text = std::fs::read_to_string(&path).expect("the log exists");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        (&lines[0]["kind"], &lines[0]["id"], &lines[0]["op"], &lines[0]["ok"]),
        (&json!("bind"), &json!("b-1"), &json!("bind-1"), &json!(true))
    );
    assert_eq!(
        (&lines[1]["op"], &lines[1]["ok"], &lines[1]["pid"]),
        (&Value::Null, &json!(false), &json!(std::process::id()))
    );
}

#[test]
fn environment_merges_list_map_and_parameters() {
    let list = json!(["A=1", "B"]);
    let env = environment(Some(&list), Some(&json!({"C": 3, "A": "x"})));
    assert_eq!(env.get("A").map(String::as_str), Some("x"));
    assert_eq!(env.get("B").map(String::as_str), Some(""));
    assert_eq!(env.get("C").map(String::as_str), Some("3"));
}

#[test]
fn a_dashboard_url_is_http_or_https_and_bounded() {
    let check =
        |url: &str| DummyBackend::new().check_manifest(&manifest(&format!("x-esm-dummy: {{dashboard_url: '{url}'}}")));
    for good in ["http://dash.example/x", "HTTPS://dash.example:8443/i?a=b#c"] {
        assert!(check(good).is_ok(), "{good}");
    }
    let long = format!("https://dash.example/{}", "a".repeat(crate::backend::DASHBOARD_URL_MAX_BYTES));
    for bad in [
        "javascript:alert(1)",
        "JavaScript://%0aalert(1)",
        "data:text/html,<script>",
        "//dash.example",
        "http://",
        "https:///x",
        "ftp://dash",
        "http://a b",
        long.as_str(),
    ] {
        let err = check(bad).expect_err(bad);
        assert!(err.contains("dashboard_url"), "{bad}: {err}");
    }
}

#[test]
fn a_manifest_is_parsed_once_and_kept_by_its_content() {
    let dummy = DummyBackend::new();
    let (a, b) = (manifest("x-esm-dummy: {mode: sync}"), manifest("x-esm-dummy: {mode: async}"));
    let first = dummy.parse(&a).expect("parses");
    assert!(Arc::ptr_eq(&first, &dummy.parse(&a).expect("parses")), "kept");
    assert!(!Arc::ptr_eq(&first, &dummy.parse(&b).expect("parses")), "another content is another manifest");
    for n in 0..40 {
        dummy.parse(&manifest(&format!("x-esm-dummy: {{mode: sync}}\nn: {n}"))).expect("parses");
    }
    assert!(!Arc::ptr_eq(&first, &dummy.parse(&a).expect("parses")), "the least recent was let go: it is bounded");
    assert!(dummy.parse(&manifest("x-esm-dummy: {mode: [")).is_err(), "an error is still an error");
}
