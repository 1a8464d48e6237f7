//! The retry policy as plain data and pure functions, so each rule is tested without a server.
//!
//! - Exponential backoff with *full* jitter: before retry `n` (1-based) the client sleeps a
//!   random time in `[0, min(backoff_max, backoff_base * 2^(n-1))]`. Full jitter spreads the
//!   retries of many units that failed together instead of having them hit the API in waves.
//! - `Retry-After` (delta-seconds or an HTTP-date) is a floor: the client waits at least that long.
//! - Two budgets bound a request: `max_attempts`, and `max_retry_time` measured from the first
//!   attempt. A retry whose wait would end past the time budget is not started: the request fails
//!   at once instead of sleeping only to give up.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::HttpConfig;

/// The upper bound of the jittered wait before retry `retry` (1 for the first retry).
pub(crate) fn backoff_cap(cfg: &HttpConfig, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
    cfg.backoff_base
        .checked_mul(factor)
        .unwrap_or(cfg.backoff_max)
        .min(cfg.backoff_max)
}

/// A random wait in `[0, cap]` (full jitter).
pub(crate) fn jitter(cap: Duration) -> Duration {
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// The wait a `Retry-After` header asks for, if it has one that parses.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Sleep this long, then try again.
    Retry(Duration),
    /// Stop now, for this reason.
    GiveUp(String),
}

/// Decides whether attempt `attempt` (1-based), which failed `elapsed` after the first attempt
/// started, is followed by another.
pub(crate) fn decide(cfg: &HttpConfig, attempt: u32, elapsed: Duration, retry_after: Option<Duration>) -> Decision {
    let max_attempts = cfg.max_attempts.max(1);
    if attempt >= max_attempts {
        return Decision::GiveUp(format!("all {max_attempts} attempts used"));
    }
    let remaining = cfg.max_retry_time.saturating_sub(elapsed);
    if remaining.is_zero() {
        return Decision::GiveUp(format!(
            "the retry budget of {}s is spent",
            cfg.max_retry_time.as_secs()
        ));
    }
    if let Some(wait) = retry_after
        && wait > remaining
    {
        return Decision::GiveUp(format!(
            "the server asks to retry after {}s, past the remaining retry budget of {}s",
            wait.as_secs(),
            remaining.as_secs()
        ));
    }
    let delay = jitter(backoff_cap(cfg, attempt)).max(retry_after.unwrap_or(Duration::ZERO));
    if delay > remaining {
        return Decision::GiveUp(format!(
            "the retry budget of {}s would be spent before the next attempt",
            cfg.max_retry_time.as_secs()
        ));
    }
    Decision::Retry(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn cfg() -> HttpConfig {
        HttpConfig {
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_attempts: 8,
            max_retry_time: Duration::from_secs(300),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn cap_doubles_up_to_the_maximum() {
        let c = cfg();
        let caps: Vec<u64> = (1..=10).map(|n| backoff_cap(&c, n).as_millis() as u64).collect();
        assert_eq!(
            caps,
            vec![250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(backoff_cap(&c, 200), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_the_cap() {
        let cap = Duration::from_millis(100);
        let samples: Vec<Duration> = (0..1000).map(|_| jitter(cap)).collect();
        assert!(samples.iter().all(|d| *d <= cap));
        // Full jitter: both halves of the range are used.
        assert!(samples.iter().any(|d| *d < cap / 2) && samples.iter().any(|d| *d > cap / 2));
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = SystemTime::now();
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = now + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let wait = retry_after(&h, now).unwrap();
        assert!(
            wait > Duration::from_secs(118) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn decisions_respect_both_budgets() {
        let c = cfg();
        match decide(&c, 1, Duration::ZERO, None) {
            Decision::Retry(d) => assert!(d <= Duration::from_millis(250)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&c, 8, Duration::ZERO, None),
            Decision::GiveUp("all 8 attempts used".into())
        );
        match decide(&c, 1, Duration::ZERO, Some(Duration::from_secs(5))) {
            Decision::Retry(d) => assert!(d >= Duration::from_secs(5)),
            other => panic!("{other:?}"),
        }
        let Decision::GiveUp(why) = decide(&c, 1, Duration::from_secs(290), Some(Duration::from_secs(60))) else {
            panic!("a Retry-After past the budget must stop");
        };
        assert!(why.contains("retry after 60s"), "{why}");
        let tight = HttpConfig {
            backoff_base: Duration::from_secs(10),
            max_retry_time: Duration::from_secs(1),
            ..c
        };
        // Nothing left of the budget: stop even if the jitter picked no wait at all.
        assert!(matches!(
            decide(&tight, 1, Duration::from_secs(1), None),
            Decision::GiveUp(_)
        ));
        assert!(matches!(
            decide(&tight, 1, Duration::from_secs(2), Some(Duration::from_millis(1))),
            Decision::GiveUp(_)
        ));
    }
}
