//! [`Timestamp`]: a moment as esm records and shows it, RFC 3339 in UTC with
//! milliseconds (`2026-01-02T03:04:05.678Z`), the form OSB uses. Records carry it typed,
//! so nothing re-parses text to compare or subtract times; it is written and read as
//! that text, so stored documents and answers are what they were.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A moment, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// `at`, to the millisecond (what the text keeps, so a round trip is exact and the
    /// order of two timestamps is the order of their texts).
    pub fn at(at: SystemTime) -> Self {
        Self::from_millis(at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// `millis` after the Unix epoch.
    pub fn from_millis(millis: u64) -> Self {
        Self(UNIX_EPOCH + Duration::from_millis(millis))
    }

    /// The moment as a `SystemTime`.
    pub fn time(self) -> SystemTime {
        self.0
    }

    /// Milliseconds after the Unix epoch.
    pub fn millis(self) -> u64 {
        self.0.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        self.0.duration_since(earlier.0).unwrap_or_default()
    }

    /// `after` later.
    pub fn plus(self, after: Duration) -> Self {
        Self::at(self.0 + after)
    }

    /// Reads an RFC 3339 timestamp in UTC (`Z`), with or without a fraction.
    pub fn parse(text: &str) -> Result<Self, humantime::TimestampError> {
        humantime::parse_rfc3339(text).map(Self::at)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_millis(self.0).fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Borrowed where the format allows, owned otherwise; either way bounded by the
        // document it came in.
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 UTC timestamp: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_written_and_read_as_the_text_osb_uses() {
        let at = Timestamp::from_millis(1_767_323_045_678);
        assert_eq!(at.to_string(), "2026-01-02T03:04:05.678Z");
        assert_eq!(serde_json::to_value(at).expect("encodes"), serde_json::json!("2026-01-02T03:04:05.678Z"));
        assert_eq!(
            serde_json::from_value::<Timestamp>(serde_json::json!("2026-01-02T03:04:05.678Z")).expect("decodes"),
            at
        );
        assert_eq!(Timestamp::parse("2026-01-02T03:04:05Z").expect("no fraction").millis(), 1_767_323_045_000);
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!("yesterday")).is_err());
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!(17)).is_err());
    }

    #[test]
    fn finer_times_are_kept_to_the_millisecond_so_order_is_the_text_s_order() {
        let fine = UNIX_EPOCH + Duration::from_nanos(1_767_323_045_678_999_999);
        let at = Timestamp::at(fine);
        assert_eq!(at, Timestamp::parse(&at.to_string()).expect("round trip"));
        let later = at.plus(Duration::from_millis(1));
        assert!(at < later && at.to_string() < later.to_string());
        assert_eq!(later.since(at), Duration::from_millis(1));
        assert_eq!(at.since(later), Duration::ZERO);
    }
}
