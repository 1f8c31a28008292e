//! The client's commands: their arguments (clap) and what each asks of esm.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::bindings::{self, BindArgs, BindingsCommand, UnbindArgs};
use super::engines::{self, EnginesCommand};
use super::output::{self, Table};
use super::wait::{Operation, Waiting, finish};
use super::{Exit, Failure};
use crate::client::Client;
use crate::domain::bounded::{Cursor, Name, OpaqueId, PlanId, ServiceId, TextError};
use crate::wire::{InventoryQuery, PoolRequest, ProvisionRequest, UpdateRequest};

/// Where the client sends requests and how it answers: flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The esm API the client commands talk to.
    #[arg(long = "url", env = "ESM_URL", default_value = "http://localhost:8080", global = true)]
    pub url: String,
    /// PEM certificate authorities to trust besides the built-in Mozilla roots, for an
    /// `https://` esm behind a proxy with a certificate of your own authority.
    #[arg(long = "ca-cert", env = "ESM_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// `table` for people, `json` for scripts (exactly the API's JSON).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A readable table.
    Table,
    /// The API's JSON.
    Json,
}

/// The client's commands (`esm <command>`).
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Show the catalog: every service and its plans.
    Catalog,
    /// Register or remove service offerings.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// List, show, register or remove manifests.
    #[command(subcommand)]
    Manifests(ManifestsCommand),
    /// List, show, provision, update or deprovision instances.
    #[command(subcommand)]
    Instances(InstancesCommand),
    /// Create credentials for an instance (a binding) and print them.
    Bind(BindArgs),
    /// Revoke a binding's credentials.
    Unbind(UnbindArgs),
    /// Show a binding's credentials.
    #[command(subcommand)]
    Bindings(BindingsCommand),
    /// Show, set or drain warm pools.
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// List, show, declare, remove, cordon, uncordon or drain engines.
    #[command(subcommand)]
    Engines(EnginesCommand),
    /// Show change events; with --follow, keep showing new ones.
    Events(EventsArgs),
    /// Show what esm's deployments hold: containers, services, networks, volumes, host ports.
    Inventory(InventoryArgs),
    /// Print a completion script for a shell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `esm services …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ServicesCommand {
    /// Register (or replace) a service offering from a JSON file.
    Register {
        /// The offering, as `PUT /v2/et/catalog` takes it (`-` for standard input).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Remove a service offering and its manifests.
    Delete {
        /// The service id.
        id: String,
    },
}

/// `esm manifests …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ManifestsCommand {
    /// Every manifest.
    List,
    /// One manifest.
    Get {
        /// The manifest id.
        id: String,
    },
    /// Register a manifest from a JSON file (`service_id`, `plan_id`, `manifest_type`,
    /// `manifest_content`).
    Register {
        /// The manifest id.
        id: String,
        /// The manifest, as `PUT /v2/et/manifest/{id}` takes it (`-` for standard input).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Remove a manifest.
    Delete {
        /// The manifest id.
        id: String,
    },
}

/// `esm instances …`.
#[derive(Debug, Clone, Subcommand)]
pub enum InstancesCommand {
    /// A page of instances.
    List {
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
        /// Only this plan's.
        #[arg(long)]
        plan: Option<String>,
        /// Only those whose last operation is in this state (`in progress`, `succeeded`, `failed`).
        #[arg(long)]
        state: Option<String>,
        /// Only those with this liveness (`up`, `degraded`, `down`, `unknown`).
        #[arg(long)]
        liveness: Option<String>,
        /// How many (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The page after this cursor (`next` of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// One instance, with its live details.
    Get {
        /// The instance id.
        id: String,
    },
    /// Provision an instance (and wait for it, unless --no-wait).
    Provision {
        /// The instance id.
        id: String,
        /// The service.
        #[arg(long)]
        service: ServiceId,
        /// The plan.
        #[arg(long)]
        plan: PlanId,
        /// Parameters, a JSON object.
        #[arg(long, value_parser = json_object)]
        params: Option<Value>,
        /// The platform organization (OSB requires one).
        #[arg(long, default_value = "esm-cli")]
        org: OpaqueId,
        /// The platform space (OSB requires one).
        #[arg(long, default_value = "esm-cli")]
        space: OpaqueId,
        #[command(flatten)]
        wait: Waiting,
    },
    /// Update an instance's plan or parameters (and wait for it, unless --no-wait).
    Update {
        /// The instance id.
        id: String,
        /// The new plan.
        #[arg(long)]
        plan: Option<PlanId>,
        /// New parameters, a JSON object.
        #[arg(long, value_parser = json_object)]
        params: Option<Value>,
        #[command(flatten)]
        wait: Waiting,
    },
    /// Deprovision an instance (and wait for it, unless --no-wait).
    Deprovision {
        /// The instance id.
        id: String,
        #[command(flatten)]
        wait: Waiting,
    },
    /// What an instance holds (containers, networks, volumes, host ports).
    Resources {
        /// The instance id.
        id: String,
    },
}

/// `esm inventory`.
#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Only what this instance or pool member id holds.
    #[arg(long)]
    pub owner: Option<OpaqueId>,
    /// Only this type (`container`, `service`, `network`, `volume`, `port`, `deployment`).
    #[arg(long = "type")]
    pub kind: Option<Name>,
    /// Only this state (`creating`, `in_use`, `releasing`, `orphaned`, `gone`).
    #[arg(long)]
    pub state: Option<Name>,
    /// Only this backend's.
    #[arg(long)]
    pub backend: Option<Name>,
    /// Only the resource with this name (a host port: `30000/tcp`).
    #[arg(long)]
    pub name: Option<Name>,
    /// How many (1–1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// The page after this cursor (`next` of the previous page).
    #[arg(long)]
    pub after: Option<Cursor>,
}

