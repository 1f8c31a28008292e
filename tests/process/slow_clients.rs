//! Slow and stalled clients against the real esm binary: each is cut after its timeout,
//! and while the connection cap is full, valid clients are served as soon as the
//! stalled ones are cut. Timeouts are 1 s here so the suite is quick; every wait is
//! bounded by a deadline, never a fixed sleep.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::RwLockReadGuard;
use tokio::time::Instant;

use crate::support::{self, Esm, StoreSetup, TempDir, VERSION, temp_dir};

/// What a timeout may take beyond its setting before a test fails: timer granularity
/// plus a loaded 2-core CI machine.
const MARGIN: Duration = Duration::from_secs(3);
/// How much earlier than its setting a close may be seen (clock and accept skew).
const EARLY: Duration = Duration::from_millis(200);
/// One second, the timeouts these tests configure.
const SECOND: Duration = Duration::from_secs(1);
const CATALOG: &str = "GET /v2/catalog HTTP/1.1\r\nHost: esm\r\nX-Broker-API-Version: 2.17\r\n\r\n";

/// A header timeout of a second (and an idle timeout far above it).
const HEADER_TIMEOUT_OF_A_SECOND: &[(&str, &str)] = &[("ESM_HEADER_READ_TIMEOUT", "1"), ("ESM_IDLE_TIMEOUT", "30")];

/// A share of the machine (every test here measures a time bound: see
/// [`support::machine::timed`]), then an esm with `env` on an embedded store of its own:
/// the share, the esm and the store's directory, bound in this order so that the share
/// goes last, once the esm is stopped.
async fn esm(env: &[(&str, &str)]) -> (RwLockReadGuard<'static, ()>, Esm, TempDir) {
    let machine = support::machine::timed().await;
    let dir = temp_dir("esm-slow");
    let esm = Esm::start_with(&StoreSetup::Embedded(dir.path().to_path_buf()), env).await;
    (machine, esm, dir)
}

/// `http://127.0.0.1:PORT` → a raw connection to it.
async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://")).await.expect("connects")
}

/// Reads until the server closes the connection; what it sent, and how long after
/// `since` it closed. Panics when it is still open `limit` after `since`.
async fn read_until_closed(stream: &mut TcpStream, since: Instant, limit: Duration) -> (String, Duration) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(since + limit, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection is still open {limit:?} later; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&received).into_owned(), since.elapsed()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a `Content-Length` body; its status line.
async fn read_response(stream: &mut TcpStream) -> String {
    read_whole_response(stream).await.lines().next().unwrap_or_default().to_owned()
}

/// Reads one response with a `Content-Length` body; all of it, head and body.
async fn read_whole_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + MARGIN;
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a Content-Length");
            if received.len() >= end + 4 + length {
                return text;
            }
        }
        let n =
            tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.expect("a response in time").expect("reads");
        assert!(n > 0, "closed mid-response: {text:?}");
        received.extend_from_slice(&buf[..n]);
    }
}

/// Asserts a close came after `timeout` (less [`EARLY`]) and before `timeout` + [`MARGIN`].
fn assert_cut_after(what: &str, took: Duration, timeout: Duration) {
    assert!(took + EARLY >= timeout, "{what}: closed after {took:?}, before the {timeout:?} timeout");
    assert!(took < timeout + MARGIN, "{what}: closed only after {took:?}");
}

/// Asserts the server closes `stream` a second after `since` (the timeout these tests
/// set), within [`MARGIN`]; what it sent before.
async fn cut_after_a_second(what: &str, stream: &mut TcpStream, since: Instant) -> String {
    let (received, took) = read_until_closed(stream, since, SECOND + MARGIN).await;
    assert_cut_after(what, took, SECOND);
    received
}

