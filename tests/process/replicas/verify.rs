//! The checks, from three records that outlive the replicas: the requests the load
//! sent and their answers (`driver.rs`), the dummy's call log (one line per finished
//! backend call, from every process, kill -9 included), and what the API says at the
//! end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::driver::{Action, PollEnd, Sent};

/// One line of the dummy's call log (see `x-esm-dummy.call_log`).
#[derive(Debug, Clone, Deserialize)]
pub struct Call {
    pub kind: String,
    pub id: String,
    pub op: Option<String>,
    pub ok: bool,
    pub pid: u32,
    pub at_ms: u64,
}

/// Reads the call log; no file means no call finished.
pub fn read_calls(path: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("call log line {line:?}: {e}")))
        .collect()
}

/// The replica killed mid-run.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    pub pid: u32,
    /// Unix ms just before SIGKILL.
    pub at: u64,
    /// Unix ms once the process was reaped: a request sent later cannot have reached it.
    pub reaped: u64,
    /// Unix ms when its restart served again.
    pub back: u64,
}

impl Kill {
    /// The kill window: from the kill until a second after the replica is back.
    pub fn contains(&self, at: u64) -> bool {
        (self.at..=self.back + 1000).contains(&at)
    }
}

/// What the API says of an id once the load has stopped and operations have drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Final {
    /// The instance fetches (200), or the binding fetches (200, so it is bound).
    pub present: bool,
    /// Its last operation is still in progress after the drain.
    pub in_progress: bool,
}

/// An operation's effect on an id as the load saw it: the id exists afterwards
/// (`present`) or not; it took effect after `start` and, when the load knows, by `end`.
/// `end` is `None` when the answer does not tell (no answer, a 5xx, or nginx passed the
/// request on from the killed replica, which may have started it).
#[derive(Debug, Clone)]
struct Effect<'a> {
    sent: &'a Sent,
    present: bool,
    end: Option<u64>,
}

/// What a request tells about the state of its id, if anything.
fn effect(sent: &Sent, kill: Option<Kill>) -> Option<(bool, Option<u64>)> {
    let creates = sent.action.creates();
    let answered = match (sent.action, sent.status) {
        // Created now, or found there identically.
        (Action::Provision | Action::Bind, 200 | 201) => Some((true, Some(sent.end))),
        // Removed now, or found gone.
        (Action::Deprovision | Action::Unbind, 200 | 410) => Some((false, Some(sent.end))),
        (_, 202) => match sent.polled {
            Some((PollEnd::Succeeded | PollEnd::Superseded(_), at)) => Some((creates, Some(at))),
            Some((PollEnd::Failed, at)) => Some((!creates, Some(at))),
            Some((PollEnd::TimedOut, _)) | None => Some((creates, None)),
        },
        _ => None,
    };
    let passed_on_from_the_killed = sent.upstreams > 1 && kill.is_some_and(|k| sent.start <= k.reaped);
    answered
        .or_else(|| (sent.status == 0 || sent.status >= 500 || passed_on_from_the_killed).then_some((creates, None)))
}

/// The findings of one run; `failures()` is what the test asserts empty.
#[derive(Debug, Default)]
pub struct Findings {
    /// Acknowledged requests (200, 201, 202) by action.
    pub acknowledged: BTreeMap<&'static str, usize>,
    /// Ids whose final state no acknowledged request allows: "id: what".
    pub lost: Vec<String>,
    /// Bound bindings of instances that do not exist.
    pub orphaned_bindings: Vec<String>,
    /// Backend calls (lines) and distinct operations, by kind.
    pub calls: BTreeMap<String, (usize, usize)>,
    /// Operations called more than once by live replicas: "op: pids".
    pub duplicated: Vec<String>,
    /// Operations the killed replica had called the backend for but not recorded,
    /// called again by the replica that took them over: "op (kind id)".
    pub redone_after_kill: Vec<String>,
    /// Records created by a second operation while the first one's lived: "id: op, op".
    pub created_twice: Vec<String>,
    /// Acknowledged operations with no backend call: "kind id (status)".
    pub uncalled: Vec<String>,
    /// Calls for no operation (the record had none running).
    pub calls_without_operation: usize,
    /// Ids still in progress after the drain.
    pub in_progress: Vec<String>,
    /// 5xx answers (requests and polls) inside and outside the kill window, by status;
    /// status 0 is no answer at all.
    pub errors_in_window: BTreeMap<u16, usize>,
    pub errors_outside: BTreeMap<u16, usize>,
    /// Requests nginx passed on from the killed replica, by final status.
    pub passed_on: BTreeMap<u16, usize>,
}

