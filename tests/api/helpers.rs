//! The test harness: a real esm on random ports, spoken to over HTTP.

use std::sync::Arc;
use std::time::Duration;

use esm::app::Server;
use esm::backend::dummy::{Holds, LivenessScript};
use esm::config::{Config, Secret};
pub use esm::domain::operation::OperationKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::wait::eventually;

/// The OSB version tests speak unless they say otherwise.
pub const VERSION: &str = "2.17";
/// The service every `with_plan` app registers.
pub const SERVICE: &str = "svc-1";
/// Its plan.
pub const PLAN: &str = "plan-1";
/// A second plan of the same service.
pub const OTHER_PLAN: &str = "plan-2";

/// A running esm.
pub struct TestApp {
    /// `http://127.0.0.1:PORT` of the OSB API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the operator port.
    pub ops: String,
    /// A client without default headers.
    pub client: reqwest::Client,
    /// Basic-auth credentials, when the app requires them.
    pub auth: Option<(String, String)>,
    /// Where the dummy's held operations (`hold: [...]`) are released.
    holds: Option<Arc<Holds>>,
    /// Where the dummy's instances' liveness is scripted.
    liveness: Option<Arc<LivenessScript>>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (`Value::Null` if empty or not JSON).
    pub body: Value,
}

impl Reply {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status is `status` (the body in the message); the body.
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        &self.body
    }

    /// Asserts the status is `status` with an OSB error body; its `error` code: the one
    /// way a test checks a refusal.
    pub fn fails_with(&self, status: StatusCode) -> &str {
        self.expect(status);
        self.osb_error()
    }

    /// Asserts the status is `status` with an OSB error body whose `error` code is `code`.
    pub fn refused(&self, status: StatusCode, code: &str) {
        assert_eq!(self.fails_with(status), code, "{}", self.body);
    }

    /// Asserts the body's `description` mentions `needle`.
    pub fn mentions(&self, needle: &str) {
        let description = self.body["description"].as_str();
        assert!(
            description.is_some_and(|d| d.contains(needle)),
            "{} {}: no {needle:?} in the description",
            self.status,
            self.body
        );
    }

    /// Asserts the body is an OSB error body and returns its `error` code.
    pub fn osb_error(&self) -> &str {
        let description = self.body.get("description").and_then(Value::as_str);
        assert!(
            description.is_some_and(|d| !d.is_empty()),
            "expected an OSB error body with a description, got {} {}",
            self.status,
            self.body
        );
        self.body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("expected an OSB error code in {}", self.body))
    }
}

/// An HTTP client for tests. esm builds reqwest without a TLS provider of its own (see
/// `esm::tls`), so the process's default one is installed first.
pub fn http_client() -> reqwest::Client {
    esm::tls::install_default_provider();
    reqwest::Client::new()
}

/// Contract rows that are one request refused with an OSB error body, written as a
/// table: each row `name: app, METHOD path => STATUS;` is a test of that name, on the app
/// `app` (an async constructor such as [`spawn_app`]) of its own.
macro_rules! refusals {
    ($($name:ident: $app:expr, $method:ident $path:expr => $status:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let app = $app.await;
            app.send(reqwest::Method::$method, &$path, None).await.fails_with(reqwest::StatusCode::$status);
        }
    )*};
}
pub(crate) use refusals;

/// A test config: random loopback ports, in-memory store.
pub fn test_config() -> Config {
    Config {
        ip: [127, 0, 0, 1].into(),
        port: 0,
        check_ip: [127, 0, 0, 1].into(),
        check_port: 0,
        retry_after: 1,
        store: Some(esm::config::StoreKind::Memory),
        backends: vec![esm::config::BackendKind::Dummy],
        // Heartbeats missed and thresholds passed are seen within a second.
        liveness_interval: 1,
        ..Config::default()
    }
}

/// Starts esm with the test config.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// Starts esm with basic auth.
pub async fn spawn_app_with_auth(user: &str, pass: &str) -> TestApp {
    let config = Config {
        broker_username: Some(user.into()),
        broker_password: Some(pass.parse::<Secret>().expect("secret parses")),
        ..test_config()
    };
    let mut app = spawn_app_with(config).await;
    app.auth = Some((user.into(), pass.into()));
    app
}