/// `esm pools …`.
#[derive(Debug, Clone, Subcommand)]
pub enum PoolsCommand {
    /// Every pool.
    List,
    /// One plan's pool, with its members.
    Get {
        /// The plan id.
        plan: String,
    },
    /// Create or change a plan's pool.
    Set {
        /// The plan id.
        plan: String,
        /// Ready members to keep (0–100).
        #[arg(long)]
        size: i64,
        /// Replace members older than this (seconds).
        #[arg(long = "max-age")]
        max_age: Option<i64>,
        /// Parameters members are deployed with, a JSON object.
        #[arg(long, value_parser = json_object)]
        params: Option<Value>,
    },
    /// Drain a plan's pool: idle members are removed, then the pool.
    Delete {
        /// The plan id.
        plan: String,
    },
}

/// `esm events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Keep showing new events until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Only events of this type (`provision.succeeded`, `liveness.changed`, …).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Only events of this instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// Events after this id (default: the last 20).
    #[arg(long)]
    pub after: Option<u64>,
}

/// A JSON object given on the command line.
pub(super) fn json_object(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Prints what esm answered (`-o json`), or `line` for people.
pub(super) fn summary(answer: &Value, json: bool, line: &str) -> Result<Exit, Failure> {
    if json {
        output::print_json(answer, true);
    } else {
        output::print(line);
    }
    Ok(Exit::Done)
}

/// A JSON file (`-`: standard input).
fn read_json(path: &Path) -> Result<Value, Failure> {
    let text =
        if path == Path::new("-") { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("{} is not JSON: {e}", path.display())))
}

/// A page whose `next` cursor is the `after` it was asked with would page forever: an
/// error.
pub(super) fn advances(page: &Value, after: Option<&str>) -> Result<(), Failure> {
    match (after, page["next"].as_str()) {
        (Some(after), Some(next)) if after == next => Err(Failure::failed(format!(
            "esm answered the page after {after} with the same cursor: its paging does not advance"
        ))),
        _ => Ok(()),
    }
}

/// Runs `command` with `client`.
pub(super) async fn run(command: ClientCommand, client: &Client, target: &Target) -> Result<Exit, Failure> {
    let json = target.output == Output::Json;
    let show = |value: &Value, table: fn(&Value) -> Table| output::show(value, json, table);
    match command {
        ClientCommand::Catalog => show(&client.catalog().await?, output::catalog),
        ClientCommand::Services(ServicesCommand::Register { file }) => {
            let service = read_json(&file)?;
            let answer = client.register_service(&service).await?;
            let plans: Vec<String> =
                service["plans"].as_array().into_iter().flatten().map(|p| output::text(&p["id"])).collect();
            let line = format!("registered service {} (plans: {})", output::text(&service["id"]), plans.join(", "));
            summary(&answer, json, &line)
        }
        ClientCommand::Services(ServicesCommand::Delete { id }) => {
            show(&client.delete_service(&id).await?, output::done)
        }
        ClientCommand::Manifests(ManifestsCommand::List) => show(&client.manifests().await?, output::manifests),
        ClientCommand::Manifests(ManifestsCommand::Get { id }) => show(&client.manifest(&id).await?, output::manifests),
        ClientCommand::Manifests(ManifestsCommand::Register { id, file }) => {
            let manifest = read_json(&file)?;
            let answer = client.register_manifest(&id, &manifest).await?;
            let [service, plan, kind] = ["service_id", "plan_id", "manifest_type"].map(|k| output::text(&manifest[k]));
            summary(&answer, json, &format!("registered manifest {id} for service {service}, plan {plan} ({kind})"))
        }
        ClientCommand::Manifests(ManifestsCommand::Delete { id }) => {
            show(&client.delete_manifest(&id).await?, output::done)
        }
        ClientCommand::Instances(command) => instances(command, client, json).await,
        ClientCommand::Bind(args) => bindings::bind(args, client, json).await,
        ClientCommand::Unbind(args) => bindings::unbind(args, client, json).await,
        ClientCommand::Bindings(command) => bindings::run(command, client, json).await,
        ClientCommand::Pools(command) => pools(command, client, json).await,
        ClientCommand::Engines(command) => engines::run(command, client, json).await,
        ClientCommand::Events(args) => super::wait::events(args, client, json).await,
        ClientCommand::Inventory(args) => {
            let query = InventoryQuery {
                owner: args.owner,
                kind: args.kind,
                state: args.state,
                backend: args.backend,
                name: args.name,
                limit: Some(args.limit),
                after: args.after,
            };
            let page = client.inventory(&query).await?;
            advances(&page, query.after.as_deref())?;
            show(&page, output::resources)
        }
        ClientCommand::Completions { shell } => {
            let mut command = <super::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "esm", &mut std::io::stdout());
            Ok(Exit::Done)
        }
    }
}

