//! The specs without an engine: both backends get the same aliases, environment,
//! mounts and health check from one manifest.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use bollard::models::{EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, Mount, MountType};
use serde_json::{Value, json};

use super::*;
use crate::manifest::Policy;

const MANIFEST: &str = r#"
services:
  web:
    image: esm-test/busybox:latest
    environment: {MODE: manifest, KEPT: yes}
    ports: ["9000:80", "53/udp", {target: 81, published: 9001, mode: host}]
    volumes: ["data:/data", "/scratch", "outside:/outside:ro"]
    networks: {back: {aliases: [www]}}
    labels: {team: qa}
    healthcheck: {test: [CMD, "true"], interval: 1m30s, timeout: 5s, retries: 3, start_period: 500ms}
    hostname: web-host
    container_name: the-web
  db:
    image: esm-test/busybox:latest
    healthcheck: {test: [NONE]}
networks:
  back: {labels: {tier: back}}
  shared: {external: true, name: operators-net}
volumes:
  data: {x-esm-keep: true, labels: {backup: daily}}
  outside: {external: true, name: operators-volume}
"#;

/// Everything a unit borrows, owned here.
struct Fixture {
    compose: Compose,
    esm_labels: HashMap<String, String>,
    networks: BTreeMap<String, Resource>,
    volumes: BTreeMap<String, Resource>,
    parameters: Value,
    host_ports: BTreeMap<String, u16>,
}

impl Fixture {
    fn new() -> Self {
        let policy = Policy { allow_external: true, host_ports: Some((9000, 9010)), ..Policy::default() };
        let compose = Compose::parse(MANIFEST, &policy).expect("the manifest parses");
        let esm_labels = labels::for_instance("tests", "i-1", "m-1");
        let networks = networks(&compose, "esm-i-1", &esm_labels);
        let volumes = volumes(&compose, "esm-i-1", &esm_labels);
        let parameters = json!({"MODE": "parameter", "SIZE": 3});
        Self { compose, esm_labels, networks, volumes, parameters, host_ports: BTreeMap::new() }
    }

    fn unit<'a>(&'a self, name: &'a str) -> Unit<'a> {
        Unit {
            name,
            service: &self.compose.services[name],
            project: "esm-i-1",
            parameters: Some(&self.parameters),
            esm_labels: &self.esm_labels,
            networks: &self.networks,
            volumes: &self.volumes,
            host_ports: &self.host_ports,
        }
    }
}

const PUBLISH: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn mount<'a>(mounts: &'a [Mount], target: &str) -> &'a Mount {
    mounts.iter().find(|m| m.target.as_deref() == Some(target)).expect("the mount")
}

#[test]
fn networks_are_the_default_one_and_the_manifests_with_their_labels() {
    let f = Fixture::new();
    assert_eq!(f.networks["default"].name, "esm-i-1_default");
    assert_eq!(f.networks["default"].labels.as_ref(), Some(&f.esm_labels));
    let back = &f.networks["back"];
    assert_eq!(back.name, "esm-i-1_back");
    let labels = back.labels.as_ref().expect("made by esm");
    assert_eq!(labels["tier"], "back");
    assert_eq!(labels[labels::INSTANCE], "i-1");
    assert_eq!(f.networks["shared"], Resource { name: "operators-net".into(), labels: None });
}

#[test]
fn volumes_carry_the_manifests_labels_esms_and_keep() {
    let f = Fixture::new();
    let data = &f.volumes["data"];
    assert_eq!(data.name, "esm-i-1_data");
    let labels = data.labels.as_ref().expect("made by esm");
    assert_eq!(labels["backup"], "daily");
    assert_eq!(labels[labels::OWNER], "tests");
    assert_eq!(labels[labels::MANIFEST], "m-1");
    assert_eq!(labels[labels::KEEP], "true");
    assert_eq!(f.volumes["outside"], Resource { name: "operators-volume".into(), labels: None });
}

