//! Scripted faults and the request log, for tests that must prove what a client does after one
//! particular failure.
//!
//! Random faults (`--fault-rate`) show that a client survives *some* failures. A test of "no request
//! before the `Retry-After` time" or "the unit restarts from its first page" needs the fault on a
//! known request and a record of what the client sent next: a script says which request of which API
//! fails how and how often, and the log keeps when every request arrived and how it was answered.
//! A scripted fault is decided before the random dice, which are not thrown for that request.
//!
//! Scripts cover the mail delivery and mail tracking APIs, the two token-paginated ones.
//!
//! # `POST /_sim/faults`
//! The body is JSON, `{"rules": [RULE, ...]}`; the rules are appended to those already scripted and
//! the answer is `GET /_sim/faults`'s. A script with any invalid rule adds nothing and is answered
//! `400 {"error": "..."}` naming the rule and the problem. A RULE:
//!
//! ```json
//! {"api": "mail_delivery", "requests": "token", "params": {"StartDate": "2026-11-20T00:00"},
//!  "skip": 1, "times": 2, "fault": {"kind": "status", "status": 503, "retry_after": 2}}
//! ```
//!
//! - `api` (required): `mail_delivery` or `mail_tracking`.
//! - `requests` (default `any`): `any`, or `token` for only the requests that carry a continuation
//!   token (`NextToken` of mail delivery, `token` of mail tracking), i.e. pages after the first.
//! - `params` (default none): request parameters that must all have exactly these values, compared
//!   after URL/form decoding (the form body of mail delivery, the query of mail tracking), e.g.
//!   `{"StartDate": "2026-11-20T00:00"}` or `{"type": "blocked_traffic", "start": "..."}`.
//! - `skip` (default 0): matching requests to let through unharmed before the rule fires.
//! - `times` (default 1, at least 1): matching requests that get the fault; then the rule is used up.
//! - `fault` (required), by `kind`:
//!   - `{"kind": "status", "status": S}` with S one of 429, 500, 502, 503, 504: that status with the
//!     API's own error body (a gateway's HTML page for 502 and 504), optionally with `"retry_after": N`
//!     (`Retry-After: N`, delta-seconds) or `"retry_after_date": N` (`Retry-After` as the HTTP date N
//!     seconds after the request arrived; HTTP dates have whole seconds, so the wait is N-1..N s).
//!   - `{"kind": "reset"}`: a 200 whose chunked body breaks off after about half, the connection
//!     dropped without the final chunk.
//!   - `{"kind": "short_body"}`: a 200 with `Content-Length` of the whole body, about half of it
//!     sent, then the connection closed.
//!   - `{"kind": "stall", "secs": N}` (1..=600): the 200's headers are sent, then nothing for N
//!     seconds, then the whole body.
//!   - `{"kind": "reject_token"}`: the continuation token is refused as the API refuses a token it
//!     no longer accepts: mail delivery `400` with its `ErrorResponse` XML (`InvalidParameterValue`),
//!     mail tracking `400` with its JSON error (`InvalidParameter`). It only ever matches requests
//!     that carry a token, whatever `requests` says.
//!
//! Rules are tried in the order they were added. A matching rule that still has requests to skip
//! counts this one and lets the next rule decide; the first matching rule that is not skipping and
//! not used up fires. `GET /_sim/faults` answers `{"rules": [RULE + {"skipped": n, "fired": n}]}`, so a
//! test can check that every fault it scripted was delivered; `DELETE /_sim/faults` removes them all.
//!
//! # `GET /_sim/requests?api=mail_delivery`
//! Every request to a scripted API, in arrival order (`api` optional; without it, both APIs):
//!
//! ```json
//! {"requests": [{"seq": 7, "api": "mail_delivery", "at_ms": 1763600000123,
//!                "params": {"Action": "GetDeliveryLog", "StartDate": "2026-11-20T00:00", ...},
//!                "token": "5d0e3a9c1b2f4e67", "status": 503, "fault": "status-503", "retry_after": "2"}]}
//! ```
//!
//! `at_ms` is when the handler received the request (Unix milliseconds); `params` are the decoded
//! parameters without the continuation token; `token` is the FNV-1a-64 hash of that token (so a test
//! can see the same page asked again) or `null` on a first page; `status` is the status answered and
//! `fault` the fault injected (scripted or random: `status-503`, `reset`, `short-body`, `stall`,
//! `reject-token`, or a random fault's name), else `null`; `retry_after` is the header as sent. The log
//! keeps the latest [`LOG_CAPACITY`] requests.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::Shared;
use crate::data::fnv1a64;
use crate::faults::{RetryAfter, truncated_body};

