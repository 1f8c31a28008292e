//! Settings: each a flag and an environment variable (flag wins, then env, then default),
//! read once at start into a typed [`Config`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, FromArgMatches, ValueEnum};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::domain::catalog::CatalogLimits;
use crate::manifest::Quantity;
use crate::manifest::settings::{self, Exposure, PullPolicy};
use crate::yaml;

mod secret;
pub use secret::{REDACTED, Secret, host_shown, redact_uri, redact_userinfo, url_origin};

/// The daemon's settings. The environment variable names are the original ESM's where
/// it had one, because deployments and scripts depend on them.
///
/// Each setting is declared here once: its flag, variable and default come from the
/// clap attributes (which [`Default`] parses too), and `/environment` shows it through
/// `Serialize` under its variable's name (see [`Config::redacted`]).
#[derive(Debug, Clone, Args, Serialize)]
pub struct Config {
    /// Bind address of the OSB API.
    #[arg(long = "ip", env = "ESM_IP", default_value = "0.0.0.0")]
    pub ip: IpAddr,
    /// Port of the OSB API.
    #[arg(long = "port", env = "ESM_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Bind address of the operator port (/health, /environment).
    #[arg(long = "check-ip", env = "ESM_CHECK_IP", default_value = "0.0.0.0")]
    pub check_ip: IpAddr,
    /// Port of the operator port.
    #[arg(long = "check-port", env = "ESM_CHECK_PORT", default_value_t = 5000)]
    pub check_port: u16,
    /// With the password: every /v2 route requires HTTP basic auth.
    #[arg(long = "broker-username", env = "ESM_BROKER_USERNAME", global = true)]
    pub broker_username: Option<String>,
    /// With the username: every /v2 route requires HTTP basic auth.
    #[arg(long = "broker-password", env = "ESM_BROKER_PASSWORD", hide_env_values = true, global = true)]
    pub broker_password: Option<Secret>,
    /// Where durable stores keep their files.
    #[arg(long = "data-dir", env = "ESM_DATA_DIR", default_value = "./esm-data")]
    #[serde(serialize_with = "lossy_path")]
    pub data_dir: PathBuf,
    /// Which store keeps esm's state; by default `mongodb` when a MongoDB host or URI is
    /// set, otherwise `embedded`.
    #[arg(long = "store", env = "ESM_STORE", value_enum)]
    #[serde(skip)] // shown as the store esm chose (see `redacted`)
    pub store: Option<StoreKind>,
    /// MongoDB host (the original's setting); selects the MongoDB store.
    #[arg(long = "mongo-host", env = "ESM_MONGO_HOST")]
    #[serde(serialize_with = "host_without_credentials")]
    pub mongo_host: Option<String>,
    /// MongoDB port, with `ESM_MONGO_HOST`.
    #[arg(long = "mongo-port", env = "ESM_MONGO_PORT", default_value_t = 27017)]
    pub mongo_port: u16,
    /// A full MongoDB connection string (auth, replica set, TLS options); wins over the host.
    #[arg(long = "mongo-uri", env = "ESM_MONGO_URI", hide_env_values = true)]
    #[serde(serialize_with = "url_without_secrets")]
    pub mongo_uri: Option<Secret>,
    /// The MongoDB database esm uses.
    #[arg(long = "mongo-db", env = "ESM_MONGO_DB", default_value = "esm")]
    pub mongo_db: String,
    /// Log line format (the filter is RUST_LOG).
    #[arg(long = "log-format", env = "ESM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    #[serde(serialize_with = "as_typed")]
    pub log_format: LogFormat,
    /// Seconds a platform should wait between polls of an operation (Retry-After).
    #[arg(long = "retry-after", env = "ESM_RETRY_AFTER", default_value_t = 2)]
    pub retry_after: u64,
    /// Seconds an esm replica holds a running operation without renewing it; another
    /// replica takes over the operations of one that died after this long.
    #[arg(long = "operation-lease", env = "ESM_OPERATION_LEASE", value_parser = positive(), default_value_t = 30)]
    pub operation_lease: u64,
    /// Seconds a stop (SIGTERM) may take: in-flight requests get the first half,
    /// stopping the running operations (their leases handed back) and writing the
    /// queued events most of the rest, closing the store the last tenth. What is not
    /// done by then is logged and left, never waited for.
    #[arg(long = "shutdown-timeout", env = "ESM_SHUTDOWN_TIMEOUT", value_parser = positive(), default_value_t = 20)]
    pub shutdown_timeout: u64,
    /// The name of this esm deployment: what it creates on a container engine is
    /// named from it and labelled `esm.owner=<name>`, and reconciliation touches only
    /// that. esm deployments (not replicas) sharing an engine need different names.
    /// Letters, digits, `_`, `.` and `-`, starting with a letter or digit, at most 63:
    /// what engine names and Kubernetes labels can carry.
    #[arg(long = "name", env = "ESM_NAME", value_parser = deployment_name, default_value = "esm")]
    pub name: String,
    /// The backends to run, by the manifest types they deploy.
    #[arg(
        long = "backends",
        env = "ESM_BACKENDS",
        value_enum,
        value_delimiter = ',',
        default_value = "dummy,docker-compose"
    )]
    #[serde(serialize_with = "as_typed_list")]
    pub backends: Vec<BackendKind>,
    /// The host address Docker backends publish container ports on.
    #[arg(long = "publish-address", env = "ESM_PUBLISH_ADDRESS", default_value = "0.0.0.0")]
    pub publish_address: IpAddr,
    /// The host name bindings hand out for published ports (default: the publish
    /// address, or this machine's host name when that is 0.0.0.0).
    #[arg(long = "advertise-host", env = "ESM_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// When Docker backends pull images: missing, never, always.
    #[arg(long = "docker-pull", env = "ESM_DOCKER_PULL", value_enum, default_value_t = PullPolicy::Missing)]
    #[serde(serialize_with = "as_typed")]
    pub docker_pull: PullPolicy,
    /// Allow manifests to bind-mount host paths.
    #[arg(long = "docker-allow-bind-mounts", env = "ESM_DOCKER_ALLOW_BIND_MOUNTS", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub docker_allow_bind_mounts: bool,
    /// Allow manifests privileged, cap_add, pid: host, network_mode: host and devices.
    #[arg(long = "docker-allow-privileged", env = "ESM_DOCKER_ALLOW_PRIVILEGED", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub docker_allow_privileged: bool,
    /// Allow manifests `external: true` networks and volumes (never another esm
    /// instance's, whatever this says).
    #[arg(long = "docker-allow-external", env = "ESM_DOCKER_ALLOW_EXTERNAL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub docker_allow_external: bool,
    /// Host ports manifests may name (`30000-30999`); unset: none, Docker picks an
    /// ephemeral host port for every published container port.
    #[arg(long = "host-port-range", env = "ESM_HOST_PORT_RANGE")]
    pub host_port_range: Option<PortRange>,
    /// Largest manifest_content, in bytes.
    #[arg(long = "manifest-max-bytes", env = "ESM_MANIFEST_MAX_BYTES", value_parser = positive_count(), default_value_t = 262_144)]
    pub manifest_max_bytes: usize,
    /// Deepest nesting of a manifest's YAML.
    #[arg(long = "manifest-max-depth", env = "ESM_MANIFEST_MAX_DEPTH", value_parser = positive_count(), default_value_t = 64)]
    pub manifest_max_depth: usize,
    /// Most YAML nodes in a manifest, counting what aliases expand to.
    #[arg(long = "manifest-max-nodes", env = "ESM_MANIFEST_MAX_NODES", value_parser = positive_count(), default_value_t = 100_000)]
    pub manifest_max_nodes: usize,
    /// Most services in one compose manifest.
    #[arg(long = "manifest-max-services", env = "ESM_MANIFEST_MAX_SERVICES", value_parser = positive_count(), default_value_t = 100)]
    pub manifest_max_services: usize,
    /// Most services in the catalog.
    #[arg(long = "catalog-max-services", env = "ESM_CATALOG_MAX_SERVICES", value_parser = positive_count(), default_value_t = 1000)]
    pub catalog_max_services: usize,
    /// Most plans of one service.
    #[arg(long = "catalog-max-plans", env = "ESM_CATALOG_MAX_PLANS", value_parser = positive_count(), default_value_t = 100)]
    pub catalog_max_plans: usize,
    /// Most tags of one service.
    #[arg(long = "catalog-max-tags", env = "ESM_CATALOG_MAX_TAGS", value_parser = positive_count(), default_value_t = 64)]
    pub catalog_max_tags: usize,
    /// Most registered manifests.
    #[arg(long = "catalog-max-manifests", env = "ESM_CATALOG_MAX_MANIFESTS", value_parser = positive_count(), default_value_t = 10_000)]
    pub catalog_max_manifests: usize,
    /// Most bytes of the registry record (every service and manifest entry).
    #[arg(long = "catalog-max-bytes", env = "ESM_CATALOG_MAX_BYTES", value_parser = positive_count(), default_value_t = 16 * 1024 * 1024)]
    pub catalog_max_bytes: usize,
    /// Milliseconds reading and checking one manifest may take.
    #[arg(long = "manifest-parse-timeout", env = "ESM_MANIFEST_PARSE_TIMEOUT", value_parser = positive(), default_value_t = 2000)]
    pub manifest_parse_timeout: u64,
    /// Seconds a Docker deployment may take to be running (and healthy).
    #[arg(long = "docker-ready-timeout", env = "ESM_DOCKER_READY_TIMEOUT", value_parser = positive(), default_value_t = 120)]
    pub docker_ready_timeout: u64,
    /// Where docker-compose manifests run: docker, or kubernetes (translated).
    #[arg(long = "compose-target", env = "ESM_COMPOSE_TARGET", value_enum, default_value_t = ComposeTarget::Docker)]
    #[serde(serialize_with = "as_typed")]
    pub compose_target: ComposeTarget,
    /// How the Kubernetes backend hands out Service addresses (and the type of the
    /// Services it makes from compose manifests): cluster-ip, node-port, load-balancer.
    #[arg(long = "k8s-service-exposure", env = "ESM_K8S_SERVICE_EXPOSURE", value_enum, default_value_t = Exposure::ClusterIp)]
    #[serde(serialize_with = "as_typed")]
    pub k8s_service_exposure: Exposure,
    /// Seconds a Kubernetes deployment may take to be ready (and a namespace to go).
    #[arg(long = "k8s-ready-timeout", env = "ESM_K8S_READY_TIMEOUT", value_parser = positive(), default_value_t = 300)]
    pub k8s_ready_timeout: u64,
    /// Let Kubernetes manifests choose nodes and rank their pods (`nodeName`,
    /// `nodeSelector`, `affinity`, `tolerations`, `schedulerName`, `priorityClassName`,
    /// `priority`, `preemptionPolicy`).
    #[arg(long = "k8s-allow-scheduling", env = "ESM_K8S_ALLOW_SCHEDULING", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub k8s_allow_scheduling: bool,
    /// Most `replicas` (`parallelism`, `completions`) a Kubernetes workload may ask for.
    #[arg(long = "k8s-max-replicas", env = "ESM_K8S_MAX_REPLICAS", value_parser = positive(), default_value_t = settings::DEFAULT_MAX_REPLICAS)]
    pub k8s_max_replicas: u64,
    /// Most CPU a Kubernetes pod (all its containers) may request or be limited to.
    #[arg(long = "k8s-max-cpu", env = "ESM_K8S_MAX_CPU", default_value = settings::DEFAULT_MAX_CPU)]
    pub k8s_max_cpu: Quantity,
    /// Most memory (hugepages included) a Kubernetes pod may request or be limited to.
    #[arg(long = "k8s-max-memory", env = "ESM_K8S_MAX_MEMORY", default_value = settings::DEFAULT_MAX_MEMORY)]
    pub k8s_max_memory: Quantity,
    /// Most ephemeral storage a Kubernetes pod may request or be limited to.
    #[arg(long = "k8s-max-ephemeral-storage", env = "ESM_K8S_MAX_EPHEMERAL_STORAGE", default_value = settings::DEFAULT_MAX_EPHEMERAL_STORAGE)]
    pub k8s_max_ephemeral_storage: Quantity,
    /// Most storage one Kubernetes claim may request.
    #[arg(long = "k8s-max-storage", env = "ESM_K8S_MAX_STORAGE", default_value = settings::DEFAULT_MAX_STORAGE)]
    pub k8s_max_storage: Quantity,
    /// Most of each extended resource (`nvidia.com/gpu`, ...) a Kubernetes pod may ask
    /// for; 0: none.
    #[arg(long = "k8s-max-extended-resources", env = "ESM_K8S_MAX_EXTENDED_RESOURCES", default_value_t = 0)]
    pub k8s_max_extended_resources: u64,
    /// Seconds (at most a day) between reconciliations of what engines run with what esm knows.
    #[arg(long = "reconcile-interval", env = "ESM_RECONCILE_INTERVAL", value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=86_400), default_value_t = 300)]
    pub reconcile_interval: u64,
    /// Seconds between inspections of every instance's deployment for its liveness (the
    /// backends' event streams tell changes at once; this catches what they missed).
    #[arg(long = "liveness-interval", env = "ESM_LIVENESS_INTERVAL", value_parser = positive(), default_value_t = 10)]
    pub liveness_interval: u64,
    /// Seconds (at most a day) in which a slice of each liveness round looks at every instance.
    #[arg(long = "liveness-sweep-interval", env = "ESM_LIVENESS_SWEEP_INTERVAL", value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=86_400), default_value_t = 600)]
    pub liveness_sweep_interval: u64,
    /// Seconds an instance may go without being seen up before it counts as lost (`down`).
    #[arg(long = "liveness-active-threshold", env = "ESM_LIVENESS_ACTIVE_THRESHOLD", value_parser = positive(), default_value_t = 300)]
    pub liveness_active_threshold: u64,
    /// Seconds after which a lost instance is deprovisioned; unset (the default), lost
    /// instances are kept.
    #[arg(long = "liveness-drop-threshold", env = "ESM_LIVENESS_DROP_THRESHOLD", value_parser = positive())]
    pub liveness_drop_threshold: Option<u64>,
    /// Whether an instance's own reports (a report of `down`, a lapsed TTL) count toward
    /// the drop threshold. Off: only what the backend observed can drop an instance.
    #[arg(long = "liveness-reports-may-drop", env = "ESM_LIVENESS_REPORTS_MAY_DROP", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub liveness_reports_may_drop: bool,
    /// Whether the broker's credentials may report an instance's liveness, as before
    /// reporting tokens (each binding's `esm_liveness_token`) existed.
    #[arg(long = "liveness-broker-reports", env = "ESM_LIVENESS_BROKER_REPORTS", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = true)]
    pub liveness_broker_reports: bool,
    /// The URL instances reach esm's API at (`https://esm.example:8080`): bindings'
    /// credentials then carry `esm_liveness_url`, where to report.
    #[arg(long = "liveness-url", env = "ESM_LIVENESS_URL")]
    pub liveness_url: Option<String>,
    /// A URL every change event is POSTed to (`http://` or `https://`; at least once, in
    /// order, retried with backoff). User info in it is sent as basic auth.
    #[arg(long = "event-webhook-url", env = "ESM_EVENT_WEBHOOK_URL", hide_env_values = true)]
    #[serde(serialize_with = "url_without_secrets")]
    pub event_webhook_url: Option<Secret>,
    /// How many of the latest change events are kept for clients that resume a stream.
    #[arg(long = "event-retention", env = "ESM_EVENT_RETENTION", value_parser = positive_count(), default_value_t = 10_000)]
    pub event_retention: usize,
    /// Seconds a deprovisioned instance or deleted binding is kept (so `last_operation`
    /// can answer for it) before it is purged, and an id provisioned or bound again
    /// still answers for its earlier operations; 604800 is 7 days.
    #[arg(long = "tombstone-retention", env = "ESM_TOMBSTONE_RETENTION", value_parser = positive(), default_value_t = 604_800)]
    pub tombstone_retention: u64,
    /// A YAML or JSON file declaring engines besides the default one (see
    /// `docs/engines.md`), applied at start-up.
    #[arg(long = "engines-file", env = "ESM_ENGINES_FILE")]
    #[serde(serialize_with = "lossy_optional_path")]
    pub engines_file: Option<PathBuf>,
    /// Where engines' kubeconfigs and TLS files are read from, and only there
    /// (default: `<ESM_DATA_DIR>/engines`).
    #[arg(long = "engine-credentials-dir", env = "ESM_ENGINE_CREDENTIALS_DIR")]
    #[serde(serialize_with = "lossy_optional_path")]
    pub engine_credentials_dir: Option<PathBuf>,
    /// Seconds between probes of each engine (each probe has as long to answer).
    #[arg(long = "engine-probe-interval", env = "ESM_ENGINE_PROBE_INTERVAL", value_parser = positive(), default_value_t = 5)]
    pub engine_probe_interval: u64,
    /// Seconds an engine may go without answering before it needs repair.
    #[arg(long = "engine-repair-after", env = "ESM_ENGINE_REPAIR_AFTER", value_parser = positive(), default_value_t = 300)]
    pub engine_repair_after: u64,
    /// Members of one warm pool deployed at once (when a pool fills or is repaired).
    #[arg(long = "pool-deploys", env = "ESM_POOL_DEPLOYS", value_parser = positive_count(), default_value_t = 4)]
    pub pool_deploys: usize,
    /// The most warm pools esm keeps (one per plan); setting one more is refused (422).
    #[arg(long = "max-pools", env = "ESM_MAX_POOLS", value_parser = bounded_count(100_000), default_value_t = 1000)]
    pub max_pools: usize,
    /// Mebibytes of memory the embedded store may use to cache its file (redb's cache;
    /// the rest is read from the file, usually from the page cache).
    #[arg(long = "store-cache-mb", env = "ESM_STORE_CACHE_MB", value_parser = positive_count(), default_value_t = 32)]
    pub store_cache_mb: usize,
    /// Seconds a client has to send a whole request head; on HTTP/1.1 also the longest
    /// wait for the next request on a kept-alive connection.
    #[arg(long = "header-read-timeout", env = "ESM_HEADER_READ_TIMEOUT", value_parser = positive(), default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a connection may go with no request being handled and nothing written
    /// before esm closes it.
    #[arg(long = "idle-timeout", env = "ESM_IDLE_TIMEOUT", value_parser = positive(), default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds a client has to send a whole request body after its head (408 otherwise).
    #[arg(long = "body-read-timeout", env = "ESM_BODY_READ_TIMEOUT", value_parser = positive(), default_value_t = 30)]
    pub body_read_timeout: u64,
    /// Connections served at once on each port; more wait in the kernel's backlog. Lowered
    /// at start when both ports would not fit under the open-file limit.
    #[arg(long = "max-connections", env = "ESM_MAX_CONNECTIONS", value_parser = positive_count(), default_value_t = 1024)]
    pub max_connections: usize,
    /// Event streams (`GET /v2/et/events` as `text/event-stream`) one esm serves at once;
    /// one more is refused with 503 and `Retry-After`. Default: a quarter of
    /// ESM_MAX_CONNECTIONS; always below it, so streams never take every connection.
    #[arg(long = "max-subscribers", env = "ESM_MAX_SUBSCRIBERS", value_parser = positive_count())]
    pub max_subscribers: Option<usize>,
    /// Seconds an event stream lasts; then it ends, telling its client to resume with
    /// `Last-Event-ID`.
    #[arg(long = "event-stream-lifetime", env = "ESM_EVENT_STREAM_LIFETIME", value_parser = positive(), default_value_t = 600)]
    pub event_stream_lifetime: u64,
    /// The most bytes of change events kept (the latest that fit), with ESM_EVENT_RETENTION.
    #[arg(long = "event-retention-bytes", env = "ESM_EVENT_RETENTION_BYTES", value_parser = positive_count(), default_value_t = 33_554_432)]
    pub event_retention_bytes: usize,
    /// The most bytes of events in one JSON page of `GET /v2/et/events` (at least one
    /// event is always given).
    #[arg(long = "event-page-max-bytes", env = "ESM_EVENT_PAGE_MAX_BYTES", value_parser = positive_count(), default_value_t = 1_048_576)]
    pub event_page_max_bytes: usize,
    /// The most bytes of events waiting to be written (while the store is slow or away);
    /// beyond it events are dropped with a warning.
    #[arg(long = "event-queue-max-bytes", env = "ESM_EVENT_QUEUE_MAX_BYTES", value_parser = positive_count(), default_value_t = 16_777_216)]
    pub event_queue_max_bytes: usize,
}

