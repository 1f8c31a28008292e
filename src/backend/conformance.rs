//! One conformance suite every [`Backend`] must pass, run unchanged against the dummy,
//! docker-compose, docker-swarm and Kubernetes backends (see
//! `tests/broker/backend_conformance.rs`, `tests/docker/conformance.rs` and
//! `tests/kubernetes/backend.rs`). The broker re-runs interrupted operations and
//! reconciliation removes what no live instance owns, so every backend must agree: each
//! call idempotent, a failed provision leaving nothing, `held` / `remove_instance`
//! exact, and `observe` (where a backend can observe) seeing a fresh deployment up and
//! a removed one gone.
//!
//! The cases run at once, each on a backend of its own: for the Docker backends one
//! with an owner name (`ESM_NAME`) no one else uses, so `held` is checked to
//! list exactly what the case holds, nothing of other cases, tests or sessions on the
//! same engine. Instance ids are unique to the run, and the runner removes whatever a
//! case still holds when it fails.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::TryStreamExt;
use serde_json::json;
use tokio::task::{JoinError, JoinHandle};

use super::Backend;
use crate::domain::binding::{Binding, BindingMetadata, BindingStatus};
use crate::domain::instance::{InstanceMetadata, InstanceStatus, ServiceInstance};
use crate::domain::liveness::ComponentStatus;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationLog;
use crate::domain::resource::Holding;

/// The backend under test and the manifests it deploys.
pub struct Subject {
    /// Makes the backend for one case: each call with an owner name of its own.
    pub new_backend: Box<dyn Fn() -> Arc<dyn Backend> + Send + Sync>,
    /// A manifest that deploys at least one service, binds and redeploys.
    pub manifest: Manifest,
    /// A manifest the backend accepts at registration but fails to provision.
    pub failing: Manifest,
}

/// Runs every case; panics with the first failing case's name and what it saw, once
/// all have finished and cleaned up.
pub async fn run(subject: Subject) {
    let subject = Arc::new(subject);
    // Short: the Docker backends name projects after instance ids.
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let cases = [
        start(&subject, &run, "twice", provision_twice_is_idempotent),
        start(&subject, &run, "update", update_keeps_the_instance),
        start(&subject, &run, "gone", deprovision_of_what_is_gone_succeeds),
        start(&subject, &run, "failed", a_failed_provision_leaves_nothing),
        start(&subject, &run, "bind", bind_gives_credentials_and_unbind_succeeds),
        start(&subject, &run, "info", info_describes_a_provisioned_instance),
        start(&subject, &run, "reconcile", held_and_remove_instance_are_exact),
        start(&subject, &run, "observe", observe_follows_the_deployment),
    ];
    let mut first_failure = None;
    for case in cases {
        if let Err(failure) = case.await.expect("the case runner does not panic") {
            first_failure.get_or_insert(failure);
        }
    }
    if let Some(failure) = first_failure {
        match failure.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a conformance case did not finish: {e}"),
        }
    }
}

/// A manifest for backend tests: service `svc`, plan `plan`, id `<prefix>-<type>`.
pub fn manifest(prefix: &str, manifest_type: &str, content: String) -> Manifest {
    Manifest {
        id: format!("{prefix}-{manifest_type}"),
        service_id: "svc".into(),
        plan_id: "plan".into(),
        manifest_type: manifest_type.into(),
        manifest_content: content,
        endpoints: None,
        config: None,
    }
}

/// A new instance `id` of `manifest`, about to be provisioned, as the broker hands it
/// to a backend.
pub fn instance(id: &str, manifest: &Manifest) -> ServiceInstance {
    ServiceInstance {
        id: id.to_owned(),
        service_id: manifest.service_id.clone(),
        plan_id: manifest.plan_id.clone(),
        organization_guid: "org".into(),
        space_guid: "space".into(),
        context: None,
        parameters: None,
        maintenance_info: None,
        metadata: InstanceMetadata::default(),
        dashboard_url: None,
        manifest_id: manifest.id.clone(),
        manifest_type: Some(manifest.manifest_type.clone()),
        status: InstanceStatus::Provisioning,
        deployment: serde_json::Map::new(),
        operations: OperationLog::default(),
        created_at: crate::clock::Clock::system().timestamp(),
        liveness: None,
        deployment_id: None,
        pool: None,
        host_ports: Default::default(),
        outbox: Default::default(),
        engine: None,
        retiring: None,
    }
}

/// One case's view: its backend and manifests, and instances named for this run and case.
struct Case {
    backend: Arc<dyn Backend>,
    subject: Arc<Subject>,
    prefix: String,
    /// Every id handed out, for the clean-up after a failure.
    made: Arc<Mutex<Vec<String>>>,
}

impl Case {
    fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// A new instance of the subject's manifest (`n` tells a case's instances apart).
    fn instance(&self, n: char) -> ServiceInstance {
        self.instance_of(n, &self.subject.manifest)
    }

