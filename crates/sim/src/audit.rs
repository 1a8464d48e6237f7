//! The audit-log export (`AuditLogService`, SOAP 1.1, plus CSV downloads), simulated from its seed document.
//!
//! Everything here is read off `seeds/audit-log-soap-service.txt` and the "General" and "Audit-log export"
//! sections of `FORMATS.md`, not off the client, so that a client that misreads the seed fails against it.
//! A client may rely on what follows, and on nothing else.
//!
//! # The SOAP endpoint
//! - `POST /services/V201812/AuditLogService` (the client's `AUDIT_LOG_URL` is
//!   `http://127.0.0.1:PORT/services/V201812/AuditLogService`); any other method is `405` with a SOAP fault.
//!   The body is a UTF-8 SOAP 1.1 envelope (a leading BOM is allowed); the `Content-Type` must name an
//!   XML type (`text/xml`, `application/soap+xml`, ...); anything else, or none, is `415` with a plain-text body.
//!   `SOAPAction` is ignored. A SOAP 1.2 envelope gets a `VersionMismatch` fault; a DTD is refused.
//! - Elements are matched by **namespace URI and local name**, never by prefix, exactly as the seed's
//!   samples place them. `S` = `http://schemas.xmlsoap.org/soap/envelope/`,
//!   `A` = `http://im.yahooapis.jp/V201812/AuditLog`, `C` = `http://im.yahooapis.jp/V201812`:
//!   - header: `S:Header/A:RequestHeader/{C:license, C:apiAccountId, C:apiAccountPassword}` (other header
//!     children are ignored);
//!   - `S:Body/A:getDownload/A:selector/{A:accountId, A:dateRange/{A:startDate, A:endDate},
//!     A:auditLogJob/A:auditLogJobName, A:lang}`;
//!   - `S:Body/A:getDownloadStatus/A:selector/{A:accountId, A:auditLogJobIds*, A:auditLogJobStatuses*,
//!     A:paging/{C:startIndex, C:numberResults}}`.
//!
//!   Inside `selector` every element must be one of these, in its namespace: anything else (a typo, or a
//!   known name in the wrong namespace) is a fault that names it. Simple values are trimmed of XML
//!   whitespace; entities, character references and CDATA are decoded.
//! - Checks, in order, each failure a fault (below): the envelope; the `RequestHeader` and its three
//!   credentials (`--audit-license`, `--audit-api-account-id`, `--audit-api-account-password`, compared
//!   exactly); the operation (`getDownload` or `getDownloadStatus` in namespace `A`); the selector's shape
//!   and values; `accountId` equal to `--audit-account-id`.
//!
//! # getDownload
//! `accountId` and `dateRange` with both dates are required; `auditLogJob/auditLogJobName` is optional (the
//! job then has no name and its responses no `auditLogJobName`); `lang` is `JA` (default) or `EN`. Dates are
//! `yyyyMMdd` local dates in the account's time zone, fixed at `+09:00`, both inclusive; `endDate` must not
//! be earlier than `startDate`. The seed states no limit on the range, its length or its age, and none is
//! imposed (a client must not conclude that the real service has none). Each call creates one job and
//! answers one `rval/values` with `operationSucceeded` `true` and the job: `accountId`, `auditLogJobId`
//! (increasing, with gaps), `auditLogJobName`, `auditLogJobUserName` (the request's `apiAccountId`),
//! `auditLogJobStartDate` (`yyyyMMddHHmmss`, +09:00), `auditLogJobStatus` `IN_PROGRESS`, `progress` `0`.
//!
//! # getDownloadStatus
//! - `accountId` is required. With `auditLogJobIds` (positive integers; a repeated id counts once) the
//!   page lists those ids in the order given; without, every job of the simulator in id order.
//!   `auditLogJobStatuses` (`IN_PROGRESS`, `COMPLETED`, `SYSTEM_ERROR`, repeatable) keeps only jobs in
//!   those states. `paging` (`startIndex` from 1, default 1; `numberResults` at least 1, default all) then
//!   cuts the page; `totalNumEntries` counts the entries before paging, and `Page.Type` is `AuditLogPage`.
//! - **Polling drives the jobs:** every getDownloadStatus request that selects a job (by id, or all jobs)
//!   is one poll of it, counted before the status filter and paging. After `k` polls of `N`
//!   (`--audit-job-polls`, default 3) a job shows `IN_PROGRESS` with `progress` `clamp(100k/N, 1, 99)`;
//!   the `N`th poll finishes it: `COMPLETED` with `progress` `100`, or `SYSTEM_ERROR` with the progress it
//!   had reached, both then with `auditLogJobEndDate`. A job ends in `SYSTEM_ERROR` when its name contains
//!   `SYSTEM_ERROR`, or with `--audit-system-error-first` when it is the first job the simulator created.
//! - An id that names no job is answered in place by a `values` with `operationSucceeded` `false` and
//!   `C:errors/{C:code "JOB_NOT_FOUND", C:message, C:details/{C:requestKey "auditLogJobIds",
//!   C:requestValue}}`; it passes every status filter and counts in `totalNumEntries`.
//! - **Every** response that shows a `COMPLETED` job carries a freshly minted
//!   `downloadAuditLogDownloadUrl`: `http://{Host}/auditLogDownload/V201812/download/{token}`, with `Host`
//!   the request's `Host` header (the bound address without one) and an opaque 24-character token. It is
//!   valid for `--audit-url-ttl` seconds (default 900, the seed's 15 minutes) from that response and can
//!   be used any number of times until then; URLs minted earlier keep their own expiry.
//!
//! # Responses and prefixes
//! `200`, `Content-Type: text/xml; charset=utf-8`, chunked, an XML declaration, `S:Header/A:ResponseHeader/
//! {C:service "AuditLog", C:requestTime (epoch ms), C:timeTakenSeconds}` and `S:Body/A:{op}Response/A:rval`
//! holding `A:values`, in which `operationSucceeded` (and `totalNumEntries`, `Page.Type`) are in `C` and
//! the rest in `A`, as in the seed. **The prefixes change from one response to the next** in a cycle of
//! four: the seed's own (body `xmlns=C`, `ns2=A`; header `xmlns=A`, `ns2=C`, so `ns2` means the other
//! namespace than in the request), the same with the two swapped, every prefix declared on the
//! `Envelope`, and default namespaces redeclared element by element. The `S` prefix also varies
//! (`SOAP-ENV`, `soapenv`, `S`, `env`). The first response of a simulator uses the seed's.
//!
//! # Faults
//! HTTP `500` (also for client errors, as SOAP 1.1 over HTTP requires), `Content-Type: text/xml`, no
//! header: `S:Body/S:Fault/{faultcode, faultstring, detail}` with unqualified children, as SOAP 1.1 says.
//! `faultcode` is a QName in the response's own `S` prefix: `Client` for a request at fault, `Server`
//! otherwise, `VersionMismatch` for SOAP 1.2. `faultstring` names the element at fault (e.g.
//! `selector/dateRange/startDate must be yyyyMMdd, got "2025-01-01"`). `detail` holds one
//! `C:ApiExceptionFault/{C:code, C:message}`; codes: `INVALID_REQUEST` (not an envelope, unknown
//! operation), `AUTHENTICATION_FAILED` (header or credentials), `INVALID_PARAMETER` (selector),
//! `ACCOUNT_NOT_PERMITTED` (`accountId`).
//!
//! # Downloads
//! `GET` (or `HEAD`) the minted URL. Unknown token: `404`; expired: `410 Gone` (FORMATS.md: some
//! deployments answer `403`), both `text/plain`. Otherwise `200`, `Content-Type: text/csv; charset=UTF-8`,
//! chunked, with the CSV of FORMATS.md: a UTF-8 BOM, one header row (Japanese for `lang=JA`, English for
//! `EN`; the records themselves do not depend on `lang`), RFC 4180 with CRLF between records, fields quoted
//! only when they contain `,`, `"`, CR or LF, quotes doubled. Whether the last record ends with CRLF varies
//! by job (both are legal). The records are those whose local date (+09:00) lies in the job's `dateRange`
//! and which happened no later than the job's creation, in time order, with `operation ID`s unique and
//! increasing with time.
//!
//! # Data
//! Each local date's records are a pure function of `(--seed, date)` (see [`generate_date`]): about
//! `--audit-rows-per-day` (default 300; 0.5x to 1.5x, and about one date in 25 has none), with awkward but
//! legal content: records at local 00:00:00 and 23:59:59 and at 08:59:59/09:00:00 (either side of UTC
//! midnight), several in one second, repeated content under distinct ids, empty Target ID/Name, Changed
//! Item, Before and After, values with commas, quotes, LF and CRLF line breaks (one ending in a line
//! break), full-width spaces and other Japanese text, a trailing space, a target id above 2^53,
//! operations and target types beyond FORMATS.md's examples (`UPLOAD`, `BULK_UPLOAD`, `AUDIENCE_LIST`), and
//! IPv4 and IPv6 (always RFC 5952 canonical text, so re-rendering a parsed address changes nothing).
//!
//! # Ground truth
//! Under `audit_log` in the `--truth` file, for the three full UTC days before today: `{"rows",
//! "per_operation": {"ADD": n, ...} (operations that occur), "fingerprint"}`. A record belongs to the UTC day
//! of its operation time, so a UTC day `D` is the local dates `D` (from 09:00:00) and `D+1` (before
//! 09:00:00). **Fingerprint contract:** per record, the canonical text is these 14 fields joined by U+001F:
//! `operation_id` (decimal), `operated_at` as integer epoch microseconds UTC, `account_id`, `operator`,
//! `tool`, `operation`, `target_type`, `target_id` (decimal, `-` when empty), `target_name`, `changed_item`,
//! `before_value`, `after_value` (each the unquoted CSV text, `-` when empty), `affected_count` (decimal),
//! `ip_address`. The record hash is FNV-1a-64 of its UTF-8 bytes; a day's fingerprint is the wrapping u64
//! sum of its records' hashes, as 16 lowercase hex digits.
//!
//! # Test hooks, stats and injected faults
//! `GET /_sim/audit/jobs` returns `{"created", "status_polls", "downloads", "expired", "jobs": [{"id",
//! "name", "status", "start_date", "end_date", "polls"}]}`: jobs created, getDownloadStatus requests
//! processed, CSV bodies served (200), downloads refused as expired, and per job its `dateRange`
//! (`yyyyMMdd`) and the polls it has had. `/_sim/stats` has `audit_log` with the usual
//! `requests`/`data_requests`/`faults` over SOAP calls and downloads together.
//!
//! `--fault-rate p` gives each SOAP call, before anything else, and each download, after its URL was
//! checked (refusals stay refusals), a fault with probability `p`: `500` with an HTML body (a proxy's,
//! not a SOAP fault), `503` with `Retry-After` in seconds or as an HTTP date, or without one, a slow
//! answer, or a connection dropped in the middle of the body. A dropped SOAP call was processed first: its
//! job exists, its poll counted, and a client that retries sees the next state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use chrono::{DateTime, Days, FixedOffset, NaiveDate, Utc};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use serde::Serialize;