impl Findings {
    /// Everything that must not happen.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let mut check = |what: &str, items: &[String]| {
            if !items.is_empty() {
                failures.push(format!("{what}: {}", items.join("; ")));
            }
        };
        check("acknowledged operations lost", &self.lost);
        check("bound bindings of instances that do not exist", &self.orphaned_bindings);
        check("operations run twice by live replicas", &self.duplicated);
        check("records created twice", &self.created_twice);
        check("acknowledged operations without a backend call", &self.uncalled);
        check("left in progress", &self.in_progress);
        let outside: Vec<String> = self.errors_outside.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
        check("5xx (or no answer) outside the kill window", &outside);
        let bad: Vec<String> =
            self.errors_in_window.iter().filter(|(s, _)| **s != 503).map(|(s, n)| format!("{s} ×{n}")).collect();
        check("5xx other than 503 (or no answer) in the kill window", &bad);
        if self.calls_without_operation > 0 {
            failures.push(format!("{} backend calls for no running operation", self.calls_without_operation));
        }
        failures
    }
}

/// Runs every check.
pub fn check(
    sent: &[Sent],
    polls: &[(u16, u64)],
    calls: &[Call],
    finals: &BTreeMap<String, Final>,
    kill: Option<Kill>,
) -> Findings {
    let mut findings = Findings::default();
    for s in sent.iter().filter(|s| matches!(s.status, 200..=202)) {
        *findings.acknowledged.entry(s.action.as_str()).or_default() += 1;
    }
    final_states(sent, finals, kill, &mut findings);
    backend_calls(sent, calls, kill, &mut findings);
    for (id, state) in finals {
        if state.in_progress {
            findings.in_progress.push(id.clone());
        }
    }
    let answers = sent.iter().map(|s| (s.status, s.end)).chain(polls.iter().copied());
    for (status, at) in answers.filter(|(status, _)| *status == 0 || *status >= 500) {
        let bucket = if kill.is_some_and(|k| k.contains(at)) {
            &mut findings.errors_in_window
        } else {
            &mut findings.errors_outside
        };
        *bucket.entry(status).or_default() += 1;
    }
    for s in sent.iter().filter(|s| s.upstreams > 1) {
        *findings.passed_on.entry(s.status).or_default() += 1;
    }
    findings
}

/// Every id ends as one of the operations that may have been the last to act on it,
/// and no binding is bound to an instance that does not exist.
fn final_states(sent: &[Sent], finals: &BTreeMap<String, Final>, kill: Option<Kill>, findings: &mut Findings) {
    let mut effects: BTreeMap<&str, Vec<Effect<'_>>> = BTreeMap::new();
    for s in sent {
        let Some((present, end)) = effect(s, kill) else { continue };
        effects.entry(s.target()).or_default().push(Effect { sent: s, present, end });
        // A deprovision removes the instance's bindings too.
        if s.action == Action::Deprovision && !present {
            let prefix = format!("{}-b", s.instance);
            for id in finals.keys().filter(|id| id.starts_with(&prefix)) {
                effects.entry(id.as_str()).or_default().push(Effect { sent: s, present, end });
            }
        }
    }
    for (id, state) in finals {
        let effects = effects.remove(id.as_str()).unwrap_or_default();
        // An operation that certainly ended before the last acknowledged one began
        // cannot be the last to have acted; any other may be.
        let last_start = effects.iter().filter(|e| e.end.is_some()).map(|e| e.sent.start).max();
        let candidates: Vec<&Effect<'_>> =
            effects.iter().filter(|e| e.end.is_none_or(|end| last_start.is_none_or(|s| end >= s))).collect();
        // With nothing acknowledged, what it was before the load (nothing) is allowed too.
        let allowed = candidates.iter().any(|e| e.present == state.present) || (last_start.is_none() && !state.present);
        if !allowed {
            let told: Vec<String> = candidates
                .iter()
                .map(|e| {
                    let q = if e.sent.accepts_incomplete { "?accepts_incomplete" } else { "" };
                    format!("{}{q} {} at {}..{:?}", e.sent.action.as_str(), e.sent.status, e.sent.start, e.end)
                })
                .collect();
            findings.lost.push(format!(
                "{id} is {} but the last requests were: {}",
                present(state.present),
                told.join(", ")
            ));
        }
    }
    for (id, state) in finals {
        let Some((instance, _)) = id.split_once("-b") else { continue };
        if state.present && !finals.get(instance).is_some_and(|i| i.present) {
            findings.orphaned_bindings.push(format!("{id} is bound, instance {instance} does not exist"));
        }
    }
}

