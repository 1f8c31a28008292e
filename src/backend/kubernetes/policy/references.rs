//! What a manifest's objects name: esm's own labels are not theirs to set, at any
//! level, and the Secrets, ConfigMaps and claims their pods use are the manifest's own.
//! The instance's namespace holds nothing else, so a reference to anything else names
//! what esm did not deploy (or fails only at deployment, which registration can say now).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{CONTAINER_LISTS, items};
use crate::backend::kubernetes::objects::{Kind, Object};
use crate::backend::labels;

/// The ConfigMap every namespace has: the cluster's CA, public.
const ROOT_CA: &str = "kube-root-ca.crt";

/// Every metadata of `object` and where it is: its own, its pod template's, its claim
/// templates' and its ephemeral volumes' claim templates'.
fn metadata_of(object: &Object) -> Vec<(String, &Value)> {
    let body = &object.body;
    let mut found = vec![("metadata".to_owned(), body.get("metadata"))];
    found.push(("spec.template.metadata".to_owned(), body.pointer("/spec/template/metadata")));
    for (n, claim) in items(body.get("spec").unwrap_or(&Value::Null), "volumeClaimTemplates") {
        found.push((format!("spec.volumeClaimTemplates[{n}].metadata"), claim.get("metadata")));
    }
    for (n, volume) in items(body.pointer("/spec/template/spec").unwrap_or(&Value::Null), "volumes") {
        let at = format!("spec.template.spec.volumes[{n}].ephemeral.volumeClaimTemplate.metadata");
        found.push((at, volume.pointer("/ephemeral/volumeClaimTemplate/metadata")));
    }
    found.into_iter().filter_map(|(at, metadata)| Some((at, metadata?))).collect()
}

/// No label or annotation under `esm.` anywhere in a manifest's object: esm finds its
/// instances' objects and pods by them.
pub fn check_reserved(object: &Object) -> Result<(), String> {
    for (at, metadata) in metadata_of(object) {
        for key in ["labels", "annotations"] {
            let map = metadata.get(key).and_then(Value::as_object);
            if let Some(reserved) = map.and_then(|m| m.keys().find(|k| k.starts_with(labels::RESERVED_PREFIX))) {
                return Err(format!("{at}.{key} {reserved:?} is esm's own"));
            }
        }
    }
    Ok(())
}

/// The names a manifest declares, by kind.
struct Declared {
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
    claims: BTreeSet<String>,
    /// `(template, StatefulSet)`: the claims `<template>-<StatefulSet>-<ordinal>`.
    claim_templates: Vec<(String, String)>,
}

impl Declared {
    fn of(objects: &[Object]) -> Self {
        let names = |kind: Kind| objects.iter().filter(|o| o.kind == kind).map(|o| o.name.clone()).collect();
        let mut claim_templates = Vec::new();
        for set in objects.iter().filter(|o| o.kind == Kind::StatefulSet) {
            for (_, template) in items(set.body.get("spec").unwrap_or(&Value::Null), "volumeClaimTemplates") {
                if let Some(name) = template.pointer("/metadata/name").and_then(Value::as_str) {
                    claim_templates.push((name.to_owned(), set.name.clone()));
                }
            }
        }
        Self {
            secrets: names(Kind::Secret),
            config_maps: names(Kind::ConfigMap),
            claims: names(Kind::PersistentVolumeClaim),
            claim_templates,
        }
    }

    /// Whether `name` is a claim of the manifest's, or one a StatefulSet makes.
    fn has_claim(&self, name: &str) -> bool {
        self.claims.contains(name)
            || self.claim_templates.iter().any(|(template, set)| {
                name.strip_prefix(&format!("{template}-{set}-"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
    }
}

/// Every Secret, ConfigMap and claim the objects' pods and claims name is one of theirs.
pub fn check_references(objects: &[Object]) -> Result<(), String> {
    let declared = Declared::of(objects);
    for object in objects {
        references(object, &declared).map_err(|e| format!("{}: {e}", object.key()))?;
    }
    Ok(())
}

/// One object's references.
fn references(object: &Object, declared: &Declared) -> Result<(), String> {
    let check = |what: &str, name: Option<&Value>, at: String| -> Result<(), String> {
        let Some(name) = name.and_then(Value::as_str) else { return Ok(()) };
        let found = match what {
            "Secret" => declared.secrets.contains(name),
            "ConfigMap" => declared.config_maps.contains(name) || name == ROOT_CA,
            _ => declared.has_claim(name),
        };
        if found { Ok(()) } else { Err(format!("{at} names the {what} {name:?}, which the manifest does not declare")) }
    };
    let body = &object.body;
    let mut claims: Vec<(String, &Value)> = Vec::new();
    if object.kind == Kind::PersistentVolumeClaim {
        claims.push(("spec".into(), body.get("spec").unwrap_or(&Value::Null)));
    }
    for (n, template) in items(body.get("spec").unwrap_or(&Value::Null), "volumeClaimTemplates") {
        claims.push((format!("spec.volumeClaimTemplates[{n}].spec"), template.get("spec").unwrap_or(&Value::Null)));
    }
    if let Some(pod) = body.pointer("/spec/template/spec") {
        let at = "spec.template.spec";
        for (n, secret) in items(pod, "imagePullSecrets") {
            check("Secret", secret.get("name"), format!("{at}.imagePullSecrets[{n}].name"))?;
        }
        for (n, volume) in items(pod, "volumes") {
            let at = format!("{at}.volumes[{n}]");
            check("Secret", volume.pointer("/secret/secretName"), format!("{at}.secret.secretName"))?;
            check("ConfigMap", volume.pointer("/configMap/name"), format!("{at}.configMap.name"))?;
            let claim = volume.pointer("/persistentVolumeClaim/claimName");
            check("claim", claim, format!("{at}.persistentVolumeClaim.claimName"))?;
            for (s, source) in items(volume.get("projected").unwrap_or(&Value::Null), "sources") {
                let at = format!("{at}.projected.sources[{s}]");
                check("Secret", source.pointer("/secret/name"), format!("{at}.secret.name"))?;
                check("ConfigMap", source.pointer("/configMap/name"), format!("{at}.configMap.name"))?;
            }
            if let Some(spec) = volume.pointer("/ephemeral/volumeClaimTemplate/spec") {
                claims.push((format!("{at}.ephemeral.volumeClaimTemplate.spec"), spec));
            }
        }
        for list in CONTAINER_LISTS {
            for (n, container) in items(pod, list) {
                let at = format!("{at}.{list}[{n}]");
                for (e, var) in items(container, "env") {
                    let at = format!("{at}.env[{e}].valueFrom");
                    let from = var.get("valueFrom").unwrap_or(&Value::Null);
                    check("Secret", from.pointer("/secretKeyRef/name"), format!("{at}.secretKeyRef.name"))?;
                    check("ConfigMap", from.pointer("/configMapKeyRef/name"), format!("{at}.configMapKeyRef.name"))?;
                }
                for (e, from) in items(container, "envFrom") {
                    let at = format!("{at}.envFrom[{e}]");
                    check("Secret", from.pointer("/secretRef/name"), format!("{at}.secretRef.name"))?;
                    check("ConfigMap", from.pointer("/configMapRef/name"), format!("{at}.configMapRef.name"))?;
                }
            }
        }
    }
    for (at, spec) in claims {
        for key in ["dataSource", "dataSourceRef"] {
            let Some(source) = spec.get(key) else { continue };
            let kind = source.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind == "PersistentVolumeClaim" {
                check("claim", source.get("name"), format!("{at}.{key}.name"))?;
            }
        }
    }
    Ok(())
}
