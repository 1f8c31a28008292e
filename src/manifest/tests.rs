//! The manifest model's tests: every supported key, and every refusal.

use std::time::Duration;

use super::*;

fn parse(yaml: &str) -> Result<Compose, String> {
    Compose::parse(yaml, &Policy::default())
}

/// What FULL needs: an external network and host ports.
fn permissive() -> Policy {
    Policy { allow_external: true, host_ports: Some((9000, 9010)), ..Policy::default() }
}

const FULL: &str = r#"
version: "3.8"
x-anything: {ignored: true}
x-esm-credentials:
  user: {service: db, env: DB_USER}
  database: app
services:
  web:
    image: esm-test/busybox:latest
    command: ["httpd", "-f", "-p", "8080"]
    entrypoint: /bin/sh -c
    environment: [MODE=test, EMPTY]
    ports: ["8080", "9000:80", "9001:81/udp", {target: 82, published: 9002, protocol: tcp}]
    expose: ["83", 84]
    volumes: ["data:/data:ro", "/anon", {type: volume, source: data, target: /more}]
    networks: {backend: {aliases: [www]}}
    depends_on: {db: {condition: service_healthy}}
    labels: {team: qa}
    healthcheck: {test: ["CMD", "true"], interval: 1m30s, timeout: 5s, retries: 3, start_period: 500ms}
    restart: on-failure:3
    hostname: web
    container_name: the-web
    working_dir: /srv
    user: "1000:1000"
    mem_limit: 256m
    cpus: 0.5
  db:
    image: esm-test/busybox:latest
    environment: {DB_USER: admin, PORT: 5432}
    deploy: {replicas: 2, resources: {limits: {cpus: "1.5", memory: 1g}}}
    networks: [backend]
networks:
  backend:
  shared: {external: true}
volumes:
  data: {x-esm-keep: true}
"#;

#[test]
fn every_supported_key_parses() {
    let c = Compose::parse(FULL, &permissive()).expect("parses");
    assert_eq!(c.start_order, ["db", "web"]);
    let web = &c.services["web"];
    assert_eq!(web.command.as_deref(), Some(&["httpd".into(), "-f".into(), "-p".into(), "8080".into()][..]));
    assert_eq!(web.entrypoint.as_deref(), Some(&["/bin/sh".into(), "-c".into()][..]));
    assert_eq!(web.environment.get("MODE").map(String::as_str), Some("test"));
    assert_eq!(web.environment.get("EMPTY").map(String::as_str), Some(""));
    assert_eq!(web.ports.len(), 4);
    assert_eq!(web.ports[0], Port { target: 8080, published: None, protocol: "tcp".into(), mode: None });
    assert_eq!(web.ports[1].published, Some(9000));
    assert_eq!(web.ports[2], Port { target: 81, published: Some(9001), protocol: "udp".into(), mode: None });
    assert_eq!(web.ports[3].published, Some(9002));
    assert_eq!(web.expose, ["83", "84"]);
    assert_eq!(
        web.volumes[0],
        Mount { source: MountSource::Volume("data".into()), target: "/data".into(), read_only: true }
    );
    assert_eq!(web.volumes[1].source, MountSource::Anonymous);
    assert_eq!(web.networks["backend"], ["www"]);
    assert_eq!(web.depends_on["db"], DependsOn::Healthy);
    let hc = web.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(hc.interval, Some(Duration::from_secs(90)));
    assert_eq!(hc.start_period, Some(Duration::from_millis(500)));
    assert_eq!(web.memory_bytes, Some(256 * 1024 * 1024));
    assert_eq!(web.nano_cpus, Some(500_000_000));
    assert_eq!(web.user.as_deref(), Some("1000:1000"));
    let db = &c.services["db"];
    assert_eq!(db.environment.get("PORT").map(String::as_str), Some("5432"));
    assert_eq!(db.memory_bytes, Some(1024 * 1024 * 1024));
    assert_eq!(db.nano_cpus, Some(1_500_000_000));
    assert_eq!(db.replicas, Some(2));
    // What a deployment declares: one container each on a Docker engine, each replica
    // on a swarm or a cluster.
    let one_each = crate::backend::Demand { cpu_millis: 2_000, memory_bytes: 1_280 * 1024 * 1024 };
    let replicated = crate::backend::Demand { cpu_millis: 3_500, memory_bytes: 2_304 * 1024 * 1024 };
    assert_eq!((c.demand(false), c.demand(true)), (one_each, replicated));
    assert!(c.networks["shared"].external);
    assert!(c.volumes["data"].keep);
    assert_eq!(c.credentials["database"], CredentialSource::Literal("app".into()));
    assert_eq!(
        c.credentials["user"],
        CredentialSource::Environment { service: "db".into(), variable: "DB_USER".into() }
    );
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = parse("services:\n  a:\n    image: x\n    build: .\n").unwrap_err();
    assert!(err.contains("build"), "{err}");
    let err = parse("services:\n  a:\n    image: x\nconfigs: {}\n").unwrap_err();
    assert!(err.contains("configs"), "{err}");
    let err = parse("services:\n  a:\n    image: x\n    healthcheck: {test: [CMD, 'true'], every: 1s}\n").unwrap_err();
    assert!(err.contains("every"), "{err}");
}

