//! The operator dashboard as HTML: every page, its security headers, auth, escaping of
//! what users wrote, no secrets shown, and the instance table's paging and filters. The
//! browser test (`tests/ui/dashboard.mjs`) drives the same pages in Chromium.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;
use crate::wait::eventually;

/// A page's status, headers and text.
async fn page(app: &TestApp, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = app.raw(Method::GET, path);
    if let Some((user, pass)) = &app.auth {
        request = request.basic_auth(user, Some(pass));
    }
    let response = request.send().await.expect("esm answers");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_page_is_html_under_a_strict_content_security_policy() {
    let app = provisioned(json!({}), "{}").await;
    for path in [
        "/dashboard",
        "/dashboard/services",
        "/dashboard/instances",
        "/dashboard/instances/i-1",
        "/dashboard/pools",
        "/dashboard/engines",
        "/dashboard/events",
    ] {
        let (status, headers, text) = page(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8", "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(text.starts_with("<!DOCTYPE html>"), "{path}");
        assert!(
            !text.contains(" style=") && !text.contains("<script>") && !text.contains(" onclick="),
            "{path}: inline code"
        );
    }
    let (status, headers, script) = page(&app, "/dashboard/assets/dashboard.js").await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (StatusCode::OK, "text/javascript; charset=utf-8"));
    assert!(!script.contains("innerHTML"), "the script never builds HTML from text");
    let (status, headers, _) = page(&app, "/dashboard/assets/dashboard.css").await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (StatusCode::OK, "text/css; charset=utf-8"));
    app.stop().await;
}

