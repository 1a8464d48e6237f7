//! The mail delivery log API (`GetDeliveryLog`), simulated from its seed document.
//!
//! Everything here is read off `seeds/mail-delivery-log-api.txt` and the "Mail delivery log" section of
//! `FORMATS.md`, not off the client, so that a client that misreads the seed fails against it:
//!
//! - `POST` with a form-encoded body (`Action`, `Version`, `StartDate`, `EndDate`, `Status`, `MaxItems`,
//!   `NextToken`), authenticated by `X-Auth-Token`; a missing `Content-Type: application/x-www-form-urlencoded`
//!   means the parameters are not read at all (400), as in a servlet container.
//! - Windows are in whole minutes and the end minute is inclusive: `StartDate <= t < EndDate + 1 min`.
//!   `EndDate - StartDate` must be under 24 hours (so `00:00`..`23:59` is one whole day) and `StartDate`
//!   may not be earlier than 00:00 UTC of the day 90 days ago. Records after "now" do not exist yet.
//! - Pages hold at most `MaxItems` (default and maximum 10000) records in time order; a `NextToken`
//!   continues. Tokens are standard base64 that always contain `+`, `/` and `=` padding and are written
//!   wrapped every 76 characters, as in the seed's example, so a client must strip the line breaks and
//!   URL-encode the token: a raw `+` form-decodes to a space and the token is refused (400). A token
//!   presented with a different `StartDate`/`EndDate` gets HTTP 500, which the seed documents explicitly.
//! - Success bodies are streamed with chunked transfer encoding, split at arbitrary bytes.
//!
//! The data: each UTC day's records are a pure function of `(seed, day)` (see [`generate_day`]), with
//! awkward but legal content: XML-escaped `<`, `>`, `&`, `"` in the detail and addresses, `+`, `'` and
//! non-ASCII addresses, records at 00:00:00 and in 23:59, days without records, and byte-identical
//! duplicate lines that are distinct real events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;

use crate::Shared;
use crate::data::{DayCache, PageCache, SplitMix64, fnv1a64, mix};
use crate::faults::{Fault, RetryAfter};
use crate::script::{Api, Delivery, Scripted, announce_length, decode_params, gateway_page, with_retry_after};

/// Where the API is mounted; the client's base URL is `http://127.0.0.1:PORT/mail-delivery/`.
pub(crate) const PATH: &str = "/mail-delivery/";

/// The seed's page size limit (and default).
const MAX_ITEMS: u32 = 10_000;
/// How far back `StartDate` may reach, in days (to 00:00 UTC of that day).
const RETENTION_DAYS: u64 = 90;
/// Salt that separates this API's data stream from the other simulated APIs'.
const DATA_SALT: u64 = 0x6d61_696c_2d64_6c76;
/// How many generated days to keep for paging; a client walks a day's pages one after another.
const CACHED_DAYS: usize = 8;
/// Bytes of rendered page sections kept (see [`PageCache`]): a day of 150,000 records is about
/// 40 MB of XML.
const CACHED_SECTION_BYTES: usize = 128 << 20;

pub(crate) const FINGERPRINT_DEFINITION: &str =
    "wrapping u64 sum over records of FNV-1a-64 of the Log line text (unescaped, UTF-8), as 16 lowercase hex digits";

// ---------------------------------------------------------------------------------------------------------
// Data generation
// ---------------------------------------------------------------------------------------------------------

/// The seed's three delivery results, spelled as the vendor spells them (`faild`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Sent,
    Retry,
    Faild,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retry => "retry",
            Outcome::Faild => "faild",
        }
    }

    /// The `Status` request parameter's number for this result.
    fn status_param(self) -> u8 {
        match self {
            Outcome::Sent => 1,
            Outcome::Retry => 2,
            Outcome::Faild => 3,
        }
    }

    fn from_status_param(n: u8) -> Option<Self> {
        match n {
            1 => Some(Outcome::Sent),
            2 => Some(Outcome::Retry),
            3 => Some(Outcome::Faild),
            _ => None,
        }
    }
}

/// One `<Log>` record: its time (Unix seconds, UTC), its result, and the exact unescaped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub(crate) at: i64,
    pub(crate) outcome: Outcome,
    pub(crate) line: Box<str>,
}

/// All records of one UTC day, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayLog {
    pub(crate) day: NaiveDate,
    pub(crate) records: Vec<LogRecord>,
}

const SENDERS: &[&str] = &[
    "user@example.com",
    "noreply@shop.example.co.jp",
    "news+weekly@example.com",
    "o'brien+news@example.com",
    "müller@example.de",
    "用户@例え.jp",
    "info@example.jp",
];
const LOCALS: &[&str] = &[
    "allan",
    "bob",
    "carol.smith",
    "d'angelo",
    "müller",
    "josé",
    "用户",
    "たなか",
    "r&d",
    "info",
    "user",
];
const TAGS: &[&str] = &["+news", "+shop", "+2025", "+a.b"];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.co.jp",
    "example.de",
    "例え.jp",
    "mail.example.net",
];
const RETRY_CODES: &[u16] = &[421, 450, 451, 452];
const FAILD_CODES: &[u16] = &[550, 550, 550, 550, 551, 553, 554, 554, 601, 602, 701, 702];

