//! What the client prints: the API's JSON with `-o json`, otherwise a table made from it.
//!
//! Everything goes out through the sinks here ([`show`], [`print`], [`progress`],
//! [`Spinner`], [`error`]), and every sink for people passes its text through
//! [`escape`]: a server's string never reaches the terminal with a control character in
//! it, whichever column or line it lands in. Table cells are escaped as they are added
//! (so a newline in a cell cannot forge a row, and the columns line up); escaping is
//! idempotent, so the sink's pass changes nothing for them. JSON goes out as serde_json
//! writes it with [`escape_json`]: the same value, no raw C1 or bidi control.

use std::io::Write;
use std::time::Duration;

use comfy_table::presets::NOTHING;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{Exit, Failure};
use crate::client::{escape, escape_json};

/// A table to print: every cell escaped as it is added.
pub(super) struct Table(comfy_table::Table);

impl Table {
    /// A table with `headers` and no borders.
    fn new(headers: &[&str]) -> Self {
        let mut table = comfy_table::Table::new();
        table.load_preset(NOTHING).set_header(headers.iter().map(|h| h.to_uppercase()));
        Self(table)
    }

    /// Adds a row of `cells`, escaped.
    fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.0.add_row(cells.into_iter().map(|cell| escape(cell.as_ref()).into_owned()));
    }

    /// A last row telling how to ask for the next page, when `page` has one.
    fn more(&mut self, page: &Value) {
        if let Some(next) = page["next"].as_str() {
            self.row(["(more: --after".to_owned(), format!("{next})")]);
        }
    }

    /// Whether it has no rows.
    fn is_empty(&self) -> bool {
        self.0.row_count() == 0
    }

    /// The table as lines, without trailing blanks.
    fn render(&self) -> String {
        self.0.to_string().lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
    }
}

/// Prints `value` as JSON, or as the table `table` makes of it.
pub(super) fn show(value: &Value, json: bool, table: fn(&Value) -> Table) -> Result<Exit, Failure> {
    show_each(value, json, &[table])
}

/// Prints `value` as JSON, or as the tables `tables` make of it, a blank line between
/// them (an empty one left out).
pub(super) fn show_each(value: &Value, json: bool, tables: &[fn(&Value) -> Table]) -> Result<Exit, Failure> {
    if json {
        print_json(value, true);
    } else {
        let rendered: Vec<String> =
            tables.iter().map(|table| table(value)).filter(|t| !t.is_empty()).map(|t| t.render()).collect();
        print(&rendered.join("\n\n"));
    }
    Ok(Exit::Done)
}

/// Prints `value` as JSON (pretty, or on one line), with [`escape_json`].
pub(super) fn print_json(value: &Value, pretty: bool) {
    let text = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    write_out(&escape_json(&text.unwrap_or_default()));
}

/// Writes lines to stdout, escaped; a reader gone away (`esm … | head`) is no error.
pub(super) fn print(text: &str) {
    write_out(&escape_lines(text));
}

fn write_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Writes a progress line to stderr, escaped, so stdout holds only the result.
pub(super) fn progress(text: &str) {
    let _ = writeln!(std::io::stderr(), "{}", escape_lines(text));
}

/// Writes `esm: <message>` to stderr, escaped. Not eprintln!: it panics when stderr is
/// closed.
pub(super) fn error(message: &str) {
    let _ = writeln!(std::io::stderr(), "esm: {}", escape_lines(message));
}

/// Each line of `text` escaped, the line breaks kept.
fn escape_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

/// A spinner on stderr with a message (escaped) and the elapsed time.
pub(super) struct Spinner(ProgressBar);

impl Spinner {
    /// A spinner, ticking.
    pub(super) fn start() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(bar)
    }

    /// Shows `text` (escaped) next to the spinner.
    pub(super) fn say(&self, text: &str) {
        self.0.set_message(escape(text).into_owned());
    }

    /// Clears the spinner's line.
    pub(super) fn finish(self) {
        self.0.finish_and_clear();
    }
}

/// A table with `headers` and no borders.
pub(super) fn table(headers: &[&str]) -> Table {
    Table::new(headers)
}

/// A field as text (escaped), or `-`.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s).into_owned(),
        Value::Null => "-".into(),
        other => escape(&other.to_string()).into_owned(),
    }
}