/// Starts esm with `config`.
pub async fn spawn_app_with(config: Config) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        esm::telemetry::init(esm::config::LogFormat::Text);
    }
    let server = Server::bind(config).await.expect("esm binds");
    let (holds, liveness, ready) = (server.holds(), server.dummy_liveness(), server.readiness());
    let api = format!("http://{}", server.api_addr());
    let ops = format!("http://{}", server.ops_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("esm serves");
    });
    // The API port listens once the start-up scan is done.
    tokio::time::timeout(Duration::from_secs(60), ready.wait()).await.expect("esm becomes ready");
    TestApp { api, ops, client: http_client(), auth: None, holds, liveness, stop: Some(stop), handle: Some(handle) }
}

/// Starts esm with service `svc-1` (plans `plan-1` and `plan-2`) and a dummy manifest
/// for each plan whose content is `script` (a YAML document).
pub async fn with_plan(script: &str) -> TestApp {
    with_catalog(json!({}), script).await
}

/// Like [`with_plan`], with extra fields merged into `plan-1` (schemas, maintenance_info, ...).
pub async fn with_catalog(plan_extra: Value, script: &str) -> TestApp {
    let app = spawn_app().await;
    app.register_catalog(plan_extra, script).await;
    app
}

/// Like [`with_catalog`], with instance `i-1` provisioned on `plan-1` (asynchronously
/// if the script allows it) and its provision finished.
pub async fn provisioned(plan_extra: Value, script: &str) -> TestApp {
    let app = with_catalog(plan_extra, script).await;
    let r = app.provision("i-1", true).await;
    assert!(matches!(r.status, StatusCode::CREATED | StatusCode::ACCEPTED), "provision: {}", r.body);
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
    app
}

/// [`provisioned`] on a synchronous dummy plan: the instance most rows start from.
pub async fn provisioned_sync() -> TestApp {
    provisioned(json!({}), "x-esm-dummy: {mode: sync}").await
}

/// An app whose `i-1` is being provisioned: the provision answered 202 and is held (the
/// dummy's `hold`) until [`TestApp::release`].
pub async fn provisioning() -> TestApp {
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision]}").await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    app
}

/// An app whose provisioned `i-1` is being updated (to parameters `{"a": 1}`): the update
/// answered 202 and is held until [`TestApp::release`].
pub async fn updating() -> TestApp {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [update]}").await;
    let body = json!({"service_id": SERVICE, "parameters": {"a": 1}});
    let r = app.patch(&provision_path("i-1", true), &body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    app
}

impl TestApp {
    /// Registers `svc-1` with `plan-1` (plus `plan_extra`) and `plan-2`, and a dummy
    /// manifest running `script` for each.
    pub async fn register_catalog(&self, plan_extra: Value, script: &str) {
        let mut plan = json!({"id": PLAN, "name": "small", "description": "a small plan",
                              "plan_updateable": true});
        if let (Some(plan), Some(extra)) = (plan.as_object_mut(), plan_extra.as_object()) {
            plan.extend(extra.clone());
        }
        let service = json!({
            "id": SERVICE, "name": "test-service", "description": "a test service",
            "bindable": true, "plan_updateable": true,
            "plans": [plan, {"id": OTHER_PLAN, "name": "large", "description": "a large plan"}]
        });
        let r = self.put("/v2/et/catalog", &service).await;
        assert_eq!(r.status, StatusCode::CREATED, "register service: {}", r.body);
        for (manifest, plan) in [("manifest-1", PLAN), ("manifest-2", OTHER_PLAN)] {
            let body = json!({"service_id": SERVICE, "plan_id": plan,
                              "manifest_type": "dummy", "manifest_content": script});
            let r = self.put(&format!("/v2/et/manifest/{manifest}"), &body).await;
            assert_eq!(r.status, StatusCode::CREATED, "register manifest: {}", r.body);
        }
    }

