//! Stored times: RFC 3339 in UTC with milliseconds, the one format of every record and document
//! (keys, accounts, sessions, usage). A leaf module: anything that stores a time may use it.

use chrono::{DateTime, Utc};

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
