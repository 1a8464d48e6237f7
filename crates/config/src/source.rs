//! The `source:` section: which vendor API to read and how to reach it.
//!
//! One variant per source type. Adding a source means a variant in [`SourceConfig`], its name in
//! `KINDS` and one arm in `variant`; its struct derives `Deserialize` with `deny_unknown_fields`,
//! and checks its values in `deserialize_with` functions so that errors keep their positions.

use std::fmt;

use etl_core::Secret;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::de::{Tagged, int_in, non_empty_secret, str_with, tagged};

/// Where records come from. Written as a mapping whose first key is `type`:
///
/// ```yaml
/// source:
///   type: mail_delivery
///   url: ${MAIL_DELIVERY_URL}
///   token: ${MAIL_DELIVERY_TOKEN}
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// `type: mail_delivery`: the mail delivery log API (delivery results per recipient).
    MailDelivery(MailDeliveryConfig),
    /// `type: mail_tracking`: the mail tracking log API (accepted and blocked traffic).
    MailTracking(MailTrackingConfig),
    /// `type: cdn_logs`: the CDN delivery-log file listing and its `.log.gz` files.
    CdnLogs(CdnLogsConfig),
    /// `type: audit_log`: the audit-log SOAP service's export jobs.
    AuditLog(AuditLogConfig),
    /// `type: webdav_logs`: a WebDAV log store's rotated archives and current log.
    WebdavLogs(WebdavLogsConfig),
}

impl SourceConfig {
    /// Every `type` a `source:` section accepts, in the order of the reference.
    pub const TYPES: &'static [&'static str] =
        &["mail_delivery", "mail_tracking", "cdn_logs", "audit_log", "webdav_logs"];

    /// The `type` as written in the file (`mail_delivery`).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::MailDelivery(_) => "mail_delivery",
            SourceConfig::MailTracking(_) => "mail_tracking",
            SourceConfig::CdnLogs(_) => "cdn_logs",
            SourceConfig::AuditLog(_) => "audit_log",
            SourceConfig::WebdavLogs(_) => "webdav_logs",
        }
    }

    /// For `--rate-share 1/K`: gives this process 1/K of every request rate the source is
    /// limited to (rounded down, at least 1 per window), so that K workers together stay under
    /// the API's limits. Returns the new limits in words, or `None` for a source the API
    /// limits in no rate (its units need no sharing).
    pub fn share_rate_budget(&mut self, k: u32) -> Option<String> {
        let k = k.max(1);
        match self {
            SourceConfig::CdnLogs(c) => {
                c.rate_per_minute = (c.rate_per_minute / k).max(1);
                c.rate_per_hour = (c.rate_per_hour / k).max(1);
                Some(format!(
                    "{} listing requests per minute and {} per hour",
                    c.rate_per_minute, c.rate_per_hour
                ))
            }
            SourceConfig::MailDelivery(_)
            | SourceConfig::MailTracking(_)
            | SourceConfig::AuditLog(_)
            | SourceConfig::WebdavLogs(_) => None,
        }
    }

    /// Every secret of this source, for the HTTP client's redactor.
    pub fn secrets(&self) -> Vec<Secret> {
        match self {
            SourceConfig::MailDelivery(c) => vec![c.token.clone()],
            SourceConfig::MailTracking(c) => vec![c.api_key.clone()],
            SourceConfig::CdnLogs(c) => c.headers.iter().map(|(_, v)| v.clone()).collect(),
            SourceConfig::AuditLog(c) => vec![
                c.license.clone(),
                c.api_account_id.clone(),
                c.api_account_password.clone(),
            ],
            SourceConfig::WebdavLogs(c) => vec![c.token.clone()],
        }
    }
}

impl Tagged for SourceConfig {
    const SECTION: &'static str = "source";
    const KINDS: &'static [&'static str] = SourceConfig::TYPES;

    fn variant<'de, A: MapAccess<'de>>(kind: &'static str, rest: A) -> Result<Self, A::Error> {
        match kind {
            "mail_delivery" => {
                MailDeliveryConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::MailDelivery)
            }
            "mail_tracking" => {
                MailTrackingConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::MailTracking)
            }
            "cdn_logs" => CdnLogsConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::CdnLogs),
            "audit_log" => AuditLogConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::AuditLog),
            "webdav_logs" => WebdavLogsConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::WebdavLogs),
            other => Err(de::Error::custom(format!("unknown source type `{other}`"))),
        }
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged(d)
    }
}

