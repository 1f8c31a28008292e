//! Service bindings as esm records them.

use crate::domain::time::Timestamp;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::operation::OperationLog;

/// Where a binding is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingStatus {
    /// The bind operation is running.
    Binding,
    /// Bound; credentials are available.
    Bound,
    /// The bind failed.
    BindFailed,
    /// Unbound. Kept as a tombstone so `last_operation` can answer 410 Gone.
    Unbound,
}

/// An address the application may reach (OSB 2.15 `endpoints`: an array of these).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    /// A host name or IP address.
    pub host: String,
    /// Ports or port ranges (`"8080"`, `"9000-9010"`).
    pub ports: Vec<String>,
    /// `tcp` when absent.
    pub protocol: Option<Protocol>,
}

/// An endpoint's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Both.
    All,
}

impl Endpoint {
    /// Port `port` published on `host` for a container port `key` (`8080/tcp`); none
    /// for a protocol OSB cannot name (`sctp`).
    pub fn published(host: &str, port: impl ToString, key: &str) -> Option<Self> {
        let protocol = match key.split('/').nth(1).unwrap_or("tcp") {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some(Self { host: host.to_owned(), ports: vec![port.to_string()], protocol: Some(protocol) })
    }
}

/// Credentials handed to the application. `Debug` never prints them.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct Credentials(pub Value);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

/// OSB 2.16/2.17 binding metadata.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BindingMetadata {
    /// When the credentials stop working (RFC 3339).
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Timestamp>,
    /// When the platform should rotate the binding (RFC 3339).
    #[schema(value_type = Option<String>)]
    pub renew_before: Option<Timestamp>,
}

impl BindingMetadata {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.expires_at.is_none() && self.renew_before.is_none()
    }
}

/// A service binding.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// The platform's binding id (globally unique).
    pub id: String,
    /// The instance it binds.
    pub instance_id: String,
    /// The offering, as sent on bind.
    pub service_id: String,
    /// The plan, as sent on bind.
    pub plan_id: String,
    /// Deprecated OSB field: the application bound to.
    pub app_guid: Option<String>,
    /// What the binding is for (`app_guid`, `route`).
    pub bind_resource: Option<Value>,
    /// The platform's context object.
    pub context: Option<Value>,
    /// Bind parameters.
    pub parameters: Option<Value>,
    /// OSB 2.17: the binding this one rotates.
    pub predecessor_binding_id: Option<String>,
    /// What the backend produced for the application.
    pub credentials: Option<Credentials>,
    /// OSB 2.15 endpoints the application may reach.
    pub endpoints: Option<Vec<Endpoint>>,
    /// Expiry and renewal times.
    #[serde(default)]
    pub metadata: BindingMetadata,
    /// Where the binding is in its life.
    pub status: BindingStatus,
    /// Its operations, newest last.
    #[serde(default)]
    pub operations: OperationLog,
    /// When it was first requested (RFC 3339).
    pub created_at: Timestamp,
    /// The SHA-256 of the secret of the liveness reporting token handed out in its
    /// credentials (`domain::reporting_token`), in hex; absent for bindings made before
    /// esm minted them.
    pub liveness_token_sha256: Option<String>,
    /// The events of its changes not yet numbered in the log (`domain::outbox`).
    #[serde(default, skip_serializing_if = "super::outbox::Outbox::is_unused")]
    pub outbox: super::outbox::Outbox,
}

impl Binding {
    /// Whether the binding exists for the platform (not unbound).
    pub fn is_live(&self) -> bool {
        self.status != BindingStatus::Unbound
    }

    /// The application guid from either OSB field.
    pub fn app_guid(&self) -> Option<&str> {
        self.app_guid
            .as_deref()
            .or_else(|| self.bind_resource.as_ref().and_then(|r| r.get("app_guid")).and_then(Value::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_port_is_an_endpoint_of_its_protocol_and_sctp_none() {
        let tcp = Endpoint::published("h", 30000, "8080/tcp").expect("tcp");
        assert_eq!((tcp.ports, tcp.protocol), (vec!["30000".to_owned()], Some(Protocol::Tcp)));
        assert_eq!(Endpoint::published("h", "53", "53/udp").and_then(|e| e.protocol), Some(Protocol::Udp));
        assert_eq!(Endpoint::published("h", 1, "80").and_then(|e| e.protocol), Some(Protocol::Tcp), "tcp by default");
        assert!(Endpoint::published("h", 1, "9/sctp").is_none(), "OSB cannot name it");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let creds = Credentials(serde_json::json!({"password": "hunter2"}));
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
