//! Secret settings and how values that may hold credentials are shown: the password
//! never, a URL (the webhook's, MongoDB's) as its scheme and hosts alone, a host
//! without its `user:password@`.

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

/// `scheme://user:pass@host/path?options` → `scheme://********@host/path?********`,
/// for a log line or an error naming a store. Everything up to the last `@` is hidden,
/// so a password with a `/`, `@` or `?` in it (unescaped, as people type them) is
/// hidden too; at worst more than the credentials is. The options are hidden as they
/// may hold secrets too (`tlsCertificateKeyFilePassword`).
pub fn redact_uri(value: &str) -> String {
    match value.find("://") {
        Some(scheme_end) => {
            let shown = format!("{}://{}", &value[..scheme_end], redact_userinfo(&value[scheme_end + 3..]));
            match shown.split_once('?') {
                Some((base, _)) => format!("{base}?{REDACTED}"),
                None => shown,
            }
        }
        None => value.to_owned(),
    }
}

/// `scheme://user:pass@host:port,host2/path?query#fragment` → `scheme://host:port,host2`:
/// what `/environment` shows of a URL, where no path secret (`/hooks/<token>`), query
/// or user info belongs. When an `@` after the hosts leaves unclear where the hosts
/// end (a password with an unescaped `/`), the hosts are hidden too: `scheme://********`.
/// A value that is not `scheme://…` is hidden whole.
pub fn url_origin(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return REDACTED.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if after.contains('@') && !authority.contains('@') {
        return format!("{scheme}://{REDACTED}");
    }
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    format!("{scheme}://{hosts}")
}

/// A host setting (`user:pw@db`, which becomes a URI's authority) as its host alone.
pub fn host_shown(value: &str) -> String {
    url_origin(&format!("x://{value}")).trim_start_matches("x://").to_owned()
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
        assert_eq!(redact_uri("mongodb://admin:pw@db:27017/esm?tls=true"), "mongodb://********@db:27017/esm?********");
        // Passwords with unescaped '/' or '@' stay hidden too.
        for uri in ["mongodb://admin:pa/ss@db/esm", "mongodb://admin:p@ss@db", "mongodb://admin:p?x#@db"] {
            let shown = redact_uri(uri);
            assert!(!shown.contains("pa/ss") && !shown.contains("p@ss") && !shown.contains("p?x"), "{shown}");
            assert!(shown.ends_with("@db/esm") || shown.ends_with("@db"), "{shown}");
        }
        assert_eq!(redact_userinfo("admin:pw@db"), "********@db");
        assert_eq!(redact_userinfo("db"), "db");
    }

    #[test]
    fn a_url_shows_its_scheme_and_hosts_alone() {
        for (url, shown) in [
            ("https://hooks.example:8443/hooks/s3cr3t?token=k3y#f", "https://hooks.example:8443"),
            ("https://u:p4ss@hooks.example/x", "https://hooks.example"),
            (
                "mongodb://admin:pw@a:27017,b:27018/esm?replicaSet=rs&tlsCertificateKeyFilePassword=k3y",
                "mongodb://a:27017,b:27018",
            ),
            ("mongodb+srv://cluster.example/?authSource=admin", "mongodb+srv://cluster.example"),
            // An unescaped '/' or '@' in a password: nothing of it, nor of the hosts.
            ("mongodb://admin:pa/ss@db/esm", "mongodb://********"),
            ("mongodb://admin:p@ss@db", "mongodb://db"),
            ("https://h.example/q?mail=a@k3y", "https://********"),
            ("not a url", REDACTED),
        ] {
            assert_eq!(url_origin(url), shown, "{url}");
        }
        assert_eq!(host_shown("admin:pw@db"), "db");
        assert_eq!(host_shown("db"), "db");
        assert_eq!(host_shown("db/?tlsCertificateKeyFilePassword=k3y"), "db");
    }
}
