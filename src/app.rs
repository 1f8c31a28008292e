//! Start-up and shutdown: builds the store, backends and broker from the config, binds
//! both ports (port 0 allowed, for tests), serves until told to stop, then drains.
//!
//! Ready before reachable: the API port is bound at once (so its address is known and
//! taken) but listens only once the start-up takeover scan is done; until then a
//! connection is refused, which a load balancer fails over at once, and no request
//! waits for the scan. The operator port serves from the start, `/health` answering
//! 503 "starting" until the API listens.
//!
//! Bounded stop (`ESM_SHUTDOWN_TIMEOUT`): in-flight requests get the first half, the
//! broker (operations handed back, then the event log) until nine tenths, the store's
//! close the rest. Each phase logs what it leaves undone.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::backend::docker::{ComposeBackend, DockerSettings, SwarmBackend};
use crate::backend::dummy::{DummyBackend, Holds, LivenessScript};
use crate::backend::kubernetes::{KubernetesBackend, KubernetesPolicy, KubernetesSettings};
use crate::backend::{Backend, BackendError, Backends, host_port};
use crate::broker::{Broker, BrokerSettings, FleetSettings, LivenessSettings};
use crate::clock::Clock;
use crate::config::{BackendKind, ComposeTarget, Config, StoreKind, redact_uri};
use crate::domain::bounded::EngineName;
use crate::domain::engine::{EngineSpec, Source};
use crate::domain::liveness::Thresholds;
use crate::events::Webhook;
use crate::manifest::Policy;
use crate::metrics::Metrics;
use crate::metrics::backend_calls::MeteredBackend;
use crate::metrics::store_calls::MeteredStore;
pub use crate::ops::Readiness;

mod engines;
use crate::ops::{self, OpsState};
use crate::serve::{self, Limits};
use crate::store::Store;
use crate::store::breaker::BreakerStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::memory::MemoryStore;
use crate::store::mongo::MongoStore;
use crate::web::middleware::{BasicAuth, collapse_slashes};
use crate::web::{self, AppState};

/// Why esm could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(String),
    /// A backend could not be set up.
    #[error("backend: {0}")]
    Backend(String),
    /// A setting is unusable.
    #[error("{0}")]
    Setting(String),
}

/// The connections the API port queues before esm accepts them (tokio's default).
const BACKLOG: u32 = 1024;

/// A bound, not yet serving esm.
pub struct Server {
    config: Arc<Config>,
    broker: Arc<Broker>,
    /// Bound, not listening: it listens once esm is ready (see the module docs).
    api: TcpSocket,
    ops: TcpListener,
    ready: Readiness,
    /// The dummy backend, when it runs (tests hold its operations and script its
    /// instances' liveness).
    dummy: Option<Arc<DummyBackend>>,
    /// The engines `ESM_ENGINES_FILE` declares, applied once esm has started.
    declared: Vec<(EngineName, EngineSpec)>,
}