/// Which store keeps esm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In memory: forgotten on exit.
    Memory,
    /// A crash-safe file in `ESM_DATA_DIR`: durable with no external service.
    Embedded,
    /// MongoDB: shared by several esm replicas.
    Mongodb,
}

/// A backend esm can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Deploys nothing; scripted by its manifest (tests, demos).
    Dummy,
    /// docker-compose manifests as containers through the Docker API.
    DockerCompose,
    /// The same manifests as swarm services (the engine must be a swarm manager).
    DockerSwarm,
    /// Kubernetes manifests (and, with `ESM_COMPOSE_TARGET=kubernetes`, compose
    /// manifests) on the cluster kubectl would use.
    Kubernetes,
}

/// Where docker-compose manifests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComposeTarget {
    /// On the Docker engine (the docker-compose backend).
    Docker,
    /// On Kubernetes, translated (the kubernetes backend).
    Kubernetes,
}

/// An inclusive range of host ports, `LOW-HIGH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port.
    pub low: u16,
    /// The last port.
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a port range like 30000-30999");
        let (low, high) = s.trim().split_once('-').ok_or_else(bad)?;
        let low: u16 = low.trim().parse().map_err(|_| bad())?;
        let high: u16 = high.trim().parse().map_err(|_| bad())?;
        if low == 0 || low > high {
            return Err(bad());
        }
        Ok(Self { low, high })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