/// The fields of `value` at each JSON pointer in `pointers`, as [`text`]: a row's cells.
fn texts<'a>(value: &'a Value, pointers: &'a [&str]) -> impl Iterator<Item = String> + 'a {
    pointers.iter().map(|pointer| text(value.pointer(pointer).unwrap_or(&Value::Null)))
}

/// `GET /v2/catalog`.
pub(super) fn catalog(value: &Value) -> Table {
    let mut t = table(&["service", "name", "bindable", "plans"]);
    for service in value["services"].as_array().into_iter().flatten() {
        let plans: Vec<String> = service["plans"].as_array().into_iter().flatten().map(|p| text(&p["id"])).collect();
        t.row([text(&service["id"]), text(&service["name"]), text(&service["bindable"]), plans.join(", ")]);
    }
    t
}

/// An answer with nothing to tabulate: its fields, one per line (nested ones as
/// `metadata.labels.esm/backend`).
pub(super) fn done(value: &Value) -> Table {
    let mut t = table(&["field", "value"]);
    flatten(&mut t, "", value);
    if t.is_empty() {
        t.row(["result", "done"]);
    }
    t
}

/// `GET /v2/et/manifest[/{id}]`.
pub(super) fn manifests(value: &Value) -> Table {
    let mut t = table(&["id", "service", "plan", "type"]);
    for m in value.as_array().into_iter().flatten() {
        t.row([text(&m["id"]), text(&m["service_id"]), text(&m["plan_id"]), text(&m["manifest_type"])]);
    }
    t
}

/// A page of `GET /v2/et/service_instances`.
pub(super) fn instances(value: &Value) -> Table {
    let headers = ["id", "service", "plan", "state", "liveness", "created", "description"];
    let mut t = table(&headers);
    for i in value["instances"].as_array().into_iter().flatten() {
        let fields = ["/context/id", "/service_type/id", "/plan_id", "/operation_state", "/liveness", "/created_at"];
        t.row(texts(i, &fields).chain([text(&i["state"]["description"])]));
    }
    t.more(value);
    t
}

/// `GET /v2/et/service_instances/{id}`: what it is, how it is, and each container of
/// its deployment (the backend's flat keys are in `-o json`'s `context`).
pub(super) fn instance(value: &Value) -> Table {
    let mut t = table(&["field", "value"]);
    for (name, field) in [
        ("id", &value["context"]["id"]),
        ("service", &value["service_type"]["id"]),
        ("plan", &value["plan_id"]),
        ("state", &value["operation_state"]),
        ("liveness", &value["liveness"]),
        ("created", &value["created_at"]),
        ("description", &value["state"]["description"]),
        ("manifest", &value["context"]["manifest_id"]),
    ] {
        t.row([name.to_owned(), text(field)]);
    }
    for c in value["deployment"].as_array().into_iter().flatten() {
        let ports = c["ports"].as_array().filter(|p| !p.is_empty()).map(|_| format!(" ports {}", text(&c["ports"])));
        let summary =
            format!("{} {} {}{}", text(&c["state"]), text(&c["image"]), text(&c["ip"]), ports.unwrap_or_default());
        t.row([format!("container {}", text(&c["service"])), summary]);
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
        let fields = texts(r, &["/type", "/name", "/owner", "/state", "/backend"]);
        t.row(fields.chain([address, text(&r["updated_at"])]));
    }
    t.more(value);
    t
}

/// A finished operation (`last_operation`).
pub(super) fn operation(value: &Value) -> Table {
    let mut t = table(&["state", "description"]);
    t.row([text(&value["state"]), text(&value["description"])]);
    t
}

/// `GET /v2/et/pools[/{plan}]` (one pool or the list).
pub(super) fn pools(value: &Value) -> Table {
    let mut t = table(&["plan", "size", "ready", "deploying", "claimed", "misses", "last error"]);
    let one = value.get("plan_id").map(|_| std::slice::from_ref(value));
    let pools = one.or_else(|| value["pools"].as_array().map(Vec::as_slice)).unwrap_or_default();
    for p in pools {
        let fields = ["/plan_id", "/size", "/ready", "/deploying", "/claimed_total", "/misses_total"];
        t.row(texts(p, &fields).chain([text(&p["last_error"]["message"])]));
    }
    t
}

/// `GET /v2/et/pools/{plan_id}`: its members (the pool itself is [`pools`]).
pub(super) fn members(value: &Value) -> Table {
    let mut t = table(&["member", "state", "since", "reason"]);
    for m in value["members"].as_array().into_iter().flatten() {
        t.row([text(&m["id"]), text(&m["state"]), text(&m["created_at"]), text(&m["reason"])]);
    }
    t
}

