//! The command-line client: `esm catalog`, `esm instances provision …`, `esm pools …`,
//! `esm engines …`, speaking to an esm's API through [`crate::client`]. `esm` with no
//! command (or `esm server`) runs the daemon instead.
//!
//! Output is a table for people, or with `-o json` exactly the API's JSON. Exit codes:
//! 0 done, 1 esm refused the request or the operation failed (or answered what the
//! client does not take: too large, a cursor that does not advance, an operation past
//! `--wait-timeout`), 2 bad usage or input, 3 esm unreachable or the credentials
//! refused, 130 stopped waiting (Ctrl-C; the operation goes on).
//!
//! The client does not trust the server: its text is shown escaped (`output.rs`), its
//! answers are read with a size bound and redirects followed only within the origin
//! ([`crate::client`]), and a loop over its answers that does not advance stops.
//!
//! - `bindings.rs`: bind, unbind, and a binding's credentials.
//! - `engines.rs`: the engines instances are placed on.
//! - `line.rs`: the whole command line ([`Cli`]): settings, client flags, commands.
//! - `help.rs`: `esm --help` for the client, `esm server --help` for the settings.
//! - `output.rs`: tables, and every sink for what the client prints.
//! - `wait.rs`: following an asynchronous operation to its end, and the event log.

mod bindings;
mod commands;
mod engines;
pub mod help;
mod line;
mod output;
mod wait;

pub use commands::{ClientCommand, Target};
pub use line::{Cli, Command};

use std::process::ExitCode;

use crate::client::{Client, ClientError};

/// How a command ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Done = 0,
    /// esm refused the request, or the operation failed.
    Failed = 1,
    /// Bad usage or input (what clap also exits with).
    Usage = 2,
    /// esm unreachable, or the credentials refused.
    Unreachable = 3,
    /// Stopped waiting for an operation, which goes on.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    exit: Exit,
    message: String,
}

impl Failure {
    /// Bad input (a file that cannot be read, JSON that does not parse).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { exit: Exit::Usage, message: message.into() }
    }

    /// A failed operation.
    pub fn failed(message: impl Into<String>) -> Self {
        Self { exit: Exit::Failed, message: message.into() }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let exit = match e {
            ClientError::Unreachable { .. } | ClientError::Unauthorized(_) => Exit::Unreachable,
            ClientError::Api { .. } | ClientError::Invalid(_) => Exit::Failed,
        };
        Self { exit, message: e.to_string() }
    }
}

/// Runs a client command against the esm `target` names, with basic-auth `credentials`
/// if any; prints what it did and returns the exit code.
pub async fn run(command: ClientCommand, target: &Target, credentials: Option<(&str, &str)>) -> ExitCode {
    let auth = credentials.map(|(user, password)| (user.to_owned(), password.to_owned()));
    let client = match &target.ca_cert {
        None => Client::new(&target.url, auth).map_err(Failure::from),
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Client::with_ca(&target.url, auth, &pem)
                .map_err(|e| Failure::usage(format!("--ca-cert {}: {e}", path.display()))),
            Err(e) => Err(Failure::usage(format!("cannot read --ca-cert {}: {e}", path.display()))),
        },
    };
    let result = match client {
        Ok(client) => commands::run(command, &client, target).await,
        Err(failure) => Err(failure),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(failure) => {
            output::error(&failure.message);
            failure.exit.into()
        }
    }
}