fn unix_seconds(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default()
}

fn day_number(day: NaiveDate) -> i64 {
    unix_seconds(day).div_euclid(86_400)
}

/// Generates the records of one UTC day. A pure function of `(seed, day, mean_rows)`.
///
/// About 1 day in 12 has no records; the others have between 0.5x and 1.5x `mean_rows`, with at least one
/// at 00:00:00 and one within 23:59 (the minute a right-exclusive window would lose), and about 1% of
/// records repeat the previous line byte for byte.
pub(crate) fn generate_day(seed: u64, day: NaiveDate, mean_rows: u32) -> DayLog {
    let mut rng = SplitMix64::new(mix(seed ^ DATA_SALT, day_number(day) as u64));
    let empty_day = rng.below(12) == 0;
    let n = if empty_day || mean_rows == 0 {
        0
    } else {
        (f64::from(mean_rows) * (0.5 + rng.unit())).round() as usize
    };

    let mut secs: Vec<u32> = (0..n).map(|_| rng.below(86_400) as u32).collect();
    secs.sort_unstable();
    if n >= 2 {
        secs[0] = 0;
        let last = 86_340 + rng.below(60) as u32;
        secs[n - 1] = secs[n - 1].max(last);
    }
    if n >= 50 {
        secs[1] = 0;
        secs[n - 2] = secs[n - 2].max(86_340 + rng.below(60) as u32).min(secs[n - 1]);
    }

    let date = day.format("%Y-%m-%d").to_string();
    let base = unix_seconds(day);
    let mut records: Vec<LogRecord> = Vec::with_capacity(n);
    for (i, &sec) in secs.iter().enumerate() {
        // A duplicate: the same delivery attempt logged twice in one second. Never the last record, so
        // the day keeps its 23:59 record.
        if i > 0 && i + 1 < n && rng.chance(0.01) {
            let prev = records[i - 1].clone();
            records.push(prev);
            continue;
        }
        let roll = rng.unit();
        let (outcome, code) = if roll < 0.85 {
            (Outcome::Sent, 250)
        } else if roll < 0.95 {
            (Outcome::Retry, rng.pick(RETRY_CODES))
        } else {
            (Outcome::Faild, rng.pick(FAILD_CODES))
        };
        let mut line = String::with_capacity(192);
        let (h, m, s) = (sec / 3600, sec / 60 % 60, sec % 60);
        let host = 100 + rng.below(900);
        let txid = rng.below(10_000_000_000_000_000);
        let sender = rng.pick(SENDERS);
        let rcpt = recipient(&mut rng);
        let _ = write!(
            line,
            "{date} {h:02}:{m:02}:{s:02} {} {code} a{host}.example.jp.{txid:016} {sender} {rcpt} ",
            outcome.word()
        );
        write_detail(&mut line, &mut rng, code, &rcpt);
        records.push(LogRecord {
            at: base + i64::from(sec),
            outcome,
            line: line.into_boxed_str(),
        });
    }
    DayLog { day, records }
}

fn recipient(rng: &mut SplitMix64) -> String {
    let mut r = String::with_capacity(40);
    r.push_str(rng.pick(LOCALS));
    if rng.chance(0.3) {
        let _ = write!(r, "{}", rng.below(1000));
    }
    if rng.chance(0.15) {
        r.push_str(rng.pick(TAGS));
    }
    r.push('@');
    r.push_str(rng.pick(DOMAINS));
    r
}

/// The SMTP (or vendor 6xx/7xx) reply with spaces replaced by `_`, as the seed's example shows.
fn write_detail(line: &mut String, rng: &mut SplitMix64, code: u16, rcpt: &str) {
    let _ = match code {
        250 => match rng.below(4) {
            0 => write!(line, "250_ok:__Message_{}_accepted", 10_000_000 + rng.below(90_000_000)),
            1 => write!(
                line,
                "250_2.0.0_OK_{}_{:08x}_-_gsmtp",
                1_700_000_000 + rng.below(100_000_000),
                rng.below(1 << 32)
            ),
            2 => write!(line, "250_2.0.0_Ok:_queued_as_{:010X}", rng.below(1 << 40)),
            _ => write!(
                line,
                "250_2.6.0_<{:016x}@mail.example.com>_[InternalId={}]_Queued_mail_for_delivery",
                rng.next_u64(),
                rng.below(1_000_000_000)
            ),
        },
        421 => {
            if rng.chance(0.5) {
                write!(line, "421_\"try_again\"_&_later")
            } else {
                write!(line, "421_4.7.0_Try_again_later,_closing_connection.")
            }
        }
        450 => write!(line, "450_4.2.1_<{rcpt}>:_Mailbox_busy,_try_again_later"),
        451 => write!(
            line,
            "451_4.3.0_Temporary_lookup_failure_&_retry_in_{}_min",
            1 + rng.below(30)
        ),
        452 => write!(line, "452_4.2.2_Mailbox_full_&_over_quota"),
        550 => write!(line, "550_5.1.1_<{rcpt}>:_Recipient_address_rejected"),
        551 => write!(line, "551_5.1.6_User_not_local;_please_try_<forward@example.org>"),
        553 => write!(line, "553_5.1.3_\"{rcpt}\"_address_syntax_rejected"),
        554 => write!(line, "554_5.7.1_Message_rejected_&_blocked_by_policy"),
        601 => write!(line, "601_connection_refused_by_\"remote\"_host"),
        602 => write!(line, "602_dns_lookup_failed_for_<example.invalid>"),
        701 => write!(line, "701_message_expired_in_queue_after_{}_h", 24 + rng.below(48)),
        _ => write!(line, "{code}_size_limit_exceeded_(>_10MB)"),
    };
}