/// Requests the log keeps; older ones are dropped, so a long-running simulator stays small.
pub(crate) const LOG_CAPACITY: usize = 100_000;
/// The longest stall a rule may ask for.
const MAX_STALL_SECS: u32 = 600;

/// An API that can be scripted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Api {
    MailDelivery,
    MailTracking,
}

impl Api {
    /// The request parameter that carries the continuation token.
    fn token_param(self) -> &'static str {
        match self {
            Api::MailDelivery => "NextToken",
            Api::MailTracking => "token",
        }
    }
}

/// Which requests a rule looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Requests {
    #[default]
    Any,
    /// Only requests that carry a continuation token.
    Token,
}

/// A rule's fault as written in the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FaultSpec {
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_date: Option<u32>,
    },
    // Empty braces, not unit variants: only struct variants refuse unknown fields.
    Reset {},
    ShortBody {},
    Stall {
        secs: u32,
    },
    RejectToken {},
}

const fn one() -> u32 {
    1
}

/// One rule as written in the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    api: Api,
    #[serde(default)]
    requests: Requests,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<String, String>,
    #[serde(default)]
    skip: u32,
    #[serde(default = "one")]
    times: u32,
    fault: FaultSpec,
}

impl RuleSpec {
    fn validate(&self) -> Result<(), String> {
        if self.times == 0 {
            return Err("times must be at least 1".into());
        }
        match &self.fault {
            FaultSpec::Status {
                status,
                retry_after,
                retry_after_date,
            } => {
                if !matches!(status, 429 | 500 | 502 | 503 | 504) {
                    return Err(format!("status must be 429, 500, 502, 503 or 504, got {status}"));
                }
                if retry_after.is_some() && retry_after_date.is_some() {
                    return Err("give retry_after (seconds) or retry_after_date, not both".into());
                }
            }
            FaultSpec::Stall { secs } if !(1..=MAX_STALL_SECS).contains(secs) => {
                return Err(format!("stall secs must be 1..={MAX_STALL_SECS}, got {secs}"));
            }
            FaultSpec::Stall { .. } | FaultSpec::Reset {} | FaultSpec::ShortBody {} | FaultSpec::RejectToken {} => {}
        }
        Ok(())
    }

    fn matches(&self, api: Api, params: &BTreeMap<String, String>, has_token: bool) -> bool {
        let needs_token = self.requests == Requests::Token || self.fault == FaultSpec::RejectToken {};
        self.api == api && (has_token || !needs_token) && self.params.iter().all(|(k, v)| params.get(k) == Some(v))
    }
}

/// The body of `POST /_sim/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptSpec {
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Serialize)]
struct RuleState {
    #[serde(flatten)]
    spec: RuleSpec,
    skipped: u32,
    fired: u32,
}

/// A fault a rule delivers to one request, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scripted {
    /// An error status with the API's error body (a gateway page for 502/504).
    Status {
        status: StatusCode,
        retry_after: Option<RetryAfter>,
    },
    /// The API's own refusal of the continuation token.
    RejectToken,
    /// A 200 whose body goes out as described.
    Body(Delivery),
}

impl Scripted {
    pub(crate) fn name(&self) -> String {
        match self {
            Scripted::Status { status, .. } => format!("status-{}", status.as_u16()),
            Scripted::RejectToken => "reject-token".into(),
            Scripted::Body(d) => d.name().into(),
        }
    }
}

/// How a response body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Whole, chunked at arbitrary bytes.
    Normal,
    /// About half, then the connection is dropped without the final chunk.
    Reset,
    /// `Content-Length` of the whole body, about half of it, then the connection is closed.
    ShortBody,
    /// Headers first, nothing for this long, then the whole body.
    Stall(Duration),
}

impl Delivery {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Delivery::Normal => "none",
            Delivery::Reset => "reset",
            Delivery::ShortBody => "short-body",
            Delivery::Stall(_) => "stall",
        }
    }

    /// The body to send for `full`, and the `Content-Length` to announce when the body must not be
    /// chunked (only for the short body, whose point is a length the body does not reach).
    pub(crate) fn body(self, full: Bytes, salt: u64) -> (Body, Option<usize>) {
        match self {
            Delivery::Normal => (crate::chunked_body(full, salt), None),
            Delivery::Reset => (truncated_body(full), None),
            Delivery::ShortBody => {
                let len = full.len();
                (short_body(full), Some(len))
            }
            Delivery::Stall(pause) => (stalled_body(full, pause), None),
        }
    }
}

