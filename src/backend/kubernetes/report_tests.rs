use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::backend::kubernetes::readiness::Seen;

fn service(spec: Value, status: Value) -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "annotations": {"esm.service": "web_app"}}, "spec": spec, "status": status}))
    .unwrap()
}

fn deployment(available: i32) -> Deployment {
    serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"esm.service": "web_app"}},
        "spec": {"replicas": 1, "selector": {}, "template": {"spec": {"containers": [
            {"name": "web", "image": "esm-test/busybox:latest", "env": [{"name": "GREETING", "value": "hello"}]}]}}},
        "status": {"availableReplicas": available}}))
    .unwrap()
}

#[test]
fn the_address_follows_the_service_type_and_is_never_a_placeholder() {
    let ports = json!([{"port": 8080, "nodePort": 31001}, {"port": 53, "protocol": "UDP", "nodePort": 31002}]);
    let cluster_ip = service(json!({"clusterIP": "10.96.0.7", "ports": ports}), json!({}));
    let address = address(&cluster_ip, Some("node.example")).unwrap();
    assert_eq!((address.name.as_str(), address.host.as_str()), ("web_app", "10.96.0.7"));
    assert_eq!(address.ports, BTreeMap::from([("8080/tcp".to_owned(), 8080), ("53/udp".to_owned(), 53)]));

    let node_port = service(json!({"type": "NodePort", "clusterIP": "10.96.0.7", "ports": ports}), json!({}));
    let address = report_address(&node_port, Some("node.example"));
    assert_eq!(address.host, "node.example");
    assert_eq!(address.ports["8080/tcp"], 31001);
    assert_eq!(super::address(&node_port, None), None, "no node address known: no address");

    let balancer = service(json!({"type": "LoadBalancer", "clusterIP": "10.96.0.7", "ports": ports}), json!({}));
    assert_eq!(super::address(&balancer, None), None, "no ingress yet: no address");
    let balanced = service(
        json!({"type": "LoadBalancer", "clusterIP": "10.96.0.7", "ports": ports}),
        json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}),
    );
    assert_eq!(report_address(&balanced, None).host, "lb.example");
    assert_eq!(report_address(&balanced, None).ports["8080/tcp"], 8080);

    for unassigned in [json!({"ports": ports}), json!({"clusterIP": "", "ports": ports}), json!({"clusterIP": "None"})]
    {
        assert_eq!(super::address(&service(unassigned, json!({})), None), None);
    }
}

fn report_address(service: &Service, node: Option<&str>) -> Address {
    address(service, node).expect("an address")
}

#[test]
fn details_carry_the_originals_flat_keys_with_real_values() {
    let seen = Seen { deployments: vec![deployment(1)], ..Seen::default() };
    let web = service(json!({"clusterIP": "10.96.0.7", "ports": [{"port": 8080}]}), json!({}));
    let info = info("esm-i-1", &seen, &addresses(&[web], None));
    assert_eq!(info.flat["namespace_name"], "esm-i-1");
    assert_eq!(info.flat["web_app_Ip"], "10.96.0.7");
    assert_eq!(info.flat["web_app_8080/tcp/HostPort"], "8080");
    assert_eq!(info.flat["web_app_state"], "Up");
    assert_eq!(info.flat["web_app_image_name"], "esm-test/busybox:latest");
    assert!(!info.flat.values().any(|v| v == "pending"));
    assert_eq!(info.problem, None);
    assert_eq!(info.containers[0]["ip"], "10.96.0.7");

    let down = info_of(&Seen { deployments: vec![deployment(0)], ..Seen::default() });
    assert_eq!(down.flat["web_app_state"], "Down");
    assert!(down.problem.unwrap().contains("deployment web_app is down"));
    assert!(info_of(&Seen::default()).problem.unwrap().contains("no workloads"));
}

fn info_of(seen: &Seen) -> Info {
    info("esm-i-1", seen, &[])
}

#[test]
fn credentials_name_every_service_and_what_the_manifest_asks() {
    let web = service(json!({"clusterIP": "10.96.0.7", "ports": [{"port": 8080}]}), json!({}));
    let credentials = BTreeMap::from([
        (
            "greeting".to_owned(),
            CredentialSource::Environment { service: "web_app".into(), variable: "GREETING".into() },
        ),
        ("realm".to_owned(), CredentialSource::Literal("tests".into())),
    ]);
    let output = bind_output("i-1", &addresses(&[web], None), &[deployment(1)], &credentials).unwrap();
    assert_eq!(
        output.credentials,
        json!({"host": "10.96.0.7", "services": {"web_app": {"host": "10.96.0.7", "ports": {"8080/tcp": 8080}}},
               "greeting": "hello", "realm": "tests"})
    );
    let endpoints = serde_json::to_value(output.endpoints).expect("serialises");
    assert_eq!(endpoints, json!([{"host": "10.96.0.7", "ports": ["8080"], "protocol": "tcp"}]));
    let error = bind_output("i-1", &[], &[], &credentials).unwrap_err();
    assert!(error.message.contains("no Service with an address"), "{}", error.message);
}
