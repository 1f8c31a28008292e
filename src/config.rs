//! Settings: each a flag and an environment variable (flag wins, then env, then default),
//! read once at start into a typed [`Config`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::docker::PullPolicy;
use crate::yaml;
use serde_json::{Value, json};

/// The `esm` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "esm",
    version,
    about = "A service broker (Open Service Broker API 2.12-2.17) with the ElasTest extensions"
)]
pub struct Cli {
    /// The daemon's settings.
    #[command(flatten)]
    pub config: Config,
    /// Something else to do than serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `esm <command>`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Ask the esm on this machine's check port for /health: exit 0 when healthy.
    Health,
}

/// The daemon's settings. The environment variable names are the original ESM's where
/// it had one, because deployments and scripts depend on them.
#[derive(Debug, Clone, Args)]
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
    #[arg(long = "broker-username", env = "ESM_BROKER_USERNAME")]
    pub broker_username: Option<String>,
    /// With the username: every /v2 route requires HTTP basic auth.
    #[arg(long = "broker-password", env = "ESM_BROKER_PASSWORD", hide_env_values = true)]
    pub broker_password: Option<Secret>,
    /// Where durable stores keep their files.
    #[arg(long = "data-dir", env = "ESM_DATA_DIR", default_value = "./esm-data")]
    pub data_dir: PathBuf,
    /// Which store keeps esm's state; by default `mongodb` when a MongoDB host or URI is
    /// set, otherwise `embedded`.
    #[arg(long = "store", env = "ESM_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// MongoDB host (the original's setting); selects the MongoDB store.
    #[arg(long = "mongo-host", env = "ESM_MONGO_HOST")]
    pub mongo_host: Option<String>,
    /// MongoDB port, with `ESM_MONGO_HOST`.
    #[arg(long = "mongo-port", env = "ESM_MONGO_PORT", default_value_t = 27017)]
    pub mongo_port: u16,
    /// A full MongoDB connection string (auth, replica set, TLS options); wins over the host.
    #[arg(long = "mongo-uri", env = "ESM_MONGO_URI", hide_env_values = true)]
    pub mongo_uri: Option<Secret>,
    /// The MongoDB database esm uses.
    #[arg(long = "mongo-db", env = "ESM_MONGO_DB", default_value = "esm")]
    pub mongo_db: String,
    /// Log line format (the filter is RUST_LOG).
    #[arg(long = "log-format", env = "ESM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds a platform should wait between polls of an operation (Retry-After).
    #[arg(long = "retry-after", env = "ESM_RETRY_AFTER", default_value_t = 2)]
    pub retry_after: u64,
    /// Seconds an esm replica holds a running operation without renewing it; another
    /// replica takes over the operations of one that died after this long.
    #[arg(long = "operation-lease", env = "ESM_OPERATION_LEASE", value_parser = positive(), default_value_t = 30)]
    pub operation_lease: u64,
    /// The name of this esm deployment: what it creates on a container engine is
    /// labelled `esm.owner=<name>`, and reconciliation touches only that. esm
    /// deployments (not replicas) sharing an engine need different names.
    #[arg(long = "name", env = "ESM_NAME", default_value = "esm")]
    pub name: String,
    /// The backends to run, by the manifest types they deploy.
    #[arg(
        long = "backends",
        env = "ESM_BACKENDS",
        value_enum,
        value_delimiter = ',',
        default_value = "dummy,docker-compose"
    )]
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
    /// Milliseconds reading and checking one manifest may take.
    #[arg(long = "manifest-parse-timeout", env = "ESM_MANIFEST_PARSE_TIMEOUT", value_parser = positive(), default_value_t = 2000)]
    pub manifest_parse_timeout: u64,
    /// Seconds a Docker deployment may take to be running (and healthy).
    #[arg(long = "docker-ready-timeout", env = "ESM_DOCKER_READY_TIMEOUT", value_parser = positive(), default_value_t = 120)]
    pub docker_ready_timeout: u64,
    /// Seconds between reconciliations of what the engines run with what esm knows.
    #[arg(long = "reconcile-interval", env = "ESM_RECONCILE_INTERVAL", value_parser = positive(), default_value_t = 60)]
    pub reconcile_interval: u64,
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

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A secret setting: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// What a redacted value shows.
pub const REDACTED: &str = "********";