#[test]
fn host_power_is_refused_unless_allowed() {
    for (key, yaml) in [
        ("privileged", "privileged: true"),
        ("cap_add", "cap_add: [NET_ADMIN]"),
        ("pid: host", "pid: host"),
        ("network_mode: host", "network_mode: host"),
        ("devices", "devices: ['/dev/fuse:/dev/fuse']"),
    ] {
        let manifest = format!("services:\n  a:\n    image: x\n    {yaml}\n");
        let err = parse(&manifest).unwrap_err();
        assert!(err.contains(key) && err.contains("ESM_DOCKER_ALLOW_PRIVILEGED"), "{err}");
        let allowed = Compose::parse(&manifest, &Policy { allow_privileged: true, ..Policy::default() });
        assert!(allowed.is_ok(), "{key}: {allowed:?}");
    }
}

#[test]
fn bind_mounts_are_refused_unless_allowed() {
    let manifest = "services:\n  a:\n    image: x\n    volumes: ['/etc:/host-etc']\n";
    let err = parse(manifest).unwrap_err();
    assert!(err.contains("/etc") && err.contains("ESM_DOCKER_ALLOW_BIND_MOUNTS"), "{err}");
    let policy = Policy { allow_bind_mounts: true, ..Policy::default() };
    assert!(Compose::parse(manifest, &policy).is_ok());
}

#[test]
fn references_must_resolve() {
    assert!(parse("services:\n  a:\n    image: x\n    depends_on: [b]\n").unwrap_err().contains("b"));
    assert!(parse("services:\n  a:\n    image: x\n    volumes: ['v:/v']\n").unwrap_err().contains("volume v"));
    assert!(parse("services:\n  a:\n    image: x\n    networks: [n]\n").unwrap_err().contains("network n"));
    let cycle = "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n";
    assert!(parse(cycle).unwrap_err().contains("cycle"));
    assert!(parse("services:\n  a: {command: x}\n").unwrap_err().contains("image is required"));
    assert!(parse("services: {}\n").unwrap_err().contains("no services"));
    assert!(parse("version: '1'\nservices:\n  a: {image: x}\n").unwrap_err().contains("version"));
}

#[test]
fn bad_values_are_refused() {
    assert!(parse("services:\n  a: {image: x, ports: ['99999']}\n").is_err());
    assert!(parse("services:\n  a: {image: x, ports: ['80/sctp']}\n").is_err());
    assert!(parse("services:\n  a: {image: x, mem_limit: 5q}\n").is_err());
    assert!(parse("services:\n  a: {image: x, restart: sometimes}\n").is_err());
    assert!(parse("services:\n  a: {image: x, healthcheck: {test: [CMD, 'true'], interval: soon}}\n").is_err());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("").is_err());
    assert!(parse_duration("10").is_err());
}

