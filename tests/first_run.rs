//! The first minutes with esm, run as a newcomer runs it: the real binary, its output
//! sent to a file or a pipe, the CLI piped into `head`.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Esm, StoreSetup, TempDir, eventually};

/// Text logs written to a file carry no ANSI escape codes.
#[tokio::test]
async fn text_logs_redirected_to_a_file_have_no_colour_codes() {
    let dir = TempDir::new("esm-log-colour");
    let log = dir.0.join("esm.log");
    let esm = Esm::start_logging(
        &StoreSetup::Embedded(dir.0.join("data")),
        &[("ESM_LOG_FORMAT", "text")],
        Some(&log),
    )
    .await;
    // A request, so the audit line (the most decorated one) is in the log too.
    let client = reqwest::Client::new();
    let r = client.get(format!("{}/v2/catalog", esm.api)).header("X-Broker-API-Version", "2.17").send().await;
    assert_eq!(r.expect("answers").status().as_u16(), 200);
    let text = eventually(Duration::from_secs(10), "the audit line in the log", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("request served").then_some(text)
    })
    .await;
    assert!(text.contains("esm is serving"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a log file: {text:?}");
}
