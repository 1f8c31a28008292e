//! Compose's value syntaxes, each parsed into a checked value: ports, mounts,
//! durations, sizes, CPU counts, and the names and image references Docker accepts.
//! Every range is checked here, so a value that passes can be handed to Docker as is
//! (and no arithmetic on a client's number can overflow or panic).

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;

use super::raw::{RawMount, RawPort};
use super::{Mount, MountSource, Port};

/// The longest duration a manifest may give (a health check interval, say).
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Docker refuses containers with less memory than this.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// 1 PiB: more than any host has, far from overflowing.
const MAX_MEMORY: i64 = 1 << 50;
/// A reference before its digest: a 255-character name, `:` and a 128-character tag.
const MAX_REFERENCE: usize = 255 + 1 + 128;
/// CPUs a service may ask for.
const MAX_CPUS: f64 = 1024.0;

/// Names of services, networks, volumes and containers: what Docker accepts in an
/// object name (and what stays a valid DNS label, as they become network aliases).
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$").expect("regex"));
/// One label of a host name (RFC 1123).
static HOST_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$").expect("regex"));
/// An image reference: `[registry[:port]/]path[:tag][@digest]`, Docker's grammar.
static IMAGE: LazyLock<Regex> = LazyLock::new(|| {
    let domain_part = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain = format!(r"(?:{domain_part}(?:\.{domain_part})*(?::[0-9]+)?)");
    let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let tag = r"[\w][\w.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    Regex::new(&format!(r"^(?:{domain}/)?{component}(?:/{component})*(?::{tag})?(?:@{digest})?$")).expect("regex")
});
/// `user`, `uid`, `user:group`, `uid:gid`.
static USER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31})?$").expect("regex")
});

/// A service, network, volume or container name.
pub(super) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if NAME.is_match(name) {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not a valid name (letters, digits, '_', '.', '-'; starting with a letter or digit; at most 63)"
        ))
    }
}

/// A host name: at most 63 characters (the kernel's limit), RFC 1123 labels.
pub(super) fn check_hostname(name: &str) -> Result<(), String> {
    if name.len() <= 63 && name.split('.').all(|label| HOST_LABEL.is_match(label)) {
        Ok(())
    } else {
        Err(format!("hostname {name:?} is not a valid host name (RFC 1123, at most 63 characters)"))
    }
}

/// An image reference Docker can parse.
pub(super) fn check_image(image: &str) -> Result<(), String> {
    let before_digest = image.split('@').next().unwrap_or(image);
    // A first part without '.' or ':' (and not localhost) is a path, not a registry,
    // and paths are lowercase.
    let lowercase_path = match image.split_once('/') {
        Some((first, _)) if !first.contains(['.', ':']) && first != "localhost" => {
            !first.chars().any(|c| c.is_ascii_uppercase())
        }
        _ => true,
    };
    if before_digest.len() <= MAX_REFERENCE && lowercase_path && IMAGE.is_match(image) {
        Ok(())
    } else {
        Err(format!("image {image:?} is not a valid image reference (like registry:5000/team/app:1.2)"))
    }
}

/// A user to run as.
pub(super) fn check_user(user: &str) -> Result<(), String> {
    if USER.is_match(user) { Ok(()) } else { Err(format!("user {user:?} is not a user[:group] name or id")) }
}

/// Text Docker takes as is: no NUL bytes.
pub(super) fn check_text(what: &str, text: &str) -> Result<(), String> {
    if text.contains('\0') { Err(format!("{what} contains a NUL character")) } else { Ok(()) }
}

/// `"8080"` (an ephemeral host port), `"30001:8080"`, `"30001:8080/udp"`, `8080`, or
/// the long form. A host address (`"0.0.0.0:80:80"`, `host_ip`) is refused: esm
/// publishes on `ESM_PUBLISH_ADDRESS`, which the operator chose.
pub(super) fn parse_port(raw: RawPort, host_ports: Option<(u16, u16)>) -> Result<Port, String> {
    let port = match raw {
        RawPort::Long(long) => {
            if let Some(mode) = long.mode.as_deref()
                && !matches!(mode, "host" | "ingress")
            {
                return Err(format!("port mode {mode} is not supported"));
            }
            if long.host_ip.is_some() {
                return Err(no_host_address());
            }
            let published = match long.published {
                None => None,
                Some(Value::Number(n)) => Some(port_number(&n.to_string())?),
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(port_number(&s)?),
                Some(other) => return Err(format!("ports: invalid published {other}")),
            };
            Port {
                target: port_number(&long.target.to_string())?,
                published,
                protocol: protocol(long.protocol.as_deref())?,
                mode: long.mode,
            }
        }
        RawPort::Short(value) => {
            let text = match &value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(format!("ports: invalid entry {other}")),
            };
            let (spec, proto) = match text.split_once('/') {
                Some((spec, proto)) => (spec, Some(proto)),
                None => (text.as_str(), None),
            };
            let (published, target) = match spec.split(':').collect::<Vec<_>>().as_slice() {
                [target] => (None, *target),
                [published, target] => (Some(*published), *target),
                _ => return Err(no_host_address()),
            };
            if target.contains('-') || published.is_some_and(|p| p.contains('-')) {
                return Err(format!("ports: ranges are not supported ({text:?})"));
            }
            Port {
                target: port_number(target)?,
                published: published.filter(|p| !p.is_empty()).map(port_number).transpose()?,
                protocol: protocol(proto)?,
                mode: None,
            }
        }
    };
    if let Some(host) = port.published {
        match host_ports {
            Some((low, high)) if (low..=high).contains(&host) => {}
            Some((low, high)) => {
                return Err(format!("ports: host port {host} is outside ESM_HOST_PORT_RANGE ({low}-{high})"));
            }
            None => {
                return Err(format!(
                    "ports: host port {host} is refused; name only the container port (the operator can allow host ports with ESM_HOST_PORT_RANGE)"
                ));
            }
        }
    }
    Ok(port)
}

