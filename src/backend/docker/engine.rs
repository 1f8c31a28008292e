//! A thin layer over bollard: the few Docker Engine calls the backends make, with the
//! error handling they share (a missing resource on removal is success).
//!
//! The engine is reached lazily: esm starts and serves without one (the Docker backends
//! then report unavailable in `/health`, and their operations fail with a clear
//! message), and connects as soon as its socket appears, with no restart.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, OnceLock};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::StreamExt;

use super::deploy::Need;
use super::spec::Resource;
use super::{DockerSettings, PullPolicy};
use crate::backend::{BackendError, labels, said};

/// Where the engine is when `DOCKER_HOST` does not say (as for the docker CLI).
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Seconds a request to a `tcp://` engine over TLS may take (bollard's own default).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// The files of a TLS client certificate for a `tcp://` engine.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// The CA the engine's certificate must chain to.
    pub ca: std::path::PathBuf,
    /// The client certificate.
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
}

/// A Docker engine.
#[derive(Debug, Clone)]
pub struct Engine {
    /// `DOCKER_HOST`, or the local socket.
    host: String,
    /// The client, made once the socket exists. Over a socket bollard opens a connection
    /// per request, so one client keeps working across engine restarts.
    docker: Arc<OnceLock<Docker>>,
}

/// Whether an engine error means "no such thing".
pub fn is_not_found(e: &DockerError) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code: 404, .. })
}

/// An engine error as a backend failure, with what esm was doing, in esm's words
/// ([`said`]): the engine's own answer may name the host's resolver, a socket or a
/// runtime path, so it goes to the debug log and the client reads what failed.
pub fn failed(doing: &str, e: DockerError) -> BackendError {
    let detail = match e {
        DockerError::DockerResponseServerError { status_code, message } => {
            said::in_esm_words(doing, &message, by_status(status_code))
        }
        DockerError::DockerStreamError { error } => said::in_esm_words(doing, &error, "the engine reported a failure"),
        other => {
            tracing::debug!(error = %other, doing, "Docker engine request failed");
            unreachable_reason(&other)
        }
    };
    BackendError::new(format!("{doing}: {detail}"))
}

/// What an engine answer's status says, when its text matches no phrase esm knows.
fn by_status(status: u16) -> &'static str {
    match status {
        400 => "the engine refused the request as invalid",
        401 | 403 => "the engine refused esm",
        404 => "something it needs was not found",
        409 => "it conflicts with what the engine already has",
        500.. => "the engine failed (the operator's log says why)",
        _ => "the engine refused the request",
    }
}

/// Why the engine could not be reached, in esm's words: what the operator can act on
/// (the socket's permissions, a stopped engine), never the transport's own text.
fn unreachable_reason(e: &DockerError) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied on the Docker engine's socket (give esm the socket's group)"
                }
                std::io::ErrorKind::NotFound => "the Docker engine's socket is gone (is the engine running?)",
                std::io::ErrorKind::ConnectionRefused => "the Docker engine refuses connections (is it running?)",
                _ => "the Docker engine is unreachable",
            };
        }
        source = cause.source();
    }
    match e {
        DockerError::RequestTimeoutError => "the Docker engine did not answer in time",
        _ => "the Docker engine is unreachable or answered unexpectedly",
    }
}

