//! What an engine or API said, in esm's words.
//!
//! A backend failure reaches clients (a provision's `last_operation` description, a
//! pool's `last_error`). The engine's own text may carry what a client has no business
//! seeing: the host's resolver address (`lookup registry on 127.0.0.53:53`), socket
//! paths, internal URLs, runtime paths. So a client is told what failed in esm's words,
//! picked from a table of phrases the engines use, and the raw text goes to the debug
//! log for the operator.

/// Phrases an engine's or API's answer may contain (matched without regard to case),
/// most specific first, and what esm says for each.
const PHRASES: &[(&str, &str)] = &[
    ("port is already allocated", "a host port it needs is already in use"),
    ("address already in use", "a host port it needs is already in use"),
    ("pull access denied", "the image does not exist or its registry wants credentials esm does not have"),
    ("manifest unknown", "the image does not exist in its registry"),
    ("no such image", "the image is not on the engine"),
    ("unauthorized", "the registry refused esm's credentials"),
    ("authentication required", "the registry refused esm's credentials"),
    ("toomanyrequests", "the registry's rate limit was reached"),
    ("no such host", "the registry or a host it names could not be reached"),
    ("lookup ", "the registry or a host it names could not be reached"),
    ("i/o timeout", "a host the engine needed did not answer in time"),
    ("timeout", "a host the engine needed did not answer in time"),
    ("connection refused", "a host the engine needed refused the connection"),
    ("dial tcp", "a host the engine needed could not be reached"),
    ("x509", "a host the engine needed presented a certificate it does not trust"),
    ("executable file not found", "the container's command is not in its image"),
    ("exec: ", "the container's command could not be run"),
    ("no space left", "the engine's host is out of disk space"),
    ("out of memory", "the engine's host is out of memory"),
    ("is already in use", "a name it needs is already in use"),
    ("already exists", "something it needs to create already exists"),
    ("permission denied", "the engine was denied permission"),
    ("not found", "something it needs was not found"),
    ("no such", "something it needs was not found"),
    ("invalid", "the engine refused the request as invalid"),
];

/// What esm tells a client for an engine's `raw` answer about `what` (for the debug
/// log): the first of the phrases esm knows that it contains, else `otherwise`. The
/// raw text is logged at debug level (escaped, as every log field is).
pub fn in_esm_words(what: &str, raw: &str, otherwise: &'static str) -> &'static str {
    tracing::debug!(what, raw, "the engine's own answer");
    let lower = raw.to_lowercase();
    PHRASES.iter().find(|(phrase, _)| lower.contains(phrase)).map_or(otherwise, |(_, said)| said)
}

/// An API's answer that names objects and fields (`spec.replicas: Invalid value`) helps
/// the client and is kept; one that names an address (an admission webhook's internal
/// URL, a node's IP, a socket) is said in esm's words instead, from the same table,
/// else `otherwise`.
pub fn api_message(what: &str, message: &str, otherwise: &'static str) -> String {
    if names_an_address(message) { in_esm_words(what, message, otherwise).to_owned() } else { message.to_owned() }
}

/// Whether `text` holds a URL, a socket path, a name lookup, a dial or an IPv4 address.
fn names_an_address(text: &str) -> bool {
    let lower = text.to_lowercase();
    if ["://", "dial ", "lookup ", ".sock", "unix:"].iter().any(|marker| lower.contains(marker)) {
        return true;
    }
    // Four dot-separated runs of digits: an IPv4 address.
    text.split(|c: char| !(c.is_ascii_digit() || c == '.')).any(|run| {
        let parts: Vec<&str> = run.split('.').collect();
        parts.len() >= 4 && parts.iter().filter(|p| !p.is_empty() && p.len() <= 3).count() >= 4
    })
}

/// A failure that never reached the engine or API (transport, TLS, a client error), for
/// a client: `what` and that the engine could not be reached. The error itself (an
/// internal URL, a socket path) is logged at debug level.
pub fn unreachable(what: &str, error: &dyn std::error::Error) -> super::BackendError {
    tracing::debug!(what, error = %error, "engine request failed");
    super::BackendError::new(format!("{what}: the engine could not be reached (the operator's log says why)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_texts_become_esm_words_without_addresses() {
        let other = "the engine refused";
        for (raw, said) in [
            (
                "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: server misbehaving",
                "the registry or a host it names could not be reached",
            ),
            (
                "pull access denied for nope/nope, repository does not exist or may require 'docker login'",
                "the image does not exist or its registry wants credentials esm does not have",
            ),
            (
                "manifest for nginx:nope not found: manifest unknown: manifest unknown",
                "the image does not exist in its registry",
            ),
            ("No such image: nginx:nope", "the image is not on the engine"),
            (
                "driver failed programming external connectivity on endpoint web (0f1e): Bind for 0.0.0.0:8080 failed: port is already allocated",
                "a host port it needs is already in use",
            ),
            (
                "OCI runtime create failed: runc create failed: exec: \"nope\": executable file not found in $PATH: unknown",
                "the container's command is not in its image",
            ),
            ("something no table knows", other),
        ] {
            let shown = in_esm_words("test", raw, other);
            assert_eq!(shown, said, "{raw}");
            for leak in ["127.0.0.53", "0.0.0.0", "$PATH", "registry-1"] {
                assert!(!shown.contains(leak), "{shown}");
            }
        }
    }

    #[test]
    fn an_api_message_is_kept_unless_it_names_an_address() {
        let kept = "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1";
        assert_eq!(api_message("create", kept, "refused"), kept);
        for leaking in [
            "Internal error occurred: failed calling webhook \"v.example\": Post \"https://v.ns.svc:443/validate\": dial tcp 10.96.1.2:443: connect: connection refused",
            "pods \"x\" is forbidden: node 192.168.1.20 is not ready",
        ] {
            let shown = api_message("create", leaking, "the API refused");
            assert!(!shown.contains("10.96") && !shown.contains("192.168") && !shown.contains("svc"), "{shown}");
        }
    }

    #[test]
    fn an_unreachable_engine_is_said_without_its_address() {
        let error =
            std::io::Error::other("error trying to connect: tcp connect error: 10.96.0.1:443: Connection refused");
        let e = unreachable("Kubernetes API: create namespace esm-i-1", &error);
        assert!(!e.message.contains("10.96.0.1"), "{}", e.message);
        assert!(e.message.starts_with("Kubernetes API: create namespace esm-i-1: "), "{}", e.message);
    }
}
