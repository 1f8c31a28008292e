//! The Docker tier: the Docker backends (docker-compose and docker-swarm) against a
//! real engine, in-process and through the real `esm` binary. One binary, one module
//! per suite; the harness is `tests/support/` and its [`support::docker`].
//!
//! Every test here runs when `ESM_TEST_DOCKER=1` (CI installs and starts the engine and
//! builds the test image with `tests/docker/build-test-images.sh`; the swarm tests need
//! `docker swarm init --advertise-addr 127.0.0.1`). Without the variable they are
//! reported as ignored (see `build.rs`); with it and no engine, they fail. Containers
//! are reached only through ports published on 127.0.0.1, and no test pulls an image.

#[path = "../support/mod.rs"]
mod support;

mod backends;
mod conformance;
mod deployments;
mod events;
mod fleet;
mod inventory;
mod liveness;
mod pools;
mod ports;
