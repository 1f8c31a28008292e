//! Plain types and rules: no I/O, no HTTP, no tokio.

pub mod binding;
pub mod bounded;
pub mod catalog;
pub mod event;
pub mod instance;
pub mod liveness;
pub mod manifest;
pub mod operation;
pub mod outbox;
pub mod path;
pub mod pool;
pub mod port;
pub mod registry;
pub mod reporting_token;
pub mod resource;
pub mod strict;

use std::time::SystemTime;

/// `at`, as the RFC 3339 UTC timestamp with milliseconds OSB uses
/// (`2026-01-02T03:04:05.678Z`). The time itself comes from a `Clock` (`crate::clock`).
pub fn timestamp_at(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
