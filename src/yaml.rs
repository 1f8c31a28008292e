//! Untrusted YAML into JSON values, within limits.
//!
//! Manifests come from whoever holds the broker credentials, and a platform forwards
//! its users' input, so a manifest may be built to exhaust esm: an alias bomb (a small
//! document whose aliases expand to gigabytes), nesting deep enough to overflow a stack
//! or to make a parser quadratic, or just a very large document. Every YAML document
//! esm reads goes through [`load`], which
//!
//! - refuses input over [`Limits::max_bytes`] before parsing it;
//! - builds the value from the parser's event stream in a loop (no recursion), and
//!   stops at the first event past [`Limits::max_depth`], so a deep document costs no
//!   more than a shallow one;
//! - charges every node, including each node an alias expands to, against
//!   [`Limits::max_nodes`] and the expanded text against [`Limits::max_text_bytes`],
//!   *before* copying, so memory stays bounded whatever the aliases;
//! - gives up after [`Limits::time_budget`].
//!
//! Why not `yaml_serde` here: it has no event-level limits (it reads the whole event
//! stream before its own alias budget applies, and that budget grows with the
//! document), so it cannot be bounded from outside. `yaml-rust2` gives the event stream
//! itself, and one parser feeds every check, so there is no gap between what is
//! checked and what is used.
//!
//! Scalars are resolved by the YAML 1.2 core schema (`null`, `true`, `42`, `0x2a`,
//! `1.5e3`; everything else, and every quoted scalar, is a string), merge keys (`<<`)
//! are applied, and mapping keys must be scalars and unique.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// How much a YAML document may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Size of the document's text.
    pub max_bytes: usize,
    /// Nesting of sequences and mappings (including what aliases bring in).
    pub max_depth: usize,
    /// Nodes (scalars, sequences, mappings), counting each alias as the nodes it
    /// expands to.
    pub max_nodes: usize,
    /// Text of all scalars and keys, counting each alias as the text it expands to.
    pub max_text_bytes: usize,
    /// Wall-clock time the parse may take.
    pub time_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024,
            max_depth: 64,
            max_nodes: 100_000,
            max_text_bytes: 4 * 1024 * 1024,
            time_budget: Duration::from_secs(2),
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// A limit was reached; the message names it.
    #[error("{0}")]
    Limit(String),
    /// Not YAML, or YAML esm does not take (tags, complex keys, duplicate keys).
    #[error("{0}")]
    Invalid(String),
}

/// Parses a document of at most one YAML document (an empty one is `null`).
pub fn load(text: &str, limits: &Limits) -> Result<Value, YamlError> {
    let mut documents = load_documents(text, limits)?;
    match documents.len() {
        0 => Ok(Value::Null),
        1 => Ok(documents.remove(0)),
        n => Err(YamlError::Invalid(format!("expected one YAML document, found {n}"))),
    }
}

/// Parses a stream of YAML documents (`---` separated); the limits apply to the
/// stream as a whole.
pub fn load_documents(text: &str, limits: &Limits) -> Result<Vec<Value>, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError::Limit(format!(
            "the document is {} bytes; the limit is {} (ESM_MANIFEST_MAX_BYTES)",
            text.len(),
            limits.max_bytes
        )));
    }
    Builder::new(limits).run(&mut Parser::new_from_str(text))
}

/// What an anchored node cost, so an alias to it is charged the same.
#[derive(Debug, Clone)]
struct Anchored {
    value: Value,
    cost: Cost,
}

/// The size of a node: what it adds to the budgets.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    text: usize,
    /// Container levels inside, itself included (a scalar is 0).
    height: usize,
}

/// A sequence or mapping being built.
#[derive(Debug)]
struct Frame {
    kind: FrameKind,
    anchor: usize,
    /// Budget counters when the container started: the difference at its end is its
    /// cost.
    nodes_at_start: usize,
    text_at_start: usize,
    /// The tallest child so far.
    child_height: usize,
}

#[derive(Debug)]
enum FrameKind {
    Sequence(Vec<Value>),
    Mapping {
        entries: Map<String, Value>,
        /// The key whose value comes next.
        key: Option<String>,
        /// Values of `<<` keys, merged in when the mapping ends.
        merges: Vec<Value>,
    },
}

