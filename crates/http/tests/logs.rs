//! Retry log lines never show a secret. In a test binary of its own because tracing caches, per
//! process, which log sites are enabled: a subscriber set for one test while other tests log on
//! other threads may miss lines.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etl_core::Secret;
use etl_http::{Client, HttpConfig, HttpError, Redactor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "tok123";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Answers `n` connections with a 500 whose body echoes the token, as some APIs do.
async fn failing_server(n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for _ in 0..n {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = socket.read(&mut buf).await.unwrap();
                if read == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..read]);
            }
            let body = format!("invalid token {TOKEN}");
            let reply = format!(
                "HTTP/1.1 500 Oops\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        }
    });
    base
}

#[tokio::test]
async fn retry_logs_show_no_secret() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let cfg = HttpConfig {
        max_attempts: 2,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(1),
        ..HttpConfig::default()
    };
    let client = Client::new(cfg, Redactor::new([Secret::new(TOKEN)])).unwrap();

    let base = failing_server(2).await;
    let url = format!("{base}/files/{TOKEN}/log.gz?sign=abc&expire=1&x=1");
    let err = client.send("download", |http| http.get(&url)).await.unwrap_err();
    assert!(
        matches!(
            err,
            HttpError::Status {
                status: 500,
                attempts: 2,
                ..
            }
        ),
        "{err:?}"
    );

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let refused = format!("http://{addr}/{TOKEN}?token={TOKEN}&sig=s");
    let err = client.send("listing", |http| http.get(&refused)).await.unwrap_err();
    assert!(matches!(err, HttpError::Transport { attempts: 2, .. }), "{err:?}");

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 4, "one line per retry and one per give-up:\n{logs}");
    assert!(lines[0].contains("request failed; retrying"), "{logs}");
    assert!(
        lines[0].contains(&format!("url={base}/files/***/log.gz?sign=***&expire=***&x=1")),
        "{logs}"
    );
    assert!(
        lines[0].contains("status=500") && lines[0].contains("attempt=1/2"),
        "{logs}"
    );
    assert!(
        lines[0].contains("delay_ms=") && lines[0].contains("reason=backoff"),
        "{logs}"
    );
    assert!(
        lines[1].contains("request failed; giving up") && lines[1].contains("attempt=2/2"),
        "{logs}"
    );
    assert!(
        lines[2].contains(&format!("url=http://{addr}/***?token=***&sig=***")),
        "{logs}"
    );
    assert!(lines[2].contains("connection failed"), "{logs}");
    for leaked in [TOKEN, "sign=abc", "sig=s&", "sig=s "] {
        assert!(!logs.contains(leaked), "`{leaked}` in logs:\n{logs}");
    }
}
