//! `esm engines list|get|set|delete|cordon|uncordon|drain`: the engines instances are
//! placed on (`/v2/et/engines`).

use clap::Subcommand;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde_json::{Value, json};

use super::commands::{json_object, summary};
use super::output;
use super::{Exit, Failure};
use crate::client::Client;
use crate::domain::bounded::{EngineName, Label, LabelKey, Locator};
use crate::domain::engine::{Capacity, Endpoint, EngineKind, EngineSpec, Labels, MAX_CAPACITY};

/// `esm engines …`.
#[derive(Debug, Clone, Subcommand)]
pub enum EnginesCommand {
    /// Every engine, `default` first.
    List,
    /// One engine, with its endpoint, facts and last problem.
    Get {
        /// The engine's name.
        name: EngineName,
    },
    /// Declare an engine, or replace its declaration (its state stays).
    Set {
        /// The engine's name (lowercase letters, digits, `-`, `.`, `_`).
        name: EngineName,
        /// The backend that drives it: dummy, docker-compose, docker-swarm or kubernetes.
        #[arg(long, value_parser = engine_kind, required_unless_present = "spec")]
        backend: Option<EngineKind>,
        /// A label placement rules match, `key=value` (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
        labels: Vec<(LabelKey, Label)>,
        /// The most instances and warm pool members placed on it (default: no limit).
        #[arg(long, value_parser = clap::value_parser!(u32).range(..=i64::from(MAX_CAPACITY)))]
        capacity: Option<u32>,
        /// A Docker engine's address (`unix://…` or `tcp://…`).
        #[arg(long = "docker-host")]
        docker_host: Option<Locator>,
        /// A cluster's kubeconfig, relative to ESM_ENGINE_CREDENTIALS_DIR.
        #[arg(long)]
        kubeconfig: Option<Locator>,
        /// The kubeconfig's context to use.
        #[arg(long)]
        context: Option<Locator>,
        /// The whole declaration as `PUT /v2/et/engines/{name}` takes it, a JSON object
        /// (for what has no flag: `endpoint.tls`, `publish_address`, `advertise_host`).
        #[arg(long, value_parser = json_object,
              conflicts_with_all = ["backend", "labels", "capacity", "docker_host", "kubeconfig", "context"])]
        spec: Option<Value>,
    },
    /// Remove an engine: only a cordoned or draining one that holds nothing.
    Delete {
        /// The engine's name.
        name: EngineName,
    },
    /// Stop placements on an engine; what runs there stays.
    Cordon {
        /// The engine's name.
        name: EngineName,
    },
    /// Allow placements on an engine again (and clear `needs_repair`).
    Uncordon {
        /// The engine's name.
        name: EngineName,
    },
    /// Stop placements on an engine, and move away what may move.
    Drain {
        /// The engine's name.
        name: EngineName,
    },
}

/// A backend as settings and the API spell it.
fn engine_kind(text: &str) -> Result<EngineKind, String> {
    EngineKind::deserialize(text.into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string())
}

/// A label, `key=value`.
fn label(text: &str) -> Result<(LabelKey, Label), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not key=value"))?;
    Ok((LabelKey::parse(key).map_err(|e| e.to_string())?, Label::parse(value).map_err(|e| e.to_string())?))
}

/// The declaration `esm engines set` sends: `--spec`, or the one its flags describe.
fn declaration(
    backend: Option<EngineKind>,
    labels: &[(LabelKey, Label)],
    capacity: Option<u32>,
    endpoint: Endpoint,
    spec: Option<Value>,
) -> Result<EngineSpec, Failure> {
    let spec = match (spec, backend) {
        (Some(spec), _) => serde_json::from_value(spec).map_err(|e| Failure::usage(format!("--spec: {e}")))?,
        (None, Some(backend)) => EngineSpec {
            backend,
            labels: Labels::of(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(Failure::usage)?,
            capacity: Capacity { instances: capacity, ..Capacity::default() },
            endpoint,
            publish_address: None,
            advertise_host: None,
        },
        (None, None) => return Err(Failure::usage("--backend or --spec is required")),
    };
    spec.check().map_err(Failure::usage)?;
    Ok(spec)
}

/// Runs `command` with `client`.
pub(super) async fn run(command: EnginesCommand, client: &Client, json: bool) -> Result<Exit, Failure> {
    let value: Value = match command {
        EnginesCommand::List => client.engines().await?,
        EnginesCommand::Get { name } => {
            return output::show_each(&client.engine(&name).await?, json, &[output::engines, output::engine]);
        }
        EnginesCommand::Set { name, backend, labels, capacity, docker_host, kubeconfig, context, spec } => {
            let endpoint = Endpoint { docker_host, tls: None, kubeconfig, context };
            let spec = declaration(backend, &labels, capacity, endpoint, spec)?;
            client.set_engine(&name, &spec).await?
        }
        EnginesCommand::Delete { name } => {
            client.delete_engine(&name).await?;
            return summary(&json!({}), json, &format!("removed engine {name}"));
        }
        EnginesCommand::Cordon { name } => client.cordon_engine(&name).await?,
        EnginesCommand::Uncordon { name } => client.uncordon_engine(&name).await?,
        EnginesCommand::Drain { name } => client.drain_engine(&name).await?,
    };
    output::show(&value, json, output::engines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_a_declaration_and_bad_ones_say_why() {
        assert_eq!(engine_kind("docker-compose"), Ok(EngineKind::DockerCompose));
        assert!(engine_kind("podman").unwrap_err().contains("docker-compose"));
        assert_eq!(
            label("zone=a=b").map(|(k, v)| (k.into_string(), v.into_string())),
            Ok(("zone".into(), "a=b".into()))
        );
        assert!(label("zone").unwrap_err().contains("not key=value"));
        assert!(label("Zone=a").unwrap_err().contains("a label key"));

        let labels = [label("zone=a").unwrap()];
        let spec = declaration(Some(EngineKind::Dummy), &labels, Some(3), Endpoint::default(), None).unwrap();
        assert_eq!((spec.labels.get("zone"), spec.capacity.instances), (Some("a"), Some(3)));
        let docker = Endpoint { docker_host: Some(Locator::parse("unix:///s").unwrap()), ..Endpoint::default() };
        assert!(declaration(Some(EngineKind::Dummy), &[], None, docker, None).is_err(), "not for a dummy engine");
        let whole = json!({"backend": "dummy", "capacity": {"instances": 2}});
        assert_eq!(declaration(None, &[], None, Endpoint::default(), Some(whole)).unwrap().capacity.instances, Some(2));
        assert!(declaration(None, &[], None, Endpoint::default(), Some(json!({"backend": "podman"}))).is_err());
    }
}
