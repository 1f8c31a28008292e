//! `deploy/kubernetes/`: every document is checked against the Kubernetes schema of its
//! kind (k8s-openapi's types must read it, and write it back unchanged, so a misspelt
//! or misplaced field fails), and the ClusterRole grants exactly what the backend calls
//! (`esm::backend::kubernetes::PERMISSIONS`), no more and no less.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use esm::backend::kubernetes::PERMISSIONS;
use esm::yaml::{self, Limits};

/// Every document of every file in deploy/kubernetes, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in yaml::load_documents(&text, &Limits::default()).unwrap() {
            if !document.is_null() {
                found.push((file.display().to_string(), document));
            }
        }
    }
    found
}

/// Reads `document` as `T` and checks that writing it back gives the document: a field
/// the type does not know would be lost on the way.
fn round_trip<T: DeserializeOwned + Serialize>(file: &str, document: &Value) {
    let typed: T = serde_json::from_value(document.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(&serde_json::to_value(&typed).unwrap(), document, "{file}: a field the schema does not have");
}

#[test]
fn every_document_fits_the_schema_of_its_kind() {
    let mut kinds = BTreeSet::new();
    for (file, document) in documents() {
        let kind = document["kind"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "Namespace" => round_trip::<Namespace>(&file, &document),
            "ServiceAccount" => round_trip::<ServiceAccount>(&file, &document),
            "ClusterRole" => round_trip::<ClusterRole>(&file, &document),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(&file, &document),
            "Deployment" => round_trip::<Deployment>(&file, &document),
            "Service" => round_trip::<Service>(&file, &document),
            other => panic!("{file}: kind {other:?} is not checked here"),
        }
        kinds.insert(kind);
    }
    let expected = ["ClusterRole", "ClusterRoleBinding", "Deployment", "Namespace", "Service", "ServiceAccount"];
    assert_eq!(kinds, expected.iter().map(|k| (*k).to_owned()).collect());
}

#[test]
fn the_cluster_role_grants_exactly_what_the_backend_calls() {
    let role = documents().into_iter().find(|(_, d)| d["kind"] == "ClusterRole").expect("a ClusterRole").1;
    let role: ClusterRole = serde_json::from_value(role).unwrap();
    let granted: BTreeSet<(String, String, String)> = role
        .rules
        .unwrap_or_default()
        .iter()
        .flat_map(|rule| {
            let groups = rule.api_groups.clone().unwrap_or_default();
            let resources = rule.resources.clone().unwrap_or_default();
            let verbs = rule.verbs.clone();
            groups.into_iter().flat_map(move |g| {
                let verbs = verbs.clone();
                resources.clone().into_iter().flat_map(move |r| {
                    let g = g.clone();
                    verbs.clone().into_iter().map(move |v| (g.clone(), r.clone(), v))
                })
            })
        })
        .collect();
    let needed: BTreeSet<(String, String, String)> = PERMISSIONS
        .iter()
        .flat_map(|(group, resources, verbs)| {
            resources
                .iter()
                .flat_map(move |r| verbs.iter().map(move |v| ((*group).to_owned(), (*r).to_owned(), (*v).to_owned())))
        })
        .collect();
    assert_eq!(granted, needed);
    assert!(!granted.iter().any(|(_, r, v)| r == "*" || v == "*"), "no wildcards");
}

#[test]
fn esm_runs_as_two_replicas_on_mongodb_under_its_service_account() {
    let (_, deployment) = documents().into_iter().find(|(_, d)| d["kind"] == "Deployment").expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "esm");
    let env = pod["containers"][0]["env"].as_array().unwrap();
    let value = |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(value("ESM_STORE"), Some("mongodb".into()));
    assert_eq!(value("ESM_BACKENDS"), Some("kubernetes".into()));
    // Secrets come from Secrets, never inline.
    for secret in ["ESM_MONGO_URI", "ESM_BROKER_PASSWORD"] {
        let entry = env.iter().find(|e| e["name"] == secret).expect(secret);
        assert!(entry.get("value").is_none() && entry["valueFrom"]["secretKeyRef"].is_object(), "{secret}");
    }
}
