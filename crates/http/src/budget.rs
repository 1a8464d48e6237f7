//! A request budget shared by every task of the process: at most N requests in any sliding
//! window, for several windows at once (100 per minute *and* 1000 per hour).
//!
//! Why a log of send times and not a token bucket: a bucket of N per minute admits up to 2N in
//! some sliding minute (a full burst, then the refill), and the vendor counts sliding windows.
//! Keeping the send times of the last N requests per window answers exactly "may one more go
//! now, and if not, when?", costs a few kilobytes, and never lets a burst through.
//!
//! The server's clock and ours differ by the network's latency, so every window is widened by
//! a small margin: a request the server sees late cannot fall into the previous window.
//!
//! A 429 means the server counted differently (another client on the same account, a lower
//! limit than configured): [`RateBudget::hold`] stops every task until the server's
//! `Retry-After` has passed.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `max` requests in any sliding `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window: Duration,
}

impl RateLimit {
    pub fn new(max: u32, window: Duration) -> Self {
        Self { max, window }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.window.as_secs();
        match secs {
            60 => write!(f, "{}/min", self.max),
            3600 => write!(f, "{}/h", self.max),
            _ => write!(f, "{} per {}s", self.max, self.window.as_secs_f64()),
        }
    }
}

/// Waits for any budget of the process, and their total in milliseconds: the run's summary and
/// metrics report them.
static WAITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static WAITED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times a request of this process waited for a rate budget (its own limits or a
/// server's `Retry-After` hold), and how long those waits took together.
pub fn rate_limit_waits() -> (u64, Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    (WAITS.load(Relaxed), Duration::from_millis(WAITED_MS.load(Relaxed)))
}

/// Added to every window: the server may see a request this much later than we sent it.
const MARGIN: Duration = Duration::from_millis(500);

/// A shared budget; clone the `Arc` into every task that sends on the same credential.
pub struct RateBudget {
    name: String,
    limits: Vec<RateLimit>,
    inner: Mutex<State>,
    /// No request before this (a server's `Retry-After`). Outside `inner` so that a task
    /// sleeping for the budget (holding `inner`) does not delay a hold; it sees it on waking.
    hold_until: std::sync::Mutex<Option<Instant>>,
}

struct State {
    /// Send times, oldest first, at most the largest `max` of any limit.
    sent: VecDeque<Instant>,
    waits: u64,
    waited: Duration,
}

impl fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateBudget")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish()
    }
}

/// How much waiting the budget imposed, for summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Requests that had to wait for the budget.
    pub waits: u64,
    pub waited: Duration,
}

impl RateBudget {
    /// A budget named `name` in logs (`CDN listing`), enforcing every limit at once. Limits with
    /// `max == 0` are ignored.
    pub fn new(name: impl Into<String>, limits: &[RateLimit]) -> Self {
        let limits: Vec<RateLimit> = limits.iter().copied().filter(|l| l.max > 0).collect();
        let cap = limits.iter().map(|l| l.max as usize).max().unwrap_or(0);
        Self {
            name: name.into(),
            limits,
            inner: Mutex::new(State {
                sent: VecDeque::with_capacity(cap),
                waits: 0,
                waited: Duration::ZERO,
            }),
            hold_until: std::sync::Mutex::new(None),
        }
    }

    pub fn limits(&self) -> &[RateLimit] {
        &self.limits
    }

    /// Waits until one more request fits every window, then records it as sent now. Tasks are
    /// served in the order they asked (the lock is fair), so none starves.
    pub async fn acquire(&self) {
        let mut state = self.inner.lock().await;
        let mut announced = false;
        loop {
            let now = Instant::now();
            let ready_at = self.next_free(&state, now);
            if ready_at <= now {
                break;
            }
            let wait = ready_at - now;
            if !announced {
                announced = true;
                state.waits += 1;
                WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    budget = %self.name,
                    wait_ms = wait.as_millis() as u64,
                    limits = %self.describe_limits(),
                    "waiting for the rate budget"
                );
            }
            state.waited += wait;
            WAITED_MS.fetch_add(wait.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
            // Holding the lock while sleeping keeps the queue fair and the log exact.
            tokio::time::sleep_until(ready_at).await;
        }
        let now = Instant::now();
        state.sent.push_back(now);
        let cap = self.limits.iter().map(|l| l.max as usize).max().unwrap_or(0);
        while state.sent.len() > cap {
            state.sent.pop_front();
        }
    }

