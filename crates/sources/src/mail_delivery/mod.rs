//! The mail delivery log API (`GetDeliveryLog`, seed `mail-delivery-log-api.txt`).
//!
//! Rules of the API that shape this module:
//! - A form-encoded POST with `X-Auth-Token`; `StartDate`/`EndDate` are `YYYY-MM-DDThh:mm` UTC.
//!   `EndDate` must be less than 24 hours after `StartDate` and its minute is inclusive, so the
//!   API's own example, `00:00` to `23:59`, is exactly one UTC day. Units are therefore UTC days.
//! - `StartDate` reaches back at most to 00:00 of the day 90 days before now: older days are
//!   clamped away with a note before any request.
//! - Pages hold at most `MaxItems` (<= 10000) `<Log>` lines; `<NextToken>` continues the same
//!   window. The token is printed with line breaks, which must be removed, and is form-encoded
//!   when sent (it contains `+`, `/`, `=`); it is only valid with the same StartDate/EndDate.
//! - A token that comes back after it was already sent within the unit means the server replayed
//!   a page: the page is dropped, the request repeated a bounded number of times, then the unit
//!   fails, so a page is never written twice.
//! - A 400 to a request that carried a NextToken means the server refused the token (the seed's
//!   errors include a token that does not match its StartDate/EndDate; a token can also expire).
//!   Sending it again cannot help and the pages already read cannot be continued, so the unit
//!   asks the runner to start it again from its first page ([`StageError::restart_unit`]). A 400
//!   to a first page is a bad request: permanent.
//! - All units share one `X-Auth-Token`: a 429's `Retry-After` holds every unit's requests, not
//!   only the one that was throttled (an unlimited [`RateBudget`] that only ever holds).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Days, NaiveDate, Utc};
use etl_config::MailDeliveryConfig;
use etl_core::{Cost, FetchStats, PayloadSender, Plan, PlanRequest, Source, StageError, Unit, Window};
use etl_http::{Client, RateBudget};
use futures::future::BoxFuture;

use crate::paging::{self, MAX_REPLAYS, Step, TokenPaging};
use crate::xml::{element_text, has_start_tag};
use crate::{day_start, utc_days};

/// `StartDate` and `EndDate`: a UTC minute.
const MINUTE: &str = "%Y-%m-%dT%H:%M";
/// Pages (of up to 10,000 records) a later request window may fetch ahead of the one being
/// decoded.
const PREFETCH_PAGES: usize = 2;

/// How far back the API serves data, in days before today (UTC).
pub const RETENTION_DAYS: u64 = 90;

/// Errors the vendor or its responses cause.
#[derive(Debug, thiserror::Error)]
pub enum MailDeliveryError {
    #[error("{url} answered HTTP {status} ({code}: {message}; request id {request_id})")]
    Vendor {
        url: String,
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("{url} answered HTTP 200 with a body that is not a GetDeliveryLogResponse: {excerpt:?}")]
    NotAPage { url: String, excerpt: String },
    #[error("{url}: the NextToken of page {page} is unreadable: {reason}")]
    BadToken { url: String, page: u64, reason: String },
    #[error(
        "{url}: the server returned a NextToken that was already used in this unit (page {page} replayed) \
         {times} times in a row; giving up so that no page is written twice"
    )]
    Replayed { url: String, page: u64, times: u32 },
    #[error("the server refused the NextToken sent for page {page}; the unit must start again from its first page")]
    TokenRejected {
        page: u64,
        #[source]
        answer: Box<MailDeliveryError>,
    },
}

/// The mail delivery source.
#[derive(Debug)]
pub struct MailDelivery {
    cfg: MailDeliveryConfig,
    client: Client,
}

impl MailDelivery {
    pub fn new(cfg: MailDeliveryConfig, client: Client) -> Self {
        // No limit of its own (the seed states none): it only carries a 429's hold to every unit.
        let client = client.with_budget(Arc::new(RateBudget::new("mail delivery API", &[])));
        Self { cfg, client }
    }

    fn unit_id(&self, day: NaiveDate) -> String {
        match self.cfg.status {
            Some(s) => format!("mail_delivery-{}-{}", s.as_str(), day.format("%Y-%m-%d")),
            None => format!("mail_delivery-{}", day.format("%Y-%m-%d")),
        }
    }

