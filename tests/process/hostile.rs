//! Hostile input against the real binary: manifests built to exhaust esm's memory,
//! stack or CPU, manifests that try to reach past their instance, and messages that
//! could leak secrets. Every payload is generated here (nothing large is committed),
//! and esm runs under an address-space cap, so a regression fails the test instead of
//! taking the machine. The Docker-side policy cases (against a real engine) are in
//! `tests/docker/backends.rs`; slow clients in `slow_clients`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{self, Client, Esm, StoreSetup, TempDir, eventually, temp_dir};

async fn start(dir: &TempDir, env: &[(&str, &str)]) -> (Esm, Client) {
    let mut all = vec![("ESM_BACKENDS", "dummy,docker-compose")];
    all.extend_from_slice(env);
    let (esm, client) = Esm::start_capped_in(dir, &all).await;
    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
                         "plans": [{"id": "plan", "name": "plan", "description": "d"}]});
    let (status, body) = client.send(Method::PUT, "/v2/et/catalog", Some(&service)).await;
    assert!(matches!(status, 200 | 201), "register service: {status} {body}");
    (esm, client)
}

/// Registers `content` as manifest `m` of `manifest_type`; `(status, description)`.
async fn register(client: &Client, manifest_type: &str, content: &str) -> (u16, String) {
    let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": manifest_type,
                          "manifest_content": content});
    let (status, body) = client.send(Method::PUT, "/v2/et/manifest/m", Some(&manifest)).await;
    let description = body["description"].as_str().unwrap_or_default().to_owned();
    if status == 400 {
        assert!(body["description"].is_string(), "an OSB error body: {body}");
    }
    (status, description)
}

/// Asserts esm is alive, answers, and holds less than `max_rss` bytes.
async fn still_well(esm: &mut Esm, client: &Client, max_rss: u64) {
    assert!(esm.alive(), "esm died");
    let (status, _) = client.send(Method::GET, "/v2/catalog", None).await;
    assert_eq!(status, 200);
    let rss = esm.rss_bytes();
    assert!(rss < max_rss, "esm holds {} MB", rss >> 20);
}

/// An alias bomb: a long anchored string, five levels of ten aliases each (10^5
/// copies), and padding of many small nodes (what defeated a budget that grows with
/// the document).
fn alias_bomb(string_bytes: usize, padding_nodes: usize) -> String {
    let mut doc = format!("x-s: &l0 \"{}\"\n", "a".repeat(string_bytes));
    for level in 1..=5 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        doc.push_str(&format!("x-l{level}: &l{level} [{refs}]\n"));
    }
    doc.push_str(&format!("x-pad: [{}]\n", vec!["0"; padding_nodes].join(",")));
    doc.push_str("services:\n  web: {image: esm-test/busybox}\n");
    doc
}

#[tokio::test]
async fn alias_bombs_are_refused_without_growing_esm() {
    let dir = temp_dir("esm-hostile");
    let (mut esm, client) = start(&dir, &[]).await;
    // Within the size limit: refused by what the aliases would expand to.
    let small = alias_bomb(60_000, 40_000);
    assert!(small.len() < 256 * 1024);
    for manifest_type in ["docker-compose", "dummy"] {
        let (status, description) = register(&client, manifest_type, &small).await;
        assert_eq!(status, 400, "{description}");
        assert!(description.contains("aliases expand to"), "{description}");
    }
    // The reported 600 KB bomb: refused by size, before parsing.
    let (status, description) = register(&client, "docker-compose", &alias_bomb(300_000, 100_000)).await;
    assert_eq!(status, 400);
    assert!(description.contains("ESM_MANIFEST_MAX_BYTES"), "{description}");
    still_well(&mut esm, &client, 300 << 20).await;
}

#[tokio::test]
async fn a_long_depends_on_chain_is_refused_or_ordered_without_a_crash() {
    let chain = |n: usize| {
        let mut doc = String::from("services:\n  s0: {image: esm-test/busybox}\n");
        for i in 1..n {
            doc.push_str(&format!("  s{i}: {{image: esm-test/busybox, depends_on: [s{}]}}\n", i - 1));
        }
        doc
    };
    let dir = temp_dir("esm-hostile");
    let (mut esm, client) = start(&dir, &[]).await;
    let (status, description) = register(&client, "docker-compose", &chain(14_000)).await;
    assert_eq!(status, 400, "over the size and service limits: {description}");
    still_well(&mut esm, &client, 300 << 20).await;
    drop(esm);

    // With the limits raised far enough to accept it, the chain is ordered by a loop.
    let dir = temp_dir("esm-hostile");
    let (mut esm, client) = start(
        &dir,
        &[
            ("ESM_MANIFEST_MAX_BYTES", "900000"),
            ("ESM_MANIFEST_MAX_SERVICES", "20000"),
            ("ESM_MANIFEST_MAX_NODES", "1000000"),
            // Time is not what this checks: a loaded machine may need more than 2 s.
            ("ESM_MANIFEST_PARSE_TIMEOUT", "60000"),
        ],
    )
    .await;
    let (status, description) = register(&client, "docker-compose", &chain(14_000)).await;
    assert_eq!(status, 201, "{description}");
    still_well(&mut esm, &client, 300 << 20).await;
}

