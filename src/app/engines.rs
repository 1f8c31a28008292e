//! How this esm builds the backend of a declared engine (`broker::EngineFactory`): the
//! settings every engine shares (the manifest policy, timeouts, `ESM_NAME`) with what
//! the engine declares (where it is, where it publishes), and its credential files
//! read from `ESM_ENGINE_CREDENTIALS_DIR` only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{docker_settings, kubernetes_settings};
use crate::backend::docker::{ComposeBackend, DockerEngine, SwarmBackend, TlsClient};
use crate::backend::dummy::DummyBackend;
use crate::backend::kubernetes::KubernetesBackend;
use crate::backend::{Backend, BackendError};
use crate::broker::EngineFactory;
use crate::config::Config;
use crate::domain::engine::{EngineKind, EngineSpec};
use crate::metrics::Metrics;
use crate::metrics::backend_calls::MeteredBackend;

/// Builds engines' backends from this esm's settings.
pub struct Builder {
    config: Arc<Config>,
    metrics: Metrics,
}

impl Builder {
    /// A builder under `config`, counting backend failures into `metrics`.
    pub fn new(config: Arc<Config>, metrics: Metrics) -> Self {
        Self { config, metrics }
    }

    /// A credential file's path: inside the credentials directory (the spec checked the
    /// name is relative and has no `..`).
    fn credential(&self, file: &str) -> PathBuf {
        self.config.engine_credentials_dir().join(Path::new(file))
    }

    async fn unmetered(&self, spec: &EngineSpec) -> Result<Arc<dyn Backend>, BackendError> {
        let config = &self.config;
        let mut docker = docker_settings(config);
        if let Some(address) = spec.publish_address {
            docker.publish_address = address;
        }
        // Bindings name the engine's host when nothing else is said: its ports are
        // published there, not on esm's machine.
        let host_of = |host: &str| {
            let rest = host.strip_prefix("tcp://")?;
            Some(rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_owned())
        };
        let endpoint = &spec.endpoint;
        if let Some(host) = spec
            .advertise_host
            .as_deref()
            .map(str::to_owned)
            .or_else(|| endpoint.docker_host.as_deref().and_then(host_of))
        {
            docker.advertise_host = host;
        }
        // Another engine's host ports are its own: esm's range is this host's.
        docker.policy.host_ports = None;
        let engine = || -> Result<DockerEngine, BackendError> {
            let tls = endpoint.tls.as_ref().map(|t| TlsClient {
                ca: self.credential(&t.ca),
                cert: self.credential(&t.cert),
                key: self.credential(&t.key),
            });
            match endpoint.docker_host.as_deref() {
                Some(host) => DockerEngine::at(host, tls.as_ref()),
                None => DockerEngine::connect(),
            }
        };
        Ok(match spec.backend {
            EngineKind::Dummy => {
                Arc::new(DummyBackend::with_limits(config.manifest_limits()).publishing_on(docker.publish_address))
            }
            EngineKind::DockerCompose => Arc::new(ComposeBackend::on(engine()?, docker)),
            EngineKind::DockerSwarm => Arc::new(SwarmBackend::on(engine()?, docker)),
            EngineKind::Kubernetes => {
                let settings = kubernetes_settings(config);
                match &endpoint.kubeconfig {
                    Some(file) => Arc::new(
                        KubernetesBackend::from_kubeconfig(
                            &self.credential(file),
                            endpoint.context.as_deref(),
                            settings,
                        )
                        .await?,
                    ),
                    None => Arc::new(KubernetesBackend::connect(settings).await?),
                }
            }
        })
    }
}

#[async_trait]
impl EngineFactory for Builder {
    async fn build(&self, _name: &str, spec: &EngineSpec) -> Result<Arc<dyn Backend>, BackendError> {
        let backend = self.unmetered(spec).await?;
        Ok(Arc::new(MeteredBackend::new(backend, self.metrics.clone())))
    }
}

/// The largest engines file esm reads.
const FILE_MAX_BYTES: u64 = 1 << 20;

/// The engines file's shape: `engines: {<name>: <spec>}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EnginesFile {
    #[serde(default)]
    engines: std::collections::BTreeMap<crate::domain::bounded::EngineName, EngineSpec>,
}

/// Reads the engines file `path` (YAML or JSON): each engine's name and spec, checked.
pub fn read_file(path: &Path) -> Result<Vec<(crate::domain::bounded::EngineName, EngineSpec)>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("ESM_ENGINES_FILE {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(|e| failed(&e))?.len();
    if size > FILE_MAX_BYTES {
        return Err(failed(&format!("larger than {FILE_MAX_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(&e))?;
    let value = crate::yaml::load(&text, &crate::yaml::Limits::default()).map_err(|e| failed(&e))?;
    let file: EnginesFile = serde_json::from_value(value).map_err(|e| failed(&e))?;
    if file.engines.len() > crate::domain::engine::MAX_ENGINES {
        return Err(failed(&format!("more than {} engines", crate::domain::engine::MAX_ENGINES)));
    }
    for (name, spec) in &file.engines {
        spec.check().map_err(|e| failed(&format!("engine {name}: {e}")))?;
    }
    Ok(file.engines.into_iter().collect())
}