/// `type: mail_delivery`: the mail delivery log API: one result line per recipient, read as XML
/// pages from a form POST (`X-Auth-Token`). A unit is one UTC day.
///
/// API limits, planned within before any request:
/// - a request's window is shorter than 24 hours (`EndDate`'s minute is inclusive, so `00:00` to
///   `23:59` is one UTC day): one request window per unit;
/// - `StartDate` reaches back at most to 00:00 UTC of the day 90 days ago: older days are skipped
///   with a note;
/// - at most `max_items` (1..=10000) records per page; `NextToken` continues the same window, and
///   a replayed token is never written twice;
/// - a 429's `Retry-After` holds every request made with the same token.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the mail_delivery keys (url, token, status, max_items, parallel_windows)"
)]
pub struct MailDeliveryConfig {
    /// `url` (required): the URL the search form is POSTed to, `http://` or `https://`.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// `token` (required, non-empty): the API token, sent as the `X-Auth-Token` header. Write it
    /// as `${VAR}` so that it stays out of the file; it is never printed.
    #[serde(deserialize_with = "non_empty_secret")]
    pub token: Secret,
    /// `status` (optional, default every status): only fetch records with this delivery result:
    /// `sent`, `retry` or `faild` (the vendor's spelling; `failed` and the codes 1, 2, 3 are
    /// accepted too).
    #[serde(default)]
    pub status: Option<DeliveryStatus>,
    /// `max_items` (optional, 1..=10000, default 10000): records per page (the API's `MaxItems`).
    #[serde(default = "default_max_items", deserialize_with = "max_items")]
    pub max_items: u32,
    /// `parallel_windows` (optional, 1..=24, default 1): a unit's day is asked as this many
    /// consecutive request windows of whole minutes, each with its own `NextToken` chain, fetched
    /// at the same time (a chain waits a round trip per page); pages are still written in time
    /// order. Only for a server that answers exactly the window asked (as the API documents): one
    /// that ignored `StartDate`/`EndDate` would send each window the same records. Costs one
    /// request more per extra window.
    #[serde(default = "default_parallel_windows", deserialize_with = "parallel_windows")]
    pub parallel_windows: usize,
}

/// `type: mail_tracking`: the mail tracking log API: accepted and blocked mail traffic, read as
/// JSON pages from a GET with HTTP Basic authentication. A unit is one UTC day of one traffic
/// type (and one domain when `domains` is set).
///
/// API limits, planned within before any request:
/// - one traffic type per request: each type is its own unit, under the `traffic_type=` partition;
/// - `start`/`end` reach back at most 72 hours before the request: a unit that would start
///   earlier is refused, naming the earliest day the API still serves;
/// - both `start` and `end` are always sent (without them the API answers only five minutes), a
///   day as `T00:00:00.000Z` to `T23:59:59.999Z`;
/// - `limit` records per page (1..=10000 here; the API's default is 500); `nextToken` continues
///   the same query, and a replayed token is never written twice.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the mail_tracking keys (url, user, api_key, traffic_types, domains, direction, limit, parallel_windows)"
)]
pub struct MailTrackingConfig {
    /// `url` (required): the service URL; `/api/v1/log/mailtrackinglog` is appended.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// `user` (required): the HTTP Basic user name.
    #[serde(deserialize_with = "crate::de::non_empty_string")]
    pub user: String,
    /// `api_key` (required, non-empty): the HTTP Basic password; never printed.
    #[serde(deserialize_with = "non_empty_secret")]
    pub api_key: Secret,
    /// `traffic_types` (optional, default `[accepted_traffic, blocked_traffic]`): the traffic
    /// types to load. The API takes one type per request; each type is its own unit and partition.
    #[serde(default = "default_traffic_types")]
    pub traffic_types: Vec<TrafficType>,
    /// `domains` (optional, default all domains in one query): query each of these domains
    /// separately (the API's `domain` filter); each domain is its own unit.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `direction` (optional, default both): `in` or `out` (the API's `direction` filter).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// `limit` (optional, 1..=10000, default 500): records per page (the API's `limit`).
    #[serde(default = "default_limit", deserialize_with = "tracking_limit")]
    pub limit: u32,
    /// `parallel_windows` (optional, 1..=24, default 1): a unit's day is asked as this many
    /// consecutive `start`/`end` windows, each with its own `nextToken` chain, fetched at the
    /// same time (a chain waits a round trip per page); pages are still written in time order.
    /// Only for a server that answers exactly the window asked (as the API documents): one that
    /// ignored `start`/`end` would send each window the same records. Costs one request more per
    /// extra window.
    #[serde(default = "default_parallel_windows", deserialize_with = "parallel_windows")]
    pub parallel_windows: usize,
}

