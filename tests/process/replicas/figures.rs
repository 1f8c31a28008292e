//! The figures of a run: printed for people (`--nocapture`), and as `key=value` lines
//! for `bench/replicas.sh` (`ESM_REPLICAS_REPORT`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::driver::{Action, Traffic, statuses};
use super::verify::{Findings, Kill};

/// A run, as measured.
pub struct Figures<'a> {
    /// What ran: "sync, 3 replicas behind nginx" ...
    pub title: String,
    pub traffic: &'a Traffic,
    pub findings: &'a Findings,
    /// How long the load ran (ms).
    pub load_ms: u64,
    /// When it started (Unix ms), to show the kill relative to it.
    pub started: u64,
    pub kill: Option<Kill>,
    /// Operations each esm log says it took over ("taking over operation"), per log.
    pub takeovers: BTreeMap<String, usize>,
    /// How long operations took to drain after the load (ms).
    pub drain_ms: u64,
    /// What became of the operation the killed replica was surely running.
    pub probe: Option<String>,
}

impl Figures<'_> {
    fn requests(&self) -> usize {
        self.traffic.sent.len() + self.traffic.polls.len()
    }

    fn per_second(&self, n: usize) -> f64 {
        n as f64 * 1000.0 / self.load_ms.max(1) as f64
    }

    /// For people.
    pub fn text(&self) -> String {
        let (traffic, f) = (self.traffic, self.findings);
        let mut out = String::new();
        let secs = |at: u64| (at.saturating_sub(self.started)) as f64 / 1000.0;
        let _ = writeln!(out, "== {} for {:.1} s", self.title, self.load_ms as f64 / 1000.0);
        if let Some(k) = self.kill {
            let _ = writeln!(
                out,
                "killed -9: pid {} at {:.1} s; restarted on its ports, serving at {:.1} s",
                k.pid,
                secs(k.at),
                secs(k.back)
            );
        }
        let _ = writeln!(
            out,
            "requests: {} ({:.0}/s); operations sent: {} ({:.0}/s); polls: {}",
            self.requests(),
            self.per_second(self.requests()),
            traffic.sent.len(),
            self.per_second(traffic.sent.len()),
            traffic.polls.len()
        );
        for action in [Action::Provision, Action::Deprovision, Action::Bind, Action::Unbind] {
            let by_status = statuses(traffic.sent.iter().filter(|s| s.action == action).map(|s| s.status));
            let _ = writeln!(out, "  {:<12} {}", action.as_str(), counts(&by_status));
        }
        let _ = writeln!(out, "  {:<12} {}", "poll", counts(&statuses(traffic.polls.iter().map(|p| p.0))));
        let acknowledged: usize = f.acknowledged.values().sum();
        let _ = writeln!(out, "acknowledged (200/201/202): {acknowledged}; lost: {}", f.lost.len());
        let calls: Vec<String> =
            f.calls.iter().map(|(kind, (lines, ops))| format!("{kind} {lines} for {ops} operations")).collect();
        let _ = writeln!(out, "backend calls: {}", calls.join(", "));
        let _ = writeln!(
            out,
            "operations run twice by live replicas: {}; redone after the kill: {}; records created twice: {}",
            f.duplicated.len(),
            f.redone_after_kill.len(),
            f.created_twice.len()
        );
        for op in &f.redone_after_kill {
            let _ = writeln!(out, "  redone (the killed replica called the backend, died before recording it): {op}");
        }
        let _ = writeln!(out, "acknowledged without a backend call: {}", f.uncalled.len());
        let _ = writeln!(
            out,
            "in progress after the drain: {} (drained in {:.1} s)",
            f.in_progress.len(),
            self.drain_ms as f64 / 1000.0
        );
        let _ = writeln!(out, "bound bindings of missing instances: {}", f.orphaned_bindings.len());
        let _ = writeln!(
            out,
            "5xx (0 = no answer): in the kill window {}; outside {}",
            or_none(&f.errors_in_window),
            or_none(&f.errors_outside)
        );
        let _ = writeln!(out, "passed on by nginx to another replica, by final status: {}", or_none(&f.passed_on));
        let takeovers: Vec<String> = self.takeovers.iter().map(|(log, n)| format!("{log} {n}")).collect();
        let _ = writeln!(out, "operations taken over (per replica log): {}", takeovers.join(", "));
        if let Some(probe) = &self.probe {
            let _ = writeln!(out, "{probe}");
        }
        out
    }

    /// For the bench: one `key=value` per line, keys prefixed with `prefix`.
    pub fn report(&self, prefix: &str) -> String {
        let f = self.findings;
        let sum = |m: &BTreeMap<u16, usize>| m.values().sum::<usize>();
        let mut out = String::new();
        let mut put = |key: &str, value: String| {
            let _ = writeln!(out, "{prefix}{key}={value}");
        };
        put("title", self.title.clone());
        put("seconds", format!("{:.1}", self.load_ms as f64 / 1000.0));
        put("requests", self.requests().to_string());
        put("requests_per_s", format!("{:.0}", self.per_second(self.requests())));
        put("operations_per_s", format!("{:.0}", self.per_second(self.traffic.sent.len())));
        put("acknowledged", f.acknowledged.values().sum::<usize>().to_string());
        put("lost", f.lost.len().to_string());
        put("duplicated", f.duplicated.len().to_string());
        put("redone_after_kill", f.redone_after_kill.len().to_string());
        put("created_twice", f.created_twice.len().to_string());
        put("uncalled", f.uncalled.len().to_string());
        put("in_progress", f.in_progress.len().to_string());
        put("errors_in_window", counts(&f.errors_in_window));
        put("errors_outside", sum(&f.errors_outside).to_string());
        put("passed_on", sum(&f.passed_on).to_string());
        put("takeovers", self.takeovers.values().sum::<usize>().to_string());
        out
    }
}

/// `201 ×12, 422 ×3`
fn counts(by_status: &BTreeMap<u16, usize>) -> String {
    by_status.iter().map(|(status, n)| format!("{status} ×{n}")).collect::<Vec<_>>().join(", ")
}

fn or_none(by_status: &BTreeMap<u16, usize>) -> String {
    if by_status.is_empty() { "none".into() } else { counts(by_status) }
}