/// About half of `full`, then the end of the stream. Sent under a `Content-Length` of the whole, hyper
/// closes the connection when the stream ends short, so the client sees fewer bytes than announced.
/// The end comes a moment later so that the half is flushed before the close.
fn short_body(full: Bytes) -> Body {
    let cut = (full.len() / 2).max(1).min(full.len().saturating_sub(1));
    let head = futures::stream::once(std::future::ready(Ok::<Bytes, io::Error>(full.slice(..cut))));
    let pause = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<Bytes, io::Error>(Bytes::new())
    });
    Body::from_stream(head.chain(pause))
}

/// Nothing for `pause` (the headers are flushed while the body is pending), then the whole of `full`.
fn stalled_body(full: Bytes, pause: Duration) -> Body {
    let body = futures::stream::once(async move {
        tokio::time::sleep(pause).await;
        Ok::<Bytes, io::Error>(full)
    });
    Body::from_stream(body)
}

/// The scripted rules of one simulator.
#[derive(Debug, Default)]
pub(crate) struct FaultScript {
    rules: Mutex<Vec<RuleState>>,
}

impl FaultScript {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RuleState>> {
        // A poisoned lock only means a request panicked while holding it; the rules are still whole.
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates every rule first, so that a bad script adds nothing.
    fn add(&self, rules: Vec<RuleSpec>) -> Result<usize, String> {
        for (i, r) in rules.iter().enumerate() {
            r.validate().map_err(|e| format!("rule {i}: {e}"))?;
        }
        let n = rules.len();
        self.lock().extend(rules.into_iter().map(|spec| RuleState {
            spec,
            skipped: 0,
            fired: 0,
        }));
        Ok(n)
    }

    fn snapshot(&self) -> Vec<RuleState> {
        self.lock().clone()
    }

    fn clear(&self) {
        self.lock().clear();
    }

    /// The fault the script has for this request, if any (and counts it).
    fn take(&self, api: Api, params: &BTreeMap<String, String>, has_token: bool) -> Option<Scripted> {
        let mut rules = self.lock();
        for rule in rules.iter_mut() {
            if rule.fired >= rule.spec.times || !rule.spec.matches(api, params, has_token) {
                continue;
            }
            if rule.skipped < rule.spec.skip {
                rule.skipped += 1;
                continue;
            }
            rule.fired += 1;
            return Some(match &rule.spec.fault {
                FaultSpec::Status {
                    status,
                    retry_after,
                    retry_after_date,
                } => Scripted::Status {
                    status: StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    retry_after: match (retry_after, retry_after_date) {
                        (Some(s), _) => Some(RetryAfter::Seconds(*s)),
                        (None, Some(s)) => Some(RetryAfter::At(SystemTime::now() + Duration::from_secs(u64::from(*s)))),
                        (None, None) => None,
                    },
                },
                FaultSpec::Reset {} => Scripted::Body(Delivery::Reset),
                FaultSpec::ShortBody {} => Scripted::Body(Delivery::ShortBody),
                FaultSpec::Stall { secs } => Scripted::Body(Delivery::Stall(Duration::from_secs(u64::from(*secs)))),
                FaultSpec::RejectToken {} => Scripted::RejectToken,
            });
        }
        None
    }
}

/// One logged request.
#[derive(Debug, Clone, Serialize)]
struct LoggedRequest {
    seq: u64,
    api: Api,
    at_ms: i64,
    params: BTreeMap<String, String>,
    token: Option<String>,
    status: u16,
    fault: Option<String>,
    retry_after: Option<String>,
}

/// The request log of the scripted APIs.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    seq: AtomicU64,
    entries: Mutex<VecDeque<LoggedRequest>>,
}

/// A request that has arrived and not been answered yet: what the log needs, and its scripted fault.
#[derive(Debug)]
pub(crate) struct Arrival {
    seq: u64,
    api: Api,
    at_ms: i64,
    params: BTreeMap<String, String>,
    token: Option<String>,
    /// The fault the script has for this request.
    pub(crate) scripted: Option<Scripted>,
}

impl RequestLog {
    fn record(&self, entry: LoggedRequest) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    fn list(&self, api: Option<Api>) -> Vec<LoggedRequest> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<LoggedRequest> = entries
            .iter()
            .filter(|e| api.is_none_or(|a| e.api == a))
            .cloned()
            .collect();
        out.sort_by_key(|e| e.seq);
        out
    }
}