/// As typed: `30000-30999`.
impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Intervals, timeouts and leases: `0` would mean "never" or "at once" and is refused
/// at start rather than silently changed.
fn positive() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// `ESM_NAME`: part of engine object names and a label value, so bounded to what both
/// take (`backend::docker::project` maps it, with the instance id, to a valid name).
fn deployment_name(name: &str) -> Result<String, String> {
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err("letters, digits, '_', '.' and '-', starting with a letter or digit, at most 63 characters".to_owned())
    }
}

/// Limits and counts: at least one.
fn positive_count() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// Limits and counts: at least one, at most `max`.
fn bounded_count(max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=max)
}

impl Default for Config {
    /// The declared defaults: an empty command line parsed with the environment not
    /// consulted, so a test's config is the same whatever `ESM_*` the shell exports.
    fn default() -> Self {
        let matches = Self::declared_without_environment().get_matches_from(["esm"]);
        Self::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

impl Config {
    /// The OSB API address.
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// The operator port address.
    pub fn ops_addr(&self) -> SocketAddr {
        SocketAddr::new(self.check_ip, self.check_port)
    }

    /// The store esm uses: the explicit choice, else MongoDB when one is configured,
    /// else the embedded store.
    pub fn store_kind(&self) -> StoreKind {
        self.store.unwrap_or(if self.mongo_uri().is_some() { StoreKind::Mongodb } else { StoreKind::Embedded })
    }

    /// The MongoDB connection string, from `ESM_MONGO_URI` or `ESM_MONGO_HOST`/`PORT`.
    pub fn mongo_uri(&self) -> Option<String> {
        let uri = self.mongo_uri.as_ref().map(|u| u.expose().trim()).filter(|u| !u.is_empty());
        let host = self.mongo_host.as_deref().map(str::trim).filter(|h| !h.is_empty());
        match (uri, host) {
            (Some(uri), _) => Some(uri.to_owned()),
            (None, Some(host)) => Some(format!("mongodb://{host}:{}", self.mongo_port)),
            (None, None) => None,
        }
    }

    /// Where engines' credential files are read from.
    pub fn engine_credentials_dir(&self) -> PathBuf {
        self.engine_credentials_dir.clone().unwrap_or_else(|| self.data_dir.join("engines"))
    }

    /// What reading one manifest may cost.
    pub fn manifest_limits(&self) -> yaml::Limits {
        let defaults = yaml::Limits::default();
        yaml::Limits {
            max_bytes: self.manifest_max_bytes,
            max_depth: self.manifest_max_depth,
            max_nodes: self.manifest_max_nodes,
            // Text may expand (through aliases) to 16 times the document, no more.
            max_text_bytes: self.manifest_max_bytes.saturating_mul(16).max(defaults.max_text_bytes),
            time_budget: Duration::from_millis(self.manifest_parse_timeout),
        }
    }

    /// How much the catalog may hold.
    pub fn catalog_limits(&self) -> CatalogLimits {
        CatalogLimits {
            max_services: self.catalog_max_services,
            max_plans: self.catalog_max_plans,
            max_tags: self.catalog_max_tags,
            max_manifests: self.catalog_max_manifests,
            max_registry_bytes: self.catalog_max_bytes,
        }
    }

    /// What the event log may hold and hand out. The subscriber cap is
    /// `ESM_MAX_SUBSCRIBERS`, by default a quarter of the connection cap, and always
    /// below the connection cap (when that is more than one).
    pub fn event_limits(&self) -> crate::events::Limits {
        let connections = self.max_connections.max(1);
        let subscribers = self.max_subscribers.unwrap_or(connections / 4).min(connections - 1).max(1);
        crate::events::Limits {
            retention: self.event_retention,
            retention_bytes: self.event_retention_bytes,
            page_bytes: self.event_page_max_bytes,
            queue_bytes: self.event_queue_max_bytes,
            subscribers,
            stream_lifetime: Duration::from_secs(self.event_stream_lifetime),
        }
    }

    /// The basic-auth credentials, when both halves are set.
    /// An empty value counts as unset (compose files pass `${VAR:-}` through).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match (&self.broker_username, &self.broker_password) {
            (Some(user), Some(pass)) if !user.is_empty() && !pass.expose().is_empty() => {
                Some((user.as_str(), pass.expose()))
            }
            _ => None,
        }
    }