    fn instance_of(&self, n: char, manifest: &Manifest) -> ServiceInstance {
        let id = format!("{}-{n}", self.prefix);
        self.made.lock().unwrap_or_else(PoisonError::into_inner).push(id.clone());
        ServiceInstance { parameters: Some(json!({"CONFORMANCE": "1"})), ..instance(&id, manifest) }
    }

    /// Provisions, panicking with the backend's message if that fails.
    async fn provisioned(&self, n: char) -> ServiceInstance {
        let mut instance = self.instance(n);
        let deployment = self.backend().provision(&instance, &self.subject.manifest).await;
        instance.deployment = deployment.unwrap_or_else(|e| panic!("provision {}: {e}", instance.id)).details;
        instance.status = InstanceStatus::Provisioned;
        instance
    }

    async fn deprovision(&self, instance: &ServiceInstance) {
        let outcome = self.backend().deprovision(instance, Some(&self.subject.manifest)).await;
        outcome.unwrap_or_else(|e| panic!("deprovision {}: {e}", instance.id));
    }

    /// Asserts the backend holds exactly these instances: nothing of other owners on
    /// the same engine (other cases, tests, sessions). Each instance's own listing is
    /// what the full one says of it.
    async fn assert_owned(&self, expected: &[&ServiceInstance]) {
        let all = self.backend().held(None).await.expect("held");
        // The paged listing holds the same, owners ascending, each owner's in one page.
        let pages: Vec<Vec<Holding>> = self.backend().listing().try_collect().await.expect("listing");
        let page_owners: Vec<Vec<&str>> = pages
            .iter()
            .map(|page| {
                let mut owners: Vec<&str> = page.iter().map(|h| h.owner.as_str()).collect();
                owners.dedup();
                owners
            })
            .collect();
        let flat = page_owners.concat();
        assert!(flat.windows(2).all(|w| w[0] < w[1]), "owners ascending, each in one page: {page_owners:?}");
        let by_name = |h: &Holding| (h.owner.clone(), h.kind.clone(), h.name.clone());
        let (mut listed, mut whole) = (pages.concat(), all.clone());
        listed.sort_by_key(by_name);
        whole.sort_by_key(by_name);
        assert_eq!(listed, whole, "the listing pages what held(None) answers");
        let owners: BTreeSet<String> = all.iter().filter(|h| !h.kept).map(|h| h.owner.clone()).collect();
        let expected_ids: BTreeSet<String> = expected.iter().map(|i| i.id.clone()).collect();
        assert_eq!(owners, expected_ids, "held: {all:?}");
        for instance in expected {
            let own = self.backend().held(Some(&instance.id)).await.expect("held by one");
            let mut from_all: Vec<_> = all.iter().filter(|h| h.owner == instance.id).cloned().collect();
            from_all.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
            let mut own_sorted = own.clone();
            own_sorted.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
            assert_eq!(own_sorted, from_all, "{}'s own listing", instance.id);
        }
    }
}

/// Starts one case in a task of its own, so that a failing case still gets its
/// instances removed; the task's outcome is the case's.
fn start<F, Fut>(subject: &Arc<Subject>, run: &str, name: &'static str, body: F) -> JoinHandle<Result<(), JoinError>>
where
    F: FnOnce(Case) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let backend = (subject.new_backend)();
    let made = Arc::new(Mutex::default());
    let case = Case {
        backend: backend.clone(),
        subject: subject.clone(),
        prefix: format!("c{run}-{name}"),
        made: made.clone(),
    };
    let body = tokio::spawn(body(case));
    tokio::spawn(async move {
        let outcome = body.await;
        let made: Vec<String> = made.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for id in &made {
            if let Err(e) = backend.remove_instance(id).await {
                eprintln!("backend conformance: could not clean up {id}: {e}");
            }
        }
        if outcome.is_err() {
            eprintln!("backend conformance: case {name:?} of {} failed", backend.name());
        }
        outcome
    })
}

/// Provisioning again (as esm does after a crash mid-operation) gives the same
/// deployment, not a second one.
async fn provision_twice_is_idempotent(case: Case) {
    let first = case.provisioned('a').await;
    let services = case.backend().info(&first, &case.subject.manifest).await.expect("info").containers.len();
    let again = case.provisioned('a').await;
    let keys = |i: &ServiceInstance| i.deployment.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&again), keys(&first), "the same shape of deployment");
    let info = case.backend().info(&again, &case.subject.manifest).await.expect("info");
    assert_eq!(info.containers.len(), services, "no duplicates: {:?}", info.containers);
    case.assert_owned(&[&again]).await;
    case.deprovision(&again).await;
    case.assert_owned(&[]).await;
}