use crate::data::{DayCache, SplitMix64, fnv1a64, mix};
use crate::faults::{Fault, truncated_body};
use crate::{Shared, SimArgs};

/// The SOAP endpoint.
pub(crate) const SERVICE_PATH: &str = "/services/V201812/AuditLogService";
/// Where minted download URLs point (the token follows).
pub(crate) const DOWNLOAD_PREFIX: &str = "/auditLogDownload/V201812/download/";
/// The job list for tests.
pub(crate) const JOBS_PATH: &str = "/_sim/audit/jobs";

pub(crate) const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
pub(crate) const AUDIT_NS: &str = "http://im.yahooapis.jp/V201812/AuditLog";
pub(crate) const COMMON_NS: &str = "http://im.yahooapis.jp/V201812";

/// The account's time zone: `dateRange` dates and `Operation Date` are in it.
pub(crate) const OFFSET_SECS: i32 = 9 * 3600;
/// Salt that separates this API's data stream from the other simulated APIs'.
const DATA_SALT: u64 = 0x6175_6469_742d_6c6f;
const JOB_SALT: u64 = 0x6175_6469_742d_6a62;
const TOKEN_SALT: u64 = 0x6175_6469_742d_746b;
/// Probability that a local date has no record at all.
const EMPTY_DATE_ONE_IN: u64 = 25;
/// How many full UTC days before today the truth describes.
const TRUTH_DAYS: u64 = 3;
/// Local dates kept generated for downloads.
const CACHED_DATES: usize = 32;
/// Minted URLs remembered (the oldest are forgotten first, and then answered 404).
const MAX_TOKENS: usize = 100_000;
/// Upper bound of `--audit-rows-per-day`: operation ids leave room for 10^7 per date.
const MAX_ROWS_PER_DAY: u32 = 1_000_000;
const TOKEN_LEN: usize = 24;

pub(crate) const FINGERPRINT_DEFINITION: &str = "per record, the canonical text is these 14 fields joined by U+001F: \
operation_id (decimal), operated_at (integer epoch microseconds UTC), account_id, operator, tool, operation, \
target_type, target_id (decimal, '-' when empty), target_name, changed_item, before_value, after_value (each the \
unquoted CSV text, '-' when empty), affected_count (decimal), ip_address. Record hash = FNV-1a-64 of the UTF-8 \
canonical text; fingerprint = wrapping u64 sum of the record hashes of that day, as 16 lowercase hex digits. A \
record belongs to the UTC day of its operation time (local dates are +09:00, so UTC day D is local date D from \
09:00:00 and local date D+1 before 09:00:00). per_operation lists the operations that occur.";

pub(crate) const HEADER_JA: [&str; 14] = [
    "操作ID",
    "操作日時",
    "アカウントID",
    "操作者",
    "利用ツール",
    "操作種別",
    "対象種別",
    "対象ID",
    "対象名",
    "変更項目",
    "変更前",
    "変更後",
    "影響件数",
    "IPアドレス",
];
pub(crate) const HEADER_EN: [&str; 14] = [
    "Operation ID",
    "Operation Date",
    "Account ID",
    "Operator",
    "Tool",
    "Operation",
    "Target Type",
    "Target ID",
    "Target Name",
    "Changed Item",
    "Before",
    "After",
    "Affected Count",
    "IP Address",
];

// ---------------------------------------------------------------------------------------------------------
// Data generation
// ---------------------------------------------------------------------------------------------------------

/// One audit record as the CSV carries it (the account id is the configured one). Empty strings and
/// `None` are the CSV's empty fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditRecord {
    pub(crate) operation_id: u64,
    /// Epoch seconds, UTC.
    pub(crate) at: i64,
    pub(crate) operator: &'static str,
    pub(crate) tool: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) target_type: &'static str,
    pub(crate) target_id: Option<u64>,
    pub(crate) target_name: String,
    pub(crate) changed_item: &'static str,
    pub(crate) before: String,
    pub(crate) after: String,
    pub(crate) affected_count: u64,
    pub(crate) ip: String,
}

const PEOPLE: &[&str] = &[
    "yamada.taro@example.co.jp",
    "山田 太郎",
    "鈴木\u{3000}花子",
    "O'Brien, Pat",
    "\"Ops\" チーム",
    "運用チーム（外部）",
    "sato+ads@example.com",
];
const API_USERS: &[&str] = &["2222-2222-2222-2222", "api-batch@example.co.jp"];
const CAMPAIGNS: &[&str] = &[
    "春のセール2025",
    "Summer Sale, \"Best\" Deals",
    "ブランド_指名",
    "=HYPERLINK(\"x\")",
    "キャンペーン\u{3000}全角スペース",
    "trailing space ",
];
const AD_GROUPS: &[&str] = &["広告グループ", "AG, 東京/大阪", "新商品 \"限定\""];
const ADS: &[&str] = &["テキスト広告", "レスポンシブ広告, A案"];
const KEYWORDS: &[&str] = &["\"靴\" 通販", "[ランニングシューズ]", "+格安 +航空券", "café crème"];
const AD_TEXTS: &[&str] = &[
    "見出し1: 春の新生活セール\n見出し2: 最大50%OFF\n説明文: 今すぐ\"チェック\"!",
    "Headline: Spring Sale\r\nDescription: Up to 50% off, today only",
    "1行目\n\n3行目（空行あり）",
    "末尾に改行\n",
    "単一行の説明文",
];
const URLS: &[&str] = &[
    "https://example.com/?a=1&b=2",
    "https://example.com/spring?utm=x,y",
    "https://例え.jp/セール",
];

fn day_number(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp().div_euclid(86_400))
        .unwrap_or_default()
}

/// Epoch seconds of local midnight (+09:00) starting `date`.
pub(crate) fn local_midnight(date: NaiveDate) -> i64 {
    day_number(date) * 86_400 - i64::from(OFFSET_SECS)
}

fn offset() -> FixedOffset {
    FixedOffset::east_opt(OFFSET_SECS).expect("+09:00 is a valid offset")
}

/// `2025-11-17T09:01:08+09:00`.
pub(crate) fn local_iso(at: i64) -> String {
    DateTime::from_timestamp(at, 0)
        .map(|t| t.with_timezone(&offset()).format("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .unwrap_or_default()
}

/// `yyyyMMddHHmmss` in the account's time zone, as the seed's job dates.
fn local_compact(t: DateTime<Utc>) -> String {
    t.with_timezone(&offset()).format("%Y%m%d%H%M%S").to_string()
}

fn ip_address(rng: &mut SplitMix64) -> String {
    let host = 1 + rng.below(254) as u8;
    let v4 = match rng.below(3) {
        0 => Ipv4Addr::new(203, 0, 113, host),
        1 => Ipv4Addr::new(198, 51, 100, host),
        _ => Ipv4Addr::new(192, 0, 2, host),
    };
    match rng.below(10) {
        0..=5 => v4.to_string(),
        6 | 7 => Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 1 + rng.below(0xfffe) as u16).to_string(),
        8 => Ipv6Addr::new(
            0x2001,
            0x0db8,
            0x85a3,
            rng.below(3) as u16,
            0,
            0x8a2e,
            0x0370,
            rng.below(0x10000) as u16,
        )
        .to_string(),
        _ => v4.to_ipv6_mapped().to_string(),
    }
}

fn target_id(rng: &mut SplitMix64) -> u64 {
    if rng.chance(0.02) {
        // Above 2^53: a client that goes through f64 loses it.
        (1 << 53) + 1 + rng.below(1 << 40)
    } else {
        1_000_000 + rng.below(99_000_000_000)
    }
}

fn numbered(rng: &mut SplitMix64, base: &str) -> String {
    if rng.chance(0.5) {
        format!("{base} {}", 1 + rng.below(40))
    } else {
        base.to_string()
    }
}

/// The content of one record (everything but id and time).
fn record_content(rng: &mut SplitMix64, date: NaiveDate) -> AuditRecord {
    let tool = match rng.below(20) {
        0..=9 => "WEB",
        10..=16 => "API",
        _ => "EDITOR",
    };
    let operator = if tool == "API" {
        rng.pick(API_USERS)
    } else {
        rng.pick(PEOPLE)
    };
    let mut r = AuditRecord {
        operation_id: 0,
        at: 0,
        operator,
        tool,
        operation: "SET",
        target_type: "CAMPAIGN",
        target_id: None,
        target_name: String::new(),
        changed_item: "",
        before: String::new(),
        after: String::new(),
        affected_count: 1,
        ip: ip_address(rng),
    };
    let (target_type, name) = match rng.below(20) {
        0..=4 => ("CAMPAIGN", rng.pick(CAMPAIGNS).to_string()),
        5..=9 => {
            let base = rng.pick(AD_GROUPS);
            ("AD_GROUP", numbered(rng, base))
        }
        10..=13 => {
            let base = rng.pick(ADS);
            ("AD", numbered(rng, base))
        }
        14..=18 => ("KEYWORD", rng.pick(KEYWORDS).to_string()),
        _ => ("AUDIENCE_LIST", "サイト訪問者 30日".to_string()),
    };
    match rng.below(100) {
        0..=11 => {
            r.operation = "LOGIN";
            r.tool = if tool == "API" { "WEB" } else { tool };
            r.operator = rng.pick(PEOPLE);
            r.target_type = "ACCOUNT";
            r.affected_count = 0;
        }
        12..=19 => {
            r.operation = "DOWNLOAD";
            r.target_type = "REPORT";
            r.target_id = Some(target_id(rng));
            r.target_name = if rng.chance(0.5) {
                date.format("月次レポート, %Y年%m月").to_string()
            } else {
                "キーワードレポート".to_string()
            };
        }
        20..=39 => {
            r.operation = "ADD";
            r.target_type = target_type;
            r.target_id = Some(target_id(rng));
            r.changed_item = if rng.chance(0.5) { "全項目" } else { "" };
            r.after = if target_type == "AD" {
                rng.pick(AD_TEXTS).to_string()
            } else {
                name.clone()
            };
            r.target_name = name;
        }
        40..=79 => {
            r.operation = "SET";
            r.target_type = target_type;
            r.target_id = Some(target_id(rng));
            let (item, before, after) = match (target_type, rng.below(3)) {
                ("AD", 0) => ("広告文", rng.pick(AD_TEXTS).to_string(), rng.pick(AD_TEXTS).to_string()),
                ("AD", _) => (
                    "最終リンク先URL",
                    rng.pick(URLS).to_string(),
                    rng.pick(URLS).to_string(),
                ),
                ("CAMPAIGN", 0) => (
                    "日予算",
                    (1000 * (1 + rng.below(50))).to_string(),
                    (1000 * (1 + rng.below(50))).to_string(),
                ),
                ("CAMPAIGN", 1) => ("キャンペーン名", name.clone(), rng.pick(CAMPAIGNS).to_string()),
                ("KEYWORD", 0) => ("マッチタイプ", "PHRASE".to_string(), "EXACT".to_string()),
                (_, 0) | (_, 1) => (
                    "入札価格",
                    (10 * (1 + rng.below(30))).to_string(),
                    (10 * (1 + rng.below(30))).to_string(),
                ),
                _ => ("配信状況", "ACTIVE".to_string(), "PAUSED".to_string()),
            };
            r.changed_item = item;
            r.before = before;
            r.after = after;
            r.target_name = name;
        }
        80..=94 => {
            r.operation = "REMOVE";
            r.target_type = target_type;
            r.target_id = Some(target_id(rng));
            r.before = if target_type == "AD" {
                rng.pick(AD_TEXTS).to_string()
            } else {
                name.clone()
            };
            // Sometimes the target is already gone by name: only its id is left.
            if rng.chance(0.8) {
                r.target_name = name;
            }
        }
        _ => {
            r.operation = "UPLOAD";
            r.tool = "EDITOR";
            r.operator = rng.pick(PEOPLE);
            r.target_type = "BULK_UPLOAD";
            r.target_name = format!("入稿ファイル_{}.csv", 1 + rng.below(99));
            r.affected_count = rng.below(2_000_000);
        }
    }
    r
}

/// The records of one local date (+09:00), in time order. A pure function of `(seed, date, mean_rows)`.
///
/// About one date in 25 has none; the others have 0.5x to 1.5x `mean_rows`, with records at local
/// 00:00:00 and 23:59:59 and either side of UTC midnight (local 08:59:59 and 09:00:00), a few sharing a
/// second, and about 1 % repeating the previous record's content under a new id.
pub(crate) fn generate_date(seed: u64, date: NaiveDate, mean_rows: u32) -> Vec<AuditRecord> {
    let number = day_number(date);
    let mut rng = SplitMix64::new(mix(seed ^ DATA_SALT, number as u64));
    let n = if mean_rows == 0 || rng.below(EMPTY_DATE_ONE_IN) == 0 {
        0
    } else {
        ((f64::from(mean_rows) * (0.5 + rng.unit())).round() as usize).max(1)
    };
    let mut secs: Vec<u32> = (0..n).map(|_| rng.below(86_400) as u32).collect();
    let forced = [0, 86_399, 32_400, 32_399];
    for (slot, &s) in secs.iter_mut().zip(forced.iter()) {
        *slot = s;
    }
    secs.sort_unstable();
    for i in 1..n {
        if !forced.contains(&secs[i]) && rng.chance(0.02) {
            secs[i] = secs[i - 1];
        }
    }
    let midnight = local_midnight(date);
    let mut id = number as u64 * 10_000_000 + 1000;
    let mut out: Vec<AuditRecord> = Vec::with_capacity(n);
    for &sec in &secs {
        id += 1 + rng.below(3);
        let mut r = match out.last() {
            Some(prev) if rng.chance(0.01) => prev.clone(),
            _ => record_content(&mut rng, date),
        };
        r.operation_id = id;
        r.at = midnight + i64::from(sec);
        out.push(r);
    }
    out
}

/// Appends one CSV field, quoted only when it must be.
pub(crate) fn push_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn push_record(out: &mut String, r: &AuditRecord, account_id: &str) {
    let id = r.operation_id.to_string();
    let date = local_iso(r.at);
    let target_id = r.target_id.map(|t| t.to_string()).unwrap_or_default();
    let count = r.affected_count.to_string();
    let fields: [&str; 14] = [
        &id,
        &date,
        account_id,
        r.operator,
        r.tool,
        r.operation,
        r.target_type,
        &target_id,
        &r.target_name,
        r.changed_item,
        &r.before,
        &r.after,
        &count,
        &r.ip,
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f);
    }
}