    /// The effective settings for `/environment`, each under its variable's name and
    /// shown as a user would type it (`dummy,docker-compose`, `30000-30999`), numbers and
    /// booleans as JSON's, secrets as `********`.
    pub fn redacted(&self) -> Value {
        let Ok(Value::Object(mut fields)) = serde_json::to_value(self) else {
            unreachable!("a struct serialises to a JSON object, and no field can fail to")
        };
        // The store esm chose, which the MongoDB settings decide when ESM_STORE is unset.
        fields.insert("store".to_owned(), Value::from(typed(&self.store_kind())));
        let shown: Map<String, Value> = Self::declared()
            .get_arguments()
            .filter_map(|arg| {
                let variable = arg.get_env()?.to_str()?.to_owned();
                Some((variable, fields.remove(arg.get_id().as_str()).unwrap_or(Value::Null)))
            })
            .collect();
        Value::Object(shown)
    }

    /// The settings as declared: one clap argument per field, its id the field's name.
    fn declared() -> clap::Command {
        Self::augment_args(clap::Command::new("esm"))
    }

    /// The same with no argument read from the environment.
    fn declared_without_environment() -> clap::Command {
        Self::declared().mut_args(|arg| arg.env(None::<&str>))
    }
}

/// A choice as it is typed in a flag or variable (`docker-compose`, not `DockerCompose`).
fn typed<T: ValueEnum>(value: &T) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