/// Turns parser events into values, within the limits.
struct Builder<'a> {
    limits: &'a Limits,
    deadline: Instant,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    documents: Vec<Value>,
    nodes: usize,
    text: usize,
}

/// Events between two looks at the clock.
const CLOCK_EVERY: usize = 1024;

impl<'a> Builder<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self {
            limits,
            deadline: Instant::now() + limits.time_budget,
            stack: Vec::new(),
            anchors: HashMap::new(),
            documents: Vec::new(),
            nodes: 0,
            text: 0,
        }
    }

    fn run<T: Iterator<Item = char>>(mut self, parser: &mut Parser<T>) -> Result<Vec<Value>, YamlError> {
        for seen in 1usize.. {
            if seen % CLOCK_EVERY == 0 && Instant::now() > self.deadline {
                return Err(YamlError::Limit(format!(
                    "parsing took longer than {:?} (ESM_MANIFEST_PARSE_TIMEOUT)",
                    self.limits.time_budget
                )));
            }
            let (event, mark) = parser.next_token().map_err(|e| {
                // The scanner reads ahead through flow collections and stops at 255
                // levels itself: that is the depth limit too.
                if e.info() == "recursion limit exceeded" {
                    self.too_deep(*e.marker())
                } else {
                    YamlError::Invalid(format!("not valid YAML: {e}"))
                }
            })?;
            match event {
                Event::StreamEnd => break,
                Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
                Event::Scalar(text, style, anchor, tag) => {
                    let value = scalar(&text, style, tag.as_ref()).map_err(|e| at(mark, &e))?;
                    let cost = Cost { nodes: 1, text: text.len(), height: 0 };
                    self.charge(cost, mark)?;
                    self.complete(value, cost, anchor, mark)?;
                }
                Event::Alias(anchor) => {
                    let Anchored { value, cost } =
                        self.anchors.get(&anchor).ok_or_else(|| at(mark, "alias to an unknown anchor"))?;
                    let (value, cost) = (value.clone(), *cost);
                    // Charged before the copy above is kept: the budgets bound what
                    // an alias can make esm hold.
                    self.charge(cost, mark)?;
                    self.complete(value, cost, 0, mark)?;
                }
                Event::SequenceStart(anchor, tag) => {
                    container_tag(tag.as_ref(), "seq").map_err(|e| at(mark, &e))?;
                    self.open(FrameKind::Sequence(Vec::new()), anchor, mark)?;
                }
                Event::MappingStart(anchor, tag) => {
                    container_tag(tag.as_ref(), "map").map_err(|e| at(mark, &e))?;
                    let kind = FrameKind::Mapping { entries: Map::new(), key: None, merges: Vec::new() };
                    self.open(kind, anchor, mark)?;
                }
                Event::SequenceEnd | Event::MappingEnd => self.close(mark)?,
            }
        }
        Ok(self.documents)
    }

    /// Adds a node's cost to the running totals, refusing it past a limit.
    fn charge(&mut self, cost: Cost, mark: Marker) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(cost.nodes);
        self.text = self.text.saturating_add(cost.text);
        if self.nodes > self.limits.max_nodes {
            return Err(limit(
                mark,
                &format!(
                    "more than {} nodes, counting what aliases expand to (ESM_MANIFEST_MAX_NODES)",
                    self.limits.max_nodes
                ),
            ));
        }
        if self.text > self.limits.max_text_bytes {
            return Err(limit(
                mark,
                &format!("more than {} bytes of text, counting what aliases expand to", self.limits.max_text_bytes),
            ));
        }
        if self.stack.len() + cost.height > self.limits.max_depth {
            return Err(self.too_deep(mark));
        }
        Ok(())
    }

    fn too_deep(&self, mark: Marker) -> YamlError {
        limit(mark, &format!("nested deeper than {} levels (ESM_MANIFEST_MAX_DEPTH)", self.limits.max_depth))
    }

    fn open(&mut self, kind: FrameKind, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        self.charge(Cost { nodes: 1, text: 0, height: 0 }, mark)?;
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.too_deep(mark));
        }
        self.stack.push(Frame {
            kind,
            anchor,
            // The container's own node is part of its cost.
            nodes_at_start: self.nodes - 1,
            text_at_start: self.text,
            child_height: 0,
        });
        Ok(())
    }

    fn close(&mut self, mark: Marker) -> Result<(), YamlError> {
        let frame = self.stack.pop().ok_or_else(|| at(mark, "unbalanced end of a collection"))?;
        let cost = Cost {
            nodes: self.nodes - frame.nodes_at_start,
            text: self.text - frame.text_at_start,
            height: frame.child_height + 1,
        };
        let value = match frame.kind {
            FrameKind::Sequence(items) => Value::Array(items),
            FrameKind::Mapping { mut entries, key, merges } => {
                if key.is_some() {
                    return Err(at(mark, "a mapping key has no value"));
                }
                merge(&mut entries, merges).map_err(|e| at(mark, &e))?;
                Value::Object(entries)
            }
        };
        self.complete(value, cost, frame.anchor, mark)
    }

    /// Places a finished node in its parent (or as a document), remembering it under
    /// its anchor.
    fn complete(&mut self, value: Value, cost: Cost, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        if anchor != 0 {
            // The kept copy is memory too: charged like any other node, so nested
            // anchors around a large node cannot multiply it past the limits.
            self.charge(Cost { height: 0, ..cost }, mark)?;
            self.anchors.insert(anchor, Anchored { value: value.clone(), cost });
        }
        let Some(parent) = self.stack.last_mut() else {
            self.documents.push(value);
            return Ok(());
        };
        parent.child_height = parent.child_height.max(cost.height);
        match &mut parent.kind {
            FrameKind::Sequence(items) => items.push(value),
            FrameKind::Mapping { entries, key, merges } => match key.take() {
                None => *key = Some(key_text(value).map_err(|e| at(mark, &e))?),
                Some(k) if k == MERGE_KEY => merges.push(value),
                Some(k) => {
                    if entries.contains_key(&k) {
                        return Err(at(mark, &format!("duplicate key {k:?}")));
                    }
                    entries.insert(k, value);
                }
            },
        }
        Ok(())
    }
}