/// The canonical text of one record (see the fingerprint contract in the module docs).
pub(crate) fn canonical(r: &AuditRecord, account_id: &str) -> String {
    let dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
    let target_id = r.target_id.map_or_else(|| "-".to_string(), |t| t.to_string());
    [
        r.operation_id.to_string(),
        (r.at * 1_000_000).to_string(),
        account_id.to_string(),
        r.operator.to_string(),
        r.tool.to_string(),
        r.operation.to_string(),
        r.target_type.to_string(),
        target_id,
        dash(&r.target_name),
        dash(r.changed_item),
        dash(&r.before),
        dash(&r.after),
        r.affected_count.to_string(),
        r.ip.clone(),
    ]
    .join("\u{1f}")
}

/// One UTC day of truth.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub(crate) struct AuditDayTruth {
    pub(crate) rows: u64,
    pub(crate) per_operation: BTreeMap<String, u64>,
    pub(crate) fingerprint: String,
}

/// What the truth says of the UTC day `day`: local dates `day` and `day + 1`, cut at UTC midnight.
pub(crate) fn day_truth(seed: u64, mean_rows: u32, account_id: &str, day: NaiveDate) -> AuditDayTruth {
    let start = day_number(day) * 86_400;
    let end = start + 86_400;
    let mut t = AuditDayTruth::default();
    let mut sum = 0u64;
    let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
    for date in [day, next] {
        for r in generate_date(seed, date, mean_rows)
            .iter()
            .filter(|r| (start..end).contains(&r.at))
        {
            t.rows += 1;
            *t.per_operation.entry(r.operation.to_string()).or_default() += 1;
            sum = sum.wrapping_add(fnv1a64(canonical(r, account_id).as_bytes()));
        }
    }
    t.fingerprint = format!("{sum:016x}");
    t
}

/// The `audit_log` section of the truth file.
#[derive(Debug, Serialize)]
pub(crate) struct AuditTruth {
    days: BTreeMap<String, AuditDayTruth>,
    fingerprint_definition: &'static str,
}

/// Truth for the three full UTC days before `today`.
pub(crate) fn truth(args: &SimArgs, today: NaiveDate) -> AuditTruth {
    let mut days = BTreeMap::new();
    for back in (1..=TRUTH_DAYS).rev() {
        if let Some(day) = today.checked_sub_days(Days::new(back)) {
            days.insert(
                day.format("%Y-%m-%d").to_string(),
                day_truth(args.seed, args.audit_rows_per_day, &args.audit_account_id, day),
            );
        }
    }
    AuditTruth {
        days,
        fingerprint_definition: FINGERPRINT_DEFINITION,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Reading requests: a small namespace-resolved tree
// ---------------------------------------------------------------------------------------------------------

/// One element of a request, its name resolved to a namespace URI. Attributes are not kept (nothing in
/// the seed uses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) ns: Option<String>,
    pub(crate) local: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
    fn is(&self, ns: &str, local: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.local == local
    }

    /// `{namespace}local`, for messages.
    fn clark(&self) -> String {
        format!("{{{}}}{}", self.ns.as_deref().unwrap_or(""), self.local)
    }
}

/// Parses a whole document into its root element. Namespaces are resolved by quick-xml's `NsReader`, so
/// prefixes never matter; a DTD is refused (SOAP forbids them, and they are how entity bombs arrive).
pub(crate) fn parse_tree(xml: &str) -> Result<Node, String> {
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let element = |ns: ResolveResult<'_>, local: &str| -> Result<Node, String> {
        let ns = match ns {
            ResolveResult::Bound(n) => Some(n.into_inner().to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => return Err(format!("element {local} uses the undeclared prefix {p:?}")),
        };
        Ok(Node {
            ns,
            local: local.to_string(),
            text: String::new(),
            children: Vec::new(),
        })
    };
    loop {
        let at = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("the XML is not well-formed near byte {at}: {e}"))?;
        let text = match event {
            Event::Start(e) => {
                let node = element(ns, e.local_name().into_inner())?;
                stack.push(node);
                continue;
            }
            Event::Empty(e) => {
                let node = element(ns, e.local_name().into_inner())?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("the XML has more than one root element".into()),
                }
                continue;
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("the XML closes an element it never opened")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("the XML has more than one root element".into()),
                }
                continue;
            }
            Event::Text(t) => t.xml10_content().into_owned(),
            Event::CData(t) => t.xml10_content().into_owned(),
            Event::GeneralRef(r) => match r.resolve_char_ref() {
                Ok(Some(c)) => c.to_string(),
                Ok(None) => quick_xml::escape::resolve_predefined_entity(&r)
                    .ok_or_else(|| format!("the XML uses the undefined entity &{};", &*r))?
                    .to_string(),
                Err(e) => return Err(format!("the XML has a bad character reference &{};: {e}", &*r)),
            },
            Event::DocType(_) => return Err("a DTD is not allowed in a SOAP message".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
        };
        match stack.last_mut() {
            Some(node) => node.text.push_str(&text),
            None if text.trim_matches([' ', '\t', '\r', '\n']).is_empty() => {}
            None => return Err("the XML has text outside its root element".into()),
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "the XML is not well-formed: it ends inside the element {}",
            open.local
        ));
    }
    root.ok_or_else(|| "the request body holds no XML element".into())
}

// ---------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------

/// A SOAP fault to send: `Client` when the request is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SoapFault {
    pub(crate) faultcode: &'static str,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl SoapFault {
    fn client(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            faultcode: "Client",
            code,
            message: message.into(),
        }
    }

    fn request(message: impl Into<String>) -> Self {
        Self::client("INVALID_REQUEST", message)
    }

    fn param(message: impl Into<String>) -> Self {
        Self::client("INVALID_PARAMETER", message)
    }

    fn auth(message: impl Into<String>) -> Self {
        Self::client("AUTHENTICATION_FAILED", message)
    }
}

/// Shows a client-supplied value in a message without letting it run on.
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(40).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    format!("{s:?}")
}

fn trimmed(node: &Node) -> &str {
    node.text.trim_matches([' ', '\t', '\r', '\n'])
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) license: String,
    pub(crate) api_account_id: String,
    pub(crate) password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Ja,
    En,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DownloadSelector {
    pub(crate) account_id: String,
    pub(crate) start: NaiveDate,
    pub(crate) end: NaiveDate,
    pub(crate) name: Option<String>,
    pub(crate) lang: Lang,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusSelector {
    pub(crate) account_id: String,
    pub(crate) ids: Vec<u64>,
    pub(crate) statuses: Vec<JobStatus>,
    pub(crate) start_index: usize,
    pub(crate) number_results: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    GetDownload(DownloadSelector),
    GetDownloadStatus(StatusSelector),
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::GetDownload(_) => "getDownload",
            Operation::GetDownloadStatus(_) => "getDownloadStatus",
        }
    }
}