/// One day's entry of the ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DayTruth {
    pub(crate) rows: u64,
    pub(crate) sent: u64,
    pub(crate) retry: u64,
    pub(crate) faild: u64,
    pub(crate) fingerprint: u64,
}

impl DayTruth {
    pub(crate) fn add(&mut self, record: &LogRecord) {
        self.rows += 1;
        match record.outcome {
            Outcome::Sent => self.sent += 1,
            Outcome::Retry => self.retry += 1,
            Outcome::Faild => self.faild += 1,
        }
        self.fingerprint = self.fingerprint.wrapping_add(fnv1a64(record.line.as_bytes()));
    }

    pub(crate) fn of(records: &[LogRecord]) -> Self {
        let mut t = Self::default();
        records.iter().for_each(|r| t.add(r));
        t
    }
}

/// The JSON shape of one day of truth.
#[derive(Debug, Serialize)]
pub(crate) struct DayTruthJson {
    rows: u64,
    sent: u64,
    retry: u64,
    faild: u64,
    fingerprint: String,
}

/// The `mail_delivery` section of the truth file.
#[derive(Debug, Serialize)]
pub(crate) struct MailTruth {
    days: BTreeMap<String, DayTruthJson>,
    fingerprint_definition: &'static str,
}

/// Truth for every full day the API can serve: from 90 days before `today` through yesterday.
pub(crate) fn truth(seed: u64, mean_rows: u32, today: NaiveDate) -> MailTruth {
    let mut days = BTreeMap::new();
    for back in (1..=RETENTION_DAYS).rev() {
        let Some(day) = today.checked_sub_days(Days::new(back)) else {
            continue;
        };
        let t = DayTruth::of(&generate_day(seed, day, mean_rows).records);
        days.insert(
            day.format("%Y-%m-%d").to_string(),
            DayTruthJson {
                rows: t.rows,
                sent: t.sent,
                retry: t.retry,
                faild: t.faild,
                fingerprint: format!("{:016x}", t.fingerprint),
            },
        );
    }
    MailTruth {
        days,
        fingerprint_definition: FINGERPRINT_DEFINITION,
    }
}

// ---------------------------------------------------------------------------------------------------------
// NextToken
// ---------------------------------------------------------------------------------------------------------

/// The continuation state a `NextToken` carries. The encoded blob is 128 bytes:
///
/// ```text
/// 0..3 FB EF FF | 3 version | 4..12 start minute | 12..20 end minute | 20 status (0 = all)
/// 21..25 MaxItems | 25..33 offset | 33..64 label | 64..117 zero | 117..120 FB EF FF | 120..128 FNV-1a check
/// ```
///
/// `FB EF FF` at offsets divisible by 3 encode to `++//`, and 128 = 3 * 42 + 2 leaves one `=` of padding,
/// so every token exercises the characters a client must URL-encode and the padding it must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextToken {
    start_min: i64,
    end_min: i64,
    status: u8,
    max_items: u32,
    offset: u64,
}

const TOKEN_LEN: usize = 128;
const TOKEN_MAGIC: [u8; 3] = [0xFB, 0xEF, 0xFF];
const TOKEN_LABEL: &[u8; 31] = b"etl-sim:mail-delivery:NextToken";
const TOKEN_VERSION: u8 = 1;
/// Line length of the wrapped token in the XML, as in the seed's example.
const TOKEN_LINE: usize = 76;

impl NextToken {
    fn encode(&self) -> String {
        let mut b = [0u8; TOKEN_LEN];
        b[0..3].copy_from_slice(&TOKEN_MAGIC);
        b[3] = TOKEN_VERSION;
        b[4..12].copy_from_slice(&self.start_min.to_be_bytes());
        b[12..20].copy_from_slice(&self.end_min.to_be_bytes());
        b[20] = self.status;
        b[21..25].copy_from_slice(&self.max_items.to_be_bytes());
        b[25..33].copy_from_slice(&self.offset.to_be_bytes());
        b[33..64].copy_from_slice(TOKEN_LABEL);
        b[117..120].copy_from_slice(&TOKEN_MAGIC);
        let check = fnv1a64(&b[..120]);
        b[120..128].copy_from_slice(&check.to_be_bytes());
        STANDARD.encode(b)
    }