/// `type: cdn_logs`: the CDN delivery-log API: a listing (`GET /lls/v1.0/logs/delivery`) gives
/// the 5-minute slots of a domain with signed, expiring URLs of `.log.gz` access-log files, which
/// are then downloaded and decoded as they stream. A unit is one domain and UTC day.
///
/// API limits, planned within before any request:
/// - a listing covers at most 24 hours: one listing request per domain and UTC day;
/// - 100 listing requests per minute and 1000 per hour: every listing request of the run,
///   retries and URL refreshes included, waits for both budgets (`rate_per_minute`,
///   `rate_per_hour`), and a 429 holds them for its `Retry-After`;
/// - slots are 5 minutes (`t` covers `[t, t+5min)`); only the slots of the unit's day are kept;
/// - download URLs expire: one that has expired or is about to is never used, the day is
///   listed again for fresh URLs (a bounded number of times per file);
/// - downloads are not rate-limited (`download_concurrency` at once) and come only from the
///   listing's host and `download_hosts`, without the listing's `headers`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the cdn_logs keys (url, domains, download_hosts, headers, rate_per_minute, rate_per_hour, download_concurrency, max_line_bytes)"
)]
pub struct CdnLogsConfig {
    /// `url` (required): the API's base URL; `/lls/v1.0/logs/delivery` is appended.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// `domains` (required): the delivery domains to load, as a list or a comma-separated
    /// string (`${CDN_LOGS_DOMAINS}`). Each domain and UTC day is one unit, written under the
    /// `domain=` partition.
    #[serde(deserialize_with = "domain_list")]
    pub domains: Vec<String>,
    /// `download_hosts` (optional): the only hosts `.log.gz` files are downloaded from, as a
    /// list or a comma-separated string; `*.example.com` allows every subdomain. The listing's
    /// own host is always allowed; an empty value means only that host.
    #[serde(default, deserialize_with = "host_list")]
    pub download_hosts: Vec<String>,
    /// `headers` (optional): extra request headers for the listing only (never sent to the
    /// download hosts), for deployments that put the API behind a gateway. Values are treated
    /// as secrets: write them as `${VAR}`.
    #[serde(default, deserialize_with = "secret_headers")]
    pub headers: Vec<(String, Secret)>,
    /// `rate_per_minute` (optional, 1..=100, default 100): listing requests allowed in any
    /// sliding minute (the API allows 100).
    #[serde(default = "default_rate_per_minute", deserialize_with = "rate_per_minute")]
    pub rate_per_minute: u32,
    /// `rate_per_hour` (optional, 1..=1000, default 1000): listing requests allowed in any
    /// sliding hour (the API allows 1000).
    #[serde(default = "default_rate_per_hour", deserialize_with = "rate_per_hour")]
    pub rate_per_hour: u32,
    /// `download_concurrency` (optional, 1..=64, default 8): files downloaded at once.
    #[serde(default = "default_download_concurrency", deserialize_with = "download_concurrency")]
    pub download_concurrency: usize,
    /// `max_line_bytes` (optional, default 64KiB): a longer access-log line is a bad record.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: crate::ByteSize,
}

