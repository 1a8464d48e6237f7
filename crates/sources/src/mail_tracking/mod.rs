//! The mail tracking log API (`GET /api/v1/log/mailtrackinglog`, seed
//! `mail-tracking-log-api.txt`).
//!
//! Rules of the API that shape this module:
//! - One `type` per request (`accepted_traffic` or `blocked_traffic`), optionally one `domain`
//!   and a `direction`: a unit is one UTC day of one traffic type (and one domain when domains
//!   are configured), written under the `traffic_type=` partition.
//! - `start`/`end` filter on `genTime`, in ISO 8601 UTC with the `Z`, to the millisecond. The
//!   API does not say whether `end` is inclusive, so a day is asked as `T00:00:00.000Z` to
//!   `T23:59:59.999Z`: right under both readings, and never a record twice.
//! - Without both `start` and `end` the API silently answers a five-minute window: both are
//!   always sent.
//! - The API only reaches logs generated within the last 72 hours: a unit that would start
//!   earlier is refused before any request, with the earliest time the API still serves.
//! - Pages hold `limit` records; `nextToken` continues the same query until it is absent. A
//!   token that comes back after it was already sent means a replayed page: dropped, asked
//!   again, and the unit fails after a bounded number of replays.
//! - A 400 to a request that carried a token means the server refused the token (expired, or
//!   no longer bound to the query). The pages already read cannot be continued, so the unit asks
//!   the runner to start it again from its first page ([`StageError::restart_unit`]). A 400 to a
//!   first page is a bad request: permanent.
//! - All units share one API key: a 429's `Retry-After` holds every unit's requests, not only
//!   the one that was throttled (an unlimited [`RateBudget`] that only ever holds).

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, Utc};
use etl_config::{MailTrackingConfig, TrafficType};
use etl_core::{Cost, FetchStats, PayloadSender, Plan, PlanRequest, Source, StageError, Unit, Window};
use etl_http::{Client, RateBudget};
use futures::future::BoxFuture;

use crate::paging::{self, MAX_REPLAYS, Step, TokenPaging};
use crate::{day_start, utc_days};

/// How far back the API reaches, from the moment a request is sent.
pub const RETENTION: chrono::Duration = chrono::Duration::hours(72);
/// The path appended to the configured service URL.
pub const PATH: &str = "/api/v1/log/mailtrackinglog";

#[derive(Debug, thiserror::Error)]
pub enum MailTrackingError {
    #[error("{url} answered HTTP {status} ({code}: {message})")]
    Vendor {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{url} answered HTTP 200 with a body that is not a log page: {reason}")]
    NotAPage { url: String, reason: String },
    #[error(
        "the mail tracking API only serves logs generated in the 72 hours before a request (now: from {oldest}); \
         {what} starts at {start}. Ask for --from {first_ok} or later"
    )]
    BeyondRetention {
        oldest: String,
        what: String,
        start: String,
        first_ok: String,
    },
    #[error(
        "{url}: the server returned a nextToken that was already used in this unit (page {page} replayed) \
         {times} times in a row; giving up so that no page is written twice"
    )]
    Replayed { url: String, page: u64, times: u32 },
    #[error("the server refused the token sent for page {page}; the unit must start again from its first page")]
    TokenRejected {
        page: u64,
        #[source]
        answer: Box<MailTrackingError>,
    },
}

/// The mail tracking source.
#[derive(Debug)]
pub struct MailTracking {
    cfg: MailTrackingConfig,
    client: Client,
    endpoint: String,
    /// The clock the 72 hours are checked against before each request (tests set their own).
    now: fn() -> DateTime<Utc>,
}

/// Pages a later window may fetch ahead of the one being decoded.
const PREFETCH_PAGES: usize = 4;