    /// Decodes a token as received (after form-decoding). The error says what is wrong with it.
    fn decode(token: &str) -> Result<Self, String> {
        if token.contains(['\r', '\n']) {
            return Err("NextToken contains line breaks; remove them before sending the token".into());
        }
        let b = STANDARD.decode(token).map_err(|e| {
            format!("NextToken is not valid base64 ({e}); send it URL-encoded, '+' as %2B, '/' as %2F, '=' as %3D")
        })?;
        let foreign = || "NextToken was not issued by this API (damaged or truncated?)".to_string();
        if b.len() != TOKEN_LEN || b[0..3] != TOKEN_MAGIC || b[117..120] != TOKEN_MAGIC || b[3] != TOKEN_VERSION {
            return Err(foreign());
        }
        let be8 = |r: std::ops::Range<usize>| -> [u8; 8] { b[r].try_into().unwrap_or_default() };
        if u64::from_be_bytes(be8(120..128)) != fnv1a64(&b[..120]) {
            return Err(foreign());
        }
        Ok(Self {
            start_min: i64::from_be_bytes(be8(4..12)),
            end_min: i64::from_be_bytes(be8(12..20)),
            status: b[20],
            max_items: u32::from_be_bytes(b[21..25].try_into().unwrap_or_default()),
            offset: u64::from_be_bytes(be8(25..33)),
        })
    }
}

/// Splits `s` (ASCII) into lines of `TOKEN_LINE` characters joined by `\n`.
fn wrap_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / TOKEN_LINE + 1);
    for (i, chunk) in s.as_bytes().chunks(TOKEN_LINE).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Requests and errors
// ---------------------------------------------------------------------------------------------------------

/// An error answer: HTTP status, `Type` (Sender = the client's fault, Receiver = the server's), `Code`,
/// and a `Message` that names the offending parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    receiver: bool,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            receiver: false,
            code: "InvalidParameterValue",
            message: message.into(),
        }
    }

    fn missing(param: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            receiver: false,
            code: "MissingParameter",
            message: format!("{param} is required"),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            receiver: true,
            code: "InternalError",
            message: message.into(),
        }
    }

    /// The error body an injected 429 or 5xx carries: `why` says who injected it.
    fn for_status(status: StatusCode, why: &str) -> Self {
        let (receiver, code, what) = match status {
            StatusCode::TOO_MANY_REQUESTS => (false, "Throttling", "rate exceeded"),
            StatusCode::SERVICE_UNAVAILABLE => (true, "ServiceUnavailable", "service unavailable"),
            _ => (true, "InternalError", "internal error"),
        };
        Self {
            status,
            receiver,
            code,
            message: format!("{why}: {what}"),
        }
    }
}

/// A validated `GetDeliveryLog` request. Times are Unix seconds; `end_excl` is one minute after `EndDate`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeliveryLogRequest {
    start: i64,
    end_excl: i64,
    status: Option<Outcome>,
    max_items: u32,
    next_token: Option<String>,
}

/// Shows a client-supplied value in an error message without letting it run on.
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(40).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// Parses `YYYY-MM-DDThh:mm` exactly (chrono alone would also take e.g. a 5-digit year or a sign).
fn parse_minute(name: &str, value: &str) -> Result<NaiveDateTime, ApiError> {
    let shape_ok = value.len() == 16
        && value.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 => c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(ApiError::invalid(format!(
            "{name} must be YYYY-MM-DDThh:mm (UTC), got {}",
            shown(value)
        )));
    }
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M").map_err(|e| {
        ApiError::invalid(format!(
            "{name} is not a valid date and time ({e}), got {}",
            shown(value)
        ))
    })
}

