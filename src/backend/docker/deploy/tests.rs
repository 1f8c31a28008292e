//! The template against a scripted runtime, on paused Tokio time: the order of the
//! steps, the waiting, the clean-up, and the error flags.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use futures_util::stream::{self, BoxStream, StreamExt};

use super::*;
use crate::backend::docker::spec::Resource;
use crate::manifest::Policy;

/// A runtime that records what it is asked and answers from a script.
#[derive(Default)]
struct Scripted {
    log: Mutex<Vec<String>>,
    /// What each unit's state reads, poll after poll; the last answer repeats. A unit
    /// with no script runs, healthy, at once.
    states: Mutex<HashMap<String, VecDeque<UnitState>>>,
    /// The resources asked for, as given.
    resources: Mutex<Vec<Resource>>,
    /// The unit whose creation fails.
    failing: Option<&'static str>,
    /// Clearing fails (a deprovision that cannot finish).
    clear_fails: bool,
    /// How long making a unit takes (a busy engine).
    start_delay: Duration,
    /// What `changes` hands out (once).
    changes: Mutex<Option<BoxStream<'static, ()>>>,
    /// The poll interval, if not the default.
    poll: Option<Duration>,
}

impl Scripted {
    fn with_states(self, unit: &str, states: impl IntoIterator<Item = UnitState>) -> Self {
        self.states.lock().unwrap().insert(unit.to_owned(), states.into_iter().collect());
        self
    }

    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn log(&self) -> Vec<String> {
        let mut log = self.log.lock().unwrap().clone();
        // Polls of one unit in a row read as one line.
        log.dedup();
        log
    }
}

#[async_trait::async_trait]
impl Runtime for Scripted {
    fn units(&self) -> &'static str {
        "things"
    }

    async fn clear(&self, instance_id: &str, keep_volumes: bool) -> Result<(), BackendError> {
        self.note(format!("clear {instance_id} keep_volumes={keep_volumes}"));
        if self.clear_fails { Err(BackendError::new("the engine went away")) } else { Ok(()) }
    }

    async fn provide(&self, need: Need<'_>) -> Result<(), BackendError> {
        let line = match need {
            Need::Image(image) => format!("image {image}"),
            Need::Network(r) | Need::Volume(r) => {
                self.resources.lock().unwrap().push(r.clone());
                let kind = if matches!(need, Need::Network(_)) { "network" } else { "volume" };
                format!("{kind} {}{}", r.name, if r.labels.is_none() { " (external)" } else { "" })
            }
        };
        self.note(line);
        Ok(())
    }

    async fn create_unit(&self, unit: &Unit<'_>) -> Result<Handle, BackendError> {
        self.note(format!("create {}", unit.name));
        tokio::time::sleep(self.start_delay).await;
        if self.failing == Some(unit.name) {
            return Err(BackendError::new(format!("cannot create {}", unit.name)));
        }
        Ok(Handle { id: format!("id-{}", unit.name), name: format!("{}_{}", unit.project, unit.name) })
    }

    async fn unit_state(&self, unit: &Unit<'_>, handle: &Handle) -> Result<UnitState, BackendError> {
        assert_eq!(handle.id, format!("id-{}", unit.name));
        self.note(format!("state {}", unit.name));
        let mut states = self.states.lock().unwrap();
        let Some(script) = states.get_mut(unit.name) else { return Ok(UnitState::Running { healthy: true }) };
        Ok(if script.len() > 1 { script.pop_front() } else { script.front().cloned() }
            .unwrap_or(UnitState::Running { healthy: true }))
    }

    fn changes(&self, _instance_id: &str, _since: std::time::SystemTime) -> Option<BoxStream<'static, ()>> {
        self.changes.lock().unwrap().take()
    }

    fn poll_interval(&self) -> Duration {
        self.poll.unwrap_or(POLL)
    }
}

/// `a` has a health check that `b` waits for; `c` only starts after `b`.
const MANIFEST: &str = r#"
services:
  a:
    image: esm-test/a:1
    healthcheck: {test: [CMD, "true"]}
    volumes: ["data:/data", "shared:/shared"]
  b:
    image: esm-test/b:1
    depends_on: {a: {condition: service_healthy}}
    networks: [back]
  c:
    image: esm-test/a:1
    depends_on: [b]
networks:
  back:
