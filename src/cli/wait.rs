//! Following what runs on in esm: an asynchronous operation to its end (a spinner with
//! its description and elapsed time on a terminal, a line per change otherwise), and
//! the event log. Ctrl-C stops the following, never the operation.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;

use super::commands::EventsArgs;
use super::output::{self, text};
use super::{Exit, Failure};
use crate::client::{Client, ClientError, Reply};
use crate::domain::operation::OperationState;

/// How often an operation's state is asked for.
const POLL: Duration = Duration::from_millis(500);
/// How many past events `esm events` shows by default.
const RECENT: usize = 20;
/// Events asked for a page.
const PAGE: u32 = 1000;

/// Whether a command that may start an asynchronous operation follows it, and for how
/// long: flags of the commands that start one.
#[derive(Debug, Clone, Args)]
pub struct Waiting {
    /// Do not wait for an asynchronous operation to finish: print its id and return.
    #[arg(long = "no-wait")]
    pub no_wait: bool,
    /// Stop waiting for an asynchronous operation after this long (`90s`, `2h`); the
    /// operation goes on in esm.
    #[arg(long = "wait-timeout", env = "ESM_WAIT_TIMEOUT", default_value = "1h", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
}

/// How a request that may start an operation ended, for the client.
pub(super) enum Settled {
    /// esm answered at once (not 202).
    Answered,
    /// 202, and `--no-wait`: the operation was not followed.
    NotWaited,
    /// 202, followed to its end: its state and last answer.
    Ended(OperationState, Value),
}

/// Follows `reply`'s operation to its end when it is a 202, unless `--no-wait`.
pub(super) async fn settle<T>(
    client: &Client,
    wait: &Waiting,
    operation: &Operation,
    reply: &Reply<T>,
) -> Result<Settled, Failure> {
    if reply.status != 202 {
        return Ok(Settled::Answered);
    }
    if wait.no_wait {
        return Ok(Settled::NotWaited);
    }
    let (state, last) = until_done(client, operation, wait.wait_timeout).await?;
    Ok(Settled::Ended(state, last))
}

/// Prints an operation's answer; a 202 is followed to its end unless `--no-wait`.
pub(super) async fn finish<T: serde::Serialize>(
    client: &Client,
    json: bool,
    wait: &Waiting,
    operation: Operation,
    reply: Reply<T>,
) -> Result<Exit, Failure> {
    match settle(client, wait, &operation, &reply).await? {
        Settled::Answered | Settled::NotWaited => {
            output::show(&serde_json::to_value(&reply.body).unwrap_or_default(), json, output::done)
        }
        Settled::Ended(state, last) => {
            output::show(&last, json, output::operation)?;
            Ok(if state == OperationState::Succeeded { Exit::Done } else { Exit::Failed })
        }
    }
}

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

    async fn state(&self, client: &Client) -> Result<Value, ClientError> {
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

/// Polls `operation` until it has succeeded or failed: its state and the answer as
/// esm gave it. A deprovision or unbind that finished is `410 Gone` for esm once it is
/// done: that is success. An operation still in progress after `timeout` (a server
/// that never finishes it) ends the waiting with an error; the operation goes on.
pub(super) async fn until_done(
    client: &Client,
    operation: &Operation,
    timeout: Duration,
) -> Result<(OperationState, Value), Failure> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let spinner = std::io::stderr().is_terminal().then(output::Spinner::start);
    let mut said = String::new();
    let interrupted = interrupt();
    tokio::pin!(interrupted);
    let stop = |exit, why: &str| Failure { exit, message: format!("{why}; the {} goes on in esm", operation.name()) };
    let result = loop {
        let asked = tokio::select! {
            asked = operation.state(client) => asked,
            () = tokio::time::sleep_until(deadline) => break Err(stop(Exit::Failed, &gave_up(timeout))),
            () = &mut interrupted => break Err(stop(Exit::Interrupted, "stopped waiting")),
        };
        let last = match asked {
            Ok(last) => last,
            Err(ClientError::Api { status: 410, .. }) if matches!(operation.kind, "deprovision" | "unbind") => {
                break Ok((OperationState::Succeeded, gone(operation)));
            }
            Err(e) => break Err(Failure::from(e)),
        };
        let Ok(state) = serde_json::from_value::<OperationState>(last["state"].clone()) else {
            break Err(Failure::failed(format!("esm's answer on the {} has no operation state", operation.name())));
        };
        let now = format!("{}: {}", operation.name(), last["description"].as_str().unwrap_or(state.as_str()));
        match &spinner {
            Some(bar) => bar.say(&now),
            None if now != said => output::progress(&format!("{now} ({}s)", started.elapsed().as_secs())),
            None => {}
        }
        said = now;
        if state != OperationState::InProgress {
            break Ok((state, last));
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = tokio::time::sleep_until(deadline) => break Err(stop(Exit::Failed, &gave_up(timeout))),
            () = &mut interrupted => break Err(stop(Exit::Interrupted, "stopped waiting")),
        }
    };
    if let Some(bar) = spinner {
        bar.finish();
        // The spinner's line goes; where the operation ended stays on the terminal.
        if !said.is_empty() {
            output::progress(&format!("{said} ({}s)", started.elapsed().as_secs()));
        }
    }
    result
}

