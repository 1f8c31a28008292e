//! Property tests of the manifest parsers (proptest, on stable): whatever the input,
//! the YAML loader and the compose model answer `Ok` or `Err` within their limits;
//! they never panic, overflow the stack, or hold more than the limits allow. Inputs
//! are generated three ways: arbitrary text, YAML-shaped text built from fragments
//! (anchors, aliases, merge keys, flow and block nesting, tags), and compose
//! manifests with arbitrary values in every key. Any failing case proptest finds is
//! kept in `tests/broker/manifest_properties.proptest-regressions` and replayed first.

use esm::manifest::{Compose, Policy};
use esm::yaml::{self, Limits};
use proptest::prelude::*;

fn small_limits() -> Limits {
    Limits { max_bytes: 16 * 1024, max_depth: 16, max_nodes: 2_000, max_text_bytes: 64 * 1024, ..Limits::default() }
}

/// Pieces of YAML syntax, glued together at random.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(", ".to_owned()),
        Just(": ".to_owned()),
        Just("\n".to_owned()),
        Just("\n  ".to_owned()),
        Just("- ".to_owned()),
        Just("? ".to_owned()),
        Just("<<: ".to_owned()),
        Just("---\n".to_owned()),
        Just("!!str ".to_owned()),
        Just("!tag ".to_owned()),
        Just("|\n  ".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        (0u8..4).prop_map(|n| format!("&a{n} ")),
        (0u8..4).prop_map(|n| format!("*a{n} ")),
        "[a-z0-9_.~-]{0,8}",
    ]
}

fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..200).prop_map(|parts| parts.concat())
}

/// A value for a compose key: any scalar or a small structure of them.
fn any_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        Just("null".to_owned()),
        Just("true".to_owned()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|kv| format!(
                "{{{}}}",
                kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
            )),
        ]
    })
}

const KEYS: [&str; 24] = [
    "image",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "expose",
    "volumes",
    "networks",
    "depends_on",
    "labels",
    "healthcheck",
    "restart",
    "hostname",
    "container_name",
    "working_dir",
    "user",
    "mem_limit",
    "cpus",
    "deploy",
    "privileged",
    "cap_add",
    "pid",
    "network_mode",
    "devices",
];

fn compose_manifest() -> impl Strategy<Value = String> {
    let service = prop::collection::vec((0..KEYS.len(), any_value()), 0..8);
    prop::collection::vec(("[a-z][a-z0-9_.-]{0,6}", service), 1..4).prop_map(|services| {
        let mut doc = String::from("services:\n");
        for (name, keys) in services {
            doc.push_str(&format!("  {name}:\n    image: esm-test/busybox\n"));
            for (key, value) in keys {
                doc.push_str(&format!("    {}: {value}\n", KEYS[key]));
            }
        }
        doc
    })
}

// Cases per property: proptest's default (256), or PROPTEST_CASES (CI runs more).
proptest! {
    #[test]
    fn the_loader_never_panics_on_text(text in "\\PC{0,400}") {
        let _ = yaml::load(&text, &small_limits());
    }

    #[test]
    fn the_loader_stays_within_its_limits(text in yamlish()) {
        let limits = small_limits();
        if let Ok(docs) = yaml::load_documents(&text, &limits) {
            for doc in docs {
                let (nodes, depth) = measure(&doc);
                prop_assert!(nodes <= limits.max_nodes, "{nodes} nodes");
                prop_assert!(depth <= limits.max_depth, "depth {depth}");
            }
        }
    }

    #[test]
    fn the_compose_model_never_panics(manifest in compose_manifest()) {
        let policy = Policy { limits: small_limits(), ..Policy::default() };
        let _ = Compose::parse(&manifest, &policy);
    }

    #[test]
    fn the_compose_model_never_panics_on_yamlish_text(text in yamlish()) {
        let policy = Policy { limits: small_limits(), ..Policy::default() };
        let _ = Compose::parse(&format!("services:\n  a:\n    image: x\n    labels: {text}\n"), &policy);
        let _ = Compose::parse(&text, &policy);
    }
}

/// Nodes and container depth of a value, counted with a loop (the value may be deep).
fn measure(value: &serde_json::Value) -> (usize, usize) {
    let (mut nodes, mut deepest) = (0, 0);
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        nodes += 1;
        match value {
            serde_json::Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            serde_json::Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                stack.extend(map.values().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    (nodes, deepest)
}