/// Intervals, timeouts and leases: `0` would mean "never" or "at once" and is refused
/// at start rather than silently changed.
fn positive() -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// Limits and counts: at least one.
fn positive_count() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ip: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            check_ip: IpAddr::from([0, 0, 0, 0]),
            check_port: 5000,
            broker_username: None,
            broker_password: None,
            data_dir: PathBuf::from("./esm-data"),
            store: None,
            mongo_host: None,
            mongo_port: 27017,
            mongo_uri: None,
            mongo_db: "esm".to_owned(),
            log_format: LogFormat::Text,
            retry_after: 2,
            operation_lease: 30,
            name: "esm".to_owned(),
            backends: vec![BackendKind::Dummy, BackendKind::DockerCompose],
            publish_address: IpAddr::from([0, 0, 0, 0]),
            advertise_host: None,
            docker_pull: PullPolicy::Missing,
            docker_allow_bind_mounts: false,
            docker_allow_privileged: false,
            docker_allow_external: false,
            host_port_range: None,
            manifest_max_bytes: 262_144,
            manifest_max_depth: 64,
            manifest_max_nodes: 100_000,
            manifest_max_services: 100,
            manifest_parse_timeout: 2000,
            docker_ready_timeout: 120,
            reconcile_interval: 60,
            header_read_timeout: 10,
            idle_timeout: 60,
            body_read_timeout: 30,
            max_connections: 1024,
        }
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

    /// The effective settings for `/environment`, each shown as a user would type it
    /// (`dummy,docker-compose`, `30000-30999`), secrets as `********`.
    pub fn redacted(&self) -> Value {
        json!({
            "ESM_IP": self.ip.to_string(),
            "ESM_PORT": self.port,
            "ESM_CHECK_IP": self.check_ip.to_string(),
            "ESM_CHECK_PORT": self.check_port,
            "ESM_BROKER_USERNAME": self.broker_username,
            "ESM_BROKER_PASSWORD": self.broker_password.as_ref().map(|_| REDACTED),
            "ESM_DATA_DIR": self.data_dir.display().to_string(),
            "ESM_STORE": typed(&self.store_kind()),
            "ESM_MONGO_HOST": self.mongo_host,
            "ESM_MONGO_PORT": self.mongo_port,
            "ESM_MONGO_URI": self.mongo_uri.as_ref().map(|u| redact_uri(u.expose())),
            "ESM_MONGO_DB": self.mongo_db,
            "ESM_LOG_FORMAT": typed(&self.log_format),
            "ESM_RETRY_AFTER": self.retry_after,
            "ESM_OPERATION_LEASE": self.operation_lease,
            "ESM_NAME": self.name,
            "ESM_BACKENDS": self.backends.iter().map(typed).collect::<Vec<_>>().join(","),
            "ESM_PUBLISH_ADDRESS": self.publish_address.to_string(),
            "ESM_ADVERTISE_HOST": self.advertise_host,
            "ESM_DOCKER_PULL": typed(&self.docker_pull),
            "ESM_DOCKER_ALLOW_BIND_MOUNTS": self.docker_allow_bind_mounts,
            "ESM_DOCKER_ALLOW_PRIVILEGED": self.docker_allow_privileged,
            "ESM_DOCKER_ALLOW_EXTERNAL": self.docker_allow_external,
            "ESM_HOST_PORT_RANGE": self.host_port_range.map(|r| r.to_string()),
            "ESM_MANIFEST_MAX_BYTES": self.manifest_max_bytes,
            "ESM_MANIFEST_MAX_DEPTH": self.manifest_max_depth,
            "ESM_MANIFEST_MAX_NODES": self.manifest_max_nodes,
            "ESM_MANIFEST_MAX_SERVICES": self.manifest_max_services,
            "ESM_MANIFEST_PARSE_TIMEOUT": self.manifest_parse_timeout,
            "ESM_DOCKER_READY_TIMEOUT": self.docker_ready_timeout,
            "ESM_RECONCILE_INTERVAL": self.reconcile_interval,
            "ESM_HEADER_READ_TIMEOUT": self.header_read_timeout,
            "ESM_IDLE_TIMEOUT": self.idle_timeout,
            "ESM_BODY_READ_TIMEOUT": self.body_read_timeout,
            "ESM_MAX_CONNECTIONS": self.max_connections,
        })
    }
}