fn parse_request(body: &[u8], now: DateTime<Utc>) -> Result<DeliveryLogRequest, ApiError> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::invalid(format!("{k} is given more than once")));
        }
    }
    match params.get("Action").map(String::as_str) {
        None => return Err(ApiError::missing("Action")),
        Some("GetDeliveryLog") => {}
        Some(other) => {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                receiver: false,
                code: "InvalidAction",
                message: format!("Action {} is not supported; use GetDeliveryLog", shown(other)),
            });
        }
    }
    if let Some(v) = params.get("Version")
        && v != "v1.0"
    {
        return Err(ApiError::invalid(format!(
            "Version must be v1.0 when given, got {}",
            shown(v)
        )));
    }
    let start = parse_minute(
        "StartDate",
        params.get("StartDate").ok_or_else(|| ApiError::missing("StartDate"))?,
    )?;
    let end = parse_minute(
        "EndDate",
        params.get("EndDate").ok_or_else(|| ApiError::missing("EndDate"))?,
    )?;
    if end < start {
        return Err(ApiError::invalid("EndDate must not be earlier than StartDate"));
    }
    if (end - start).num_minutes() >= 24 * 60 {
        return Err(ApiError::invalid("EndDate must be less than 24 hours after StartDate"));
    }
    let earliest = now
        .date_naive()
        .checked_sub_days(Days::new(RETENTION_DAYS))
        .and_then(|d| d.and_hms_opt(0, 0, 0));
    if let Some(earliest) = earliest
        && start < earliest
    {
        return Err(ApiError::invalid(format!(
            "StartDate must not be earlier than {} (00:00 UTC {RETENTION_DAYS} days ago)",
            earliest.format("%Y-%m-%dT%H:%M")
        )));
    }
    let status = match params.get("Status").map(String::as_str) {
        None => None,
        Some("1") => Some(Outcome::Sent),
        Some("2") => Some(Outcome::Retry),
        Some("3") => Some(Outcome::Faild),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Status must be 1 (sent), 2 (retry) or 3 (faild), got {}",
                shown(other)
            )));
        }
    };
    let max_items = match params.get("MaxItems") {
        None => MAX_ITEMS,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_ITEMS).contains(&n) && v.bytes().all(|c| c.is_ascii_digit()) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "MaxItems must be an integer from 1 to 10000, got {}",
                    shown(v)
                )));
            }
        },
    };
    let start = start.and_utc().timestamp();
    Ok(DeliveryLogRequest {
        start,
        end_excl: end.and_utc().timestamp() + 60,
        status,
        max_items,
        next_token: params.remove("NextToken"),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------------------

/// Appends `text` with `<`, `>`, `&` and `"` escaped. Searched with `memchr` (`str::find` with
/// a set of chars was a tenth of all CPU, etl's and the simulator's, in a mail benchmark run,
/// where the simulator shares the cores with the client it serves; ~40 % of lines need escaping).
fn escape_into(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let after = |from: usize, found: Option<usize>| found.map(|i| from + i);
    let mut start = 0;
    let mut quote = memchr::memchr(b'"', bytes);
    loop {
        let other = after(start, memchr::memchr3(b'<', b'>', b'&', &bytes[start..]));
        let Some(i) = [other, quote].into_iter().flatten().min() else {
            break;
        };
        // The four are ASCII, so `i` and `i + 1` are char boundaries.
        out.push_str(&text[start..i]);
        out.push_str(match bytes[i] {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            _ => "&quot;",
        });
        start = i + 1;
        if quote == Some(i) {
            quote = after(start, memchr::memchr(b'"', &bytes[start..]));
        }
    }
    out.push_str(&text[start..]);
}

/// A page's body: the records and token of `section` (see [`render_section`]) in the response
/// envelope, which carries the request id.
fn render_page(section: &str, request_id: &str) -> String {
    const HEAD: &str =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetDeliveryLogResponse>\n  <GetDeliveryLogResult>\n";
    const TAIL: &str = "  </GetDeliveryLogResult>\n  <ResponseMetadata>\n    <RequestId>";
    let mut x = String::with_capacity(HEAD.len() + section.len() + TAIL.len() + request_id.len() + 64);
    x.push_str(HEAD);
    x.push_str(section);
    x.push_str(TAIL);
    x.push_str(request_id);
    x.push_str("</RequestId>\n  </ResponseMetadata>\n</GetDeliveryLogResponse>\n");
    x
}

/// The part of a page that depends on the records and the token only: `LogCount`, the `Log`
/// elements and the `NextToken`.
fn render_section(records: &[&LogRecord], token: Option<&str>) -> String {
    let mut x = String::with_capacity(256 + records.iter().map(|r| r.line.len() + 24).sum::<usize>());
    let _ = writeln!(x, "    <LogCount>{}</LogCount>", records.len());
    for r in records {
        x.push_str("    <Log>");
        escape_into(&mut x, &r.line);
        x.push_str("</Log>\n");
    }
    if let Some(token) = token {
        let _ = writeln!(x, "    <NextToken>{}</NextToken>", wrap_token(token));
    }
    x
}

fn render_error(err: &ApiError, request_id: &str) -> String {
    let mut x = String::with_capacity(512);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse>\n  <Error>\n    <Type>");
    x.push_str(if err.receiver { "Receiver" } else { "Sender" });
    x.push_str("</Type>\n    <Code>");
    x.push_str(err.code);
    x.push_str("</Code>\n    <Message>");
    escape_into(&mut x, &err.message);
    x.push_str("</Message>\n  </Error>\n  <RequestId>");
    x.push_str(request_id);
    x.push_str("</RequestId>\n</ErrorResponse>\n");
    x
}

fn xml_response(status: StatusCode, request_id: &str, body: Body) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-fj-request-id", v);
    }
    resp
}

fn error_response(err: &ApiError, request_id: &str) -> Response {
    xml_response(err.status, request_id, Body::from(render_error(err, request_id)))
}

// ---------------------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------------------

/// The API's state: its configuration and a small cache of generated days.
pub(crate) struct MailDelivery {
    shared: Arc<Shared>,
    token: String,
    mean_rows: u32,
    cache: DayCache<NaiveDate, DayLog>,
    /// Sections of pages of windows that were over when asked for, by (start, end, status,
    /// offset, max items): those pages are the same whenever they are asked for, but for the
    /// request id.
    sections: PageCache<(i64, i64, u8, u64, u32), Section>,
}