#[tokio::test]
async fn deep_nesting_is_refused_at_once_and_never_stalls_other_requests() {
    let _machine = support::machine::timed().await;
    let dir = temp_dir("esm-hostile");
    let (mut esm, client) = start(&dir, &[]).await;
    let deep = "[".repeat(200_000);
    let started = Instant::now();
    let attacks: Vec<_> = (0..4)
        .map(|_| {
            let (client, deep) = (Client::new(&client.api), deep.clone());
            tokio::spawn(async move { register(&client, "docker-compose", &deep).await })
        })
        .collect();
    let (status, _) = client.send(Method::GET, "/v2/catalog", None).await;
    assert_eq!(status, 200);
    for attack in attacks {
        let (status, description) = attack.await.expect("joined");
        assert_eq!(status, 400);
        assert!(description.contains("ESM_MANIFEST_MAX_DEPTH"), "{description}");
    }
    // Was 23-25 s when the parse was quadratic and ran on the runtime; a generous
    // bound that only a regression of that kind exceeds.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    still_well(&mut esm, &client, 300 << 20).await;
}

#[tokio::test]
async fn manifests_that_reach_past_their_instance_are_refused_at_registration() {
    let dir = temp_dir("esm-hostile");
    let (mut esm, client) = start(&dir, &[]).await;
    let service = |extra: &str| format!("services:\n  web:\n    image: esm-test/busybox\n    {extra}\n");
    let cases = [
        (service("labels: {esm.owner: someone-else}"), "esm.owner"),
        (service("labels: {esm.instance_id: victim}"), "esm.instance_id"),
        (
            "services:\n  web: {image: x}\nvolumes:\n  data: {external: true, name: esm-victim_data}\n".to_owned(),
            "ESM_DOCKER_ALLOW_EXTERNAL",
        ),
        (
            "services:\n  web: {image: x}\nnetworks:\n  n: {external: true, name: esm-victim_default}\n".to_owned(),
            "ESM_DOCKER_ALLOW_EXTERNAL",
        ),
        (service("ports: ['0.0.0.0:18555:80']"), "host address"),
        (service("ports: ['22:80']"), "ESM_HOST_PORT_RANGE"),
        (service("volumes: ['/etc:/host-etc']"), "ESM_DOCKER_ALLOW_BIND_MOUNTS"),
        (service("privileged: true"), "ESM_DOCKER_ALLOW_PRIVILEGED"),
        (service("network_mode: 'container:victim'"), "network_mode"),
    ];
    for (manifest, expected) in &cases {
        let (status, description) = register(&client, "docker-compose", manifest).await;
        assert_eq!(status, 400, "{manifest}");
        assert!(description.contains(expected), "{manifest}: {description}");
    }
    still_well(&mut esm, &client, 300 << 20).await;
}

#[tokio::test]
async fn what_docker_would_refuse_is_refused_at_registration() {
    let dir = temp_dir("esm-hostile");
    let (esm, client) = start(&dir, &[]).await;
    let service = |extra: &str| format!("services:\n  web:\n    image: esm-test/busybox\n    {extra}\n");
    let long_host = format!("hostname: {}", "h".repeat(300));
    let cases = [
        service("cpus: 1e12"),
        service("mem_limit: -1"),
        service("container_name: ../../etc"),
        service(&long_host),
        "services:\n  'a/b c': {image: esm-test/busybox}\n".to_owned(),
        "services:\n  web: {image: 'Not An Image!'}\n".to_owned(),
        "services:\n  web: {image: x}\nnetworks:\n  n: {external: true, name: host}\n".to_owned(),
    ];
    for manifest in &cases {
        let (status, description) = register(&client, "docker-compose", manifest).await;
        assert_eq!(status, 400, "{manifest}: {description}");
    }
    // With external resources allowed, the engine's host network is still refused.
    drop(esm);
    let dir = temp_dir("esm-hostile");
    let (mut esm, client) = start(&dir, &[("ESM_DOCKER_ALLOW_EXTERNAL", "true")]).await;
    let (status, description) = register(&client, "docker-compose", &cases[6]).await;
    assert_eq!(status, 400);
    assert!(description.contains("engine's own network"), "{description}");
    still_well(&mut esm, &client, 300 << 20).await;
}

#[tokio::test]
async fn a_bad_mongodb_uri_never_shows_its_password() {
    let output = Command::new(env!("CARGO_BIN_EXE_esm"))
        .env_clear()
        .env("ESM_MONGO_URI", "mongodb://admin:s3cr/et@@db:notaport/esm")
        .env("ESM_BACKENDS", "dummy")
        .env("ESM_PORT", "0")
        .env("ESM_CHECK_PORT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("esm runs");
    assert!(!output.status.success(), "an invalid URI stops esm");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("ESM_MONGO_URI"), "says what is wrong: {printed}");
    for part in ["s3cr", "et@", "admin:"] {
        assert!(!printed.contains(part), "leaks {part:?}: {printed}");
    }
}

#[tokio::test]
async fn store_outages_are_told_in_esms_words() {
    // Nothing listens on this port: every store call fails after server selection.
    let uri = format!("mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=300", support::free_port());
    let store = StoreSetup::Mongo { uri, db: "esm".into() };
    let mut esm = Esm::start_unready(&store, &[]).await;
    let client = Client::new(&esm.api);
    let body: Value = eventually(Duration::from_secs(20), "a 503 from the catalog", || {
        assert!(esm.alive(), "esm died");
        async {
            let (status, body) = client.send(Method::GET, "/v2/catalog", None).await;
            (status == 503).then_some(body)
        }
    })
    .await;
    let description = body["description"].as_str().expect("an OSB error body");
    assert_eq!(description, "the store is unavailable: MongoDB does not answer");
}
