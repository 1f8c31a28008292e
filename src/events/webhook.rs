//! `ESM_EVENT_WEBHOOK_URL`: every event POSTed to a URL, at least once, in id order.
//!
//! One replica delivers at a time: it holds a lease on a cursor record in the store
//! (the last id delivered), renewed while it works; when it dies, another takes over
//! after the lease and goes on from the cursor. An event is POSTed until the receiver
//! answers 2xx, with backoff, and the cursor moves only then: a crash between the two
//! delivers an event again (hence "at least once"; `X-ESM-Event-Id` lets a receiver
//! drop repeats). Delivery runs in its own task: a slow or failing receiver never
//! holds up an operation.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{EventLog, Filter};
use crate::clock::Clock;
use crate::domain::event::Event;
use crate::store::{Collection, Record, Records, StoreError};

/// How long a replica holds the delivery without renewing it.
const LEASE: Duration = Duration::from_secs(30);
/// The longest wait between two attempts at one event.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one POST may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many events are read from the log at a time.
const PAGE: usize = 100;

/// Where a webhook is POSTed: checked at start.
#[derive(Debug, Clone)]
pub struct Webhook {
    uri: Uri,
    host: String,
    port: u16,
    tls: bool,
    /// `Basic …` for a URL with `user:password@`.
    authorization: Option<String>,
}

impl Webhook {
    /// An `http://` or `https://` URL with a host.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|_| "ESM_EVENT_WEBHOOK_URL is not a URL".to_owned())?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("ESM_EVENT_WEBHOOK_URL must be an http:// or https:// URL".into()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or("ESM_EVENT_WEBHOOK_URL has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authorization = uri.authority().and_then(|a| a.as_str().rsplit_once('@')).map(|(userinfo, _)| {
            use base64::Engine;
            let decoded = percent_decode(userinfo);
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(decoded))
        });
        Ok(Self { uri, host, port, tls, authorization })
    }
}

/// The delivery cursor, shared by the replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    /// The last id delivered.
    delivered: u64,
    /// The replica delivering, and until when (Unix milliseconds).
    owner: String,
    lease_until: u64,
}

const CURSOR_ID: &str = "webhook_cursor";

impl Record for Cursor {
    const COLLECTION: Collection = Collection::Registry;
    fn id(&self) -> &str {
        CURSOR_ID
    }
}

/// One replica's deliverer.
pub(super) struct Deliverer {
    pub(super) log: Arc<EventLog>,
    pub(super) records: Records,
    pub(super) clock: Clock,
    pub(super) webhook: Webhook,
    pub(super) replica: String,
}

impl Deliverer {
    /// Delivers until `stop`.
    pub(super) async fn run(self, stop: CancellationToken) {
        let tls = tls_connector();
        while !stop.is_cancelled() {
            match self.claim().await {
                Ok(Some(delivered)) => {
                    if let Err(e) = self.deliver_from(delivered, &tls, &stop).await {
                        tracing::warn!(error = %e, "webhook delivery stopped; resuming");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the webhook cursor"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    fn lease_until(&self) -> u64 {
        self.clock.millis().saturating_add(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX))
    }

    /// Takes (or keeps) the delivery: the last id delivered, or `None` while another
    /// replica holds it. A log never delivered starts from its newest event.
    async fn claim(&self) -> Result<Option<u64>, StoreError> {
        let now = self.clock.millis();
        let mut taken = None;
        let written = self
            .records
            .modify::<Cursor, StoreError, _>(CURSOR_ID, |cursor| {
                taken = None;
                if cursor.owner != self.replica && cursor.lease_until > now {
                    return Ok(false);
                }
                cursor.owner.clone_from(&self.replica);
                cursor.lease_until = self.lease_until();
                taken = Some(cursor.delivered);
                Ok(true)
            })
            .await?;
        if written.is_some() {
            return Ok(taken);
        }
        let first = Cursor {
            delivered: self.log.newest().await?,
            owner: self.replica.clone(),
            lease_until: self.lease_until(),
        };
        match self.records.insert(&first).await {
            Ok(_) => Ok(Some(first.delivered)),
            // Another replica made it first.
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves the cursor to `id` if this replica still holds the delivery.
    async fn advance(&self, id: u64) -> Result<bool, StoreError> {
        let mut held = false;
        self.records
            .modify::<Cursor, StoreError, _>(CURSOR_ID, |cursor| {
                held = cursor.owner == self.replica;
                if held {
                    cursor.delivered = cursor.delivered.max(id);
                    cursor.lease_until = self.lease_until();
                }
                Ok(held)
            })
            .await?;
        Ok(held)
    }

    async fn deliver_from(
        &self,
        mut delivered: u64,
        tls: &tokio_rustls::TlsConnector,
        stop: &CancellationToken,
    ) -> Result<(), StoreError> {
        loop {
            let events = self.log.page(&Filter::default(), delivered, PAGE).await?;
            if events.is_empty() {
                // Keep the lease while idle; wait for the log to grow.
                if !self.advance(delivered).await? {
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    () = stop.cancelled() => return Ok(()),
                }
            }
            for event in events {
                if !self.post_until_accepted(&event, tls, stop).await? {
                    return Ok(());
                }
                delivered = event.id;
                if !self.advance(delivered).await? {
                    return Ok(());
                }
            }
        }
    }

    /// POSTs `event` until the receiver accepts it (true), esm stops or the lease is
    /// lost (false).
    async fn post_until_accepted(
        &self,
        event: &Event,
        tls: &tokio_rustls::TlsConnector,
        stop: &CancellationToken,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_vec(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut backoff = Duration::from_millis(200);
        loop {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(&body, event.id, tls)).await {
                Ok(Ok(status)) if (200..300).contains(&status) => return Ok(true),
                Ok(Ok(status)) => tracing::warn!(event = event.id, status, "the webhook refused an event; retrying"),
                Ok(Err(e)) => tracing::warn!(event = event.id, error = %e, "cannot reach the webhook; retrying"),
                Err(_) => tracing::warn!(event = event.id, "the webhook did not answer in time; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return Ok(false),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            // Still ours? (Renews the lease while the receiver is away.)
            if !self.advance(event.id.saturating_sub(1)).await? {
                return Ok(false);
            }
        }
    }

    /// One POST on a fresh connection; the answer's status.
    async fn post(&self, body: &[u8], id: u64, tls: &tokio_rustls::TlsConnector) -> Result<u16, String> {
        let hook = &self.webhook;
        let tcp = TcpStream::connect((hook.host.as_str(), hook.port)).await.map_err(|e| e.to_string())?;
        let path = hook.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = match hook.uri.port_u16() {
            Some(port) => format!("{}:{port}", hook.host),
            None => hook.host.clone(),
        };
        let mut request = Request::post(path).header(header::HOST, host);
        if let Some(authorization) = &hook.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-esm-event-id", id)
            .body(axum::body::Body::from(body.to_vec()))
            .map_err(|e| e.to_string())?;
        if hook.tls {
            let name =
                tokio_rustls::rustls::pki_types::ServerName::try_from(hook.host.clone()).map_err(|e| e.to_string())?;
            let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
            send(TokioIo::new(stream), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
    }
}

/// `%XX` escapes in a URL's user info, decoded.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

async fn send<T>(io: T, request: Request<axum::body::Body>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    driver.abort();
    Ok(response.status().as_u16())
}

/// TLS with the Mozilla roots built into esm (no system store is read).
fn tls_connector() -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::new(crate::tls::client_config()))
}