/// The script follows the event types the page names, from the server's one list: a
/// refusal (`provision.refused`) shows in the live feed like any other event, and only
/// an operation's failure is marked failed.
#[tokio::test]
async fn every_page_names_every_event_type_for_the_live_feed() {
    let app = provisioned(json!({}), "{}").await;
    let (_, _, text) = page(&app, "/dashboard").await;
    let attribute = |name: &str| {
        let start = text.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("{name} in {text}")) + name.len() + 2;
        text[start..].split('"').next().unwrap_or_default().split(' ').map(str::to_owned).collect::<Vec<_>>()
    };
    let types = attribute("data-event-types");
    let known: Vec<String> = esm::domain::event::EventKind::known().map(|kind| kind.to_string()).collect();
    assert_eq!(types, known);
    for kind in ["provision.refused", "unbind.failed", "liveness.changed", "pool.member_failed", "resource.gone"] {
        assert!(types.iter().any(|t| t == kind), "{kind} in {types:?}");
    }
    let failures = attribute("data-failure-types");
    let kinds = esm::domain::operation::OperationKind::ALL.len();
    assert!(failures.iter().all(|t| t.ends_with(".failed")) && failures.len() == kinds, "{failures:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_dashboard_asks_for_the_broker_credentials_when_they_are_set() {
    let mut app = spawn_app_with_auth("operator", "s3cret").await;
    let auth = app.auth.take();
    let (status, headers, text) = page(&app, "/dashboard/instances").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"esm\"");
    assert!(headers.contains_key("content-security-policy"));
    assert!(!text.contains("Instances</h1>"));
    app.auth = Some(("operator".into(), "wrong".into()));
    assert_eq!(page(&app, "/dashboard").await.0, StatusCode::UNAUTHORIZED);
    app.auth = auth;
    assert_eq!(page(&app, "/dashboard/instances").await.0, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn what_users_wrote_is_shown_as_text_and_secrets_are_not_shown() {
    let app = spawn_app().await;
    let xss = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let service = json!({"id": "svc-x", "name": xss, "description": xss, "bindable": true,
                         "plans": [{"id": "plan-x", "name": xss, "description": "d"}]});
    assert_eq!(app.put("/v2/et/catalog", &service).await.status, StatusCode::CREATED);
    let manifest = json!({"service_id": "svc-x", "plan_id": "plan-x", "manifest_type": "dummy",
                          "manifest_content": format!("# {xss}\nservices:\n  app:\n    image: x\n")});
    assert_eq!(app.put("/v2/et/manifest/m-x", &manifest).await.status, StatusCode::CREATED);
    let body = json!({"service_id": "svc-x", "plan_id": "plan-x", "organization_guid": "o", "space_guid": "s",
                      "parameters": {"DB_PASSWORD": "hunter2-parameter"}});
    let r = app.put("/v2/service_instances/i-x", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bound = app.bind("i-x", "b-x", Some(json!({"service_id": "svc-x", "plan_id": "plan-x"})), false).await;
    let password = bound.body["credentials"]["password"].as_str().expect("a password").to_owned();
    for path in
        ["/dashboard/services", "/dashboard/instances", "/dashboard/instances/i-x", "/dashboard/events", "/dashboard"]
    {
        let (status, _, text) = page(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!text.contains("<script>alert") && !text.contains("<img src=x"), "{path}: unescaped");
        assert!(!text.contains(&password), "{path}: a binding's password is shown");
        assert!(!text.contains("hunter2-parameter"), "{path}: a parameter is shown");
    }
    let (_, _, services) = page(&app, "/dashboard/services").await;
    assert!(services.contains("&lt;script&gt;alert('x')&lt;/script&gt;"), "{services}");
    let (_, _, instance) = page(&app, "/dashboard/instances/i-x").await;
    assert!(instance.contains("b-x"), "the binding is listed: {instance}");
    let (status, _, missing) = page(&app, "/dashboard/instances/%3Cb%3Enope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing.contains("&lt;b&gt;nope") && !missing.contains("<b>nope"), "{missing}");
    app.stop().await;
}

#[tokio::test]
async fn the_instance_table_pages_and_filters_from_the_index() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    for n in 0..7 {
        assert_eq!(app.provision(&format!("i-{n}"), false).await.status, StatusCode::CREATED);
    }
    let rows = |text: &str| text.matches("<tr data-instance=").count();
    let (_, _, first) = page(&app, "/dashboard/instances?limit=3").await;
    assert_eq!(rows(&first), 3, "{first}");
    assert!(first.contains("data-instance=\"i-0\"") && first.contains("data-instance=\"i-2\""));
    let next = first.split("class=\"next\" href=\"").nth(1).and_then(|s| s.split('"').next()).expect("a next link");
    let (_, _, second) = page(&app, &next.replace("&amp;", "&")).await;
    assert_eq!(rows(&second), 3);
    assert!(second.contains("data-instance=\"i-3\"") && !second.contains("data-instance=\"i-2\""), "{second}");
    let (_, _, last) = page(&app, "/dashboard/instances?limit=3&after=i-5").await;
    assert_eq!(rows(&last), 1);
    assert!(!last.contains("class=\"next\""));
    let (_, _, failed) = page(&app, "/dashboard/instances?state=failed").await;
    assert_eq!(rows(&failed), 0);
    let (_, _, succeeded) = page(&app, &format!("/dashboard/instances?state=succeeded&plan_id={PLAN}")).await;
    assert_eq!(rows(&succeeded), 7);
    let (status, _, refused) = page(&app, "/dashboard/instances?liveness=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.contains("sideways"));
    app.stop().await;
}

#[tokio::test]
async fn the_overview_counts_instances_by_state_and_shows_recent_failures() {
    // Asynchronous: a failed provision is kept (a synchronous one leaves nothing).
    let app = with_plan("x-esm-dummy: {fail: [provision]}").await;
    for id in ["i-a", "i-b"] {
        assert_eq!(app.provision(id, true).await.status, StatusCode::ACCEPTED);
        assert_eq!(app.poll_instance(id).await.body["state"], "failed");
    }
    let (status, _, text) = page(&app, "/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("href=\"/dashboard/instances?state=failed\">failed</a>: 2"), "{text}");
    let failures = text.split("Recent failures").nth(1).and_then(|s| s.split("<h2>").next()).unwrap_or_default();
    assert_eq!(failures.matches("provision.failed").count(), 2, "{failures}");
    assert!(text.contains("id=\"per-minute\">2<"), "two operations finished just now: {text}");
    app.stop().await;
}

#[tokio::test]
async fn an_instances_page_shows_its_newest_events_however_many_it_has() {
    let app = provisioned(json!({}), "{}").await;
    // 140 changes: binds and unbinds, each started and succeeded. (Liveness reports
    // no longer make one change each: they are coalesced.)
    for n in 0..35 {
        let binding = format!("b-{n}");
        assert_eq!(app.bind("i-1", &binding, None, false).await.status, StatusCode::CREATED);
        assert_eq!(app.unbind("i-1", &binding, false).await.status, StatusCode::OK);
    }
    let newest = eventually(Duration::from_secs(5), "the 140 changes logged", || async {
        let page = app.get("/v2/et/events?instance_id=i-1&limit=1000").await.body;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        (events.len() >= 140).then(|| events[events.len() - 1]["id"].clone())
    })
    .await;
    let (status, _, text) = page(&app, "/dashboard/instances/i-1").await;
    assert_eq!(status, StatusCode::OK);
    let events = text.split("<h2>Events</h2>").nth(1).unwrap_or_default();
    assert!(events.contains(&format!("<tr><td>{newest}</td>")), "the newest of 140 changes is shown: {events}");
    assert!(!events.contains("provision.started"), "only the newest are shown");
    app.stop().await;
}

/// Swagger UI and its document may not be framed by another page.
#[tokio::test]
async fn swagger_ui_may_not_be_framed() {
    let app = spawn_app().await;
    for path in ["/ui/", "/ui/index.html", "/swagger.json"] {
        let response = app.client.get(format!("{}{path}", app.api)).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-security-policy"], "frame-ancestors 'none'", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
}

// Where a new user lands: `/` sends a browser to the dashboard and tells curl where
// things are; `/dashboard/` is the dashboard too; Swagger UI's "Try it out" has the
// version header filled in.
#[tokio::test]
async fn the_root_and_a_trailing_slash_lead_to_the_dashboard() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    let browser =
        client.get(format!("{}/", app.api)).header("accept", "text/html,*/*;q=0.8").send().await.expect("answers");
    assert_eq!(
        (browser.status().is_redirection(), &browser.headers()["location"]),
        (true, &"/dashboard".parse().unwrap())
    );
    let index: serde_json::Value =
        client.get(format!("{}/", app.api)).send().await.expect("answers").json().await.expect("JSON");
    assert_eq!((&index["swagger_ui"], &index["dashboard"]), (&json!("/ui/"), &json!("/dashboard")), "{index}");
    let slash = client.get(format!("{}/dashboard/", app.api)).send().await.expect("answers");
    assert_eq!(
        (slash.status(), &slash.headers()["location"]),
        (StatusCode::PERMANENT_REDIRECT, &"/dashboard".parse().unwrap())
    );

    let spec: serde_json::Value =
        client.get(format!("{}/swagger.json", app.api)).send().await.expect("answers").json().await.expect("JSON");
    let catalog = &spec["paths"]["/v2/catalog"]["get"]["parameters"];
    let version =
        catalog.as_array().and_then(|p| p.iter().find(|p| p["name"] == "X-Broker-API-Version")).expect("the header");
    assert_eq!(version["schema"]["default"], "2.17", "{version}");
    app.stop().await;
}

// After a deprovision the instance's page says so (from the tombstone esm keeps), rather
// than "Not Found", and offers no Deprovision any more.
#[tokio::test]
async fn a_deprovisioned_instance_s_page_says_deprovisioned() {
    let app = provisioned_sync().await;
    let (status, _, live) = page(&app, "/dashboard/instances/i-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        live.contains(r#"<dd id="instance-status">provisioned</dd>"#) && live.contains("data-action=\"deprovision\"")
    );
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    let (status, _, gone) = page(&app, "/dashboard/instances/i-1").await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert!(gone.contains(r#"<dd id="instance-status">deprovisioned</dd>"#), "{gone}");
    assert!(!gone.contains("data-action=\"deprovision\""), "{gone}");
    let (status, _, _) = page(&app, "/dashboard/instances/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// The text of the engines table's row of `name`.
fn engine_row<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text.find(&format!("<tr data-engine=\"{name}\"")).unwrap_or_else(|| panic!("{name} in {text}"));
    text[start..].split("</tr>").next().unwrap_or_default()
}

// Every engine is listed, `default` first, with its state (marked when it takes no
// placements) and how much of its capacity is used; what an operator wrote in a label is
// shown as text.
#[tokio::test]
async fn the_engines_page_lists_each_engine_with_its_state_and_capacity() {
    let app = provisioned_sync().await;
    let (status, _, text) = page(&app, "/dashboard/engines").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("href=\"/dashboard/engines\">Engines</a>"), "in the navigation: {text}");
    let default = engine_row(&text, "default");
    assert!(default.contains(">active<") && default.contains("1 / unlimited"), "{default}");

    let spec = json!({"backend": "dummy", "labels": {"zone": "a", "note": "<b>x</b>"}, "capacity": {"instances": 3}});
    app.put("/v2/et/engines/e1", &spec).await.expect(StatusCode::CREATED);
    app.send(Method::POST, "/v2/et/engines/e1/cordon", None).await.expect(StatusCode::OK);
    let (status, _, text) = page(&app, "/dashboard/engines").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.find("data-engine=\"default\"") < text.find("data-engine=\"e1\""), "default first: {text}");
    let e1 = engine_row(&text, "e1");
    assert!(e1.contains("data-state=\"cordoned\"><strong>cordoned</strong>"), "marked: {e1}");
    assert!(e1.contains("0 / 3") && e1.contains("zone=a") && e1.contains(">dummy<"), "{e1}");
    assert!(e1.contains("note=&lt;b&gt;x&lt;/b&gt;"), "the label as text: {e1}");
    assert!(!text.contains("<b>x</b>"), "never as markup: {text}");
    let counted = json!({"backend": "dummy", "capacity": {"cpus": 2, "memory": "1g"}});
    app.put("/v2/et/engines/e2", &counted).await.expect(StatusCode::CREATED);
    let (_, _, text) = page(&app, "/dashboard/engines").await;
    let e2 = engine_row(&text, "e2");
    assert!(e2.contains("0 / 2.0 CPUs") && e2.contains("0.0 / 1.0 GiB"), "CPU and memory used: {e2}");
    app.send(Method::POST, "/v2/et/engines/e1/drain", None).await.expect(StatusCode::OK);
    let (_, _, text) = page(&app, "/dashboard/engines").await;
    let e1 = engine_row(&text, "e1");
    assert!(e1.contains("<strong>draining</strong>"), "{e1}");
    assert!(e1.contains("0 to move, 0 moving, 0 leaving, 0 staying"), "the evacuation's progress: {e1}");
    app.stop().await;
}

// An instance's page names its engine, and the table filters by it.
#[tokio::test]
async fn the_instance_pages_name_the_engine() {
    let app = provisioned_sync().await;
    let (_, _, one) = page(&app, "/dashboard/instances/i-1").await;
    assert!(one.contains(r#"<dd id="engine"><a href="/dashboard/engines">default</a></dd>"#), "{one}");
    let rows = |text: &str| text.matches("<tr data-instance=").count();
    let (_, _, on_default) = page(&app, "/dashboard/instances?engine=default").await;
    assert_eq!(rows(&on_default), 1, "{on_default}");
    assert!(on_default.contains("<td>default</td>"), "{on_default}");
    let (_, _, elsewhere) = page(&app, "/dashboard/instances?engine=e1").await;
    assert_eq!(rows(&elsewhere), 0, "{elsewhere}");
    app.stop().await;
}