impl Server {
    /// Opens the store, sets up the backends and binds both ports.
    pub async fn bind(mut config: Config) -> Result<Self, StartError> {
        // First, before the store opens files: both ports' connections must fit under
        // the open-file limit. The effective cap is what `/environment` shows.
        config.max_connections = serve::fit_connection_cap(config.max_connections, 2);
        config.max_subscribers = Some(config.event_limits().subscribers);
        let event_webhook = config
            .event_webhook_url
            .as_ref()
            .map(|url| Webhook::parse(url.expose()))
            .transpose()
            .map_err(StartError::Setting)?;
        if let Some(range) = config.host_port_range {
            warn_on_ephemeral_overlap((range.low, range.high));
        }
        let metrics = Metrics::new();
        let declared = match &config.engines_file {
            Some(path) => engines::read_file(path).map_err(StartError::Setting)?,
            None => Vec::new(),
        };
        let config = Arc::new(config);
        let fleet = FleetSettings {
            factory: Arc::new(engines::Builder::new(Arc::clone(&config), metrics.clone())),
            probe_interval: Duration::from_secs(config.engine_probe_interval),
            repair_after: Duration::from_secs(config.engine_repair_after),
        };
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(open_store(&config).await?, metrics.clone()));
        let (backends, dummy) = backends(&config, &metrics).await.map_err(|e| StartError::Backend(e.to_string()))?;
        let broker = Broker::new(
            store,
            backends,
            BrokerSettings {
                retry_after_seconds: config.retry_after,
                operation_lease: Duration::from_secs(config.operation_lease),
                tombstone_retention: Duration::from_secs(config.tombstone_retention),
                // The parse has its own budget; this also covers the checks after it.
                manifest_check_timeout: Duration::from_millis(config.manifest_parse_timeout) * 2,
                clock: Clock::system(),
                catalog: config.catalog_limits(),
                events: config.event_limits(),
                event_webhook,
                pool_deploys: config.pool_deploys,
                max_pools: config.max_pools,
                host_ports: config.host_port_range.map(|r| (r.low, r.high)),
                engines: fleet,
                liveness: LivenessSettings {
                    interval: Duration::from_secs(config.liveness_interval),
                    sweep: Duration::from_secs(config.liveness_sweep_interval),
                    thresholds: Thresholds {
                        active_ms: config.liveness_active_threshold.saturating_mul(1000),
                        drop_ms: config.liveness_drop_threshold.map(|s| s.saturating_mul(1000)),
                        reports_may_drop: config.liveness_reports_may_drop,
                    },
                    broker_reports: config.liveness_broker_reports,
                    report_url: config.liveness_url.clone(),
                },
                metrics,
            },
        );
        let api = bind_only(config.api_addr())?;
        let ops = listen(config.ops_addr()).await?;
        Ok(Self { config, broker, api, ops, ready: Readiness::new(), dummy, declared })
    }

    /// Whether esm is ready, for tests that must not call before it is.
    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }

    /// Where a test releases the operations its dummy manifests hold (`hold: [...]`);
    /// `None` without the dummy backend.
    pub fn holds(&self) -> Option<Arc<Holds>> {
        self.dummy.as_ref().map(|dummy| dummy.holds())
    }

    /// Where a test scripts the liveness of dummy instances; `None` without the dummy
    /// backend.
    pub fn dummy_liveness(&self) -> Option<Arc<LivenessScript>> {
        self.dummy.as_ref().map(|dummy| dummy.liveness())
    }

    /// The address the OSB API listens on (once esm is ready).
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr().unwrap_or_else(|_| self.config.api_addr())
    }

    /// The address the operator port listens on.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().unwrap_or_else(|_| self.config.ops_addr())
    }

    /// Serves the operator port at once and the API once the start-up scan is done
    /// (both with the limits of [`serve`]) until `shutdown` completes; then lets
    /// in-flight requests finish and stops the running operations where they are,
    /// handing them back (they stay "in progress" in the store and another replica or
    /// the next start resumes them), all within `ESM_SHUTDOWN_TIMEOUT`.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let grace = Duration::from_secs(self.config.shutdown_timeout);
        let (stop, stopped_at) = (CancellationToken::new(), Arc::new(OnceLock::new()));
        let (trigger, at) = (stop.clone(), Arc::clone(&stopped_at));
        tokio::spawn(async move {
            shutdown.await;
            at.get_or_init(Instant::now);
            trigger.cancel();
        });
        self.broker.spawn_event_log();
        let limits = Limits::from_config(&self.config);
        let listening = ops::Listening { api: self.api_addr(), ops: self.ops_addr() };
        let ops_state =
            OpsState { broker: self.broker.clone(), config: self.config.clone(), listening, ready: self.ready.clone() };
        let ops = serve::serve(self.ops, ops::router(ops_state), limits, stop.clone(), grace / 2);
        let api = async {
            if !start_up(&self.broker, &self.config, &self.declared, &stop).await {
                return Ok(());
            }
            let listener =
                self.api.listen(BACKLOG).map_err(|source| StartError::Bind { addr: listening.api, source })?;
            let auth = self.config.credentials().map(|(user, pass)| BasicAuth::new(user, pass));
            let api_router = web::router(AppState::new(self.broker.clone()).stopping_with(stop.clone()), auth);
            // Path clean-up must run before routing, so it wraps the router from outside.
            let api_service = ServiceBuilder::new().map_request(collapse_slashes).service(api_router);
            self.ready.set();
            let (api_url, ops_url) = (browsable(listening.api), browsable(listening.ops));
            tracing::info!(
                api = %listening.api,
                ops = %listening.ops,
                store = self.broker.store().kind(),
                backends = %self.broker.backends().all().iter().map(|b| b.name()).collect::<Vec<_>>().join(","),
                ui = %format_args!("{api_url}/ui/"),
                dashboard = %format_args!("{api_url}/dashboard"),
                health = %format_args!("{ops_url}/health"),
                "esm is serving"
            );
            serve::serve(listener, api_service, limits, stop.clone(), grace / 2).await;
            Ok(())
        };
        let (served, ()) = tokio::join!(
            async {
                let served = api.await;
                // An API port that cannot listen stops esm (the operator port with it).
                stop.cancel();
                served
            },
            ops
        );
        let stopped_at = stopped_at.get().copied().unwrap_or_else(Instant::now);
        self.broker.shutdown_by(stopped_at + grace * 9 / 10).await;
        if tokio::time::timeout_at(stopped_at + grace, self.broker.store().close()).await.is_err() {
            tracing::warn!("the store had not closed when ESM_SHUTDOWN_TIMEOUT was up; left to the exit");
        }
        tracing::info!("esm stopped");
        served
    }
}

