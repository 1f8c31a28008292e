//! `esm --help` for people using the client, `esm server --help` for the daemon's
//! settings. Both are one command line to clap (the settings are read whatever the
//! command); only the help is split, so the client's commands are not found under
//! hundreds of lines of server settings.

use clap::{Args, CommandFactory};

use super::Cli;
use super::Target;
use crate::config::Config;

/// The help `args` (the command line without the program) ask for, if they ask for
/// one of the two split here; clap answers every other `--help` itself.
pub fn requested(args: &[String]) -> Option<String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--help" | "-h"] | ["help"] => Some(client()),
        ["server", "--help" | "-h"] | ["help", "server"] => Some(server()),
        _ => None,
    }
}

/// The commands and the client's flags; the settings are one line away.
fn client() -> String {
    let settings = setting_ids();
    Cli::command()
        .mut_args(|arg| if settings.iter().any(|id| id == arg.get_id()) { arg.hide(true) } else { arg })
        .after_help(
            "Run `esm` (or `esm server`) to start the daemon; `esm server --help` lists its settings \
             (flags and ESM_* variables). The client takes the broker's credentials from \
             ESM_BROKER_USERNAME and ESM_BROKER_PASSWORD (or --broker-username, --broker-password).",
        )
        .render_help()
        .to_string()
}

/// The daemon's settings, without the client's commands and flags.
fn server() -> String {
    let client_flags: Vec<clap::Id> =
        Target::augment_args(clap::Command::new("client")).get_arguments().map(|arg| arg.get_id().clone()).collect();
    Cli::command()
        .mut_args(|arg| if client_flags.iter().any(|id| id == arg.get_id()) { arg.hide(true) } else { arg })
        .about("Runs the daemon: the broker API, and the operator port (/health, /metrics, /environment)")
        .mut_subcommands(|command| command.hide(true))
        .after_help("Every flag may be given as its ESM_* variable instead. `esm --help` lists the client's commands.")
        .render_help()
        .to_string()
}

/// The ids of the daemon's settings.
fn setting_ids() -> Vec<clap::Id> {
    Config::augment_args(clap::Command::new("settings")).get_arguments().map(|arg| arg.get_id().clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(args: &[&str]) -> String {
        requested(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>()).expect("a help")
    }

    #[test]
    fn the_client_s_help_lists_commands_and_the_server_s_the_settings() {
        let client = help(&["--help"]);
        assert!(client.contains("instances") && client.contains("--url"), "{client}");
        assert!(!client.contains("ESM_RECONCILE_INTERVAL") && client.contains("esm server --help"), "{client}");
        assert!(client.lines().count() < 80, "{} lines", client.lines().count());
        let server = help(&["server", "--help"]);
        assert!(server.contains("ESM_RECONCILE_INTERVAL") && server.contains("--port"), "{server}");
        assert!(!server.contains("instances  ") && !server.contains("--url"), "{server}");
        assert_eq!(help(&["help"]), client);
        assert!(requested(&["instances".to_owned(), "--help".to_owned()]).is_none(), "clap's own");
    }
}
