//! One module per vendor API. A source knows its API's rules (window sizes, retention, page
//! sizes, rate limits), plans units within them, and fetches pages or files as raw payloads.
//! Sources do I/O and control-plane parsing only (a continuation token, an error body, a job
//! status); records are decoded by `etl-formats`.

pub mod audit_log;
pub mod cdn_logs;
pub mod download;
pub mod mail_delivery;
pub mod mail_tracking;
pub mod paging;
pub mod webdav_logs;
pub mod xml;
pub mod zip;

#[cfg(test)]
mod test_server;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};

/// A vendor's answer the source rejects, classed by its status as the HTTP client classes
/// what it retries: after retries, 408/429/5xx may succeed on a later run; any other is final.
pub(crate) fn rejected(status: u16, err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> etl_core::StageError {
    if etl_http::is_retryable_status(status) {
        etl_core::StageError::retryable(err)
    } else {
        etl_core::StageError::permanent(err)
    }
}

/// The start of a response body as text, for an error whose body has no message field.
pub(crate) fn body_start(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string()
}

/// A name that came from a server, for a message: control characters (NUL, CR, LF, ESC...)
/// become `\u{..}` escapes, so a hostile name can neither cut a log line nor hide in it.
pub fn printable(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a file name given by a server is not a plain file name, if it is not one. Such names
/// never become paths (output names come from unit ids), but they do become labels, columns
/// and log lines, and no honest listing carries one: `.` or `..`, a path separator (`/`, `\`)
/// or drive (`:`), a control character such as NUL, an encoded dot or separator (`%2e`, `%2f`,
/// `%5c`, `%00`), or an empty or over-long (255 bytes) name.
pub fn unsafe_file_name(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty() {
        Some("an empty name")
    } else if name.len() > 255 {
        Some("longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("a `.` or `..` path segment")
    } else if name.contains(['/', '\\']) {
        Some("a path separator")
    } else if name.contains(':') {
        Some("a drive or scheme separator `:`")
    } else if name.chars().any(char::is_control) {
        Some("a control character")
    } else if ["%2e", "%2f", "%5c", "%00"].iter().any(|e| lower.contains(e)) {
        Some("a percent-encoded dot, separator or NUL")
    } else {
        None
    }
}

/// The UTC days that overlap `[from, to)`, oldest first.
pub fn utc_days(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
    if to <= from {
        return Vec::new();
    }
    let last = (to - chrono::Duration::microseconds(1)).date_naive();
    let mut d = from.date_naive();
    let mut days = Vec::new();
    while d <= last {
        days.push(d);
        d = d + Days::new(1);
    }
    days
}

/// 00:00 UTC of `day`.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn server_names_are_checked_and_shown_escaped() {
        for ok in [
            "default.log.1731900000000.zip",
            "20250911175500-1.log.gz",
            "audit-log-job-12.csv",
            "a b",
        ] {
            assert_eq!(unsafe_file_name(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "an empty name"),
            ("..", "a `.` or `..` path segment"),
            (".", "a `.` or `..` path segment"),
            ("../x", "a path separator"),
            ("/etc/passwd", "a path separator"),
            ("a\\b", "a path separator"),
            ("C:x", "a drive or scheme separator `:`"),
            ("x\0.log.gz", "a control character"),
            ("x\n.log.gz", "a control character"),
            ("%2e%2e", "a percent-encoded dot, separator or NUL"),
            ("%2E%2E%2Fx", "a percent-encoded dot, separator or NUL"),
            ("x%00.gz", "a percent-encoded dot, separator or NUL"),
        ] {
            assert_eq!(unsafe_file_name(bad), Some(why), "{bad:?}");
        }
        assert_eq!(unsafe_file_name(&"x".repeat(256)), Some("longer than 255 bytes"));
        assert_eq!(printable("a\0b\n\u{1b}[2Jc"), "a\\u{0}b\\u{a}\\u{1b}[2Jc");
        assert_eq!(printable("日本.log"), "日本.log");
    }

    #[test]
    fn days_overlapping_a_range() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            utc_days(t("2025-09-11T00:00:00Z"), t("2025-09-12T00:00:00Z")),
            vec![d("2025-09-11")]
        );
        assert_eq!(
            utc_days(t("2025-09-11T06:00:00Z"), t("2025-09-12T00:00:01Z")),
            vec![d("2025-09-11"), d("2025-09-12")]
        );
        assert!(utc_days(t("2025-09-11T06:00:00Z"), t("2025-09-11T06:00:00Z")).is_empty());
    }
}