/// The children of `parent` (at `path`), each checked to be one of `allowed` in namespace `ns`.
fn known_children<'a>(
    parent: &'a Node,
    path: &str,
    allowed: &[(&str, &str)],
) -> Result<Vec<(&'a str, &'a Node)>, SoapFault> {
    let mut out = Vec::with_capacity(parent.children.len());
    for child in &parent.children {
        match allowed.iter().find(|(_, local)| *local == child.local) {
            Some((ns, _)) if child.ns.as_deref() == Some(*ns) => out.push((child.local.as_str(), child)),
            Some((ns, local)) => {
                return Err(SoapFault::param(format!(
                    "{path}/{local} must be in namespace {ns}, found {}",
                    child.clark()
                )));
            }
            None => {
                return Err(SoapFault::param(format!(
                    "{path} has an unknown element {}",
                    child.clark()
                )));
            }
        }
    }
    Ok(out)
}

/// The one child named `local`, if any; a repeated one is a fault.
fn single<'a>(children: &[(&str, &'a Node)], path: &str, local: &str) -> Result<Option<&'a Node>, SoapFault> {
    let mut found = children.iter().filter(|(l, _)| *l == local).map(|(_, n)| *n);
    let first = found.next();
    if found.next().is_some() {
        return Err(SoapFault::param(format!("{path}/{local} is given more than once")));
    }
    Ok(first)
}

fn required<'a>(children: &[(&str, &'a Node)], path: &str, local: &str) -> Result<&'a Node, SoapFault> {
    single(children, path, local)?.ok_or_else(|| SoapFault::param(format!("{path}/{local} is required")))
}

/// A simple value: text only, trimmed.
fn simple<'a>(node: &'a Node, path: &str) -> Result<&'a str, SoapFault> {
    if let Some(child) = node.children.first() {
        return Err(SoapFault::param(format!(
            "{path} must hold a value, not the element {}",
            child.clark()
        )));
    }
    Ok(trimmed(node))
}

fn parse_date(node: &Node, path: &str) -> Result<NaiveDate, SoapFault> {
    let v = simple(node, path)?;
    let shape = v.len() == 8 && v.bytes().all(|c| c.is_ascii_digit());
    let date = shape.then(|| NaiveDate::parse_from_str(v, "%Y%m%d").ok()).flatten();
    date.ok_or_else(|| SoapFault::param(format!("{path} must be a date as yyyyMMdd, got {}", shown(v))))
}

fn parse_positive(node: &Node, path: &str) -> Result<u64, SoapFault> {
    let v = simple(node, path)?;
    match v.parse::<u64>() {
        Ok(n) if n > 0 && v.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
        _ => Err(SoapFault::param(format!(
            "{path} must be a positive integer, got {}",
            shown(v)
        ))),
    }
}

fn parse_download_selector(selector: &Node) -> Result<DownloadSelector, SoapFault> {
    let p = "selector";
    let a = AUDIT_NS;
    let kids = known_children(
        selector,
        p,
        &[(a, "accountId"), (a, "dateRange"), (a, "auditLogJob"), (a, "lang")],
    )?;
    let account_id = simple(required(&kids, p, "accountId")?, "selector/accountId")?.to_string();
    let range = required(&kids, p, "dateRange")?;
    let rp = "selector/dateRange";
    let range_kids = known_children(range, rp, &[(a, "startDate"), (a, "endDate")])?;
    let start = parse_date(required(&range_kids, rp, "startDate")?, "selector/dateRange/startDate")?;
    let end = parse_date(required(&range_kids, rp, "endDate")?, "selector/dateRange/endDate")?;
    if end < start {
        return Err(SoapFault::param(format!(
            "selector/dateRange/endDate {} is earlier than startDate {}",
            end.format("%Y%m%d"),
            start.format("%Y%m%d")
        )));
    }
    let name = match single(&kids, p, "auditLogJob")? {
        None => None,
        Some(job) => {
            let jp = "selector/auditLogJob";
            let job_kids = known_children(job, jp, &[(a, "auditLogJobName")])?;
            match single(&job_kids, jp, "auditLogJobName")? {
                Some(n) => Some(simple(n, "selector/auditLogJob/auditLogJobName")?.to_string()),
                None => None,
            }
        }
    };
    let lang = match single(&kids, p, "lang")? {
        None => Lang::Ja,
        Some(n) => match simple(n, "selector/lang")? {
            "JA" => Lang::Ja,
            "EN" => Lang::En,
            other => {
                return Err(SoapFault::param(format!(
                    "selector/lang must be JA or EN, got {}",
                    shown(other)
                )));
            }
        },
    };
    Ok(DownloadSelector {
        account_id,
        start,
        end,
        name,
        lang,
    })
}

fn parse_status_selector(selector: &Node) -> Result<StatusSelector, SoapFault> {
    let p = "selector";
    let a = AUDIT_NS;
    let kids = known_children(
        selector,
        p,
        &[
            (a, "accountId"),
            (a, "auditLogJobIds"),
            (a, "auditLogJobStatuses"),
            (a, "paging"),
        ],
    )?;
    let account_id = simple(required(&kids, p, "accountId")?, "selector/accountId")?.to_string();
    let mut ids: Vec<u64> = Vec::new();
    let mut statuses: Vec<JobStatus> = Vec::new();
    for (local, node) in &kids {
        match *local {
            "auditLogJobIds" => {
                let id = parse_positive(node, "selector/auditLogJobIds")?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            "auditLogJobStatuses" => {
                let v = simple(node, "selector/auditLogJobStatuses")?;
                let s = JobStatus::parse(v).ok_or_else(|| {
                    SoapFault::param(format!(
                        "selector/auditLogJobStatuses must be IN_PROGRESS, COMPLETED or SYSTEM_ERROR, got {}",
                        shown(v)
                    ))
                })?;
                statuses.push(s);
            }
            _ => {}
        }
    }
    let (mut start_index, mut number_results) = (1, None);
    if let Some(paging) = single(&kids, p, "paging")? {
        let pp = "selector/paging";
        let c = COMMON_NS;
        let paging_kids = known_children(paging, pp, &[(c, "startIndex"), (c, "numberResults")])?;
        if let Some(n) = single(&paging_kids, pp, "startIndex")? {
            start_index = parse_positive(n, "selector/paging/startIndex")? as usize;
        }
        if let Some(n) = single(&paging_kids, pp, "numberResults")? {
            number_results = Some(parse_positive(n, "selector/paging/numberResults")? as usize);
        }
    }
    Ok(StatusSelector {
        account_id,
        ids,
        statuses,
        start_index,
        number_results,
    })
}

fn parse_credentials(header: Option<&Node>) -> Result<Credentials, SoapFault> {
    let request_header = header
        .and_then(|h| h.children.iter().find(|c| c.is(AUDIT_NS, "RequestHeader")))
        .ok_or_else(|| {
            SoapFault::auth(format!(
                "the SOAP Header must hold a RequestHeader in namespace {AUDIT_NS}"
            ))
        })?;
    let field = |local: &str| -> Result<String, SoapFault> {
        let named: Vec<&Node> = request_header.children.iter().filter(|c| c.local == local).collect();
        let in_ns: Vec<&Node> = named
            .iter()
            .copied()
            .filter(|c| c.ns.as_deref() == Some(COMMON_NS))
            .collect();
        match (in_ns.as_slice(), named.first()) {
            ([n], _) => Ok(trimmed(n).to_string()),
            ([], Some(other)) => Err(SoapFault::auth(format!(
                "RequestHeader/{local} must be in namespace {COMMON_NS}, found {}",
                other.clark()
            ))),
            ([], None) => Err(SoapFault::auth(format!(
                "RequestHeader/{local} (namespace {COMMON_NS}) is missing"
            ))),
            _ => Err(SoapFault::auth(format!(
                "RequestHeader/{local} is given more than once"
            ))),
        }
    };
    Ok(Credentials {
        license: field("license")?,
        api_account_id: field("apiAccountId")?,
        password: field("apiAccountPassword")?,
    })
}

/// Reads a request body into its credentials and operation; the operation's own fault is kept apart so
/// that the caller can check the credentials first. Pure: no state is touched.
pub(crate) fn parse_request(body: &[u8]) -> Result<(Credentials, Result<Operation, SoapFault>), SoapFault> {
    let text =
        std::str::from_utf8(body).map_err(|e| SoapFault::request(format!("the request body is not UTF-8: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = parse_tree(text).map_err(SoapFault::request)?;
    if root.is(SOAP12_NS, "Envelope") {
        return Err(SoapFault {
            faultcode: "VersionMismatch",
            code: "INVALID_REQUEST",
            message: format!("this service speaks SOAP 1.1: the Envelope must be in namespace {SOAP_NS}"),
        });
    }
    if !root.is(SOAP_NS, "Envelope") {
        return Err(SoapFault::request(format!(
            "the root element must be {{{SOAP_NS}}}Envelope, found {}",
            root.clark()
        )));
    }
    let count = |local: &str| root.children.iter().filter(|c| c.is(SOAP_NS, local)).count();
    if count("Header") > 1 || count("Body") != 1 {
        return Err(SoapFault::request(
            "the Envelope must hold at most one Header and exactly one Body",
        ));
    }
    let header = root.children.iter().find(|c| c.is(SOAP_NS, "Header"));
    let body = root
        .children
        .iter()
        .find(|c| c.is(SOAP_NS, "Body"))
        .ok_or_else(|| SoapFault::request("the Envelope has no Body"))?;
    let credentials = parse_credentials(header)?;
    Ok((credentials, parse_operation(body)))
}

fn parse_operation(body: &Node) -> Result<Operation, SoapFault> {
    let [op] = body.children.as_slice() else {
        return Err(SoapFault::request(format!(
            "the Body must hold exactly one operation element, found {}",
            body.children.len()
        )));
    };
    let known = ["getDownload", "getDownloadStatus"];
    if op.ns.as_deref() != Some(AUDIT_NS) || !known.contains(&op.local.as_str()) {
        let hint = if known.contains(&op.local.as_str()) {
            format!(" ({} must be in namespace {AUDIT_NS})", op.local)
        } else {
            String::new()
        };
        return Err(SoapFault::request(format!(
            "unknown operation {}{hint}; this service offers getDownload and getDownloadStatus",
            op.clark()
        )));
    }
    let selectors: Vec<&Node> = op.children.iter().filter(|c| c.local == "selector").collect();
    let selector = match (selectors.as_slice(), op.children.len()) {
        ([s], 1) if s.ns.as_deref() == Some(AUDIT_NS) => *s,
        ([s], 1) => {
            return Err(SoapFault::param(format!(
                "{}/selector must be in namespace {AUDIT_NS}, found {}",
                op.local,
                s.clark()
            )));
        }
        _ => {
            return Err(SoapFault::param(format!(
                "{} must hold exactly one selector and nothing else",
                op.local
            )));
        }
    };
    Ok(if op.local == "getDownload" {
        Operation::GetDownload(parse_download_selector(selector)?)
    } else {
        Operation::GetDownloadStatus(parse_status_selector(selector)?)
    })
}

// ---------------------------------------------------------------------------------------------------------
// Writing responses with varying prefixes
// ---------------------------------------------------------------------------------------------------------

/// The two vendor namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    /// `http://im.yahooapis.jp/V201812/AuditLog`
    Audit,
    /// `http://im.yahooapis.jp/V201812`
    Common,
}

impl Ns {
    fn uri(self) -> &'static str {
        match self {
            Ns::Audit => AUDIT_NS,
            Ns::Common => COMMON_NS,
        }
    }
}

/// How the vendor namespaces are written inside the header or the body: a prefix each (declared at the
/// scope's first element, or on the envelope), or unprefixed under a default namespace.
#[derive(Debug, Clone, Copy)]
struct Scope {
    audit: Option<&'static str>,
    common: Option<&'static str>,
    /// The default namespace declared on the scope's first element (when that element is unprefixed,
    /// its own namespace wins).
    default: Option<Ns>,
}

impl Scope {
    fn prefix(&self, ns: Ns) -> Option<&'static str> {
        match ns {
            Ns::Audit => self.audit,
            Ns::Common => self.common,
        }
    }
}

/// One way of writing a response's prefixes.
#[derive(Debug, Clone, Copy)]
struct Style {
    env: &'static str,
    /// Vendor prefixes are declared on the `Envelope` rather than on each scope's first element.
    on_envelope: bool,
    pretty: bool,
    header: Scope,
    body: Scope,
}

static STYLES: [Style; 4] = [
    // The seed's own response.
    Style {
        env: "SOAP-ENV",
        on_envelope: false,
        pretty: true,
        header: Scope {
            audit: None,
            common: Some("ns2"),
            default: Some(Ns::Audit),
        },
        body: Scope {
            audit: Some("ns2"),
            common: None,
            default: Some(Ns::Common),
        },
    },
    // The two namespaces swapped.
    Style {
        env: "soapenv",
        on_envelope: false,
        pretty: true,
        header: Scope {
            audit: Some("ns2"),
            common: None,
            default: Some(Ns::Common),
        },
        body: Scope {
            audit: None,
            common: Some("ns2"),
            default: Some(Ns::Audit),
        },
    },
    // Every prefix on the envelope, no default namespace, no whitespace.
    Style {
        env: "S",
        on_envelope: true,
        pretty: false,
        header: Scope {
            audit: Some("ns2"),
            common: Some("ns1"),
            default: None,
        },
        body: Scope {
            audit: Some("ns2"),
            common: Some("ns1"),
            default: None,
        },
    },
    // No prefixes at all: default namespaces redeclared wherever the namespace changes.
    Style {
        env: "env",
        on_envelope: false,
        pretty: true,
        header: Scope {
            audit: None,
            common: None,
            default: Some(Ns::Audit),
        },
        body: Scope {
            audit: None,
            common: None,
            default: Some(Ns::Audit),
        },
    },
];

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// Writes vendor elements inside one scope, declaring namespaces so that every element lands in its
/// namespace whatever the prefixes: an unprefixed element redeclares the default when it differs.
struct Writer<'a> {
    out: &'a mut String,
    scope: Scope,
    declare_prefixes: bool,
    pretty: bool,
    base_depth: usize,
    /// Open elements: qualified name, the default namespace inside, whether a child was written.
    stack: Vec<(String, Option<Ns>, bool)>,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut String, style: &Style, scope: Scope, base_depth: usize) -> Self {
        Self {
            out,
            scope,
            declare_prefixes: !style.on_envelope,
            pretty: style.pretty,
            base_depth,
            stack: Vec::new(),
        }
    }

    fn indent(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.base_depth + self.stack.len() {
                self.out.push_str("  ");
            }
        }
    }

    fn start(&mut self, ns: Ns, local: &str) -> String {
        if let Some(top) = self.stack.last_mut() {
            top.2 = true;
        }
        self.indent();
        let mut decls = String::new();
        let mut default = self.stack.last().and_then(|(_, d, _)| *d);
        let prefix = self.scope.prefix(ns);
        if self.stack.is_empty() {
            let wanted = if prefix.is_none() { Some(ns) } else { self.scope.default };
            if let Some(d) = wanted {
                let _ = write!(decls, " xmlns=\"{}\"", d.uri());
                default = Some(d);
            }
            if self.declare_prefixes {
                for n in [Ns::Audit, Ns::Common] {
                    if let Some(p) = self.scope.prefix(n) {
                        let _ = write!(decls, " xmlns:{p}=\"{}\"", n.uri());
                    }
                }
            }
        }
        let qname = match prefix {
            Some(p) => format!("{p}:{local}"),
            None => {
                if default != Some(ns) {
                    let _ = write!(decls, " xmlns=\"{}\"", ns.uri());
                    default = Some(ns);
                }
                local.to_string()
            }
        };
        let _ = write!(self.out, "<{qname}{decls}>");
        self.stack.push((qname.clone(), default, false));
        qname
    }

    fn open(&mut self, ns: Ns, local: &str) {
        self.start(ns, local);
    }

    fn close(&mut self) {
        if let Some((qname, _, had_children)) = self.stack.pop() {
            if had_children && self.pretty {
                self.out.push('\n');
                for _ in 0..self.base_depth + self.stack.len() {
                    self.out.push_str("  ");
                }
            }
            let _ = write!(self.out, "</{qname}>");
        }
    }

    fn leaf(&mut self, ns: Ns, local: &str, text: &str) {
        self.start(ns, local);
        escape_into(self.out, text);
        self.close();
    }
}