#[test]
fn both_specs_mount_volumes_with_the_labels_they_are_made_with() {
    let f = Fixture::new();
    let unit = f.unit("web");
    let from_container = container_body(&unit, PUBLISH).0.host_config.and_then(|h| h.mounts).expect("mounts");
    let from_service = service_spec(&unit).task_template.and_then(|t| t.container_spec?.mounts).expect("mounts");
    assert_eq!(from_container, from_service);
    let data = mount(&from_container, "/data");
    assert_eq!(data.source.as_deref(), Some("esm-i-1_data"));
    assert_eq!(data.volume_options.as_ref().and_then(|o| o.labels.as_ref()), f.volumes["data"].labels.as_ref());
    let anonymous = mount(&from_container, "/scratch");
    assert_eq!(anonymous.source, None);
    assert_eq!(anonymous.volume_options.as_ref().and_then(|o| o.labels.as_ref()), Some(&f.esm_labels));
    // Someone else's volume: used, never labelled.
    let outside = mount(&from_container, "/outside");
    assert_eq!(outside.source.as_deref(), Some("operators-volume"));
    assert_eq!(
        (outside.typ, outside.read_only, outside.volume_options.clone()),
        (Some(MountType::VOLUME), Some(true), None)
    );
}

#[test]
fn both_specs_give_the_same_aliases_hostname_included() {
    let f = Fixture::new();
    let unit = f.unit("web");
    let expected = vec!["web".to_owned(), "the-web".into(), "web-host".into(), "www".into()];
    assert_eq!(attachments(&unit), vec![("esm-i-1_back".to_owned(), expected.clone())]);

    let (body, more) = container_body(&unit, PUBLISH);
    assert!(more.is_empty(), "{more:?}");
    let endpoints = body.networking_config.and_then(|n| n.endpoints_config).expect("endpoints");
    assert_eq!(endpoints["esm-i-1_back"].aliases.as_ref(), Some(&expected));
    assert_eq!(body.host_config.and_then(|h| h.network_mode).as_deref(), Some("esm-i-1_back"));

    let networks = service_spec(&unit).task_template.and_then(|t| t.networks).expect("networks");
    assert_eq!(networks.len(), 1);
    assert_eq!(networks[0].target.as_deref(), Some("esm-i-1_back"));
    assert_eq!(networks[0].aliases.as_ref(), Some(&expected));
}

#[test]
fn a_service_without_networks_joins_the_instance_network_under_its_name() {
    let f = Fixture::new();
    assert_eq!(attachments(&f.unit("db")), vec![("esm-i-1_default".to_owned(), vec!["db".to_owned()])]);
}

#[test]
fn the_environment_has_the_instance_parameters_on_top() {
    let f = Fixture::new();
    let unit = f.unit("web");
    let expected = ["KEPT=yes", "MODE=parameter", "SIZE=3"].map(String::from).to_vec();
    assert_eq!(environment(&unit), expected);
    assert_eq!(container_body(&unit, PUBLISH).0.env, Some(expected.clone()));
    assert_eq!(service_spec(&unit).task_template.and_then(|t| t.container_spec?.env), Some(expected));
}

