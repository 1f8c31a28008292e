//! Plain types and rules: no I/O, no HTTP, no tokio.

pub mod binding;
pub mod bounded;
pub mod catalog;
pub mod engine;
pub mod event;
pub mod instance;
pub mod liveness;
pub mod manifest;
pub mod operation;
pub mod outbox;
pub mod path;
pub mod placement;
pub mod pool;
pub mod port;
pub mod registry;
pub mod reporting_token;
pub mod resource;
pub mod strict;
pub mod time;
pub mod units;