/// Decodes `application/x-www-form-urlencoded` text (a form body or a query string) leniently, for
/// matching and logging only: the APIs validate their parameters themselves. A repeated name keeps
/// its first value.
pub(crate) fn decode_params(raw: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw) {
        params.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    params
}

impl Shared {
    /// Notes a request's arrival and asks the script for its fault. Call first thing in a handler.
    pub(crate) fn arrive(&self, api: Api, mut params: BTreeMap<String, String>) -> Arrival {
        let at_ms = chrono::Utc::now().timestamp_millis();
        let seq = self.requests.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let raw_token = params.remove(api.token_param()).filter(|t| !t.is_empty());
        let has_token = raw_token.is_some();
        let scripted = {
            // The token takes part in matching only through `requests`/`reject_token`.
            self.script.take(api, &params, has_token)
        };
        Arrival {
            seq,
            api,
            at_ms,
            params,
            token: raw_token.map(|t| format!("{:016x}", fnv1a64(t.as_bytes()))),
            scripted,
        }
    }

    /// Logs how a request was answered. `fault` names the fault injected, scripted or random.
    pub(crate) fn answered(&self, arrival: Arrival, resp: &Response, fault: Option<String>) {
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.requests.record(LoggedRequest {
            seq: arrival.seq,
            api: arrival.api,
            at_ms: arrival.at_ms,
            params: arrival.params,
            token: arrival.token,
            status: resp.status().as_u16(),
            fault,
            retry_after,
        });
    }
}

/// Sets `Content-Length` on a response whose body is deliberately shorter (see [`Delivery::body`]).
pub(crate) fn announce_length(resp: &mut Response, len: Option<usize>) {
    if let Some(len) = len {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// What a gateway in front of the API answers for 502 and 504: HTML, not the API's error format.
pub(crate) fn gateway_page(status: StatusCode) -> Option<Response> {
    if !matches!(status, StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT) {
        return None;
    }
    let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let html = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = (status, html).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    Some(resp)
}

/// Adds a `Retry-After` header when the fault has one.
pub(crate) fn with_retry_after(mut resp: Response, retry_after: Option<&RetryAfter>) -> Response {
    if let Some(v) = retry_after.and_then(|r| HeaderValue::from_str(&r.header_value()).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"serializing: {e}\"}}"));
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn bad_request(message: String) -> Response {
    json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": message }))
}

#[derive(Serialize)]
struct RulesView {
    rules: Vec<RuleState>,
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    json(
        StatusCode::OK,
        &RulesView {
            rules: shared.script.snapshot(),
        },
    )
}

async fn post_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let script: ScriptSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return bad_request(format!("the fault script is not valid: {e}")),
    };
    match shared.script.add(script.rules) {
        Ok(n) => {
            tracing::info!(rules = n, "fault rules scripted");
            get_faults(State(shared)).await
        }
        Err(e) => bad_request(format!("the fault script is not valid: {e}")),
    }
}

async fn delete_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.script.clear();
    get_faults(State(shared)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsQuery {
    api: Option<Api>,
}

#[derive(Serialize)]
struct RequestsView {
    requests: Vec<LoggedRequest>,
}

async fn get_requests(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<RequestsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(q)) => json(
            StatusCode::OK,
            &RequestsView {
                requests: shared.requests.list(q.api),
            },
        ),
        Err(e) => bad_request(format!(
            "{e}; use /_sim/requests or /_sim/requests?api=mail_delivery|mail_tracking"
        )),
    }
}

