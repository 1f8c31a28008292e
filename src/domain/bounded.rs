//! Client-controlled text, bounded by its type.
//!
//! Every id, name, description, label and note a client sends is parsed into one of
//! these types where it enters (the wire shapes, path and query extractors), so nothing
//! downstream ever holds an unbounded string or one that could forge a log line, a
//! header or a terminal's state. Each type has a byte bound and a character set; a
//! value outside them is refused with a message naming the limit (the extractors turn
//! it into a 400 with the OSB error body).
//!
//! The types deserialize from a JSON string (or a path or query segment), serialize as
//! the plain string, and read as a `&str` (`Deref`), so code past the edge uses them as
//! it used `String`s.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// The longest id esm accepts, in bytes. OSB ids are GUIDs (36 bytes); OSB 2.14
/// recommends strings of at most 255 characters.
pub const MAX_ID_BYTES: usize = 255;
/// The longest name (of a service, plan or other named thing), in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// The longest note (an instance's word on its own liveness), in bytes.
pub const MAX_NOTE_BYTES: usize = 1024;
/// The longest label or tag, in bytes.
pub const MAX_LABEL_BYTES: usize = 255;
/// The longest engine name or label key, in bytes (a DNS label's bound).
pub const MAX_SLUG_BYTES: usize = 63;
/// The longest engine address or credential file name, in bytes.
pub const MAX_LOCATOR_BYTES: usize = 1024;

/// Which characters a bounded text may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Printable, the space the only whitespace: ids. OSB only recommends unreserved
    /// characters (a platform may send `Instance/With Odd Chars`, percent-encoded), so
    /// what reaches paths, engine object names, index keys and log fields is bounded by
    /// length and by what no terminal or log line may hold.
    Id,
    /// Printable, spaces allowed: one line of text.
    Line,
    /// Printable plus newlines and tabs: a paragraph. (Terminals and logs still show
    /// these escaped.)
    Text,
    /// Lowercase ASCII letters, digits, `-`, `.` and `_`: names esm itself puts in
    /// metric labels, engine object names and file names (engines, their labels).
    Slug,
}

impl Charset {
    /// Whether `c` is allowed.
    pub fn allows(self, c: char) -> bool {
        match self {
            Charset::Id | Charset::Line => {
                !c.is_control() && !is_invisible_format(c) && (c == ' ' || !c.is_whitespace())
            }
            Charset::Text => (!c.is_control() || c == '\n' || c == '\t') && !is_invisible_format(c),
            Charset::Slug => c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'),
        }
    }

    /// The rule as a regular expression, where one says it whole (for the OpenAPI
    /// document: the other sets are "printable", which a pattern cannot say well).
    pub fn pattern(self) -> Option<&'static str> {
        match self {
            Charset::Slug => Some("^[a-z0-9._-]+$"),
            Charset::Id | Charset::Line | Charset::Text => None,
        }
    }

    /// The rule, in words, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Charset::Id => "printable characters (spaces allowed, no other whitespace)",
            Charset::Line => "printable characters on one line",
            Charset::Text => "printable characters, newlines and tabs",
            Charset::Slug => "lowercase letters, digits, '-', '.' and '_'",
        }
    }
}

/// Characters that change how text around them is shown without being shown
/// themselves: bidirectional overrides and isolates (which make a terminal or a page
/// show text in another order than it is) and the line and paragraph separators.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// Empty where a value is required.
    Empty {
        /// What the text is (`an instance id`).
        what: &'static str,
    },
    /// Over the byte bound.
    TooLong {
        /// What the text is.
        what: &'static str,
        /// The bound.
        max: usize,
        /// The length sent.
        len: usize,
    },
    /// A character outside the set.
    BadCharacter {
        /// What the text is.
        what: &'static str,
        /// The set's rule, in words.
        rule: &'static str,
        /// The refused character, escaped.
        found: String,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Empty { what } => write!(f, "{what} must not be empty"),
            TextError::TooLong { what, max, len } => {
                write!(f, "{what} must be at most {max} bytes (got {len})")
            }
            TextError::BadCharacter { what, rule, found } => {
                write!(f, "{what} must hold only {rule} (found {found})")
            }
        }
    }
}

impl std::error::Error for TextError {}

/// Checks `value` against a bound and a character set.
pub fn check(
    value: &str,
    what: &'static str,
    max: usize,
    charset: Charset,
    allow_empty: bool,
) -> Result<(), TextError> {
    if value.is_empty() && !allow_empty {
        return Err(TextError::Empty { what });
    }
    if value.len() > max {
        return Err(TextError::TooLong { what, max, len: value.len() });
    }
    if let Some(c) = value.chars().find(|&c| !charset.allows(c)) {
        return Err(TextError::BadCharacter { what, rule: charset.describe(), found: c.escape_default().to_string() });
    }
    Ok(())
}

