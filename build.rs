//! Marks the test suites that need a service (or a tool) as ignored (with the reason)
//! when this build was not given one, so `cargo test` on a bare machine reports them as
//! skipped instead of passing without running them.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(esm_test_mongo)");
    println!("cargo::rustc-check-cfg=cfg(esm_test_docker)");
    println!("cargo::rustc-check-cfg=cfg(esm_test_python)");
    println!("cargo::rustc-check-cfg=cfg(esm_test_kubernetes)");
    println!("cargo::rustc-check-cfg=cfg(esm_test_kmock)");
    println!("cargo::rustc-check-cfg=cfg(esm_test_root)");
    println!("cargo::rustc-check-cfg=cfg(esm_test_dockerd)");
    println!("cargo::rerun-if-env-changed=ESM_TEST_MONGO_URI");
    println!("cargo::rerun-if-env-changed=ESM_TEST_DOCKER");
    println!("cargo::rerun-if-env-changed=ESM_TEST_PYTHON");
    println!("cargo::rerun-if-env-changed=ESM_TEST_KUBERNETES");
    println!("cargo::rerun-if-env-changed=ESM_TEST_KUBECONFIG");
    println!("cargo::rerun-if-env-changed=ESM_TEST_ROOT");
    println!("cargo::rerun-if-env-changed=ESM_TEST_DOCKERD");
    if std::env::var("ESM_TEST_MONGO_URI").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=esm_test_mongo");
    }
    if std::env::var("ESM_TEST_DOCKER").is_ok_and(|v| !v.is_empty() && v != "0") {
        println!("cargo::rustc-cfg=esm_test_docker");
    }
    // A Python interpreter with `prometheus_client`, for the check of /metrics with a
    // real exposition-format parser.
    if std::env::var("ESM_TEST_PYTHON").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=esm_test_python");
    }
    // A Kubernetes API: the kmock emulator (`ESM_TEST_KUBERNETES=kmock`, needs Python and
    // `pip install kmock`) or a real cluster (`ESM_TEST_KUBECONFIG=<file>`).
    let kmock = std::env::var("ESM_TEST_KUBERNETES").is_ok_and(|v| v == "kmock");
    if kmock || std::env::var("ESM_TEST_KUBECONFIG").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=esm_test_kubernetes");
    }
    // Tests that make the emulated controllers report what a real cluster cannot be made
    // to do on demand (a crash).
    if kmock {
        println!("cargo::rustc-cfg=esm_test_kmock");
    }
    // Root and `dockerd`, for the suites that start a Docker engine of their own (a
    // second engine of a fleet, one they kill).
    if std::env::var("ESM_TEST_DOCKERD").is_ok_and(|v| !v.is_empty() && v != "0") {
        println!("cargo::rustc-cfg=esm_test_dockerd");
    }
    // Root, for the suites that mount a file system (a small tmpfs that fills up).
    if std::env::var("ESM_TEST_ROOT").is_ok_and(|v| !v.is_empty() && v != "0") {
        println!("cargo::rustc-cfg=esm_test_root");
    }
}
