//! From the YAML's shapes to the model: everything a manifest says is checked here,
//! at registration, against the operator's [`Policy`] and against what Docker accepts,
//! so a registered manifest is deployable in shape and cannot reach past its instance.

use std::collections::BTreeMap;

use serde_json::Value;

use super::RESERVED_LABEL_PREFIX;
use super::order::start_order;
use super::raw::{
    ListOrMap, RawCompose, RawCredential, RawDependsOn, RawHealthcheck, RawNetwork, RawService, RawServiceNetworks,
    RawVolume, StringOrList,
};
use super::values::{
    check_hostname, check_image, check_name, check_text, check_user, parse_bytes, parse_cpus, parse_duration,
    parse_expose, parse_mount, parse_port,
};
use super::{Compose, CredentialSource, DependsOn, Healthcheck, MountSource, Network, Policy, Service, Volume};

/// Replicas a swarm service may ask for.
const MAX_REPLICAS: u64 = 100;
/// Health check retries Docker is given at most.
const MAX_RETRIES: i64 = 1000;
/// Networks Docker has on every host; joining them is not an instance's business.
const ENGINE_NETWORKS: [&str; 4] = ["host", "none", "bridge", "ingress"];

impl RawCompose {
    pub(super) fn check(self, policy: &Policy) -> Result<Compose, String> {
        if let Some(version) = &self.version {
            let text = version.as_str().map(str::to_owned).unwrap_or_else(|| version.to_string());
            if !(text.starts_with('2') || text.starts_with('3')) {
                return Err(format!("compose file version {text} is not supported (2.x and 3.x are)"));
            }
        }
        refuse_unknown("the top level", &self.extensions)?;
        if self.services.is_empty() {
            return Err("the manifest declares no services".into());
        }
        if self.services.len() > policy.max_services {
            return Err(format!(
                "the manifest declares {} services; the limit is {} (ESM_MANIFEST_MAX_SERVICES)",
                self.services.len(),
                policy.max_services
            ));
        }
        let networks = self
            .networks
            .into_iter()
            .map(|(name, raw)| Ok((name.clone(), check_network(&name, raw.unwrap_or_default(), policy)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let volumes = self
            .volumes
            .into_iter()
            .map(|(name, raw)| Ok((name.clone(), check_volume(&name, raw.unwrap_or_default(), policy)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let mut services = BTreeMap::new();
        for (name, raw) in self.services {
            check_name("service", &name)?;
            let service = raw.check(&name, policy, &networks, &volumes)?;
            services.insert(name, service);
        }
        for (name, service) in &services {
            for dependency in service.depends_on.keys() {
                if !services.contains_key(dependency) {
                    return Err(format!("service {name} depends on {dependency}, which the manifest does not declare"));
                }
            }
        }
        let start_order = start_order(&services)?;
        let credentials = self
            .credentials
            .into_iter()
            .map(|(key, raw)| match raw {
                RawCredential::Literal(value) => Ok((key, CredentialSource::Literal(value))),
                RawCredential::Reference { service, env } => {
                    if !services.contains_key(&service) {
                        return Err(format!("x-esm-credentials.{key}: no service {service}"));
                    }
                    Ok((key, CredentialSource::Environment { service, variable: env }))
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(Compose { services, networks, volumes, credentials, start_order })
    }
}

fn check_network(name: &str, raw: RawNetwork, policy: &Policy) -> Result<Network, String> {
    let at = |what: &str| format!("network {name}: {what}");
    check_name("network", name)?;
    if let Some(driver) = raw.driver.as_deref()
        && !matches!(driver, "bridge" | "overlay")
    {
        return Err(at(&format!("driver {driver} is not supported (bridge, overlay)")));
    }
    let external = truthy(raw.external.as_ref());
    if external {
        external_allowed(policy).map_err(|e| at(&e))?;
        let engine_name = raw.name.as_deref().unwrap_or(name);
        check_name("network", engine_name)?;
        if ENGINE_NETWORKS.contains(&engine_name) {
            return Err(at(&format!("the engine's own network {engine_name} is refused")));
        }
    }
    Ok(Network { external, name: raw.name, labels: user_labels(raw.labels).map_err(|e| at(&e))? })
}

fn check_volume(name: &str, raw: RawVolume, policy: &Policy) -> Result<Volume, String> {
    let at = |what: &str| format!("volume {name}: {what}");
    check_name("volume", name)?;
    if let Some(driver) = raw.driver.as_deref()
        && driver != "local"
    {
        return Err(at(&format!("driver {driver} is not supported (local)")));
    }
    let external = truthy(raw.external.as_ref());
    if external {
        external_allowed(policy).map_err(|e| at(&e))?;
        check_name("volume", raw.name.as_deref().unwrap_or(name))?;
    }
    Ok(Volume { external, name: raw.name, keep: raw.keep, labels: user_labels(raw.labels).map_err(|e| at(&e))? })
}

fn external_allowed(policy: &Policy) -> Result<(), String> {
    if policy.allow_external {
        Ok(())
    } else {
        Err("external resources are refused (the operator can allow them with ESM_DOCKER_ALLOW_EXTERNAL)".into())
    }
}

impl RawService {
    fn check(
        self,
        name: &str,
        policy: &Policy,
        networks: &BTreeMap<String, Network>,
        volumes: &BTreeMap<String, Volume>,
    ) -> Result<Service, String> {
        let at = |what: &str| format!("service {name}: {what}");
        refuse_unknown(&format!("service {name}"), &self.extensions)?;
        let image =
            self.image.as_deref().map(str::trim).filter(|i| !i.is_empty()).ok_or_else(|| at("image is required"))?;
        check_image(image).map_err(|e| at(&e))?;
        let (pid_host, host_network) = self.host_power(policy).map_err(|e| at(&e))?;
        let ports = self
            .ports
            .into_iter()
            .map(|p| parse_port(p, policy.host_ports).map_err(|e| at(&e)))
            .collect::<Result<_, _>>()?;
        let expose = self.expose.iter().map(|e| parse_expose(e).map_err(|e| at(&e))).collect::<Result<_, _>>()?;
        let mut mounts = Vec::new();
        for raw in self.volumes {
            let mount = parse_mount(raw).map_err(|e| at(&e))?;
            match &mount.source {
                MountSource::Bind(path) if !policy.allow_bind_mounts => {
                    return Err(at(&format!(
                        "bind mount of host path {path} is refused (the operator can allow it with ESM_DOCKER_ALLOW_BIND_MOUNTS)"
                    )));
                }
                MountSource::Volume(volume) if !volumes.contains_key(volume) => {
                    return Err(at(&format!("volume {volume} is not declared under the top-level volumes")));
                }
                _ => {}
            }
            mounts.push(mount);
        }
        let service_networks = service_networks(self.networks, networks).map_err(|e| at(&e))?;
        let depends_on = dependencies(self.depends_on).map_err(|e| at(&e))?;
        let healthcheck = self.healthcheck.map(healthcheck).transpose().map_err(|e| at(&e))?;
        if let Some(restart) = &self.restart {
            check_restart(restart).map_err(|e| at(&e))?;
        }
        if let Some(host) = &self.hostname {
            check_hostname(host).map_err(|e| at(&e))?;
        }
        if let Some(container) = &self.container_name {
            check_name("container_name", container).map_err(|e| at(&e))?;
        }
        if let Some(dir) = &self.working_dir
            && (!dir.starts_with('/') || dir.contains('\0'))
        {
            return Err(at(&format!("working_dir {dir:?} must be an absolute path")));
        }
        let user = self.user.as_ref().map(|u| u.as_str().map(str::to_owned).unwrap_or_else(|| u.to_string()));
        if let Some(user) = &user {
            check_user(user).map_err(|e| at(&e))?;
        }
        let limits = self.deploy.as_ref().and_then(|d| d.resources.as_ref()).and_then(|r| r.limits.as_ref());
        let memory = self.mem_limit.as_ref().or(limits.and_then(|l| l.memory.as_ref()));
        let cpus = self.cpus.as_ref().or(limits.and_then(|l| l.cpus.as_ref()));
        let replicas = self.deploy.as_ref().and_then(|d| d.replicas);
        if replicas.is_some_and(|r| r > MAX_REPLICAS) {
            return Err(at(&format!("deploy.replicas is at most {MAX_REPLICAS}")));
        }
        let environment = key_values("environment", self.environment).map_err(|e| at(&e))?;
        let command = self.command.map(words).map(|w| texts("command", w)).transpose().map_err(|e| at(&e))?;
        let entrypoint = self.entrypoint.map(words).map(|w| texts("entrypoint", w)).transpose().map_err(|e| at(&e))?;
        Ok(Service {
            image: image.to_owned(),
            command,
            entrypoint,
            environment,
            ports,
            expose,
            volumes: mounts,
            networks: service_networks,
            depends_on,
            labels: user_labels(self.labels).map_err(|e| at(&e))?,
            healthcheck,
            restart: self.restart,
            hostname: self.hostname,
            container_name: self.container_name,
            working_dir: self.working_dir,
            user,
            memory_bytes: memory.map(parse_bytes).transpose().map_err(|e| at(&e))?,
            nano_cpus: cpus.map(parse_cpus).transpose().map_err(|e| at(&e))?,
            replicas,
            privileged: self.privileged,
            cap_add: self.cap_add,
            pid_host,
            host_network,
            devices: self.devices,
        })
    }

    /// The settings that give a container power over the host: refused unless the
    /// operator allows them. Returns `(pid: host, network_mode: host)`.
    fn host_power(&self, policy: &Policy) -> Result<(bool, bool), String> {
        let power = |what: &str| {
            if policy.allow_privileged {
                Ok(())
            } else {
                Err(format!("{what} is refused (the operator can allow it with ESM_DOCKER_ALLOW_PRIVILEGED)"))
            }
        };
        if self.privileged {
            power("privileged")?;
        }
        if !self.cap_add.is_empty() {
            power("cap_add")?;
        }
        if !self.devices.is_empty() {
            power("devices")?;
        }
        let pid_host = match self.pid.as_deref() {
            None => false,
            Some("host") => power("pid: host").map(|()| true)?,
            Some(other) => return Err(format!("pid: {other} is not supported")),
        };
        let host_network = match self.network_mode.as_deref() {
            None | Some("bridge") => false,
            Some("host") => power("network_mode: host").map(|()| true)?,
            Some(other) => return Err(format!("network_mode: {other} is not supported (bridge, host)")),
        };
        Ok((pid_host, host_network))
    }
}

fn service_networks(
    raw: Option<RawServiceNetworks>,
    declared: &BTreeMap<String, Network>,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let networks: BTreeMap<String, Vec<String>> = match raw {
        None => BTreeMap::new(),
        Some(RawServiceNetworks::List(list)) => list.into_iter().map(|n| (n, Vec::new())).collect(),
        Some(RawServiceNetworks::Map(map)) => {
            map.into_iter().map(|(n, raw)| (n, raw.map(|r| r.aliases).unwrap_or_default())).collect()
        }
    };
    for (network, aliases) in &networks {
        if network != "default" && !declared.contains_key(network) {
            return Err(format!("network {network} is not declared under the top-level networks"));
        }
        for alias in aliases {
            check_hostname(alias).map_err(|_| format!("network alias {alias:?} is not a valid host name"))?;
        }
    }
    Ok(networks)
}

fn dependencies(raw: Option<RawDependsOn>) -> Result<BTreeMap<String, DependsOn>, String> {
    match raw {
        None => Ok(BTreeMap::new()),
        Some(RawDependsOn::List(list)) => Ok(list.into_iter().map(|d| (d, DependsOn::Started)).collect()),
        Some(RawDependsOn::Map(map)) => map
            .into_iter()
            .map(|(d, raw)| match raw.condition.as_deref() {
                None | Some("service_started") => Ok((d, DependsOn::Started)),
                Some("service_healthy") => Ok((d, DependsOn::Healthy)),
                Some(other) => Err(format!("depends_on condition {other} is not supported")),
            })
            .collect(),
    }
}

fn healthcheck(raw: RawHealthcheck) -> Result<Healthcheck, String> {
    if raw.disable {
        return Ok(Healthcheck {
            test: vec!["NONE".into()],
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        });
    }
    let test = match raw.test {
        None => return Err("healthcheck.test is required".into()),
        Some(StringOrList::String(s)) => vec!["CMD-SHELL".into(), s],
        Some(StringOrList::List(list)) => strings(list),
    };
    if !matches!(test.first().map(String::as_str), Some("CMD" | "CMD-SHELL" | "NONE")) {
        return Err("healthcheck.test must start with CMD, CMD-SHELL or NONE".into());
    }
    if raw.retries.is_some_and(|r| !(0..=MAX_RETRIES).contains(&r)) {
        return Err(format!("healthcheck.retries must be between 0 and {MAX_RETRIES}"));
    }
    Ok(Healthcheck {
        test: texts("healthcheck.test", test)?,
        interval: raw.interval.as_deref().map(parse_duration).transpose()?,
        timeout: raw.timeout.as_deref().map(parse_duration).transpose()?,
        retries: raw.retries,
        start_period: raw.start_period.as_deref().map(parse_duration).transpose()?,
    })
}

fn check_restart(restart: &str) -> Result<(), String> {
    let valid = match restart.split_once(':') {
        None => matches!(restart, "no" | "always" | "on-failure" | "unless-stopped"),
        Some(("on-failure", count)) => count.parse::<u16>().is_ok(),
        Some(_) => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("restart: {restart} is not supported (no, always, on-failure[:N], unless-stopped)"))
    }
}

/// Extension keys (`x-...`) are allowed and ignored; any other unknown key is refused.
fn refuse_unknown(place: &str, extra: &BTreeMap<String, Value>) -> Result<(), String> {
    let unknown: Vec<&str> = extra.keys().map(String::as_str).filter(|k| !k.starts_with("x-")).collect();
    if unknown.is_empty() { Ok(()) } else { Err(format!("{place}: unsupported key(s): {}", unknown.join(", "))) }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        // Compose 3.3's `external: {name: x}` form.
        Some(Value::Object(_)) => true,
        _ => false,
    }
}

fn strings(list: Vec<Value>) -> Vec<String> {
    list.into_iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect()
}

fn texts(what: &str, list: Vec<String>) -> Result<Vec<String>, String> {
    list.iter().try_for_each(|item| check_text(what, item))?;
    Ok(list)
}

/// A command as a list: a string is split on whitespace (no shell), like compose does
/// for the simple cases.
fn words(value: StringOrList) -> Vec<String> {
    match value {
        StringOrList::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        StringOrList::List(list) => strings(list),
    }
}

/// Labels a manifest sets: esm's own (`esm.*`) are reserved, since reconciliation and
/// deprovisioning find an instance's resources by them.
fn user_labels(value: Option<ListOrMap>) -> Result<BTreeMap<String, String>, String> {
    let labels = key_values("labels", value)?;
    match labels.keys().find(|k| k.starts_with(RESERVED_LABEL_PREFIX)) {
        Some(key) => {
            Err(format!("label {key} is refused: labels starting with {} are esm's own", RESERVED_LABEL_PREFIX))
        }
        None => Ok(labels),
    }
}

/// `[K=V, ...]` or `{K: V, ...}`; keys are non-empty, without `=`, and nothing holds NUL.
fn key_values(what: &str, value: Option<ListOrMap>) -> Result<BTreeMap<String, String>, String> {
    let pairs: Vec<(String, String)> = match value {
        None => Vec::new(),
        Some(ListOrMap::List(list)) => list
            .into_iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item, String::new()),
            })
            .collect(),
        Some(ListOrMap::Map(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                };
                (k, text)
            })
            .collect(),
    };
    for (key, value) in &pairs {
        if key.trim().is_empty() || key.contains('=') {
            return Err(format!("{what}: {key:?} is not a valid name"));
        }
        check_text(what, key)?;
        check_text(what, value)?;
    }
    Ok(pairs.into_iter().collect())
}
