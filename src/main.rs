//! The `esm` binary: parse the command line, then serve until SIGINT/SIGTERM (`esm`,
//! `esm server`) or run one client command (`esm instances list`, …).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use esm::app::Server;
use esm::cli::{Cli, Command};

/// mimalloc instead of glibc's malloc: glibc gives each of the runtime's threads (the
/// blocking pool's store reads among them) an arena of its own and keeps what they free,
/// so at 100,000 instances the periodic rounds left esm ~80 MB above what it used;
/// mimalloc hands freed pages back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the exit waits for blocking work still running (a store call on the
/// blocking pool) once esm has stopped: the runtime's drop would wait for it forever.
const EXIT_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(io::stderr(), "esm: cannot start its runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

async fn run() -> ExitCode {
    // Lossy: a non-UTF-8 argument is no help request, and clap reports it below.
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(help) = esm::cli::help::requested(&args) {
        return print_out(&help);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Openapi) => return print_out(&esm::web::openapi::document_json()),
        Some(Command::Health) => {
            return match esm::probe::healthy(&cli.config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Not eprintln!: it panics when stderr is closed.
                    let _ = writeln!(io::stderr(), "unhealthy: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Client(command)) => {
            return esm::cli::run(command, &cli.target, cli.config.credentials()).await;
        }
        Some(Command::Server) | None => {}
    }
    esm::telemetry::init(cli.config.log_format);
    let server = match Server::bind(cli.config).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, "esm cannot start");
            return ExitCode::FAILURE;
        }
    };
    match server.run_until(stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "esm stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout. A reader that went away early (`esm openapi | head`) is no
/// error: it has what it wanted, so esm exits 0 without a word (and never panics, as
/// `print!` would).
fn print_out(text: &str) -> ExitCode {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "esm: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("stop signal received; draining");
}
