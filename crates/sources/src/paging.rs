//! Following a continuation token (`NextToken`, `nextToken`) without ever writing a page twice,
//! and following several of them at once, shared by every token-paginated API.
//!
//! A server that returns a token the unit already sent has replayed an earlier page. That page
//! must not reach the decoder (its records would be written twice), the same request is made
//! again, and after [`MAX_REPLAYS`] replays in a row the unit fails instead of looping forever.
//!
//! A token chain is strictly sequential: page n+1 cannot be asked for before page n has arrived,
//! so one chain keeps a request in flight and leaves the cores idle for a round trip per page
//! (on loopback, half the run). [`fetch_windows`] therefore splits a unit's window into
//! consecutive sub-windows, each with its own chain, fetched at the same time; the pages reach the
//! decoders in window order, then page order, which is the order one chain over the whole window
//! returns, so the output is the same. What a later window fetches ahead is bounded (`prefetch`
//! pages each), so memory stays bounded whatever the size of the day.

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use etl_core::{FetchStats, PayloadMeta, PayloadSender, StageError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

/// Replays in a row after which a unit gives up.
pub const MAX_REPLAYS: u32 = 3;

/// What to do with the page just received.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Forward the page; `last` when it carried no token.
    Deliver { last: bool },
    /// Drop the page and repeat the request; the count of replays in a row.
    Replayed(u32),
}

/// The continuation state of one unit.
#[derive(Debug, Default)]
pub struct TokenPaging {
    sent: HashSet<String>,
    current: Option<String>,
    replays: u32,
}

impl TokenPaging {
    /// The token to send with the next request (none for the first page).
    pub fn token(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Classifies a page by the token it carries; on `Deliver` that token becomes the next one.
    pub fn on_page(&mut self, next: Option<String>) -> Step {
        let next = next.filter(|t| !t.is_empty());
        if let Some(t) = &next
            && self.sent.contains(t)
        {
            self.replays += 1;
            return Step::Replayed(self.replays);
        }
        self.replays = 0;
        let last = next.is_none();
        if let Some(t) = next {
            self.sent.insert(t.clone());
            self.current = Some(t);
        }
        Step::Deliver { last }
    }
}

/// Adds one response (with its retries) to a unit's counters.
pub fn count(stats: &mut FetchStats, resp: &etl_http::Response) {
    stats.requests += u64::from(resp.attempts);
    stats.retries += u64::from(resp.attempts.saturating_sub(1));
    stats.bytes += resp.body.len() as u64;
}

/// Splits `[start, end]` (inclusive, in some unit: minutes, milliseconds) into at most `parts`
/// consecutive inclusive ranges of near-equal length that cover it exactly.
pub fn split_inclusive(start: i64, end: i64, parts: usize) -> Vec<(i64, i64)> {
    if end < start {
        return vec![(start, end)];
    }
    let len = end - start + 1;
    let parts = (parts.max(1) as i64).min(len);
    (0..parts)
        .map(|i| (start + len * i / parts, start + len * (i + 1) / parts - 1))
        .collect()
}

/// One request window of a unit: its bounds as the API writes them, and how messages name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestWindow {
    pub start: String,
    pub end: String,
    /// ` (window <start>..<end>)` when the unit has several windows, empty otherwise.
    pub label: String,
}

/// The unit's window `start..=end` (as the API writes its bounds) cut into `parts` request
/// windows with [`split_inclusive`]; `parse` reads a bound as a count of the API's resolution
/// (minutes, milliseconds) and `format` writes one back. One part returns the bounds unchanged.
pub fn request_windows(
    (start, end): (&str, &str),
    parts: usize,
    parse: impl Fn(&str) -> Option<i64>,
    format: impl Fn(i64) -> Option<String>,
) -> Result<Vec<RequestWindow>, String> {
    let window = |start: String, end: String, label: String| RequestWindow { start, end, label };
    if parts <= 1 {
        return Ok(vec![window(start.into(), end.into(), String::new())]);
    }
    let read = |v: &str| parse(v).ok_or_else(|| format!("planned bound {v:?} is unreadable"));
    let write = |n: i64| format(n).ok_or_else(|| format!("bound {n} is out of range"));
    split_inclusive(read(start)?, read(end)?, parts)
        .into_iter()
        .map(|(a, b)| {
            let (a, b) = (write(a)?, write(b)?);
            let label = format!(" (window {a}..{b})");
            Ok(window(a, b, label))
        })
        .collect()
}

