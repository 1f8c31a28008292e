//! A client of esm's API, for Rust programs and for the `esm` command line: typed
//! requests and answers (the server's own `wire` types), OSB errors as values.
//!
//! ```no_run
//! # async fn run() -> Result<(), esm::client::ClientError> {
//! use esm::client::Client;
//! use esm::wire::{LastOperationResponse, ProvisionRequest};
//!
//! let esm = Client::new("http://localhost:8080", None)?;
//! let request = ProvisionRequest {
//!     service_id: "svc-1".parse().expect("an id"),
//!     plan_id: "plan-1".parse().expect("an id"),
//!     organization_guid: "org".parse().expect("an id"),
//!     space_guid: "space".parse().expect("an id"),
//!     context: None,
//!     parameters: None,
//!     maintenance_info: None,
//! };
//! let answer = esm.provision("i-1", &request, true).await?;
//! if let Some(operation) = answer.body.operation {
//!     let last: LastOperationResponse = esm.last_operation("i-1", Some(&operation)).await?;
//!     println!("{}: {:?}", last.state.as_str(), last.description);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Getters whose answer the command line shows are generic in it: the `wire` type, or
//! a `serde_json::Value` for exactly what esm said (a server's text the typed answer
//! would refuse is then still shown, escaped).
//!
//! The client does not trust the server: every answer is read up to a size bound
//! ([`MAX_ANSWER_BYTES`], [`MAX_LISTING_BYTES`] for listings) and a redirect is followed
//! only to the same origin (scheme, host, port), so neither the credentials nor a body
//! reach another server. `text.rs` escapes a server's text for a terminal.

mod engines;
mod text;

pub use text::{MAX_MESSAGE_CHARS, escape, escape_json, is_active, truncate};

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::path::segment;
use crate::wire::{
    BindRequest, BindingPage, BindingResponse, FetchInstanceResponse, InventoryQuery, OperationResponse, PoolRequest,
    ProvisionRequest, ProvisionResponse, UpdateRequest, UpdateResponse,
};
#[cfg(doc)]
use crate::wire::{
    CatalogResponse, EventPage, InstanceResources, InventoryPage, LastOperationResponse, PoolList, PoolStatus,
};

/// The OSB version the client speaks.
pub const API_VERSION: &str = "2.17";
/// How long a request may take before the client gives up on it (answer included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read: an instance, an operation, an error, a registration.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// The largest listing read: the catalog, manifests, a page of instances, inventory or
/// events, the pools, the engines.
pub const MAX_LISTING_BYTES: usize = 64 << 20;
/// Redirects followed (within the origin) before giving up.
const MAX_REDIRECTS: usize = 10;

/// Why a call did not succeed. Shown (`Display`) with a server's text escaped
/// ([`escape`]); the fields hold it as it came, cut to [`MAX_MESSAGE_CHARS`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// esm could not be reached (or did not answer in time, or redirected the request to
    /// another origin).
    #[error("cannot reach esm at {url}: {}", escape(.reason))]
    Unreachable {
        /// Where (without any credentials the URL held).
        url: String,
        /// Why.
        reason: String,
    },
    /// esm refused the credentials (401).
    #[error(
        "esm refused the credentials: {} (the client sends ESM_BROKER_USERNAME and ESM_BROKER_PASSWORD, \
         or --broker-username and --broker-password: the daemon's own)",
        escape(.0)
    )]
    Unauthorized(String),
    /// esm answered with an error: its OSB error body.
    #[error("{} ({status}{})", escape(.description), error.as_deref().map(|e| format!(" {}", escape(e))).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// The OSB error code, if any (`AsyncRequired`, `ConcurrencyError`, …).
        error: Option<String>,
        /// What esm said.
        description: String,
    },
    /// The request could not be made, or the answer not read (too large, not JSON, not
    /// what the client expects).
    #[error("{}", escape(.0))]
    Invalid(String),
}

/// An answer and its status (201 and 200 differ for provisions and binds; 202 means
/// the operation runs on).
#[derive(Debug, Clone)]
pub struct Reply<T> {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: T,
}