/// Declares bounded text types (see the module docs), one table row each.
macro_rules! bounded_text {
    ($($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $charset:expr, allow_empty = $empty:literal;)*) => {
        $(bounded_text!(@one $(#[$doc])* $name, $what, $max, $charset, allow_empty = $empty);)*
    };
    (@one $(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $charset:expr, allow_empty = $empty:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The bound, in bytes.
            pub const MAX_BYTES: usize = $max;
            /// The character set.
            pub const CHARSET: Charset = $charset;
            /// What a value is, in error messages.
            pub const WHAT: &'static str = $what;

            /// Parses `value`.
            pub fn parse(value: impl Into<String>) -> Result<Self, TextError> {
                let value = value.into();
                check(&value, $what, $max, $charset, $empty)?;
                Ok(Self(value))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = TextError;
            fn try_from(value: String) -> Result<Self, TextError> {
                Self::parse(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = TextError;
            fn try_from(value: &str) -> Result<Self, TextError> {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = TextError;
            fn from_str(value: &str) -> Result<Self, TextError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(if $empty { None } else { Some(1) })
                    .max_length(Some($max))
                    .pattern($charset.pattern())
                    .description(Some(format!("{} (at most {} bytes of {})", $what, $max, $charset.describe())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

bounded_text! {
    /// An instance id (`/v2/service_instances/{instance_id}`).
    InstanceId, "an instance id", MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// A binding id.
    BindingId, "a binding id", MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// A service offering's id.
    ServiceId, "a service id", MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// A plan's id (also the id of the plan's pool).
    PlanId, "a plan id", MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// A manifest's id.
    ManifestId, "a manifest id", MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// An operation's id (the `operation` of a 202, sent back on `last_operation`).
    OperationId, "an operation id", MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// Any other opaque id a client sends (organization and space guids, app guids,
    /// listing cursors).
    OpaqueId, "an id", MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// A listing's `after` cursor: what a page handed out for the id it ended with
    /// (two bytes of prefix and two hex digits a byte of an id, with room for the
    /// longer ids of resources).
    Cursor, "a cursor", 2 + 4 * MAX_ID_BYTES, Charset::Id, allow_empty = false;
    /// A version (`maintenance_info.version`, a SemVer 2.0 version).
    Version, "a version", MAX_NAME_BYTES, Charset::Id, allow_empty = false;
    /// A name: of a service, a plan, or a short name.
    Name, "a name", MAX_NAME_BYTES, Charset::Line, allow_empty = false;
    /// A description of a service or plan.
    Description, "a description", MAX_DESCRIPTION_BYTES, Charset::Text, allow_empty = false;
    /// A label or tag.
    Label, "a label", MAX_LABEL_BYTES, Charset::Line, allow_empty = false;
    /// An instance's note on its own liveness.
    Note, "a note", MAX_NOTE_BYTES, Charset::Line, allow_empty = true;
    /// An engine's name (`/v2/et/engines/{name}`): also a metric label and part of
    /// slot ids, so short and plain.
    EngineName, "an engine name", MAX_SLUG_BYTES, Charset::Slug, allow_empty = false;
    /// The key of an engine's label (`zone`, `tier`).
    LabelKey, "a label key", MAX_SLUG_BYTES, Charset::Slug, allow_empty = false;
    /// Where an engine is reached (`unix:///var/run/docker.sock`, `tcp://host:2376`), or
    /// a file of its credentials, relative to `ESM_ENGINE_CREDENTIALS_DIR`.
    Locator, "an engine address or file", MAX_LOCATOR_BYTES, Charset::Id, allow_empty = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_within_the_bound_and_set_parse() {
        for id in ["i-1", "6f1d0a1e-7b2c-4f0e-9a55-0c1b2d3e4f50", "a.b_c~d:e@f+g", "é", "Instance/With Odd Chars"] {
            assert_eq!(InstanceId::parse(id).unwrap().as_str(), id);
        }
        assert!(InstanceId::parse("x".repeat(MAX_ID_BYTES)).is_ok());
    }

    #[test]
    fn ids_over_the_bound_are_refused_naming_it() {
        let err = InstanceId::parse("x".repeat(MAX_ID_BYTES + 1)).unwrap_err();
        assert_eq!(err.to_string(), "an instance id must be at most 255 bytes (got 256)");
        // Bytes, not characters: 128 two-byte characters are 256 bytes.
        assert!(PlanId::parse("é".repeat(128)).is_err());
    }

    #[test]
    fn control_characters_whitespace_and_bidi_overrides_are_refused() {
        for bad in ["a\nb", "a\u{a0}\u{3000}b", "a\u{1b}[2J", "\u{7f}", "\u{85}", "a\u{202E}b", "a\tb", ""] {
            assert!(ServiceId::parse(bad).is_err(), "{bad:?}");
        }
        let err = ServiceId::parse("a\u{1b}b").unwrap_err().to_string();
        assert!(err.contains("\\u{1b}"), "{err}");
        assert!(!err.contains('\u{1b}'), "the message escapes what it quotes");
    }

    #[test]
    fn names_take_spaces_descriptions_take_newlines_notes_may_be_empty() {
        assert!(Name::parse("My Service").is_ok());
        assert!(Name::parse("a\nb").is_err());
        assert!(Description::parse("line one\nline two\tend").is_ok());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse("d".repeat(MAX_DESCRIPTION_BYTES + 1)).is_err());
        assert!(Note::parse("").is_ok());
        assert!(Note::parse("disk \u{1b}]0;owned\u{7}").is_err());
    }

    #[test]
    fn serde_parses_on_the_way_in_and_writes_the_plain_string() {
        let id: InstanceId = serde_json::from_str("\"i-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"i-1\"");
        let err = serde_json::from_str::<InstanceId>(&format!("\"{}\"", "x".repeat(300))).unwrap_err();
        assert!(err.to_string().contains("at most 255 bytes"), "{err}");
    }
}