/// Takes over what a previous run (of this or another replica) left in progress, then
/// starts the background rounds; false if esm was told to stop meanwhile. A store that
/// is down now is retried by the sweeper, not fatal.
async fn start_up(
    broker: &Arc<Broker>,
    config: &Config,
    declared: &[(EngineName, EngineSpec)],
    stop: &CancellationToken,
) -> bool {
    tokio::select! {
        () = broker.events().caught_up() => {}
        () = stop.cancelled() => return false,
    }
    let operations = broker.operations();
    tokio::select! {
        scanned = operations.claim_orphaned_operations(true) => match scanned {
            Ok(0) => {}
            Ok(resumed) => tracing::info!(resumed, "took over operations left in progress"),
            Err(e) => tracing::warn!(error = %e, "could not look for operations left in progress"),
        },
        () = stop.cancelled() => return false,
    }
    for (name, spec) in declared {
        // A declaration esm cannot apply now is logged; the rest of the fleet serves.
        if let Err(e) = broker.engines().put(name, spec.clone(), Source::File).await {
            tracing::error!(engine = %name, error = %e, "cannot apply the engines file's declaration");
        }
    }
    broker.operations().spawn_sweeper();
    broker.inventory().spawn_reconciler(Duration::from_secs(config.reconcile_interval));
    broker.tombstones().spawn_purger(Duration::from_secs(config.tombstone_retention));
    broker.registrar().spawn_registry_watch();
    broker.liveness().spawn_liveness();
    broker.pools().spawn_pool_keeper();
    broker.engines().spawn_prober();
    broker.engines().spawn_evacuator();
    true
}

/// The configured backends, each counting its failures into `metrics`, and the
/// dummy when it runs (tests hold its operations and script its liveness).
/// A host port range inside the kernel's ephemeral ports shares them with every
/// outgoing connection on the host: leases then meet ports the kernel handed out.
fn warn_on_ephemeral_overlap(range: (u16, u16)) {
    let Some(ephemeral) = host_port::ephemeral_range() else { return };
    let shared = host_port::overlap(range, ephemeral);
    if shared > 0 {
        tracing::warn!(
            range = %format!("{}-{}", range.0, range.1),
            ephemeral = %format!("{}-{}", ephemeral.0, ephemeral.1),
            shared,
            "ESM_HOST_PORT_RANGE overlaps the kernel's ephemeral port range (net.ipv4.ip_local_port_range): \
             outgoing connections may take its ports; pick a range outside it"
        );
    }
}

async fn backends(config: &Config, metrics: &Metrics) -> Result<(Backends, Option<Arc<DummyBackend>>), BackendError> {
    if config.compose_target == ComposeTarget::Kubernetes {
        // One backend per manifest type: say which, rather than let the list order pick.
        if !config.backends.contains(&BackendKind::Kubernetes) || config.backends.contains(&BackendKind::DockerCompose)
        {
            return Err(BackendError::new(
                "ESM_COMPOSE_TARGET=kubernetes runs docker-compose manifests on the kubernetes backend: \
                 ESM_BACKENDS must list kubernetes and not docker-compose",
            ));
        }
    }
    let (mut backends, mut dummy_backend) = (Backends::new(), None);
    for kind in &config.backends {
        let backend: Arc<dyn Backend> = match kind {
            BackendKind::Dummy => {
                let dummy =
                    Arc::new(DummyBackend::with_limits(config.manifest_limits()).publishing_on(config.publish_address));
                dummy_backend = Some(Arc::clone(&dummy));
                dummy
            }
            BackendKind::DockerCompose => Arc::new(ComposeBackend::new(docker_settings(config))?),
            BackendKind::DockerSwarm => Arc::new(SwarmBackend::new(docker_settings(config))?),
            BackendKind::Kubernetes => Arc::new(KubernetesBackend::connect(kubernetes_settings(config)).await?),
        };
        backends = backends.with(Arc::new(MeteredBackend::new(backend, metrics.clone())));
    }
    Ok((backends, dummy_backend))
}