    /// The earliest instant at which one more request fits.
    fn next_free(&self, state: &State, now: Instant) -> Instant {
        let mut at = now;
        if let Some(hold) = *self.hold_until.lock().unwrap_or_else(|e| e.into_inner()) {
            at = at.max(hold);
        }
        for limit in &self.limits {
            let max = limit.max as usize;
            if state.sent.len() >= max {
                // The max-th most recent send must have left the window.
                let oldest = state.sent[state.sent.len() - max];
                at = at.max(oldest + limit.window + MARGIN);
            }
        }
        at
    }

    /// No request before `now + wait` (a 429's `Retry-After`), for every task of the budget.
    pub fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait;
        {
            let mut hold = self.hold_until.lock().unwrap_or_else(|e| e.into_inner());
            if hold.is_none_or(|h| h < until) {
                *hold = Some(until);
            }
        }
        tracing::warn!(
            budget = %self.name,
            wait_ms = wait.as_millis() as u64,
            "the server rate-limited us; every request of this budget waits"
        );
    }

    pub async fn stats(&self) -> BudgetStats {
        let state = self.inner.lock().await;
        BudgetStats {
            waits: state.waits,
            waited: state.waited,
        }
    }

    /// `100/min and 1000/h`.
    pub fn describe_limits(&self) -> String {
        let parts: Vec<String> = self.limits.iter().map(ToString::to_string).collect();
        parts.join(" and ")
    }

    /// How long `n` requests take at least under these limits, starting with an empty window:
    /// for each limit, every further batch of `max` requests waits one more window.
    pub fn time_for(&self, n: u64) -> Duration {
        time_for(&self.limits, n)
    }
}

/// See [`RateBudget::time_for`].
pub fn time_for(limits: &[RateLimit], n: u64) -> Duration {
    limits
        .iter()
        .filter(|l| l.max > 0)
        .map(|l| {
            let batches = n.saturating_sub(1) / u64::from(l.max);
            l.window.saturating_mul(u32::try_from(batches).unwrap_or(u32::MAX))
        })
        .max()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn count_in_window(times: &[Instant], end: Instant, window: Duration) -> usize {
        times.iter().filter(|t| **t + window > end && **t <= end).count()
    }

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_any_sliding_window() {
        let minute = RateLimit::new(10, Duration::from_secs(60));
        let hour = RateLimit::new(25, Duration::from_secs(3600));
        let budget = Arc::new(RateBudget::new("test", &[minute, hour]));
        let times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let budget = Arc::clone(&budget);
            let times = Arc::clone(&times);
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    budget.acquire().await;
                    times.lock().unwrap().push(Instant::now());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let times = times.lock().unwrap().clone();
        assert_eq!(times.len(), 40);
        for &t in &times {
            assert!(
                count_in_window(&times, t, minute.window) <= 10,
                "minute window exceeded at {t:?}"
            );
            assert!(
                count_in_window(&times, t, hour.window) <= 25,
                "hour window exceeded at {t:?}"
            );
        }
        // 40 requests at 25/h need two more hours after the first hour's 25.
        let span = *times.iter().max().unwrap() - *times.iter().min().unwrap();
        assert!(span >= Duration::from_secs(3600), "{span:?}");
        assert!(budget.stats().await.waits > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn first_burst_goes_at_once() {
        let budget = RateBudget::new("test", &[RateLimit::new(5, Duration::from_secs(60))]);
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire().await;
        }
        assert_eq!(Instant::now(), start);
        budget.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(60) + MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn hold_delays_everyone() {
        let budget = RateBudget::new("test", &[RateLimit::new(100, Duration::from_secs(60))]);
        let start = Instant::now();
        budget.hold(Duration::from_secs(7));
        budget.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(7));
        // A shorter hold does not shorten a longer one.
        budget.hold(Duration::from_secs(30));
        budget.hold(Duration::from_secs(1));
        budget.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(37));
    }

    #[test]
    fn time_for_counts_whole_windows() {
        let limits = [
            RateLimit::new(100, Duration::from_secs(60)),
            RateLimit::new(1000, Duration::from_secs(3600)),
        ];
        assert_eq!(time_for(&limits, 0), Duration::ZERO);
        assert_eq!(time_for(&limits, 100), Duration::ZERO);
        assert_eq!(time_for(&limits, 101), Duration::from_secs(60));
        assert_eq!(time_for(&limits, 1000), Duration::from_secs(9 * 60));
        assert_eq!(time_for(&limits, 1001), Duration::from_secs(3600));
        assert_eq!(time_for(&limits, 2500), Duration::from_secs(2 * 3600));
    }
}
