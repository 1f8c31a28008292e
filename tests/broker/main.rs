//! The broker tier: esm's library in-process, with no HTTP and no child process: the
//! broker on paused Tokio time (deadlines, leases, liveness), the stores and backends
//! against their conformance suites, the event log, the invariants under races, the
//! manifest parsers under generated input, and `deploy/kubernetes/`. One binary, one
//! module per suite; the harness is `tests/support/` (its in-process catalog and waits).
//!
//! The MongoDB runs are reported as ignored, with the reason, unless the build saw
//! `ESM_TEST_MONGO_URI` (see `build.rs`).

#[path = "../support/mod.rs"]
mod support;

mod backend_conformance;
mod capacity_units;
mod deploy_manifests;
mod evacuation;
mod event_log;
mod integrity;
mod liveness_timing;
mod manifest_properties;
mod placement;
mod stores;
mod timing;