/// The YAML merge key: `<<: *defaults` (or a list of them) supplies the keys the
/// mapping does not set itself.
const MERGE_KEY: &str = "<<";

fn merge(entries: &mut Map<String, Value>, merges: Vec<Value>) -> Result<(), String> {
    for source in merges {
        let maps = match source {
            Value::Object(map) => vec![map],
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(map),
                    _ => Err("a merge key (<<) takes a mapping or a list of mappings".to_owned()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("a merge key (<<) takes a mapping or a list of mappings".into()),
        };
        for map in maps {
            for (k, v) in map {
                entries.entry(k).or_insert(v);
            }
        }
    }
    Ok(())
}

/// A mapping key as text: keys must be scalars (JSON objects have string keys).
fn key_text(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Array(_) | Value::Object(_) => Err("mapping keys must be plain values, not collections".into()),
    }
}

/// The core-schema tag a node carries, if any: `!!str` and friends. Other tags (local
/// `!thing` tags, compose's `!reset`) are refused rather than guessed at.
fn core_tag(tag: Option<&Tag>) -> Result<Option<&str>, String> {
    match tag {
        None => Ok(None),
        Some(Tag { handle, suffix }) if handle == "tag:yaml.org,2002:" || handle == "!!" => Ok(Some(suffix)),
        Some(Tag { handle, suffix }) if handle == "!" && suffix.is_empty() => Ok(None),
        Some(Tag { handle, suffix }) => Err(format!("the tag {handle}{suffix} is not supported")),
    }
}

fn container_tag(tag: Option<&Tag>, kind: &str) -> Result<(), String> {
    match core_tag(tag)? {
        None => Ok(()),
        Some(suffix) if suffix == kind => Ok(()),
        Some(suffix) => Err(format!("the tag !!{suffix} does not fit a {kind}")),
    }
}

