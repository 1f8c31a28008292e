//! The client against a hostile server: a fake esm on 127.0.0.1:0 (raw HTTP/1.1 over
//! TCP, so it can answer what no real esm would) whose text carries terminal escape
//! sequences, whose answers never end, whose cursors do not advance, whose operations
//! never finish, and which redirects to another origin.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{PASSWORD, Run, USER, cli};

/// A title change, a screen clear, an OSC 52 clipboard write, a C1 CSI, a bidi
/// override, a carriage return and a backspace.
const HOSTILE: &str = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}\u{9b}31m\u{202e}x\r\u{8}";
/// The same as the client shows it.
const SHOWN: &str = "evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{9b}31m\\u{202e}x\\r\\u{8}";
/// Characters a terminal acts on, none of which may reach it.
const RAW: [char; 6] = ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}', '\r', '\u{8}'];

/// A request the fake server got.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    /// Path and query.
    target: String,
    /// Header lines, lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What the fake server answers.
enum Answer {
    /// A status and a JSON body.
    Json(u16, Value),
    /// A status and a `Location`.
    Redirect(u16, String),
    /// 200 with a chunked body that never ends.
    Endless,
}

/// A fake esm: its URL and every request it got.
struct Fake {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Fake {
    /// Starts a fake answering each request with `answer`.
    async fn start(answer: impl Fn(&Got) -> Answer + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (answer, record) = (Arc::new(answer), got.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (answer, record) = (answer.clone(), record.clone());
                tokio::spawn(async move {
                    let Some((request, tcp)) = read_request(tcp).await else { return };
                    record.lock().expect("not poisoned").push(request.clone());
                    respond(tcp, answer(&request)).await;
                });
            }
        });
        Fake { url, got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("not poisoned").clone()
    }
}

/// Reads one request (head and a `Content-Length` body).
async fn read_request(mut tcp: TcpStream) -> Option<(Got, TcpStream)> {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > 1 << 20 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(name, _)| name == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((Got { method, target, headers, body }, tcp))
}

async fn respond(mut tcp: TcpStream, answer: Answer) {
    let head = |status: u16, extra: &str| format!("HTTP/1.1 {status} X\r\nConnection: close\r\n{extra}");
    let _ = match answer {
        Answer::Json(status, body) => {
            let body = body.to_string();
            let text =
                head(status, &format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()));
            tcp.write_all(format!("{text}{body}").as_bytes()).await
        }
        Answer::Redirect(status, to) => {
            tcp.write_all(head(status, &format!("Location: {to}\r\nContent-Length: 0\r\n\r\n")).as_bytes()).await
        }
        Answer::Endless => {
            let start = head(200, "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = format!("10000\r\n{}\r\n", "[".repeat(0x10000));
            let mut result = tcp.write_all(start.as_bytes()).await;
            // Until the client hangs up.
            while result.is_ok() {
                result = tcp.write_all(chunk.as_bytes()).await;
            }
            result
        }
    };
}

/// Runs the client under an address-space cap of `bytes` (prlimit), at most `limit`
/// long.
async fn cli_capped(api: &str, bytes: u64, limit: Duration, args: &[&str]) -> Run {
    let run = tokio::process::Command::new("/usr/bin/prlimit")
        .arg(format!("--as={bytes}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_esm"))
        .args(args)
        .env_clear()
        .env("MALLOC_ARENA_MAX", "2")
        .env("ESM_URL", api)
        .env("ESM_BROKER_USERNAME", USER)
        .env("ESM_BROKER_PASSWORD", PASSWORD)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run).await.expect("the client ends in time").expect("it runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Neither stdout nor stderr holds a character a terminal acts on, or the password.
fn clean(run: &Run, what: &str) {
    for (name, out) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!out.contains(RAW), "{what}: a raw control character on {name}: {out:?}");
        assert!(!out.contains(PASSWORD), "{what}: the password on {name}: {out:?}");
    }
}

