//! The ports a dummy manifest's services publish, in compose's short syntax (`8080`,
//! `"30001:8080"`, `"53/udp"`), so esm's host-port leases can be exercised without an
//! engine.

use std::collections::BTreeMap;

use serde_json::Value;

use super::FakeService;
use crate::domain::port::PortWant;

/// What every service publishes.
pub(super) fn wants(services: &BTreeMap<String, FakeService>) -> Result<Vec<PortWant>, String> {
    let mut wants = Vec::new();
    for (name, service) in services {
        wants.extend(of_service(name, service)?);
    }
    Ok(wants)
}

/// What service `name` publishes.
pub(super) fn of_service(name: &str, service: &FakeService) -> Result<Vec<PortWant>, String> {
    service
        .ports
        .iter()
        .map(|spec| parse(name, spec).ok_or_else(|| format!("services.{name}.ports: {spec} is not a port")))
        .collect()
}

/// `[host:]target[/protocol]`.
fn parse(unit: &str, spec: &Value) -> Option<PortWant> {
    let text = match spec {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let (ports, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
    if !matches!(protocol, "tcp" | "udp") {
        return None;
    }
    let (fixed, target) = match ports.split_once(':') {
        Some((host, target)) => (Some(host.parse().ok().filter(|p| *p > 0)?), target),
        None => (None, ports),
    };
    let target = target.parse().ok().filter(|p| *p > 0)?;
    Some(PortWant { unit: unit.to_owned(), target, protocol: protocol.to_owned(), fixed })
}
