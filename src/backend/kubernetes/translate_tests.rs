use serde_json::json;

use super::*;
use crate::manifest::Policy;

const COMPOSE: &str = r#"
services:
  web:
    image: esm-test/busybox:latest
    entrypoint: ["/bin/httpd"]
    command: ["-f", "-p", "8080"]
    environment: {GREETING: hello}
    ports: ["8080"]
    expose: ["9090/udp"]
    working_dir: /www
    user: "1000:1000"
    mem_limit: 64m
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- localhost:8080"]
      interval: 5s
      retries: 3
    volumes: ["data:/data", "/scratch"]
  worker:
    image: esm-test/busybox:latest
    depends_on: [web]
volumes:
  data: {}
"#;

fn compose(content: &str, policy: &Policy) -> Compose {
    Compose::parse(content, policy).unwrap()
}

#[test]
fn services_become_deployments_services_and_claims() {
    let policy = Policy::default();
    let objects = translate(&compose(COMPOSE, &policy), Exposure::ClusterIp, &KubernetesPolicy::from(policy)).unwrap();
    let keys: Vec<String> = objects.0.iter().map(Object::key).collect();
    assert_eq!(keys, ["PersistentVolumeClaim/data", "Service/web", "Deployment/web", "Deployment/worker"]);

    let web = &objects.0[2].body;
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "esm-test/busybox:latest");
    assert_eq!(container["command"], json!(["/bin/httpd"]));
    assert_eq!(container["args"], json!(["-f", "-p", "8080"]));
    assert_eq!(container["env"], json!([{"name": "GREETING", "value": "hello"}]));
    assert_eq!(
        container["ports"],
        json!([{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090, "protocol": "UDP"}])
    );
    assert_eq!(container["workingDir"], "/www");
    assert_eq!(container["securityContext"], json!({"runAsUser": 1000, "runAsGroup": 1000}));
    assert_eq!(container["resources"]["limits"]["memory"], "67108864");
    assert_eq!(
        container["readinessProbe"],
        json!({"exec": {"command": ["/bin/sh", "-c", "wget -q -O- localhost:8080"]}, "periodSeconds": 5, "failureThreshold": 3})
    );
    assert_eq!(container["volumeMounts"][0], json!({"name": "v0", "mountPath": "/data", "readOnly": false}));
    let volumes = &web["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes[0], json!({"name": "v0", "persistentVolumeClaim": {"claimName": "data"}}));
    assert_eq!(volumes[1], json!({"name": "v1", "emptyDir": {}}));
    assert_eq!(web["spec"]["selector"]["matchLabels"], json!({SERVICE_LABEL: "web"}));
    assert_eq!(web["spec"]["template"]["metadata"]["labels"][SERVICE_LABEL], "web");

    let service = &objects.0[1].body;
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["selector"], json!({SERVICE_LABEL: "web"}));
    assert_eq!(
        service["spec"]["ports"][0],
        json!({"name": "tcp-8080", "port": 8080, "targetPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(service["metadata"]["annotations"][SERVICE_ANNOTATION], "web");
    // Every translated object reads as its Kubernetes type.
    for object in &objects.0 {
        object.kind.check_schema(&object.body).unwrap();
    }
}

#[test]
fn services_are_exposed_as_configured() {
    let policy = Policy { host_ports: Some((30000, 30999)), ..Policy::default() };
    let content = "services:\n  web:\n    image: x\n    ports: [\"30080:80\"]\n";
    let objects = translate(&compose(content, &policy), Exposure::NodePort, &KubernetesPolicy::from(policy)).unwrap();
    let service = &objects.of(Kind::Service).next().unwrap().body;
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);
    let objects =
        translate(&compose(content, &policy), Exposure::LoadBalancer, &KubernetesPolicy::from(policy)).unwrap();
    let service = &objects.of(Kind::Service).next().unwrap().body;
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert!(service["spec"]["ports"][0].get("nodePort").is_none());
}

#[test]
fn odd_service_names_become_valid_and_distinct() {
    let policy = Policy::default();
    let content = "services:\n  Web_App:\n    image: x\n    ports: [\"80\"]\n  9lives:\n    image: x\n";
    let objects = translate(&compose(content, &policy), Exposure::ClusterIp, &KubernetesPolicy::from(policy)).unwrap();
    for object in &objects.0 {
        assert!(crate::backend::kubernetes::is_dns_label(&object.name), "{}", object.name);
        assert!(object.name.starts_with(|c: char| c.is_ascii_lowercase()), "{}", object.name);
    }
    let service = objects.of(Kind::Service).next().unwrap();
    assert_eq!(service.body["metadata"]["annotations"][SERVICE_ANNOTATION], "Web_App");
}

#[test]
fn what_does_not_translate_is_refused() {
    let allowed = Policy { allow_privileged: true, allow_external: true, ..Policy::default() };
    let cases = [
        ("services:\n  a:\n    image: x\n    devices: [\"/dev/fuse\"]\n", "devices"),
        ("services:\n  a:\n    image: x\n    networks: {back: {aliases: [db]}}\nnetworks:\n  back: {}\n", "aliases"),
        ("services:\n  a:\n    image: x\n    user: nobody\n", "user"),
        (
            "services:\n  a:\n    image: x\n    volumes: [\"d:/d\"]\nvolumes:\n  d: {external: true}\n",
            "external volumes",
        ),
        ("services:\n  a:\n    image: x\n    volumes: [\"d:/d\"]\nvolumes:\n  d: {x-esm-keep: true}\n", "x-esm-keep"),
        ("services:\n  a:\n    image: x\nnetworks:\n  n: {external: true}\n", "external networks"),
    ];
    for (content, expected) in cases {
        let error =
            translate(&compose(content, &allowed), Exposure::ClusterIp, &KubernetesPolicy::from(allowed)).unwrap_err();
        assert!(error.contains(expected), "{content:?}: {error}");
    }
}

#[test]
fn host_powers_need_the_same_allow_settings_as_on_docker() {
    let content = "services:\n  a:\n    image: x\n    privileged: true\n    network_mode: host\n";
    assert!(Compose::parse(content, &Policy::default()).is_err());
    let allowed = Policy { allow_privileged: true, ..Policy::default() };
    let objects =
        translate(&compose(content, &allowed), Exposure::ClusterIp, &KubernetesPolicy::from(allowed)).unwrap();
    let pod = &objects.0[0].body["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);
}
