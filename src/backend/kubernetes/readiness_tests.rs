use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::*;

fn read<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

fn deployment(name: &str, replicas: i32, available: i32) -> Deployment {
    read(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "generation": 2, "annotations": {"esm.service": format!("compose-{name}")}},
                "spec": {"replicas": replicas, "selector": {}, "template": {}},
                "status": {"observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas,
                           "availableReplicas": available}}))
}

fn service(name: &str, spec: Value, status: Value) -> Service {
    read(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec, "status": status}))
}

fn pod(waiting: &str) -> Pod {
    read(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"},
                "status": {"phase": "Pending", "containerStatuses": [{"name": "web", "image": "x", "imageID": "",
                  "ready": false, "restartCount": 0,
                  "state": {"waiting": {"reason": waiting, "message": "pull access denied for x"}}}]}}))
}

fn expected(deployments: &[&str], services: &[&str]) -> BTreeMap<Kind, BTreeSet<String>> {
    BTreeMap::from([
        (Kind::Deployment, deployments.iter().map(|s| (*s).to_owned()).collect()),
        (Kind::Service, services.iter().map(|s| (*s).to_owned()).collect()),
    ])
}

#[test]
fn ready_once_every_replica_is_available_and_every_service_has_its_address() {
    let with_ip = service("web", json!({"clusterIP": "10.0.0.7", "ports": [{"port": 80}]}), json!({}));
    let ready = Seen { deployments: vec![deployment("web", 2, 2)], services: vec![with_ip.clone()], ..Seen::default() };
    assert_eq!(look(&ready, &expected(&["web"], &["web"])), Look::Ready);

    let short = Seen { deployments: vec![deployment("web", 2, 1)], services: vec![with_ip], ..Seen::default() };
    assert_eq!(
        look(&short, &expected(&["web"], &["web"])),
        Look::Waiting("Deployment web has 1 of 2 replicas available".into())
    );

    let no_ip = service("web", json!({"ports": [{"port": 80}]}), json!({}));
    let seen = Seen { deployments: vec![deployment("web", 1, 1)], services: vec![no_ip], ..Seen::default() };
    assert!(matches!(look(&seen, &expected(&["web"], &["web"])), Look::Waiting(w) if w.contains("no cluster IP")));

    let missing = Seen { deployments: vec![deployment("web", 1, 1)], ..Seen::default() };
    assert!(
        matches!(look(&missing, &expected(&["web", "db"], &[])), Look::Waiting(w) if w == "Deployment db is not there")
    );
}

#[test]
fn node_ports_and_load_balancers_wait_for_what_the_cluster_assigns() {
    let node_port =
        service("web", json!({"type": "NodePort", "clusterIP": "10.0.0.7", "ports": [{"port": 80}]}), json!({}));
    assert!(service_waiting(&node_port).unwrap().contains("node port"));
    let balanced = service(
        "web",
        json!({"type": "LoadBalancer", "clusterIP": "10.0.0.7", "ports": [{"port": 80, "nodePort": 31000}]}),
        json!({"loadBalancer": {}}),
    );
    assert!(service_waiting(&balanced).unwrap().contains("load balancer"));
    let assigned = service(
        "web",
        json!({"type": "LoadBalancer", "clusterIP": "10.0.0.7", "ports": [{"port": 80, "nodePort": 31000}]}),
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}),
    );
    assert_eq!(service_waiting(&assigned), None);
    let headless = service("db", json!({"clusterIP": "None"}), json!({}));
    assert_eq!(service_waiting(&headless), None);
}

#[test]
fn a_pod_that_cannot_pull_fails_the_rollout_with_its_reason() {
    let seen =
        Seen { deployments: vec![deployment("web", 1, 0)], pods: vec![pod("ImagePullBackOff")], ..Seen::default() };
    assert_eq!(
        look(&seen, &expected(&["web"], &[])),
        Look::Failed("pod web-1: container web: ImagePullBackOff: pull access denied for x".into())
    );
    // Waiting to be created is not a failure.
    let seen =
        Seen { deployments: vec![deployment("web", 1, 0)], pods: vec![pod("ContainerCreating")], ..Seen::default() };
    assert!(matches!(look(&seen, &expected(&["web"], &[])), Look::Waiting(_)));
}

#[test]
fn a_rollout_past_its_deadline_fails() {
    let mut stuck = deployment("web", 1, 0);
    stuck.status.as_mut().unwrap().conditions = Some(vec![read(json!({"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet web-1 has timed out progressing."}))]);
    let seen = Seen { deployments: vec![stuck], ..Seen::default() };
    assert!(matches!(look(&seen, &expected(&["web"], &[])), Look::Failed(f) if f.contains("ProgressDeadlineExceeded")));
}

#[test]
fn a_rolling_update_is_ready_once_no_old_replica_is_left() {
    let mut rolling = deployment("web", 2, 2);
    let status = rolling.status.as_mut().unwrap();
    (status.replicas, status.updated_replicas) = (Some(3), Some(2));
    assert_eq!(deployment_state(&rolling).unwrap().as_deref(), Some("Deployment web has 1 old replicas still running"));
    let status = rolling.status.as_mut().unwrap();
    (status.replicas, status.updated_replicas, status.available_replicas) = (Some(2), Some(1), Some(2));
    assert_eq!(deployment_state(&rolling).unwrap().as_deref(), Some("Deployment web has 1 of 2 replicas updated"));
    let status = rolling.status.as_mut().unwrap();
    (status.replicas, status.updated_replicas) = (Some(2), Some(2));
    assert_eq!(deployment_state(&rolling).unwrap(), None);
}

#[test]
fn a_spec_not_yet_observed_is_not_ready() {
    let mut newer = deployment("web", 1, 1);
    newer.metadata.generation = Some(3);
    assert!(deployment_state(&newer).unwrap().unwrap().contains("latest spec"));
}

#[test]
fn components_are_up_or_down_with_the_pods_reason() {
    let seen = Seen {
        deployments: vec![deployment("web", 1, 1), deployment("api", 1, 0)],
        pods: vec![pod("CrashLoopBackOff")],
        ..Seen::default()
    };
    let components = components(&seen);
    assert_eq!(components.len(), 2);
    assert_eq!((components[0].name.as_str(), components[0].status), ("compose-api", ComponentStatus::Down));
    assert!(components[0].reason.as_deref().unwrap().contains("CrashLoopBackOff"));
    assert_eq!(
        (components[1].name.as_str(), components[1].status, components[1].reason.as_deref()),
        ("compose-web", ComponentStatus::Up, None)
    );
}