fn lock(m: &std::sync::Mutex<FetchStats>) -> std::sync::MutexGuard<'_, FetchStats> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where one sub-window's fetcher hands its pages.
#[derive(Debug)]
pub struct WindowPages {
    tx: mpsc::Sender<WindowItem>,
}

enum WindowItem {
    Page { content_type: Option<String>, body: Bytes },
    Done(FetchStats),
}

impl WindowPages {
    /// Queues one page of this window; waits while the window is `prefetch` pages ahead of what
    /// has been handed on. Fails only when the unit has stopped.
    pub async fn page(&self, content_type: Option<String>, body: Bytes) -> Result<(), StageError> {
        self.tx
            .send(WindowItem::Page { content_type, body })
            .await
            .map_err(|_| StageError::cancelled().context("pipeline stopped"))
    }
}

/// Fetches `windows` at once with `fetch(window, pages)`, one token chain each, and sends their
/// pages to `out` in window order, named `page 1`, `page 2`... in that order. Each window may
/// queue `prefetch` pages ahead of the one being handed on. The first window to fail fails the
/// unit at once (the others are dropped, so their requests stop); a window asking for the unit
/// to restart carries that request up, with the counters of the windows finished so far added.
/// Returns the windows' counters added up, with `payloads` the pages sent.
pub async fn fetch_windows<W, F, Fut>(
    windows: Vec<W>,
    prefetch: usize,
    out: &mut PayloadSender,
    fetch: F,
) -> Result<FetchStats, StageError>
where
    F: Fn(W, WindowPages) -> Fut,
    Fut: Future<Output = Result<FetchStats, StageError>>,
{
    let mut queues = Vec::with_capacity(windows.len());
    let mut running = FuturesUnordered::new();
    for window in windows {
        let (tx, rx) = mpsc::channel(prefetch.max(1));
        queues.push(rx);
        let fetched = fetch(window, WindowPages { tx: tx.clone() });
        running.push(async move {
            let stats = fetched.await?;
            // The forwarder takes it once it reaches this window; if it has stopped, so has the unit.
            let _ = tx.send(WindowItem::Done(stats)).await;
            Ok::<(), StageError>(())
        });
    }
    // What the windows done so far fetched and the pages sent: the unit's counters, also when a
    // later window asks for a restart.
    // (A mutex only because the future must be Send; it is never contended: one task.)
    let total = std::sync::Mutex::new(FetchStats::default());
    let forward = async {
        for mut queue in queues {
            loop {
                match queue.recv().await {
                    Some(WindowItem::Page { content_type, body }) => {
                        let meta = PayloadMeta {
                            name: format!("page {}", out.sent() + 1),
                            content_type,
                            ..Default::default()
                        };
                        out.send_bytes(meta, body).await?;
                        lock(&total).payloads += 1;
                    }
                    Some(WindowItem::Done(stats)) => {
                        let mut total = lock(&total);
                        total.requests += stats.requests;
                        total.retries += stats.retries;
                        total.bytes += stats.bytes;
                        break;
                    }
                    // Its fetcher failed: that error is returned by the other branch below.
                    None => std::future::pending::<()>().await,
                }
            }
        }
        let done = lock(&total).clone();
        Ok(done)
    };
    tokio::pin!(forward);
    loop {
        tokio::select! {
            done = &mut forward => return done,
            Some(result) = running.next(), if !running.is_empty() => {
                if let Err(e) = result {
                    let so_far = lock(&total).clone();
                    return Err(e.add_restart_fetched(&so_far));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_exactly() {
        assert_eq!(
            split_inclusive(0, 1439, 4),
            [(0, 359), (360, 719), (720, 1079), (1080, 1439)]
        );
        assert_eq!(split_inclusive(0, 9, 3), [(0, 2), (3, 5), (6, 9)]);
        assert_eq!(split_inclusive(5, 6, 4), [(5, 5), (6, 6)], "never an empty window");
        assert_eq!(split_inclusive(5, 5, 1), [(5, 5)]);
        assert_eq!(split_inclusive(0, 86_399_999, 0), [(0, 86_399_999)]);
        for parts in 1..30 {
            let w = split_inclusive(1000, 87_399_999, parts);
            assert_eq!(w.first().unwrap().0, 1000);
            assert_eq!(w.last().unwrap().1, 87_399_999);
            assert!(w.windows(2).all(|p| p[1].0 == p[0].1 + 1 && p[0].0 <= p[0].1));
        }
    }

    #[test]
    fn request_windows_keep_one_window_verbatim_and_label_several() {
        let parse = |v: &str| v.parse().ok();
        let format = |n: i64| Some(n.to_string());
        let one = request_windows(("0", "9"), 1, parse, format).unwrap();
        assert_eq!(
            one,
            [RequestWindow {
                start: "0".into(),
                end: "9".into(),
                label: String::new()
            }]
        );
        let two = request_windows(("0", "9"), 2, parse, format).unwrap();
        let bounds: Vec<_> = two
            .iter()
            .map(|w| (w.start.as_str(), w.end.as_str(), w.label.as_str()))
            .collect();
        assert_eq!(bounds, [("0", "4", " (window 0..4)"), ("5", "9", " (window 5..9)")]);
        let err = request_windows(("x", "9"), 2, parse, format).unwrap_err();
        assert!(err.contains("\"x\""), "{err}");
    }

    fn sender() -> (PayloadSender, mpsc::Receiver<etl_core::Payload>) {
        let (tx, rx) = mpsc::channel(1);
        (PayloadSender::new(tx), rx)
    }

    /// Window `w` yields `w` pages `w.0`, `w.1`..., the later windows faster than the earlier.
    async fn pages_of(w: u64, pages: WindowPages) -> Result<FetchStats, StageError> {
        for p in 0..w {
            tokio::time::sleep(std::time::Duration::from_millis(10 * (4 - w))).await;
            pages.page(None, Bytes::from(format!("{w}.{p}"))).await?;
        }
        Ok(FetchStats {
            requests: w,
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn pages_arrive_in_window_order_whatever_order_they_were_fetched_in() {
        let (mut out, mut rx) = sender();
        let collect = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(p) = rx.recv().await {
                let etl_core::PayloadBody::Bytes(b) = p.body else {
                    panic!()
                };
                got.push((p.seq, p.meta.name, String::from_utf8(b.to_vec()).unwrap()));
            }
            got
        });
        let stats = fetch_windows(vec![1, 2, 3], 1, &mut out, pages_of).await.unwrap();
        drop(out);
        let got = collect.await.unwrap();
        let bodies: Vec<&str> = got.iter().map(|(_, _, b)| b.as_str()).collect();
        assert_eq!(bodies, ["1.0", "2.0", "2.1", "3.0", "3.1", "3.2"]);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, (seq, name, _))| *seq == i as u64 && *name == format!("page {}", i + 1))
        );
        assert_eq!((stats.requests, stats.payloads), (6, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_window_fails_the_unit_before_the_earlier_windows_finish() {
        let (mut out, mut rx) = sender();
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let started = tokio::time::Instant::now();
        let err = fetch_windows(vec![0, 1], 1, &mut out, |w, pages: WindowPages| async move {
            if w == 1 {
                return Err(StageError::restart_unit("token refused", FetchStats::default()));
            }
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            pages.page(None, Bytes::from_static(b"late")).await?;
            Ok(FetchStats::default())
        })
        .await
        .unwrap_err();
        assert!(err.restart_requested().is_some(), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "did not wait for window 0"
        );
    }

    #[test]
    fn a_token_seen_before_is_a_replay() {
        let mut p = TokenPaging::default();
        assert_eq!(p.token(), None);
        assert_eq!(p.on_page(Some("A".into())), Step::Deliver { last: false });
        assert_eq!(p.token(), Some("A"));
        assert_eq!(p.on_page(Some("A".into())), Step::Replayed(1));
        assert_eq!(p.on_page(Some("A".into())), Step::Replayed(2));
        assert_eq!(p.token(), Some("A"), "a replay does not move the cursor");
        assert_eq!(p.on_page(Some("B".into())), Step::Deliver { last: false });
        assert_eq!(
            p.on_page(Some("A".into())),
            Step::Replayed(1),
            "the count restarts after progress"
        );
        assert_eq!(p.on_page(None), Step::Deliver { last: true });
        assert_eq!(
            p.on_page(Some(String::new())),
            Step::Deliver { last: true },
            "an empty token ends the unit"
        );
    }
}
