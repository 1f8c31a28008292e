//! The credential an instance reports its liveness with (`PUT .../liveness` with
//! `Authorization: Bearer <token>`), so that what heartbeats never holds the broker's
//! password, which can deprovision everything.
//!
//! A token is minted for each binding, when it is made, and handed out in the
//! binding's credentials (`esm_liveness_token`): a token's plain text can be given out
//! only when it is minted, because esm keeps only its SHA-256 digest (on the binding's
//! record). It names its binding, so checking one reads one record:
//! `esmlt.<binding id, base64url>.<64 hex digits>`. It is accepted for the binding's
//! instance only, while the binding lives: unbinding revokes it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::bounded::BindingId;

/// What every token starts with: it tells a reporting token from other secrets in logs
/// and scanners.
const PREFIX: &str = "esmlt";
/// Hex digits of a token's secret part.
const SECRET_HEX: usize = 64;

/// A reporting token, as minted or as presented.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportingToken {
    binding_id: BindingId,
    secret: String,
}

impl std::fmt::Debug for ReportingToken {
    /// The binding it names; never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportingToken").field("binding_id", &self.binding_id).finish_non_exhaustive()
    }
}

impl ReportingToken {
    /// A new token for binding `binding_id`: two v4 UUIDs from the system's random
    /// source, 244 random bits.
    pub fn mint(binding_id: &BindingId) -> Self {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Self { binding_id: binding_id.clone(), secret: random() + &random() }
    }

    /// A presented token; `None` if it is not one esm could have minted.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let (prefix, binding, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != PREFIX || parts.next().is_some() {
            return None;
        }
        if secret.len() != SECRET_HEX || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let binding_id = String::from_utf8(BASE64URL.decode(binding).ok()?).ok()?;
        Some(Self { binding_id: BindingId::parse(binding_id).ok()?, secret: secret.to_ascii_lowercase() })
    }

    /// The binding it was minted for.
    pub fn binding_id(&self) -> &BindingId {
        &self.binding_id
    }

    /// The token's text, to hand out once.
    pub fn expose(&self) -> String {
        format!("{PREFIX}.{}.{}", BASE64URL.encode(self.binding_id.as_bytes()), self.secret)
    }

    /// What esm keeps of it: the SHA-256 of its secret, in hex.
    pub fn digest(&self) -> String {
        Sha256::digest(self.secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether this token is the one `digest` was kept of, compared in constant time.
    pub fn matches(&self, digest: &str) -> bool {
        self.digest().as_bytes().ct_eq(digest.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(id: &str) -> BindingId {
        BindingId::parse(id).expect("a binding id")
    }

    #[test]
    fn a_minted_token_reads_back_and_matches_only_its_own_digest() {
        let token = ReportingToken::mint(&binding("b-1.with.dots"));
        let parsed = ReportingToken::parse(&token.expose()).expect("parses");
        assert_eq!(parsed, token);
        assert_eq!(parsed.binding_id().as_str(), "b-1.with.dots");
        assert!(parsed.matches(&token.digest()));
        let other = ReportingToken::mint(&binding("b-1.with.dots"));
        assert_ne!(other.expose(), token.expose(), "every mint is new");
        assert!(!other.matches(&token.digest()));
        assert!(!token.matches(""));
    }

    #[test]
    fn the_digest_is_kept_never_the_secret() {
        let token = ReportingToken::mint(&binding("b"));
        let text = token.expose();
        let secret = text.rsplit('.').next().expect("a secret");
        assert_eq!(secret.len(), SECRET_HEX);
        assert!(!token.digest().contains(secret));
        assert!(!format!("{token:?}").contains(secret), "Debug hides the secret");
    }

    #[test]
    fn anything_else_is_not_a_token() {
        let good = ReportingToken::mint(&binding("b")).expose();
        let (head, secret) = good.rsplit_once('.').expect("parts");
        for bad in [
            String::new(),
            "esmlt".into(),
            format!("{head}.{}", &secret[1..]),
            format!("{head}.{}g", &secret[1..]),
            format!("{good}.x"),
            good.replacen("esmlt", "other", 1),
            format!("esmlt.!!!.{secret}"),
            format!("esmlt.{}.{secret}", BASE64URL.encode("two words\n")),
        ] {
            assert!(ReportingToken::parse(&bad).is_none(), "{bad:?}");
        }
    }
}
