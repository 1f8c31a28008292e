//! The overview, services and plans (with their manifests), pools, and the event feed.

use std::collections::{BTreeMap, VecDeque};

use axum::extract::State;
use maud::{Markup, html};
use serde_json::Value;

use super::{PageResult, page};
use crate::domain::event::Event;
use crate::domain::path::segment;
use crate::error::OsbError;
use crate::events::Filter;
use crate::web::{AppState, route};

/// How many recent events the overview and the feed start with.
const RECENT: u64 = 25;
/// How many of the newest events the overview counts operations and failures in.
const WINDOW: u64 = 1000;

/// Counts by state and liveness (the broker's census: no record is read),
/// pool fill, and the recent events with failures marked.
pub async fn overview(State(state): State<AppState>) -> PageResult {
    let broker = &state.broker;
    let (mut by_state, mut by_liveness) = (BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new());
    for ([_, _, state, liveness], n) in broker.inventory().census().await? {
        *by_state.entry(state).or_default() += n;
        *by_liveness.entry(liveness).or_default() += n;
    }
    let total: u64 = by_state.values().sum();
    let pools = broker.pools().statuses().await?;
    let log = broker.events();
    let window = log.page(&Filter::default(), log.delivered().saturating_sub(WINDOW), WINDOW as usize).await;
    let window = window.map_err(OsbError::from)?;
    let finished = |e: &&Event| e.kind.is_finished();
    let per_minute = window.iter().filter(finished).filter(|e| within_a_minute(&e.at)).count();
    let failures: Vec<Event> = window.iter().rev().filter(|e| e.kind.is_failure()).take(10).cloned().collect();
    let recent = recent_events(&state, &Filter::default()).await?;
    Ok(page(
        "Overview",
        html! {
            section.cards #counts data-refresh-on="" {
                div.card { h2 { "Instances" } p.big { (total) } }
                div.card { h2 { "By state" } (tally(&by_state, "state")) }
                div.card { h2 { "By liveness" } (tally(&by_liveness, "liveness")) }
                div.card { h2 { "Operations finished in the last minute" } p.big #per-minute { (per_minute) } }
            }
            h2 { "Recent failures" }
            @if failures.is_empty() { p { "None among the last " (WINDOW) " events." } } @else { (event_table(&failures)) }
            h2 { "Pools" }
            @if pools.is_empty() { p { "No pools." } }
            @for pool in &pools {
                p { (pool.plan_id) ": " (pool.ready) " ready of " (pool.size)
                    @if let Some(error) = &pool.last_error { " · " span.failed { (error.message) } } }
            }
            h2 { "Recent events" }
            (event_table(&recent))
        },
    ))
}

/// Counts as links to the instance table filtered by `field`.
fn tally(counts: &BTreeMap<String, u64>, field: &str) -> Markup {
    html! {
        ul.tally {
            @for (value, n) in counts {
                li { a href={ "/dashboard/instances?" (field) "=" (segment(value)) } { (value) } ": " (n) }
            }
        }
    }
}

/// Every service with its plans and their manifests.
pub async fn services(State(state): State<AppState>) -> PageResult {
    let catalog = state.broker.registrar().catalog().await?;
    let manifests = state.broker.registrar().list_manifests().await?;
    Ok(page(
        "Services and plans",
        html! {
            @if catalog.services.is_empty() { p { "No services are registered." } }
            @for service in &catalog.services {
                section.service {
                    h2 { (service.name) " " small { "(" (service.id) ")" } }
                    p { (service.description) }
                    p { "Bindable: " (service.bindable) }
                    @for plan in &service.plans {
                        h3 { "Plan " (plan.name) " " small { "(" (plan.id) ")" } }
                        p { (plan.description) }
                        @for manifest in manifests.iter().filter(|m| m.plan_id == plan.id) {
                            details {
                                summary { "Manifest " (manifest.id) " · " (manifest.manifest_type) }
                                pre { (manifest.manifest_content) }
                            }
                        }
                        p { a href={ "/dashboard/instances?plan_id=" (segment(&plan.id)) } { "Instances on this plan" } }
                    }
                }
            }
        },
    ))
}

