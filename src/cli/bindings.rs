//! `esm bind`, `esm unbind` and `esm bindings get|list`: an instance's credentials. A bind
//! ends by printing them (a binding exists to be read), however esm answered it: at
//! once, or with an operation followed to its end and the binding fetched after.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::commands::{json_object, offering_of};
use super::output;
use super::wait::{Operation, Settled, Waiting, finish, settle};
use super::{Exit, Failure};
use crate::client::Client;
use crate::domain::operation::OperationState;
use crate::wire::{BindRequest, BindingResponse};

/// `esm bind`.
#[derive(Debug, Clone, Args)]
pub struct BindArgs {
    /// The instance id.
    pub instance: String,
    /// The binding id.
    pub binding: String,
    /// Bind parameters, a JSON object.
    #[arg(long, value_parser = json_object)]
    pub params: Option<Value>,
    #[command(flatten)]
    pub wait: Waiting,
}

/// `esm unbind`.
#[derive(Debug, Clone, Args)]
pub struct UnbindArgs {
    /// The instance id.
    pub instance: String,
    /// The binding id.
    pub binding: String,
    #[command(flatten)]
    pub wait: Waiting,
}

/// `esm bindings …`.
#[derive(Debug, Clone, Subcommand)]
pub enum BindingsCommand {
    /// One binding, with its credentials and endpoints.
    Get {
        /// The instance id.
        instance: String,
        /// The binding id.
        binding: String,
    },
    /// A page of an instance's bindings (without credentials).
    List {
        /// The instance id.
        instance: String,
        /// How many (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The page after this cursor (`next` of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
}

/// Creates the binding and prints its credentials.
pub(super) async fn bind(args: BindArgs, client: &Client, json: bool) -> Result<Exit, Failure> {
    let (service_id, plan_id) = offering_of(client, &args.instance).await?;
    let request = BindRequest {
        service_id,
        plan_id,
        app_guid: None,
        bind_resource: None,
        context: Some(json!({"platform": "esm-cli"})),
        parameters: args.params,
        predecessor_binding_id: None,
    };
    let reply = client.bind(&args.instance, &args.binding, &request, true).await?;
    let operation = Operation::binding(&args.instance, &args.binding, "bind", reply.body.operation.clone());
    match settle(client, &args.wait, &operation, &reply).await? {
        Settled::Answered => show(&reply.body, json),
        Settled::NotWaited => output::show(&to_value(&reply.body), json, output::done),
        Settled::Ended(OperationState::Succeeded, _) => {
            show(&client.fetch_binding(&args.instance, &args.binding).await?, json)
        }
        Settled::Ended(_, last) => {
            output::show(&last, json, output::operation)?;
            Ok(Exit::Failed)
        }
    }
}

/// Revokes the binding, following the operation to its end unless `--no-wait`.
pub(super) async fn unbind(args: UnbindArgs, client: &Client, json: bool) -> Result<Exit, Failure> {
    let (service_id, plan_id) = offering_of(client, &args.instance).await?;
    let reply = client.unbind(&args.instance, &args.binding, &service_id, &plan_id, true).await?;
    let operation = reply.body.operation.clone();
    let operation = Operation::binding(&args.instance, &args.binding, "unbind", operation);
    finish(client, json, &args.wait, operation, reply).await
}

/// `esm bindings …`.
pub(super) async fn run(command: BindingsCommand, client: &Client, json: bool) -> Result<Exit, Failure> {
    match command {
        BindingsCommand::Get { instance, binding } => show(&client.fetch_binding(&instance, &binding).await?, json),
        BindingsCommand::List { instance, limit, after } => {
            let page = client.bindings(&instance, limit, after.as_deref()).await?;
            let value = serde_json::to_value(&page).unwrap_or_default();
            super::commands::advances(&value, after.as_deref())?;
            output::show(&value, json, output::bindings)
        }
    }
}

/// The binding as the API answered it (`-o json`), or its credentials as a table.
fn show(binding: &BindingResponse, json: bool) -> Result<Exit, Failure> {
    output::show(&to_value(binding), json, output::binding)
}

fn to_value(binding: &BindingResponse) -> Value {
    serde_json::to_value(binding).unwrap_or_default()
}