async fn instances(command: InstancesCommand, client: &Client, json: bool) -> Result<Exit, Failure> {
    match command {
        InstancesCommand::List { service, plan, state, liveness, limit, after } => {
            let filters: Vec<(&str, &str)> =
                [("service_id", &service), ("plan_id", &plan), ("state", &state), ("liveness", &liveness)]
                    .into_iter()
                    .filter_map(|(field, value)| value.as_deref().map(|v| (field, v)))
                    .collect();
            let page = client.instances(limit, after.as_deref(), &filters).await?;
            advances(&page, after.as_deref())?;
            output::show(&page, json, output::instances)
        }
        InstancesCommand::Get { id } => output::show(&client.instance(&id).await?, json, output::instance),
        InstancesCommand::Resources { id } => {
            output::show(&client.instance_resources(&id).await?, json, output::resources)
        }
        InstancesCommand::Provision { id, service, plan, params, org, space, wait } => {
            let request = ProvisionRequest {
                service_id: service,
                plan_id: plan,
                organization_guid: org,
                space_guid: space,
                context: Some(json!({"platform": "esm-cli"})),
                parameters: params,
                maintenance_info: None,
            };
            let reply = client.provision(&id, &request, true).await?;
            let operation = reply.body.operation.clone();
            finish(client, json, &wait, Operation::instance(&id, "provision", operation), reply).await
        }
        InstancesCommand::Update { id, plan, params, wait } => {
            let (service_id, _) = offering_of(client, &id).await?;
            let request = UpdateRequest {
                service_id,
                plan_id: plan,
                parameters: params,
                context: None,
                previous_values: None,
                maintenance_info: None,
            };
            let reply = client.update(&id, &request, true).await?;
            let operation = reply.body.operation.clone();
            finish(client, json, &wait, Operation::instance(&id, "update", operation), reply).await
        }
        InstancesCommand::Deprovision { id, wait } => {
            let (service_id, plan_id) = offering_of(client, &id).await?;
            let reply = client.deprovision(&id, &service_id, &plan_id, true).await?;
            let operation = reply.body.operation.clone();
            finish(client, json, &wait, Operation::instance(&id, "deprovision", operation), reply).await
        }
    }
}

/// The service and plan of `instance`, as esm's own view of it answers them: unlike
/// the OSB fetch, it answers for an instance whose provision failed too (which a
/// deprovision must be able to remove).
pub(super) async fn offering_of(client: &Client, instance: &str) -> Result<(ServiceId, PlanId), Failure> {
    let view = client.instance(instance).await?;
    Ok((answered(text_of(&view["service_type"]["id"]))?, answered(text_of(&view["plan_id"]))?))
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// An id esm answered, to send back in a request (the request types take only ids
/// within their bounds).
fn answered<T: std::str::FromStr<Err = TextError>>(value: &str) -> Result<T, Failure> {
    value.parse().map_err(|e| Failure::failed(format!("esm answered an id it would refuse: {e}")))
}

async fn pools(command: PoolsCommand, client: &Client, json: bool) -> Result<Exit, Failure> {
    let value = match command {
        PoolsCommand::List => client.pools().await?,
        PoolsCommand::Get { plan } => {
            return output::show_each(&client.pool(&plan).await?, json, &[output::pools, output::members]);
        }
        PoolsCommand::Set { plan, size, max_age, params } => {
            let request = PoolRequest { size, max_age_seconds: max_age, parameters: params, engine: None, fill: None };
            client.set_pool(&plan, &request).await?
        }
        PoolsCommand::Delete { plan } => {
            client.delete_pool(&plan).await?;
            json!({})
        }
    };
    output::show(&value, json, output::pools)
}