/// `type: audit_log`: the audit-log SOAP service: account operations, exported as CSV by
/// asynchronous jobs. A unit is one UTC day: `getDownload` creates its job, `getDownloadStatus`
/// is polled until the job is `COMPLETED`, and the CSV is downloaded from the URL the status shows.
///
/// API limits, planned within before any request:
/// - `dateRange` is in local dates of the account's time zone (`utc_offset`): a UTC day is asked
///   as the local dates that overlap it, and only the records of the UTC day are kept;
/// - an export job runs on the server: it is polled with backoff (`poll_interval` to
///   `poll_interval_max`) within `job_timeout`, and resumed, not created again, after a crash;
/// - the download URL is valid 15 minutes: an expired one is replaced by polling again;
/// - a `SYSTEM_ERROR` job is created again, at most `job_attempts` jobs per unit and run;
/// - SOAP faults (HTTP 500) are not retried, the unit fails with the fault string; a `Server`
///   fault is retried like any other 500.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the audit_log keys (url, license, api_account_id, api_account_password, account_id, lang, utc_offset, download_hosts, poll_interval, poll_interval_max, job_timeout, job_attempts)"
)]
pub struct AuditLogConfig {
    /// `url` (required): the service endpoint the SOAP envelopes are POSTed to.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// `license` (required, secret): the RequestHeader's `license`.
    #[serde(deserialize_with = "non_empty_secret")]
    pub license: Secret,
    /// `api_account_id` (required, secret): the RequestHeader's `apiAccountId`.
    #[serde(deserialize_with = "non_empty_secret")]
    pub api_account_id: Secret,
    /// `api_account_password` (required, secret): the RequestHeader's `apiAccountPassword`.
    #[serde(deserialize_with = "non_empty_secret")]
    pub api_account_password: Secret,
    /// `account_id` (required): the account whose operations are exported.
    #[serde(deserialize_with = "crate::de::non_empty_string")]
    pub account_id: String,
    /// `lang` (optional, `JA` or `EN`, default `JA`): the language of the CSV header.
    #[serde(default = "default_lang", deserialize_with = "audit_lang")]
    pub lang: String,
    /// `utc_offset` (optional, default `+09:00`): the account's time zone, in which the API reads
    /// `dateRange`. A UTC day is asked as the local dates that overlap it.
    #[serde(
        rename = "utc_offset",
        default = "default_utc_offset",
        deserialize_with = "utc_offset"
    )]
    pub utc_offset_minutes: i32,
    /// `download_hosts` (optional): hosts the download URL may point at besides the service's own
    /// (list or comma-separated; `*.example.com` allowed).
    #[serde(default, deserialize_with = "host_list")]
    pub download_hosts: Vec<String>,
    /// `poll_interval` (optional, default `2s`): the first wait between status polls; doubled
    /// after each poll up to `poll_interval_max` (default `30s`).
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "crate::duration::deserialize_positive"
    )]
    pub poll_interval: std::time::Duration,
    /// `poll_interval_max` (optional, default `30s`): the longest wait between two status polls.
    #[serde(
        default = "default_poll_interval_max",
        deserialize_with = "crate::duration::deserialize_positive"
    )]
    pub poll_interval_max: std::time::Duration,
    /// `job_timeout` (optional, default `30m`): how long one job may stay IN_PROGRESS.
    #[serde(
        default = "default_job_timeout",
        deserialize_with = "crate::duration::deserialize_positive"
    )]
    pub job_timeout: std::time::Duration,
    /// `job_attempts` (optional, 1..=10, default 3): jobs created per unit and run before it fails
    /// (after SYSTEM_ERROR, or a download URL that cannot be renewed).
    #[serde(default = "default_job_attempts", deserialize_with = "job_attempts")]
    pub job_attempts: u32,
}