volumes:
  data: {x-esm-keep: true, labels: {backup: daily}}
  shared: {external: true, name: operators-volume}
"#;

fn compose() -> Compose {
    Compose::parse(MANIFEST, &Policy { allow_external: true, ..Policy::default() }).expect("the manifest parses")
}

/// No host ports leased (the engine picks).
static NO_HOST_PORTS: BTreeMap<String, u16> = BTreeMap::new();

fn order(compose: &Compose) -> Order<'_> {
    Order {
        instance_id: "i-1",
        parameters: None,
        manifest_id: "m-1",
        compose,
        owner: "tests",
        ready_timeout: Duration::from_secs(30),
        host_ports: &NO_HOST_PORTS,
    }
}

const HEALTHY: UnitState = UnitState::Running { healthy: true };
const UNHEALTHY_YET: UnitState = UnitState::Running { healthy: false };

#[tokio::test(start_paused = true)]
async fn a_provision_starts_clean_makes_everything_in_order_and_waits_for_healthy_dependencies() {
    let runtime = Scripted::default().with_states("a", [UnitState::Starting, UNHEALTHY_YET, UNHEALTHY_YET, HEALTHY]);
    let compose = compose();
    let deployment = provision(&runtime, &order(&compose)).await.expect("deployed");
    let log = runtime.log();
    let made = log.iter().position(|l| l == "create c").map_or(log.len(), |i| i + 1);
    assert_eq!(
        log[..made],
        [
            "clear i-1 keep_volumes=true",
            "image esm-test/a:1",
            "image esm-test/b:1",
            "network tests-i-1_back",
            "network tests-i-1_default",
            "volume tests-i-1_data",
            "volume operators-volume (external)",
            "create a",
            "state a",
            "create b",
            "state b",
            "create c",
        ]
    );
    // A first look at c, then all three, until each has been up long enough.
    assert_eq!(log[made..made + 4], ["state c", "state a", "state b", "state c"]);
    assert!(log[made..].iter().all(|l| l.starts_with("state ")), "{log:?}");
    let details = serde_json::Value::Object(deployment.details);
    assert_eq!(details["project"], "tests-i-1");
    assert_eq!(details["things"]["b"], json!({"id": "id-b", "name": "tests-i-1_b"}));
}

#[tokio::test(start_paused = true)]
async fn volumes_esm_makes_carry_the_manifests_labels_and_keep_and_external_ones_are_only_checked() {
    let runtime = Scripted::default();
    let compose = compose();
    provision(&runtime, &order(&compose)).await.expect("deployed");
    let resources = runtime.resources.lock().unwrap().clone();
    let data = resources.iter().find(|r| r.name == "tests-i-1_data").expect("the volume");
    let labels = data.labels.as_ref().expect("made by esm");
    assert_eq!(labels["backup"], "daily");
    assert_eq!(labels[labels::KEEP], "true");
    assert_eq!(labels[labels::INSTANCE], "i-1");
    assert_eq!(labels[labels::OWNER], "tests");
    let external = resources.iter().find(|r| r.name == "operators-volume").expect("the external volume");
    assert_eq!(external.labels, None);
}