    /// The form fields of one request of the window `start`..=`end` (`YYYY-MM-DDThh:mm`, the
    /// end minute inclusive). `token` has its line breaks already removed.
    fn form(&self, (start, end): (&str, &str), token: Option<&str>) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("Action", "GetDeliveryLog".to_string()),
            ("StartDate", start.to_string()),
            ("EndDate", end.to_string()),
        ];
        if let Some(s) = self.cfg.status {
            form.push(("Status", s.code().to_string()));
        }
        form.push(("MaxItems", self.cfg.max_items.to_string()));
        if let Some(t) = token {
            form.push(("NextToken", t.to_string()));
        }
        form
    }

    async fn fetch_unit(&self, unit: &Unit, mut out: PayloadSender) -> Result<FetchStats, StageError> {
        // Marked sensitive so that no debug output of the request shows it.
        let mut auth = etl_http::reqwest::header::HeaderValue::from_str(self.cfg.token.expose()).map_err(|_| {
            StageError::permanent("the mail delivery token contains characters not allowed in an HTTP header")
        })?;
        auth.set_sensitive(true);
        let windows = self.windows(unit)?;
        paging::fetch_windows(windows, PREFETCH_PAGES, &mut out, |window, pages| {
            self.fetch_window(unit, window, auth.clone(), pages)
        })
        .await
    }

    /// The unit's `StartDate`..=`EndDate` cut into `parallel_windows` request windows of whole
    /// minutes (the API's resolution).
    fn windows(&self, unit: &Unit) -> Result<Vec<paging::RequestWindow>, StageError> {
        paging::request_windows(
            (&unit.params["StartDate"], &unit.params["EndDate"]),
            self.cfg.parallel_windows,
            |v| {
                let t = chrono::NaiveDateTime::parse_from_str(v, MINUTE).ok()?;
                Some(t.and_utc().timestamp() / 60)
            },
            |m| {
                Some(
                    DateTime::from_timestamp(m.checked_mul(60)?, 0)?
                        .format(MINUTE)
                        .to_string(),
                )
            },
        )
        .map_err(|e| StageError::internal(format!("unit {}: {e}", unit.id)))
    }

    /// Follows one request window's NextToken chain to its end.
    async fn fetch_window(
        &self,
        unit: &Unit,
        window: paging::RequestWindow,
        auth: etl_http::reqwest::header::HeaderValue,
        pages: paging::WindowPages,
    ) -> Result<FetchStats, StageError> {
        let label = &window.label;
        let url = self.client.redactor().redact_url(&self.cfg.url);
        let mut stats = FetchStats::default();
        let mut paging = TokenPaging::default();
        // The window's page number, for messages (the payload names number the unit's pages).
        let mut page = 1;
        loop {
            let form = self.form((&window.start, &window.end), paging.token());
            let what = format!("mail_delivery {} page {page}{label}", unit.id);
            let resp = self
                .client
                .send(&what, |c| {
                    c.post(&self.cfg.url).header("X-Auth-Token", auth.clone()).form(&form)
                })
                .await
                .map_err(|e| StageError::from(e).context(format!("page {page}{label}")))?;
            paging::count(&mut stats, &resp);
            if resp.status != 200 {
                let answer = vendor_error(&url, &resp, self.client.redactor());
                if resp.status == 400 && paging.token().is_some() {
                    let err = MailDeliveryError::TokenRejected {
                        page,
                        answer: Box::new(answer),
                    };
                    return Err(StageError::restart_unit(err, stats));
                }
                return Err(crate::rejected(resp.status, answer));
            }
            if !has_start_tag(&resp.body, "GetDeliveryLogResponse") {
                let excerpt = self.client.redactor().redact(&crate::body_start(&resp.body));
                return Err(StageError::retryable(MailDeliveryError::NotAPage { url, excerpt }));
            }
            let next = next_token(&resp.body).map_err(|reason| {
                StageError::retryable(MailDeliveryError::BadToken {
                    url: url.clone(),
                    page,
                    reason,
                })
            })?;
            let last = match paging.on_page(next) {
                Step::Replayed(times) if times >= MAX_REPLAYS => {
                    return Err(StageError::retryable(MailDeliveryError::Replayed { url, page, times }));
                }
                Step::Replayed(times) => {
                    tracing::warn!(unit = %unit.id, page, times, "page replayed by the server (NextToken already used); requesting it again");
                    continue;
                }
                Step::Deliver { last } => last,
            };
            pages.page(content_type(&resp), resp.body).await?;
            if last {
                return Ok(stats);
            }
            page += 1;
        }
    }
}