/// `type: webdav_logs`: a cell's WebDAV event log store: `{url}__log/archive` (rotated files)
/// and `{url}__log/current` (`default.log`), listed with `PROPFIND` and read with `GET`. A unit
/// is one archive file, or the current log.
///
/// API limits, planned within before any request:
/// - units come from the listing (`PROPFIND`, `Depth: 1`), not from a time range: `--from` and
///   `--to` do not select archives;
/// - a rotated archive (`default.log.{epoch-ms}`, plain or `.zip` with one entry) never changes:
///   it is loaded once;
/// - `current/default.log` keeps growing: it is loaded on every run and its output replaced;
/// - the store keeps 12 generations and deletes the oldest: archives that rotated away before
///   they were loaded are reported as `LOST` and the run exits non-zero;
/// - a zipped archive is inflated as it downloads, capped at `max_entry_bytes`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the webdav_logs keys (url, token, include_current, max_entry_bytes)"
)]
pub struct WebdavLogsConfig {
    /// `url` (required): the cell URL (`https://cell1.unit1.example/`); `__log/...` is appended.
    #[serde(deserialize_with = "http_url")]
    pub url: String,
    /// `token` (required, secret): the OAuth 2.0 access token, sent as `Authorization: Bearer`.
    #[serde(deserialize_with = "non_empty_secret")]
    pub token: Secret,
    /// `include_current` (optional, default true): also load `current/default.log` (re-loaded
    /// and replaced on every run).
    #[serde(default = "default_true")]
    pub include_current: bool,
    /// `max_entry_bytes` (optional, default `4GiB`): the most a zipped archive may inflate to.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: crate::ByteSize,
}

fn default_true() -> bool {
    true
}

fn default_max_entry_bytes() -> crate::ByteSize {
    crate::ByteSize(4 << 30)
}

fn default_lang() -> String {
    "JA".into()
}

fn audit_lang<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    str_with(d, "JA or EN", |v| match v.trim().to_ascii_uppercase().as_str() {
        l @ ("JA" | "EN") => Ok(l.to_string()),
        _ => Err(format!("unknown lang `{v}`; expected JA or EN")),
    })
}

fn default_utc_offset() -> i32 {
    9 * 60
}

fn utc_offset<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    str_with(d, "a UTC offset such as +09:00", |v| {
        let t = v.trim();
        let bad = || format!("invalid UTC offset `{v}`; expected +HH:MM or -HH:MM, such as +09:00");
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 14 || m > 59 || h.to_string().len() > 2 {
            return Err(bad());
        }
        Ok(sign * (h * 60 + m))
    })
}

fn default_poll_interval() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

fn default_poll_interval_max() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn default_job_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 60)
}

fn default_job_attempts() -> u32 {
    3
}

fn job_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, 10).map(|v| v as u32)
}

fn default_rate_per_minute() -> u32 {
    100
}

fn default_rate_per_hour() -> u32 {
    1000
}

fn default_download_concurrency() -> usize {
    8
}

fn default_max_line_bytes() -> crate::ByteSize {
    crate::ByteSize(64 << 10)
}

fn rate_per_minute<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, 100).map(|v| v as u32)
}

fn rate_per_hour<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, 1000).map(|v| v as u32)
}

fn download_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    int_in(d, 1, 64).map(|v| v as usize)
}

/// A list of names written as a YAML list or as one comma-separated string (the form an
/// environment variable gives), each checked by `check`; duplicates are refused.
struct NameList {
    what: &'static str,
    allow_empty: bool,
    check: fn(&str) -> Result<String, String>,
}

impl NameList {
    fn push(&self, out: &mut Vec<String>, item: &str) -> Result<(), String> {
        for part in item.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let name = (self.check)(part)?;
            if out.contains(&name) {
                return Err(format!("{} `{name}` is listed twice", self.what));
            }
            out.push(name);
        }
        Ok(())
    }

    fn done<E: de::Error>(&self, out: Vec<String>) -> Result<Vec<String>, E> {
        if out.is_empty() && !self.allow_empty {
            return Err(E::custom(format!(
                "the list of {}s must not be empty (is the environment variable set?)",
                self.what
            )));
        }
        Ok(out)
    }
}

impl<'de> Visitor<'de> for NameList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of {}s or a comma-separated string", self.what)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        let mut out = Vec::new();
        self.push(&mut out, v).map_err(E::custom)?;
        self.done(out)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        self.done(Vec::new())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            self.push(&mut out, &item).map_err(de::Error::custom)?;
        }
        self.done(out)
    }
}

