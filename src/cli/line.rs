//! The `esm` command line as a whole: the daemon's settings, the client's flags, and
//! the commands (`esm server`, `esm openapi`, `esm health`, the client's).

use clap::{Parser, Subcommand};

use super::{ClientCommand, Target};
use crate::config::Config;

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
    /// Where the client commands send requests, and how they answer.
    #[command(flatten)]
    pub target: Target,
    /// Something else to do than serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `esm <command>`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the daemon (what `esm` with no command does).
    Server,
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Ask the esm on this machine's check port for /health: exit 0 when healthy.
    Health,
    /// The command-line client (`esm instances list`, …).
    #[command(flatten)]
    Client(ClientCommand),
}
