//! Logging: a tracing subscriber filtered by `RUST_LOG`, as text or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber, writing to stdout. Defaults to `info` when
/// `RUST_LOG` is unset. Text lines are coloured only when stdout is a terminal (and
/// `NO_COLOR` is unset), so a log redirected to a file or a pipe has no escape codes.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = crate::backend::kubernetes::quiet_client_failures(filter, std::env::var("RUST_LOG").ok().as_deref());
    let ansi = use_colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(ansi)
        // A line stdout cannot take (its reader is gone: `esm | head`) is dropped
        // quietly, not reported on stderr once per line.
        .log_internal_errors(false);
    // A second init (tests start several servers in one process) is harmless: ignore it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Colour for a terminal only, and never when `NO_COLOR` is set to something
/// (<https://no-color.org>).
fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".as_ref())));
        assert!(!use_colour(true, Some("1".as_ref())));
        assert!(!use_colour(false, None), "a file or a pipe gets no escape codes");
    }
}