/// A host or domain name: letters, digits, `-`, `.` (and a leading `*.` when `wildcard`).
fn check_host_name(v: &str, what: &str, wildcard: bool) -> Result<String, String> {
    let name = if wildcard { v.strip_prefix("*.").unwrap_or(v) } else { v };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && !name.starts_with('.')
        && !name.ends_with('.');
    if ok {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{v}` is not a {what} (expected a name such as `live.example.com`{})",
            if wildcard { " or `*.example.com`" } else { "" }
        ))
    }
}

fn domain_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(NameList {
        what: "domain",
        allow_empty: false,
        check: |v| check_host_name(v, "domain name", false),
    })
}

fn host_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(NameList {
        what: "download host",
        allow_empty: true,
        check: |v| check_host_name(v, "host name", true),
    })
}

/// `headers:` a mapping of header names to (secret) values.
fn secret_headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Secret)>, D::Error> {
    struct Headers;
    impl<'de> Visitor<'de> for Headers {
        type Value = Vec<(String, Secret)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of header names to values")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, Secret)> = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid {
                    return Err(de::Error::custom(format!("`{name}` is not a valid HTTP header name")));
                }
                if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                    return Err(de::Error::custom(format!("header `{name}` is given twice")));
                }
                let value: String = map.next_value()?;
                if value.contains(['\r', '\n']) {
                    return Err(de::Error::custom(format!(
                        "the value of header `{name}` contains a line break"
                    )));
                }
                out.push((name, Secret::new(value)));
            }
            Ok(out)
        }
    }
    d.deserialize_any(Headers)
}

fn default_traffic_types() -> Vec<TrafficType> {
    vec![TrafficType::Accepted, TrafficType::Blocked]
}

fn default_limit() -> u32 {
    500
}

fn default_parallel_windows() -> usize {
    1
}

fn parallel_windows<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    int_in(d, 1, 24).map(|v| v as usize)
}

fn tracking_limit<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, 10_000).map(|v| v as u32)
}

/// The mail tracking API's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum TrafficType {
    #[serde(rename = "accepted_traffic")]
    Accepted,
    #[serde(rename = "blocked_traffic")]
    Blocked,
}

impl TrafficType {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::Accepted => "accepted_traffic",
            TrafficType::Blocked => "blocked_traffic",
        }
    }
}

/// The mail tracking API's `direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

pub(crate) const MAX_ITEMS: u32 = 10_000;

fn default_max_items() -> u32 {
    MAX_ITEMS
}

fn max_items<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    // In range by construction.
    int_in(d, 1, i64::from(MAX_ITEMS)).map(|v| v as u32)
}

/// `deserialize_with`: an absolute `http://` or `https://` URL with a host.
pub(crate) fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    str_with(d, "an http:// or https:// URL", |v| {
        if v.trim().is_empty() {
            return Err("must not be empty; expected an http:// or https:// URL".to_string());
        }
        let parsed = url::Url::parse(v).map_err(|e| format!("invalid URL `{v}`: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{v}` is not an http:// or https:// URL"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{v}` has no host"));
        }
        Ok(v.to_string())
    })
}

/// The delivery result a mail delivery query can be restricted to (the API's `Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Sent,
    Retry,
    /// The vendor spells it `faild`.
    Faild,
}

impl DeliveryStatus {
    /// The code the API expects in the `Status` form field.
    pub fn code(self) -> u8 {
        match self {
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Retry => 2,
            DeliveryStatus::Faild => 3,
        }
    }

    /// The vendor's name of the status (`sent`, `retry`, `faild`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Retry => "retry",
            DeliveryStatus::Faild => "faild",
        }
    }

    fn from_name(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "sent" | "1" => Some(DeliveryStatus::Sent),
            "retry" | "2" => Some(DeliveryStatus::Retry),
            "faild" | "failed" | "3" => Some(DeliveryStatus::Faild),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const STATUS_FORMS: &str = "expected one of: sent, retry, faild (or 1, 2, 3)";

impl<'de> Deserialize<'de> for DeliveryStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StatusVisitor)
    }
}

struct StatusVisitor;

impl Visitor<'_> for StatusVisitor {
    type Value = DeliveryStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a delivery status: sent, retry or faild (or 1, 2, 3)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DeliveryStatus, E> {
        DeliveryStatus::from_name(v).ok_or_else(|| E::custom(format!("unknown status `{v}`; {STATUS_FORMS}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeliveryStatus, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DeliveryStatus, E> {
        self.visit_str(&v.to_string())
    }
}
