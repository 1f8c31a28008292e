//! The engines instances are placed on: each one's state (marked when it takes no
//! placements), how full it is, its labels, and what its probes last said. Read-only:
//! cordon, uncordon and drain are the API's (`/v2/et/engines/{name}/…`).

use axum::extract::State;
use maud::{Markup, html};

use super::{PageResult, page};
use crate::domain::engine::EngineState;
use crate::domain::path::segment;
use crate::web::{AppState, route};
use crate::wire::EngineView;

/// Every engine, `default` first, then by name.
pub async fn list(State(state): State<AppState>) -> PageResult {
    let engines = state.broker.engines().list().await?;
    Ok(page(
        "Engines",
        html! {
            p { "Engines are declared with " (route::PUT_ENGINE.method) " " (route::PUT_ENGINE.path)
                " (or in " code { "ESM_ENGINES_FILE" } "), and cordoned, uncordoned or drained through the API." }
            // Counts follow placements and removals; states change with the probes and
            // the operator's calls, seen at the next load.
            table #engines data-refresh-on="provision. deprovision. pool. relocate. instance.relocated engine." {
                thead { tr { th { "Engine" } th { "Backend" } th { "State" } th { "Capacity used" } th { "Labels" }
                             th { "Instances" } th { "Last probe" } th { "Problem" } th { "Facts" } } }
                tbody { @for engine in &engines { (row(engine)) } }
            }
        },
    ))
}

/// One engine's row.
fn row(engine: &EngineView) -> Markup {
    let state = engine.state.as_str();
    html! {
        tr data-engine=(engine.name) {
            td { a href={ "/dashboard/instances?engine=" (segment(&engine.name)) } { (engine.name) } }
            td { (engine.backend.as_str()) }
            td.engine-state data-state=(state) {
                @if engine.state == EngineState::Active { (state) } @else { strong { (state) } }
                @if let Some(since) = &engine.unreachable_since { br; small { "since " (since) } }
                @if let Some(e) = &engine.evacuation {
                    br; small.evacuation { (e.to_move) " to move, " (e.moving) " moving, " (e.leaving) " leaving, "
                                           (e.staying) " staying" @if !e.counted_all { " (of the first 1000)" } }
                }
            }
            td {
                (used(engine))
                @if let (Some(cpus), Some(used)) = (engine.capacity.cpus, engine.used.as_ref().and_then(|u| u.cpus)) {
                    br; small { (used) " / " (serde_json::json!(cpus)) " CPUs" }
                }
                @if let (Some(memory), Some(used)) = (engine.capacity.memory, engine.used.as_ref().and_then(|u| u.memory)) {
                    br; small { (gib(used)) " / " (gib(memory.bytes())) " GiB" }
                }
            }
            td { @if engine.labels.is_empty() { "—" } @else {
                ul.labels { @for (key, value) in engine.labels.iter() { li { code { (key) "=" (value) } } } }
            } }
            td { (engine.instances) }
            td { (engine.last_probe.as_deref().unwrap_or("—")) }
            td { @if let Some(problem) = &engine.problem { span.failed { (problem) } } }
            td { (engine.facts.as_deref().unwrap_or("")) }
        }
    }
}

/// `instances / capacity`, or `instances / unlimited`.
fn used(engine: &EngineView) -> String {
    match engine.capacity.instances {
        Some(capacity) => format!("{} / {capacity}", engine.instances),
        None => format!("{} / unlimited", engine.instances),
    }
}

/// Bytes as GiB, one decimal.
fn gib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let gib = bytes as f64 / f64::from(1u32 << 30);
    format!("{gib:.1}")
}