/// A one-service manifest with `extra` YAML lines under the service.
fn service_with(extra: &str) -> String {
    format!("services:\n  a:\n    image: esm-test/busybox:1\n    {extra}\n")
}

fn refused(manifest: &str, policy: &Policy, expected: &str) {
    let err = Compose::parse(manifest, policy).expect_err(manifest);
    assert!(err.contains(expected), "{manifest:?}: {err:?} should mention {expected:?}");
}

#[test]
fn esm_labels_are_reserved_everywhere() {
    let policy = Policy::default();
    refused(&service_with("labels: {esm.owner: other}"), &policy, "esm.owner");
    refused(&service_with("labels: [esm.instance_id=x]"), &policy, "esm.instance_id");
    let network = "services:\n  a: {image: x}\nnetworks:\n  n: {labels: {esm.owner: x}}\n";
    refused(network, &policy, "esm.owner");
    let volume = "services:\n  a: {image: x}\nvolumes:\n  v: {labels: {esm.keep: 'true'}}\n";
    refused(volume, &policy, "esm.keep");
    assert!(Compose::parse(&service_with("labels: {team.esm: ok}"), &policy).is_ok());
}

#[test]
fn external_resources_need_the_operator_and_never_the_engines_own_networks() {
    let network = "services:\n  a: {image: x}\nnetworks:\n  n: {external: true}\n";
    let volume = "services:\n  a: {image: x}\nvolumes:\n  v: {external: true}\n";
    refused(network, &Policy::default(), "ESM_DOCKER_ALLOW_EXTERNAL");
    refused(volume, &Policy::default(), "ESM_DOCKER_ALLOW_EXTERNAL");
    let allowed = Policy { allow_external: true, ..Policy::default() };
    assert!(Compose::parse(network, &allowed).is_ok());
    assert!(Compose::parse(volume, &allowed).is_ok());
    for engine_network in ["host", "none", "bridge"] {
        let manifest =
            format!("services:\n  a: {{image: x}}\nnetworks:\n  n: {{external: true, name: {engine_network}}}\n");
        refused(&manifest, &allowed, "engine's own network");
    }
    // Driver options (a bind mount in disguise) are not a key esm takes at all.
    let opts = "services:\n  a: {image: x}\nvolumes:\n  v: {driver_opts: {type: none, o: bind, device: /etc}}\n";
    refused(opts, &allowed, "driver_opts");
}

#[test]
fn ports_name_no_host_address_and_host_ports_only_in_the_range() {
    let policy = Policy::default();
    for port in ["'0.0.0.0:18555:80'", "'127.0.0.1::80'", "{target: 80, host_ip: 0.0.0.0}"] {
        refused(&service_with(&format!("ports: [{port}]")), &policy, "host address");
    }
    refused(&service_with("ports: ['22:80']"), &policy, "ESM_HOST_PORT_RANGE");
    refused(&service_with("ports: [{target: 80, published: 22}]"), &policy, "ESM_HOST_PORT_RANGE");
    let ranged = Policy { host_ports: Some((30000, 30009)), ..Policy::default() };
    refused(&service_with("ports: ['30010:80']"), &ranged, "outside ESM_HOST_PORT_RANGE");
    let ok = Compose::parse(&service_with("ports: ['30001:80', '81']"), &ranged).expect("in range");
    assert_eq!(ok.services["a"].ports[0].published, Some(30001));
    assert_eq!(ok.services["a"].ports[1].published, None);
}

