//! The process tier: the real `esm` binary run as a child process (and, for some
//! suites, MongoDB servers, nginx or a terminal of their own), killed, restarted,
//! starved and read from outside. One binary, one module per suite; the harness is
//! `tests/support/` ([`support::Esm`], [`support::Client`], [`support::MongoServer`]).
//!
//! The suites that need MongoDB, Python or root are reported as ignored, with the
//! reason, unless the build saw `ESM_TEST_MONGO_URI`, `ESM_TEST_PYTHON` or
//! `ESM_TEST_ROOT` (see `build.rs`).

#[path = "../support/mod.rs"]
mod support;

mod bounded;
mod catalog_cache;
mod cli;
mod disk_full;
mod durability;
mod events_replicas;
mod events_resume;
mod first_run;
mod hostile;
mod inventory;
mod lifecycle;
mod operator_output;
mod pools;
mod replicas;
mod slow_clients;