/// A client of one esm.
#[derive(Clone)]
pub struct Client {
    /// esm's URL, as given: where requests go.
    target: String,
    /// The same without user and password: the one messages show.
    base: String,
    http: reqwest::Client,
    /// Basic-auth user and password: never shown (`Debug` redacts them).
    auth: Option<(String, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("auth", &self.auth.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the esm at `base` (`http://host:8080`, or `https://` for an esm
    /// behind a TLS proxy, checked against the Mozilla roots built into esm), with
    /// basic-auth credentials if it wants them.
    pub fn new(base: &str, auth: Option<(String, String)>) -> Result<Self, ClientError> {
        Self::with_tls(base, auth, crate::tls::client_config())
    }

    /// The same, trusting also the certificate authorities in `ca_pem` (an esm behind
    /// a proxy with a certificate of the operator's own authority).
    pub fn with_ca(base: &str, auth: Option<(String, String)>, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let tls = crate::tls::client_config_with_roots(ca_pem).map_err(ClientError::Invalid)?;
        Self::with_tls(base, auth, tls)
    }

    fn with_tls(
        base: &str,
        auth: Option<(String, String)>,
        tls: tokio_rustls::rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Invalid(format!("{base} is not an http:// or https:// URL")));
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(REQUEST_TIMEOUT)
            .redirect(same_origin_only())
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot make an HTTP client: {e}")))?;
        let target = base.trim_end_matches('/').to_owned();
        Ok(Self { base: without_credentials(&target), target, http, auth })
    }

    /// Where it sends requests (without any user and password the URL holds).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and reads the answer (at most `limit` bytes) as `T`; an error
    /// status is an error.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &(impl Serialize + ?Sized),
        body: Option<&(impl Serialize + Sync)>,
        limit: usize,
    ) -> Result<Reply<T>, ClientError> {
        let url = format!("{}{path}", self.target);
        let mut request = self.http.request(method, &url).header("X-Broker-API-Version", API_VERSION).query(query);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |reason: String| ClientError::Unreachable { url: self.base.clone(), reason };
        let response = request.send().await.map_err(|e| unreachable(cause(&e)))?;
        let status = response.status();
        let location = response.headers().get(reqwest::header::LOCATION).filter(|_| status.is_redirection());
        if let Some(to) = location {
            // Only a redirect to another origin gets here (see `same_origin_only`).
            let to = truncate(&String::from_utf8_lossy(to.as_bytes()), 200).into_owned();
            return Err(unreachable(format!(
                "it answered {status} to {to}, another origin: not followed (use that --url if you trust it)"
            )));
        }
        let text = read_bounded(response, limit, path).await?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized(osb_description(&text).unwrap_or_else(|| "401".into())));
        }
        if !status.is_success() {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = body.get("error").and_then(Value::as_str).map(|e| truncate(e, 100).into_owned());
            return Err(ClientError::Api {
                status: status.as_u16(),
                error,
                description: osb_description(&text).unwrap_or_else(|| format!("esm answered {status}")),
            });
        }
        let text = if text.is_empty() { "null" } else { text.as_str() };
        let body = serde_json::from_str(text).map_err(|e| {
            ClientError::Invalid(format!("esm's answer to {path} is not what this client expects: {e}"))
        })?;
        Ok(Reply { status: status.as_u16(), body })
    }

    /// `GET path`, an answer of at most [`MAX_ANSWER_BYTES`].
    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, ClientError> {
        Ok(self.call(Method::GET, path, query, None::<&()>, MAX_ANSWER_BYTES).await?.body)
    }

    /// `GET path`, a listing of at most [`MAX_LISTING_BYTES`].
    async fn list<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, ClientError> {
        Ok(self.call(Method::GET, path, query, None::<&()>, MAX_LISTING_BYTES).await?.body)
    }

    /// `GET /v2/catalog`: a [`CatalogResponse`] (or a `Value`).
    pub async fn catalog<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        self.list("/v2/catalog", &[]).await
    }

    /// `PUT /v2/et/catalog`: registers (or replaces) a service offering.
    pub async fn register_service(&self, service: &Value) -> Result<Value, ClientError> {
        Ok(self.call(Method::PUT, "/v2/et/catalog", NO_QUERY, Some(service), MAX_ANSWER_BYTES).await?.body)
    }

    /// `DELETE /v2/et/catalog/{id}`.
    pub async fn delete_service(&self, id: &str) -> Result<Value, ClientError> {
        Ok(self
            .call(Method::DELETE, &format!("/v2/et/catalog/{}", segment(id)), NO_QUERY, None::<&()>, MAX_ANSWER_BYTES)
            .await?
            .body)
    }

    /// `GET /v2/et/manifest`: every manifest.
    pub async fn manifests(&self) -> Result<Value, ClientError> {
        self.list("/v2/et/manifest", &[]).await
    }

    /// `GET /v2/et/manifest/{id}`.
    pub async fn manifest(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/v2/et/manifest/{}", segment(id)), &[]).await
    }

    /// `PUT /v2/et/manifest/{id}`.
    pub async fn register_manifest(&self, id: &str, manifest: &Value) -> Result<Value, ClientError> {
        Ok(self
            .call(Method::PUT, &format!("/v2/et/manifest/{}", segment(id)), NO_QUERY, Some(manifest), MAX_ANSWER_BYTES)
            .await?
            .body)
    }

    /// `DELETE /v2/et/manifest/{id}`.
    pub async fn delete_manifest(&self, id: &str) -> Result<Value, ClientError> {
        Ok(self
            .call(Method::DELETE, &format!("/v2/et/manifest/{}", segment(id)), NO_QUERY, None::<&()>, MAX_ANSWER_BYTES)
            .await?
            .body)
    }

    /// `GET /v2/et/service_instances`: a page of instances (`limit`, `after` the
    /// previous page's `next`), filtered by (field, value) pairs.
    pub async fn instances(
        &self,
        limit: u32,
        after: Option<&str>,
        filters: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        query.extend(after.map(|a| ("after", a)));
        query.extend_from_slice(filters);
        self.list("/v2/et/service_instances", &query).await
    }

    /// `GET /v2/et/service_instances/{id}`: the instance with its live details.
    pub async fn instance(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/v2/et/service_instances/{}", segment(id)), &[]).await
    }

    /// `GET /v2/service_instances/{id}`: the instance as OSB shows it.
    pub async fn fetch_instance(&self, id: &str) -> Result<FetchInstanceResponse, ClientError> {
        self.get(&instance_path(id), &[]).await
    }

    /// `PUT /v2/service_instances/{id}`.
    pub async fn provision(
        &self,
        id: &str,
        request: &ProvisionRequest,
        accepts_incomplete: bool,
    ) -> Result<Reply<ProvisionResponse>, ClientError> {
        let query = incomplete(accepts_incomplete);
        self.call(Method::PUT, &instance_path(id), &query, Some(request), MAX_ANSWER_BYTES).await
    }

    /// `PATCH /v2/service_instances/{id}`.
    pub async fn update(
        &self,
        id: &str,
        request: &UpdateRequest,
        accepts_incomplete: bool,
    ) -> Result<Reply<UpdateResponse>, ClientError> {
        let query = incomplete(accepts_incomplete);
        self.call(Method::PATCH, &instance_path(id), &query, Some(request), MAX_ANSWER_BYTES).await
    }

    /// `DELETE /v2/service_instances/{id}`.
    pub async fn deprovision(
        &self,
        id: &str,
        service_id: &str,
        plan_id: &str,
        accepts_incomplete: bool,
    ) -> Result<Reply<OperationResponse>, ClientError> {
        let mut query = vec![("service_id", service_id), ("plan_id", plan_id)];
        query.extend(incomplete(accepts_incomplete));
        self.call(Method::DELETE, &instance_path(id), &query, None::<&()>, MAX_ANSWER_BYTES).await
    }

    /// `GET /v2/service_instances/{id}/last_operation`: a [`LastOperationResponse`] (or a
    /// `Value`).
    pub async fn last_operation<T: DeserializeOwned>(
        &self,
        id: &str,
        operation: Option<&str>,
    ) -> Result<T, ClientError> {
        let query: Vec<_> = operation.map(|op| ("operation", op)).into_iter().collect();
        self.get(&format!("{}/last_operation", instance_path(id)), &query).await
    }

    /// `PUT /v2/service_instances/{id}/service_bindings/{binding}`.
    pub async fn bind(
        &self,
        id: &str,
        binding: &str,
        request: &BindRequest,
        accepts_incomplete: bool,
    ) -> Result<Reply<BindingResponse>, ClientError> {
        let query = incomplete(accepts_incomplete);
        self.call(Method::PUT, &binding_path(id, binding), &query, Some(request), MAX_ANSWER_BYTES).await
    }

    /// `GET /v2/service_instances/{id}/service_bindings/{binding}`: the binding with its
    /// credentials.
    pub async fn fetch_binding(&self, id: &str, binding: &str) -> Result<BindingResponse, ClientError> {
        self.get(&binding_path(id, binding), &[]).await
    }

    /// `GET /v2/et/service_instances/{id}/bindings`: a page of the instance's bindings,
    /// without credentials.
    pub async fn bindings(&self, id: &str, limit: u32, after: Option<&str>) -> Result<BindingPage, ClientError> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        query.extend(after.map(|a| ("after", a)));
        self.list(&format!("/v2/et/service_instances/{}/bindings", segment(id)), &query).await
    }

    /// `DELETE /v2/service_instances/{id}/service_bindings/{binding}`.
    pub async fn unbind(
        &self,
        id: &str,
        binding: &str,
        service_id: &str,
        plan_id: &str,
        accepts_incomplete: bool,
    ) -> Result<Reply<OperationResponse>, ClientError> {
        let mut query = vec![("service_id", service_id), ("plan_id", plan_id)];
        query.extend(incomplete(accepts_incomplete));
        self.call(Method::DELETE, &binding_path(id, binding), &query, None::<&()>, MAX_ANSWER_BYTES).await
    }

    /// `GET …/service_bindings/{binding}/last_operation`: a [`LastOperationResponse`] (or
    /// a `Value`).
    pub async fn binding_last_operation<T: DeserializeOwned>(
        &self,
        id: &str,
        binding: &str,
        operation: Option<&str>,
    ) -> Result<T, ClientError> {
        let query: Vec<_> = operation.map(|op| ("operation", op)).into_iter().collect();
        self.get(&format!("{}/last_operation", binding_path(id, binding)), &query).await
    }

    /// `GET /v2/et/pools`: a [`PoolList`] (or a `Value`).
    pub async fn pools<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        self.list("/v2/et/pools", &[]).await
    }

    /// `GET /v2/et/pools/{plan_id}`: a [`PoolStatus`] (or a `Value`).
    pub async fn pool<T: DeserializeOwned>(&self, plan_id: &str) -> Result<T, ClientError> {
        self.get(&format!("/v2/et/pools/{}", segment(plan_id)), &[]).await
    }

    /// `PUT /v2/et/pools/{plan_id}`: the pool, a [`PoolStatus`] (or a `Value`).
    pub async fn set_pool<T: DeserializeOwned>(&self, plan_id: &str, request: &PoolRequest) -> Result<T, ClientError> {
        Ok(self
            .call(Method::PUT, &format!("/v2/et/pools/{}", segment(plan_id)), NO_QUERY, Some(request), MAX_ANSWER_BYTES)
            .await?
            .body)
    }

    /// `DELETE /v2/et/pools/{plan_id}`: drains the pool.
    pub async fn delete_pool(&self, plan_id: &str) -> Result<(), ClientError> {
        let path = format!("/v2/et/pools/{}", segment(plan_id));
        self.call::<Value>(Method::DELETE, &path, NO_QUERY, None::<&()>, MAX_ANSWER_BYTES).await.map(|_| ())
    }

    /// `GET /v2/et/inventory`: a page of what esm's deployments hold, an
    /// [`InventoryPage`] (or a `Value`).
    pub async fn inventory<T: DeserializeOwned>(&self, query: &InventoryQuery) -> Result<T, ClientError> {
        Ok(self.call(Method::GET, "/v2/et/inventory", query, None::<&()>, MAX_LISTING_BYTES).await?.body)
    }

    /// `GET /v2/et/service_instances/{id}/resources`: what one instance holds, an
    /// [`InstanceResources`] (or a `Value`).
    pub async fn instance_resources<T: DeserializeOwned>(&self, id: &str) -> Result<T, ClientError> {
        self.get(&format!("/v2/et/service_instances/{}/resources", segment(id)), &[]).await
    }

    /// `GET /v2/et/events` as a JSON page: events after `after`, at most `limit`; an
    /// [`EventPage`] (or a `Value`).
    pub async fn events<T: DeserializeOwned>(
        &self,
        after: u64,
        limit: u32,
        filters: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let (after, limit) = (after.to_string(), limit.to_string());
        let mut query = vec![("after", after.as_str()), ("limit", limit.as_str())];
        query.extend_from_slice(filters);
        self.list("/v2/et/events", &query).await
    }
}