impl Engine {
    /// The engine the Docker CLI would use (`DOCKER_HOST`, else the local socket).
    /// Connects when it can: a socket that does not exist yet is no error (esm starts,
    /// and connects once it appears); a `DOCKER_HOST` esm cannot use is.
    pub fn connect() -> Result<Self, BackendError> {
        let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.trim().is_empty());
        Self::at(&host.unwrap_or_else(|| DEFAULT_HOST.to_owned()), None)
    }

    /// The engine at `host` (`unix://` or `tcp://`), over TLS with `tls` (a client
    /// certificate) for the latter. Connects as [`Engine::connect`] does.
    pub fn at(host: &str, tls: Option<&TlsClient>) -> Result<Self, BackendError> {
        let engine = Self { host: host.to_owned(), docker: Arc::default() };
        if let Some(tls) = tls {
            let docker = Docker::connect_with_ssl(
                host,
                &tls.key,
                &tls.cert,
                &tls.ca,
                REQUEST_TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            )
            .map_err(|e| BackendError::new(format!("cannot use the TLS files for {host}: {e}")))?;
            let _ = engine.docker.set(docker);
            return Ok(engine);
        }
        match engine.client() {
            Ok(_) => {}
            Err(DockerError::SocketNotFoundError(path)) => {
                tracing::warn!(socket = %path, "no Docker engine yet: the Docker backends are unavailable until its socket appears");
            }
            Err(e) => {
                return Err(BackendError::new(format!("cannot use DOCKER_HOST {:?}: {e}", engine.host)));
            }
        }
        Ok(engine)
    }

    fn client(&self) -> Result<Docker, DockerError> {
        if let Some(docker) = self.docker.get() {
            return Ok(docker.clone());
        }
        let docker = Docker::connect_with_host(&self.host)?;
        Ok(self.docker.get_or_init(|| docker).clone())
    }

    /// Whether the engine runs on this host (reached through a local socket).
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://") || self.host.starts_with("npipe://")
    }

    /// The bollard client; fails while the engine's socket does not exist.
    pub fn docker(&self) -> Result<Docker, BackendError> {
        self.client().map_err(|e| match e {
            DockerError::SocketNotFoundError(path) => BackendError::new(format!(
                "the Docker engine is not available: no socket at {path} (DOCKER_HOST); esm connects as soon as it appears"
            )),
            other => failed("cannot reach the Docker engine", other),
        })
    }

    /// Checks that the engine answers.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let version = self.docker()?.version().await.map_err(|e| failed("the Docker engine does not answer", e))?;
        Ok(format!(
            "Docker engine {} (API {})",
            version.version.unwrap_or_default(),
            version.api_version.unwrap_or_default()
        ))
    }

    /// Makes sure `image` is there, as the pull policy says.
    pub async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<(), BackendError> {
        let present = match self.docker()?.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(failed(&format!("cannot inspect image {image}"), e)),
        };
        match (policy, present) {
            (PullPolicy::Never, false) => {
                Err(BackendError::new(format!("image {image} is not present on the engine and ESM_DOCKER_PULL=never")))
            }
            (PullPolicy::Never | PullPolicy::Missing, true) => Ok(()),
            (PullPolicy::Missing, false) | (PullPolicy::Always, _) => self.pull(image).await,
        }
    }

    async fn pull(&self, image: &str) -> Result<(), BackendError> {
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut progress = self.docker()?.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| failed(&format!("cannot pull image {image}"), e))?;
        }
        Ok(())
    }

    /// Checks that an external network exists and is no esm instance's: an instance
    /// never joins another instance's network, whatever the policy allows.
    pub async fn check_external_network(&self, name: &str) -> Result<(), BackendError> {
        let network = self
            .docker()?
            .inspect_network(name, None)
            .await
            .map_err(|e| failed(&format!("external network {name} is not available"), e))?;
        if network.labels.is_some_and(|l| l.contains_key(labels::INSTANCE)) {
            return Err(BackendError::new(format!(
                "external network {name} belongs to an esm instance; an instance cannot join another's network"
            )));
        }
        Ok(())
    }

    /// Checks that an external volume exists, is no esm instance's, and (unless bind
    /// mounts are allowed) is a plain local volume: driver options such as
    /// `type=none,o=bind,device=/host/dir` would be a bind mount in disguise.
    pub async fn check_external_volume(&self, name: &str, allow_bind_mounts: bool) -> Result<(), BackendError> {
        let volume = self
            .docker()?
            .inspect_volume(name)
            .await
            .map_err(|e| failed(&format!("external volume {name} is not available"), e))?;
        if volume.labels.contains_key(labels::INSTANCE) {
            return Err(BackendError::new(format!(
                "external volume {name} belongs to an esm instance; an instance cannot mount another's volume"
            )));
        }
        if !allow_bind_mounts && (volume.driver != "local" || !volume.options.is_empty()) {
            return Err(BackendError::new(format!(
                "external volume {name} has a driver or driver options, which may bind a host path (the operator can allow it with ESM_DOCKER_ALLOW_BIND_MOUNTS)"
            )));
        }
        Ok(())
    }

    /// Makes what a deployment needs before its units, on this engine: `driver` is the
    /// driver of the networks esm makes (`bridge`, or `overlay`, attachable, for swarm).
    pub async fn provide(&self, need: Need<'_>, settings: &DockerSettings, driver: &str) -> Result<(), BackendError> {
        match need {
            Need::Image(image) => self.ensure_image(image, settings.pull).await,
            Need::Network(Resource { name, labels: None }) => self.check_external_network(name).await,
            Need::Network(Resource { name, labels: Some(labels) }) => self.create_network(name, driver, labels).await,
            Need::Volume(Resource { name, labels: None }) => {
                self.check_external_volume(name, settings.policy.allow_bind_mounts).await
            }
            Need::Volume(Resource { name, labels: Some(labels) }) => self.create_volume(name, labels).await,
        }
    }

    /// Makes a network. One of the same name already there is not this instance's
    /// (the deployment removed its own first): another esm deployment's, one an
    /// earlier esm made under that name, or someone else's. The engine would make a
    /// second one of the name, which then could not be told apart: refused instead.
    pub async fn create_network(
        &self,
        name: &str,
        driver: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), BackendError> {
        let named = HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
        // The name filter matches parts of names too.
        if self.networks(&named).await?.iter().any(|(found, _)| found == name) {
            return Err(BackendError::new(format!("network {name} exists and is not this instance's")));
        }
        self.docker()?
            .create_network(NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some(driver.to_owned()),
                attachable: Some(driver == "overlay"),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&format!("cannot create network {name}"), e))?;
        Ok(())
    }

    /// Makes a (local) volume. The engine answers a request for a name it has with
    /// the volume it has, whoever made it: one that is not this instance's (by its
    /// labels) is refused, never mounted. The instance's own (kept, or left by an
    /// interrupted attempt) is taken back.
    pub async fn create_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<(), BackendError> {
        let volume = self
            .docker()?
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&format!("cannot create volume {name}"), e))?;
        let same = |key: &str| volume.labels.get(key) == labels.get(key);
        if !same(labels::OWNER) || !same(labels::INSTANCE) {
            return Err(BackendError::new(format!("volume {name} exists and is not this instance's")));
        }
        Ok(())
    }

    /// Every container (running or not) with these label filters.
    pub async fn containers(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<bollard::models::ContainerSummary>, BackendError> {
        let options = ListContainersOptionsBuilder::new().all(true).filters(filters).build();
        self.docker()?.list_containers(Some(options)).await.map_err(|e| failed("cannot list containers", e))
    }

    /// Removes a container (and its anonymous volumes), stopping it first; gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<(), BackendError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker()?.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(&format!("cannot remove container {id}"), e)),
        }
    }

    /// The networks with these label filters, as the engine lists them.
    async fn listed_networks(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<bollard::models::Network>, BackendError> {
        let options = ListNetworksOptionsBuilder::new().filters(filters).build();
        self.docker()?.list_networks(Some(options)).await.map_err(|e| failed("cannot list networks", e))
    }

    /// The names of the networks with these label filters, with their labels.
    pub async fn networks(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<(String, HashMap<String, String>)>, BackendError> {
        let networks = self.listed_networks(filters).await?;
        Ok(networks.into_iter().filter_map(|n| Some((n.name?, n.labels.unwrap_or_default()))).collect())
    }

    /// Removes the networks with these label filters, by id; gone is fine. Never by
    /// name: the engine lets several networks share one (another esm deployment's, one
    /// an earlier esm made under the same name), and a name then is ambiguous.
    pub async fn remove_networks(&self, filters: &HashMap<String, Vec<String>>) -> Result<(), BackendError> {
        for network in self.listed_networks(filters).await? {
            let Some(id) = network.id else { continue };
            let name = network.name.unwrap_or_default();
            match self.docker()?.remove_network(&id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed(&format!("cannot remove network {name}"), e)),
            }
        }
        Ok(())
    }

    /// The names of the volumes with these label filters, with their labels.
    pub async fn volumes(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<(String, HashMap<String, String>)>, BackendError> {
        let options = ListVolumesOptionsBuilder::new().filters(filters).build();
        let listed = self.docker()?.list_volumes(Some(options)).await.map_err(|e| failed("cannot list volumes", e))?;
        Ok(listed.volumes.unwrap_or_default().into_iter().map(|v| (v.name, v.labels)).collect())
    }

    /// Removes a volume; gone is fine. A volume's name is its id: the engine never
    /// holds two of one name.
    pub async fn remove_volume(&self, name: &str) -> Result<(), BackendError> {
        let options = RemoveVolumeOptionsBuilder::new().force(true).build();
        match self.docker()?.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(&format!("cannot remove volume {name}"), e)),
        }
    }

    /// Inspects a container.
    pub async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse, BackendError> {
        self.docker()?
            .inspect_container(id, None)
            .await
            .map_err(|e| failed(&format!("cannot inspect container {id}"), e))
    }

    /// Inspects a container; `None` when it is gone.
    pub async fn inspect_if_present(&self, id: &str) -> Result<Option<ContainerInspectResponse>, BackendError> {
        match self.docker()?.inspect_container(id, None).await {
            Ok(inspected) => Ok(Some(inspected)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(&format!("cannot inspect container {id}"), e)),
        }
    }

    /// Removes every container, network and (unless kept, or `keep_volumes`) volume of an
    /// instance, found by label. Idempotent.
    pub async fn remove_instance(
        &self,
        owner: &str,
        instance_id: &str,
        keep_volumes: bool,
    ) -> Result<(), BackendError> {
        let filter = labels::filter_instance(owner, instance_id);
        for container in self.containers(&filter).await? {
            if let Some(id) = container.id {
                self.remove_container(&id).await?;
            }
        }
        self.remove_networks(&filter).await?;
        if !keep_volumes {
            for (name, volume_labels) in self.volumes(&filter).await? {
                if volume_labels.get(labels::KEEP).map(String::as_str) != Some("true") {
                    self.remove_volume(&name).await?;
                }
            }
        }
        Ok(())
    }
}
