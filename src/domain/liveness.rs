//! Whether an instance is alive: what its backend observes of each component, what the
//! instance reports of itself (os-lively's heartbeats with a TTL), and the thresholds
//! after which an instance not seen up is lost (SLAMon AFM).
//!
//! The rules are here, as plain functions of the record and the time: the broker's
//! monitor feeds them observations and reports and writes the result when it changed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::bounded::Note;
use super::time::Timestamp;

/// An instance's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LivenessStatus {
    /// Every component is up, and the instance's own report (if it sends any) says up.
    Up,
    /// Some components are down, starting or unhealthy; others are up.
    Degraded,
    /// Nothing is up, the instance reported itself down, its heartbeat was missed, or it
    /// was not seen up for longer than the active threshold.
    Down,
    /// Not observed yet, or the backend cannot be asked: never guessed as up.
    Unknown,
}

impl LivenessStatus {
    /// Every status.
    pub const ALL: [Self; 4] = [Self::Up, Self::Degraded, Self::Down, Self::Unknown];

    /// As in the API and the index: `up`, `degraded`, `down`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }

    /// The status spelled as [`LivenessStatus::as_str`] spells it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// How bad it is: the worse of two sources wins.
    fn badness(self) -> u8 {
        match self {
            Self::Up => 0,
            Self::Unknown => 1,
            Self::Degraded => 2,
            Self::Down => 3,
        }
    }

    /// The worse of two.
    pub fn worst(self, other: Self) -> Self {
        if other.badness() > self.badness() { other } else { self }
    }
}

/// How one component (a container, a swarm task, a pod) is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    /// Running (and healthy, where a health check is declared).
    Up,
    /// Running, its health check not passed yet.
    Starting,
    /// Running, its health check failing.
    Unhealthy,
    /// Not running: exited, killed, OOM, removed.
    Down,
}

/// One component of a deployment as its backend sees it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Component {
    /// Its name in the manifest (a compose service; `service.N` for a swarm task).
    pub name: String,
    /// What it is: `container`, `task`, `pod`.
    pub kind: String,
    /// How it is doing.
    pub status: ComponentStatus,
    /// Why it is not up (exit code, OOM, the health check's output), when it is not.
    pub reason: Option<String>,
}

/// What a backend last said of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Observation {
    /// The instance's liveness as its components make it (`unknown` when the backend
    /// could not be asked).
    pub status: LivenessStatus,
    /// Why, in words.
    pub reason: String,
}

impl Observation {
    /// What `components` make of the instance.
    pub fn of(components: &[Component]) -> Self {
        let (status, reason) = observed_status(components);
        Self { status, reason }
    }

    /// The backend could not be asked: nothing is guessed.
    pub fn unreachable(message: &str) -> Self {
        Self { status: LivenessStatus::Unknown, reason: format!("cannot ask the backend: {message}") }
    }
}

/// What a backend observed of an instance's components: the instance's observed
/// liveness and why.
pub fn observed_status(components: &[Component]) -> (LivenessStatus, String) {
    let up = components.iter().filter(|c| c.status == ComponentStatus::Up).count();
    let not_up: Vec<String> = components
        .iter()
        .filter(|c| c.status != ComponentStatus::Up)
        .map(|c| match &c.reason {
            Some(reason) => format!("{} {}: {reason}", c.name, status_word(c.status)),
            None => format!("{} {}", c.name, status_word(c.status)),
        })
        .collect();
    if components.is_empty() {
        (LivenessStatus::Down, "nothing of the deployment is left".into())
    } else if not_up.is_empty() {
        (LivenessStatus::Up, format!("{up} of {up} components up"))
    } else if up == 0 {
        (LivenessStatus::Down, not_up.join("; "))
    } else {
        (LivenessStatus::Degraded, not_up.join("; "))
    }
}

fn status_word(status: ComponentStatus) -> &'static str {
    match status {
        ComponentStatus::Up => "up",
        ComponentStatus::Starting => "starting",
        ComponentStatus::Unhealthy => "unhealthy",
        ComponentStatus::Down => "down",
    }
}

/// What the instance said of itself (`PUT .../liveness`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// `up` or `down`.
    pub status: LivenessStatus,
    /// A word from the instance, shown as the reason.
    #[serde(default, deserialize_with = "lenient_note")]
    #[schema(value_type = Option<String>)]
    pub note: Option<Note>,
    /// When it was received (Unix milliseconds).
    pub at: u64,
    /// When it stops counting: no newer report by then is a missed heartbeat (Unix
    /// milliseconds).
    pub expires_at: u64,
}

/// A note as an older esm stored it (bounded in characters, not bytes): one that is no
/// [`Note`] now is dropped rather than making its whole record unreadable.
fn lenient_note<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Note>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.and_then(|text| Note::parse(text).ok()))
}

/// An instance's latest report of itself, in a record of its own (keyed by the
/// instance's id): reports are written there, never into the instance's record, so
/// however many an instance sends they never contend with the platform's operations.
/// The liveness rounds fold the latest one into the instance's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    /// The instance it is about.
    pub instance_id: String,
    /// What it said last.
    pub report: Report,
}

