//! The instance table (paged and filtered from the store's indexes, so it stays fast
//! with 100,000 instances: no backend is asked) and one instance.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{event_table, recent_events};
use super::{PageError, PageResult, page};
use crate::broker::InstanceFilter;
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::liveness::LivenessStatus;
use crate::domain::operation::OperationState;
use crate::domain::path::segment;
use crate::error::OsbError;
use crate::events::Filter;
use crate::web::AppState;

/// Rows a page shows unless asked otherwise, and the most it shows.
const ROWS: usize = 50;
const MAX_ROWS: usize = 500;

/// The table's filters and position.
#[derive(Debug, Default, Deserialize)]
pub struct TableQuery {
    service_id: Option<String>,
    plan_id: Option<String>,
    state: Option<String>,
    liveness: Option<String>,
    engine: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

impl TableQuery {
    /// The store filter; a state or liveness that is not one is a 400.
    fn filter(&self) -> Result<InstanceFilter, OsbError> {
        let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let state = non_empty(&self.state)
            .map(|s| {
                OperationState::parse(&s)
                    .ok_or_else(|| OsbError::BadRequest(format!("state {s:?} is not an operation state")))
            })
            .transpose()?;
        let liveness = non_empty(&self.liveness)
            .map(|s| {
                LivenessStatus::parse(&s)
                    .ok_or_else(|| OsbError::BadRequest(format!("liveness {s:?} is not a liveness")))
            })
            .transpose()?;
        Ok(InstanceFilter {
            service_id: non_empty(&self.service_id),
            plan_id: non_empty(&self.plan_id),
            state,
            liveness,
            backend: None,
            engine: non_empty(&self.engine),
        })
    }

    /// This query's filters as a query string, continuing after `after`.
    fn next(&self, after: &str) -> String {
        let mut parts = vec![format!("after={}", segment(after))];
        for (key, value) in [
            ("service_id", &self.service_id),
            ("plan_id", &self.plan_id),
            ("state", &self.state),
            ("liveness", &self.liveness),
            ("engine", &self.engine),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{key}={}", segment(value)));
            }
        }
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        parts.join("&")
    }
}

/// The instance table: filters, a page of rows, the link to the next page.
pub async fn list(State(state): State<AppState>, Query(query): Query<TableQuery>) -> PageResult {
    let filter = query.filter()?;
    let limit = query.limit.unwrap_or(ROWS).clamp(1, MAX_ROWS);
    let (instances, next) = state.broker.instances().instance_records_page(&filter, query.after.clone(), limit).await?;
    let selected = |value: &Option<String>, option: &str| value.as_deref() == Some(option);
    Ok(page(
        "Instances",
        html! {
            form.filters method="get" action="/dashboard/instances" {
                label { "Service " input name="service_id" value=[query.service_id.as_deref()]; }
                label { "Plan " input name="plan_id" value=[query.plan_id.as_deref()]; }
                label { "Engine " input name="engine" value=[query.engine.as_deref()]; }
                label { "State " select name="state" {
                    option value="" { "any" }
                    @for s in OperationState::ALL { option value=(s.as_str()) selected[selected(&query.state, s.as_str())] { (s.as_str()) } }
                } }
                label { "Liveness " select name="liveness" {
                    option value="" { "any" }
                    @for l in LivenessStatus::ALL { option value=(l.as_str()) selected[selected(&query.liveness, l.as_str())] { (l.as_str()) } }
                } }
                button type="submit" { "Filter" }
            }
            // Rows follow operations as they end (liveness cells change on their own).
            table #instances data-refresh-on="provision. update. deprovision." {
                thead { tr { th { "Instance" } th { "Service" } th { "Plan" } th { "Engine" } th { "State" } th { "Liveness" }
                             th { "Created" } } }
                tbody { @for instance in &instances { (row(instance)) } }
            }
            @if instances.is_empty() { p { "No instances match." } }
            @if let Some(after) = next { p { a.next href={ "/dashboard/instances?" (query.next(&after)) } { "Next page →" } } }
        },
    ))
}

/// One row; the script updates its liveness cell from the event stream.
fn row(instance: &ServiceInstance) -> Markup {
    let state = instance.operations.last().map_or("", |o| o.state.as_str());
    let liveness = instance.liveness.as_ref().map_or("unknown", |l| l.status.as_str());
    html! {
        tr data-instance=(instance.id) {
            td { a href={ "/dashboard/instances/" (segment(&instance.id)) } { (instance.id) } }
            td { (instance.service_id) } td { (instance.plan_id) } td { (instance.engine()) }
            td.state { (state) }
            td.liveness data-liveness=(liveness) { (liveness) }
            td { (instance.created_at) }
        }
    }
}