impl std::fmt::Debug for MailDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailDelivery")
            .field("token", &"***")
            .field("mean_rows", &self.mean_rows)
            .finish()
    }
}

/// A successful page, ready to send.
struct Page {
    body: Bytes,
    log_count: usize,
    more: bool,
}

impl MailDelivery {
    pub(crate) fn new(shared: Arc<Shared>, token: String, mean_rows: u32) -> Self {
        Self {
            shared,
            token,
            mean_rows,
            cache: DayCache::new(CACHED_DAYS),
            sections: PageCache::new(CACHED_SECTION_BYTES),
        }
    }

    pub(crate) fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(PATH, any(handle))
            .route(PATH.trim_end_matches('/'), any(handle))
            .with_state(self)
    }

    fn day(&self, day: NaiveDate) -> Arc<DayLog> {
        self.cache
            .get_or_make(day, || generate_day(self.shared.seed, day, self.mean_rows))
    }

    /// Validates the request and builds the page, or says why not. Runs on a blocking thread: a page of
    /// 10000 records is real CPU work.
    fn answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
        request_id: &str,
    ) -> Result<Page, ApiError> {
        if method != Method::POST {
            return Err(ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                receiver: false,
                code: "MethodNotAllowed",
                message: format!("{method} is not allowed; GetDeliveryLog is a POST"),
            });
        }
        let unauthorized = |message: &str| ApiError {
            status: StatusCode::UNAUTHORIZED,
            receiver: false,
            code: "AuthFailure",
            message: message.into(),
        };
        match headers.get("x-auth-token") {
            None => return Err(unauthorized("X-Auth-Token header is missing")),
            Some(v) if v.as_bytes() != self.token.as_bytes() => {
                return Err(unauthorized("X-Auth-Token is not valid"));
            }
            Some(_) => {}
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError::invalid(format!(
                "Content-Type must be application/x-www-form-urlencoded, got {}",
                shown(content_type)
            )));
        }

        let req = parse_request(body, now)?;
        let (start_min, end_min) = (req.start / 60, req.end_excl / 60 - 1);
        let status_param = req.status.map_or(0, Outcome::status_param);
        let offset = match &req.next_token {
            None => 0,
            Some(raw) => {
                let token = NextToken::decode(raw).map_err(ApiError::invalid)?;
                if token.start_min != start_min || token.end_min != end_min {
                    return Err(ApiError::internal(
                        "StartDate/EndDate differ from those of the request that returned this NextToken",
                    ));
                }
                if token.status != status_param {
                    let was = Outcome::from_status_param(token.status)
                        .map_or("absent".to_string(), |o| format!("{} ({})", o.status_param(), o.word()));
                    return Err(ApiError::invalid(format!(
                        "Status differs from the request that returned this NextToken (it was {was})"
                    )));
                }
                token.offset
            }
        };

        let now_s = now.timestamp();
        let key = (req.start, req.end_excl, status_param, offset, req.max_items);
        let over = req.end_excl <= now_s;
        let section = match over.then(|| self.sections.get(&key)).flatten() {
            Some(section) => section,
            None => {
                let section = self.section(&req, status_param, offset, now_s);
                if over {
                    self.sections.insert(key, section.clone(), section.text.len());
                }
                section
            }
        };
        Ok(Page {
            body: Bytes::from(render_page(&section.text, request_id)),
            log_count: section.log_count,
            more: section.more,
        })
    }

    /// The records from `offset` on that `req` selects at `now_s`, and the token to the next ones.
    fn section(&self, req: &DeliveryLogRequest, status_param: u8, offset: u64, now_s: i64) -> Section {
        let (start_min, end_min) = (req.start / 60, req.end_excl / 60 - 1);
        let first_day = DateTime::from_timestamp(req.start, 0).map(|t| t.date_naive());
        let last_day = DateTime::from_timestamp(req.end_excl - 1, 0).map(|t| t.date_naive());
        let mut days: Vec<Arc<DayLog>> = Vec::with_capacity(2);
        if let (Some(first), Some(last)) = (first_day, last_day) {
            // The 24-hour rule means at most two days.
            days.push(self.day(first));
            if last != first {
                days.push(self.day(last));
            }
        }
        let matching: Vec<&LogRecord> = days
            .iter()
            .flat_map(|d| d.records.iter())
            .filter(|r| r.at >= req.start && r.at < req.end_excl && r.at <= now_s)
            .filter(|r| req.status.is_none_or(|s| r.outcome == s))
            .collect();
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(matching.len());
        let to = from.saturating_add(req.max_items as usize).min(matching.len());
        let more = to < matching.len();
        let token = more.then(|| {
            NextToken {
                start_min,
                end_min,
                status: status_param,
                max_items: req.max_items,
                offset: to as u64,
            }
            .encode()
        });
        let page = &matching[from..to];
        Section {
            text: Arc::from(render_section(page, token.as_deref())),
            log_count: page.len(),
            more,
        }
    }
}

