//! A scripted HTTP/1.1 server for the retry tests (after object_store's `mock_server`): it
//! answers the n-th connection with the n-th scripted reply, byte for byte, and records every
//! request head it read. Raw bytes let a test send what a well-behaved server never would: a
//! body shorter than its `Content-Length`, or headers and then silence.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one connection, after reading its request.
pub(crate) enum Reply {
    /// Write these bytes and close.
    Raw(Vec<u8>),
    /// Write these bytes, then send nothing for this long before closing.
    Stall(Vec<u8>, Duration),
}

/// A complete response with `Content-Length` and `Connection: close`.
pub(crate) fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut head = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    Reply::Raw(head.into_bytes())
}

pub(crate) struct MockServer {
    pub base: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl MockServer {
    /// Listens on 127.0.0.1 and serves `script`, one reply per connection, then stops accepting
    /// (a further connection is refused).
    pub async fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        tokio::spawn(async move {
            for reply in script {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                // One task per connection, so that a stalled reply does not hold up the next.
                tokio::spawn(serve(socket, reply, recorded.clone()));
            }
        });
        Self { base, requests }
    }

    /// The request heads received so far (request line and headers).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }
}

async fn serve(mut socket: TcpStream, reply: Reply, requests: Arc<Mutex<Vec<String>>>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head, then as much body as it announces, so the client is never cut off mid-send.
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let body_len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>())
        })
        .and_then(Result::ok)
        .unwrap_or(0);
    while received.len() < head_end + body_len {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    requests.lock().expect("requests lock").push(head);
    match reply {
        Reply::Raw(bytes) => {
            let _ = socket.write_all(&bytes).await;
            let _ = socket.shutdown().await;
        }
        Reply::Stall(bytes, pause) => {
            let _ = socket.write_all(&bytes).await;
            let _ = socket.flush().await;
            tokio::time::sleep(pause).await;
        }
    }
}
