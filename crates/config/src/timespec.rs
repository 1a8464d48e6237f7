//! Points in time as a pipeline file or a command line writes them: an absolute instant, `now`,
//! or an offset from now (`-7d`).
//!
//! The relative form is what a scheduled pipeline wants (`start: -7d` keeps meaning "a week ago"
//! every day); it is resolved against one `now` taken at the start of a run so that every unit
//! of the run agrees on the same range.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::de::{self, Deserializer, Visitor};

const FORMS: &str = "expected an RFC 3339 time (2025-09-11T06:00:00Z or 2025-09-11T06:00:00+09:00), \
                     a date (2025-09-11, meaning 00:00 UTC), `now`, or an offset from now such as -7d, -36h, -90m, -1d12h or +1h";

/// A point in time, possibly relative to the moment a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    Absolute(DateTime<Utc>),
    Now,
    /// An offset from now; negative is in the past.
    Relative(chrono::Duration),
}

impl TimeSpec {
    pub fn parse(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("now") {
            return Ok(TimeSpec::Now);
        }
        if let Some(rest) = text.strip_prefix(['-', '+']) {
            let magnitude = crate::duration::parse(rest).map_err(|e| format!("invalid time `{s}`: {e}"))?;
            let magnitude =
                chrono::Duration::from_std(magnitude).map_err(|_| format!("invalid time `{s}`: offset too large"))?;
            return Ok(TimeSpec::Relative(if text.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(TimeSpec::Absolute(t.with_timezone(&Utc)));
        }
        if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(TimeSpec::Absolute(
                d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default(),
            ));
        }
        if crate::duration::parse(text).is_ok() {
            return Err(format!(
                "invalid time `{s}`: an offset needs a sign; write `-{text}` for {text} ago"
            ));
        }
        Err(format!("invalid time `{s}`: {FORMS}"))
    }

    /// The instant this spec names, with relative forms taken from `now`.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            TimeSpec::Absolute(t) => t,
            TimeSpec::Now => now,
            TimeSpec::Relative(d) => now.checked_add_signed(d).unwrap_or(if d < chrono::Duration::zero() {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            }),
        }
    }
}

impl FromStr for TimeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for TimeSpec {
    /// Writes a form that [`TimeSpec::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeSpec::Absolute(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            TimeSpec::Now => f.write_str("now"),
            TimeSpec::Relative(d) => {
                let sign = if *d < chrono::Duration::zero() { '-' } else { '+' };
                let magnitude = d.abs().to_std().unwrap_or_default();
                write!(f, "{sign}{}", crate::duration::format(magnitude))
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for TimeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TimeSpecVisitor)
    }
}

struct TimeSpecVisitor;

impl Visitor<'_> for TimeSpecVisitor {
    type Value = TimeSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a time such as 2025-09-11T06:00:00Z, 2025-09-11, now or -7d")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeSpec, E> {
        TimeSpec::parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            TimeSpec::parse("2025-09-11T06:00:00Z"),
            Ok(TimeSpec::Absolute(utc(2025, 9, 11, 6, 0)))
        );
        assert_eq!(
            TimeSpec::parse("2025-09-11T06:00:00+09:00"),
            Ok(TimeSpec::Absolute(utc(2025, 9, 10, 21, 0)))
        );
        assert_eq!(
            TimeSpec::parse("2025-09-11"),
            Ok(TimeSpec::Absolute(utc(2025, 9, 11, 0, 0)))
        );
        assert_eq!(TimeSpec::parse("now"), Ok(TimeSpec::Now));
        assert_eq!(
            TimeSpec::parse("-2d"),
            Ok(TimeSpec::Relative(chrono::Duration::days(-2)))
        );
        assert_eq!(
            TimeSpec::parse("-36h"),
            Ok(TimeSpec::Relative(chrono::Duration::hours(-36)))
        );
        assert_eq!(
            TimeSpec::parse("-90m"),
            Ok(TimeSpec::Relative(chrono::Duration::minutes(-90)))
        );
        assert_eq!(
            TimeSpec::parse("-1d12h"),
            Ok(TimeSpec::Relative(chrono::Duration::hours(-36)))
        );
        assert_eq!(
            TimeSpec::parse("+1h"),
            Ok(TimeSpec::Relative(chrono::Duration::hours(1)))
        );
    }

    #[test]
    fn errors_say_which_forms_are_accepted() {
        let e = TimeSpec::parse("yesterday").unwrap_err();
        assert!(
            e.starts_with("invalid time `yesterday`: expected an RFC 3339 time"),
            "{e}"
        );
        assert!(
            e.contains("-7d") && e.contains("now") && e.contains("2025-09-11"),
            "{e}"
        );
        assert_eq!(
            TimeSpec::parse("7d").unwrap_err(),
            "invalid time `7d`: an offset needs a sign; write `-7d` for 7d ago"
        );
        assert!(TimeSpec::parse("-7x").unwrap_err().contains("unknown unit `x`"));
        assert!(TimeSpec::parse("2025-13-01").is_err());
        assert!(TimeSpec::parse("2025-09-11T25:00:00Z").is_err());
    }

    #[test]
    fn resolves_against_now() {
        let now = utc(2025, 9, 11, 12, 0);
        assert_eq!(TimeSpec::parse("-1d12h").unwrap().resolve(now), utc(2025, 9, 10, 0, 0));
        assert_eq!(TimeSpec::parse("+1h").unwrap().resolve(now), utc(2025, 9, 11, 13, 0));
        assert_eq!(TimeSpec::Now.resolve(now), now);
        assert_eq!(
            TimeSpec::parse("2025-01-01").unwrap().resolve(now),
            utc(2025, 1, 1, 0, 0)
        );
    }

    #[test]
    fn displays_parseable_forms() {
        for s in ["now", "-7d", "+1h30m", "2025-09-11T06:00:00Z"] {
            assert_eq!(TimeSpec::parse(s).unwrap().to_string(), s);
        }
    }
}