fn docker_settings(config: &Config) -> DockerSettings {
    let advertise_host = config.advertise_host.clone().unwrap_or_else(|| {
        if config.publish_address.is_unspecified() {
            crate::ops::hostname()
        } else {
            config.publish_address.to_string()
        }
    });
    DockerSettings {
        publish_address: config.publish_address,
        advertise_host,
        pull: config.docker_pull,
        policy: Policy {
            allow_bind_mounts: config.docker_allow_bind_mounts,
            allow_privileged: config.docker_allow_privileged,
            allow_external: config.docker_allow_external,
            host_ports: config.host_port_range.map(|r| (r.low, r.high)),
            max_services: config.manifest_max_services,
            limits: config.manifest_limits(),
        },
        ready_timeout: Duration::from_secs(config.docker_ready_timeout),
        owner: config.name.clone(),
    }
}

fn kubernetes_settings(config: &Config) -> KubernetesSettings {
    KubernetesSettings {
        policy: KubernetesPolicy {
            docker: docker_settings(config).policy,
            allow_scheduling: config.k8s_allow_scheduling,
            max_replicas: config.k8s_max_replicas,
            max_cpu: config.k8s_max_cpu.clone(),
            max_memory: config.k8s_max_memory.clone(),
            max_ephemeral_storage: config.k8s_max_ephemeral_storage.clone(),
            max_storage: config.k8s_max_storage.clone(),
            max_extended_resources: config.k8s_max_extended_resources,
        },
        exposure: config.k8s_service_exposure,
        node_address: config.advertise_host.clone(),
        ready_timeout: Duration::from_secs(config.k8s_ready_timeout),
        owner: config.name.clone(),
        compose: config.compose_target == ComposeTarget::Kubernetes,
    }
}

/// Opens the configured store.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let store: Arc<dyn Store> = match config.store_kind() {
        StoreKind::Memory => {
            tracing::warn!("ESM_STORE=memory: everything esm knows is lost when it stops");
            Arc::new(MemoryStore::new())
        }
        StoreKind::Embedded => {
            let store = EmbeddedStore::open(&config.data_dir, config.store_cache_mb.saturating_mul(1 << 20))
                .map_err(|e| StartError::Store(e.to_string()))?;
            tracing::info!(path = %store.path().display(), "using the embedded store");
            Arc::new(store)
        }
        StoreKind::Mongodb => {
            let uri = config
                .mongo_uri()
                .ok_or_else(|| StartError::Store("ESM_STORE=mongodb needs ESM_MONGO_URI or ESM_MONGO_HOST".into()))?;
            let store =
                MongoStore::connect(&uri, &config.mongo_db).await.map_err(|e| StartError::Store(e.to_string()))?;
            tracing::info!(uri = %redact_uri(&uri), db = %config.mongo_db, "using the MongoDB store");
            // A server that is down answers each call after the driver's selection
            // timeout; the breaker answers at once while it is known to be down.
            Arc::new(BreakerStore::new(Arc::new(store)))
        }
    };
    Ok(store)
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

/// `http://` and `addr` as a browser on this machine reaches it: an address bound to
/// every interface (`0.0.0.0`, `::`) is reached as `localhost`.
fn browsable(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() { format!("http://localhost:{}", addr.port()) } else { format!("http://{addr}") }
}

/// A socket bound to `addr` but not listening: the port is esm's, and a client that
/// connects is refused until it listens. Address reuse as [`TcpListener::bind`] sets it,
/// so a restart binds at once over the last run's closing connections.
fn bind_only(addr: SocketAddr) -> Result<TcpSocket, StartError> {
    let bound = || {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(socket)
    };
    bound().map_err(|source| StartError::Bind { addr, source })
}