    /// Sends a request with the OSB version header (and auth, if the app has it).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.send_as(VERSION, method, path, body).await
    }

    /// Sends a request speaking OSB `version`.
    pub async fn send_as(&self, version: &str, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req =
            self.client.request(method, format!("{}{path}", self.api)).header("X-Broker-API-Version", version);
        if let Some((user, pass)) = &self.auth {
            req = req.basic_auth(user, Some(pass));
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        reply(req.send().await.expect("request sent")).await
    }

    /// GET with the version header.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// PUT a JSON body with the version header.
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// PATCH a JSON body with the version header.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// DELETE with the version header.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// GET with the version header and one more header.
    pub async fn get_with(&self, path: &str, header: &str, value: &str) -> Reply {
        let req = self.raw(Method::GET, path).header("X-Broker-API-Version", VERSION).header(header, value);
        reply(req.send().await.expect("request sent")).await
    }

    /// Sends `text` as a JSON body as it is (malformed JSON, for one), with the version header.
    pub async fn send_text(&self, method: Method, path: &str, text: &'static str) -> Reply {
        let req = self
            .raw(method, path)
            .header("X-Broker-API-Version", VERSION)
            .header("Content-Type", "application/json")
            .body(text);
        reply(req.send().await.expect("request sent")).await
    }

    /// A raw request builder for tests that control every header.
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.api))
    }

    /// Provisions `id` on `plan-1`; `async_ok` sets `accepts_incomplete=true`.
    pub async fn provision(&self, id: &str, async_ok: bool) -> Reply {
        self.put(&provision_path(id, async_ok), &provision_body(PLAN)).await
    }

    /// Deprovisions `id`.
    pub async fn deprovision(&self, id: &str, async_ok: bool) -> Reply {
        let q = if async_ok { "&accepts_incomplete=true" } else { "" };
        self.delete(&format!("/v2/service_instances/{id}?service_id={SERVICE}&plan_id={PLAN}{q}")).await
    }

    /// Binds `binding` to `instance` with `body` (or the default bind body).
    pub async fn bind(&self, instance: &str, binding: &str, body: Option<Value>, async_ok: bool) -> Reply {
        let q = if async_ok { "?accepts_incomplete=true" } else { "" };
        let body = body.unwrap_or_else(|| json!({"service_id": SERVICE, "plan_id": PLAN}));
        self.put(&format!("/v2/service_instances/{instance}/service_bindings/{binding}{q}"), &body).await
    }

    /// Unbinds `binding` from `instance`.
    pub async fn unbind(&self, instance: &str, binding: &str, async_ok: bool) -> Reply {
        let q = if async_ok { "&accepts_incomplete=true" } else { "" };
        self.delete(&format!(
            "/v2/service_instances/{instance}/service_bindings/{binding}?service_id={SERVICE}&plan_id={PLAN}{q}"
        ))
        .await
    }

    /// Polls a last_operation path until the state is final; returns the final reply
    /// (a 410 also ends the polling).
    pub async fn poll(&self, last_operation_path: &str) -> Reply {
        eventually(Duration::from_secs(10), &format!("{last_operation_path} to be final"), || async {
            let r = self.get(last_operation_path).await;
            (r.status != StatusCode::OK || r.body["state"] != json!("in progress")).then_some(r)
        })
        .await
    }

    /// Polls an instance's last_operation until it is final.
    pub async fn poll_instance(&self, id: &str) -> Reply {
        self.poll(&format!("/v2/service_instances/{id}/last_operation")).await
    }

    /// Polls a binding's last_operation until it is final.
    pub async fn poll_binding(&self, instance: &str, binding: &str) -> Reply {
        self.poll(&format!("/v2/service_instances/{instance}/service_bindings/{binding}/last_operation")).await
    }

    /// Lets a held dummy operation (`hold: [...]` in its script) on `id` go on: the
    /// instance id, or the binding id for bind and unbind.
    pub fn release(&self, kind: OperationKind, id: &str) {
        self.holds.as_ref().expect("the dummy backend runs").release(kind, id);
    }

    /// Where the dummy's instances' components are made to fail and recover.
    pub fn liveness_script(&self) -> &LivenessScript {
        self.liveness.as_deref().expect("the dummy backend runs")
    }

    /// Stops esm gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("esm stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts a failed operation's flags (its error body, or its last_operation): the
/// instance is usable, and `update_repeatable` is `repeatable`, or absent for `None`
/// (only updates carry it).
pub fn assert_failure_flags(body: &Value, update_repeatable: Option<bool>) {
    assert_eq!(body["instance_usable"], true, "{body}");
    match update_repeatable {
        Some(repeatable) => assert_eq!(body["update_repeatable"], repeatable, "{body}"),
        None => assert!(body.get("update_repeatable").is_none(), "only updates carry update_repeatable: {body}"),
    }
}

/// Decodes a response.
pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body read");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, body }
}

/// The provision path for `id`.
pub fn provision_path(id: &str, async_ok: bool) -> String {
    if async_ok {
        format!("/v2/service_instances/{id}?accepts_incomplete=true")
    } else {
        format!("/v2/service_instances/{id}")
    }
}

/// A valid provision body for `plan`.
pub fn provision_body(plan: &str) -> Value {
    json!({"service_id": SERVICE, "plan_id": plan,
           "organization_guid": "org-1", "space_guid": "space-1",
           "context": {"platform": "cloudfoundry"}})
}