/// The request-independent part of a page (see [`render_section`]).
#[derive(Debug, Clone)]
struct Section {
    text: Arc<str>,
    log_count: usize,
    more: bool,
}

async fn handle(State(api): State<Arc<MailDelivery>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let arrival = api.shared.arrive(Api::MailDelivery, decode_params(&body));
    let (resp, fault) = respond(&api, method, headers, body, arrival.scripted.clone()).await;
    api.shared.answered(arrival, &resp, fault);
    resp
}

/// Answers one request, with the scripted fault if there is one, else perhaps a random one; returns
/// the response and the name of the fault injected.
async fn respond(
    api: &Arc<MailDelivery>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    scripted: Option<Scripted>,
) -> (Response, Option<String>) {
    let stats = &api.shared.stats.mail_delivery;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let (request_id, counter) = api.shared.next_request_id();
    let mut delivery = Delivery::Normal;
    let mut fault_name = None;
    if let Some(fault) = scripted {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        let name = fault.name();
        tracing::info!(api = "mail-delivery", %request_id, fault = %name, "injecting a scripted fault");
        match fault {
            Scripted::Status { status, retry_after } => {
                let resp = gateway_page(status)
                    .unwrap_or_else(|| error_response(&ApiError::for_status(status, "scripted fault"), &request_id));
                return (with_retry_after(resp, retry_after.as_ref()), Some(name));
            }
            Scripted::RejectToken => {
                let err = ApiError::invalid(
                    "NextToken is not valid: it has expired or was not issued for this StartDate/EndDate",
                );
                return (error_response(&err, &request_id), Some(name));
            }
            Scripted::Body(d) => delivery = d,
        }
        fault_name = Some(name);
    } else if let Some(fault) = api.shared.faults.pick() {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        tracing::info!(api = "mail-delivery", %request_id, fault = fault.name(), "injecting a fault");
        fault_name = Some(fault.name().to_string());
        match fault {
            Fault::InternalError => {
                let resp = error_response(&ApiError::internal("injected fault: internal error"), &request_id);
                return (resp, fault_name);
            }
            Fault::Unavailable { retry_after } => {
                let err = ApiError::for_status(StatusCode::SERVICE_UNAVAILABLE, "injected fault");
                let retry_after = retry_after.then_some(RetryAfter::Seconds(1));
                return (
                    with_retry_after(error_response(&err, &request_id), retry_after.as_ref()),
                    fault_name,
                );
            }
            Fault::TooManyRequests { retry_after } => {
                let err = ApiError::for_status(StatusCode::TOO_MANY_REQUESTS, "injected fault");
                return (
                    with_retry_after(error_response(&err, &request_id), Some(&retry_after)),
                    fault_name,
                );
            }
            Fault::DropConnection => delivery = Delivery::Reset,
            Fault::Slow(delay) => tokio::time::sleep(delay).await,
        }
    }

    let now = Utc::now();
    let worker = api.clone();
    let rid = request_id.clone();
    let answered = tokio::task::spawn_blocking(move || worker.answer(&method, &headers, &body, now, &rid))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("building the page failed: {e}"))));
    let (status, full) = match answered {
        Ok(page) => {
            if delivery == Delivery::Normal {
                stats.data_requests.fetch_add(1, Ordering::Relaxed);
                tracing::info!(api = "mail-delivery", %request_id, log_count = page.log_count, more = page.more, "page served");
            }
            (StatusCode::OK, page.body)
        }
        Err(err) if delivery == Delivery::Normal => {
            tracing::info!(api = "mail-delivery", %request_id, status = err.status.as_u16(), code = err.code, message = %err.message, "request refused");
            return (error_response(&err, &request_id), fault_name);
        }
        Err(err) => (err.status, Bytes::from(render_error(&err, &request_id))),
    };
    let (body, length) = delivery.body(full, counter);
    let mut resp = xml_response(status, &request_id, body);
    announce_length(&mut resp, length);
    (resp, fault_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn a_day_is_a_pure_function_of_seed_and_date() {
        let d = day("2026-03-14");
        assert_eq!(generate_day(1, d, 500), generate_day(1, d, 500));
        assert_ne!(generate_day(1, d, 500).records, generate_day(2, d, 500).records);
        assert_ne!(
            generate_day(1, d, 500).records,
            generate_day(1, day("2026-03-15"), 500).records
        );
    }

    #[test]
    fn days_have_the_promised_shape() {
        let mut empty = 0;
        let mut dups = 0;
        let mut total = 0;
        let mut outcomes = [0usize; 3];
        let start = day("2026-01-01");
        for i in 0..120 {
            let d = start + Days::new(i);
            let log = generate_day(9, d, 400);
            let n = log.records.len();
            if n == 0 {
                empty += 1;
                continue;
            }
            assert!((200..=600).contains(&n), "{d}: {n} records, expected 0.5x..1.5x of 400");
            let date = d.format("%Y-%m-%d").to_string();
            assert!(
                log.records.windows(2).all(|w| w[0].at <= w[1].at),
                "{d}: records out of time order"
            );
            assert!(
                log.records[0].line.starts_with(&format!("{date} 00:00:00 ")),
                "{d}: no 00:00:00 record"
            );
            assert!(
                log.records[n - 1].line.starts_with(&format!("{date} 23:59:")),
                "{d}: no 23:59 record"
            );
            dups += log.records.windows(2).filter(|w| w[0] == w[1]).count();
            total += n;
            for r in &log.records {
                let fields: Vec<&str> = r.line.split(' ').collect();
                assert_eq!(fields.len(), 8, "not eight fields: {}", r.line);
                assert_eq!(fields[0], date);
                assert_eq!(fields[2], r.outcome.word());
                let code: u16 = fields[3].parse().expect("numeric status");
                match r.outcome {
                    Outcome::Sent => assert_eq!(code, 250),
                    Outcome::Retry => assert!(RETRY_CODES.contains(&code)),
                    Outcome::Faild => assert!(FAILD_CODES.contains(&code)),
                }
                assert!(
                    fields[7].starts_with(fields[3]),
                    "detail does not start with the code: {}",
                    r.line
                );
                outcomes[r.outcome.status_param() as usize - 1] += 1;
            }
        }
        assert!(
            (4..=20).contains(&empty),
            "{empty} empty days out of 120, expected about 10"
        );
        let dup_rate = dups as f64 / total as f64;
        assert!((0.005..0.02).contains(&dup_rate), "duplicate rate {dup_rate}");
        let share = |i: usize| outcomes[i] as f64 / total as f64;
        assert!((0.82..0.88).contains(&share(0)), "sent share {}", share(0));
        assert!((0.08..0.12).contains(&share(1)), "retry share {}", share(1));
        assert!((0.035..0.065).contains(&share(2)), "faild share {}", share(2));
    }

    #[test]
    fn records_contain_characters_that_need_care() {
        let lines: Vec<String> = (0..10)
            .flat_map(|i| generate_day(1, day("2026-02-01") + Days::new(i), 300).records)
            .map(|r| r.line.into())
            .collect();
        for needle in ["<", ">", "&", "\"", "'", "+", "ü", "用户@例え.jp"] {
            assert!(
                lines.iter().any(|l| l.contains(needle)),
                "no record contains {needle:?}"
            );
        }
    }

    #[test]
    fn tokens_round_trip_and_always_contain_plus_slash_and_padding() {
        for (start_min, offset) in [(0, 1), (29_000_000, 10_000), (29_123_456, u64::MAX)] {
            let t = NextToken {
                start_min,
                end_min: start_min + 1439,
                status: 2,
                max_items: 100,
                offset,
            };
            let s = t.encode();
            assert!(s.contains('+') && s.contains('/') && s.ends_with('='), "{s}");
            assert!(s.len() > TOKEN_LINE, "token too short to be wrapped: {}", s.len());
            assert_eq!(NextToken::decode(&s), Ok(t));
            let wrapped = wrap_token(&s);
            assert!(wrapped.lines().all(|l| l.len() <= TOKEN_LINE));
            assert_eq!(wrapped.lines().next().map(str::len), Some(TOKEN_LINE));
            assert!(NextToken::decode(&wrapped).unwrap_err().contains("line breaks"));
            assert!(NextToken::decode(&s.replace('+', " ")).unwrap_err().contains("base64"));
        }
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let s = NextToken {
            start_min: 1,
            end_min: 2,
            status: 0,
            max_items: 5,
            offset: 5,
        }
        .encode();
        let mut bytes = STANDARD.decode(&s).expect("own token decodes");
        bytes[30] ^= 1;
        assert!(
            NextToken::decode(&STANDARD.encode(&bytes))
                .unwrap_err()
                .contains("not issued")
        );
        assert!(NextToken::decode("AAAA").unwrap_err().contains("not issued"));
    }

    #[test]
    fn escaping_covers_the_four_characters() {
        let mut out = String::new();
        escape_into(&mut out, "a<b>c&d\"e'f");
        assert_eq!(out, "a&lt;b&gt;c&amp;d&quot;e'f");
        // Next to multi-byte characters, at both ends, and nothing to escape at all.
        out.clear();
        escape_into(&mut out, "<日本&語\"é>");
        assert_eq!(out, "&lt;日本&amp;語&quot;é&gt;");
        out.clear();
        escape_into(&mut out, "plain ünïcode");
        assert_eq!(out, "plain ünïcode");
    }

    #[test]
    fn dates_are_parsed_strictly() {
        assert!(parse_minute("StartDate", "2026-01-02T03:04").is_ok());
        for bad in [
            "2026-01-02 03:04",
            "2026-01-02T03:04:05",
            "2026-1-02T03:04",
            "+2026-01-02T03:04",
            "2026-02-30T00:00",
        ] {
            let err = parse_minute("StartDate", bad).expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains("StartDate"), "{}", err.message);
        }
    }
}