fn hostile_esm(got: &Got) -> Answer {
    let path = got.target.split('?').next().unwrap_or_default();
    match (got.method.as_str(), path) {
        ("GET", "/v2/catalog") => Answer::Json(
            200,
            json!({"services": [{"id": format!("svc{HOSTILE}"), "name": HOSTILE, "description": HOSTILE,
                "bindable": true, "plans": [{"id": format!("plan{HOSTILE}"), "name": HOSTILE, "description": HOSTILE}]}]}),
        ),
        ("GET", "/v2/et/events") => Answer::Json(
            200,
            json!({"events": [{"id": 1, "at": "2026-12-06T10:00:00Z", "type": format!("provision.succeeded{HOSTILE}"),
                "instance_id": format!("i{HOSTILE}"), "from": HOSTILE, "to": "up", "reason": HOSTILE}], "after": 1}),
        ),
        ("PUT", "/v2/service_instances/i-1") => Answer::Json(202, json!({"operation": "op-1"})),
        ("GET", "/v2/service_instances/i-1/last_operation") => {
            Answer::Json(200, json!({"state": "succeeded", "description": HOSTILE}))
        }
        ("GET", "/v2/service_instances/i-1/service_bindings/b-1") => {
            // Nested as deep as serde_json reads (128 levels), keys and values hostile.
            let mut deep = json!(HOSTILE);
            for _ in 0..120 {
                deep = json!({ "k": deep });
            }
            Answer::Json(
                200,
                json!({"credentials": {format!("user{HOSTILE}"): HOSTILE, "deep": deep},
                    "endpoints": [{"host": HOSTILE, "ports": [HOSTILE], "protocol": "tcp"}]}),
            )
        }
        ("GET", "/v2/et/service_instances/i-1/bindings") => Answer::Json(
            200,
            json!({"bindings": [{"binding_id": format!("b{HOSTILE}"), "instance_id": "i-1", "service_id": HOSTILE,
                "plan_id": HOSTILE, "status": "bound", "operation_state": "succeeded", "created_at": HOSTILE,
                "endpoints": [{"host": HOSTILE, "ports": [HOSTILE]}]}], "next": HOSTILE}),
        ),
        ("GET", "/v2/et/engines") => Answer::Json(
            200,
            json!({"engines": [{"name": format!("e{HOSTILE}"), "backend": HOSTILE, "state": HOSTILE,
                "instances": 3, "capacity": {"instances": HOSTILE}, "labels": {format!("k{HOSTILE}"): HOSTILE},
                "last_probe": HOSTILE}]}),
        ),
        ("GET", "/v2/et/service_instances/long") => {
            Answer::Json(404, json!({"description": format!("{HOSTILE}{}", "x".repeat(100_000))}))
        }
        _ => Answer::Json(404, json!({"error": HOSTILE, "description": HOSTILE})),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_s_escape_sequences_are_shown_escaped_in_tables_events_progress_and_errors() {
    let esm = Fake::start(hostile_esm).await;
    let api = esm.url.as_str();

    let catalog = cli(api, &["catalog"]).await;
    assert_eq!(catalog.code, 0, "{}", catalog.stderr);
    clean(&catalog, "catalog");
    assert!(catalog.stdout.contains(&format!("svc{SHOWN}")) && catalog.stdout.contains(&format!("plan{SHOWN}")));

    let events = cli(api, &["events", "--after", "0"]).await;
    assert_eq!(events.code, 0, "{}", events.stderr);
    clean(&events, "events");
    let line = events.stdout.lines().nth(1).expect("an event line");
    for field in [format!("provision.succeeded{SHOWN}"), format!("i{SHOWN}"), format!("{SHOWN} -> up  {SHOWN}")] {
        assert!(line.contains(&field), "{field} in {line}");
    }

    // The progress line (stderr) and the outcome (stdout) of an operation.
    let provision = cli(api, &["instances", "provision", "i-1", "--service", "s", "--plan", "p"]).await;
    assert_eq!(provision.code, 0, "{}", provision.stderr);
    clean(&provision, "provision");
    assert!(provision.stderr.contains(&format!("provision of i-1: {SHOWN}")), "{}", provision.stderr);
    assert!(provision.stdout.contains(SHOWN), "{}", provision.stdout);

    // A binding's credentials and endpoints, keys and values, however deep.
    let binding = cli(api, &["bindings", "get", "i-1", "b-1"]).await;
    assert_eq!(binding.code, 0, "{}", binding.stderr);
    clean(&binding, "a binding");
    for (key, value) in [
        (format!("user{SHOWN}"), SHOWN.to_owned()),
        ("endpoint".to_owned(), format!("{SHOWN}:{SHOWN}/tcp")),
        (format!("deep{}", ".k".repeat(120)), SHOWN.to_owned()),
    ] {
        let row = |l: &&str| l.split_whitespace().collect::<Vec<_>>() == [key.as_str(), value.as_str()];
        assert!(binding.stdout.lines().any(|l| row(&l)), "{key} {value} in {}", binding.stdout);
    }

    // An instance's bindings, and the cursor to their next page.
    let bindings = cli(api, &["bindings", "list", "i-1"]).await;
    assert_eq!(bindings.code, 0, "{}", bindings.stderr);
    clean(&bindings, "bindings");
    for shown in [format!("b{SHOWN}"), format!("{SHOWN}:{SHOWN}"), format!("{SHOWN})")] {
        assert!(bindings.stdout.contains(&shown), "{shown} in {}", bindings.stdout);
    }

    // Engines: every cell, the labels' keys and values and the capacity included.
    let engines = cli(api, &["engines", "list"]).await;
    assert_eq!(engines.code, 0, "{}", engines.stderr);
    clean(&engines, "engines");
    for shown in [format!("e{SHOWN}"), format!("3/{SHOWN}"), format!("k{SHOWN}={SHOWN}")] {
        assert!(engines.stdout.contains(&shown), "{shown} in {}", engines.stdout);
    }

    let refused = cli(api, &["manifests", "get", "m"]).await;
    assert_eq!(refused.code, 1);
    clean(&refused, "an error");
    assert!(refused.stderr.contains(&format!("esm: {SHOWN} (404 {SHOWN})")), "{}", refused.stderr);

    // A long description is cut.
    let long = cli(api, &["instances", "get", "long"]).await;
    assert_eq!(long.code, 1);
    clean(&long, "a long error");
    assert!(long.stderr.len() < 1200 && long.stderr.contains("bytes more)"), "{} bytes", long.stderr.len());

    // JSON is the same value, with no raw control character either.
    let json = cli(api, &["catalog", "-o", "json"]).await;
    clean(&json, "catalog -o json");
    assert!(json.stdout.contains("\\u001b]0;pwned\\u0007") && json.stdout.contains("\\u009b31m\\u202ex"));
    let value: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(value["services"][0]["name"], HOSTILE);
    let events = cli(api, &["events", "--after", "0", "-o", "json"]).await;
    clean(&events, "events -o json");
    let event: Value = serde_json::from_str(events.stdout.trim()).expect("a JSON line");
    assert_eq!(event["reason"], HOSTILE);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_answer_ends_with_an_error_within_a_memory_bound() {
    let esm = Fake::start(|_: &Got| Answer::Endless).await;
    // 64 MiB of answer at most, in a process capped at 512 MiB of address space (the
    // client read 2.2 GB and aborted before).
    let run = cli_capped(&esm.url, 512 << 20, Duration::from_secs(60), &["catalog"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("esm's answer to /v2/catalog is over 64 MiB"), "{}", run.stderr);
    let run = cli_capped(&esm.url, 512 << 20, Duration::from_secs(60), &["instances", "get", "i-1"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("is over 4 MiB"), "{}", run.stderr);
}

/// An event page of `ids`, with `after`.
fn page(ids: impl IntoIterator<Item = u64>, after: u64) -> Answer {
    let events: Vec<Value> = ids.into_iter().map(|id| json!({"id": id, "type": "provision.succeeded"})).collect();
    Answer::Json(200, json!({"events": events, "after": after}))
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_following_and_waiting_that_do_not_advance_stop_with_an_error() {
    let limit = Duration::from_secs(30);
    // The same full page, whatever `after` asks.
    let stuck = Fake::start(|_: &Got| page(1..=1000, 1000)).await;
    let run = cli_capped(&stuck.url, 1 << 30, limit, &["events"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("does not advance: event 1 came after 1000"), "{}", run.stderr);
    // Followed, the same event again.
    let again = Fake::start(|_: &Got| page([5], 5)).await;
    let run = cli_capped(&again.url, 1 << 30, limit, &["events", "--follow", "--after", "0"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("event 5 came after 5"), "{}", run.stderr);
    // A cursor that goes back.
    let back = Fake::start(|got: &Got| if got.target.contains("after=0") { page([7], 7) } else { page([], 3) }).await;
    let run = cli_capped(&back.url, 1 << 30, limit, &["events", "--follow", "--after", "0"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("its cursor 3 is behind event 7"), "{}", run.stderr);
    // A page of instances whose next cursor is the one asked with.
    let same = Fake::start(|_: &Got| Answer::Json(200, json!({"instances": [], "next": "c1"}))).await;
    let run = cli_capped(&same.url, 1 << 30, limit, &["instances", "list", "--after", "c1"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("same cursor: its paging does not advance"), "{}", run.stderr);
    // An operation that never ends.
    let endless = Fake::start(|got: &Got| match got.method.as_str() {
        "PUT" => Answer::Json(202, json!({"operation": "op-1"})),
        _ => Answer::Json(200, json!({"state": "in progress", "description": "forever"})),
    })
    .await;
    let args = ["instances", "provision", "i-1", "--service", "s", "--plan", "p", "--wait-timeout", "2s"];
    let run = cli_capped(&endless.url, 1 << 30, limit, &args).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("esm: still in progress after 2s (--wait-timeout): stopped waiting"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_origin_gets_neither_the_body_nor_the_credentials() {
    let elsewhere = Fake::start(|_: &Got| Answer::Json(200, json!({}))).await;
    let to = format!("{}/v2/et/catalog", elsewhere.url);
    let esm = Fake::start(move |got: &Got| match got.target.split('?').next().unwrap_or_default() {
        "/v2/catalog" => Answer::Redirect(307, "/v2/catalog/here".into()),
        "/v2/catalog/here" => Answer::Json(200, json!({"services": []})),
        _ => Answer::Redirect(307, to.clone()),
    })
    .await;
    let dir = crate::support::temp_dir("esm-cli-redirect");
    let file = dir.path().join("svc.json");
    std::fs::write(&file, json!({"id": "svc", "secret": "body"}).to_string()).expect("written");

    let run = cli(&esm.url, &["services", "register", "-f", &file.to_string_lossy()]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("307 Temporary Redirect to {}", elsewhere.url)), "{}", run.stderr);
    assert!(run.stderr.contains("another origin: not followed"), "{}", run.stderr);
    assert!(elsewhere.got().is_empty(), "the other origin got {:?}", elsewhere.got());
    // esm itself got both, as sent.
    let put = esm.got().into_iter().find(|g| g.method == "PUT").expect("the PUT");
    assert!(String::from_utf8_lossy(&put.body).contains("secret"));
    assert!(put.headers.iter().any(|(name, _)| name == "authorization"));

    // Within the origin a redirect is followed.
    let run = cli(&esm.url, &["catalog", "-o", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(serde_json::from_str::<Value>(&run.stdout).expect("JSON"), json!({"services": []}));

    // Credentials in the URL are not shown either.
    let url = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", crate::support::free_port());
    let run = cli(&url, &["catalog"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    clean(&run, "an unreachable esm");
    assert!(run.stderr.contains("cannot reach esm at http://127.0.0.1:"), "{}", run.stderr);
}
