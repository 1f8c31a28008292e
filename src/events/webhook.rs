//! `ESM_EVENT_WEBHOOK_URL`: every event POSTed to a URL, at least once, in id order.
//!
//! One replica delivers at a time: it holds a lease on a cursor record in the store
//! (the last id delivered), renewed while it works; when it dies, another takes over
//! after the lease and goes on from the cursor. An event is POSTed until the receiver
//! answers 2xx, with backoff, and the cursor moves only then: a crash between the two
//! delivers an event again (hence "at least once"; `X-ESM-Event-Id` lets a receiver
//! drop repeats). Delivery runs in its own task: a slow or failing receiver never
//! holds up an operation.
//!
//! The POSTs go through one `reqwest` client kept for the webhook's life, so they share
//! a connection. It connects directly (no proxy from the environment), trusts the
//! Mozilla roots built into esm (`crate::tls`), speaks HTTP/1.1 and follows no
//! redirect: a 3xx is a refusal, retried like any other.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Uri, header};
use serde::{Deserialize, Serialize};
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
/// The most of a receiver's answer read (so that its connection carries the next
/// event); a longer one is dropped with its connection.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long reading that answer may take, after its status came.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a webhook is POSTed, and the client that POSTs there: checked at start.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL without its user info (sent as `authorization` instead).
    url: reqwest::Url,
    /// `Basic …` for a URL with `user:password@` (marked sensitive: never in `Debug`).
    authorization: Option<HeaderValue>,
    /// One client for every POST: its connections are reused.
    http: reqwest::Client,
}

impl Webhook {
    /// An `http://` or `https://` URL with a host.
    pub fn parse(url: &str) -> Result<Self, String> {
        let not_a_url = || "ESM_EVENT_WEBHOOK_URL is not a URL".to_owned();
        let uri: Uri = url.parse().map_err(|_| not_a_url())?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err("ESM_EVENT_WEBHOOK_URL must be an http:// or https:// URL".into());
        }
        uri.host().filter(|h| !h.is_empty()).ok_or("ESM_EVENT_WEBHOOK_URL has no host")?;
        // The user info exactly as written, percent-decoded, whatever its bytes (reqwest
        // would want UTF-8, and a user with no `:password` would gain a `:`).
        let authorization = uri.authority().and_then(|a| a.as_str().rsplit_once('@')).map(|(userinfo, _)| {
            use base64::Engine;
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(userinfo).collect();
            let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(decoded));
            let mut value = HeaderValue::try_from(value).expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        });
        let mut url = reqwest::Url::parse(url).map_err(|_| not_a_url())?;
        // Cannot fail: the URL has a host (checked above).
        let _ = (url.set_username(""), url.set_password(None));
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::client_config())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot make the webhook's HTTP client: {e}"))?;
        Ok(Self { url, authorization, http })
    }

    /// One POST (on a connection the client keeps, or a new one); the answer, its
    /// body unread.
    async fn post(&self, body: &[u8], id: u64) -> Result<reqwest::Response, String> {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-esm-event-id", id)
            .body(body.to_vec());
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        request.send().await.map_err(cause)
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
        while !stop.is_cancelled() {
            match self.claim().await {
                Ok(Some(delivered)) => {
                    if let Err(e) = self.deliver_from(delivered, &stop).await {
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

    async fn deliver_from(&self, mut delivered: u64, stop: &CancellationToken) -> Result<(), StoreError> {
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
                if !self.post_until_accepted(&event, stop).await? {
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
    async fn post_until_accepted(&self, event: &Event, stop: &CancellationToken) -> Result<bool, StoreError> {
        let body = serde_json::to_vec(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut backoff = Duration::from_millis(200);
        loop {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.webhook.post(&body, event.id)).await {
                Ok(Ok(answer)) => {
                    let status = answer.status().as_u16();
                    // The status decides; the body is only read to free the connection.
                    drain(answer).await;
                    if (200..300).contains(&status) {
                        return Ok(true);
                    }
                    tracing::warn!(event = event.id, status, "the webhook refused an event; retrying");
                }
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
}

/// Reads and drops up to [`MAX_ANSWER_BYTES`] of `answer` within [`ANSWER_TIMEOUT`]: read
/// to its end, its connection serves the next POST; otherwise it is closed.
async fn drain(mut answer: reqwest::Response) {
    let reading = async {
        let mut read = 0;
        while let Ok(Some(chunk)) = answer.chunk().await {
            read += chunk.len();
            if read > MAX_ANSWER_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, reading).await;
}

/// What failed, with every cause ("Connection refused", a certificate's fault), and
/// without the URL reqwest would add: its query or path may hold a secret.
fn cause(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(next) = source {
        text = format!("{text}: {next}");
        source = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_info_is_sent_as_basic_auth_and_left_out_of_the_url() {
        let hook = Webhook::parse("https://us%40er:p%3As@hooks.example:8443/esm?key=k").expect("a webhook");
        let expected = "Basic dXNAZXI6cDpz"; // `us@er:p:s`
        assert_eq!(hook.authorization.as_ref().and_then(|v| v.to_str().ok()), Some(expected));
        assert_eq!(hook.url.as_str(), "https://hooks.example:8443/esm?key=k");
        assert!(Webhook::parse("https://hooks.example/").expect("a webhook").authorization.is_none());
        assert!(Webhook::parse("ftp://hooks.example/").is_err() && Webhook::parse("http:///x").is_err());
    }

    #[tokio::test]
    async fn posts_share_a_connection_and_redirects_are_not_followed() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = listener.local_addr().expect("bound").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let answer =
                    hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                        let status = if request.uri().path() == "/moved" { 307 } else { 204 };
                        let location = format!("http://127.0.0.1:{port}/hook");
                        axum::http::Response::builder().status(status).header("location", location).body(String::new())
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, answer));
            }
        });
        let hook = Webhook::parse(&format!("http://127.0.0.1:{port}/hook")).expect("a webhook");
        for id in 1..=3 {
            let answer = hook.post(b"{}", id).await.expect("answered");
            assert_eq!(answer.status().as_u16(), 204);
            drain(answer).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for every POST");
        let moved = Webhook::parse(&format!("http://127.0.0.1:{port}/moved")).expect("a webhook");
        assert_eq!(moved.post(b"{}", 4).await.expect("answered").status().as_u16(), 307, "not followed");
    }
}