/// An instance's liveness as stored in its record.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    /// The verdict: the worse of what was observed and what was reported, after the
    /// thresholds.
    pub status: LivenessStatus,
    /// When the verdict last changed (RFC 3339).
    #[schema(value_type = String)]
    pub since: Timestamp,
    /// Why, in words.
    pub reason: String,
    /// Each component as last observed (empty when the backend cannot observe).
    #[serde(default)]
    pub components: Vec<Component>,
    /// What the backend observed last, if it can observe (absent: it cannot).
    pub observed: Option<Observation>,
    /// The instance's latest report of itself, if it ever sent one.
    pub reported: Option<Report>,
    /// When it was last seen up by either source (Unix milliseconds); the start of the
    /// active and drop thresholds.
    pub last_up_at: Option<u64>,
    /// When its backend last observed it up (Unix milliseconds): what the drop
    /// threshold counts from unless reports may drop (absent in records of older esm,
    /// and for an instance never observed up).
    pub observed_up_at: Option<u64>,
    /// When it was first watched (Unix milliseconds): an instance never seen up is lost
    /// once the active threshold has passed since then.
    pub watched_since: u64,
}

/// The thresholds of [`Liveness::judge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Milliseconds without being seen up after which an instance is lost.
    pub active_ms: u64,
    /// Milliseconds without being seen up after which a lost instance is deprovisioned.
    pub drop_ms: Option<u64>,
    /// Whether the instance's own reports count toward the drop threshold
    /// (`ESM_LIVENESS_REPORTS_MAY_DROP`). Off: only what the backend observed does, so a
    /// report of `down` or a lapsed TTL never deprovisions an instance by itself.
    pub reports_may_drop: bool,
}

/// What the thresholds say of an instance not seen up for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Seen up lately enough (or the thresholds do not apply).
    Active,
    /// Not seen up for longer than the active threshold.
    Lost,
    /// Not seen up for longer than the drop threshold: deprovision it.
    Drop,
}

impl Liveness {
    /// The liveness of an instance nobody has observed yet.
    pub fn unknown(now_ms: u64, since: Timestamp) -> Self {
        Self {
            status: LivenessStatus::Unknown,
            since,
            reason: "not observed yet".into(),
            components: Vec::new(),
            observed: None,
            reported: None,
            last_up_at: None,
            observed_up_at: None,
            watched_since: now_ms,
        }
    }

    /// How long the instance has not been seen up, and what the thresholds make of it.
    /// An instance nothing watches (no observation, no report) is never lost: it is
    /// `unknown`.
    ///
    /// Unless reports may drop, only the backend can make an instance `Drop`: it must
    /// have observed it (not merely failed to ask) and not seen it up for the drop
    /// threshold. An instance the backend sees up, or one no backend watches, is never
    /// dropped whatever it reports.
    pub fn verdict(&self, now_ms: u64, thresholds: Thresholds) -> Verdict {
        if self.observed.is_none() && self.reported.is_none() {
            return Verdict::Active;
        }
        let quiet = now_ms.saturating_sub(self.last_up_at.unwrap_or(self.watched_since));
        let droppable = match thresholds.drop_ms {
            Some(drop) if thresholds.reports_may_drop => quiet >= drop,
            Some(drop) => self.observed.as_ref().is_some_and(|o| {
                matches!(o.status, LivenessStatus::Down | LivenessStatus::Degraded)
                    && now_ms.saturating_sub(self.observed_up_at.unwrap_or(self.watched_since)) >= drop
            }),
            None => false,
        };
        if droppable {
            Verdict::Drop
        } else if quiet >= thresholds.active_ms {
            Verdict::Lost
        } else {
            Verdict::Active
        }
    }

    /// Whether `self` says something `before` did not: anything but the times that move
    /// on with every look or heartbeat (when it was last seen up, when the report was
    /// received and when it lapses). Only then is the record worth writing.
    pub fn differs_from(&self, before: &Self) -> bool {
        let timeless = |l: &Self| Self {
            last_up_at: None,
            observed_up_at: None,
            reported: l.reported.as_ref().map(|r| Report { at: 0, expires_at: 0, ..r.clone() }),
            ..l.clone()
        };
        timeless(self) != timeless(before)
    }

    /// Works out the status and reason from the sources at `now_ms`. Returns whether the
    /// status changed; `since` is set by the caller when it did (it knows the time as
    /// RFC 3339).
    pub fn judge(&mut self, now_ms: u64, thresholds: Thresholds) -> bool {
        let observed = self.observed.as_ref().map(|o| (o.status, o.reason.clone()));
        let reported = self.reported.as_ref().map(|report| {
            if now_ms >= report.expires_at {
                (LivenessStatus::Down, "heartbeat missed".to_owned())
            } else {
                let note = report.note.as_deref().unwrap_or("no note");
                (report.status, format!("reported {}: {note}", report.status.as_str()))
            }
        });
        let (mut status, mut reason) = match (observed, reported) {
            (None, None) => (LivenessStatus::Unknown, "not observed yet and no report".to_owned()),
            (Some(one), None) | (None, Some(one)) => one,
            // The worse one wins; on a tie the backend's words are kept.
            (Some(o), Some(r)) => {
                if o.0.worst(r.0) == o.0 {
                    o
                } else {
                    r
                }
            }
        };
        if status == LivenessStatus::Up || self.status == LivenessStatus::Up {
            // Up now, or up until now: the thresholds count from here.
            self.last_up_at = Some(now_ms);
        }
        if self.observed.as_ref().is_some_and(|o| o.status == LivenessStatus::Up) {
            self.observed_up_at = Some(now_ms);
        }
        if status != LivenessStatus::Down && self.verdict(now_ms, thresholds) != Verdict::Active {
            // Said once, in words that do not change with every look (the record is
            // written only when something changed).
            let seen = match self.last_up_at {
                Some(at) => format!("since {}", Timestamp::from_millis(at)),
                None => "since it was first watched".to_owned(),
            };
            status = LivenessStatus::Down;
            reason = format!("lost: not seen up {seen} ({reason})");
        }
        let changed = status != self.status;
        self.status = status;
        self.reason = reason;
        changed
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
