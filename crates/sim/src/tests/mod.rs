//! HTTP-level tests: a real server on an ephemeral port, driven by a real HTTP client, so the tests see
//! exactly what a client sees (status, headers, chunked bodies, dropped connections).

mod audit;
mod cdn;
mod mail_delivery;
mod mail_tracking;
mod script;
mod webdav;

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::{RunningSim, SimArgs, start};

pub(crate) const TOKEN: &str = "test-token-123";
pub(crate) const TRACKING_USER: &str = "test-user";
pub(crate) const TRACKING_KEY: &str = "test-tracking-key-456";

pub(crate) fn args(seed: u64, rows: u32) -> SimArgs {
    SimArgs {
        port: 0,
        seed,
        fault_rate: 0.0,
        truth: None,
        mail_rows_per_day: rows,
        mail_token: TOKEN.to_string(),
        tracking_rows_per_day: rows,
        tracking_user: TRACKING_USER.to_string(),
        tracking_api_key: TRACKING_KEY.to_string(),
        cdn_domains: vec!["live.example.com".to_string(), "vod.example.com".to_string()],
        cdn_url_ttl: 900,
        cdn_rate_per_minute: 100,
        cdn_rate_per_hour: 1000,
        cdn_lines_per_slot: 40,
        cdn_publish_delay: 120,
        cdn_truncate_first: false,
        cdn_download_delay_ms: 0,
        webdav_cell: "sim-cell".to_string(),
        webdav_token: webdav::TOKEN.to_string(),
        webdav_rows_per_file: rows,
        webdav_evil_zip_entry: false,
        webdav_evil_href: false,
        audit_license: audit::LICENSE.to_string(),
        audit_api_account_id: audit::API_ACCOUNT.to_string(),
        audit_api_account_password: audit::PASSWORD.to_string(),
        audit_account_id: audit::ACCOUNT.to_string(),
        audit_job_polls: 3,
        audit_system_error_first: false,
        audit_url_ttl: 900,
        audit_rows_per_day: rows,
    }
}

/// What the tests need of a response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) struct Harness {
    pub(crate) sim: RunningSim,
    pub(crate) client: reqwest::Client,
}

impl Harness {
    pub(crate) async fn start(args: SimArgs) -> Self {
        let sim = start(args).await.expect("simulator starts");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("test HTTP client builds");
        Self { sim, client }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sim.addr())
    }

    /// Posts form parameters (URL-encoded by reqwest, so `+` in a token becomes `%2B`).
    pub(crate) async fn post_form(&self, params: &[(&str, &str)]) -> Reply {
        self.post_form_with_token(params, Some(TOKEN)).await
    }

    pub(crate) async fn post_form_with_token(&self, params: &[(&str, &str)], token: Option<&str>) -> Reply {
        let mut req = self.client.post(self.url("/mail-delivery/")).form(params);
        if let Some(token) = token {
            req = req.header("X-Auth-Token", token);
        }
        reply(req.send().await.expect("request reaches the simulator")).await
    }

    /// Posts a body exactly as given.
    pub(crate) async fn post_raw(&self, path: &str, content_type: Option<&str>, body: String) -> Reply {
        let mut req = self
            .client
            .post(self.url(path))
            .header("X-Auth-Token", TOKEN)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        reply(req.send().await.expect("request reaches the simulator")).await
    }

    pub(crate) async fn stats(&self) -> serde_json::Value {
        let r = reply(
            self.client
                .get(self.url("/_sim/stats"))
                .send()
                .await
                .expect("stats request"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("stats are JSON")
    }
}

pub(crate) async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("complete body");
    Reply { status, headers, body }
}

#[test]
fn the_announcement_is_one_parseable_line() {
    let mut out = Vec::new();
    crate::announce(&mut out, "127.0.0.1:4567".parse().expect("addr")).expect("writes");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "etl-sim listening on http://127.0.0.1:4567\n"
    );
}

#[tokio::test]
async fn run_serves_on_the_requested_port_until_stopped() {
    // Find a free port, release it, and ask `run` for it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let server = tokio::spawn(crate::run(SimArgs { port, ..args(1, 10) }));
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let url = format!("http://127.0.0.1:{port}/_sim/stats");
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(r) = client.get(&url).send().await {
            answered = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered, Some(200), "run() did not serve on port {port}");
    assert!(!server.is_finished(), "run() returned while it should serve");
    server.abort();
}