#[derive(serde::Deserialize, Default)]
struct VendorError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn iso_ms(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl MailTracking {
    pub fn new(cfg: MailTrackingConfig, client: Client) -> Self {
        let endpoint = format!("{}{PATH}", cfg.url.trim_end_matches('/'));
        // No limit of its own (the seed states none): it only carries a 429's hold to every unit.
        let client = client.with_budget(Arc::new(RateBudget::new("mail tracking API", &[])));
        Self {
            cfg,
            client,
            endpoint,
            now: Utc::now,
        }
    }

    /// The same source with another clock for the 72-hour check (tests of fixed dates).
    pub fn with_clock(self, now: fn() -> DateTime<Utc>) -> Self {
        Self { now, ..self }
    }

    /// The (traffic type, domain) streams the configuration asks for.
    fn streams(&self) -> Vec<(TrafficType, Option<String>)> {
        let domains: Vec<Option<String>> = if self.cfg.domains.is_empty() {
            vec![None]
        } else {
            self.cfg.domains.iter().cloned().map(Some).collect()
        };
        let mut out = Vec::new();
        for t in &self.cfg.traffic_types {
            for d in &domains {
                out.push((*t, d.clone()));
            }
        }
        out
    }

    fn unit_id(&self, t: TrafficType, domain: Option<&str>, day: NaiveDate) -> String {
        let mut id = format!("mail_tracking-{}", t.as_str());
        if let Some(d) = domain {
            id.push('-');
            id.push_str(&Unit::sanitize_id(d));
        }
        if let Some(dir) = self.cfg.direction {
            id.push('-');
            id.push_str(dir.as_str());
        }
        id.push('-');
        id.push_str(&day.format("%Y-%m-%d").to_string());
        id
    }

    fn query(&self, unit: &Unit, (start, end): (&str, &str), token: Option<&str>) -> Vec<(&'static str, String)> {
        let mut q = vec![("type", unit.params["type"].clone())];
        if let Some(d) = unit.params.get("domain") {
            q.push(("domain", d.clone()));
        }
        if let Some(d) = self.cfg.direction {
            q.push(("direction", d.as_str().to_string()));
        }
        q.push(("start", start.to_string()));
        q.push(("end", end.to_string()));
        q.push(("limit", self.cfg.limit.to_string()));
        if let Some(t) = token {
            q.push(("token", t.to_string()));
        }
        q
    }

    /// The unit's `start`..=`end` cut into `parallel_windows` request windows of whole
    /// milliseconds.
    fn windows(&self, unit: &Unit) -> Result<Vec<paging::RequestWindow>, StageError> {
        paging::request_windows(
            (&unit.params["start"], &unit.params["end"]),
            self.cfg.parallel_windows,
            |v| Some(DateTime::parse_from_rfc3339(v).ok()?.timestamp_millis()),
            |ms| DateTime::from_timestamp_millis(ms).map(iso_ms),
        )
        .map_err(|e| StageError::internal(format!("unit {}: {e}", unit.id)))
    }

    async fn fetch_unit(&self, unit: &Unit, mut out: PayloadSender) -> Result<FetchStats, StageError> {
        let windows = self.windows(unit)?;
        paging::fetch_windows(windows, PREFETCH_PAGES, &mut out, |window, pages| {
            self.fetch_window(unit, window, pages)
        })
        .await
    }

    /// Follows one window's nextToken chain to its end.
    async fn fetch_window(
        &self,
        unit: &Unit,
        window: paging::RequestWindow,
        pages: paging::WindowPages,
    ) -> Result<FetchStats, StageError> {
        let label = &window.label;
        let url = self.client.redactor().redact_url(&self.endpoint);
        let mut stats = FetchStats::default();
        let mut paging = TokenPaging::default();
        // The window's page number, for messages (the payload names number the unit's pages).
        let mut page = 1;
        let window_start = DateTime::parse_from_rfc3339(&window.start)
            .map_err(|e| StageError::internal(format!("unit {}: window start {:?}: {e}", unit.id, window.start)))?
            .with_timezone(&Utc);
        loop {
            // The plan checked the 72 hours against its own clock; a unit that waited in the
            // queue or on retries can cross that edge before its request is sent, and the API
            // would leave the first part of the window out without saying so: fail loudly.
            let oldest = (self.now)() - RETENTION;
            if window_start < oldest {
                return Err(StageError::permanent(MailTrackingError::BeyondRetention {
                    oldest: iso_ms(oldest),
                    what: format!(
                        "page {page} of unit {}{label}, by the time it was to be requested,",
                        unit.id
                    ),
                    start: window.start.clone(),
                    first_ok: (oldest.date_naive() + Days::new(1)).to_string(),
                }));
            }
            let query = self.query(unit, (&window.start, &window.end), paging.token());
            let what = format!("mail_tracking {} page {page}{label}", unit.id);
            let resp = self
                .client
                .send(&what, |c| {
                    c.get(&self.endpoint)
                        .basic_auth(&self.cfg.user, Some(self.cfg.api_key.expose()))
                        .query(&query)
                })
                .await
                .map_err(|e| StageError::from(e).context(format!("page {page}{label}")))?;
            paging::count(&mut stats, &resp);
            if resp.status != 200 {
                let answer = self.vendor_error(url, &resp);
                if resp.status == 400 && paging.token().is_some() {
                    let err = MailTrackingError::TokenRejected {
                        page,
                        answer: Box::new(answer),
                    };
                    return Err(StageError::restart_unit(err, stats));
                }
                return Err(crate::rejected(resp.status, answer));
            }
            let next = page_token(&resp.body).map_err(|reason| {
                StageError::retryable(MailTrackingError::NotAPage {
                    url: url.clone(),
                    reason,
                })
            })?;
            let last = match paging.on_page(next) {
                Step::Replayed(times) if times >= MAX_REPLAYS => {
                    return Err(StageError::retryable(MailTrackingError::Replayed { url, page, times }));
                }
                Step::Replayed(times) => {
                    tracing::warn!(unit = %unit.id, page, times, "page replayed by the server (nextToken already used); requesting it again");
                    continue;
                }
                Step::Deliver { last } => last,
            };
            pages.page(None, resp.body).await?;
            if last {
                return Ok(stats);
            }
            page += 1;
        }
    }

    /// A non-200 answer as an error with the vendor's code and message. The caller classifies
    /// it: 4xx are permanent, except a refused token.
    fn vendor_error(&self, url: String, resp: &etl_http::Response) -> MailTrackingError {
        let v: VendorError = serde_json::from_slice(&resp.body).unwrap_or_default();
        let message = if v.message.is_empty() {
            crate::body_start(&resp.body)
        } else {
            v.message
        };
        MailTrackingError::Vendor {
            url,
            status: resp.status,
            code: if v.code.is_empty() { "no code".into() } else { v.code },
            message: self.client.redactor().redact(&message),
        }
    }
}

impl Source for MailTracking {
    fn kind(&self) -> &'static str {
        "mail_tracking"
    }

    fn cost(&self, unit: &Unit) -> Option<Cost> {
        let windows = self.windows(unit).map_or(1, |w| w.len());
        Some(Cost {
            requests: windows as u64,
            exact: false,
            how: format!(
                "one page per {} records (limit) in each of {windows} request window(s)",
                self.cfg.limit
            ),
        })
    }

    fn plan(&self, req: &PlanRequest) -> Result<Plan, StageError> {
        let mut plan = Plan::default();
        let oldest = req.now - RETENTION;
        let to = req.to.min(req.now);
        if to < req.to {
            plan.notes.push(format!(
                "end clamped to now ({}): the API has no future data",
                iso_ms(req.now)
            ));
        }
        let days = utc_days(req.from, to);
        if let Some(first) = days.first()
            && day_start(*first) < oldest
        {
            let first_ok = oldest.date_naive() + Days::new(1);
            return Err(StageError::permanent(MailTrackingError::BeyondRetention {
                oldest: iso_ms(oldest),
                what: format!("the unit for {first} (units are whole UTC days)"),
                start: iso_ms(day_start(*first)),
                first_ok: first_ok.to_string(),
            }));
        }
        let settled = req.now - chrono::Duration::from_std(req.settle).unwrap_or_default();
        for (t, domain) in self.streams() {
            for day in &days {
                let window = Window::new(day_start(*day), day_start(*day + Days::new(1)));
                let mut unit = Unit {
                    id: self.unit_id(t, domain.as_deref(), *day),
                    window,
                    params: Default::default(),
                    partitions: vec![("traffic_type".into(), t.as_str().into())],
                    provisional: window.end > settled,
                };
                unit.params.insert("type".into(), t.as_str().into());
                if let Some(d) = &domain {
                    unit.params.insert("domain".into(), d.clone());
                }
                unit.params.insert("start".into(), iso_ms(window.start));
                unit.params
                    .insert("end".into(), iso_ms(window.end - chrono::Duration::milliseconds(1)));
                plan.units.push(unit);
            }
        }
        // Two configured streams must never share a unit id (a domain listed twice, or two
        // domains that are the same once made safe for file names): they would write the same
        // files and count as one done unit.
        let mut ids = std::collections::HashSet::new();
        if let Some(dup) = plan.units.iter().find(|u| !ids.insert(u.id.as_str())) {
            return Err(StageError::permanent(format!(
                "two configured queries map to the same unit id `{}`: list each traffic type and domain once \
                 (domains are compared after replacing characters outside [A-Za-z0-9._=-] with `_`)",
                dup.id
            )));
        }
        Ok(plan)
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(self.fetch_unit(unit, out))
    }

    fn retention_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(now - RETENTION)
    }
}

