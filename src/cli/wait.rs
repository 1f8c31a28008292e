//! Following what runs on in esm: an asynchronous operation to its end (a spinner with
//! its description and elapsed time on a terminal, a line per change otherwise), and
//! the event log. Ctrl-C stops the following, never the operation.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::commands::EventsArgs;
use super::output::{self, text};
use super::{Exit, Failure};
use crate::client::{Client, ClientError};
use crate::domain::operation::OperationState;
use crate::wire::LastOperationResponse;

/// How often an operation's state is asked for.
const POLL: Duration = Duration::from_millis(500);
/// How many past events `esm events` shows by default.
const RECENT: u64 = 20;

/// An operation to follow: an instance's, or a binding's.
pub(super) struct Operation {
    instance: String,
    binding: Option<String>,
    kind: &'static str,
    id: Option<String>,
}

impl Operation {
    /// Operation `id` (of `kind`) on instance `instance`.
    pub(super) fn instance(instance: &str, kind: &'static str, id: Option<String>) -> Self {
        Self { instance: instance.to_owned(), binding: None, kind, id }
    }

    /// Operation `id` (of `kind`) on binding `binding` of `instance`.
    pub(super) fn binding(instance: &str, binding: &str, kind: &'static str, id: Option<String>) -> Self {
        Self { instance: instance.to_owned(), binding: Some(binding.to_owned()), kind, id }
    }

    async fn state(&self, client: &Client) -> Result<LastOperationResponse, ClientError> {
        let id = self.id.as_deref();
        match &self.binding {
            Some(binding) => client.binding_last_operation(&self.instance, binding, id).await,
            None => client.last_operation(&self.instance, id).await,
        }
    }

    fn name(&self) -> String {
        match &self.binding {
            Some(binding) => format!("{} of binding {binding}", self.kind),
            None => format!("{} of {}", self.kind, self.instance),
        }
    }
}

/// Polls `operation` until it has succeeded or failed. A deprovision or unbind that
/// finished is `410 Gone` for esm once it is done: that is success.
pub(super) async fn until_done(client: &Client, operation: &Operation) -> Result<LastOperationResponse, Failure> {
    let started = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let mut said = String::new();
    let interrupted = interrupt();
    tokio::pin!(interrupted);
    let result = loop {
        let last = match operation.state(client).await {
            Ok(last) => last,
            Err(ClientError::Api { status: 410, .. }) if matches!(operation.kind, "deprovision" | "unbind") => {
                break Ok(gone(operation));
            }
            Err(e) => break Err(Failure::from(e)),
        };
        let now = format!("{}: {}", operation.name(), last.description.as_deref().unwrap_or(last.state.as_str()));
        match &spinner {
            Some(bar) => bar.set_message(now.clone()),
            None if now != said => output::progress(&format!("{now} ({}s)", started.elapsed().as_secs())),
            None => {}
        }
        said = now;
        if last.state != OperationState::InProgress {
            break Ok(last);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = &mut interrupted => {
                break Err(Failure {
                    exit: Exit::Interrupted,
                    message: format!("stopped waiting; the {} goes on in esm", operation.name()),
                });
            }
        }
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    result
}

/// Ctrl-C, listened for from the call on (a future that registers only when first
/// polled would let a Ctrl-C right after the first progress line kill the client).
fn interrupt() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        async move {
            match signal.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What a finished deprovision or unbind looks like once esm has forgotten it.
fn gone(operation: &Operation) -> LastOperationResponse {
    LastOperationResponse {
        state: OperationState::Succeeded,
        description: Some(format!("{} succeeded", operation.kind)),
        instance_usable: None,
        update_repeatable: None,
    }
}

/// `esm events`: the recent events (or those after `--after`), then with `--follow`
/// each new one as it is logged, until Ctrl-C.
pub(super) async fn events(args: EventsArgs, client: &Client, json: bool) -> Result<Exit, Failure> {
    let filters: Vec<(&str, &str)> = [("type", &args.kind), ("instance_id", &args.instance)]
        .into_iter()
        .filter_map(|(field, value)| value.as_deref().map(|v| (field, v)))
        .collect();
    let mut after = match args.after {
        Some(after) => after,
        None => {
            // The newest id, then the RECENT before it.
            let mut newest = client.events(0, 1000, &filters).await?;
            while newest.events.len() == 1000 {
                newest = client.events(newest.after, 1000, &filters).await?;
            }
            newest.events.iter().rev().nth(usize::try_from(RECENT).unwrap_or(0)).map_or(0, |e| e.id)
        }
    };
    if !json {
        output::print(&format!("{:>8}  {:<24}  {:<22}  {:<20}  CHANGE", "ID", "AT", "TYPE", "INSTANCE"));
    }
    let interrupted = interrupt();
    tokio::pin!(interrupted);
    loop {
        let page = client.events(after, 1000, &filters).await?;
        for event in &page.events {
            let value = serde_json::to_value(event).unwrap_or_default();
            output::print(&if json { value.to_string() } else { event_line(&value) });
        }
        after = page.after;
        if !args.follow {
            return Ok(Exit::Done);
        }
        if page.events.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = &mut interrupted => return Ok(Exit::Done),
            }
        }
    }
}

fn event_line(event: &Value) -> String {
    let who = event["instance_id"].as_str().or(event["member_id"].as_str()).unwrap_or("-");
    let change = match (event["from"].as_str(), event["to"].as_str()) {
        (Some(from), Some(to)) => format!("{from} -> {to}"),
        (None, Some(to)) => to.to_owned(),
        _ => String::new(),
    };
    let reason = event["reason"].as_str().map(|r| format!("  {r}")).unwrap_or_default();
    format!(
        "{:>8}  {:<24}  {:<22}  {:<20}  {change}{reason}",
        text(&event["id"]),
        text(&event["at"]),
        text(&event["type"]),
        who
    )
}
