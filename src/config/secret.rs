//! Secret settings and how values that may hold credentials are shown: the password
//! never, a connection string without its `user:password@`.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A secret setting: neither `Debug` nor `Serialize` (`/environment`) shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Never the secret: `/environment` shows that one is set, not what it is.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// What a redacted value shows.
pub const REDACTED: &str = "********";

/// Hides credentials in a setting's value: the whole value when the name says it is a
/// secret, otherwise the `user:password@` part of a URI or of a host.
pub fn redact_value(name: &str, value: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "APIKEY", "API_KEY", "PRIVATE"]
        .iter()
        .any(|word| upper.contains(word))
    {
        return REDACTED.to_owned();
    }
    if value.contains("://") { redact_uri(value) } else { redact_userinfo(value) }
}

/// `scheme://user:pass@host/...` → `scheme://********@host/...`. Everything up to
/// the last `@` is hidden, so a password with a `/`, `@` or `?` in it (unescaped, as
/// people type them) is hidden too; at worst more than the credentials is.
pub fn redact_uri(value: &str) -> String {
    match value.find("://") {
        Some(scheme_end) => format!("{}://{}", &value[..scheme_end], redact_userinfo(&value[scheme_end + 3..])),
        None => value.to_owned(),
    }
}

/// `user:pass@host...` → `********@host...`: what follows a URI's scheme, or a host
/// setting that carries credentials the same way (`ESM_MONGO_HOST=user:pw@db`).
pub fn redact_userinfo(value: &str) -> String {
    match value.rfind('@') {
        Some(at) => format!("{REDACTED}{}", &value[at..]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_values_never_show() {
        assert_eq!(redact_value("ESM_MONGO_PASSWORD", "x"), REDACTED);
        assert_eq!(
            redact_value("ESM_MONGO_URI", "mongodb://admin:pw@db:27017/esm?tls=true"),
            "mongodb://********@db:27017/esm?tls=true"
        );
        // Passwords with unescaped '/' or '@' stay hidden too.
        for uri in ["mongodb://admin:pa/ss@db/esm", "mongodb://admin:p@ss@db", "mongodb://admin:p?x#@db"] {
            let shown = redact_uri(uri);
            assert!(!shown.contains("pa/ss") && !shown.contains("p@ss") && !shown.contains("p?x"), "{shown}");
            assert!(shown.ends_with("@db/esm") || shown.ends_with("@db"), "{shown}");
        }
        assert_eq!(redact_userinfo("admin:pw@db"), "********@db");
        assert_eq!(redact_userinfo("db"), "db");
        assert_eq!(redact_value("ESM_MONGO_HOST", "admin:pw@db"), "********@db");
    }
}