/// The `nextToken` of a page (`None` when absent, null or empty), after checking that the body
/// is one JSON object with a `logs` array, or a page without records: `logs` null or absent with
/// no key but `nextToken` (an object with other keys and no `logs` is an error body). The
/// records themselves are decoded once, by `etl-formats`, on a decode thread: this only walks the top level, skipping strings and nested
/// values without reading them, so a page costs a fraction of a full parse here.
fn page_token(body: &[u8]) -> Result<Option<String>, String> {
    let mut scan = TopLevel { body, at: 0 };
    scan.ws();
    if scan.peek() != Some(b'{') {
        return Err("not a JSON object".into());
    }
    scan.at += 1;
    let (mut token, mut logs, mut other_keys) = (None, false, false);
    loop {
        scan.ws();
        match scan.peek() {
            Some(b'}') if !logs && other_keys => return Err("no `logs` array".into()),
            Some(b'}') => break,
            Some(b'"') => {}
            _ => return Err(format!("expected a key at byte {}", scan.at)),
        }
        let key = scan.string()?;
        scan.ws();
        if scan.peek() != Some(b':') {
            return Err(format!("expected `:` at byte {}", scan.at));
        }
        scan.at += 1;
        scan.ws();
        let value = scan.value()?;
        match key {
            b"\"nextToken\"" => {
                token = match value.first() {
                    Some(b'"') => Some(serde_json::from_slice::<String>(value).map_err(|e| format!("nextToken: {e}"))?),
                    _ if value == b"null" => None,
                    _ => return Err("nextToken is not a string".into()),
                };
            }
            b"\"logs\"" if value.first() == Some(&b'[') || value == b"null" => logs = true,
            b"\"logs\"" => return Err("`logs` is not an array".into()),
            _ => other_keys = true,
        }
        scan.ws();
        match scan.peek() {
            Some(b',') => scan.at += 1,
            Some(b'}') => {}
            _ => return Err(format!("expected `,` or `}}` at byte {}", scan.at)),
        }
    }
    scan.at += 1;
    scan.ws();
    if scan.at != body.len() {
        return Err(format!("content after the object at byte {}", scan.at));
    }
    Ok(token.filter(|t| !t.is_empty()))
}