/// Every pool, with drain and resize.
pub async fn pools(State(state): State<AppState>) -> PageResult {
    let pools = state.broker.pools().statuses().await?;
    Ok(page(
        "Pools",
        html! {
            @if pools.is_empty() {
                p { "No pools. A pool is set with " (route::SET_POOL.method) " " (route::SET_POOL.path) "." }
            }
            table #pools data-refresh-on="pool." {
                thead { tr { th { "Plan" } th { "Service" } th { "Size" } th { "Ready" } th { "Deploying" } th { "Broken" }
                             th { "Claimed" } th { "Misses" } th { "Last error" } th { "Actions" } } }
                tbody {
                    @for pool in &pools {
                        tr {
                            td { (pool.plan_id) } td { (pool.service_id) } td { (pool.size) } td { (pool.ready) }
                            td { (pool.deploying) } td { (pool.broken) } td { (pool.claimed_total) } td { (pool.misses_total) }
                            td { @if let Some(error) = &pool.last_error { span.failed { (error.message) } } }
                            td {
                                @if pool.draining { "draining" } @else {
                                    button.action data-action="resize" data-plan=(pool.plan_id) data-size=(pool.size) { "Resize" }
                                    " "
                                    button.action.danger data-action="drain" data-plan=(pool.plan_id) { "Drain" }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The live event feed: the recent events, then each new one as it happens.
pub async fn events(State(state): State<AppState>) -> PageResult {
    let recent = recent_events(&state, &Filter::default()).await?;
    Ok(page(
        "Events",
        html! {
            p { "New events appear at the top as they happen." }
            div #live data-feed="all" { (event_table(&recent)) }
        },
    ))
}

/// The newest events matching `filter`, newest first.
pub async fn recent_events(state: &AppState, filter: &Filter) -> Result<Vec<Event>, OsbError> {
    let log = state.broker.events();
    if filter.instance_id.is_none() {
        let after = log.delivered().saturating_sub(RECENT);
        let mut events = log.page(filter, after, RECENT as usize).await.map_err(OsbError::from)?;
        events.reverse();
        return Ok(events);
    }
    // One instance's events are spread over the log: read them from its index a page at a
    // time (the log holds at most ESM_EVENT_RETENTION events), keeping the newest.
    let mut newest: VecDeque<Event> = VecDeque::new();
    let mut after = 0;
    loop {
        let page = log.page(filter, after, 500).await.map_err(OsbError::from)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in page {
            if newest.len() == RECENT as usize {
                newest.pop_front();
            }
            newest.push_back(event);
        }
    }
    Ok(newest.into_iter().rev().collect())
}

/// Events as a table, newest first; failures marked.
pub fn event_table(events: &[Event]) -> Markup {
    html! {
        table.events {
            thead { tr { th { "#" } th { "At" } th { "Type" } th { "Instance" } th { "What" } } }
            tbody {
                @for event in events {
                    tr class=[event.kind.is_failure().then_some("failed")] {
                        td { (event.id) } td { (event.at) } td { (event.kind) }
                        td { @if let Some(id) = &event.instance_id {
                            a href={ "/dashboard/instances/" (segment(id)) } { (id) } } }
                        td { (summary(event)) }
                    }
                }
            }
        }
    }
}

/// `from → to`, and the reason, of an event.
fn summary(event: &Event) -> String {
    let value = serde_json::to_value(event).unwrap_or(Value::Null);
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut parts = Vec::new();
    if let (Some(from), Some(to)) = (text("from"), text("to")) {
        parts.push(format!("{from} → {to}"));
    }
    if let Some(reason) = text("reason").or_else(|| text("description")) {
        parts.push(reason);
    }
    parts.join(" · ")
}

/// Whether an RFC 3339 time is within the last minute.
fn within_a_minute(at: &str) -> bool {
    humantime::parse_rfc3339_weak(at)
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age.as_secs() < 60)
}