fn envelope_open(out: &mut String, style: &Style) {
    let env = style.env;
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(out, "<{env}:Envelope xmlns:{env}=\"{SOAP_NS}\"");
    if style.on_envelope {
        for n in [Ns::Audit, Ns::Common] {
            if let Some(p) = style.body.prefix(n) {
                let _ = write!(out, " xmlns:{p}=\"{}\"", n.uri());
            }
        }
    }
    out.push('>');
}

fn nl(out: &mut String, style: &Style, depth: usize) {
    if style.pretty {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum JobStatus {
    InProgress,
    Completed,
    SystemError,
}

impl JobStatus {
    fn word(self) -> &'static str {
        match self {
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Completed => "COMPLETED",
            JobStatus::SystemError => "SYSTEM_ERROR",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "IN_PROGRESS" => Some(JobStatus::InProgress),
            "COMPLETED" => Some(JobStatus::Completed),
            "SYSTEM_ERROR" => Some(JobStatus::SystemError),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Job {
    id: u64,
    name: Option<String>,
    user_name: String,
    start: NaiveDate,
    end: NaiveDate,
    lang: Lang,
    created: DateTime<Utc>,
    ended: Option<DateTime<Utc>>,
    polls: u32,
    progress: u32,
    fails: bool,
    status: JobStatus,
}

impl Job {
    /// One poll: the job moves on, and finishes at the `needed`th.
    fn poll(&mut self, needed: u32, now: DateTime<Utc>) {
        self.polls = self.polls.saturating_add(1);
        if self.status != JobStatus::InProgress {
            return;
        }
        if self.polls >= needed {
            self.ended = Some(now);
            if self.fails {
                self.status = JobStatus::SystemError;
            } else {
                self.status = JobStatus::Completed;
                self.progress = 100;
            }
        } else {
            self.progress = (u64::from(self.polls) * 100 / u64::from(needed)).clamp(1, 99) as u32;
        }
    }
}

#[derive(Debug)]
struct Jobs {
    list: Vec<Job>,
    next_id: u64,
    rng: SplitMix64,
}

#[derive(Debug)]
struct Tokens {
    by_token: HashMap<String, (u64, Instant)>,
    order: VecDeque<String>,
    minted: u64,
}

#[derive(Debug, Serialize)]
struct JobView {
    id: u64,
    name: Option<String>,
    status: JobStatus,
    start_date: String,
    end_date: String,
    polls: u32,
}

#[derive(Debug, Serialize)]
struct JobsView {
    created: u64,
    status_polls: u64,
    downloads: u64,
    expired: u64,
    jobs: Vec<JobView>,
}

// ---------------------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------------------

/// The audit-log options of `SimArgs`, validated.
#[derive(Debug, Clone)]
pub(crate) struct AuditConfig {
    pub(crate) license: String,
    pub(crate) api_account_id: String,
    pub(crate) api_account_password: String,
    pub(crate) account_id: String,
    pub(crate) job_polls: u32,
    pub(crate) system_error_first: bool,
    pub(crate) url_ttl_secs: u64,
    pub(crate) rows_per_day: u32,
}

impl AuditConfig {
    pub(crate) fn from_args(args: &SimArgs) -> Self {
        Self {
            license: args.audit_license.clone(),
            api_account_id: args.audit_api_account_id.clone(),
            api_account_password: args.audit_api_account_password.clone(),
            account_id: args.audit_account_id.clone(),
            job_polls: args.audit_job_polls,
            system_error_first: args.audit_system_error_first,
            url_ttl_secs: args.audit_url_ttl,
            rows_per_day: args.audit_rows_per_day,
        }
    }

    /// Checks what a client could otherwise never satisfy; the message names the option.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let xml_text = |s: &str| !s.is_empty() && s == s.trim() && !s.chars().any(char::is_control);
        for (flag, value) in [
            ("--audit-license", &self.license),
            ("--audit-api-account-id", &self.api_account_id),
            ("--audit-api-account-password", &self.api_account_password),
            ("--audit-account-id", &self.account_id),
        ] {
            if !xml_text(value) {
                return Err(format!(
                    "{flag} must be non-empty, without surrounding spaces or control characters (values are trimmed when read)"
                ));
            }
        }
        if self.job_polls == 0 {
            return Err("--audit-job-polls must be at least 1".into());
        }
        if self.url_ttl_secs == 0 {
            return Err("--audit-url-ttl must be at least 1 second".into());
        }
        if self.rows_per_day > MAX_ROWS_PER_DAY {
            return Err(format!("--audit-rows-per-day must be at most {MAX_ROWS_PER_DAY}"));
        }
        Ok(())
    }
}

/// The API's state.
pub(crate) struct AuditLog {
    shared: Arc<Shared>,
    config: AuditConfig,
    addr: SocketAddr,
    jobs: Mutex<Jobs>,
    tokens: Mutex<Tokens>,
    cache: DayCache<NaiveDate, Vec<AuditRecord>>,
    responses: AtomicU64,
    created: AtomicU64,
    status_polls: AtomicU64,
    downloads: AtomicU64,
    expired: AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("account_id", &self.config.account_id)
            .field("credentials", &"***")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A `Host` header fit to put in a URL, or the bound address.
fn url_host(headers: &HeaderMap, addr: SocketAddr) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'))
        })
        .map_or_else(|| addr.to_string(), str::to_string)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// One entry of a status page.
enum Entry {
    Job(Job, Option<String>),
    Missing(u64),
}

impl AuditLog {
    pub(crate) fn new(shared: Arc<Shared>, config: AuditConfig, addr: SocketAddr) -> Self {
        let mut rng = SplitMix64::new(mix(shared.seed ^ JOB_SALT, 0));
        let next_id = 19_000_000 + rng.below(1_000_000);
        Self {
            shared,
            config,
            addr,
            jobs: Mutex::new(Jobs {
                list: Vec::new(),
                next_id,
                rng,
            }),
            tokens: Mutex::new(Tokens {
                by_token: HashMap::new(),
                order: VecDeque::new(),
                minted: 0,
            }),
            cache: DayCache::new(CACHED_DATES),
            responses: AtomicU64::new(0),
            created: AtomicU64::new(0),
            status_polls: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    pub(crate) fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(SERVICE_PATH, any(handle_soap))
            .route("/auditLogDownload/V201812/download/{token}", any(handle_download))
            .route(JOBS_PATH, get(jobs_view))
            .with_state(self)
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next response's prefix style: the seed's first, then round the cycle.
    fn next_style(&self) -> &'static Style {
        let n = self.responses.fetch_add(1, Ordering::Relaxed);
        &STYLES[(n % STYLES.len() as u64) as usize]
    }

    fn mint(&self, job_id: u64, host: &str) -> String {
        let mut tokens = self.tokens();
        tokens.minted += 1;
        let mut rng = SplitMix64::new(mix(self.shared.seed ^ TOKEN_SALT, tokens.minted) ^ job_id);
        let token: String = (0..TOKEN_LEN).map(|_| BASE62[rng.below(62) as usize] as char).collect();
        let expires = Instant::now() + Duration::from_secs(self.config.url_ttl_secs);
        if tokens.order.len() >= MAX_TOKENS
            && let Some(old) = tokens.order.pop_front()
        {
            tokens.by_token.remove(&old);
        }
        tokens.order.push_back(token.clone());
        tokens.by_token.insert(token.clone(), (job_id, expires));
        format!("http://{host}{DOWNLOAD_PREFIX}{token}")
    }

    /// Answers one SOAP request: the response envelope, or the fault to send.
    fn answer(&self, body: &[u8], host: &str, style: &Style, started: Instant) -> Result<String, SoapFault> {
        let (credentials, operation) = parse_request(body)?;
        let c = &self.config;
        if credentials.license != c.license
            || credentials.api_account_id != c.api_account_id
            || credentials.password != c.api_account_password
        {
            return Err(SoapFault::auth(
                "authentication failed: license, apiAccountId or apiAccountPassword is not valid",
            ));
        }
        let operation = operation?;
        let account_id = match &operation {
            Operation::GetDownload(s) => &s.account_id,
            Operation::GetDownloadStatus(s) => &s.account_id,
        };
        if *account_id != c.account_id {
            return Err(SoapFault::client(
                "ACCOUNT_NOT_PERMITTED",
                format!(
                    "selector/accountId {} is not an account this API account may use",
                    shown(account_id)
                ),
            ));
        }
        let now = Utc::now();
        let mut out = String::with_capacity(4096);
        envelope_open(&mut out, style);
        let env = style.env;
        nl(&mut out, style, 1);
        let _ = write!(out, "<{env}:Header>");
        {
            let mut w = Writer::new(&mut out, style, style.header, 2);
            w.open(Ns::Audit, "ResponseHeader");
            w.leaf(Ns::Common, "service", "AuditLog");
            w.leaf(Ns::Common, "requestTime", &now.timestamp_millis().to_string());
            let taken = format!("{:.4}", started.elapsed().as_secs_f64().max(0.0001));
            w.leaf(Ns::Common, "timeTakenSeconds", &taken);
            w.close();
        }
        nl(&mut out, style, 1);
        let _ = write!(out, "</{env}:Header>");
        nl(&mut out, style, 1);
        let _ = write!(out, "<{env}:Body>");
        {
            let mut w = Writer::new(&mut out, style, style.body, 2);
            w.open(Ns::Audit, &format!("{}Response", operation.name()));
            w.open(Ns::Audit, "rval");
            match operation {
                Operation::GetDownload(s) => {
                    let job = self.create_job(s, &credentials.api_account_id, now);
                    write_value(&mut w, &Entry::Job(job, None), &c.account_id);
                }
                Operation::GetDownloadStatus(s) => {
                    let entries = self.status_page(&s, host, now);
                    w.leaf(Ns::Common, "totalNumEntries", &entries.0.to_string());
                    w.leaf(Ns::Common, "Page.Type", "AuditLogPage");
                    for e in &entries.1 {
                        write_value(&mut w, e, &c.account_id);
                    }
                }
            }
            w.close();
            w.close();
        }
        nl(&mut out, style, 1);
        let _ = write!(out, "</{env}:Body>");
        nl(&mut out, style, 0);
        let _ = writeln!(out, "</{env}:Envelope>");
        Ok(out)
    }

    fn create_job(&self, s: DownloadSelector, user: &str, now: DateTime<Utc>) -> Job {
        let mut jobs = self.jobs();
        let id = jobs.next_id;
        let step = 1 + jobs.rng.below(5);
        jobs.next_id += step;
        let first = jobs.list.is_empty();
        let named_failure = s.name.as_deref().is_some_and(|n| n.contains("SYSTEM_ERROR"));
        let job = Job {
            id,
            name: s.name,
            user_name: user.to_string(),
            start: s.start,
            end: s.end,
            lang: s.lang,
            created: now,
            ended: None,
            polls: 0,
            progress: 0,
            fails: named_failure || (first && self.config.system_error_first),
            status: JobStatus::InProgress,
        };
        jobs.list.push(job.clone());
        self.created.fetch_add(1, Ordering::Relaxed);
        tracing::info!(api = "audit-log", job = id, start = %job.start, end = %job.end, fails = job.fails, "job created");
        job
    }

    /// Polls the selected jobs and returns `(totalNumEntries, the page's entries)`.
    fn status_page(&self, s: &StatusSelector, host: &str, now: DateTime<Utc>) -> (usize, Vec<Entry>) {
        let needed = self.config.job_polls;
        let selected: Vec<Result<Job, u64>> = {
            let mut jobs = self.jobs();
            if s.ids.is_empty() {
                jobs.list
                    .iter_mut()
                    .map(|j| {
                        j.poll(needed, now);
                        Ok(j.clone())
                    })
                    .collect()
            } else {
                s.ids
                    .iter()
                    .map(|&id| match jobs.list.iter_mut().find(|j| j.id == id) {
                        Some(j) => {
                            j.poll(needed, now);
                            Ok(j.clone())
                        }
                        None => Err(id),
                    })
                    .collect()
            }
        };
        self.status_polls.fetch_add(1, Ordering::Relaxed);
        let kept: Vec<Result<Job, u64>> = selected
            .into_iter()
            .filter(|e| match e {
                Ok(j) => s.statuses.is_empty() || s.statuses.contains(&j.status),
                Err(_) => true,
            })
            .collect();
        let total = kept.len();
        let page = kept
            .into_iter()
            .skip(s.start_index - 1)
            .take(s.number_results.unwrap_or(usize::MAX))
            .map(|e| match e {
                Ok(j) if j.status == JobStatus::Completed => {
                    let url = self.mint(j.id, host);
                    Entry::Job(j, Some(url))
                }
                Ok(j) => Entry::Job(j, None),
                Err(id) => Entry::Missing(id),
            })
            .collect();
        (total, page)
    }

    /// The CSV of a job, whole.
    fn export(&self, job: &Job) -> Bytes {
        let header = match job.lang {
            Lang::Ja => HEADER_JA,
            Lang::En => HEADER_EN,
        };
        let mut out = String::with_capacity(64 * 1024);
        out.push('\u{feff}');
        out.push_str(&header.join(","));
        let cutoff = job.created.timestamp();
        let mut date = job.start;
        while date <= job.end {
            if local_midnight(date) > cutoff {
                break;
            }
            let records = self
                .cache
                .get_or_make(date, || generate_date(self.shared.seed, date, self.config.rows_per_day));
            for r in records.iter().filter(|r| r.at <= cutoff) {
                out.push_str("\r\n");
                push_record(&mut out, r, &self.config.account_id);
            }
            match date.checked_add_days(Days::new(1)) {
                Some(d) => date = d,
                None => break,
            }
        }
        // Whether the last record ends with CRLF varies by job; RFC 4180 allows both.
        if job.id.is_multiple_of(2) {
            out.push_str("\r\n");
        }
        Bytes::from(out)
    }
}

fn write_value(w: &mut Writer<'_>, entry: &Entry, account_id: &str) {
    w.open(Ns::Audit, "values");
    match entry {
        Entry::Job(job, url) => {
            w.leaf(Ns::Common, "operationSucceeded", "true");
            w.open(Ns::Audit, "auditLogJob");
            w.leaf(Ns::Audit, "accountId", account_id);
            w.leaf(Ns::Audit, "auditLogJobId", &job.id.to_string());
            if let Some(name) = &job.name {
                w.leaf(Ns::Audit, "auditLogJobName", name);
            }
            w.leaf(Ns::Audit, "auditLogJobUserName", &job.user_name);
            w.leaf(Ns::Audit, "auditLogJobStartDate", &local_compact(job.created));
            if let Some(ended) = job.ended {
                w.leaf(Ns::Audit, "auditLogJobEndDate", &local_compact(ended));
            }
            w.leaf(Ns::Audit, "auditLogJobStatus", job.status.word());
            w.leaf(Ns::Audit, "progress", &job.progress.to_string());
            if let Some(url) = url {
                w.leaf(Ns::Audit, "downloadAuditLogDownloadUrl", url);
            }
            w.close();
        }
        Entry::Missing(id) => {
            w.leaf(Ns::Common, "operationSucceeded", "false");
            w.open(Ns::Common, "errors");
            w.leaf(Ns::Common, "code", "JOB_NOT_FOUND");
            w.leaf(Ns::Common, "message", &format!("auditLogJobId {id} does not exist"));
            w.open(Ns::Common, "details");
            w.leaf(Ns::Common, "requestKey", "auditLogJobIds");
            w.leaf(Ns::Common, "requestValue", &id.to_string());
            w.close();
            w.close();
        }
    }
    w.close();
}

/// A SOAP 1.1 fault envelope (no header; `faultcode`, `faultstring`, `detail` unqualified).
fn render_fault(fault: &SoapFault, style: &Style) -> String {
    let env = style.env;
    let mut out = String::with_capacity(1024);
    envelope_open(&mut out, style);
    nl(&mut out, style, 1);
    let _ = write!(out, "<{env}:Body>");
    nl(&mut out, style, 2);
    let _ = write!(out, "<{env}:Fault>");
    nl(&mut out, style, 3);
    let _ = write!(out, "<faultcode>{env}:{}</faultcode>", fault.faultcode);
    nl(&mut out, style, 3);
    out.push_str("<faultstring>");
    escape_into(&mut out, &fault.message);
    out.push_str("</faultstring>");
    nl(&mut out, style, 3);
    out.push_str("<detail>");
    {
        let mut w = Writer::new(&mut out, style, style.body, 4);
        w.open(Ns::Common, "ApiExceptionFault");
        w.leaf(Ns::Common, "code", fault.code);
        w.leaf(Ns::Common, "message", &fault.message);
        w.close();
    }
    nl(&mut out, style, 3);
    out.push_str("</detail>");
    nl(&mut out, style, 2);
    let _ = write!(out, "</{env}:Fault>");
    nl(&mut out, style, 1);
    let _ = write!(out, "</{env}:Body>");
    nl(&mut out, style, 0);
    let _ = writeln!(out, "</{env}:Envelope>");
    out
}

fn xml_response(status: StatusCode, body: Body) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    resp
}

fn text_response(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, format!("{message}\n")).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What a proxy in front of the service sends: HTML, not SOAP.
fn gateway_error(status: StatusCode, retry_after: Option<String>) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<html><head><title>{} {reason}</title></head><body><h1>{reason}</h1></body></html>\n",
        status.as_u16()
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Draws this request's fault: `Err` is the refusal to send at once, `Ok(true)` a connection to drop.
async fn draw_fault(api: &AuditLog, what: &str) -> Result<bool, Response> {
    let Some(fault) = api.shared.faults.pick() else {
        return Ok(false);
    };
    api.shared.stats.audit_log.faults.fetch_add(1, Ordering::Relaxed);
    tracing::info!(api = "audit-log", what, fault = fault.name(), "injecting a fault");
    match fault {
        Fault::InternalError => Err(gateway_error(StatusCode::INTERNAL_SERVER_ERROR, None)),
        Fault::Unavailable { retry_after } => Err(gateway_error(
            StatusCode::SERVICE_UNAVAILABLE,
            retry_after.then(|| "1".to_string()),
        )),
        // The seed documents no 429: a throttling gateway answers 503 with the same Retry-After forms.
        Fault::TooManyRequests { retry_after } => Err(gateway_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(retry_after.header_value()),
        )),
        Fault::DropConnection => Ok(true),
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Ok(false)
        }
    }
}