/// A cursor over a JSON document that knows strings and brackets, nothing more.
struct TopLevel<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> TopLevel<'a> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// The string starting at the cursor, quotes included, raw (escapes not resolved).
    fn string(&mut self) -> Result<&'a [u8], String> {
        let start = self.at;
        let mut i = start + 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.body[i..]) {
                Some(n) if self.body[i + n] == b'\\' => i += n + 2,
                Some(n) => {
                    self.at = i + n + 1;
                    return Ok(&self.body[start..self.at]);
                }
                None => return Err(format!("string at byte {start} is not closed (truncated page?)")),
            }
            if i > self.body.len() {
                return Err(format!("string at byte {start} is not closed (truncated page?)"));
            }
        }
    }

    /// The value starting at the cursor, raw: a string, a nested object or array (brackets
    /// balanced, strings skipped), or a scalar up to the next delimiter.
    fn value(&mut self) -> Result<&'a [u8], String> {
        let start = self.at;
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Ok(&self.body[start..self.at]);
                            }
                        }
                        Some(_) => {}
                        None => return Err(format!("value at byte {start} is not closed (truncated page?)")),
                    }
                    self.at += 1;
                }
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                if self.at == start {
                    return Err(format!("expected a value at byte {start}"));
                }
                Ok(&self.body[start..self.at])
            }
            None => Err("the page ends before a value".into()),
        }
    }
}

#[cfg(test)]
mod tests;