/// A scalar's value: quoted and block scalars are strings; plain ones are resolved by
/// the core schema; an explicit core tag wins.
fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let wrong = |kind: &str| format!("{text:?} is not a valid !!{kind}");
    match core_tag(tag)? {
        Some("str") => Ok(Value::String(text.to_owned())),
        Some("null") => resolve_null(text).ok_or_else(|| wrong("null")),
        Some("bool") => resolve_bool(text).ok_or_else(|| wrong("bool")),
        Some("int") => resolve_int(text).ok_or_else(|| wrong("int")),
        Some("float") => resolve_int(text).or_else(|| resolve_float(text)).ok_or_else(|| wrong("float")),
        Some(other) => Err(format!("the tag !!{other} is not supported on a scalar")),
        None if style != TScalarStyle::Plain => Ok(Value::String(text.to_owned())),
        None => Ok(resolve_null(text)
            .or_else(|| resolve_bool(text))
            .or_else(|| resolve_int(text))
            .or_else(|| resolve_float(text))
            .unwrap_or_else(|| Value::String(text.to_owned()))),
    }
}

fn resolve_null(text: &str) -> Option<Value> {
    matches!(text, "" | "~" | "null" | "Null" | "NULL").then_some(Value::Null)
}

fn resolve_bool(text: &str) -> Option<Value> {
    match text {
        "true" | "True" | "TRUE" => Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => Some(Value::Bool(false)),
        _ => None,
    }
}

fn resolve_int(text: &str) -> Option<Value> {
    // Hex and octal take no sign in the core schema.
    if let Some(hex) = text.strip_prefix("0x") {
        return radix_int(hex, 16);
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return radix_int(octal, 8);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match (negative, digits.parse::<u64>()) {
        (false, Ok(m)) => Some(Value::Number(m.into())),
        (true, Ok(m)) => match i64::try_from(m) {
            Ok(m) => Some(Value::Number((-m).into())),
            Err(_) => resolve_float(text),
        },
        // Too large for an integer: a float, as other YAML loaders do.
        (_, Err(_)) => resolve_float(text),
    }
}

fn radix_int(digits: &str, radix: u32) -> Option<Value> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok().map(|n| Value::Number(n.into()))
}

fn resolve_float(text: &str) -> Option<Value> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    match body {
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN" => return Some(Value::String(text.to_owned())),
        _ => {}
    }
    let valid = {
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (mantissa, None),
        };
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        let mantissa_ok = match fraction {
            Some(f) => digits(whole) && digits(f) && !(whole.is_empty() && f.is_empty()),
            None => !whole.is_empty() && digits(whole),
        };
        let exponent_ok = exponent.is_none_or(|e| {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits(e)
        });
        mantissa_ok && exponent_ok
    };
    if !valid {
        return None;
    }
    text.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
}

fn at(mark: Marker, what: &str) -> YamlError {
    YamlError::Invalid(format!("{what} (line {}, column {})", mark.line(), mark.col()))
}

