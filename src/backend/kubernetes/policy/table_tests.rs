//! Checks every row of the policy table (`table`) with a manifest made for it.

use std::cell::Cell;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Value, json};

use super::KubernetesPolicy;
use super::table::*;
use crate::backend::kubernetes::objects::Objects;
use crate::manifest::Policy;

/// The manifest every row is merged into: the objects each place needs, and the
/// Secret, ConfigMap and claims the allowed references name.
fn base() -> Vec<Value> {
    let claim = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
        }}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim1"}, "spec": claim}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {
            "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
        }}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "task"}, "spec": {
            "template": {"spec": {"containers": [{"name": "t", "image": "busybox"}], "restartPolicy": "Never"}},
        }}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "seed"}, "spec": claim}),
    ]
}

/// The value at `pointer` in `value`, made where missing (`{}`, or a list of `{}` up to
/// a numeric segment).
fn ensure<'a>(value: &'a mut Value, pointer: &str) -> &'a mut Value {
    let mut at = value;
    for segment in pointer.split('/').skip(1) {
        at = match segment.parse::<usize>() {
            Ok(n) => {
                if !at.is_array() {
                    *at = json!([]);
                }
                let list = at.as_array_mut().expect("just made a list");
                while list.len() <= n {
                    list.push(json!({}));
                }
                &mut list[n]
            }
            Err(_) => {
                if !at.is_object() {
                    *at = json!({});
                }
                at.as_object_mut().expect("just made a map").entry(segment).or_insert_with(|| json!({}))
            }
        };
    }
    at
}

