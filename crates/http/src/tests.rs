//! The retry policy walked case by case against a scripted server on 127.0.0.1.
//!
//! Timing assertions are behaviour checks with generous margins (a wait happened, or a budget cut
//! a loop short), not benchmarks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use etl_core::{ErrorClass, Secret, StageError};

use crate::mock_server::{MockServer, Reply, response};
use crate::{Client, HttpConfig, HttpError, Redactor, Stats};

const TOKEN: &str = "tok123";

/// Fast backoff so that tests retry at once.
fn cfg() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        max_attempts: 5,
        max_retry_time: Duration::from_secs(30),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        max_body: 1 << 20,
    }
}

fn client(cfg: HttpConfig) -> Client {
    Client::new(cfg, Redactor::new([Secret::new(TOKEN)])).unwrap()
}

async fn get(client: &Client, url: &str) -> Result<crate::Response, HttpError> {
    client.send("test page", |http| http.get(url)).await
}

#[tokio::test]
async fn a_503_then_200_succeeds_on_the_second_attempt() {
    let server = MockServer::start(vec![response(503, &[], "busy"), response(200, &[], "hello")]).await;
    let c = client(cfg());
    let builds = AtomicU32::new(0);
    let r = c
        .send("test page", |http| {
            builds.fetch_add(1, Ordering::Relaxed);
            http.post(format!("{}/api", server.base)).form(&[("Page", "1")])
        })
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(r.attempts, 2);
    assert_eq!(r.url, format!("{}/api", server.base));
    let debug = format!("{r:?}");
    assert!(
        debug.contains("status: 200") && debug.contains("body_len: 5"),
        "{debug}"
    );
    assert_eq!(
        c.stats(),
        Stats {
            requests: 2,
            retries: 1,
            bytes: 9
        }
    );
    assert_eq!(
        builds.load(Ordering::Relaxed),
        2,
        "the request is rebuilt for every attempt"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests.iter().all(|r| r.starts_with("POST /api HTTP/1.1")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn retry_after_seconds_is_waited_for() {
    let server = MockServer::start(vec![
        response(503, &[("Retry-After", "1")], ""),
        response(200, &[], "ok"),
    ])
    .await;
    let c = client(cfg());
    let started = Instant::now();
    let r = get(&c, &server.base).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert!(elapsed >= Duration::from_millis(950), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "waited {elapsed:?}");
}

#[tokio::test]
async fn retry_after_http_date_is_waited_for() {
    // HTTP dates have whole seconds: two seconds ahead is a wait of more than one.
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let server = MockServer::start(vec![
        response(429, &[("Retry-After", &at)], ""),
        response(200, &[], "ok"),
    ])
    .await;
    let c = client(cfg());
    let started = Instant::now();
    let r = get(&c, &server.base).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert!(elapsed >= Duration::from_millis(900), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "waited {elapsed:?}");
}

#[tokio::test]
async fn a_429_is_retried() {
    let server = MockServer::start(vec![response(429, &[], "slow down"), response(200, &[], "ok")]).await;
    let c = client(cfg());
    let r = get(&c, &server.base).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert_eq!(c.stats().retries, 1);
}

#[tokio::test]
async fn a_500_is_retried_up_to_max_attempts_then_fails_with_the_body() {
    let server = MockServer::start((0..3).map(|i| response(500, &[], &format!("boom {i}"))).collect()).await;
    let c = client(HttpConfig {
        max_attempts: 3,
        ..cfg()
    });
    let err = get(&c, &format!("{}/x", server.base)).await.unwrap_err();
    match &err {
        HttpError::Status {
            what,
            url,
            status,
            body,
            attempts,
        } => {
            assert_eq!(what, "test page");
            assert_eq!(url, &format!("{}/x", server.base));
            assert_eq!((*status, *attempts), (500, 3));
            assert_eq!(body, "boom 2");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(
        err.to_string(),
        format!("test page: HTTP 500 from {}/x after 3 attempt(s): boom 2", server.base)
    );
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        c.stats(),
        Stats {
            requests: 3,
            retries: 2,
            bytes: 18
        }
    );
    let stage: StageError = err.into();
    assert_eq!(stage.class(), ErrorClass::Retryable);
}

#[tokio::test]
async fn client_errors_are_returned_not_retried() {
    for status in [400u16, 401, 404] {
        let body = format!("{{\"error\":\"E{status}\"}}");
        let server = MockServer::start(vec![response(status, &[], &body)]).await;
        let c = client(cfg());
        let r = get(&c, &server.base).await.unwrap();
        assert_eq!((r.status, r.attempts), (status, 1));
        assert!(!r.is_success());
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(
            c.stats(),
            Stats {
                requests: 1,
                retries: 0,
                bytes: body.len() as u64
            }
        );
        let err = c.status_error("test page", &r);
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().ends_with(&format!(
            "HTTP {status} from {}/ after 1 attempt(s): {body}",
            server.base
        )));
    }
}

#[tokio::test]
async fn a_body_cut_short_is_retried() {
    let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort".to_vec();
    let server = MockServer::start(vec![Reply::Raw(truncated), response(200, &[], "complete")]).await;
    let c = client(cfg());
    let r = get(&c, &server.base).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert_eq!(&r.body[..], b"complete");
}

#[tokio::test]
async fn a_stalled_body_hits_the_read_timeout_and_is_retried() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nab".to_vec();
    let server = MockServer::start(vec![
        Reply::Stall(head, Duration::from_secs(5)),
        response(200, &[], "0123456789"),
    ])
    .await;
    let c = client(HttpConfig {
        read_timeout: Duration::from_millis(300),
        ..cfg()
    });
    let started = Instant::now();
    let r = get(&c, &server.base).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert_eq!(&r.body[..], b"0123456789");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_read_timeout() {
    let server = MockServer::start(vec![
        Reply::Stall(Vec::new(), Duration::from_secs(5)),
        response(200, &[], "ok"),
    ])
    .await;
    let c = client(HttpConfig {
        read_timeout: Duration::from_millis(300),
        ..cfg()
    });
    let started = Instant::now();
    let r = get(&c, &server.base).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn max_retry_time_stops_early() {
    let server = MockServer::start((0..100).map(|_| response(503, &[], "busy")).collect()).await;
    let c = client(HttpConfig {
        max_attempts: 100,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(100),
        max_retry_time: Duration::from_millis(600),
        ..cfg()
    });
    let started = Instant::now();
    let err = get(&c, &server.base).await.unwrap_err();
    let elapsed = started.elapsed();
    let HttpError::Status {
        status: 503, attempts, ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!((2..100).contains(&attempts), "{attempts} attempts");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test]
async fn a_retry_after_past_the_budget_stops_at_once() {
    let server = MockServer::start(vec![response(503, &[("Retry-After", "3600")], "maintenance")]).await;
    let c = client(cfg());
    let started = Instant::now();
    let err = get(&c, &server.base).await.unwrap_err();
    assert!(
        matches!(
            err,
            HttpError::Status {
                status: 503,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(c.stats().retries, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_an_error() {
    let big = "x".repeat(2000);
    let server = MockServer::start(vec![response(200, &[], &big)]).await;
    let c = client(HttpConfig {
        max_body: 1000,
        ..cfg()
    });
    let err = get(&c, &server.base).await.unwrap_err();
    assert!(matches!(err, HttpError::BodyTooLarge { limit: 1000, .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(server.requests().len(), 1, "not retried");

    // Without a Content-Length the limit is enforced while reading.
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("258\r\n{}\r\n", "y".repeat(600)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let server = MockServer::start(vec![Reply::Raw(chunked)]).await;
    let err = get(&c, &server.base).await.unwrap_err();
    assert!(matches!(err, HttpError::BodyTooLarge { limit: 1000, .. }), "{err:?}");
}

#[tokio::test]
async fn errors_show_no_secret() {
    // Log lines are checked in tests/logs.rs, in a process of their own: tracing caches which
    // log sites are enabled process-wide, which a per-test subscriber cannot rely on.
    let server = MockServer::start(vec![
        response(500, &[], &format!("invalid token {TOKEN}")),
        response(500, &[], &format!("invalid token {TOKEN}")),
    ])
    .await;
    let c = client(HttpConfig {
        max_attempts: 2,
        ..cfg()
    });
    let url = format!("{}/files/{TOKEN}/log.gz?sign=abc&expire=1&x=1", server.base);
    let err = get(&c, &url).await.unwrap_err();
    let shown = err.to_string();
    assert_eq!(
        shown,
        format!(
            "test page: HTTP 500 from {}/files/***/log.gz?sign=***&expire=***&x=1 after 2 attempt(s): invalid token ***",
            server.base
        )
    );
    // The server did receive the real request.
    assert!(server.requests()[0].starts_with(&format!("GET /files/{TOKEN}/log.gz?sign=abc&expire=1&x=1 ")));

    // A transport error names the redacted URL too.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = get(&c, &format!("http://{addr}/{TOKEN}?token={TOKEN}&sig=s"))
        .await
        .unwrap_err();
    let HttpError::Transport {
        url, message, attempts, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(url, &format!("http://{addr}/***?token=***&sig=***"));
    assert_eq!(*attempts, 2);
    assert!(message.starts_with("connection failed"), "{message}");

    for leaked in [TOKEN, "sign=abc", "sig=s"] {
        assert!(!err.to_string().contains(leaked) && !shown.contains(leaked), "{leaked}");
    }
}

#[tokio::test]
async fn debug_shows_no_secret() {
    let c = client(cfg());
    let debug = format!("{c:?}");
    assert!(debug.contains("Client") && debug.contains("max_attempts: 5"), "{debug}");
    assert!(!debug.contains(TOKEN), "{debug}");
}

#[tokio::test]
async fn an_invalid_request_is_not_sent() {
    let c = client(cfg());
    let err = get(&c, "not a url").await.unwrap_err();
    assert!(matches!(err, HttpError::Build { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot build the HTTP request: test page: "),
        "{err}"
    );
    assert_eq!(c.stats(), Stats::default());
}

#[tokio::test]
async fn clones_share_the_counters() {
    let server = MockServer::start(vec![response(200, &[], "a"), response(200, &[], "bc")]).await;
    let c = client(cfg());
    let d = c.clone();
    get(&c, &server.base).await.unwrap();
    get(&d, &server.base).await.unwrap();
    assert_eq!(
        c.stats(),
        Stats {
            requests: 2,
            retries: 0,
            bytes: 3
        }
    );
}

#[tokio::test]
async fn open_retries_the_head_then_streams_the_body() {
    let server = MockServer::start(vec![response(503, &[], "busy"), response(200, &[], "streamed body")]).await;
    let c = client(cfg());
    let mut s = c.open("file a.gz", |http| http.get(&server.base)).await.unwrap();
    assert_eq!((s.status, s.attempts, s.content_length()), (200, 2, Some(13)));
    let mut body = Vec::new();
    while let Some(chunk) = s.chunk("file a.gz").await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body, b"streamed body");
    assert_eq!(c.stats().bytes, 13 + 4);
}

#[tokio::test]
async fn a_streamed_body_cut_short_is_an_error_for_the_caller() {
    let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort".to_vec();
    let server = MockServer::start(vec![Reply::Raw(truncated)]).await;
    let c = client(cfg());
    let mut s = c.open("file a.gz", |http| http.get(&server.base)).await.unwrap();
    let mut got = Vec::new();
    let err = loop {
        match s.chunk("file a.gz").await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => panic!("a short body must not end cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"short");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(err.to_string().contains("file a.gz"), "{err}");
}

#[tokio::test]
async fn a_rejected_stream_becomes_a_status_error_with_an_excerpt() {
    let server = MockServer::start(vec![response(403, &[], "Request has expired")]).await;
    let c = client(cfg());
    let s = c.open("file a.gz", |http| http.get(&server.base)).await.unwrap();
    assert_eq!(s.status, 403);
    let err = s.into_error("file a.gz").await;
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().contains("Request has expired"), "{err}");
}

#[tokio::test]
async fn download_clients_refuse_hosts_outside_the_allow_list() {
    let server = MockServer::start(vec![response(200, &[], "ok"), response(200, &[], "ok")]).await;
    let c = Client::for_downloads(cfg(), Redactor::new([]), ["cdn.example.com".to_string()]).unwrap();
    let url = format!("{}/f.log.gz?sign=abc", server.base);
    let err = c.open("file f.log.gz", |http| http.get(&url)).await.unwrap_err();
    assert!(matches!(err, HttpError::HostNotAllowed { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1") && msg.contains("download_hosts"), "{msg}");
    assert!(!msg.contains("abc"), "the signature must be redacted: {msg}");
    assert!(server.requests().is_empty(), "nothing may be sent");

    let ok = Client::for_downloads(cfg(), Redactor::new([]), ["127.0.0.1".to_string()]).unwrap();
    let s = ok.open("file f.log.gz", |http| http.get(&url)).await.unwrap();
    assert_eq!(s.status, 200);
    let wild = Client::for_downloads(cfg(), Redactor::new([]), ["*.example.com".to_string()]).unwrap();
    for (host, allowed) in [
        ("a.example.com", true),
        ("x.y.example.com", true),
        ("example.com", false),
        ("badexample.com", false),
    ] {
        let r = wild.send("probe", |http| http.get(format!("http://{host}:9/"))).await;
        assert_eq!(
            !matches!(r, Err(HttpError::HostNotAllowed { .. })),
            allowed,
            "{host}: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_429_holds_the_whole_budget_for_its_retry_after() {
    use std::sync::Arc;

    use crate::{RateBudget, RateLimit};
    let server = MockServer::start(vec![
        response(429, &[("Retry-After", "1")], r#"{"code":"LLS.RateLimit.Exceeded"}"#),
        response(200, &[], "listing"),
        response(200, &[], "listing"),
    ])
    .await;
    let budget = Arc::new(RateBudget::new(
        "listing",
        &[RateLimit::new(100, Duration::from_secs(60))],
    ));
    let c = client(cfg()).with_budget(Arc::clone(&budget));
    let started = Instant::now();
    let r = get(&c, &server.base).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert!(started.elapsed() >= Duration::from_secs(1));
    // A second client on the same budget goes through once the hold has passed.
    let other = client(cfg()).with_budget(budget);
    assert_eq!(get(&other, &server.base).await.unwrap().status, 200);
    assert_eq!(c.stats().requests, 2);
}

#[tokio::test]
async fn waiting_for_the_rate_budget_does_not_spend_the_retry_budget() {
    use std::sync::Arc;

    use crate::{RateBudget, RateLimit};
    let server = MockServer::start(vec![
        response(200, &[], "first"),
        response(503, &[], "busy"),
        response(200, &[], "second"),
    ])
    .await;
    // One request per 700 ms; a retry budget of 300 ms.
    let budget = Arc::new(RateBudget::new(
        "listing",
        &[RateLimit::new(1, Duration::from_millis(700))],
    ));
    let c = client(HttpConfig {
        max_retry_time: Duration::from_millis(300),
        ..cfg()
    })
    .with_budget(budget);
    assert_eq!(get(&c, &server.base).await.unwrap().status, 200);
    // The second request queues ~700 ms for the budget before its first attempt, and as long
    // again before its retry; the 503 is still retried.
    let started = Instant::now();
    let r = get(&c, &server.base).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
    assert_eq!(&r.body[..], b"second");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_503_with_retry_after_holds_every_client_of_the_budget_one_without_does_not() {
    use std::sync::Arc;

    use crate::{RateBudget, RateLimit};
    for (retry_after, held) in [(Some("2"), true), (None, false)] {
        let headers: Vec<(&str, &str)> = retry_after.map(|v| ("Retry-After", v)).into_iter().collect();
        let server = MockServer::start(vec![
            response(503, &headers, "maintenance"),
            response(200, &[], "page"),
            response(200, &[], "page"),
        ])
        .await;
        let budget = Arc::new(RateBudget::new("api", &[RateLimit::new(1000, Duration::from_secs(60))]));
        let first = client(cfg()).with_budget(Arc::clone(&budget));
        let other = client(cfg()).with_budget(budget);
        let started = Instant::now();
        let base = server.base.clone();
        let a = tokio::spawn(async move { get(&first, &base).await.unwrap().status });
        // The 503 has been answered by now; the other client asks next.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get(&other, &server.base).await.unwrap().status, 200);
        let waited = started.elapsed();
        assert_eq!(a.await.unwrap(), 200);
        if held {
            assert!(waited >= Duration::from_secs(2), "held for the Retry-After: {waited:?}");
        } else {
            assert!(
                waited < Duration::from_secs(2),
                "no hold without Retry-After: {waited:?}"
            );
        }
    }
}

#[tokio::test]
async fn send_unless_returns_a_final_500_instead_of_retrying() {
    let fault = "<Envelope><Body><Fault><faultstring>bad password</faultstring></Fault></Body></Envelope>";
    let server = MockServer::start(vec![
        response(500, &[], "proxy error"),
        response(500, &[], fault),
        response(200, &[], "never asked"),
    ])
    .await;
    let c = client(cfg());
    let is_fault = |status: u16, body: &[u8]| status == 500 && String::from_utf8_lossy(body).contains("Fault");
    let r = c
        .send_unless("soap call", |http| http.post(&server.base), &is_fault)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.attempts),
        (500, 2),
        "the plain 500 is retried, the fault is not"
    );
    assert!(String::from_utf8_lossy(&r.body).contains("bad password"));
}

/// A listener that only counts the connections made to it (it never answers).
struct Tripwire {
    base: String,
    connections: std::sync::Arc<AtomicU32>,
}

impl Tripwire {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let connections = std::sync::Arc::new(AtomicU32::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self { base, connections }
    }

    /// Connections so far, after giving a stray one time to arrive.
    async fn connections(&self) -> u32 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.connections.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_download_on_a_host_or_port_not_allowed_never_opens_a_connection() {
    let allowed = MockServer::start(vec![response(200, &[], "ok")]).await;
    let other = Tripwire::start().await;
    let port = |base: &str| base.rsplit(':').next().unwrap().to_string();
    let c = Client::for_downloads(
        cfg(),
        Redactor::new([Secret::new(TOKEN)]),
        [format!("127.0.0.1:{}", port(&allowed.base))],
    )
    .unwrap();
    // Same host, another port: refused before connecting, credentials and signature unsent.
    let url = format!("{}/f.log.gz?expire=1&sign=deadbeef", other.base);
    let err = c
        .open("file f.log.gz", |http| {
            http.get(&url).header("Authorization", format!("Bearer {TOKEN}"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::HostNotAllowed { .. }), "{err}");
    let msg = err.to_string();
    assert!(!msg.contains("deadbeef") && !msg.contains(TOKEN), "{msg}");
    assert_eq!(
        other.connections().await,
        0,
        "nothing may reach a host that is not allowed"
    );
    assert_eq!(c.stats().requests, 0);
    // The allowed port is reached.
    let ok = c
        .open("file f.log.gz", |http| http.get(format!("{}/f", allowed.base)))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    // Entry forms: a port pins it, no port allows any, brackets for IPv6.
    for (entry, url, allowed) in [
        ("127.0.0.1:1", "http://127.0.0.1:2/", false),
        ("127.0.0.1", "http://127.0.0.1:2/", true),
        ("*.example.com:8443", "https://a.example.com:8443/", true),
        ("*.example.com:8443", "https://a.example.com/", false),
        ("example.com:443", "https://example.com/", true),
        ("[::1]:9", "http://[::1]:9/", true),
        ("[::1]", "http://[::1]:9/", true),
        ("[::1]:8", "http://[::1]:9/", false),
        ("127.0.0.1:x", "http://127.0.0.1:2/", false),
    ] {
        let c = Client::for_downloads(cfg(), Redactor::new([]), [entry.to_string()]).unwrap();
        let r = c.send("probe", |http| http.get(url)).await;
        assert_eq!(
            !matches!(r, Err(HttpError::HostNotAllowed { .. })),
            allowed,
            "{entry} {url}: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_never_followed_so_no_credential_reaches_its_target() {
    let target = Tripwire::start().await;
    let location = format!("{}/stolen?sig=abc", target.base);
    let redirects = || {
        [301, 302, 303, 307, 308]
            .into_iter()
            .map(|status| response(status, &[("Location", location.as_str())], ""))
            .collect::<Vec<_>>()
    };
    // The download client, whose allow-list even includes the target's host (not its port).
    let server = MockServer::start(redirects()).await;
    let downloads = Client::for_downloads(cfg(), Redactor::new([]), ["127.0.0.1".to_string()]).unwrap();
    for status in [301, 302, 303, 307, 308] {
        let s = downloads
            .open("file f.log.gz", |http| http.get(format!("{}/f.log.gz", server.base)))
            .await
            .unwrap();
        assert_eq!((s.status, s.header("location")), (status, Some(location.as_str())));
    }
    // The API client, with a credential header: the 3xx comes back to the caller as it is.
    let server = MockServer::start(redirects()).await;
    let api = client(cfg());
    for status in [301, 302, 303, 307, 308] {
        let r = api
            .send("page", |http| {
                http.get(format!("{}/api", server.base)).header("X-Auth-Token", TOKEN)
            })
            .await
            .unwrap();
        assert_eq!(r.status, status);
    }
    assert_eq!(target.connections().await, 0, "no redirect was followed");
}