fn limit(mark: Marker, what: &str) -> YamlError {
    YamlError::Limit(format!("{what} (at line {}, column {})", mark.line(), mark.col()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Value, YamlError> {
        load(text, &Limits::default())
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = "a: 1\nb: -2\nc: 1.5\nd: 1e3\ne: true\nf: ~\ng: 0x1f\nh: 0o17\ni: '1'\nj: no\nk: 1.2.3\nl: +7\nm:\nn: .inf\n";
        assert_eq!(
            parse(doc).unwrap(),
            json!({"a": 1, "b": -2, "c": 1.5, "d": 1000.0, "e": true, "f": null, "g": 31, "h": 15,
                   "i": "1", "j": "no", "k": "1.2.3", "l": 7, "m": null, "n": ".inf"})
        );
        assert_eq!(parse("x: !!str 42\ny: !!float 1\n").unwrap(), json!({"x": "42", "y": 1}));
        assert_eq!(parse("99999999999999999999999").unwrap(), json!(1e23));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let doc = "base: &b {x: 1, y: 2}\nuse: *b\nmerged:\n  <<: *b\n  y: 3\n";
        assert_eq!(
            parse(doc).unwrap(),
            json!({"base": {"x": 1, "y": 2}, "use": {"x": 1, "y": 2}, "merged": {"x": 1, "y": 3}})
        );
        let list = "a: &a {p: 1}\nb: &b {p: 2, q: 2}\nc: {<<: [*a, *b]}\n";
        assert_eq!(parse(list).unwrap()["c"], json!({"p": 1, "q": 2}));
    }

    #[test]
    fn what_json_cannot_hold_is_refused() {
        assert!(parse("? [a]\n: b\n").unwrap_err().to_string().contains("plain values"));
        assert!(parse("a: 1\na: 2\n").unwrap_err().to_string().contains("duplicate key"));
        assert!(parse("a: !custom x\n").unwrap_err().to_string().contains("not supported"));
        assert!(parse("a: *nope\n").is_err());
        assert!(parse("---\na: 1\n---\nb: 2\n").unwrap_err().to_string().contains("one YAML document"));
        assert_eq!(load_documents("---\na: 1\n---\nb: 2\n", &Limits::default()).unwrap().len(), 2);
        assert_eq!(parse("").unwrap(), Value::Null);
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let limits = Limits { max_bytes: 10, ..Limits::default() };
        let err = load("a: 0123456789", &limits).unwrap_err();
        assert!(matches!(err, YamlError::Limit(_)) && err.to_string().contains("ESM_MANIFEST_MAX_BYTES"), "{err}");
    }

    #[test]
    fn depth_is_bounded_for_flow_and_block_nesting() {
        let limits = Limits { max_depth: 8, ..Limits::default() };
        assert!(load(&format!("{}1{}", "[".repeat(8), "]".repeat(8)), &limits).is_ok());
        let err = load(&format!("{}1{}", "[".repeat(9), "]".repeat(9)), &limits).unwrap_err();
        assert!(err.to_string().contains("ESM_MANIFEST_MAX_DEPTH"), "{err}");
        let block: String = (0..20).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
        assert!(load(&block, &limits).unwrap_err().to_string().contains("deeper"));
        // An unclosed 200 KB of `[` is refused at the ninth level, not after reading it all.
        let started = Instant::now();
        let err = load(&"[".repeat(200_000), &limits).unwrap_err();
        assert!(err.to_string().contains("ESM_MANIFEST_MAX_DEPTH"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn aliases_count_what_they_expand_to() {
        // Ten levels of ten aliases each: 10^10 nodes if expanded.
        let mut doc = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let refs = vec![format!("*l{}", level - 1); 10].join(", ");
            doc.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
        }
        let err = parse(&doc).unwrap_err();
        assert!(matches!(err, YamlError::Limit(_)) && err.to_string().contains("ESM_MANIFEST_MAX_NODES"), "{err}");
        // One long anchored string repeated is charged as text.
        let big = "y".repeat(200_000);
        let doc = format!("a: &a {big}\nb: [{}]\n", vec!["*a"; 30].join(", "));
        assert!(parse(&doc).unwrap_err().to_string().contains("bytes of text"));
        // An alias cannot smuggle depth past the limit either.
        let limits = Limits { max_depth: 4, ..Limits::default() };
        assert!(load("a: &a [[[1]]]\nb: [*a]\n", &limits).unwrap_err().to_string().contains("deeper"));
    }

    #[test]
    fn anchors_kept_for_later_aliases_are_charged_too() {
        // Each anchor keeps a copy of the list: 40 nested anchors would hold 40 copies.
        let limits = Limits { max_nodes: 50_000, ..Limits::default() };
        let list = vec!["0"; 20_000].join(",");
        let nested: String = (0..40).map(|i| format!("&a{i} [")).collect();
        let doc = format!("{nested}[{list}]{}", "]".repeat(40));
        assert!(load(&doc, &limits).unwrap_err().to_string().contains("ESM_MANIFEST_MAX_NODES"));
        assert!(load(&format!("[{list}]"), &limits).is_ok(), "the same list without anchors fits");
    }

    #[test]
    fn the_time_budget_stops_a_long_parse() {
        let limits = Limits { time_budget: Duration::ZERO, ..Limits::default() };
        let doc = "- x\n".repeat(5_000);
        assert!(load(&doc, &limits).unwrap_err().to_string().contains("ESM_MANIFEST_PARSE_TIMEOUT"));
    }
}
