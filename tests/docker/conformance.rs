//! The backend conformance suite (`esm::backend::conformance`) against the
//! docker-compose and docker-swarm backends on a real engine. They need the test image
//! (`tests/docker/build-test-images.sh`) and, for swarm, a single-node swarm; nothing is
//! pulled. The dummy's runs are in the broker tier (`tests/broker/backend_conformance.rs`).
//!
//! Each Docker run labels what it makes with an owner of its own, so `held`
//! sees neither other tests nor other sessions on the same engine.

use std::sync::Arc;
use std::time::Duration;

use esm::backend::Backend;
use esm::backend::conformance::{self, Subject};
use esm::backend::docker::{self, SwarmBackend};
use esm::domain::manifest::Manifest;

use crate::support::docker::IMAGE;

fn manifest(manifest_type: &str, content: String) -> Manifest {
    conformance::manifest("conformance", manifest_type, content)
}

/// A Docker backend's subject: a service that stops at once on SIGTERM (a plain `sleep`
/// as PID 1 ignores it, and swarm would wait its 10 s grace period on every removal),
/// and one whose image is not on the engine.
async fn docker_subject(
    new_backend: impl Fn() -> Arc<dyn Backend> + Send + Sync + 'static,
    manifest_type: &str,
) -> Subject {
    let backend = new_backend();
    let probe = backend.probe().await;
    probe.unwrap_or_else(|e| panic!("ESM_TEST_DOCKER is set but {} cannot work: {e}", backend.name()));
    let app = format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [sh, -c, \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
    );
    let failing = format!("{app}  missing:\n    image: esm-test/never-built:1\n");
    Subject {
        new_backend: Box::new(new_backend),
        manifest: manifest(manifest_type, app),
        failing: manifest(manifest_type, failing),
    }
}

/// Settings for one backend: nothing pulled, and an owner no one else uses.
fn docker_settings() -> docker::DockerSettings {
    docker::DockerSettings {
        publish_address: [127, 0, 0, 1].into(),
        advertise_host: "127.0.0.1".into(),
        pull: docker::PullPolicy::Never,
        policy: esm::manifest::Policy::default(),
        ready_timeout: Duration::from_secs(30),
        owner: format!("conformance-{}", uuid::Uuid::new_v4().simple()),
    }
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn the_docker_compose_backend_conforms() {
    let new_backend =
        || -> Arc<dyn Backend> { Arc::new(docker::ComposeBackend::new(docker_settings()).expect("a Docker client")) };
    conformance::run(docker_subject(new_backend, "docker-compose").await).await;
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn the_docker_swarm_backend_conforms() {
    let new_backend =
        || -> Arc<dyn Backend> { Arc::new(SwarmBackend::new(docker_settings()).expect("a Docker client")) };
    conformance::run(docker_subject(new_backend, "docker-swarm").await).await;
}

/// A fleet's second engine passes the same suite: a compose backend on a test's own
/// private dockerd, reached by its `docker_host` as a declared engine is.
#[cfg_attr(
    not(all(esm_test_docker, esm_test_dockerd)),
    ignore = "needs Docker and root: set ESM_TEST_DOCKER=1 ESM_TEST_DOCKERD=1"
)]
#[tokio::test(flavor = "multi_thread")]
async fn the_docker_compose_backend_conforms_on_a_second_engine() {
    let engine = crate::support::dockerd::PrivateEngine::start();
    let host = engine.host();
    let new_backend = move || -> Arc<dyn Backend> {
        let on = docker::DockerEngine::at(&host, None).expect("a Docker client");
        Arc::new(docker::ComposeBackend::on(on, docker_settings()))
    };
    conformance::run(docker_subject(new_backend, "docker-compose").await).await;
}
