//! What the client prints: the API's JSON with `-o json`, otherwise a table made from it.

use std::io::Write;

use comfy_table::presets::NOTHING;
use serde_json::Value;

use super::{Exit, Failure};

/// A table to print.
pub(super) type Table = comfy_table::Table;

/// Prints `value` as JSON, or as the table `table` makes of it.
pub(super) fn show(value: &Value, json: bool, table: fn(&Value) -> Table) -> Result<Exit, Failure> {
    let text = if json {
        serde_json::to_string_pretty(value).unwrap_or_default()
    } else {
        table(value).to_string().lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
    };
    print(&text);
    Ok(Exit::Done)
}

/// Writes a line to stdout; a reader gone away (`esm … | head`) is no error.
pub(super) fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Writes a progress line to stderr, so stdout holds only the result.
pub(super) fn progress(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// A table with `headers` and no borders.
pub(super) fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(headers.iter().map(|h| h.to_uppercase()));
    table
}

/// A string field, or `-`.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `GET /v2/catalog`.
pub(super) fn catalog(value: &Value) -> Table {
    let mut t = table(&["service", "name", "bindable", "plans"]);
    for service in value["services"].as_array().into_iter().flatten() {
        let plans: Vec<String> = service["plans"].as_array().into_iter().flatten().map(|p| text(&p["id"])).collect();
        t.add_row([text(&service["id"]), text(&service["name"]), text(&service["bindable"]), plans.join(", ")]);
    }
    t
}

/// An answer with nothing to tabulate: its fields, one per line.
pub(super) fn done(value: &Value) -> Table {
    let mut t = table(&["field", "value"]);
    if let Some(fields) = value.as_object() {
        for (key, field) in fields {
            t.add_row([key.clone(), text(field)]);
        }
    }
    if t.row_count() == 0 {
        t.add_row(["result", "done"]);
    }
    t
}

/// `GET /v2/et/manifest[/{id}]`.
pub(super) fn manifests(value: &Value) -> Table {
    let mut t = table(&["id", "service", "plan", "type"]);
    for m in value.as_array().into_iter().flatten() {
        t.add_row([text(&m["id"]), text(&m["service_id"]), text(&m["plan_id"]), text(&m["manifest_type"])]);
    }
    t
}

/// A page of `GET /v2/et/service_instances`.
pub(super) fn instances(value: &Value) -> Table {
    let mut t = table(&["id", "service", "state", "description"]);
    for i in value["instances"].as_array().into_iter().flatten() {
        t.add_row([
            text(&i["context"]["id"]),
            text(&i["service_type"]["id"]),
            text(&i["state"]["state"]),
            text(&i["state"]["description"]),
        ]);
    }
    if let Some(next) = value["next"].as_str() {
        t.add_row(["(more: --after".to_owned(), format!("{next})"), String::new(), String::new()]);
    }
    t
}

/// `GET /v2/et/service_instances/{id}`: its state and live details.
pub(super) fn instance(value: &Value) -> Table {
    let mut t = table(&["field", "value"]);
    t.add_row(["service".to_owned(), text(&value["service_type"]["id"])]);
    t.add_row(["state".to_owned(), text(&value["state"]["state"])]);
    t.add_row(["description".to_owned(), text(&value["state"]["description"])]);
    for (key, field) in value["context"].as_object().into_iter().flatten() {
        t.add_row([key.clone(), text(field)]);
    }
    t
}

/// A page of `GET /v2/et/inventory`, or what one instance holds.
pub(super) fn resources(value: &Value) -> Table {
    let mut t = table(&["type", "name", "owner", "state", "backend", "address", "since"]);
    for r in value["resources"].as_array().into_iter().flatten() {
        let address = match r["port"]["port"].as_u64() {
            Some(port) => {
                format!("{}:{port}/{}", r["port"]["address"].as_str().unwrap_or("*"), text(&r["port"]["protocol"]))
            }
            None => "-".to_owned(),
        };
        t.add_row([
            text(&r["type"]),
            text(&r["name"]),
            text(&r["owner"]),
            text(&r["state"]),
            text(&r["backend"]),
            address,
            text(&r["updated_at"]),
        ]);
    }
    if let Some(next) = value["next"].as_str() {
        t.add_row(["(more: --after".to_owned(), format!("{next})")]);
    }
    t
}

/// A finished operation (`last_operation`).
pub(super) fn operation(value: &Value) -> Table {
    let mut t = table(&["state", "description"]);
    t.add_row([text(&value["state"]), text(&value["description"])]);
    t
}

/// `GET /v2/et/pools[/{plan}]` (one pool or the list).
pub(super) fn pools(value: &Value) -> Table {
    let mut t = table(&["plan", "size", "ready", "deploying", "claimed", "misses", "last error"]);
    let one = value.get("plan_id").map(|_| std::slice::from_ref(value));
    let pools = one.or_else(|| value["pools"].as_array().map(Vec::as_slice)).unwrap_or_default();
    for p in pools {
        t.add_row([
            text(&p["plan_id"]),
            text(&p["size"]),
            text(&p["ready"]),
            text(&p["deploying"]),
            text(&p["claimed_total"]),
            text(&p["misses_total"]),
            text(&p["last_error"]["message"]),
        ]);
    }
    t
}
