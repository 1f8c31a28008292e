//! The Kubernetes tier: the Kubernetes backend against a Kubernetes API it did not
//! write. One binary; the harness is `tests/support/` plus [`k8s`], the API (a real
//! cluster's, or the `kmock` emulator's) and the controllers the emulator lacks.
//!
//! Runs with `ESM_TEST_KUBERNETES=kmock` or `ESM_TEST_KUBECONFIG=<file>`; reported as
//! ignored, with the reason, without either (see `build.rs`).

#[path = "../support/mod.rs"]
mod support;

mod k8s;

mod backend;
mod fleet;