fn as_typed<S: Serializer, T: ValueEnum>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&typed(value))
}

/// A list as a delimited flag value takes it: `dummy,docker-compose`.
fn as_typed_list<S: Serializer, T: ValueEnum>(values: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&values.iter().map(typed).collect::<Vec<_>>().join(","))
}

/// Lossy rather than an error for a path that is not UTF-8.
fn lossy_path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&path.display())
}

fn lossy_optional_path<S: Serializer>(path: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    path.as_ref().map(|p| p.display().to_string()).serialize(serializer)
}

/// A URL setting (MongoDB's connection string, the webhook's URL) as its scheme and
/// hosts: credentials may be in its user info, its path (`/hooks/<token>`) or its
/// options (`?token=`, `tlsCertificateKeyFilePassword=`).
fn url_without_secrets<S: Serializer>(url: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
    url.as_ref().map(|u| url_origin(u.expose())).serialize(serializer)
}

/// A host setting may carry `user:password@` too (it becomes the URI's authority).
fn host_without_credentials<S: Serializer>(host: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    host.as_deref().map(host_shown).serialize(serializer)
}

/// How `/environment` shows one variable of esm's process environment. An allow-list:
/// a setting esm declares is shown as typed, unless it hides its value (a secret, or a
/// URL or host that may carry one), which is shown as its redaction does ([`url_origin`],
/// [`host_shown`]) or not at all; `RUST_LOG` is shown; any other `ESM_*` name is
/// [`REDACTED`], as esm cannot know what it holds.
pub fn shown_variable(name: &str, value: &str) -> String {
    if name == "RUST_LOG" {
        return value.to_owned();
    }
    let declared = Config::declared();
    let Some(arg) = declared.get_arguments().find(|arg| arg.get_env().is_some_and(|v| v == name)) else {
        return REDACTED.to_owned();
    };
    match name {
        "ESM_MONGO_URI" | "ESM_EVENT_WEBHOOK_URL" => url_origin(value),
        "ESM_MONGO_HOST" => host_shown(value),
        _ if arg.is_hide_env_values_set() => REDACTED.to_owned(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests;
