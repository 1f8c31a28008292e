//! A drain's evacuation, in-process: a broker on the memory store with two dummy
//! engines holds INSTANCES (2,000) instances of a relocatable plan on `e1`, each bound
//! once; `e1` is drained and evacuation rounds run until it is empty. The baseline, in
//! the same run: the rate at which those instances were provisioned and bound, 4 at
//! once as the moves run. A move
//! is a deployment elsewhere, a first look at it, its bindings made again and the old
//! deployment removed, each a write or more: the ratio says what a move costs against
//! a provision and a bind.
//!
//! `cargo run --release --example evacuation [INSTANCES]`

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use esm::broker::{Broker, ScheduleChange};
use esm::domain::bounded::EngineName;
use esm::domain::engine::{EngineSpec, Source};
use futures_util::StreamExt;
use serde_json::json;

async fn broker() -> Arc<Broker> {
    let rule = json!({"requires": {"bench": "yes"}, "relocatable": true});
    let broker = common::broker_with_plan(Some(json!({"placement": rule}))).await;
    for name in ["e1", "e2"] {
        let spec: EngineSpec =
            serde_json::from_value(json!({"backend": "dummy", "labels": {"bench": "yes"}})).expect("a spec");
        broker.engines().put(&engine(name), spec, Source::Api).await.expect("declared");
    }
    broker
}

fn engine(name: &str) -> EngineName {
    EngineName::parse(name).expect("a name")
}

#[tokio::main]
async fn main() {
    let instances: usize = std::env::args().nth(1).map_or(2_000, |a| a.parse().expect("a number"));
    let broker = broker().await;
    broker.engines().change_schedule(&engine("e2"), ScheduleChange::Cordon).await.expect("cordon");
    let provision =
        serde_json::from_value(json!({"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s"}))
            .expect("a request");
    let bind = serde_json::from_value(json!({"service_id": "s", "plan_id": "p"})).expect("a request");
    let started = Instant::now();
    // As many at once as the evacuation runs moves (4).
    let made = futures_util::stream::iter(0..instances).for_each_concurrent(4, |n| {
        let (broker, provision, bind) = (&broker, Clone::clone(&provision), Clone::clone(&bind));
        async move {
            let id = format!("i-{n:06}");
            broker.instances().provision(&id, provision, false).await.expect("placed");
            broker.bindings().bind(&id, &format!("b-{n:06}"), bind, false).await.expect("bound");
        }
    });
    made.await;
    let made = started.elapsed();
    broker.engines().change_schedule(&engine("e2"), ScheduleChange::Uncordon).await.expect("uncordon");

    let started = Instant::now();
    broker.engines().change_schedule(&engine("e1"), ScheduleChange::Drain).await.expect("drain");
    let mut rounds = 0;
    while broker.engines().get(&engine("e1")).await.expect("e1").instances > 0 {
        broker.engines().evacuate_round().await.expect("a round");
        rounds += 1;
    }
    let moved = started.elapsed();
    let on_e2 = broker.engines().get(&engine("e2")).await.expect("e2").instances;
    assert_eq!(on_e2, instances as u64, "every instance moved");

    let made_rate = instances as f64 / made.as_secs_f64();
    let moved_rate = instances as f64 / moved.as_secs_f64();
    println!("examples/evacuation.rs  {instances} instances with a binding each, 2 dummy engines, memory store");
    println!("{:<52} {:>10}", "", "per s");
    println!("{:<52} {made_rate:>10.0}", "provision + bind, 4 at once (baseline)");
    println!("{:<52} {moved_rate:>10.0}", "moved off a drained engine (4 at once)");
    println!("{:<52} {:>10.2}", "moves / (provision + bind)", moved_rate / made_rate);
    println!("{:<52} {rounds:>10}", "evacuation rounds it took (64 moves each at most)");
}
