//! The settings as a user types them: parsing, defaults, and what `/environment` shows.

use std::collections::{BTreeMap, BTreeSet};

use clap::Parser;

use super::*;

/// The settings as the command line reads them (the client's commands aside: a
/// subcommand shows flags before it are still read).
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Health,
}

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

/// Every optional setting set, every choice away from its default.
fn everything_set() -> Config {
    Config {
        broker_username: Some("admin".into()),
        broker_password: Some(Secret("hunter2".into())),
        store: Some(StoreKind::Mongodb),
        mongo_host: Some("db".into()),
        mongo_uri: Some(Secret("mongodb://admin:s3cr3t@db:27017/?tls=true".into())),
        advertise_host: Some("esm.example".into()),
        engines_file: Some("/etc/esm/engines.yaml".into()),
        engine_credentials_dir: Some("/etc/esm/engines".into()),
        host_port_range: Some(PortRange { low: 30000, high: 30999 }),
        liveness_drop_threshold: Some(3600),
        liveness_url: Some("https://esm.example:8443".into()),
        max_subscribers: Some(64),
        event_webhook_url: Some(Secret("https://hook:t0ken@hooks.example/esm?key=k3y".into())),
        ..Config::default()
    }
}

#[test]
fn defaults_are_the_declared_ones_and_never_read_the_environment() {
    let d = Config::default();
    assert_eq!((d.ip, d.port, d.check_port), (IpAddr::from([0, 0, 0, 0]), 8080, 5000));
    assert_eq!(d.data_dir, PathBuf::from("./esm-data"));
    assert_eq!((d.mongo_port, d.mongo_db.as_str(), d.name.as_str()), (27017, "esm", "esm"));
    assert_eq!(d.backends, [BackendKind::Dummy, BackendKind::DockerCompose]);
    assert_eq!((d.docker_pull, d.log_format), (PullPolicy::Missing, LogFormat::Text));
    assert_eq!((d.manifest_max_bytes, d.operation_lease, d.docker_allow_external), (262_144, 30, false));
    assert!(d.broker_password.is_none() && d.store.is_none() && d.host_port_range.is_none());
    // Whatever ESM_* the test's environment holds: Default parses with no variable.
    assert!(Config::declared_without_environment().get_arguments().all(|arg| arg.get_env().is_none()));
}

#[test]
fn every_setting_has_a_variable_and_is_shown() {
    let shown = everything_set().redacted();
    let shown = shown.as_object().expect("an object");
    let declared: Vec<_> = Config::declared().get_arguments().cloned().collect();
    for arg in &declared {
        let variable =
            arg.get_env().and_then(|v| v.to_str()).unwrap_or_else(|| panic!("{} has no variable", arg.get_id()));
        assert!(variable.starts_with("ESM_"), "{variable}");
        assert!(shown.get(variable).is_some_and(|v| !v.is_null()), "{variable} is not shown: {shown:?}");
    }
    assert_eq!(shown.len(), declared.len(), "one value per setting");
}

/// The settings table in docs/operations.md: one row per variable, with its flag and
/// (where clap has one) its default, and no row for a setting that does not exist.
#[test]
fn the_settings_table_documents_every_setting() {
    let rows: BTreeMap<&str, (&str, &str)> = include_str!("../../docs/operations.md")
        .lines()
        .filter(|line| line.starts_with("| `ESM_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (cells[1], (cells[2], cells[3]))
        })
        .collect();
    let declared = Config::declared();
    let variables: BTreeSet<&str> = declared.get_arguments().filter_map(|arg| arg.get_env()?.to_str()).collect();
    assert_eq!(rows.keys().copied().collect::<BTreeSet<_>>(), variables, "settings table rows vs settings");
    for arg in declared.get_arguments() {
        let variable = arg.get_env().and_then(|v| v.to_str()).unwrap_or_default();
        let (flag, default) = rows[variable];
        assert_eq!(Some(flag.trim_start_matches("--")), arg.get_long(), "{variable}'s flag");
        if let [value] = arg.get_default_values() {
            let value = value.to_string_lossy();
            assert!(default.starts_with(value.as_ref()), "{variable}: the table says {default:?}, clap {value:?}");
        }
    }
}

#[test]
fn secrets_never_show() {
    let config = everything_set();
    for shown in [format!("{config:?}"), config.redacted().to_string()] {
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("s3cr3t")
                && !shown.contains("t0ken")
                && !shown.contains("k3y"),
            "{shown}"
        );
    }
    assert_eq!(config.redacted()["ESM_BROKER_PASSWORD"], REDACTED);
    assert_eq!(config.redacted()["ESM_MONGO_URI"], "mongodb://db:27017");
    assert_eq!(config.redacted()["ESM_EVENT_WEBHOOK_URL"], "https://hooks.example");
    let host_with_credentials = Config { mongo_host: Some("admin:hunter2@db".into()), ..Config::default() };
    let shown = host_with_credentials.redacted();
    assert_eq!(shown["ESM_MONGO_HOST"], "db", "{shown}");
    assert!(!shown.to_string().contains("hunter2"), "{shown}");
}

/// A setting that hides its value (`hide_env_values`) is never shown as typed: either
/// its own redaction or nothing.
#[test]
fn a_hidden_setting_is_never_shown_as_typed() {
    let value = "https://u:p4ss@h.example/s3cr3t?k3y";
    let declared = Config::declared();
    let hidden: Vec<&str> = declared
        .get_arguments()
        .filter(|arg| arg.is_hide_env_values_set())
        .filter_map(|arg| arg.get_env()?.to_str())
        .collect();
    assert!(hidden.contains(&"ESM_BROKER_PASSWORD") && hidden.contains(&"ESM_EVENT_WEBHOOK_URL"), "{hidden:?}");
    for name in hidden {
        let shown = crate::config::shown_variable(name, value);
        assert!(!shown.contains("p4ss") && !shown.contains("s3cr3t") && !shown.contains("k3y"), "{name}: {shown}");
    }
    assert_eq!(crate::config::shown_variable("ESM_NOT_A_SETTING", "8080"), REDACTED);
}

#[test]
fn the_catalog_limits_default_to_the_domain_defaults() {
    assert_eq!(Config::default().catalog_limits(), crate::domain::catalog::CatalogLimits::default());
}

#[test]
fn a_deployment_name_must_make_engine_names() {
    for name in ["esm", "prod-2", "team_a.esm", &"x".repeat(63)] {
        assert!(Cli::try_parse_from(["esm", &format!("--name={name}")]).is_ok(), "{name}");
    }
    for name in ["", "-esm", "my esm", "esm/prod", "ésm", &"x".repeat(64)] {
        let err = Cli::try_parse_from(["esm", &format!("--name={name}")]).expect_err(name).to_string();
        assert!(err.contains("at most 63"), "{name}: {err}");
    }
}