fn no_host_address() -> String {
    "ports: a host address is refused; esm publishes on the operator's ESM_PUBLISH_ADDRESS (name the container port, or host:container)".into()
}

fn port_number(text: &str) -> Result<u16, String> {
    text.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("ports: {text:?} is not a port number"))
}

fn protocol(proto: Option<&str>) -> Result<String, String> {
    match proto.unwrap_or("tcp") {
        p @ ("tcp" | "udp") => Ok(p.to_owned()),
        other => Err(format!("ports: protocol {other} is not supported (tcp, udp)")),
    }
}

/// An `expose` entry: `"80"`, `"53/udp"`, `80`.
pub(super) fn parse_expose(value: &Value) -> Result<String, String> {
    let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
    let (port, proto) = match text.split_once('/') {
        Some((port, proto)) => (port, Some(proto)),
        None => (text.as_str(), None),
    };
    port_number(port).map_err(|_| format!("expose: {text:?} is not a port"))?;
    protocol(proto)?;
    Ok(text)
}

/// `"data:/var/lib/x"`, `"data:/var/lib/x:ro"`, `"/var/lib/x"` (anonymous),
/// `"./dir:/x"` or `"/host:/x"` (bind), or the long form.
pub(super) fn parse_mount(raw: RawMount) -> Result<Mount, String> {
    let mount = match raw {
        RawMount::Long(long) => {
            let source = match (long.kind.as_str(), long.source) {
                ("volume", Some(s)) => MountSource::Volume(s),
                ("volume", None) => MountSource::Anonymous,
                ("bind", Some(s)) => MountSource::Bind(s),
                (kind, _) => {
                    return Err(format!("volumes: type {kind} needs a source, or is not supported (volume, bind)"));
                }
            };
            Mount { source, target: long.target, read_only: long.read_only }
        }
        RawMount::Short(text) => {
            let parts: Vec<&str> = text.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [target] => (None, *target, None),
                [source, target] => (Some(*source), *target, None),
                [source, target, mode] => (Some(*source), *target, Some(*mode)),
                _ => return Err(format!("volumes: invalid entry {text:?}")),
            };
            let read_only = match mode {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(other) => return Err(format!("volumes: mode {other} is not supported (ro, rw)")),
            };
            let source = match source {
                None => MountSource::Anonymous,
                Some(s) if s.starts_with(['/', '.', '~']) => MountSource::Bind(s.to_owned()),
                Some(s) => MountSource::Volume(s.to_owned()),
            };
            Mount { source, target: target.to_owned(), read_only }
        }
    };
    if !mount.target.starts_with('/') {
        return Err(format!("volumes: target {:?} must be an absolute path", mount.target));
    }
    check_text("volumes: target", &mount.target)?;
    Ok(mount)
}

/// Compose durations: `"30s"`, `"1m30s"`, `"1h"`, `"500ms"`, `"2us"`; at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (like 30s, 1m30s, 500ms; at most 24h)");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        // try_from: a huge number must be an error, never a panic.
        let part = Duration::try_from_secs_f64(number * seconds).map_err(|_| bad())?;
        total = total.checked_add(part).filter(|t| *t <= MAX_DURATION).ok_or_else(bad)?;
    }
    Ok(total)
}

/// `512m`, `1g`, `1024k`, `1048576`, `"1.5gb"` → bytes, between Docker's minimum
/// (6 MiB) and 1 PiB.
pub(super) fn parse_bytes(value: &Value) -> Result<i64, String> {
    let bad = || format!("memory {value} is not a size between 6m and 1p (like 512m, 2g)");
    let bytes = match value {
        Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        Value::String(s) => {
            let text = s.trim().to_ascii_lowercase();
            let digits = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
            let number: f64 = text[..digits].parse().map_err(|_| bad())?;
            let factor = match text[digits..].trim_end_matches('b') {
                "" => 1.0,
                "k" => 1024.0,
                "m" => 1024.0 * 1024.0,
                "g" => 1024.0 * 1024.0 * 1024.0,
                "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                _ => return Err(bad()),
            };
            number * factor
        }
        _ => return Err(bad()),
    };
    // Checked as a float first, so the conversion below cannot saturate or wrap.
    #[allow(clippy::cast_precision_loss)]
    if !(bytes >= MIN_MEMORY as f64 && bytes <= MAX_MEMORY as f64) {
        return Err(bad());
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(bytes as i64)
}

/// `0.5`, `"1.5"` → nano CPUs; more than 0, at most 1024.
pub(super) fn parse_cpus(value: &Value) -> Result<i64, String> {
    let cpus = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|c: &f64| *c > 0.0 && *c <= MAX_CPUS)
    .ok_or_else(|| format!("cpus {value} is not a number of CPUs above 0 and at most {MAX_CPUS}"))?;
    #[allow(clippy::cast_possible_truncation)]
    Ok((cpus * 1e9) as i64)
}
