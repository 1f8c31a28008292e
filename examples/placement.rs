//! Placement at scale, in-process (no HTTP, no load generator between): a broker on the
//! memory store with ENGINES (100) dummy engines holds INSTANCES (100,000) instances
//! placed on them; then SAMPLES (5,000) provisions one at a time, timed, against the
//! same on a broker whose plan has no placement rule and holds as many instances. The
//! difference is what placement adds to a provision. Also: how long reading every
//! engine's load from the instance index takes (what a placement's copy of the fleet
//! does at most once a second).
//!
//! `cargo run --release --example placement [ENGINES] [INSTANCES] [SAMPLES]`

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use esm::broker::Broker;
use esm::domain::bounded::EngineName;
use esm::domain::engine::{EngineSpec, Source};
use esm::store::{Collection, index};
use esm::wire::ProvisionRequest;
use serde_json::{Value, json};

async fn broker(rule: Option<Value>) -> Arc<Broker> {
    common::broker_with_plan(rule.map(|rule| json!({"placement": rule}))).await
}

fn request() -> ProvisionRequest {
    serde_json::from_value(json!({"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s"}))
        .expect("a request")
}

/// Provisions `count` instances `prefix-<n>`, `parallel` at a time.
async fn fill(broker: &Arc<Broker>, prefix: &str, count: usize, parallel: usize) {
    let mut next = 0;
    while next < count {
        let batch: Vec<_> = (next..count.min(next + parallel))
            .map(|n| {
                let broker = Arc::clone(broker);
                let id = format!("{prefix}-{n:07}");
                tokio::spawn(async move { broker.instances().provision(&id, request(), false).await.expect("placed") })
            })
            .collect();
        for task in batch {
            task.await.expect("a provision task");
        }
        next += parallel;
    }
}

/// The p50 and p99 of `samples` provisions one at a time, in ms.
async fn timed(broker: &Arc<Broker>, samples: usize) -> (f64, f64) {
    let mut took: Vec<Duration> = Vec::with_capacity(samples);
    for n in 0..samples {
        let id = format!("timed-{n:07}");
        let start = Instant::now();
        broker.instances().provision(&id, request(), false).await.expect("placed");
        took.push(start.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let engines = args.next().unwrap_or(100);
    let instances = args.next().unwrap_or(100_000);
    let samples = args.next().unwrap_or(5_000);

    let placed = broker(Some(json!({"requires": {"bench": "yes"}}))).await;
    for n in 0..engines {
        let spec: EngineSpec = serde_json::from_value(
            json!({"backend": "dummy", "labels": {"bench": "yes"}, "capacity": {"instances": 1_000_000}}),
        )
        .expect("a spec");
        let name = EngineName::parse(format!("e{n}")).expect("a name");
        placed.engines().put(&name, spec, Source::Api).await.expect("declared");
    }
    let started = Instant::now();
    fill(&placed, "fill", instances, 64).await;
    let fill_placed = started.elapsed();
    let flat = broker(None).await;
    let started = Instant::now();
    fill(&flat, "fill", instances, 64).await;
    let fill_flat = started.elapsed();

    let (p50_placed, p99_placed) = timed(&placed, samples).await;
    let (p50_flat, p99_flat) = timed(&flat, samples).await;
    let mut counts = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let loads = placed.store().counts(Collection::Instances, index::ENGINE).await.expect("counts");
        counts.push(start.elapsed());
        assert_eq!(loads.len(), engines, "one load per engine");
    }
    counts.sort();

    println!(
        "examples/placement.rs  {engines} engines, {instances} instances, {samples} timed provisions, memory store"
    );
    println!("{:<48} {:>10} {:>10}", "", "p50 ms", "p99 ms");
    println!("{:<48} {p50_placed:>10.3} {p99_placed:>10.3}", "provision, placed over the engines");
    println!("{:<48} {p50_flat:>10.3} {p99_flat:>10.3}", "provision, no placement rule");
    println!(
        "{:<48} {:>10.3} {:>10.3}",
        "placement's cost (goal: p99 <= 1 ms)",
        p50_placed - p50_flat,
        p99_placed - p99_flat
    );
    println!(
        "{:<48} {:>10.3}",
        "loads of every engine from the index, median ms",
        counts[counts.len() / 2].as_secs_f64() * 1000.0
    );
    println!(
        "{:<48} {:>10.0} {:>10.0}",
        "fill rate, provisions/s (placed, no rule)",
        instances as f64 / fill_placed.as_secs_f64(),
        instances as f64 / fill_flat.as_secs_f64()
    );
}