#[test]
fn values_docker_would_refuse_are_refused_at_registration() {
    let policy = Policy::default();
    for (extra, expected) in [
        ("cpus: 1e12", "cpus"),
        ("cpus: 0", "cpus"),
        ("mem_limit: -1", "memory"),
        ("mem_limit: 1k", "memory"),
        ("mem_limit: 99999999999999999999g", "memory"),
        ("container_name: ../../etc", "container_name"),
        ("hostname: a_b", "hostname"),
        ("working_dir: relative/dir", "working_dir"),
        ("user: 'root; rm -rf /'", "user"),
        ("restart: on-failure:often", "restart"),
        ("deploy: {replicas: 100000}", "replicas"),
        ("healthcheck: {test: [CMD, 'true'], interval: 99999999999999999999h}", "duration"),
        ("healthcheck: {test: [CMD, 'true'], retries: -1}", "retries"),
        ("healthcheck: {test: [RUN, 'true']}", "CMD"),
        ("environment: ['=value']", "environment"),
        ("expose: [http]", "expose"),
        ("networks: {default: {aliases: ['not valid']}}", "alias"),
    ] {
        refused(&service_with(extra), &policy, expected);
    }
    refused(&service_with(&format!("hostname: {}", "h".repeat(300))), &policy, "hostname");
    for image in ["UPPER/case", "a b", "x:", "x@sha256:123", "-x", &"a".repeat(400)] {
        refused(&format!("services:\n  a: {{image: '{image}'}}\n"), &policy, "image");
    }
    for good in
        ["busybox", "esm-test/busybox:1.36", "registry:5000/team/app:v1", "a@sha256:0123456789abcdef0123456789abcdef"]
    {
        assert!(Compose::parse(&format!("services:\n  a: {{image: '{good}'}}\n"), &policy).is_ok(), "{good}");
    }
    refused("services:\n  'a/b c': {image: x}\n", &policy, "service");
    refused("services:\n  a: {image: x}\nvolumes:\n  '../v': {}\n", &policy, "volume");
}

#[test]
fn too_many_services_are_refused() {
    let policy = Policy { max_services: 3, ..Policy::default() };
    let manifest: String =
        std::iter::once("services:\n".to_owned()).chain((0..4).map(|i| format!("  s{i}: {{image: x}}\n"))).collect();
    refused(&manifest, &policy, "ESM_MANIFEST_MAX_SERVICES");
}

#[test]
fn a_long_depends_on_chain_needs_no_stack() {
    // 20,000 services, each depending on the one before: ordered by a loop, so the
    // chain's length costs no stack (it overflowed one at 14,000 when this recursed).
    // The time budget is not what this checks: a loaded machine may need more than 2 s.
    let limits = crate::yaml::Limits {
        max_bytes: 4 << 20,
        max_nodes: 1_000_000,
        time_budget: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    let policy = Policy { max_services: 20_000, limits, ..Policy::default() };
    let mut manifest = String::from("services:\n  s0: {image: x}\n");
    for i in 1..20_000 {
        manifest.push_str(&format!("  s{i}: {{image: x, depends_on: [s{}]}}\n", i - 1));
    }
    let compose = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || Compose::parse(&manifest, &policy))
        .expect("thread")
        .join()
        .expect("no stack overflow")
        .expect("parses");
    assert_eq!(compose.start_order.first().map(String::as_str), Some("s0"));
    assert_eq!(compose.start_order.last().map(String::as_str), Some("s19999"));
}

#[test]
fn start_order_puts_dependencies_first_and_names_a_cycle() {
    let manifest = "services:\n  c: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n  a: {image: x}\n  z: {image: x}\n";
    assert_eq!(parse(manifest).expect("parses").start_order, ["a", "b", "c", "z"]);
    let cycle = "services:\n  a: {image: x, depends_on: [c]}\n  b: {image: x, depends_on: [a]}\n  c: {image: x, depends_on: [b]}\n  d: {image: x}\n";
    assert!(parse(cycle).unwrap_err().contains("cycle through service"));
}

#[test]
fn yaml_limits_apply_to_manifests() {
    let policy = Policy { limits: crate::yaml::Limits { max_bytes: 100, ..Default::default() }, ..Policy::default() };
    refused(&service_with(&format!("environment: {{A: {}}}", "x".repeat(200))), &policy, "ESM_MANIFEST_MAX_BYTES");
    refused(
        &format!("services:\n  a: {{image: x, command: {}{}}}\n", "[".repeat(100), "]".repeat(100)),
        &Policy::default(),
        "ESM_MANIFEST_MAX_DEPTH",
    );
}