/// No query parameters.
const NO_QUERY: &[(&str, &str)] = &[];

/// `accepts_incomplete=true`, when asked for.
fn incomplete(accepts: bool) -> Vec<(&'static str, &'static str)> {
    if accepts { vec![("accepts_incomplete", "true")] } else { Vec::new() }
}

fn instance_path(id: &str) -> String {
    format!("/v2/service_instances/{}", segment(id))
}

fn binding_path(id: &str, binding: &str) -> String {
    format!("{}/service_bindings/{}", instance_path(id), segment(binding))
}

/// The `description` of an OSB error body, cut to [`MAX_MESSAGE_CHARS`].
fn osb_description(text: &str) -> Option<String> {
    let body: Value = serde_json::from_str(text).ok()?;
    body.get("description").and_then(Value::as_str).map(|d| truncate(d, MAX_MESSAGE_CHARS).into_owned())
}

/// Reads an answer of at most `limit` bytes: one that says it is larger, or grows
/// larger, is an error once the limit is passed (an endless answer costs `limit` bytes
/// of memory, and at most `REQUEST_TIMEOUT`).
async fn read_bounded(mut response: reqwest::Response, limit: usize, path: &str) -> Result<String, ClientError> {
    let too_large = || {
        ClientError::Invalid(format!(
            "esm's answer to {path} is over {} MiB: not read (a smaller --limit, if the command has one)",
            limit >> 20
        ))
    };
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| ClientError::Invalid(format!("cannot read the answer: {}", cause(&e))))?
    {
        let needed = body.len() + chunk.len();
        if needed > limit {
            return Err(too_large());
        }
        // Grown by doubling, but never past the limit: the buffer (and a copy while it
        // grows) stays within twice the limit.
        if needed > body.capacity() {
            body.reserve_exact(needed.max(body.capacity() * 2).min(limit) - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| ClientError::Invalid(format!("esm's answer to {path} is not UTF-8")))
}

/// Redirects are followed only within the origin (scheme, host and port) of the request
/// they answer; one to another origin is not followed (`call` reports it), so neither
/// the credentials nor a PUT or PATCH body reach another server. reqwest by default
/// follows any redirect, dropping `Authorization` across hosts but re-sending the body
/// of a 307 or 308.
fn same_origin_only() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let previous = attempt.previous();
        if previous.len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match previous.last() {
            Some(from) if from.origin() == attempt.url().origin() => attempt.follow(),
            _ => attempt.stop(),
        }
    })
}

/// `url` without the user and password it may hold (`http://user:secret@host`).
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        _ => url.to_owned(),
    }
}

/// The innermost cause of a transport error, which says what actually failed
/// ("Connection refused"), not only that the request did.
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    if e.is_timeout() { format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()) } else { source.to_string() }
}
