//! Timestamps as integer microseconds since the Unix epoch: portable across both databases and
//! totally ordered, rendered in the wire format only at the edge.

use chrono::{DateTime, SecondsFormat, Utc};

/// A point in time in microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_micros())
    }

    /// Whole seconds since the epoch.
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// This time plus a number of seconds.
    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// RFC 3339 with millisecond precision and a `Z` suffix, as the wire examples show
    /// (`2025-07-26T05:36:03.778Z`).
    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_micros(self.0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses an RFC 3339 timestamp.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s).ok().map(|t| Timestamp(t.with_timezone(&Utc).timestamp_micros()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_wire_examples() {
        let t = Timestamp::parse_rfc3339("2025-07-26T05:36:03.778Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-07-26T05:36:03.778Z");
        assert_eq!(t.plus_secs(1).to_rfc3339(), "2025-07-26T05:36:04.778Z");
        assert_eq!(t.as_secs(), 1753508163);
    }
}
