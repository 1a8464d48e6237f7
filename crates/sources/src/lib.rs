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