/// `GET /v2/et/engines[/{name}]` (one engine or the list): instances against capacity
/// (`3/10`, `3/-` without a limit), labels as `key=value`.
pub(super) fn engines(value: &Value) -> Table {
    let mut t = table(&["name", "backend", "state", "instances", "capacity", "labels", "last probe"]);
    let one = value.get("name").map(|_| std::slice::from_ref(value));
    let engines = one.or_else(|| value["engines"].as_array().map(Vec::as_slice)).unwrap_or_default();
    for e in engines {
        let capacity = format!("{}/{}", text(&e["instances"]), text(&e["capacity"]["instances"]));
        let labels: Vec<String> =
            e["labels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", text(v))).collect();
        let mut state = text(&e["state"]);
        if let Some(evacuation) = e["evacuation"].as_object() {
            let left = |key: &str| evacuation.get(key).map_or_else(String::new, text);
            state = format!("{state} ({} to move, {} moving)", left("to_move"), left("moving"));
        }
        let fields = texts(e, &["/name", "/backend"]).chain([state, text(&e["instances"])]);
        t.row(fields.chain([capacity, labels.join(","), text(&e["last_probe"])]));
    }
    t
}

/// `GET /v2/et/engines/{name}`: what the row of [`engines`] leaves out.
pub(super) fn engine(value: &Value) -> Table {
    let mut t = table(&["field", "value"]);
    for (name, field) in [
        ("schedule", "schedule"),
        ("health", "health"),
        ("source", "source"),
        ("facts", "facts"),
        ("problem", "problem"),
        ("unreachable since", "unreachable_since"),
    ] {
        t.row([name.to_owned(), text(&value[field])]);
    }
    let types: Vec<String> = value["manifest_types"].as_array().into_iter().flatten().map(text).collect();
    t.row(["manifest types".to_owned(), types.join(", ")]);
    for field in ["capacity", "used", "evacuation"] {
        if value[field].is_object() {
            flatten(&mut t, field, &value[field]);
        }
    }
    flatten(&mut t, "endpoint", &value["endpoint"]);
    for field in ["publish_address", "advertise_host"] {
        if !value[field].is_null() {
            t.row([field.to_owned(), text(&value[field])]);
        }
    }
    t
}

/// A binding for people: every credential (nested ones as `services.web.host`), each
/// endpoint as `host:port/protocol`, and when the credentials expire.
pub(super) fn binding(binding: &Value) -> Table {
    let mut t = table(&["credential", "value"]);
    flatten(&mut t, "", &binding["credentials"]);
    for endpoint in binding["endpoints"].as_array().into_iter().flatten() {
        let protocol = endpoint["protocol"].as_str().unwrap_or("tcp");
        for port in endpoint["ports"].as_array().into_iter().flatten() {
            t.row(["endpoint".to_owned(), format!("{}:{}/{protocol}", text(&endpoint["host"]), text(port))]);
        }
    }
    if let Some(expires) = binding["metadata"]["expires_at"].as_str() {
        t.row(["expires at", expires]);
    }
    if t.is_empty() {
        t.row(["(none)", "the backend gave this binding no credentials"]);
    }
    t
}

/// A page of an instance's bindings (`GET /v2/et/service_instances/{id}/bindings`).
pub(super) fn bindings(value: &Value) -> Table {
    let mut t = table(&["binding", "status", "operation", "state", "endpoints", "expires", "created"]);
    for b in value["bindings"].as_array().into_iter().flatten() {
        let endpoints: Vec<String> = b["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| {
                let host = text(&e["host"]);
                e["ports"].as_array().into_iter().flatten().map(move |p| format!("{host}:{}", text(p)))
            })
            .collect();
        t.row([
            text(&b["binding_id"]),
            text(&b["status"]),
            text(&b["last_operation"]),
            text(&b["operation_state"]),
            endpoints.join(" "),
            text(&b["expires_at"]),
            text(&b["created_at"]),
        ]);
    }
    t.more(value);
    t
}

/// Rows for `value` under `prefix`: a scalar as one row, an object's fields each under
/// `prefix.key`. Depth is bounded: serde_json parses no deeper than 128 levels.
fn flatten(t: &mut Table, prefix: &str, value: &Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(t, &name, field);
            }
        }
        Value::Null if prefix.is_empty() => {}
        scalar => t.row([prefix.to_owned(), text(scalar)]),
    }
}