fn present(yes: bool) -> &'static str {
    if yes { "there" } else { "not there" }
}

/// Backend calls per operation, records created twice, acknowledged operations
/// without a call.
fn backend_calls(sent: &[Sent], calls: &[Call], kill: Option<Kill>, findings: &mut Findings) {
    let mut by_op: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for call in calls {
        match &call.op {
            Some(op) => by_op.entry(op).or_default().push(call),
            None => findings.calls_without_operation += 1,
        }
    }
    for (op, lines) in &by_op {
        let entry = findings.calls.entry(lines[0].kind.clone()).or_default();
        entry.0 += lines.len();
        entry.1 += 1;
        if lines.len() < 2 {
            continue;
        }
        let (last, earlier) = lines.split_last().expect("two lines");
        let killed = kill.map(|k| k.pid);
        // Redone after the kill: the killed replica held the operation last before a
        // live one ran it to the end. One live replica may have run it before that and
        // lost it to the one later killed (its lease lapsed while the store was slow
        // under the load: its call was dropped, the other took over): the lease
        // working, not two runs at once. Anything more is a duplicate.
        let by_killed = earlier.iter().rev().take_while(|c| Some(c.pid) == killed).count();
        let before_the_killed = earlier.len() - by_killed;
        if by_killed > 0 && before_the_killed <= 1 && Some(last.pid) != killed {
            findings.redone_after_kill.push(format!("{op} ({} {})", last.kind, last.id));
        } else {
            let pids: Vec<String> = lines.iter().map(|c| c.pid.to_string()).collect();
            findings.duplicated.push(format!("{op} ({} {}) by pids {}", last.kind, last.id, pids.join(", ")));
        }
    }
    // In the file's order a record's calls alternate: create, remove, create, ...;
    // a second create's operation while the first one's record lives is a duplicate.
    // (Binding ids are `<instance>-b<n>`: the load names them so.)
    let mut living: BTreeMap<&str, &str> = BTreeMap::new();
    for call in calls.iter().filter(|c| c.ok) {
        let Some(op) = call.op.as_deref() else { continue };
        match call.kind.as_str() {
            "provision" | "bind" => {
                if let Some(first) = living.insert(&call.id, op).filter(|first| *first != op) {
                    findings.created_twice.push(format!("{}: {first}, {op}", call.id));
                }
            }
            "unbind" => {
                living.remove(call.id.as_str());
            }
            // A deprovision takes the instance's bindings with it, with no unbind call.
            "deprovision" => {
                let bindings = format!("{}-b", call.id);
                living.retain(|id, _| *id != call.id && !id.starts_with(&bindings));
            }
            _ => {}
        }
    }
    let ops: BTreeSet<&str> = by_op.keys().copied().collect();
    for s in sent {
        let called = match (s.action, s.status, s.polled) {
            (_, 202, Some((PollEnd::Succeeded, _))) => s.operation.as_deref().is_some_and(|op| ops.contains(op)),
            // Synchronous: the call finished while the request waited.
            (Action::Provision | Action::Bind, 201, _) | (Action::Deprovision | Action::Unbind, 200, _) => calls
                .iter()
                .any(|c| c.kind == s.action.as_str() && c.id == s.target() && (s.start..=s.end).contains(&c.at_ms)),
            _ => true,
        };
        if !called {
            findings.uncalled.push(format!("{} {} ({})", s.action.as_str(), s.target(), s.status));
        }
    }
}