/// A choice as it is typed in a flag or variable (`docker-compose`, not `DockerCompose`).
fn typed<T: ValueEnum>(value: &T) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

/// Hides credentials in a setting's value: the whole value when the name says it is a
/// secret, the `user:password@` part of a URI otherwise.
pub fn redact_value(name: &str, value: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "APIKEY", "API_KEY", "PRIVATE"]
        .iter()
        .any(|word| upper.contains(word))
    {
        return REDACTED.to_owned();
    }
    redact_uri(value)
}

/// `scheme://user:pass@host/...` → `scheme://********@host/...`. Everything up to
/// the last `@` is hidden, so a password with a `/`, `@` or `?` in it (unescaped, as
/// people type them) is hidden too; at worst more than the credentials is.
pub fn redact_uri(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_owned();
    };
    let rest = &value[scheme_end + 3..];
    match rest.rfind('@') {
        Some(at) => format!("{}://{REDACTED}{}", &value[..scheme_end], &rest[at..]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_defaults() {
        let cli = Cli::parse_from(["esm", "--port", "9999", "--check-port", "8888", "--log-format", "json"]);
        assert_eq!(cli.config.port, 9999);
        assert_eq!(cli.config.check_port, 8888);
        assert_eq!(cli.config.log_format, LogFormat::Json);
    }

    #[test]
    fn zero_intervals_and_limits_are_refused_at_start() {
        for flag in
            ["--operation-lease", "--reconcile-interval", "--idle-timeout", "--max-connections", "--manifest-max-bytes"]
        {
            let err = Cli::try_parse_from(["esm", flag, "0"]).expect_err(flag).to_string();
            assert!(err.contains(flag) && err.contains("0 is not in 1.."), "{flag}: {err}");
        }
        assert!(Cli::try_parse_from(["esm", "--operation-lease", "1"]).is_ok());
    }

    #[test]
    fn boolean_flags_need_no_value() {
        let parse = |args: &[&str]| {
            let c = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).config;
            (c.docker_allow_bind_mounts, c.docker_allow_privileged, c.docker_allow_external)
        };
        assert_eq!(parse(&["esm"]), (false, false, false));
        assert_eq!(parse(&["esm", "--docker-allow-bind-mounts"]), (true, false, false));
        assert_eq!(
            parse(&["esm", "--docker-allow-privileged", "--docker-allow-external", "--port", "9000"]),
            (false, true, true)
        );
        // The explicit forms still work.
        assert_eq!(parse(&["esm", "--docker-allow-bind-mounts=false"]), (false, false, false));
        assert_eq!(parse(&["esm", "--docker-allow-bind-mounts", "true"]), (true, false, false));
        assert_eq!(parse(&["esm", "--docker-allow-external=true"]), (false, false, true));
        assert!(Cli::try_parse_from(["esm", "--docker-allow-external=maybe"]).is_err());
        // A bare flag before a subcommand needs `=true`: a value after it is read as its value.
        assert!(Cli::try_parse_from(["esm", "--docker-allow-external=true", "health"]).is_ok());
    }

    #[test]
    fn connection_limits_are_settings() {
        let cli = Cli::parse_from([
            "esm",
            "--header-read-timeout",
            "3",
            "--idle-timeout",
            "4",
            "--body-read-timeout",
            "5",
            "--max-connections",
            "6",
        ]);
        let c = &cli.config;
        assert_eq!((c.header_read_timeout, c.idle_timeout, c.body_read_timeout, c.max_connections), (3, 4, 5, 6));
        let d = Config::default();
        assert_eq!((d.header_read_timeout, d.idle_timeout, d.body_read_timeout, d.max_connections), (10, 60, 30, 1024));
        assert_eq!(d.redacted()["ESM_MAX_CONNECTIONS"], 1024);
    }

    #[test]
    fn environment_shows_every_setting_as_typed() {
        let shown = Config::default().redacted();
        assert_eq!(shown["ESM_BACKENDS"], "dummy,docker-compose");
        assert_eq!(shown["ESM_STORE"], "embedded");
        assert_eq!(shown["ESM_DOCKER_PULL"], "missing");
        let mut config = Config {
            backends: vec![BackendKind::DockerSwarm, BackendKind::Dummy],
            store: Some(StoreKind::Mongodb),
            log_format: LogFormat::Json,
            docker_pull: PullPolicy::Always,
            host_port_range: Some(PortRange { low: 30000, high: 30999 }),
            docker_allow_external: true,
            advertise_host: Some("esm.example".into()),
            mongo_uri: Some(Secret("mongodb://db:27017/?directConnection=true".into())),
            ..Config::default()
        };
        config.mongo_host = Some("db".into());
        let shown = config.redacted();
        // Every value shown, typed back as its flag, gives the same setting.
        for (name, value) in shown.as_object().expect("an object") {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let flag = format!("--{}", name.trim_start_matches("ESM_").to_lowercase().replace('_', "-"));
            let parsed = Cli::try_parse_from(["esm", &format!("{flag}={text}")])
                .unwrap_or_else(|e| panic!("{name}={text} does not parse back: {e}"));
            assert_eq!(parsed.config.redacted()[name.as_str()], *value, "{name}");
        }
    }

    #[test]
    fn the_store_is_embedded_unless_mongodb_is_configured() {
        let mut config = Config::default();
        assert_eq!(config.store_kind(), StoreKind::Embedded);
        config.mongo_host = Some("mongo".into());
        assert_eq!(config.store_kind(), StoreKind::Mongodb);
        assert_eq!(config.mongo_uri().as_deref(), Some("mongodb://mongo:27017"));
        config.mongo_uri = Some(Secret("mongodb://u:p@a,b/?replicaSet=rs".into()));
        assert_eq!(config.mongo_uri().as_deref(), Some("mongodb://u:p@a,b/?replicaSet=rs"));
        assert!(!config.redacted().to_string().contains("u:p"));
        config.store = Some(StoreKind::Memory);
        assert_eq!(config.store_kind(), StoreKind::Memory);
        let empty_host = Config { mongo_host: Some(String::new()), ..Config::default() };
        assert_eq!(empty_host.store_kind(), StoreKind::Embedded);
    }

    #[test]
    fn credentials_need_both_halves() {
        let mut config = Config { broker_username: Some("u".into()), ..Config::default() };
        assert!(config.credentials().is_none());
        config.broker_password = Some(Secret("p".into()));
        assert_eq!(config.credentials(), Some(("u", "p")));
        let empty = Config {
            broker_username: Some(String::new()),
            broker_password: Some(Secret(String::new())),
            ..Config::default()
        };
        assert!(empty.credentials().is_none(), "empty values mean no auth");
    }

    #[test]
    fn secrets_never_show() {
        let config = Config { broker_password: Some(Secret("hunter2".into())), ..Config::default() };
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!config.redacted().to_string().contains("hunter2"));
        assert_eq!(redact_value("ESM_MONGO_PASSWORD", "x"), REDACTED);
        assert_eq!(
            redact_value("ESM_MONGO_URI", "mongodb://admin:pw@db:27017/esm?tls=true"),
            "mongodb://********@db:27017/esm?tls=true"
        );
        // Passwords with unescaped '/' or '@' stay hidden too.
        for uri in ["mongodb://admin:pa/ss@db/esm", "mongodb://admin:p@ss@db", "mongodb://admin:p?x#@db"] {
            let shown = redact_uri(uri);
            assert!(!shown.contains("pa/ss") && !shown.contains("p@ss") && !shown.contains("p?x"), "{shown}");
            assert!(shown.ends_with("@db/esm") || shown.ends_with("@db"), "{shown}");
        }
    }
}
