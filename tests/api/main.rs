//! The integration tests: one binary (fast to link), one module per endpoint area.
//! Each test starts a real esm on random loopback ports and speaks HTTP to it.

mod helpers;
#[path = "../support/sse.rs"]
mod sse;
#[path = "../support/wait.rs"]
mod wait;

mod binding_listing;
mod bindings;
mod catalog;
mod dashboard;
mod deprovision;
mod elastest;
mod engines;
mod events;
mod get_instance;
mod inventory;
mod listing;
mod liveness;
mod metrics;
mod ops;
mod pools;
mod ports;
mod provision;
mod update;
mod versions;
mod webhook;
