//! esm: a service broker daemon speaking the Open Service Broker API 2.12–2.17, with
//! the ElasTest Service Manager's extensions.
//!
//! # Layout
//!
//! - [`config`]: settings (flags and `ESM_*` variables) read once at start.
//! - [`app`]: start-up, the two listening ports, graceful shutdown.
//! - [`serve`]: the accept loop under both ports: header, idle and body timeouts, and
//!   the connection cap.
//! - [`web`]: the API port's web shell: `AppState`, the `/v2` routes (OSB and
//!   ElasTest, one file per endpoint) with their extractors and layers (auth, version
//!   check, audit log), the dashboard, and the OpenAPI document with Swagger UI.
//! - [`ops`]: the operator port (`/health`, `/environment`, `/metrics`).
//! - [`metrics`]: the Prometheus metric families and what records into them.
//! - [`probe`]: `esm health`, the container health check.
//! - [`broker`]: every operation and the OSB status table; runs asynchronous operations.
//! - [`clock`]: where the time comes from (the system, or Tokio's pausable clock in tests).
//! - [`domain`]: plain records and rules (catalog, manifests, instances, bindings,
//!   operations); no I/O.
//! - [`wire`]: the JSON shapes of requests and responses.
//! - [`store`]: the `Store` trait (documents with compare-and-set), its implementations,
//!   and the breaker that answers at once while a store server is down.
//! - [`manifest`]: the compose manifest language (parse, check, the operator's policy),
//!   shared by the Docker and Kubernetes backends, and the deployment settings' values.
//! - [`backend`]: the `Backend` trait (what deploys a manifest), the kit its
//!   implementations share, and the implementations.
//! - [`error`]: the one error type, rendered as the OSB error body.
//! - [`yaml`]: untrusted YAML into JSON values, within limits (size, depth, aliases, time).
//! - [`telemetry`]: logging setup.

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