/// `/_sim/faults` and `/_sim/requests`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/faults", get(get_faults).post(post_faults).delete(delete_faults))
        .route("/_sim/requests", get(get_requests))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<RuleSpec> {
        serde_json::from_str::<ScriptSpec>(json).expect("valid script").rules
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rules_fire_in_order_skip_then_get_used_up() {
        let script = FaultScript::default();
        script
            .add(rules(
                r#"{"rules": [
                    {"api": "mail_delivery", "requests": "token", "skip": 1, "times": 2, "fault": {"kind": "reset"}},
                    {"api": "mail_delivery", "fault": {"kind": "status", "status": 503, "retry_after": 2}}
                ]}"#,
            ))
            .expect("adds");
        let p = params(&[]);
        let md = Api::MailDelivery;
        // A first page: only the second rule matches.
        let first = script.take(md, &p, false).expect("rule 2 fires");
        assert_eq!(first.name(), "status-503");
        assert_eq!(script.take(md, &p, false), None, "rule 2 is used up");
        assert_eq!(script.take(Api::MailTracking, &p, true), None, "another API");
        assert_eq!(script.take(md, &p, true), None, "the first token request is skipped");
        assert_eq!(script.take(md, &p, true), Some(Scripted::Body(Delivery::Reset)));
        assert_eq!(script.take(md, &p, true), Some(Scripted::Body(Delivery::Reset)));
        assert_eq!(script.take(md, &p, true), None);
        let snap = script.snapshot();
        assert_eq!((snap[0].skipped, snap[0].fired), (1, 2));
        assert_eq!((snap[1].skipped, snap[1].fired), (0, 1));
    }

    #[test]
    fn params_must_all_match_and_reject_token_needs_a_token() {
        let script = FaultScript::default();
        script
            .add(rules(
                r#"{"rules": [{"api": "mail_tracking", "params": {"type": "blocked_traffic", "start": "x"},
                               "times": 5, "fault": {"kind": "reject_token"}}]}"#,
            ))
            .expect("adds");
        let mt = Api::MailTracking;
        let both = params(&[("type", "blocked_traffic"), ("start", "x"), ("limit", "5")]);
        assert_eq!(script.take(mt, &both, false), None, "no token to reject");
        assert_eq!(script.take(mt, &params(&[("type", "blocked_traffic")]), true), None);
        assert_eq!(script.take(mt, &both, true), Some(Scripted::RejectToken));
    }

    #[test]
    fn retry_after_forms() {
        let script = FaultScript::default();
        script
            .add(rules(
                r#"{"rules": [{"api": "mail_delivery", "fault": {"kind": "status", "status": 429, "retry_after_date": 3}},
                              {"api": "mail_delivery", "fault": {"kind": "status", "status": 502}}]}"#,
            ))
            .expect("adds");
        let p = params(&[]);
        let before = SystemTime::now();
        let Some(Scripted::Status {
            status,
            retry_after: Some(RetryAfter::At(at)),
        }) = script.take(Api::MailDelivery, &p, false)
        else {
            panic!("a 429 with an HTTP-date Retry-After")
        };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let ahead = at.duration_since(before).expect("in the future");
        assert!(
            (Duration::from_secs(3)..Duration::from_secs(4)).contains(&ahead),
            "{ahead:?}"
        );
        assert_eq!(
            script.take(Api::MailDelivery, &p, false),
            Some(Scripted::Status {
                status: StatusCode::BAD_GATEWAY,
                retry_after: None
            })
        );
    }

    #[test]
    fn invalid_scripts_add_nothing_and_say_why() {
        let script = FaultScript::default();
        for (json, says) in [
            (
                r#"{"rules": [{"api": "mail_delivery", "fault": {"kind": "reset"}},
                              {"api": "mail_delivery", "times": 0, "fault": {"kind": "reset"}}]}"#,
                "rule 1: times must be at least 1",
            ),
            (
                r#"{"rules": [{"api": "mail_delivery", "fault": {"kind": "status", "status": 404}}]}"#,
                "status must be 429, 500, 502, 503 or 504",
            ),
            (
                r#"{"rules": [{"api": "mail_delivery", "fault": {"kind": "status", "status": 503, "retry_after": 1, "retry_after_date": 1}}]}"#,
                "not both",
            ),
            (
                r#"{"rules": [{"api": "mail_delivery", "fault": {"kind": "stall", "secs": 0}}]}"#,
                "stall secs must be 1..=600",
            ),
        ] {
            let err = script.add(rules(json)).expect_err(json);
            assert!(err.contains(says), "{err}");
        }
        assert!(script.snapshot().is_empty(), "a bad script adds nothing");
        for bad in [
            r#"{"rules": [{"api": "cdn_logs", "fault": {"kind": "reset"}}]}"#,
            r#"{"rules": [{"api": "mail_delivery", "fault": {"kind": "explode"}}]}"#,
            r#"{"rules": [{"api": "mail_delivery", "fault": {"kind": "reset", "secs": 3}}]}"#,
            r#"{"rules": [{"api": "mail_delivery", "requests": "first", "fault": {"kind": "reset"}}]}"#,
        ] {
            assert!(serde_json::from_str::<ScriptSpec>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn form_and_query_parameters_are_decoded() {
        let p = decode_params(b"StartDate=2026-01-02T00%3A00&NextToken=a%2Bb%3D&x=1&x=2");
        assert_eq!(p["StartDate"], "2026-01-02T00:00");
        assert_eq!(p["NextToken"], "a+b=");
        assert_eq!(p["x"], "1");
    }
}