/// Merges `fragment` into `target`, maps key by key; with `overwrite` false, only what
/// `target` lacks.
fn merge(target: &mut Value, fragment: &Value, overwrite: bool) {
    match (target, fragment) {
        (Value::Object(target), Value::Object(fragment)) => {
            for (key, value) in fragment {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge(existing, value, overwrite),
                    Some(existing) if overwrite => *existing = value.clone(),
                    Some(_) => {}
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, fragment) if overwrite => *target = fragment.clone(),
        _ => {}
    }
}

/// What a place needs before its fragment goes in.
fn seed(place: Place) -> Option<(&'static str, Value)> {
    let volume = "/spec/template/spec/volumes/0";
    match place {
        Init => Some(("/spec/template/spec/initContainers/0", json!({"name": "init", "image": "busybox"}))),
        Ephemeral => Some(("/spec/template/spec/ephemeralContainers/0", json!({"name": "debug", "image": "busybox"}))),
        Volume | Projection => Some((volume, json!({"name": "v"}))),
        EphemeralClaim => Some((
            volume,
            json!({"name": "v", "ephemeral": {"volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}),
        )),
        _ => None,
    }
}

/// The test manifest with `fragments` merged in, in order.
fn manifest(fragments: &[(Place, &str)]) -> String {
    let mut objects = base();
    for (place, yaml) in fragments {
        let (index, pointer) = place.target();
        if let Some((at, seeded)) = seed(*place) {
            merge(ensure(&mut objects[index], at), &seeded, false);
        }
        let fragment = crate::yaml::load_documents(yaml, &crate::yaml::Limits::default())
            .unwrap_or_else(|e| panic!("{yaml:?}: {e}"))
            .remove(0);
        merge(ensure(&mut objects[index], pointer), &fragment, true);
    }
    objects.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n")
}

/// Every setting on: what is refused even then is refused whatever the settings.
fn permissive() -> KubernetesPolicy {
    KubernetesPolicy {
        docker: Policy {
            allow_privileged: true,
            allow_bind_mounts: true,
            allow_external: true,
            host_ports: Some((1, 65535)),
            ..Policy::default()
        },
        allow_scheduling: true,
        max_extended_resources: 4,
        ..KubernetesPolicy::default()
    }
}

/// What is wrong with `row`'s verdict when its fragment goes in after `beside`, if
/// anything.
fn misjudged(row: &Row, beside: &[(Place, &str)]) -> Option<String> {
    let with = |yaml| manifest(&[beside, &[(row.place, yaml)]].concat());
    let content = with(row.yaml);
    let expected = row.expected();
    let under = |policy: &KubernetesPolicy| Objects::parse(&content, policy).map(drop);
    let refused_naming = |result: Result<(), String>, also: &str| match result {
        Ok(()) => Some("accepted".to_owned()),
        Err(e) if e.contains(&expected) && e.contains(also) => None,
        Err(e) => Some(format!("refused without naming {expected:?} and {also:?}: {e}")),
    };
    let default = under(&KubernetesPolicy::default());
    match row.verdict {
        Allowed => default.err().map(|e| format!("refused: {e}")),
        Refused => refused_naming(default, "").or_else(|| refused_naming(under(&permissive()), "")),
        Needs(setting) => refused_naming(default, setting.variable())
            .or_else(|| under(&setting.on()).err().map(|e| format!("refused with the setting: {e}"))),
        Bounded(within) => refused_naming(default, "ESM_").or_else(|| {
            let within = Objects::parse(&with(within), &KubernetesPolicy::default());
            within.err().map(|e| format!("refused within the cap: {e}"))
        }),
    }
}

#[test]
fn every_row_has_its_verdict() {
    let wrong: Vec<String> = table()
        .iter()
        .filter_map(|row| {
            let why = misjudged(row, &[])?;
            Some(format!("{:?} {} `{}` ({:?}): {why}", row.place, row.field, row.yaml, row.verdict))
        })
        .collect();
    assert!(wrong.is_empty(), "{} rows misjudged:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn every_allowed_field_at_once_is_accepted() {
    let table = table();
    let allowed: Vec<(Place, &str)> =
        table.iter().filter(|r| r.verdict == Allowed).map(|r| (r.place, r.yaml)).collect();
    Objects::parse(&manifest(&allowed), &KubernetesPolicy::default()).unwrap();
}

/// Property: a refusal is not lifted by anything allowed beside it.
#[test]
fn a_refusal_holds_beside_allowed_fields() {
    let table = table();
    let allowed: Vec<&Row> = table.iter().filter(|r| r.verdict == Allowed).collect();
    let mut wrong = Vec::new();
    for (i, row) in table.iter().filter(|r| r.verdict != Allowed).enumerate() {
        // A twelfth of the pairs, a different twelfth for each row: every allowed row
        // stands beside some refusals, at a twelfth of the cost of all pairs.
        for other in allowed.iter().skip(i % 12).step_by(12) {
            if let Some(why) = misjudged(row, &[(other.place, other.yaml)]) {
                wrong.push(format!("{} beside {}: {why}", row.yaml, other.yaml));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The fields `T`'s deserializer knows: k8s-openapi names them all when it reads a struct.
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Lister<'a>(&'a Cell<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for Lister<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only a struct's fields are listed"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(de::Error::custom("listed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let listed = Cell::new(&[][..]);
    let _ = T::deserialize(Lister(&listed));
    listed.get()
}

#[test]
fn every_field_has_a_row() {
    use k8s_openapi::api::core::v1 as core;
    let structs: [(Place, &[&str]); 8] = [
        (Pod, fields::<core::PodSpec>()),
        (PodSecurity, fields::<core::PodSecurityContext>()),
        (Container, fields::<core::Container>()),
        (Security, fields::<core::SecurityContext>()),
        (Volume, fields::<core::Volume>()),
        (Projection, fields::<core::VolumeProjection>()),
        (Service, fields::<core::ServiceSpec>()),
        (Claim, fields::<core::PersistentVolumeClaimSpec>()),
    ];
    let table = table();
    let mut missing = Vec::new();
    for (place, fields) in structs {
        assert!(fields.len() > 4, "{place:?}: k8s-openapi listed {fields:?}");
        missing.extend(
            fields
                .iter()
                .filter(|f| !table.iter().any(|r| r.place == place && r.field == **f))
                .map(|f| format!("{place:?} {f}")),
        );
        let unknown = table.iter().filter(|r| r.place == place && !fields.contains(&r.field));
        missing.extend(unknown.map(|r| format!("{place:?} {} is not a field of the struct", r.field)));
    }
    assert!(missing.is_empty(), "fields without a verdict:\n{}", missing.join("\n"));
}