#[test]
fn container_ports_are_bound_to_the_publish_address() {
    let f = Fixture::new();
    let body = container_body(&f.unit("web"), PUBLISH).0;
    let bindings = body.host_config.and_then(|h| h.port_bindings).expect("bindings");
    let bound = |key: &str| {
        bindings[key]
            .as_ref()
            .expect("a binding")
            .iter()
            .map(|b| (b.host_ip.clone(), b.host_port.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bound("80/tcp"), [(Some("127.0.0.1".into()), Some("9000".into()))]);
    // No host port: the engine picks an ephemeral one.
    assert_eq!(bound("53/udp"), [(Some("127.0.0.1".into()), Some(String::new()))]);
    // One esm leased: that one, for the container and for a swarm service alike.
    let mut leased = Fixture::new();
    leased.host_ports.insert("web/53/udp".into(), 9005);
    let body = container_body(&leased.unit("web"), PUBLISH).0;
    let bindings = body.host_config.and_then(|h| h.port_bindings).expect("bindings");
    assert_eq!(bindings["53/udp"].as_ref().map(|b| b[0].host_port.clone()), Some(Some("9005".into())));
    let spec = service_spec(&leased.unit("web")).endpoint_spec.and_then(|e| e.ports).expect("ports");
    assert!(spec.iter().any(|p| p.target_port == Some(53) && p.published_port == Some(9005)), "{spec:?}");
    let mut exposed = body.exposed_ports.expect("exposed");
    exposed.sort();
    assert_eq!(exposed, ["53/udp", "80/tcp", "81/tcp"]);
}

#[test]
fn service_ports_keep_protocol_and_publish_mode() {
    let f = Fixture::new();
    let ports = service_spec(&f.unit("web")).endpoint_spec.and_then(|e| e.ports).expect("ports");
    let seen: Vec<_> = ports.iter().map(|p| (p.target_port, p.published_port, p.protocol, p.publish_mode)).collect();
    assert_eq!(
        seen,
        [
            (
                Some(80),
                Some(9000),
                Some(EndpointPortConfigProtocolEnum::TCP),
                Some(EndpointPortConfigPublishModeEnum::INGRESS)
            ),
            (
                Some(53),
                None,
                Some(EndpointPortConfigProtocolEnum::UDP),
                Some(EndpointPortConfigPublishModeEnum::INGRESS)
            ),
            (
                Some(81),
                Some(9001),
                Some(EndpointPortConfigProtocolEnum::TCP),
                Some(EndpointPortConfigPublishModeEnum::HOST)
            ),
        ]
    );
}

#[test]
fn healthcheck_durations_are_in_nanoseconds_for_both() {
    let f = Fixture::new();
    let unit = f.unit("web");
    let check = healthcheck(unit.service).expect("a health check");
    assert_eq!(check.test, Some(vec!["CMD".to_owned(), "true".into()]));
    assert_eq!(check.interval, Some(90_000_000_000));
    assert_eq!(check.timeout, Some(5_000_000_000));
    assert_eq!(check.start_period, Some(500_000_000));
    assert_eq!(check.retries, Some(3));
    assert_eq!(container_body(&unit, PUBLISH).0.healthcheck.as_ref(), Some(&check));
    assert_eq!(service_spec(&unit).task_template.and_then(|t| t.container_spec?.health_check), Some(check));
    assert!(has_healthcheck(unit.service));
    assert!(!has_healthcheck(f.unit("db").service), "test: [NONE] disables it");
}

#[test]
fn names_and_labels_of_units() {
    let f = Fixture::new();
    let web = f.unit("web");
    assert_eq!(container_name(&web), "esm-i-1_the-web");
    assert_eq!(service_name(&web), "esm-i-1_web");
    let labels = unit_labels(&web);
    assert_eq!(labels["team"], "qa");
    assert_eq!(labels[labels::SERVICE], "web");
    assert_eq!(labels[labels::INSTANCE], "i-1");
    assert_eq!(container_body(&web, PUBLISH).0.labels.as_ref(), Some(&labels));
    let spec = service_spec(&web);
    assert_eq!(spec.labels.as_ref(), Some(&labels));
    assert_eq!(spec.task_template.and_then(|t| t.container_spec?.labels), Some(labels));
}

#[test]
fn host_network_means_no_attachments() {
    let policy = Policy { allow_privileged: true, ..Policy::default() };
    let compose = Compose::parse(
        "services:\n  h:\n    image: esm-test/busybox:latest\n    network_mode: host\n    restart: on-failure:2\n",
        &policy,
    )
    .expect("parses");
    let esm_labels = labels::for_instance("tests", "i-2", "m-2");
    let (networks, volumes) = (networks(&compose, "p", &esm_labels), BTreeMap::new());
    let host_ports = BTreeMap::new();
    let unit = Unit {
        name: "h",
        service: &compose.services["h"],
        project: "p",
        parameters: None,
        esm_labels: &esm_labels,
        networks: &networks,
        volumes: &volumes,
        host_ports: &host_ports,
    };
    let (body, more) = container_body(&unit, PUBLISH);
    assert!(more.is_empty());
    assert!(body.networking_config.is_none());
    let host = body.host_config.expect("host config");
    assert_eq!(host.network_mode.as_deref(), Some("host"));
    let restart = host.restart_policy.expect("a restart policy");
    assert_eq!(restart.maximum_retry_count, Some(2));
}