#[tokio::test(start_paused = true)]
async fn a_failed_provision_removes_what_it_made_volumes_included() {
    let runtime = Scripted { failing: Some("b"), ..Scripted::default() };
    let compose = compose();
    let error = provision(&runtime, &order(&compose)).await.expect_err("fails");
    assert_eq!(error, BackendError::new("cannot create b"));
    let log = runtime.log();
    assert_eq!(log.last().map(String::as_str), Some("clear i-1 keep_volumes=false"), "{log:?}");
    assert!(!log.contains(&"create c".to_owned()), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_update_keeps_the_volumes_and_says_the_instance_is_down_and_may_be_retried() {
    let runtime = Scripted::default().with_states("b", [UnitState::Failed("container b stopped".into())]);
    let compose = compose();
    let error = update(&runtime, &order(&compose)).await.expect_err("fails");
    assert_eq!(error.message, "container b stopped");
    assert_eq!((error.instance_usable, error.update_repeatable), (Some(false), Some(true)));
    let log = runtime.log();
    assert_eq!(log.last().map(String::as_str), Some("clear i-1 keep_volumes=true"));
    // Seen stopped at the first look after making it: `c` is never made.
    assert!(!log.contains(&"create c".to_owned()), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_deprovision_says_the_instance_is_not_usable() {
    let runtime = Scripted { clear_fails: true, ..Scripted::default() };
    let error = deprovision(&runtime, "i-1").await.expect_err("fails");
    assert_eq!((error.instance_usable, error.update_repeatable), (Some(false), None));
    assert_eq!(runtime.log(), ["clear i-1 keep_volumes=false"]);
    let runtime = Scripted::default();
    deprovision(&runtime, "i-1").await.expect("removed");
}

fn solo() -> Compose {
    Compose::parse("services:\n  solo:\n    image: esm-test/a:1\n", &Policy::default()).expect("parses")
}

/// How long `compose` took to deploy on `runtime`.
async fn deploy_time(runtime: &Scripted, compose: &Compose) -> Duration {
    let start = Instant::now();
    provision(runtime, &order(compose)).await.expect("deployed");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_unit_that_starts_at_once_is_ready_after_the_settle_time() {
    let waited = deploy_time(&Scripted::default(), &solo()).await;
    assert!(waited >= SETTLE && waited < SETTLE * 2, "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_unit_slow_to_start_must_keep_running_half_as_long_as_it_took_up_to_a_second() {
    let slow = Duration::from_millis(400);
    let waited = deploy_time(&Scripted { start_delay: slow, ..Scripted::default() }, &solo()).await;
    assert!(waited >= slow + slow / 2 && waited < slow + slow / 2 + SETTLE, "{waited:?}");

    let very_slow = Duration::from_secs(5);
    let waited = deploy_time(&Scripted { start_delay: very_slow, ..Scripted::default() }, &solo()).await;
    assert!(waited >= very_slow + MAX_SETTLE && waited < very_slow + MAX_SETTLE + SETTLE, "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_unit_restarting_settles_again_from_when_it_runs_again() {
    let runtime = Scripted::default().with_states("c", [HEALTHY, UnitState::Starting, HEALTHY]);
    let waited = deploy_time(&runtime, &compose()).await;
    // `a` settles, then `b` and `c` would at the next settle time, but `c` was seen
    // starting again then: it must settle once more from when it runs again.
    assert!(waited >= SETTLE * 3, "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_change_wakes_the_wait_before_the_next_poll() {
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    let changes = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|()| ((), rx)) }).boxed();
    let runtime =
        Scripted { changes: Mutex::new(Some(changes)), poll: Some(Duration::from_secs(10)), ..Scripted::default() }
            .with_states("solo", [UnitState::Starting, UnitState::Starting, HEALTHY]);
    let compose = solo();
    let start = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(()).await.expect("the wait listens");
        // Held open: the stream has not ended.
        std::future::pending::<()>().await;
    });
    provision(&runtime, &order(&compose)).await.expect("deployed");
    // Running at the change (1 s after it was asked for), then half as long again.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(2), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn when_the_changes_end_the_wait_polls() {
    let runtime = Scripted { changes: Mutex::new(Some(stream::empty().boxed())), ..Scripted::default() }
        .with_states("solo", [const { UnitState::Starting }; 5].into_iter().chain([HEALTHY]));
    let waited = deploy_time(&runtime, &solo()).await;
    // Five looks at a starting unit: the first, one before the stream's end is seen,
    // then one per poll.
    assert!(waited >= POLL * 3, "polled, not spun: {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn units_that_never_get_ready_fail_the_deployment_at_the_timeout() {
    let runtime = Scripted::default().with_states("c", [UnitState::Starting]);
    let compose = compose();
    let start = Instant::now();
    let error = provision(&runtime, &order(&compose)).await.expect_err("times out");
    assert_eq!(error.message, "things a, b, c were not ready within 30s");
    // The timeout counts from the last wait: `b` first waited for `a` to settle.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(30) + SETTLE && waited < Duration::from_secs(31), "{waited:?}");
    assert_eq!(runtime.log().last().map(String::as_str), Some("clear i-1 keep_volumes=false"));
}

#[tokio::test(start_paused = true)]
async fn a_dependency_that_never_gets_healthy_stops_the_deployment_before_its_dependents() {
    let runtime = Scripted::default().with_states("a", [UNHEALTHY_YET]);
    let compose = compose();
    let error = provision(&runtime, &order(&compose)).await.expect_err("times out");
    assert_eq!(error.message, "things a were not ready within 30s");
    assert!(!runtime.log().contains(&"create b".to_owned()));
}