async fn handle_soap(State(api): State<Arc<AuditLog>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let stats = &api.shared.stats.audit_log;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (_, counter) = api.shared.next_request_id();
    let drop_connection = match draw_fault(&api, "soap").await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let style = api.next_style();
    if method != Method::POST {
        let fault = SoapFault::request(format!("{method} is not allowed; SOAP requests are POSTed"));
        let mut resp = xml_response(StatusCode::METHOD_NOT_ALLOWED, Body::from(render_fault(&fault, style)));
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !essence.ends_with("/xml") && !essence.ends_with("+xml") {
        return text_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type must be text/xml for SOAP 1.1, got {}",
                shown(content_type)
            ),
        );
    }
    let host = url_host(&headers, api.addr);
    match api.answer(&body, &host, style, started) {
        Ok(xml) if drop_connection => xml_response(StatusCode::OK, truncated_body(Bytes::from(xml))),
        Ok(xml) => {
            stats.data_requests.fetch_add(1, Ordering::Relaxed);
            xml_response(StatusCode::OK, crate::chunked_body(Bytes::from(xml), counter))
        }
        Err(fault) => {
            tracing::info!(api = "audit-log", code = fault.code, message = %fault.message, "SOAP fault");
            let xml = Bytes::from(render_fault(&fault, style));
            let body = if drop_connection {
                truncated_body(xml)
            } else {
                Body::from(xml)
            };
            xml_response(StatusCode::INTERNAL_SERVER_ERROR, body)
        }
    }
}