/// One instance: what it is, its liveness, its deployment, what it holds, its bindings
/// (never their credentials), its operations and its events; and deprovision.
pub async fn one(State(state): State<AppState>, Path(instance_id): Path<String>) -> PageResult {
    let broker = &state.broker;
    // A deprovisioned instance is still shown (from its tombstone), so the page an
    // operator deprovisioned from ends saying so, and a link to it stays good.
    let Some(instance) = broker.instances().instance_or_tombstone(&instance_id).await? else {
        return Err(PageError::from(OsbError::NotFound(format!("no instance {instance_id}"))));
    };
    let gone = instance.status == InstanceStatus::Deprovisioned;
    // The inventory may not know an instance yet (a provision still deploying): say so
    // rather than fail the page.
    let (resources, inventory_note) = match broker.inventory().instance_resources(&instance_id).await {
        _ if gone => (Vec::new(), Some("Deprovisioned: it holds nothing.".to_owned())),
        Ok(resources) => (resources, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let bindings = if gone { Vec::new() } else { broker.instances().bindings_of(&instance_id).await? };
    let filter = Filter { instance_id: Some(instance_id.clone()), ..Filter::default() };
    let events = recent_events(&state, &filter).await?;
    let liveness = instance.liveness.clone();
    let status = liveness.as_ref().map_or("unknown", |l| l.status.as_str());
    Ok(page(
        &format!("Instance {instance_id}"),
        html! {
            section #summary data-refresh-on="provision. update. deprovision." {
            dl {
                dt { "Status" } dd #instance-status { (status_text(instance.status)) }
                dt { "Service" } dd { (instance.service_id) }
                dt { "Plan" } dd { (instance.plan_id) }
                dt { "Engine" } dd #engine { a href="/dashboard/engines" { (instance.engine()) } }
                dt { "Manifest" } dd { (instance.manifest_id) " (" (instance.manifest_type.as_deref().unwrap_or("?")) ")" }
                dt { "Created" } dd { (instance.created_at) }
                dt { "Liveness" } dd #liveness data-instance=(instance_id) data-liveness=(status) {
                    span.liveness { (status) }
                    @if let Some(l) = &liveness { " · " (l.reason) " (since " (l.since) ")" }
                }
            }
            @if !gone {
                p {
                    button.action.danger data-action="deprovision" data-instance=(instance_id)
                        data-service=(instance.service_id) data-plan=(instance.plan_id) { "Deprovision" }
                }
            }
            }
            @if let Some(l) = &liveness {
                h2 { "Components" }
                table { thead { tr { th { "Name" } th { "Kind" } th { "Status" } th { "Reason" } } }
                    tbody { @for c in &l.components { tr { td { (c.name) } td { (c.kind) }
                        td { (serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                        td { (c.reason.as_deref().unwrap_or("")) } } } } }
            }
            h2 { "Deployment" }
            pre { (serde_json::to_string_pretty(&instance.deployment).unwrap_or_default()) }
            h2 { "Resources" }
        @if let Some(note) = &inventory_note { p { (note) } }
            table { thead { tr { th { "Type" } th { "Name" } th { "State" } th { "Backend" } th { "Since" } } }
                tbody { @for r in &resources { tr { td { (r.kind) } td { (r.name) } td { (r.state.as_str()) }
                    td { (r.backend) } td { (r.created_at) } } } } }
            h2 { "Bindings" }
            table { thead { tr { th { "Binding" } th { "App" } th { "Status" } th { "Created" } } }
                tbody { @for b in &bindings { tr { td { (b.id) } td { (b.app_guid.as_deref().unwrap_or("")) }
                    td { (format!("{:?}", b.status).to_lowercase()) } td { (b.created_at) } } } } }
            h2 { "Operations" }
            table #operations data-refresh-on="provision. update. deprovision. bind. unbind." { thead { tr { th { "Kind" } th { "State" } th { "Description" } } }
                tbody { @for o in instance.operations.iter().rev() { tr { td { (o.kind.as_str()) } td { (o.state.as_str()) }
                    td { (o.description.as_deref().unwrap_or("")) } } } } }
            h2 { "Events" }
            div #live data-feed=(instance_id) { (event_table(&events)) }
        },
    ))
}

/// An instance's status as the page says it.
fn status_text(status: InstanceStatus) -> &'static str {
    match status {
        InstanceStatus::Provisioning => "provisioning",
        InstanceStatus::Provisioned => "provisioned",
        InstanceStatus::ProvisionFailed => "provision failed",
        InstanceStatus::Deprovisioned => "deprovisioned",
    }
}
