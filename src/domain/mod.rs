//! Plain types and rules: no I/O, no HTTP, no tokio.

pub mod binding;
pub mod catalog;
pub mod instance;
pub mod manifest;
pub mod operation;
pub mod registry;
pub mod strict;

use std::time::{Duration, SystemTime};

/// Now, as the RFC 3339 UTC timestamp OSB uses (`2026-01-02T03:04:05.678Z`).
pub fn timestamp() -> String {
    timestamp_at(SystemTime::now())
}

/// `at`, as an RFC 3339 UTC timestamp with milliseconds.
pub fn timestamp_at(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// `seconds` from now, as an RFC 3339 UTC timestamp.
pub fn timestamp_in(seconds: u64) -> String {
    timestamp_at(SystemTime::now() + Duration::from_secs(seconds))
}

/// Whether an RFC 3339 timestamp lies in the past (an unparseable one counts as past).
pub fn is_past(timestamp: &str) -> bool {
    humantime::parse_rfc3339(timestamp).map_or(true, |t| t <= SystemTime::now())
}
