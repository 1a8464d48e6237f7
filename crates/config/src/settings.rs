//! The `runtime:` and `http:` sections: how hard the pipeline works and how patient it is.
//!
//! Both are optional with defaults that suit one pipeline on a small machine; they exist so that
//! an operator can tune memory (channel capacity, batch size), parallelism and network patience
//! without a rebuild.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::de::{checked_map, positive_u32, positive_usize};
use crate::duration::{self, deserialize_positive};

/// `runtime:` (optional): parallelism and memory bounds of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "the runtime keys (channel_capacity, decode_workers, ...)"
)]
pub struct RuntimeConfig {
    /// `channel_capacity` (optional, >= 1, default 4): items buffered between two stages. Bounds
    /// memory: a slow sink slows the source instead of filling RAM.
    #[serde(deserialize_with = "positive_usize")]
    pub channel_capacity: usize,
    /// `decode_workers` (optional, >= 1, default 2): blocking threads that decode payloads while
    /// the network waits.
    #[serde(deserialize_with = "positive_usize")]
    pub decode_workers: usize,
    /// `unit_concurrency` (optional, >= 1, default 2): units fetched at the same time.
    #[serde(deserialize_with = "positive_usize")]
    pub unit_concurrency: usize,
    /// `batch_size` (optional, >= 1, default 16384): rows per decoded record batch.
    #[serde(deserialize_with = "positive_usize")]
    pub batch_size: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 4,
            decode_workers: 2,
            unit_concurrency: 2,
            batch_size: 16_384,
        }
    }
}

/// `http:` (optional): timeouts and the retry policy of every request the source sends.
/// Durations are written with a unit: `500ms`, `10s`, `5m`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// `connect_timeout` (optional, > 0, default 10s): time allowed to open a connection.
    pub connect_timeout: Duration,
    /// `read_timeout` (optional, > 0, default 60s): longest wait for the next bytes of a response
    /// (a stall timeout; a large download that keeps moving is never cut).
    pub read_timeout: Duration,
    /// `max_attempts` (optional, >= 1, default 8): attempts per request, the first included.
    pub max_attempts: u32,
    /// `max_retry_time` (optional, > 0, default 5m): total time budget of one request including its
    /// retries; no retry starts that would end after it. Time queued for an API's rate limit
    /// (the CDN listing budget) does not count.
    pub max_retry_time: Duration,
    /// `backoff_base` (optional, default 250ms): the first retry waits up to this long; each
    /// further retry doubles the bound (with full jitter), up to `backoff_max`.
    pub backoff_base: Duration,
    /// `backoff_max` (optional, >= `backoff_base`, default 30s): the largest wait between two
    /// attempts (a `Retry-After` from the server may ask for more).
    pub backoff_max: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            max_attempts: 8,
            max_retry_time: Duration::from_secs(300),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the file says, before the check that spans two keys.
#[derive(Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "the http keys (connect_timeout, read_timeout, ...)"
)]
struct RawHttp {
    #[serde(deserialize_with = "deserialize_positive")]
    connect_timeout: Duration,
    #[serde(deserialize_with = "deserialize_positive")]
    read_timeout: Duration,
    #[serde(deserialize_with = "positive_u32")]
    max_attempts: u32,
    #[serde(deserialize_with = "deserialize_positive")]
    max_retry_time: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    backoff_base: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    backoff_max: Duration,
}

impl Default for RawHttp {
    fn default() -> Self {
        let d = HttpSettings::default();
        Self {
            connect_timeout: d.connect_timeout,
            read_timeout: d.read_timeout,
            max_attempts: d.max_attempts,
            max_retry_time: d.max_retry_time,
            backoff_base: d.backoff_base,
            backoff_max: d.backoff_max,
        }
    }
}

impl<'de> Deserialize<'de> for HttpSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_map(d, "the `http` settings", |r: RawHttp| {
            if r.backoff_base > r.backoff_max {
                return Err(format!(
                    "backoff_base ({}) must not be longer than backoff_max ({})",
                    duration::format(r.backoff_base),
                    duration::format(r.backoff_max)
                ));
            }
            Ok(HttpSettings {
                connect_timeout: r.connect_timeout,
                read_timeout: r.read_timeout,
                max_attempts: r.max_attempts,
                max_retry_time: r.max_retry_time,
                backoff_base: r.backoff_base,
                backoff_max: r.backoff_max,
            })
        })
    }
}
