//! The unit of work: the smallest piece that is fetched and committed on its own.
//!
//! A unit's id is derived from its parameters only (source, window, filters), never from the
//! wall clock, so a rerun computes the same ids, finds them in the state store and skips them,
//! and a rewrite of an unfinished unit replaces its files instead of adding new ones.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A half-open UTC time window `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self { start, end }
    }
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// One unit of work, as planned by a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Stable id, safe as a file name: `[A-Za-z0-9._=-]` only (see [`Unit::sanitize_id`]).
    pub id: String,
    /// The records this unit covers, by their event time.
    pub window: Window,
    /// Source-specific parameters, shown by `etl plan` (e.g. `StartDate`, `Status`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Hive partitions fixed for the whole unit, outermost first, placed before `dt=`.
    #[serde(default)]
    pub partitions: Vec<(String, String)>,
    /// The window is not closed yet (it ends after now minus the settle lag): the unit is
    /// written, but fetched again and replaced on every run until it closes.
    #[serde(default)]
    pub provisional: bool,
}

impl Unit {
    /// The stream a unit belongs to: its id without the trailing `-YYYY-MM-DD` of a day unit
    /// (ids of time-windowed units end with their window's start date, by convention). Units of
    /// one stream cover consecutive windows of the same query.
    pub fn stream(&self) -> &str {
        let id = self.id.as_str();
        let is_date = |s: &str| {
            s.len() == 10
                && s.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
        };
        match id.len().checked_sub(11) {
            Some(cut) if id.is_char_boundary(cut) && id[cut..].starts_with('-') && is_date(&id[cut + 1..]) => {
                &id[..cut]
            }
            _ => id,
        }
    }

    /// Replaces every character outside `[A-Za-z0-9._=-]` by `_`.
    pub fn sanitize_id(raw: &str) -> String {
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_the_id_without_its_date() {
        let t = chrono::DateTime::UNIX_EPOCH;
        let unit = |id: &str| Unit {
            id: id.into(),
            window: Window::new(t, t),
            params: Default::default(),
            partitions: Vec::new(),
            provisional: false,
        };
        assert_eq!(unit("mail_delivery-2025-09-11").stream(), "mail_delivery");
        assert_eq!(
            unit("mail_tracking-blocked_traffic-a.example-2025-09-11").stream(),
            "mail_tracking-blocked_traffic-a.example"
        );
        assert_eq!(
            unit("webdav-default.log.1402910774659").stream(),
            "webdav-default.log.1402910774659"
        );
    }

    #[test]
    fn sanitize_keeps_safe_characters_only() {
        assert_eq!(
            Unit::sanitize_id("mail_delivery-2025-09-11"),
            "mail_delivery-2025-09-11"
        );
        assert_eq!(Unit::sanitize_id("a/b c:d"), "a_b_c_d");
        assert_eq!(Unit::sanitize_id("../x"), ".._x");
    }
}
