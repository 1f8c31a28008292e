#![doc = include_str!("../docs/architecture.md")]
#![warn(missing_docs)]

pub mod app;
pub mod backend;
pub mod broker;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod manifest;
pub mod metrics;
pub mod ops;
pub mod probe;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
pub mod wire;
pub mod yaml;
