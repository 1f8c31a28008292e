//! `esm engines …` against a real esm whose engines are dummy ones: the table's
//! columns, declaring, cordoning and removing an engine, and bad input refused with the
//! reason (exit 2), never a panic.

use super::{cli, esm, json_of, ok};

/// The row of engine `name` in a table of engines.
fn row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table.lines().find(|l| l.split_whitespace().next() == Some(name))
}

/// The cell of `row` under `column` (cells hold no spaces here, labels included).
fn cell<'a>(table: &str, row: &'a str, column: &str) -> Option<&'a str> {
    let header = table.lines().next()?;
    let at = header.split_whitespace().position(|c| c == column)?;
    row.split_whitespace().nth(at)
}

#[tokio::test(flavor = "multi_thread")]
async fn engines_are_listed_declared_cordoned_and_removed() {
    let (esm, _dir) = esm().await;
    let api = esm.api.as_str();

    let listed = cli(api, &["engines", "list"]).await;
    ok(&listed, "engines list");
    let header = listed.stdout.lines().next().unwrap_or_default();
    for column in ["NAME", "BACKEND", "STATE", "INSTANCES", "CAPACITY", "LABELS", "LAST PROBE"] {
        assert!(header.contains(column), "{column}: {header}");
    }
    let default = row(&listed.stdout, "default").expect("the default engine listed");
    assert!(default.contains("dummy") && default.contains("active") && default.contains("0/-"), "{default}");

    let set = cli(
        api,
        &["engines", "set", "e1", "--backend", "dummy", "--label", "zone=a", "--label", "tier=ssd", "--capacity", "10"],
    )
    .await;
    ok(&set, "engines set");
    let e1 = row(&set.stdout, "e1").expect("the engine shown");
    assert_eq!(cell(&set.stdout, e1, "CAPACITY"), Some("0/10"), "{}", set.stdout);
    assert_eq!(cell(&set.stdout, e1, "LABELS"), Some("tier=ssd,zone=a"), "{}", set.stdout);
    let listed = cli(api, &["engines", "list"]).await;
    let e1 = row(&listed.stdout, "e1").expect("e1 listed");
    assert_eq!(cell(&listed.stdout, e1, "CAPACITY"), Some("0/10"), "{}", listed.stdout);
    let shown = json_of(&cli(api, &["engines", "get", "e1", "-o", "json"]).await);
    assert_eq!((shown["capacity"]["instances"].as_u64(), shown["source"].as_str()), (Some(10), Some("api")));
    let details = cli(api, &["engines", "get", "e1"]).await;
    ok(&details, "engines get");
    assert!(details.stdout.lines().any(|l| l.split_whitespace().eq(["schedule", "active"])), "{}", details.stdout);

    // A whole declaration as JSON replaces the flags' one.
    let replaced =
        json_of(&cli(api, &["engines", "set", "e1", "--spec", r#"{"backend": "dummy"}"#, "-o", "json"]).await);
    assert_eq!((replaced["labels"].clone(), replaced["capacity"].get("instances")), (serde_json::json!({}), None));

    let cordoned = cli(api, &["engines", "cordon", "e1"]).await;
    ok(&cordoned, "engines cordon");
    let e1 = row(&cordoned.stdout, "e1").expect("the engine shown");
    assert_eq!(cell(&cordoned.stdout, e1, "STATE"), Some("cordoned"), "{}", cordoned.stdout);
    let drained = cli(api, &["engines", "drain", "e1"]).await;
    ok(&drained, "engines drain");
    let e1 = row(&drained.stdout, "e1").expect("the engine shown");
    assert!(e1.contains("draining (0 to move, 0 moving)"), "the evacuation's progress: {}", drained.stdout);
    let details = cli(api, &["engines", "get", "e1"]).await;
    assert!(details.stdout.lines().any(|l| l.split_whitespace().eq(["evacuation.staying", "0"])), "{}", details.stdout);
    let drained = json_of(&cli(api, &["engines", "drain", "e1", "-o", "json"]).await);
    assert_eq!((drained["state"].as_str(), drained["evacuation"]["to_move"].as_u64()), (Some("draining"), Some(0)));
    let uncordoned = json_of(&cli(api, &["engines", "uncordon", "e1", "-o", "json"]).await);
    assert_eq!(uncordoned["state"], "active");

    // Only a cordoned engine is removed: esm's refusal is exit 1 with its reason.
    let refused = cli(api, &["engines", "delete", "e1"]).await;
    assert_eq!(refused.code, 1, "{} {}", refused.stdout, refused.stderr);
    assert!(refused.stderr.starts_with("esm: "), "{}", refused.stderr);
    ok(&cli(api, &["engines", "cordon", "e1"]).await, "cordon again");
    let removed = cli(api, &["engines", "delete", "e1"]).await;
    ok(&removed, "engines delete");
    assert_eq!(removed.stdout.trim(), "removed engine e1");
    let gone = cli(api, &["engines", "get", "e1"]).await;
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    drop(esm);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_engine_input_is_refused_with_the_reason() {
    let (esm, _dir) = esm().await;
    let api = esm.api.as_str();
    for (args, says) in [
        (&["engines", "set", "E1", "--backend", "dummy"][..], "an engine name must hold only"),
        (&["engines", "cordon", "E1"], "an engine name must hold only"),
        (&["engines", "set", "e1", "--backend", "dummy", "--label", "zone"], "\"zone\" is not key=value"),
        (&["engines", "set", "e1", "--backend", "dummy", "--label", "Zone=a"], "a label key must hold only"),
        (&["engines", "set", "e1", "--backend", "podman"], "unknown variant `podman`"),
        (&["engines", "set", "e1"], "--backend"),
        (&["engines", "set", "e1", "--backend", "dummy", "--capacity", "1000001"], "is not in 0..=1000000"),
        (
            &["engines", "set", "e1", "--backend", "dummy", "--docker-host", "unix:///s"],
            "a dummy engine has no docker_host",
        ),
        (&["engines", "set", "e1", "--spec", r#"{"backend": "dummy"}"#, "--backend", "dummy"], "cannot be used with"),
        (&["engines", "set", "e1", "--spec", r#"{"backend": "dummy", "surprise": 1}"#], "unknown field `surprise`"),
    ] {
        let refused = cli(api, args).await;
        assert_eq!(refused.code, 2, "{args:?}: {} {}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains(says), "{args:?}: {}", refused.stderr);
        assert!(!refused.stderr.contains("panicked"), "{}", refused.stderr);
    }
    // Nothing refused reached esm.
    let engines = json_of(&cli(api, &["engines", "list", "-o", "json"]).await);
    assert_eq!(engines["engines"].as_array().map(Vec::len), Some(1), "{engines}");
    drop(esm);
}