async fn handle_download(State(api): State<Arc<AuditLog>>, method: Method, Path(token): Path<String>) -> Response {
    let stats = &api.shared.stats.audit_log;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if method != Method::GET && method != Method::HEAD {
        let mut resp = text_response(StatusCode::METHOD_NOT_ALLOWED, "download URLs are read with GET");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let found = api.tokens().by_token.get(&token).copied();
    let Some((job_id, expires)) = found else {
        return text_response(StatusCode::NOT_FOUND, "no such download");
    };
    if Instant::now() >= expires {
        api.expired.fetch_add(1, Ordering::Relaxed);
        return text_response(
            StatusCode::GONE,
            "this download URL has expired; call getDownloadStatus for a fresh one",
        );
    }
    let Some(job) = api.jobs().list.iter().find(|j| j.id == job_id).cloned() else {
        return text_response(StatusCode::NOT_FOUND, "no such download");
    };
    let csv_response = |body: Body| {
        let mut resp = (StatusCode::OK, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=UTF-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"auditlog_{job_id}.csv\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        resp
    };
    if method == Method::HEAD {
        return csv_response(Body::empty());
    }
    let drop_connection = match draw_fault(&api, "download").await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let worker = api.clone();
    let csv = match tokio::task::spawn_blocking(move || worker.export(&job)).await {
        Ok(csv) => csv,
        Err(e) => {
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("building the export failed: {e}"),
            );
        }
    };
    if drop_connection {
        return csv_response(truncated_body(csv));
    }
    api.downloads.fetch_add(1, Ordering::Relaxed);
    stats.data_requests.fetch_add(1, Ordering::Relaxed);
    tracing::info!(api = "audit-log", job = job_id, bytes = csv.len(), "export served");
    csv_response(crate::chunked_body(csv, job_id))
}

async fn jobs_view(State(api): State<Arc<AuditLog>>) -> axum::Json<JobsView> {
    let jobs = api
        .jobs()
        .list
        .iter()
        .map(|j| JobView {
            id: j.id,
            name: j.name.clone(),
            status: j.status,
            start_date: j.start.format("%Y%m%d").to_string(),
            end_date: j.end.format("%Y%m%d").to_string(),
            polls: j.polls,
        })
        .collect();
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    axum::Json(JobsView {
        created: g(&api.created),
        status_polls: g(&api.status_polls),
        downloads: g(&api.downloads),
        expired: g(&api.expired),
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    /// The whole request, credentials and operation, or its first fault.
    fn parse_request(body: &[u8]) -> Result<(Credentials, Operation), SoapFault> {
        let (credentials, operation) = super::parse_request(body)?;
        Ok((credentials, operation?))
    }

    #[test]
    fn a_date_is_a_pure_function_of_seed_and_date() {
        let d = date("2026-03-14");
        assert_eq!(generate_date(1, d, 200), generate_date(1, d, 200));
        assert_ne!(generate_date(1, d, 200), generate_date(2, d, 200));
        assert_ne!(generate_date(1, d, 200), generate_date(1, date("2026-03-15"), 200));
    }

    #[test]
    fn dates_have_the_promised_shape() {
        let start = date("2026-01-01");
        let mut empty = 0;
        let mut last_id = 0;
        let mut total = 0usize;
        let mut repeats = 0usize;
        for i in 0..100 {
            let d = start + Days::new(i);
            let records = generate_date(5, d, 300);
            if records.is_empty() {
                empty += 1;
                continue;
            }
            assert!((150..=450).contains(&records.len()), "{d}: {}", records.len());
            let midnight = local_midnight(d);
            let secs: Vec<i64> = records.iter().map(|r| r.at - midnight).collect();
            for must in [0, 86_399, 32_399, 32_400] {
                assert!(secs.contains(&must), "{d}: no record at local second {must}");
            }
            assert!(
                secs.iter().all(|s| (0..86_400).contains(s)),
                "{d}: a record outside its date"
            );
            assert!(secs.windows(2).all(|w| w[0] <= w[1]), "{d}: out of time order");
            assert!(
                secs.windows(2).any(|w| w[0] == w[1]),
                "{d}: no two records share a second"
            );
            for r in &records {
                assert!(r.operation_id > last_id, "ids must increase across dates");
                last_id = r.operation_id;
            }
            let content = |r: &AuditRecord| (r.operator, r.operation, r.target_name.clone(), r.before.clone());
            repeats += records.windows(2).filter(|w| content(&w[0]) == content(&w[1])).count();
            total += records.len();
        }
        assert!(
            (1..=10).contains(&empty),
            "{empty} empty dates of 100, expected about 4"
        );
        assert!(repeats * 200 > total, "repeated content too rare: {repeats} of {total}");
    }

    #[test]
    fn records_cover_the_awkward_values() {
        let records: Vec<AuditRecord> = (0..10)
            .flat_map(|i| generate_date(3, date("2026-02-01") + Days::new(i), 300))
            .collect();
        let any = |f: &dyn Fn(&AuditRecord) -> bool, what: &str| {
            assert!(records.iter().any(f), "no record with {what}");
        };
        any(&|r| r.target_id.is_none(), "an empty target id");
        any(&|r| r.target_id.is_some_and(|t| t > 1 << 53), "a target id above 2^53");
        any(&|r| r.target_name.is_empty(), "an empty target name");
        any(
            &|r| r.changed_item.is_empty() && r.operation == "ADD",
            "an empty changed item",
        );
        any(&|r| r.before.is_empty(), "an empty before");
        any(&|r| r.after.is_empty(), "an empty after");
        any(&|r| r.before.contains('\n') || r.after.contains('\n'), "a line feed");
        any(&|r| r.before.contains("\r\n") || r.after.contains("\r\n"), "a CRLF");
        any(
            &|r| r.after.ends_with('\n') || r.before.ends_with('\n'),
            "a value ending in a line break",
        );
        any(&|r| r.target_name.contains(','), "a comma");
        any(&|r| r.target_name.contains('"'), "a quote");
        any(
            &|r| r.operator.contains(',') || r.operator.contains('"'),
            "an operator that needs quotes",
        );
        any(&|r| r.target_name.ends_with(' '), "a trailing space");
        any(&|r| r.ip.contains(':'), "IPv6");
        any(&|r| r.ip.starts_with("::ffff:"), "an IPv4-mapped IPv6 address");
        any(
            &|r| r.operation == "UPLOAD",
            "an operation beyond the documented examples",
        );
        for r in &records {
            let parsed: std::net::IpAddr = r.ip.parse().expect("IP parses");
            assert_eq!(parsed.to_string(), r.ip, "not canonical");
            assert!(r.target_name != "-" && r.before != "-" && r.after != "-", "{r:?}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = String::new();
        for v in [
            "plain",
            "日本語 テキスト",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r\nlf",
            "",
            "trailing ",
        ] {
            push_field(&mut out, v);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|日本語 テキスト|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\r\nlf\"||trailing |"
        );
    }

    #[test]
    fn operation_dates_carry_the_account_offset() {
        let midnight = local_midnight(date("2025-11-17"));
        assert_eq!(local_iso(midnight), "2025-11-17T00:00:00+09:00");
        assert_eq!(local_iso(midnight + 86_399), "2025-11-17T23:59:59+09:00");
        assert_eq!(
            DateTime::from_timestamp(midnight, 0).expect("time").to_rfc3339(),
            "2025-11-16T15:00:00+00:00"
        );
    }

    #[test]
    fn the_truth_day_spans_two_local_dates() {
        let day = date("2026-02-10");
        let t = day_truth(4, 300, "100000001", day);
        let start = day_number(day) * 86_400;
        let mut rows = 0;
        let mut sum = 0u64;
        for d in [day, day + Days::new(1)] {
            for r in generate_date(4, d, 300) {
                if (start..start + 86_400).contains(&r.at) {
                    rows += 1;
                    sum = sum.wrapping_add(fnv1a64(canonical(&r, "100000001").as_bytes()));
                }
            }
        }
        assert_eq!(t.rows, rows);
        assert_eq!(t.fingerprint, format!("{sum:016x}"));
        assert_eq!(t.per_operation.values().sum::<u64>(), rows);
    }

    #[test]
    fn the_canonical_text_follows_the_contract() {
        let r = AuditRecord {
            operation_id: 42,
            at: 1_700_000_000,
            operator: "O'Brien, Pat",
            tool: "WEB",
            operation: "LOGIN",
            target_type: "ACCOUNT",
            target_id: None,
            target_name: String::new(),
            changed_item: "",
            before: String::new(),
            after: "a\r\nb".to_string(),
            affected_count: 0,
            ip: "2001:db8::1".to_string(),
        };
        assert_eq!(
            canonical(&r, "100000001"),
            "42\u{1f}1700000000000000\u{1f}100000001\u{1f}O'Brien, Pat\u{1f}WEB\u{1f}LOGIN\u{1f}ACCOUNT\u{1f}-\u{1f}-\u{1f}-\u{1f}-\u{1f}a\r\nb\u{1f}0\u{1f}2001:db8::1"
        );
    }

    const SEED_REQUEST: &str = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
  <SOAP-ENV:Header>
    <RequestHeader xmlns="http://im.yahooapis.jp/V201812/AuditLog" xmlns:ns2="http://im.yahooapis.jp/V201812">
      <ns2:license>1111-1111-1111-1111</ns2:license>
      <ns2:apiAccountId>2222-2222-2222-2222</ns2:apiAccountId>
      <ns2:apiAccountPassword>pass&amp;word</ns2:apiAccountPassword>
    </RequestHeader>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <getDownload xmlns="http://im.yahooapis.jp/V201812/AuditLog">
      <selector>
        <accountId>100000001</accountId>
        <dateRange>
          <startDate>20180305</startDate>
          <endDate>20180306</endDate>
        </dateRange>
        <auditLogJob>
          <auditLogJobName><![CDATA[test <job>]]> &#x65E5;</auditLogJobName>
        </auditLogJob>
        <lang>EN</lang>
      </selector>
    </getDownload>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#;

    #[test]
    fn the_seed_request_parses() {
        let (c, op) = parse_request(SEED_REQUEST.as_bytes()).expect("the seed's sample is valid");
        assert_eq!(c.license, "1111-1111-1111-1111");
        assert_eq!(c.password, "pass&word");
        let Operation::GetDownload(s) = op else {
            panic!("getDownload expected")
        };
        assert_eq!(s.account_id, "100000001");
        assert_eq!((s.start, s.end), (date("2018-03-05"), date("2018-03-06")));
        assert_eq!(s.name.as_deref(), Some("test <job> 日"));
        assert_eq!(s.lang, Lang::En);
    }

    #[test]
    fn prefixes_do_not_matter_but_namespaces_do() {
        let renamed = SEED_REQUEST
            .replace("SOAP-ENV", "s")
            .replace("ns2", "c")
            .replace("<getDownload xmlns=", "<a:getDownload xmlns:a=")
            .replace("</getDownload>", "</a:getDownload>");
        assert!(
            parse_request(renamed.as_bytes()).is_err(),
            "selector now has no namespace"
        );
        let renamed = renamed
            .replace("<selector>", "<a:selector>")
            .replace("</selector>", "</a:selector>");
        let err = parse_request(renamed.as_bytes()).expect_err("children still unqualified");
        assert!(
            err.message.contains("selector/accountId must be in namespace"),
            "{err:?}"
        );
        let wrong_ns = SEED_REQUEST
            .replace("<ns2:license>", "<license>")
            .replace("</ns2:license>", "</license>");
        let err = parse_request(wrong_ns.as_bytes()).expect_err("license in the wrong namespace");
        assert_eq!(err.code, "AUTHENTICATION_FAILED");
        assert!(
            err.message.contains("RequestHeader/license must be in namespace"),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_requests_are_named() {
        for (from, to, needle) in [
            (
                "<startDate>20180305",
                "<startDate>2018-03-05",
                "selector/dateRange/startDate",
            ),
            ("<endDate>20180306", "<endDate>20180230", "selector/dateRange/endDate"),
            ("<endDate>20180306", "<endDate>20180304", "earlier than startDate"),
            ("<lang>EN", "<lang>FR", "selector/lang"),
            ("<lang>EN</lang>", "<lang>EN</lang><lang>JA</lang>", "more than once"),
            ("<lang>EN</lang>", "<language>EN</language>", "unknown element"),
            ("<accountId>100000001</accountId>", "", "selector/accountId is required"),
            ("getDownload", "getDownloads", "unknown operation"),
            ("</SOAP-ENV:Envelope>", "", "not well-formed"),
            (
                "http://schemas.xmlsoap.org/soap/envelope/",
                "http://www.w3.org/2003/05/soap-envelope",
                "SOAP 1.1",
            ),
        ] {
            let bad = SEED_REQUEST.replace(from, to);
            let err = parse_request(bad.as_bytes()).expect_err(needle);
            assert!(err.message.contains(needle), "{needle}: {err:?}");
        }
        let dtd = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{SEED_REQUEST}");
        assert!(parse_request(dtd.as_bytes()).expect_err("DTD").message.contains("DTD"));
    }

    #[test]
    fn status_selectors_parse_ids_statuses_and_paging() {
        let xml = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Header>
<h:RequestHeader xmlns:h="http://im.yahooapis.jp/V201812/AuditLog" xmlns:c="http://im.yahooapis.jp/V201812">
<c:license>l</c:license><c:apiAccountId>i</c:apiAccountId><c:apiAccountPassword>p</c:apiAccountPassword>
</h:RequestHeader></e:Header><e:Body>
<a:getDownloadStatus xmlns:a="http://im.yahooapis.jp/V201812/AuditLog" xmlns:c="http://im.yahooapis.jp/V201812">
<a:selector><a:accountId> 7 </a:accountId><a:auditLogJobIds>12</a:auditLogJobIds>
<a:auditLogJobIds>3</a:auditLogJobIds><a:auditLogJobIds>12</a:auditLogJobIds>
<a:auditLogJobStatuses>COMPLETED</a:auditLogJobStatuses>
<a:paging><c:startIndex>2</c:startIndex><c:numberResults>5</c:numberResults></a:paging>
</a:selector></a:getDownloadStatus></e:Body></e:Envelope>"#;
        let (_, op) = parse_request(xml.as_bytes()).expect("valid");
        assert_eq!(
            op,
            Operation::GetDownloadStatus(StatusSelector {
                account_id: "7".into(),
                ids: vec![12, 3],
                statuses: vec![JobStatus::Completed],
                start_index: 2,
                number_results: Some(5),
            })
        );
        let bad = xml.replace("<c:startIndex>2</c:startIndex>", "<a:startIndex>2</a:startIndex>");
        let err = parse_request(bad.as_bytes()).expect_err("startIndex in the wrong namespace");
        assert!(
            err.message.contains("selector/paging/startIndex must be in namespace"),
            "{err:?}"
        );
        let bad = xml.replace(">3<", ">x3<");
        assert!(
            parse_request(bad.as_bytes())
                .expect_err("id")
                .message
                .contains("selector/auditLogJobIds")
        );
        let bad = xml.replace("COMPLETED", "DONE");
        assert!(
            parse_request(bad.as_bytes())
                .expect_err("status")
                .message
                .contains("selector/auditLogJobStatuses")
        );
    }

    /// Every element of a written document, as `(namespace, local name, text)`, read back namespace-aware.
    fn flatten(node: &Node, out: &mut Vec<(Option<String>, String, String)>) {
        out.push((node.ns.clone(), node.local.clone(), trimmed(node).to_string()));
        for c in &node.children {
            flatten(c, out);
        }
    }

    #[test]
    fn every_style_writes_the_same_names_in_the_same_namespaces() {
        let mut seen = Vec::new();
        for style in &STYLES {
            let mut out = String::new();
            let mut w = Writer::new(&mut out, style, style.body, 0);
            w.open(Ns::Audit, "rval");
            w.leaf(Ns::Common, "totalNumEntries", "1");
            w.open(Ns::Audit, "values");
            w.leaf(Ns::Common, "operationSucceeded", "true");
            w.leaf(Ns::Audit, "auditLogJobName", "a <&> \"b\"\r\n");
            w.close();
            w.close();
            drop(w);
            let doc = if style.on_envelope {
                format!("<x xmlns:ns2=\"{AUDIT_NS}\" xmlns:ns1=\"{COMMON_NS}\">{out}</x>")
            } else {
                format!("<x>{out}</x>")
            };
            let tree = parse_tree(&doc).unwrap_or_else(|e| panic!("{}: {e}\n{doc}", style.env));
            let mut flat = Vec::new();
            flatten(&tree.children[0], &mut flat);
            seen.push(flat);
        }
        let a = Some(AUDIT_NS.to_string());
        let c = Some(COMMON_NS.to_string());
        assert_eq!(
            seen[0],
            vec![
                (a.clone(), "rval".into(), String::new()),
                (c.clone(), "totalNumEntries".into(), "1".into()),
                (a.clone(), "values".into(), String::new()),
                (c.clone(), "operationSucceeded".into(), "true".into()),
                (a.clone(), "auditLogJobName".into(), "a <&> \"b\"".into()),
            ]
        );
        assert!(seen.iter().all(|s| *s == seen[0]), "{seen:#?}");
    }

    #[test]
    fn options_are_validated() {
        let ok = AuditConfig {
            license: "l".into(),
            api_account_id: "i".into(),
            api_account_password: "p".into(),
            account_id: "1".into(),
            job_polls: 3,
            system_error_first: false,
            url_ttl_secs: 900,
            rows_per_day: 300,
        };
        assert!(ok.validate().is_ok());
        for (bad, needle) in [
            (
                AuditConfig {
                    job_polls: 0,
                    ..ok.clone()
                },
                "--audit-job-polls",
            ),
            (
                AuditConfig {
                    url_ttl_secs: 0,
                    ..ok.clone()
                },
                "--audit-url-ttl",
            ),
            (
                AuditConfig {
                    rows_per_day: MAX_ROWS_PER_DAY + 1,
                    ..ok.clone()
                },
                "--audit-rows-per-day",
            ),
            (
                AuditConfig {
                    license: " l".into(),
                    ..ok.clone()
                },
                "--audit-license",
            ),
            (
                AuditConfig {
                    account_id: String::new(),
                    ..ok.clone()
                },
                "--audit-account-id",
            ),
        ] {
            assert!(bad.validate().expect_err(needle).contains(needle));
        }
    }
}
