//! Docker backends: docker-compose manifests deployed through the Docker API.

pub mod model;