fn content_type(resp: &etl_http::Response) -> Option<String> {
    resp.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The page's NextToken with its line breaks (and any other whitespace) removed, as the seed
/// requires before the token is sent back.
fn next_token(body: &Bytes) -> Result<Option<String>, String> {
    Ok(element_text(body, "NextToken")?
        .map(|t| t.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|t| !t.is_empty()))
}

/// Turns a non-200 answer into an error with the vendor's Code, Message and RequestId. The
/// caller classifies it: 400/401/403 and every other 4xx are permanent (repeating the same
/// request cannot succeed), except a refused NextToken.
fn vendor_error(url: &str, resp: &etl_http::Response, redactor: &etl_http::Redactor) -> MailDeliveryError {
    // A server that echoes the request would echo the token: everything shown is redacted.
    let field = |name| {
        element_text(&resp.body, name)
            .ok()
            .flatten()
            .map(|v| redactor.redact(&v))
    };
    let request_id = field("RequestId")
        .or_else(|| {
            resp.headers
                .get("x-fj-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "none".into());
    MailDeliveryError::Vendor {
        url: url.to_string(),
        status: resp.status,
        code: field("Code").unwrap_or_else(|| "no code".into()),
        message: field("Message").unwrap_or_else(|| redactor.redact(&crate::body_start(&resp.body))),
        request_id,
    }
}

impl Source for MailDelivery {
    fn kind(&self) -> &'static str {
        "mail_delivery"
    }

    fn cost(&self, unit: &Unit) -> Option<Cost> {
        let windows = self.windows(unit).map_or(1, |w| w.len());
        Some(Cost {
            requests: windows as u64,
            exact: false,
            how: format!(
                "one page per {} records (MaxItems) in each of {windows} request window(s)",
                self.cfg.max_items
            ),
        })
    }

    fn plan(&self, req: &PlanRequest) -> Result<Plan, StageError> {
        let mut plan = Plan::default();
        let oldest = req.now.date_naive() - Days::new(RETENTION_DAYS);
        let to = req.to.min(req.now);
        if to < req.to {
            plan.notes.push(format!(
                "end clamped to now ({}): the API has no future data",
                fmt_minute(req.now)
            ));
        }
        let settled = req.now - chrono::Duration::from_std(req.settle).unwrap_or_default();
        let days = utc_days(req.from, to);
        let (lost, kept): (Vec<_>, Vec<_>) = days.into_iter().partition(|d| *d < oldest);
        if let (Some(first), Some(last)) = (lost.first(), lost.last()) {
            plan.notes.push(format!(
                "{} day(s) {first}..{last} skipped: the API keeps {RETENTION_DAYS} days (StartDate can go back to {oldest}T00:00)",
                lost.len()
            ));
        }
        let midnight = |t: DateTime<Utc>| t == day_start(t.date_naive());
        if !midnight(req.from) || (!midnight(to) && to < req.now) {
            plan.notes
                .push("range widened to whole UTC days: units are UTC days".into());
        }
        for day in kept {
            let window = Window::new(day_start(day), day_start(day + Days::new(1)));
            let mut unit = Unit {
                id: self.unit_id(day),
                window,
                params: Default::default(),
                partitions: Vec::new(),
                provisional: window.end > settled,
            };
            unit.params
                .insert("StartDate".into(), format!("{}T00:00", day.format("%Y-%m-%d")));
            unit.params
                .insert("EndDate".into(), format!("{}T23:59", day.format("%Y-%m-%d")));
            if let Some(s) = self.cfg.status {
                unit.params.insert("Status".into(), s.code().to_string());
            }
            plan.units.push(unit);
        }
        Ok(plan)
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, out: PayloadSender) -> BoxFuture<'a, Result<FetchStats, StageError>> {
        Box::pin(self.fetch_unit(unit, out))
    }

    fn retention_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(day_start(now.date_naive() - Days::new(RETENTION_DAYS)))
    }
}

fn fmt_minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

#[cfg(test)]
mod tests;
