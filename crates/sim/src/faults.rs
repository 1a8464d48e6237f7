//! Injected faults, shared by every simulated API.
//!
//! A client that has only ever seen a healthy server has never run its retry code. With `--fault-rate p`
//! each API request, before anything else is looked at, draws a fault with probability `p`, uniformly among
//! the transient failures real services produce: 500, 503 with and without `Retry-After`, 429 with a
//! delta-seconds or an HTTP-date `Retry-After`, a connection dropped in the middle of a 200 body, and a
//! slow answer. Deciding first means a retry of a faulted request is an ordinary request.
//!
//! A fault must never look like valid, shorter data: the dropped connection aborts a chunked body before
//! its terminating chunk (and before the document's closing tag), so any HTTP client reports an error.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What an injected fault does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// HTTP 500 with the API's usual error body.
    InternalError,
    /// HTTP 503, with `Retry-After: 1` when `retry_after` is set.
    Unavailable { retry_after: bool },
    /// HTTP 429 with the given `Retry-After`.
    TooManyRequests { retry_after: RetryAfter },
    /// The normal response starts, then the connection is cut in the middle of the body.
    DropConnection,
    /// Sleep this long, then answer normally.
    Slow(Duration),
}

impl Fault {
    /// A short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Fault::InternalError => "internal-error",
            Fault::Unavailable { retry_after: true } => "unavailable-retry-after",
            Fault::Unavailable { retry_after: false } => "unavailable",
            Fault::TooManyRequests { .. } => "too-many-requests",
            Fault::DropConnection => "drop-connection",
            Fault::Slow(_) => "slow",
        }
    }
}

/// The two forms RFC 9110 allows for `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    Seconds(u32),
    At(SystemTime),
}

impl RetryAfter {
    pub(crate) fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::At(t) => httpdate::fmt_http_date(*t),
        }
    }
}

/// Draws faults. Shared by all APIs of one simulator; the draw order is reproducible for sequential
/// requests with the same seed (not under concurrency, which is fine: faults test retry paths, not data).
#[derive(Debug)]
pub(crate) struct FaultInjector {
    rate: f64,
    rng: Mutex<StdRng>,
    /// Alternates the 429 `Retry-After` form.
    throttles: AtomicU64,
}

impl FaultInjector {
    /// `rate` must be in `[0, 1]` (checked by the caller, which can say which argument was wrong).
    pub(crate) fn new(seed: u64, rate: f64) -> Self {
        Self {
            rate,
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x6661_756c_7473_2121)),
            throttles: AtomicU64::new(0),
        }
    }

    /// Decides whether this request gets a fault, and which.
    pub(crate) fn pick(&self) -> Option<Fault> {
        if self.rate <= 0.0 {
            return None;
        }
        let (kind, slow_ms) = {
            // A poisoned lock only means another request panicked mid-draw; the RNG state is still usable.
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            if rng.random::<f64>() >= self.rate {
                return None;
            }
            (rng.random_range(0..6u32), rng.random_range(1000..=2000u64))
        };
        Some(match kind {
            0 => Fault::InternalError,
            1 => Fault::Unavailable { retry_after: true },
            2 => Fault::Unavailable { retry_after: false },
            3 => {
                let n = self.throttles.fetch_add(1, Ordering::Relaxed);
                let retry_after = if n.is_multiple_of(2) {
                    RetryAfter::Seconds(1)
                } else {
                    // HTTP-dates have whole seconds; 1.5 s ahead lands 0.5..1.5 s ahead once truncated.
                    RetryAfter::At(SystemTime::now() + Duration::from_millis(1500))
                };
                Fault::TooManyRequests { retry_after }
            }
            4 => Fault::DropConnection,
            _ => Fault::Slow(Duration::from_millis(slow_ms)),
        })
    }
}

/// A body that sends roughly the first half of `full` (cut at an arbitrary byte, so possibly inside a
/// UTF-8 sequence or an entity) and then fails, which makes hyper abort the connection without the final
/// chunk. The client sees a 200 whose body breaks off, never a complete shorter document.
///
/// The failure comes a moment after the first half: hyper flushes what it has buffered only when the body
/// stream is pending, and an error arriving at once would close the connection before even the status
/// line went out (a different fault, which the client must also survive, but not this one).
pub(crate) fn truncated_body(full: Bytes) -> Body {
    let cut = (full.len() / 2).max(1).min(full.len().saturating_sub(1));
    let head = futures::stream::once(std::future::ready(Ok::<Bytes, io::Error>(full.slice(..cut))));
    let abort = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "etl-sim: injected connection drop",
        ))
    });
    Body::from_stream(head.chain(abort))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_zero_never_faults_and_rate_one_always_does() {
        let none = FaultInjector::new(7, 0.0);
        assert!((0..1000).all(|_| none.pick().is_none()));
        let all = FaultInjector::new(7, 1.0);
        let picks: Vec<Fault> = (0..600).map(|_| all.pick().expect("rate 1.0 always faults")).collect();
        for name in [
            "internal-error",
            "unavailable-retry-after",
            "unavailable",
            "too-many-requests",
            "drop-connection",
            "slow",
        ] {
            let n = picks.iter().filter(|f| f.name() == name).count();
            assert!(
                (50..=150).contains(&n),
                "{name} drawn {n} times out of 600, expected about 100"
            );
        }
    }

    #[test]
    fn throttles_alternate_between_seconds_and_http_date() {
        let f = FaultInjector::new(3, 1.0);
        let forms: Vec<String> = std::iter::from_fn(|| f.pick())
            .filter_map(|f| match f {
                Fault::TooManyRequests { retry_after } => Some(retry_after.header_value()),
                _ => None,
            })
            .take(4)
            .collect();
        assert_eq!(forms[0], "1");
        assert!(forms[1].ends_with(" GMT"), "{}", forms[1]);
        assert!(httpdate::parse_http_date(&forms[1]).is_ok());
        assert_eq!(forms[2], "1");
        assert!(forms[3].ends_with(" GMT"));
    }

    #[test]
    fn slow_faults_last_one_to_two_seconds() {
        let f = FaultInjector::new(11, 1.0);
        let slow: Vec<Duration> = std::iter::from_fn(|| f.pick())
            .filter_map(|f| match f {
                Fault::Slow(d) => Some(d),
                _ => None,
            })
            .take(20)
            .collect();
        assert!(
            slow.iter()
                .all(|d| (Duration::from_secs(1)..=Duration::from_secs(2)).contains(d))
        );
    }
}
