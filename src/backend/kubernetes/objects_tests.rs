use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::manifest::Policy;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx
          env: [{name: MODE, value: manifest}]
";

fn parse(content: &str) -> Result<Objects, String> {
    Objects::parse(content, &KubernetesPolicy::default())
}

/// The manifest parsed under `policy` and the Kubernetes settings' defaults.
fn parse_with(content: &str, policy: Policy) -> Result<Objects, String> {
    Objects::parse(content, &KubernetesPolicy::from(policy))
}

/// The manifest with `pod` (YAML lines at the pod spec's indentation) added to the
/// Deployment's pod spec.
fn with_pod(pod: &str) -> String {
    format!("{DEPLOYMENT}{pod}")
}

#[test]
fn a_multi_document_manifest_reads_in_creation_order() {
    let content = format!(
        "{DEPLOYMENT}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings.v1}}\ndata: {{a: b}}\n---\n"
    );
    let objects = parse(&content).unwrap();
    let keys: Vec<String> = objects.0.iter().map(Object::key).collect();
    assert_eq!(keys, ["ConfigMap/settings.v1", "Service/web", "Deployment/web"]);
}

#[test]
fn what_reaches_past_the_namespace_is_refused() {
    let cases = [
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "cluster-scoped"),
        ("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n", "cluster-scoped"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "not one esm deploys"),
        ("apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n", "not one esm deploys"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: kube-system}\n", "metadata.namespace"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: {esm.owner: other}}\n", "esm's own"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n", "not a valid Kubernetes name"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "metadata.name is missing"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a.b}\n", "not a valid Kubernetes name"),
        ("- a list\n", "not a mapping"),
        ("", "no Kubernetes objects"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {externalIPs: [1.2.3.4]}\n", "externalIPs"),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}\n",
            "nodePort 30080",
        ),
        (
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {volumeName: someone-elses}\n",
            "volumeName",
        ),
    ];
    for (content, expected) in cases {
        let error = parse(content).unwrap_err();
        assert!(error.contains(expected), "{content:?}: {error}");
    }
}

#[test]
fn pods_that_reach_the_node_are_refused_unless_allowed() {
    let cases = [
        ("      hostNetwork: true\n", "hostNetwork"),
        ("      hostPID: true\n", "hostPID"),
        ("      volumes: [{name: root, hostPath: {path: /}}]\n", "hostPath"),
        ("      volumes: [{name: share, nfs: {server: nas, path: /}}]\n", "nfs"),
    ];
    for (pod, expected) in cases {
        let error = parse(&with_pod(pod)).unwrap_err();
        assert!(error.contains(expected), "{pod:?}: {error}");
    }
    let allowed = Policy { allow_privileged: true, allow_bind_mounts: true, allow_external: true, ..Policy::default() };
    for (pod, _) in cases {
        parse_with(&with_pod(pod), allowed).unwrap();
    }
    parse(&with_pod("      volumes: [{name: tmp, emptyDir: {}}]\n")).unwrap();
}

#[test]
fn containers_with_host_powers_are_refused_unless_allowed() {
    let container = |security: &str| {
        DEPLOYMENT.replace(
            "          image: nginx\n",
            &format!("          image: nginx\n          securityContext: {security}\n"),
        )
    };
    for (security, expected) in [
        ("{privileged: true}", "privileged"),
        ("{capabilities: {add: [SYS_ADMIN]}}", "capabilities.add"),
        ("{allowPrivilegeEscalation: true}", "allowPrivilegeEscalation"),
    ] {
        let error = parse(&container(security)).unwrap_err();
        assert!(error.contains(expected) && error.contains("containers[0].securityContext"), "{error}");
        let allowed = Policy { allow_privileged: true, ..Policy::default() };
        parse_with(&container(security), allowed).unwrap();
    }
    parse(&container("{capabilities: {drop: [ALL]}, runAsNonRoot: true}")).unwrap();
    let host_port = DEPLOYMENT.replace(
        "          image: nginx\n",
        "          image: nginx\n          ports: [{containerPort: 80, hostPort: 80}]\n",
    );
    assert!(parse(&host_port).unwrap_err().contains("hostPort 80"));
    let in_range = Policy { host_ports: Some((1, 100)), ..Policy::default() };
    parse_with(&host_port, in_range).unwrap();
}

#[test]
fn objects_must_fit_their_schema_and_the_limits() {
    let error = parse(&DEPLOYMENT.replace("spec:\n  selector", "spec:\n  replicas: two\n  selector")).unwrap_err();
    assert!(error.contains("Deployment/web"), "{error}");
    let twice = format!("{DEPLOYMENT}---\n{DEPLOYMENT}");
    assert!(parse(&twice).unwrap_err().contains("declared twice"));
    let many: String =
        (0..5).map(|n| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{n}}}\n---\n")).collect();
    let small = Policy { max_services: 4, ..Policy::default() };
    assert!(parse_with(&many, small).unwrap_err().contains("more than 4 objects"));
    let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n\
                d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n";
    assert!(parse(bomb).unwrap_err().starts_with("manifest_content:"));
}

#[test]
fn an_object_for_an_instance_carries_esms_labels_and_the_parameters() {
    let objects = parse(DEPLOYMENT).unwrap();
    let esm = HashMap::from([("esm.owner".to_owned(), "esm".to_owned())]);
    let annotations = HashMap::from([("esm.instance_id".to_owned(), "Odd/ID".to_owned())]);
    let parameters = json!({"MODE": "parameter", "SIZE": 3});
    let body = objects.0[0].for_instance("esm-x", &esm, &annotations, Some(&parameters));
    assert_eq!(body["metadata"]["namespace"], "esm-x");
    assert_eq!(body["metadata"]["labels"]["esm.owner"], "esm");
    assert_eq!(body["metadata"]["labels"]["app"], "web");
    assert_eq!(body["metadata"]["annotations"]["esm.instance_id"], "Odd/ID");
    let template = &body["spec"]["template"]["metadata"];
    assert_eq!(template["labels"]["esm.owner"], "esm");
    assert_eq!(template["annotations"]["esm.instance_id"], "Odd/ID");
    let env = &body["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env, &json!([{"name": "MODE", "value": "parameter"}, {"name": "SIZE", "value": "3"}]));
    // The manifest's own selector is untouched: esm's labels only add to the pods'.
    assert_eq!(body["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
}
