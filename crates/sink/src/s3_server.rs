//! Test support (compiled for this crate's tests and with the `test-s3` feature, never into
//! the product): the S3-compatible server the tests run against: one moto server per test binary, started on
//! first use from the project's `.venv` (`make test` installs it; `ETL_TEST_PYTHON` names the
//! interpreter) and stopped when the test process exits (the server ends when its stdin closes).
//!
//! A missing server fails the S3 tests loudly rather than skipping them: a suite that silently
//! stops testing S3 would prove nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

struct Server {
    endpoint: String,
    /// Kept so that the server's stdin stays open while tests run.
    _child: Mutex<Child>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static BUCKETS: AtomicU64 = AtomicU64::new(0);

fn python() -> String {
    std::env::var("ETL_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").to_string())
}

fn start() -> Server {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/s3_server.py");
    let python = python();
    let mut child = Command::new(&python)
        .arg(script)
        .args(["--min-part-size", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the test S3 server with {python} {script}: {e} (run `make venv`)"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("reading the S3 server's endpoint");
    let endpoint = line.trim().to_string();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "the test S3 server did not start (got {line:?}); is moto installed in {python}? run `make venv`"
    );
    Server {
        endpoint,
        _child: Mutex::new(child),
    }
}

/// `http://127.0.0.1:<port>` of the shared server.
pub fn endpoint() -> &'static str {
    &SERVER.get_or_init(start).endpoint
}

/// Creates a bucket no other test uses and returns its name.
pub fn create_bucket() -> String {
    let name = format!(
        "etl-test-{}-{}",
        std::process::id(),
        BUCKETS.fetch_add(1, Ordering::Relaxed)
    );
    let status = request("PUT", &format!("/{name}"));
    assert!(status.starts_with("HTTP/1.1 200"), "creating bucket {name}: {status}");
    name
}

/// Multipart uploads still in progress in `bucket` (ListMultipartUploads), as `<Key>` values.
pub fn uploads_in_progress(bucket: &str) -> Vec<String> {
    let response = request("GET", &format!("/{bucket}?uploads"));
    response
        .split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
        .collect()
}

/// One unsigned request (moto does not check signatures); the whole response as text.
fn request(method: &str, path: &str) -> String {
    let addr = endpoint().trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connecting to the test S3 server");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("writing to the test S3 server");
    let mut response = String::new();
    s.read_to_string(&mut response)
        .expect("reading from the test S3 server");
    response
}

/// Environment variables that point `etl` at the test server (credentials are not checked).
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ACCESS_KEY_ID", "test-access-key"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret-key"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Copies every object under `prefix` of `bucket` into `dir` (same relative paths), so that a
/// dataset on S3 can be read back with the local-disk readers. Blocking.
pub fn mirror(bucket: &str, prefix: &str, dir: &std::path::Path) {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint())
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test-access-key")
        .with_secret_access_key("test-secret-key")
        .with_allow_http(true)
        .build()
        .expect("an S3 client for the test server");
    let prefix = object_store::path::Path::from(prefix);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let objects: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .expect("listing the bucket");
        for meta in objects {
            let relative: Vec<String> = meta
                .location
                .prefix_match(&prefix)
                .expect("under the prefix")
                .map(|p| p.as_ref().to_string())
                .collect();
            let path = relative.iter().fold(dir.to_path_buf(), |p, part| p.join(part));
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating the mirror");
            let bytes = store
                .get(&meta.location)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body");
            std::fs::write(&path, &bytes).expect("writing the mirror");
        }
    });
}