async fn update_keeps_the_instance(case: Case) {
    let mut instance = case.provisioned('a').await;
    instance.parameters = Some(json!({"CONFORMANCE": "2"}));
    let deployment = case.backend().update(&instance, &case.subject.manifest).await.expect("update");
    instance.deployment = deployment.details;
    case.assert_owned(&[&instance]).await;
    let info = case.backend().info(&instance, &case.subject.manifest).await.expect("info after update");
    assert_eq!(info.problem, None, "{info:?}");
    case.deprovision(&instance).await;
    case.assert_owned(&[]).await;
}

/// Deprovision is repeated by the platform and by esm; what is gone is success.
async fn deprovision_of_what_is_gone_succeeds(case: Case) {
    let instance = case.provisioned('a').await;
    case.deprovision(&instance).await;
    case.assert_owned(&[]).await;
    case.deprovision(&instance).await;
    case.deprovision(&case.instance('b')).await;
    // An instance whose manifest is gone (esm 0.1 records) is found without it.
    let legacy = case.provisioned('c').await;
    case.backend().deprovision(&legacy, None).await.expect("deprovision without the manifest");
    case.assert_owned(&[]).await;
}

/// Orphan mitigation: the platform is told the provision failed, so nothing of it may
/// stay behind (and deprovisioning it after still succeeds).
async fn a_failed_provision_leaves_nothing(case: Case) {
    let failing = &case.subject.failing;
    case.backend().check_manifest(failing).expect("the failing manifest passes registration");
    let instance = case.instance_of('a', failing);
    assert!(case.backend().provision(&instance, failing).await.is_err(), "the provision fails");
    case.assert_owned(&[]).await;
    case.backend().deprovision(&instance, Some(failing)).await.expect("deprovision after a failed provision");
    case.assert_owned(&[]).await;
}

async fn bind_gives_credentials_and_unbind_succeeds(case: Case) {
    let instance = case.provisioned('a').await;
    let binding = Binding {
        id: format!("{}-binding", case.prefix),
        instance_id: instance.id.clone(),
        service_id: instance.service_id.clone(),
        plan_id: instance.plan_id.clone(),
        app_guid: Some("app".into()),
        bind_resource: None,
        context: None,
        parameters: None,
        predecessor_binding_id: None,
        credentials: None,
        endpoints: None,
        metadata: BindingMetadata::default(),
        status: BindingStatus::Binding,
        operations: OperationLog::default(),
        created_at: crate::clock::Clock::system().timestamp(),
        liveness_token_sha256: None,
        outbox: Default::default(),
    };
    let manifest = &case.subject.manifest;
    let output = case.backend().bind(&instance, &binding, manifest).await.expect("bind");
    assert!(output.credentials.as_object().is_some_and(|c| !c.is_empty()), "credentials: {}", output.credentials);
    case.backend().unbind(&instance, &binding, manifest).await.expect("unbind");
    case.backend().unbind(&instance, &binding, manifest).await.expect("unbind again");
    case.deprovision(&instance).await;
}

async fn info_describes_a_provisioned_instance(case: Case) {
    let instance = case.provisioned('a').await;
    let info = case.backend().info(&instance, &case.subject.manifest).await.expect("info");
    assert_eq!(info.problem, None, "{info:?}");
    assert!(!info.containers.is_empty() && !info.flat.is_empty(), "a deployment is described: {info:?}");
    case.deprovision(&instance).await;
}

/// Reconciliation lists what the backend holds and removes one instance at a time; it
/// must never touch another instance.
async fn held_and_remove_instance_are_exact(case: Case) {
    let a = case.provisioned('a').await;
    let b = case.provisioned('b').await;
    case.assert_owned(&[&a, &b]).await;
    case.backend().remove_instance(&a.id).await.expect("remove_instance");
    case.assert_owned(&[&b]).await;
    case.backend().remove_instance(&a.id).await.expect("remove_instance of what is gone");
    let manifest = &case.subject.manifest;
    let info = case.backend().info(&b, manifest).await.expect("info of the other instance");
    assert_eq!(info.problem, None, "the other instance still works: {info:?}");
    assert!(!info.containers.is_empty(), "the other instance still runs: {info:?}");
    case.deprovision(&b).await;
    case.assert_owned(&[]).await;
}

/// Liveness: a backend that observes sees every component of a fresh deployment up,
/// and nothing once it is deprovisioned (one that cannot observe says `None`).
async fn observe_follows_the_deployment(case: Case) {
    let instance = case.provisioned('a').await;
    if let Some(components) = case.backend().observe(&instance).await.expect("observe") {
        assert!(!components.is_empty(), "a deployment has components");
        assert!(components.iter().all(|c| c.status == ComponentStatus::Up), "all up: {components:?}");
    }
    case.deprovision(&instance).await;
    if let Some(components) = case.backend().observe(&instance).await.expect("observe after deprovision") {
        assert_eq!(components, [], "nothing is left");
    }
}