/// Why the waiting stopped at the deadline.
fn gave_up(timeout: Duration) -> String {
    format!("still in progress after {} (--wait-timeout): stopped waiting", humantime::format_duration(timeout))
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
fn gone(operation: &Operation) -> Value {
    serde_json::json!({"state": OperationState::Succeeded.as_str(), "description": format!("{} succeeded", operation.kind)})
}

/// `esm events`: the recent events (or those after `--after`), then with `--follow`
/// each new one as it is logged, until Ctrl-C. Every page must move forward (see
/// [`Cursor`]), or the command stops with an error rather than loop.
pub(super) async fn events(args: EventsArgs, client: &Client, json: bool) -> Result<Exit, Failure> {
    let filters: Vec<(&str, &str)> = [("type", &args.kind), ("instance_id", &args.instance)]
        .into_iter()
        .filter_map(|(field, value)| value.as_deref().map(|v| (field, v)))
        .collect();
    let mut cursor = Cursor(args.after.unwrap_or(0));
    if args.after.is_none() {
        // Read to the newest, keeping the id just before the RECENT last.
        let mut tail = std::collections::VecDeque::with_capacity(RECENT + 1);
        loop {
            let events = cursor.next(client.events(cursor.0, PAGE, &filters).await?)?;
            let full = events.len() == PAGE as usize;
            for event in events.iter().rev().take(RECENT + 1).rev() {
                if tail.len() > RECENT {
                    tail.pop_front();
                }
                tail.push_back(event["id"].as_u64().unwrap_or(0));
            }
            if !full {
                break;
            }
        }
        cursor = Cursor(if tail.len() > RECENT { tail[0] } else { 0 });
    }
    if !json {
        output::print(&format!("{:>8}  {:<24}  {:<22}  {:<20}  CHANGE", "ID", "AT", "TYPE", "INSTANCE"));
    }
    let interrupted = interrupt();
    tokio::pin!(interrupted);
    loop {
        let events = cursor.next(client.events(cursor.0, PAGE, &filters).await?)?;
        for event in &events {
            if json { output::print_json(event, false) } else { output::print(&event_line(event)) }
        }
        if !args.follow {
            return Ok(Exit::Done);
        }
        if events.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = &mut interrupted => return Ok(Exit::Done),
            }
        }
    }
}

/// Where the reading of the event log stands: the last id read.
struct Cursor(u64);

impl Cursor {
    /// The events of `page` (a `GET /v2/et/events` answer), the cursor moved past them.
    /// Ids must rise, from above the cursor, and the page's `after` must not fall
    /// behind them or the cursor: a page that repeats or goes back is an error, never a
    /// loop.
    fn next(&mut self, mut page: Value) -> Result<Vec<Value>, Failure> {
        let malformed = || Failure::failed("esm's event page is not what this client expects");
        let Value::Array(events) = page["events"].take() else { return Err(malformed()) };
        let after = page["after"].as_u64().ok_or_else(malformed)?;
        let mut last = self.0;
        for event in &events {
            let id = event["id"].as_u64().ok_or_else(malformed)?;
            if id <= last {
                return Err(Failure::failed(format!(
                    "esm's event log does not advance: event {id} came after {last}; stopped"
                )));
            }
            last = id;
        }
        if after < last {
            return Err(Failure::failed(format!(
                "esm's event log does not advance: its cursor {after} is behind event {last}; stopped"
            )));
        }
        self.0 = after;
        Ok(events)
    }
}

/// One event as a line: its fields escaped (by `text`) before they are padded.
fn event_line(event: &Value) -> String {
    let who = if event["instance_id"].is_string() { &event["instance_id"] } else { &event["member_id"] };
    let change = match (&event["from"], &event["to"]) {
        (from @ Value::String(_), to @ Value::String(_)) => format!("{} -> {}", text(from), text(to)),
        (Value::Null, to @ Value::String(_)) => text(to),
        _ => String::new(),
    };
    let reason = if event["reason"].is_string() { format!("  {}", text(&event["reason"])) } else { String::new() };
    format!(
        "{:>8}  {:<24}  {:<22}  {:<20}  {change}{reason}",
        text(&event["id"]),
        text(&event["at"]),
        text(&event["type"]),
        text(who)
    )
}