/// A connection to `base` that sent `partial` and then stalls, and when it began.
async fn stalled(base: &str, partial: &[u8]) -> (TcpStream, Instant) {
    let since = Instant::now();
    let mut stream = connect(base).await;
    stream.write_all(partial).await.expect("writes");
    (stream, since)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stalls_before_its_head_is_complete_is_cut_after_the_header_timeout() {
    let (_machine, esm, _dir) = esm(HEADER_TIMEOUT_OF_A_SECOND).await;
    let (mut half_head, since) = stalled(&esm.api, b"GET /v2/catalog HTTP/1.1\r\nHost: esm\r\nX-Broker-API-").await;
    let mut silent = connect(&esm.api).await;

    cut_after_a_second("half a head", &mut half_head, since).await;
    cut_after_a_second("no byte at all", &mut silent, since).await;

    let mut valid = connect(&esm.api).await;
    valid.write_all(CATALOG.as_bytes()).await.expect("writes");
    assert_eq!(read_response(&mut valid).await, "HTTP/1.1 200 OK", "esm still serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let (_machine, esm, _dir) = esm(&[("ESM_HEADER_READ_TIMEOUT", "30"), ("ESM_IDLE_TIMEOUT", "1")]).await;
    let mut stream = connect(&esm.api).await;
    for _ in 0..2 {
        stream.write_all(CATALOG.as_bytes()).await.expect("writes");
        assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK", "served and kept alive");
    }
    let since = Instant::now();
    let rest = cut_after_a_second("idle keep-alive", &mut stream, since).await;
    assert_eq!(rest, "", "nothing more is sent");
}

/// hyper 1.12 starts its header timer as soon as a response is written, so on HTTP/1.1
/// the header timeout also bounds the wait for the next request (docs/operations.md:
/// Connection limits).
#[tokio::test(flavor = "multi_thread")]
async fn on_http1_the_header_timeout_also_bounds_the_wait_for_the_next_request() {
    let (_machine, esm, _dir) = esm(HEADER_TIMEOUT_OF_A_SECOND).await;
    let mut stream = connect(&esm.api).await;
    stream.write_all(CATALOG.as_bytes()).await.expect("writes");
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");
    let since = Instant::now();
    cut_after_a_second("waiting for the next request", &mut stream, since).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_stalls_is_answered_408_and_the_connection_closed() {
    let (_machine, esm, _dir) = esm(&[("ESM_BODY_READ_TIMEOUT", "1")]).await;
    let mut stream = connect(&esm.api).await;
    let head = provision_head("slow", "Content-Type: application/json\r\n", 1000) + "{\"service_id\": ";
    stream.write_all(head.as_bytes()).await.expect("writes");
    let since = Instant::now();
    let answer = cut_after_a_second("stalled body", &mut stream, since).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "408, got {answer:?}");
    assert!(answer.contains(r#""error":"RequestTimeout""#), "an OSB error body, got {answer:?}");
    assert!(answer.contains(r#""description":"#), "an OSB error body, got {answer:?}");

    let client = support::Client::new(&esm.api);
    let (status, body) = client.send(reqwest::Method::GET, "/v2/catalog", None).await;
    assert_eq!(status, 200, "esm keeps serving: {body}");
}

/// The head of a provision of `id` with more `headers` (each line ending in CRLF)
/// announcing a body of `length` bytes.
fn provision_head(id: &str, headers: &str, length: usize) -> String {
    format!(
        "PUT /v2/service_instances/{id} HTTP/1.1\r\nHost: esm\r\nX-Broker-API-Version: {VERSION}\r\n\
         {headers}Content-Length: {length}\r\n\r\n"
    )
}

/// A head announcing a 2 MiB body (over the 1 MiB limit) for a provision.
fn oversized_head(extra: &str) -> (String, usize) {
    let length = 2 * 1024 * 1024;
    (provision_head("big", &format!("Content-Type: application/json\r\n{extra}"), length), length)
}

/// A client that sends its whole body before reading still gets the 413: esm reads
/// (and drops) the rest before answering, instead of closing on unread data, which
/// resets the connection and loses the answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_sent_in_full_before_reading_gets_its_413() {
    let (_machine, esm, _dir) = esm(&[]).await;
    let mut stream = connect(&esm.api).await;
    let (head, length) = oversized_head("");
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b' ', length));
    tokio::time::timeout(MARGIN * 5, stream.write_all(&request))
        .await
        .expect("the body is taken in time")
        .expect("esm takes the whole body without resetting the connection");
    let answer = read_whole_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "413, got {answer:?}");
    assert!(answer.contains(r#""error":"PayloadTooLarge""#), "an OSB error body, got {answer:?}");
    assert!(answer.contains(r#""description":"#), "an OSB error body, got {answer:?}");
    // The body was read to its end: the connection serves the next request.
    stream.write_all(CATALOG.as_bytes()).await.expect("writes");
    assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");
}

/// A client that waits for `100 Continue` gets the 413 at once and need not send its body.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_announced_with_expect_100_continue_is_refused_before_it_is_sent() {
    let (_machine, esm, _dir) = esm(&[("ESM_BODY_READ_TIMEOUT", "30")]).await;
    let mut stream = connect(&esm.api).await;
    let (head, _) = oversized_head("Expect: 100-continue\r\n");
    stream.write_all(head.as_bytes()).await.expect("writes");
    let answer = read_whole_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "413 without 100 Continue first, got {answer:?}");
    assert!(answer.contains(r#""error":"PayloadTooLarge""#), "an OSB error body, got {answer:?}");
}

/// A body beyond what esm drains (4 MiB) is not waited for: the 413 comes at once, and
/// the connection is closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_too_large_to_drain_is_answered_at_once_and_the_connection_closed() {
    let (_machine, esm, _dir) = esm(&[("ESM_BODY_READ_TIMEOUT", "30")]).await;
    let mut stream = connect(&esm.api).await;
    let head = provision_head("huge", "", 64 * 1024 * 1024) + "{";
    stream.write_all(head.as_bytes()).await.expect("writes");
    let since = Instant::now();
    let (answer, took) = read_until_closed(&mut stream, since, MARGIN).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "413, got {answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    assert!(took < MARGIN, "answered after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_connections_beyond_the_cap_do_not_lock_out_valid_clients() {
    let _machine = support::machine::timed().await;
    const STALLED: usize = 200;
    const CAP: usize = 50;
    let dir = temp_dir("esm-cap");
    let log = dir.path().join("esm.log");
    let env = [("ESM_MAX_CONNECTIONS", "50"), ("ESM_HEADER_READ_TIMEOUT", "1"), ("ESM_IDLE_TIMEOUT", "30")];
    let esm = Esm::start_logging(&StoreSetup::Embedded(dir.path().join("data")), &env, Some(&log)).await;

    let baseline = open_files(esm.pid());
    // Bounded and on loopback only: 200 connections that each send half a head.
    let flood_started = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut stream = connect(&esm.api).await;
        stream.write_all(b"GET /v2/catalog HTTP/1.1\r\nHost: esm\r\n").await.expect("writes");
        stalled.push(stream);
    }
    // esm takes a cap-full and leaves the rest in the kernel's backlog (watched until
    // just before the first ones are cut).
    let most = most_open_files(esm.pid(), flood_started + SECOND - EARLY).await;
    assert!(most + 5 >= baseline + CAP, "{most} files open with {baseline} before: esm took fewer than the cap");
    assert!(most <= baseline + CAP + 5, "{most} files open with {baseline} before and a cap of {CAP}");
    let http = support::http_builder().timeout(Duration::from_secs(30)).build().expect("client");

    // The operator port has its own slots: it answers at once.
    let started = Instant::now();
    let health = http.get(format!("{}/health", esm.ops)).send().await.expect("/health answers");
    assert!(health.status().is_success(), "/health: {}", health.status());
    assert!(started.elapsed() < MARGIN, "/health took {:?} during the flood", started.elapsed());

    // A valid client waits in the backlog behind the stalled ones, which are cut a
    // cap-full at a time, one header timeout each.
    let rounds = u32::try_from(STALLED.div_ceil(CAP)).expect("small");
    let started = Instant::now();
    let catalog = http
        .get(format!("{}/v2/catalog", esm.api))
        .header("X-Broker-API-Version", VERSION)
        .send()
        .await
        .expect("the catalog answers");
    assert_eq!(catalog.status(), 200);
    let waited = started.elapsed();
    assert!(waited < SECOND * (rounds + 1) + MARGIN, "the catalog took {waited:?}");

    // Every stalled connection is cut by esm, none is kept.
    let limit = SECOND * (rounds + 1) + MARGIN;
    for stream in &mut stalled {
        read_until_closed(stream, flood_started, limit).await;
    }
    let started = Instant::now();
    let catalog = http.get(format!("{}/v2/catalog", esm.api)).header("X-Broker-API-Version", VERSION).send().await;
    assert_eq!(catalog.expect("the catalog answers").status(), 200);
    assert!(started.elapsed() < SECOND, "once the stalled ones are gone the catalog answers promptly");

    drop(esm);
    let log = std::fs::read_to_string(&log).expect("esm's log");
    assert!(log.contains("esm is serving"), "the log was captured: {log}");
    assert!(!log.contains("Too many open files"), "esm ran out of file descriptors: {log}");
    assert!(!log.contains("accept failed"), "accept failed: {log}");
}

/// How many files process `pid` has open.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).expect("/proc/PID/fd (Linux)")
}

/// The most files `pid` had open, sampled until `until` (at least once).
async fn most_open_files(pid: u32, until: Instant) -> usize {
    let mut most = open_files(pid);
    // Sampling, not waiting for a state: every 20 ms until `until`.
    let mut every = tokio::time::interval(Duration::from_millis(20));
    while Instant::now() < until {
        every.tick().await;
        most = most.max(open_files(pid));
    }
    most
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_port_cuts_a_stalled_client_too() {
    let (_machine, esm, _dir) = esm(HEADER_TIMEOUT_OF_A_SECOND).await;
    let (mut stream, since) = stalled(&esm.ops, b"GET /health HTTP/1.1\r\nHo").await;
    cut_after_a_second("half a head on the operator port", &mut stream, since).await;

    let health = support::get(format!("{}/health", esm.ops)).await.expect("/health answers");
    assert!(health.status().is_success());
}
