//! The mail tracking log API (`GET /api/v1/log/mailtrackinglog`), simulated from its seed document.
//!
//! Everything here is read off `seeds/mail-tracking-log-api.txt` and the "Mail tracking log" and "General"
//! sections of `FORMATS.md`, not off the client, so that a client that misreads the seed fails against it:
//!
//! - `GET` on the server root + `/api/v1/log/mailtrackinglog` (the client's `MAIL_TRACKING_URL` is
//!   `http://127.0.0.1:PORT`), authenticated by HTTP Basic with `--tracking-user` and `--tracking-api-key`.
//!   Errors are JSON, `{"code": "...", "message": "..."}`, with a message that names the parameter.
//! - Parameters: `type` (required, `accepted_traffic` or `blocked_traffic`), `domain`, `direction`
//!   (`in`/`out`), `start`, `end`, `limit`, `token`. Each may appear once; a parameter the seed does not
//!   list is refused (400), so a misspelt name fails loudly instead of being silently ignored.
//! - `domain` selects the domain the tenant manages: the recipient's domain for `in` records and the
//!   sender's domain for `out` records, compared case-insensitively. Records carry one of
//!   `example.com`, `example.net`, `example.jp`; any other domain is a valid query with no records.
//! - The window filters `genTime`, both bounds **inclusive** (`start <= genTime <= end`, millisecond
//!   precision), so a UTC day is `start=DT00:00:00.000Z&end=DT23:59:59.999Z`. Timestamps are exactly
//!   `yyyy-mm-ddThh:mm:ssZ` or `yyyy-mm-ddThh:mm:ss.mmmZ`. As the seed says: only `start` means
//!   `[start, start + 5 min]`, only `end` means `[end - 5 min, end]`, neither means `[now - 5 min, now]`.
//!   The (effective) start may not be earlier than 72 hours before the request, and `end - start` may not
//!   exceed 72 hours; `end` earlier than `start` is refused. Records later than "now" do not exist yet.
//! - `limit` defaults to 500; the maximum is [`MAX_LIMIT`] (5000). Records come in `genTime` order and
//!   `nextToken` appears only when more remain. The token is opaque standard base64 that always contains
//!   `+`, `/` and `==` padding (so a client must URL-encode it). It is bound to `type`, `domain`,
//!   `direction`, `start` and `end` as given (a different value, or one added or left out, is a 400) and
//!   carries the window resolved by the first request and that request's "now", so all pages of one
//!   query see one snapshot even when the window was a default relative to "now". The 72-hour rule is
//!   checked when a query starts, not on its continuations. `limit` may change between pages.
//! - With `Accept-Encoding: gzip` a successful page is gzip-compressed (`Content-Encoding: gzip`); error
//!   bodies are never compressed. Pages are streamed with chunked transfer encoding.
//!
//! The data: the records of a UTC day and a traffic type are a pure function of `(seed, day, type)` (see
//! [`generate_day`]), with the awkward but legal content a real service sends: absent fields omitted (never
//! `null`), empty lists sometimes `[]` and sometimes omitted, both `embeddedUrls` and the table's
//! `embeddedUrl`, times with and without milliseconds, subjects in Japanese, Cyrillic and emoji, with quotes,
//! backslashes, a literal `\u0041`, control characters and, for some records, every non-ASCII character
//! written as a `\uXXXX` escape (surrogate pairs for emoji), sizes above 2^31, ties in `genTime`, records
//! at 00:00:00.000 and 23:59:59.999, and about one record in 200 with a field the seed does not list.
//!
//! # Fingerprint contract
//! For each record, the canonical text is the following 20 fields joined by U+001F, in this order:
//! `genTime`, `timestamp`, `deliveryTime` (each as integer epoch microseconds in decimal, `-` when absent),
//! `sender`, `headerFrom`, `recipient`, `headerTo` (items joined by U+001E, `-` when absent or empty),
//! `subject`, `senderIP`, `deliveredTo`, `mailID`, `direction`, `messageID`, `size` (decimal), `action`,
//! `reason`, `attachments` (each item `fileName` U+001D `sha256`, items joined by U+001E, `-` when absent or
//! empty), `embeddedUrls` (whichever spelling the record used; items joined by U+001E, `-` when absent or
//! empty), `tlsInfo`, `details`; any absent string field is `-` (an empty string stays empty). The record
//! hash is FNV-1a-64 of the canonical text's UTF-8 bytes; a day's fingerprint is the wrapping u64 sum of its
//! records' hashes, printed as 16 lowercase hex digits. Fields the seed does not list are not part of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Days, NaiveDate, Timelike as _, Utc};
use serde::Serialize;

use crate::Shared;
use crate::data::{DayCache, PageCache, SplitMix64, fnv1a64, mix};
use crate::faults::{Fault, RetryAfter};
use crate::script::{Api, Delivery, Scripted, announce_length, decode_params, gateway_page, with_retry_after};

/// Where the API is mounted, on the server root.
pub(crate) const PATH: &str = "/api/v1/log/mailtrackinglog";

/// The seed's default page size.
const DEFAULT_LIMIT: u32 = 500;
/// The largest `limit` accepted (the seed names none; this one is documented in the crate docs).
pub(crate) const MAX_LIMIT: u32 = 5000;
/// How far back a request may reach, and the longest window: 72 hours.
pub(crate) const REACH_MS: i64 = 72 * 3_600_000;
/// The window used when `start` or `end` (or both) are not given: five minutes.
pub(crate) const DEFAULT_SPAN_MS: i64 = 5 * 60_000;
const DAY_MS: i64 = 86_400_000;
/// Salt that separates this API's data stream from the other simulated APIs'.
const DATA_SALT: u64 = 0x6d61_696c_2d74_726b;
/// Generated (day, type) pairs kept for paging: a 72-hour window touches four days of one type.
const CACHED_DAYS: usize = 12;
/// Bytes of rendered pages kept (see [`PageCache`]): a day of 30,000 records per type is about
/// 5 MB of gzip-compressed or 25 MB of plain pages.
const CACHED_PAGE_BYTES: usize = 128 << 20;
/// How many full days before today the truth file describes.
const TRUTH_DAYS: u64 = 3;

pub(crate) const FINGERPRINT_DEFINITION: &str = "per record, the canonical text is these 20 fields joined by U+001F: \
genTime, timestamp, deliveryTime (integer epoch microseconds in decimal, '-' when absent), sender, headerFrom, \
recipient, headerTo (items joined by U+001E, '-' when absent or empty), subject, senderIP, deliveredTo, mailID, \
direction, messageID, size (decimal), action, reason, attachments (items 'fileName U+001D sha256' joined by U+001E, \
'-' when absent or empty), embeddedUrls (either spelling; items joined by U+001E, '-' when absent or empty), \
tlsInfo, details; any absent string field is '-'. Record hash = FNV-1a-64 of the UTF-8 canonical text; \
fingerprint = wrapping u64 sum of the record hashes as 16 lowercase hex digits. Fields the seed does not list \
are not part of it. Each day's truth is of the whole UTC day; the API only serves genTime >= request time - 72 h, \
so the oldest listed day is only partly reachable.";

// ---------------------------------------------------------------------------------------------------------
// Data generation
// ---------------------------------------------------------------------------------------------------------

/// The seed's two traffic types (the `type` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Traffic {
    Accepted,
    Blocked,
}

impl Traffic {
    pub(crate) const ALL: [Traffic; 2] = [Traffic::Accepted, Traffic::Blocked];

    pub(crate) fn param(self) -> &'static str {
        match self {
            Traffic::Accepted => "accepted_traffic",
            Traffic::Blocked => "blocked_traffic",
        }
    }

    fn code(self) -> u8 {
        match self {
            Traffic::Accepted => 1,
            Traffic::Blocked => 2,
        }
    }

    fn from_param(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.param() == s)
    }
}

/// The `direction` of a record (and of the filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    In,
    Out,
}

impl Direction {
    pub(crate) fn word(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One entry of `attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attachment {
    pub(crate) file_name: String,
    pub(crate) sha256: String,
}

/// A field the seed does not list, as a growing real API adds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Extra {
    /// `"policyName": "..."`
    PolicyName(&'static str),
    /// `"spamScore": 3.5`, kept in tenths so records stay `Eq`.
    SpamScore(u16),
    /// `"quarantineInfo": {"folder": "...", "days": N}`: an object a decoder must skip whole.
    QuarantineInfo { folder: &'static str, days: u32 },
}

/// How a record is written: the JSON varies while the data stays the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    /// Times with `.mmm` (the values of a record without it are whole seconds).
    pub(crate) millis: bool,
    /// Empty lists written as `[]` (otherwise the key is omitted).
    pub(crate) empty_lists_as_brackets: bool,
    /// `embeddedUrl` (the seed's table) instead of `embeddedUrls` (the seed's example).
    pub(crate) singular_urls: bool,
    /// Every non-ASCII character as `\uXXXX`, and `/` as `\/`.
    pub(crate) ascii_only: bool,
    /// Keys in the seed table's order instead of the seed example's.
    pub(crate) table_order: bool,
}

/// One mail tracking log record. Times are Unix milliseconds, UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrackingRecord {
    pub(crate) gen_ms: i64,
    pub(crate) timestamp_ms: i64,
    pub(crate) delivery_ms: Option<i64>,
    pub(crate) sender: String,
    pub(crate) direction: Direction,
    pub(crate) message_id: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) size: u64,
    pub(crate) mail_id: String,
    pub(crate) recipient: String,
    pub(crate) action: &'static str,
    pub(crate) tls_info: Option<&'static str>,
    pub(crate) header_from: Option<String>,
    pub(crate) header_to: Vec<String>,
    pub(crate) sender_ip: String,
    pub(crate) delivered_to: Option<String>,
    pub(crate) attachments: Vec<Attachment>,
    pub(crate) embedded_urls: Vec<String>,
    pub(crate) details: Option<String>,
    pub(crate) reason: Option<&'static str>,
    /// The tenant's domain this record belongs to (recipient's for `in`, sender's for `out`).
    pub(crate) domain: &'static str,
    pub(crate) style: Style,
    pub(crate) extra: Option<Extra>,
}

/// All records of one UTC day and one traffic type, in `genTime` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrafficDay {
    pub(crate) day: NaiveDate,
    pub(crate) traffic: Traffic,
    pub(crate) records: Vec<TrackingRecord>,
}

/// The actions whose records carry `deliveryTime` (and, for accepted traffic, `details`).
pub(crate) const DELIVERY_ACTIONS: &[&str] = &["Delivered", "Bounced", "Expired", "Deferred"];

/// Domains the simulated tenant manages (what `domain` filters on).
pub(crate) const MANAGED_DOMAINS: &[&str] = &["example.com", "example.net", "example.jp"];
const EXTERNAL_DOMAINS: &[&str] = &[
    "partner.example.org",
    "mail.example.co.uk",
    "例え.jp",
    "shop.example.de",
    "EXAMPLE.ORG",
];
const LOCALS: &[&str] = &[
    "alice",
    "bob.smith",
    "o'brien",
    "first.last+news",
    "山田",
    "müller",
    "info",
    "noreply",
    "support",
    "a_b-c",
];
const SUBJECTS: &[&str] = &[
    "response sample",
    "Quarterly report",
    "Invoice #2024-0042 is ready",
    "会議の議事録（第3回）",
    "【重要】パスワード変更のお知らせ",
    "🎉 Sale ends tonight 🎉",
    "Thumbs up 👍🏽 from the team",
    "Re: \"quarterly\" numbers",
    "Path C:\\Users\\share\\report.xlsx",
    "literal \\u0041 is not an A",
    "tab\tseparated\tsubject",
    "Ünïcödé façade — naïve café",
    "zero\u{200b}width space",
    "bell\u{7}character",
    "Fwd: Re: Fwd: RE: meeting / lunch?",
    "{\"json\": \"in a subject\"}",
    "<script>alert('x')</script>",
    "Ответ: заказ № 17",
    "line one\r\nline two",
];
const FILE_NAMES: &[&str] = &[
    "test1.zip",
    "test2.zip",
    "請求書 2024.pdf",
    "report \"final\".docx",
    "photo.JPG",
    "a,b;c.txt",
    "résumé.pdf",
    "no_extension",
    "C:\\fakepath\\scan.tif",
];
const URLS: &[&str] = &[
    "http://example1.com",
    "http://example2.com",
    "https://www.example.org/path?q=1&lang=ja",
    "https://例え.jp/パス?x=%E3%81%82",
    "https://t.example.com/c/AbC123/",
    "http://198.51.100.7:8080/login.php",
];
const TLS_INFO: &[&str] = &[
    "upstreamTLS: TLS 1.2; downstreamTLS: TLS 1.2",
    "upstreamTLS: TLS 1.3; downstreamTLS: TLS 1.3",
    "upstreamTLS: TLS 1.2; downstreamTLS: None",
    "upstreamTLS: None; downstreamTLS: TLS 1.2",
];
const MTA_HOSTS: &[&str] = &["atl1s07mta2135.xt.local", "mx1.example.net", "mta-03.example.jp"];
const POLICY_NAMES: &[&str] = &["Default inbound policy", "Block executables", "日本語ポリシー"];
/// Why blocked traffic was blocked: (`reason`, `details`) for a connection-level block.
const CONNECTION_BLOCKS: &[(&str, &str)] = &[
    (
        "Email reputation",
        "Sender IP address is listed on the Email Reputation Services list",
    ),
    (
        "Sender authentication",
        "DMARC policy of the sender domain is reject (p=reject); SPF: fail",
    ),
    (
        "Recipient address",
        "550 5.1.1 Recipient address rejected: User unknown",
    ),
];
/// Why blocked traffic was blocked: (`reason`, `details`) for a content-level block.
const CONTENT_BLOCKS: &[(&str, &str)] = &[
    ("Spam", "Message identified as spam by the spam filter"),
    (
        "Phishing",
        "Message contains a URL rated \"Dangerous\" by Web Reputation",
    ),
    ("Malware", "Attachment matched malware pattern TROJ_GEN.R002C0DJ"),
    (
        "Attachment policy",
        "Attachment \"invoice.exe\" matched the blocked file type policy",
    ),
];

fn day_number(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default()
        .div_euclid(86_400)
}

fn date_of_day_number(n: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(n.checked_mul(86_400)?, 0).map(|t| t.date_naive())
}

fn uuid(rng: &mut SplitMix64) -> String {
    let (hi, lo) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0x0fff,
        8 | ((lo >> 62) & 0x3),
        (lo >> 48) & 0x0fff,
        lo & 0xffff_ffff_ffff
    )
}

fn address(rng: &mut SplitMix64, domain: &str) -> String {
    let mut a = String::with_capacity(40);
    a.push_str(rng.pick(LOCALS));
    if rng.chance(0.3) {
        let _ = write!(a, "{}", rng.below(1000));
    }
    a.push('@');
    a.push_str(domain);
    a
}

fn ip(rng: &mut SplitMix64) -> String {
    if rng.chance(0.1) {
        format!("2001:db8::{:x}", 1 + rng.below(0xffff))
    } else {
        let net = rng.pick(&["192.0.2", "198.51.100", "203.0.113"]);
        format!("{net}.{}", 1 + rng.below(254))
    }
}

/// Generates the records of one UTC day of one traffic type. A pure function of its arguments.
///
/// About 1 (day, type) in 12 has no records; the others have between 0.5x and 1.5x `mean_rows`, the first
/// at exactly 00:00:00 (written without milliseconds) and the last at 23:59:59.999; busier days add a second
/// record at 00:00:00.000. About 1% of records share the previous record's `genTime` and 0.3% repeat the
/// previous record byte for byte (two real events that look alike; never deduplicate).
pub(crate) fn generate_day(seed: u64, day: NaiveDate, traffic: Traffic, mean_rows: u32) -> TrafficDay {
    let mut rng = SplitMix64::new(mix(
        mix(seed ^ DATA_SALT, day_number(day) as u64),
        u64::from(traffic.code()),
    ));
    let empty_day = rng.below(12) == 0;
    let n = if empty_day || mean_rows == 0 {
        0
    } else {
        (f64::from(mean_rows) * (0.5 + rng.unit())).round() as usize
    };

    // (milliseconds into the day, written with milliseconds)
    let mut times: Vec<(i64, bool)> = (0..n)
        .map(|_| {
            if rng.chance(0.5) {
                (rng.below(DAY_MS as u64) as i64, true)
            } else {
                (rng.below(86_400) as i64 * 1000, false)
            }
        })
        .collect();
    times.sort_unstable();
    if n >= 2 {
        times[0] = (0, false);
        times[n - 1] = (DAY_MS - 1, true);
    }
    if n >= 50 {
        times[1] = (0, true);
    }

    let base = day_number(day) * DAY_MS;
    let mut records: Vec<TrackingRecord> = Vec::with_capacity(n);
    for (i, &(at, millis)) in times.iter().enumerate() {
        let inner = i > 1 && i + 1 < n;
        if inner && rng.chance(0.003) {
            let prev = records[i - 1].clone();
            records.push(prev);
            continue;
        }
        let (at, millis) = if inner && rng.chance(0.01) {
            let prev = &records[i - 1];
            (prev.gen_ms - base, prev.style.millis)
        } else {
            (at, millis)
        };
        records.push(generate_record(&mut rng, traffic, base + at, millis));
    }
    TrafficDay { day, traffic, records }
}

fn generate_record(rng: &mut SplitMix64, traffic: Traffic, gen_ms: i64, millis: bool) -> TrackingRecord {
    let jitter = |rng: &mut SplitMix64, max_s: u64| -> i64 {
        let s = (1 + rng.below(max_s)) as i64 * 1000;
        if millis { s + rng.below(1000) as i64 } else { s }
    };
    let timestamp_ms = gen_ms - jitter(rng, 9);
    let roll = rng.unit();
    let action = match traffic {
        Traffic::Accepted => match roll {
            r if r < 0.80 => "Delivered",
            r if r < 0.85 => "Deferred",
            r if r < 0.89 => "Bounced",
            r if r < 0.90 => "Expired",
            r if r < 0.96 => "Quarantined",
            _ => "Deleted",
        },
        Traffic::Blocked => match roll {
            r if r < 0.5 => "Blocked",
            r if r < 0.8 => "Quarantined",
            _ => "Deleted",
        },
    };
    let delivers = traffic == Traffic::Accepted && DELIVERY_ACTIONS.contains(&action);
    let delivery_ms = delivers.then(|| gen_ms + jitter(rng, 15));
    let connection_block = traffic == Traffic::Blocked && action == "Blocked";

    let direction = if rng.chance(0.7) { Direction::In } else { Direction::Out };
    let domain = rng.pick(MANAGED_DOMAINS);
    let external = rng.pick(EXTERNAL_DOMAINS);
    let (mut sender, recipient) = match direction {
        Direction::In => (address(rng, external), address(rng, domain)),
        Direction::Out => (address(rng, domain), address(rng, external)),
    };
    let sender_domain = sender.rsplit('@').next().unwrap_or_default().to_string();
    if direction == Direction::In && traffic == Traffic::Accepted && rng.chance(0.01) {
        // A bounce notification: the SMTP null sender `<>`.
        sender.clear();
    }

    let (header_from, header_to, subject, message_id, size) = if connection_block {
        (None, Vec::new(), None, None, 0)
    } else {
        let header_from = if rng.chance(0.7) && !sender.is_empty() {
            sender.clone()
        } else {
            format!("header_{}", address(rng, &sender_domain))
        };
        let header_to = if rng.chance(0.05) {
            Vec::new()
        } else {
            let count = 1 + rng.below(4);
            (0..count)
                .map(|k| {
                    if k == 0 && rng.chance(0.6) {
                        recipient.clone()
                    } else {
                        let d = rng.pick(MANAGED_DOMAINS);
                        address(rng, d)
                    }
                })
                .collect()
        };
        let subject_roll = rng.unit();
        let subject = if subject_roll < 0.02 {
            None
        } else if subject_roll < 0.03 {
            Some(String::new())
        } else if subject_roll < 0.035 {
            Some("A long subject line that goes on and on; ".repeat(8))
        } else {
            let mut s = rng.pick(SUBJECTS).to_string();
            if rng.chance(0.3) {
                let _ = write!(s, " #{}", rng.below(10_000));
            }
            Some(s)
        };
        let message_id = Some(format!("<{}@{}>", uuid(rng), rng.pick(MTA_HOSTS)));
        let size = if rng.chance(0.005) {
            (1u64 << 31) + 1 + rng.below(4_000_000_000)
        } else {
            (800.0 * (rng.unit() * 9.0).exp()) as u64
        };
        (Some(header_from), header_to, subject, message_id, size)
    };
    let mail_id = uuid(rng);
    let tls_info = if connection_block && rng.chance(0.5) {
        None
    } else {
        Some(rng.pick(TLS_INFO))
    };
    let sender_ip = ip(rng);
    let delivered_to = delivers.then(|| {
        if rng.chance(0.8) {
            ip(rng)
        } else {
            rng.pick(MTA_HOSTS).to_string()
        }
    });
    let attachments = if !connection_block && rng.chance(0.3) {
        (0..1 + rng.below(3))
            .map(|_| Attachment {
                file_name: rng.pick(FILE_NAMES).to_string(),
                sha256: format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64()
                ),
            })
            .collect()
    } else {
        Vec::new()
    };
    let embedded_urls = if !connection_block && rng.chance(0.6) {
        (0..1 + rng.below(3)).map(|_| rng.pick(URLS).to_string()).collect()
    } else {
        Vec::new()
    };
    let (details, reason) = match traffic {
        Traffic::Accepted => (delivers.then(|| accepted_details(rng, action, &recipient)), None),
        Traffic::Blocked => {
            let (reason, details) = rng.pick(if connection_block {
                CONNECTION_BLOCKS
            } else {
                CONTENT_BLOCKS
            });
            (Some(details.to_string()), Some(reason))
        }
    };
    let style = Style {
        millis,
        empty_lists_as_brackets: rng.chance(0.5),
        singular_urls: rng.chance(0.1),
        ascii_only: rng.chance(0.1),
        table_order: rng.chance(0.05),
    };
    let extra = rng.chance(0.005).then(|| match rng.below(3) {
        0 => Extra::PolicyName(rng.pick(POLICY_NAMES)),
        1 => Extra::SpamScore(rng.below(101) as u16),
        _ => Extra::QuarantineInfo {
            folder: "Spam",
            days: 7 + rng.below(24) as u32,
        },
    });
    TrackingRecord {
        gen_ms,
        timestamp_ms,
        delivery_ms,
        sender,
        direction,
        message_id,
        subject,
        size,
        mail_id,
        recipient,
        action,
        tls_info,
        header_from,
        header_to,
        sender_ip,
        delivered_to,
        attachments,
        embedded_urls,
        details,
        reason,
        domain,
        style,
        extra,
    }
}

/// The SMTP reply (or queue note) that explains an accepted message's action.
fn accepted_details(rng: &mut SplitMix64, action: &str, recipient: &str) -> String {
    match action {
        "Delivered" => match rng.below(3) {
            0 => format!("250 2.0.0 Ok: queued as {:010X}", rng.below(1 << 40)),
            1 => format!(
                "250 2.6.0 <{:016x}@mail.example.com> [InternalId={}] Queued mail for delivery",
                rng.next_u64(),
                rng.below(1_000_000_000)
            ),
            _ => format!("250 OK id={:x}", rng.next_u64()),
        },
        "Deferred" => match rng.below(3) {
            0 => "421 4.7.0 Try again later, closing connection.".to_string(),
            1 => format!("451 4.3.0 Temporary lookup failure; retry in {} min", 1 + rng.below(30)),
            _ => "452 4.2.2 Mailbox full & over quota".to_string(),
        },
        "Bounced" => {
            if rng.chance(0.5) {
                format!("550 5.1.1 <{recipient}>: Recipient address rejected: User unknown")
            } else {
                "554 5.7.1 Message rejected \"policy\"".to_string()
            }
        }
        _ => format!(
            "Message expired after {} hours in the delivery queue",
            24 + rng.below(97)
        ),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Fingerprint and truth
// ---------------------------------------------------------------------------------------------------------

/// The record's canonical text of the fingerprint contract (see the module docs).
pub(crate) fn canonical(r: &TrackingRecord) -> String {
    fn time(out: &mut String, ms: Option<i64>) {
        match ms {
            Some(ms) => {
                let _ = write!(out, "{}", i128::from(ms) * 1000);
            }
            None => out.push('-'),
        }
    }
    fn text(out: &mut String, s: Option<&str>) {
        out.push_str(s.unwrap_or("-"));
    }
    fn list<T>(out: &mut String, items: &[T], each: impl Fn(&mut String, &T)) {
        if items.is_empty() {
            out.push('-');
        }
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push('\u{1e}');
            }
            each(out, item);
        }
    }
    const SEP: char = '\u{1f}';
    let mut c = String::with_capacity(512);
    time(&mut c, Some(r.gen_ms));
    c.push(SEP);
    time(&mut c, Some(r.timestamp_ms));
    c.push(SEP);
    time(&mut c, r.delivery_ms);
    c.push(SEP);
    text(&mut c, Some(&r.sender));
    c.push(SEP);
    text(&mut c, r.header_from.as_deref());
    c.push(SEP);
    text(&mut c, Some(&r.recipient));
    c.push(SEP);
    list(&mut c, &r.header_to, |o, s| o.push_str(s));
    c.push(SEP);
    text(&mut c, r.subject.as_deref());
    c.push(SEP);
    text(&mut c, Some(&r.sender_ip));
    c.push(SEP);
    text(&mut c, r.delivered_to.as_deref());
    c.push(SEP);
    text(&mut c, Some(&r.mail_id));
    c.push(SEP);
    text(&mut c, Some(r.direction.word()));
    c.push(SEP);
    text(&mut c, r.message_id.as_deref());
    c.push(SEP);
    let _ = write!(c, "{}", r.size);
    c.push(SEP);
    text(&mut c, Some(r.action));
    c.push(SEP);
    text(&mut c, r.reason);
    c.push(SEP);
    list(&mut c, &r.attachments, |o, a| {
        o.push_str(&a.file_name);
        o.push('\u{1d}');
        o.push_str(&a.sha256);
    });
    c.push(SEP);
    list(&mut c, &r.embedded_urls, |o, s| o.push_str(s));
    c.push(SEP);
    text(&mut c, r.tls_info);
    c.push(SEP);
    text(&mut c, r.details.as_deref());
    c
}

/// Row count and fingerprint of some records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TrafficTruth {
    pub(crate) rows: u64,
    pub(crate) fingerprint: u64,
}

impl TrafficTruth {
    pub(crate) fn of<'a>(records: impl IntoIterator<Item = &'a TrackingRecord>) -> Self {
        let mut t = Self::default();
        for r in records {
            t.rows += 1;
            t.fingerprint = t.fingerprint.wrapping_add(fnv1a64(canonical(r).as_bytes()));
        }
        t
    }
}

#[derive(Debug, Serialize)]
struct TrafficTruthJson {
    rows: u64,
    fingerprint: String,
}

impl From<TrafficTruth> for TrafficTruthJson {
    fn from(t: TrafficTruth) -> Self {
        Self {
            rows: t.rows,
            fingerprint: format!("{:016x}", t.fingerprint),
        }
    }
}

#[derive(Debug, Serialize)]
struct DayTruthJson {
    accepted_traffic: TrafficTruthJson,
    blocked_traffic: TrafficTruthJson,
}

/// The `mail_tracking` section of the truth file.
#[derive(Debug, Serialize)]
pub(crate) struct TrackingTruth {
    days: BTreeMap<String, DayTruthJson>,
    fingerprint_definition: &'static str,
}

/// Truth for the last three full UTC days before `today`, whole days (the oldest is only partly reachable:
/// see [`FINGERPRINT_DEFINITION`]).
pub(crate) fn truth(seed: u64, mean_rows: u32, today: NaiveDate) -> TrackingTruth {
    let mut days = BTreeMap::new();
    for back in (1..=TRUTH_DAYS).rev() {
        let Some(day) = today.checked_sub_days(Days::new(back)) else {
            continue;
        };
        let of = |traffic| TrafficTruth::of(&generate_day(seed, day, traffic, mean_rows).records).into();
        days.insert(
            day.format("%Y-%m-%d").to_string(),
            DayTruthJson {
                accepted_traffic: of(Traffic::Accepted),
                blocked_traffic: of(Traffic::Blocked),
            },
        );
    }
    TrackingTruth {
        days,
        fingerprint_definition: FINGERPRINT_DEFINITION,
    }
}

// ---------------------------------------------------------------------------------------------------------
// JSON rendering
// ---------------------------------------------------------------------------------------------------------

/// Writes `s` as a JSON string. `ascii` escapes every non-ASCII character as `\uXXXX` (UTF-16, so emoji
/// become surrogate pairs) and `/` as `\/`, as some Java JSON writers do.
fn json_str(out: &mut String, s: &str, ascii: bool) {
    out.push('"');
    // Runs that need no escape are copied whole: this renders every string of every page.
    let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\' && !(ascii && (b == b'/' || b >= 0x80));
    let mut rest = s;
    loop {
        let cut = rest.bytes().position(|b| !plain(b)).unwrap_or(rest.len());
        out.push_str(&rest[..cut]);
        rest = &rest[cut..];
        let Some(c) = rest.chars().next() else { break };
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            '/' if ascii => out.push_str("\\/"),
            c if ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04X}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `yyyy-mm-ddThh:mm:ss[.mmm]Z`.
fn write_time(out: &mut String, ms: i64, millis: bool) {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return;
    };
    let _ = write!(
        out,
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if millis {
        let _ = write!(out, ".{:03}", ms.rem_euclid(1000));
    }
    out.push_str("Z\"");
}

/// The keys of a record, for the two orders the seed shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    GenTime,
    Timestamp,
    DeliveryTime,
    Sender,
    Direction,
    MessageId,
    Subject,
    Size,
    MailId,
    Recipient,
    Action,
    TlsInfo,
    HeaderFrom,
    HeaderTo,
    SenderIp,
    DeliveredTo,
    Attachments,
    EmbeddedUrls,
    Details,
    Reason,
    Extra,
}

/// The seed's response example.
const EXAMPLE_ORDER: [Key; 21] = [
    Key::GenTime,
    Key::Timestamp,
    Key::DeliveryTime,
    Key::Sender,
    Key::Direction,
    Key::MessageId,
    Key::Subject,
    Key::Size,
    Key::MailId,
    Key::Recipient,
    Key::Action,
    Key::Extra,
    Key::TlsInfo,
    Key::HeaderFrom,
    Key::HeaderTo,
    Key::SenderIp,
    Key::DeliveredTo,
    Key::Attachments,
    Key::EmbeddedUrls,
    Key::Details,
    Key::Reason,
];

/// The seed's table of response parameters.
const TABLE_ORDER: [Key; 21] = [
    Key::Timestamp,
    Key::GenTime,
    Key::DeliveryTime,
    Key::Sender,
    Key::HeaderFrom,
    Key::Recipient,
    Key::HeaderTo,
    Key::Subject,
    Key::SenderIp,
    Key::DeliveredTo,
    Key::MailId,
    Key::Direction,
    Key::MessageId,
    Key::Size,
    Key::Action,
    Key::Reason,
    Key::Attachments,
    Key::EmbeddedUrls,
    Key::TlsInfo,
    Key::Details,
    Key::Extra,
];

/// Writes `"key":value` for one field; returns false (writing nothing) when the record omits it.
fn write_field(out: &mut String, r: &TrackingRecord, key: Key) -> bool {
    let ascii = r.style.ascii_only;
    let name = |out: &mut String, n: &str| {
        out.push('"');
        out.push_str(n);
        out.push_str("\":");
    };
    let string = |out: &mut String, n: &str, v: Option<&str>| match v {
        Some(v) => {
            name(out, n);
            json_str(out, v, ascii);
            true
        }
        None => false,
    };
    let strings = |out: &mut String, n: &str, items: &[String]| {
        if items.is_empty() && !r.style.empty_lists_as_brackets {
            return false;
        }
        name(out, n);
        out.push('[');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, s, ascii);
        }
        out.push(']');
        true
    };
    match key {
        Key::GenTime => {
            name(out, "genTime");
            write_time(out, r.gen_ms, r.style.millis);
            true
        }
        Key::Timestamp => {
            name(out, "timestamp");
            write_time(out, r.timestamp_ms, r.style.millis);
            true
        }
        Key::DeliveryTime => match r.delivery_ms {
            Some(ms) => {
                name(out, "deliveryTime");
                write_time(out, ms, r.style.millis);
                true
            }
            None => false,
        },
        Key::Sender => string(out, "sender", Some(&r.sender)),
        Key::Direction => string(out, "direction", Some(r.direction.word())),
        Key::MessageId => string(out, "messageID", r.message_id.as_deref()),
        Key::Subject => string(out, "subject", r.subject.as_deref()),
        Key::Size => {
            name(out, "size");
            let _ = write!(out, "{}", r.size);
            true
        }
        Key::MailId => string(out, "mailID", Some(&r.mail_id)),
        Key::Recipient => string(out, "recipient", Some(&r.recipient)),
        Key::Action => string(out, "action", Some(r.action)),
        Key::TlsInfo => string(out, "tlsInfo", r.tls_info),
        Key::HeaderFrom => string(out, "headerFrom", r.header_from.as_deref()),
        Key::HeaderTo => strings(out, "headerTo", &r.header_to),
        Key::SenderIp => string(out, "senderIP", Some(&r.sender_ip)),
        Key::DeliveredTo => string(out, "deliveredTo", r.delivered_to.as_deref()),
        Key::Attachments => {
            if r.attachments.is_empty() && !r.style.empty_lists_as_brackets {
                return false;
            }
            name(out, "attachments");
            out.push('[');
            for (i, a) in r.attachments.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut fields = [("fileName", &a.file_name), ("sha256", &a.sha256)];
                if r.style.table_order {
                    fields.reverse();
                }
                out.push('{');
                for (j, (n, v)) in fields.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    name(out, n);
                    json_str(out, v, ascii);
                }
                out.push('}');
            }
            out.push(']');
            true
        }
        Key::EmbeddedUrls => {
            let n = if r.style.singular_urls {
                "embeddedUrl"
            } else {
                "embeddedUrls"
            };
            strings(out, n, &r.embedded_urls)
        }
        Key::Details => string(out, "details", r.details.as_deref()),
        Key::Reason => string(out, "reason", r.reason),
        Key::Extra => match &r.extra {
            None => false,
            Some(Extra::PolicyName(p)) => string(out, "policyName", Some(p)),
            Some(Extra::SpamScore(tenths)) => {
                name(out, "spamScore");
                let _ = write!(out, "{}.{}", tenths / 10, tenths % 10);
                true
            }
            Some(Extra::QuarantineInfo { folder, days }) => {
                name(out, "quarantineInfo");
                out.push_str("{\"folder\":");
                json_str(out, folder, ascii);
                let _ = write!(out, ",\"days\":{days}}}");
                true
            }
        },
    }
}

/// Writes one record as a JSON object.
pub(crate) fn render_record(out: &mut String, r: &TrackingRecord) {
    let order: &[Key] = if r.style.table_order {
        &TABLE_ORDER
    } else {
        &EXAMPLE_ORDER
    };
    out.push('{');
    let mut first = true;
    for &key in order {
        let mark = out.len();
        if !first {
            out.push(',');
        }
        if write_field(out, r, key) {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push('}');
}

/// A page laid out like the seed's response example: `nextToken` first, one record per line.
fn render_page(records: &[&TrackingRecord], token: Option<&str>) -> String {
    let mut x = String::with_capacity(256 + records.len() * 900);
    x.push_str("{\n");
    if let Some(token) = token {
        x.push_str("    \"nextToken\": ");
        json_str(&mut x, token, false);
        x.push_str(",\n");
    }
    if records.is_empty() {
        x.push_str("    \"logs\": []\n}\n");
        return x;
    }
    x.push_str("    \"logs\": [\n");
    for (i, r) in records.iter().enumerate() {
        x.push_str("\t\t");
        render_record(&mut x, r);
        x.push_str(if i + 1 < records.len() { ",\n" } else { "\n" });
    }
    x.push_str("    ]\n}\n");
    x
}

// ---------------------------------------------------------------------------------------------------------
// Continuation tokens
// ---------------------------------------------------------------------------------------------------------

/// What a `nextToken` carries. The encoded blob is 70 bytes:
///
/// ```text
/// 0..3 FB EF FF | 3..57 masked: version, type, start, end, as-of, offset, query binding, filler
/// 57..60 FB EF FF | 60..62 masked filler | 62..70 FNV-1a check of 0..62
/// ```
///
/// `FB EF FF` at offsets divisible by 3 encode to `++//`, and 70 = 3 * 23 + 1 leaves `==` of padding, as in
/// the seed's example, so every token exercises the characters a client must URL-encode. The payload is
/// masked with a keystream of the simulator's seed so that the token looks as opaque as the real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Cursor {
    start_ms: i64,
    end_ms: i64,
    as_of_ms: i64,
    offset: u64,
    /// Hash of the query's `type`, `domain`, `direction`, `start`, `end` as given.
    binding: u64,
}

const TOKEN_LEN: usize = 70;
const TOKEN_MAGIC: [u8; 3] = [0xFB, 0xEF, 0xFF];
const TOKEN_VERSION: u8 = 1;

fn mask(seed: u64, bytes: &mut [u8]) {
    let mut rng = SplitMix64::new(mix(seed, 0x746f_6b65_6e6d_736b));
    for chunk in bytes.chunks_mut(8) {
        let k = rng.next_u64().to_le_bytes();
        chunk.iter_mut().zip(k).for_each(|(b, k)| *b ^= k);
    }
}

impl Cursor {
    fn encode(&self, seed: u64) -> String {
        let mut b = [0u8; TOKEN_LEN];
        b[0..3].copy_from_slice(&TOKEN_MAGIC);
        let mut payload = [0u8; 56];
        payload[0] = TOKEN_VERSION;
        payload[1..9].copy_from_slice(&self.start_ms.to_be_bytes());
        payload[9..17].copy_from_slice(&self.end_ms.to_be_bytes());
        payload[17..25].copy_from_slice(&self.as_of_ms.to_be_bytes());
        payload[25..33].copy_from_slice(&self.offset.to_be_bytes());
        payload[33..41].copy_from_slice(&self.binding.to_be_bytes());
        let filler = mix(self.binding ^ self.offset, self.as_of_ms as u64);
        payload[41..49].copy_from_slice(&filler.to_be_bytes());
        payload[49..56].copy_from_slice(&finalize_bytes(filler));
        mask(seed, &mut payload);
        b[3..57].copy_from_slice(&payload[..54]);
        b[57..60].copy_from_slice(&TOKEN_MAGIC);
        b[60..62].copy_from_slice(&payload[54..56]);
        let check = fnv1a64(&b[..62]);
        b[62..70].copy_from_slice(&check.to_be_bytes());
        STANDARD.encode(b)
    }

    /// Decodes a token as received (after URL-decoding). The error says what is wrong with it.
    fn decode(seed: u64, token: &str) -> Result<Self, String> {
        let b = STANDARD.decode(token).map_err(|e| {
            format!(
                "token is not valid base64 ({e}); send nextToken unchanged and URL-encoded ('+' as %2B, '/' as %2F, \
                 '=' as %3D)"
            )
        })?;
        let foreign = || "token was not issued by this API (damaged or truncated?)".to_string();
        if b.len() != TOKEN_LEN || b[0..3] != TOKEN_MAGIC || b[57..60] != TOKEN_MAGIC {
            return Err(foreign());
        }
        let check: [u8; 8] = b[62..70].try_into().unwrap_or_default();
        if u64::from_be_bytes(check) != fnv1a64(&b[..62]) {
            return Err(foreign());
        }
        let mut payload = [0u8; 56];
        payload[..54].copy_from_slice(&b[3..57]);
        payload[54..56].copy_from_slice(&b[60..62]);
        mask(seed, &mut payload);
        if payload[0] != TOKEN_VERSION {
            return Err(foreign());
        }
        let be8 = |at: usize| -> [u8; 8] { payload[at..at + 8].try_into().unwrap_or_default() };
        Ok(Self {
            start_ms: i64::from_be_bytes(be8(1)),
            end_ms: i64::from_be_bytes(be8(9)),
            as_of_ms: i64::from_be_bytes(be8(17)),
            offset: u64::from_be_bytes(be8(25)),
            binding: u64::from_be_bytes(be8(33)),
        })
    }
}

fn finalize_bytes(x: u64) -> [u8; 7] {
    let b = crate::data::finalize(x).to_be_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6]]
}

// ---------------------------------------------------------------------------------------------------------
// Requests and errors
// ---------------------------------------------------------------------------------------------------------

/// An error answer: HTTP status and the JSON body's `code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidParameter",
            message: message.into(),
        }
    }

    fn missing(param: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "MissingParameter",
            message: format!("{param} is required"),
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "Unauthorized",
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: message.into(),
        }
    }

    /// The error body an injected 429 or 5xx carries: `why` says who injected it.
    fn for_status(status: StatusCode, why: &str) -> Self {
        let (code, what) = match status {
            StatusCode::TOO_MANY_REQUESTS => ("TooManyRequests", "rate exceeded"),
            StatusCode::SERVICE_UNAVAILABLE => ("ServiceUnavailable", "service unavailable"),
            _ => ("InternalError", "internal error"),
        };
        Self {
            status,
            code,
            message: format!("{why}: {what}"),
        }
    }
}

/// Shows a client-supplied value in an error message without letting it run on.
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(40).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// A request's parameters, syntactically valid; the window is not resolved yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrackingQuery {
    traffic: Traffic,
    /// Lower-cased.
    domain: Option<String>,
    direction: Option<Direction>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    limit: u32,
    token: Option<String>,
}

impl TrackingQuery {
    /// What a continuation token is bound to: the filters and the window as given.
    fn binding(&self) -> u64 {
        let text = format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.traffic.param(),
            self.domain.as_deref().unwrap_or("\u{0}"),
            self.direction.map_or("\u{0}", Direction::word),
            self.start_ms.map_or("-".to_string(), |v| v.to_string()),
            self.end_ms.map_or("-".to_string(), |v| v.to_string()),
        );
        fnv1a64(text.as_bytes())
    }

    /// The `[start, end]` window (inclusive, Unix ms) the seed's rules give at `now_ms`, or why none.
    fn window(&self, now_ms: i64) -> Result<(i64, i64), ApiError> {
        let (start, end) = match (self.start_ms, self.end_ms) {
            (Some(s), Some(e)) => (s, e),
            (Some(s), None) => (s, s + DEFAULT_SPAN_MS),
            (None, Some(e)) => (e - DEFAULT_SPAN_MS, e),
            (None, None) => (now_ms - DEFAULT_SPAN_MS, now_ms),
        };
        let earliest = now_ms - REACH_MS;
        if start < earliest {
            let what = if self.start_ms.is_some() {
                "start"
            } else {
                "end - 5 minutes (the window's start when only end is given)"
            };
            return Err(ApiError::invalid(format!(
                "{what} must not be earlier than 72 hours before the request ({})",
                iso(earliest)
            )));
        }
        if end - start > REACH_MS {
            return Err(ApiError::invalid(
                "the window from start to end must not be longer than 72 hours",
            ));
        }
        Ok((start, end))
    }
}

fn iso(ms: i64) -> String {
    let mut s = String::new();
    write_time(&mut s, ms, true);
    s.trim_matches('"').to_string()
}

/// Parses `yyyy-mm-ddThh:mm:ssZ` or `yyyy-mm-ddThh:mm:ss.mmmZ` exactly, to Unix milliseconds.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    let b = value.as_bytes();
    let shape_ok = (b.len() == 20 || b.len() == 24)
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 if b.len() == 24 => c == b'.',
            _ if i + 1 == b.len() => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    let bad = |why: &str| {
        ApiError::invalid(format!(
            "{name} must be an ISO 8601 UTC time yyyy-mm-ddThh:mm:ss[.mmm]Z ({why}), got {}",
            shown(value)
        ))
    };
    if !shape_ok {
        return Err(bad("e.g. 2016-07-22T01:51:31Z or 2016-07-22T01:51:31.001Z"));
    }
    let num = |r: std::ops::Range<usize>| -> u32 { value[r].parse().unwrap_or(u32::MAX) };
    let ms = if b.len() == 24 { num(20..23) } else { 0 };
    NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10))
        .and_then(|d| d.and_hms_milli_opt(num(11..13), num(14..16), num(17..19), ms))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| bad("no such date or time"))
}

const KNOWN_PARAMS: &[&str] = &["type", "domain", "direction", "start", "end", "limit", "token"];

fn parse_query(raw: Option<&str>) -> Result<TrackingQuery, ApiError> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !KNOWN_PARAMS.contains(&k.as_ref()) {
            return Err(ApiError::invalid(format!(
                "unknown parameter {}; the API takes {}",
                shown(&k),
                KNOWN_PARAMS.join(", ")
            )));
        }
        if params.insert(k.to_string(), v.to_string()).is_some() {
            let hint = if k == "type" {
                " (specify one type at a time)"
            } else {
                ""
            };
            return Err(ApiError::invalid(format!("{k} is given more than once{hint}")));
        }
    }
    let traffic = match params.get("type") {
        None => return Err(ApiError::missing("type (accepted_traffic or blocked_traffic)")),
        Some(t) => Traffic::from_param(t).ok_or_else(|| {
            ApiError::invalid(format!(
                "type must be accepted_traffic or blocked_traffic (one at a time), got {}",
                shown(t)
            ))
        })?,
    };
    let domain = match params.get("domain") {
        None => None,
        Some(d) if d.trim().is_empty() => {
            return Err(ApiError::invalid("domain must not be empty when given"));
        }
        Some(d) => Some(d.to_ascii_lowercase()),
    };
    let direction = match params.get("direction").map(String::as_str) {
        None => None,
        Some("in") => Some(Direction::In),
        Some("out") => Some(Direction::Out),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "direction must be in or out, got {}",
                shown(other)
            )));
        }
    };
    let start_ms = params.get("start").map(|v| parse_time("start", v)).transpose()?;
    let end_ms = params.get("end").map(|v| parse_time("end", v)).transpose()?;
    if let (Some(s), Some(e)) = (start_ms, end_ms)
        && e < s
    {
        return Err(ApiError::invalid("end must not be earlier than start"));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) && v.bytes().all(|c| c.is_ascii_digit()) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}, got {}",
                    shown(v)
                )));
            }
        },
    };
    Ok(TrackingQuery {
        traffic,
        domain,
        direction,
        start_ms,
        end_ms,
        limit,
        token: params.remove("token"),
    })
}

/// Checks `Authorization: Basic base64(user:key)`.
fn check_auth(headers: &HeaderMap, user: &str, key: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "Authorization header is missing; use HTTP Basic with the user and the API key",
        ));
    };
    let value = value.to_str().unwrap_or("").trim();
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized("Authorization must use the Basic scheme"));
    }
    let decoded = STANDARD
        .decode(credentials.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(decoded) = decoded else {
        return Err(ApiError::unauthorized(
            "Authorization Basic credentials are not base64 of user:key",
        ));
    };
    match decoded.split_once(':') {
        Some((u, k)) if u == user && k == key => Ok(()),
        _ => Err(ApiError::unauthorized("the user or the API key is not valid")),
    }
}

/// True when `Accept-Encoding` admits gzip (`gzip`, `x-gzip` or `*` with a non-zero q).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let zero_q = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            !zero_q && ["gzip", "x-gzip", "*"].iter().any(|c| coding.eq_ignore_ascii_case(c))
        })
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    enc.write_all(body)?;
    enc.finish()
}

const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    resp
}

fn render_error(err: &ApiError) -> String {
    let mut s = serde_json::json!({"code": err.code, "message": err.message}).to_string();
    s.push('\n');
    s
}

fn error_response(err: &ApiError) -> Response {
    let mut resp = json_response(err.status, Body::from(render_error(err)));
    if err.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mail tracking log\""),
        );
    }
    resp
}

// ---------------------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------------------

/// The API's state: its configuration and a small cache of generated days.
pub(crate) struct MailTracking {
    shared: Arc<Shared>,
    user: String,
    api_key: String,
    mean_rows: u32,
    cache: DayCache<(NaiveDate, Traffic), TrafficDay>,
    pages: PageCache<PageKey, Page>,
}

/// Everything a page's body depends on: the cursor (window, as-of, offset, query binding) and the
/// parts of the query the binding only hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PageKey {
    traffic: Traffic,
    domain: Option<String>,
    direction: Option<Direction>,
    cursor: Cursor,
    limit: u32,
    gzipped: bool,
}

impl std::fmt::Debug for MailTracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailTracking")
            .field("user", &self.user)
            .field("api_key", &"***")
            .field("mean_rows", &self.mean_rows)
            .finish()
    }
}

/// A successful page, ready to send.
#[derive(Clone)]
struct Page {
    body: Bytes,
    gzipped: bool,
    log_count: usize,
    more: bool,
}

impl MailTracking {
    pub(crate) fn new(shared: Arc<Shared>, user: String, api_key: String, mean_rows: u32) -> Self {
        Self {
            shared,
            user,
            api_key,
            mean_rows,
            cache: DayCache::new(CACHED_DAYS),
            pages: PageCache::new(CACHED_PAGE_BYTES),
        }
    }

    pub(crate) fn router(self: Arc<Self>) -> Router {
        Router::new().route(PATH, any(handle)).with_state(self)
    }

    fn day(&self, day: NaiveDate, traffic: Traffic) -> Arc<TrafficDay> {
        self.cache.get_or_make((day, traffic), || {
            generate_day(self.shared.seed, day, traffic, self.mean_rows)
        })
    }

    /// Validates the request and builds the page, or says why not. Runs on a blocking thread.
    fn answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
        raw_query: Option<&str>,
        now_ms: i64,
    ) -> Result<Page, ApiError> {
        if method != Method::GET {
            return Err(ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "MethodNotAllowed",
                message: format!("{method} is not allowed; the mail tracking log is read with GET"),
            });
        }
        check_auth(headers, &self.user, &self.api_key)?;
        let query = parse_query(raw_query)?;
        let binding = query.binding();
        let cursor = match &query.token {
            Some(raw) => {
                let cursor = Cursor::decode(self.shared.seed, raw).map_err(ApiError::invalid)?;
                if cursor.binding != binding {
                    return Err(ApiError::invalid(
                        "token belongs to a different query: type, domain, direction, start and end must be the \
                         same as in the request that returned it",
                    ));
                }
                cursor
            }
            None => {
                let (start_ms, end_ms) = query.window(now_ms)?;
                Cursor {
                    start_ms,
                    end_ms,
                    // Only `min(end, as_of)` is ever read: a window already over carries its end,
                    // so that its tokens, and so its pages, are the same whenever it is asked for.
                    as_of_ms: now_ms.min(end_ms),
                    offset: 0,
                    binding,
                }
            }
        };

        let gzipped = accepts_gzip(headers);
        // Pages of a window still open carry the as-of of their first request, so no other walk
        // asks for them again: only the pages of windows already over are kept.
        let over = cursor.end_ms <= cursor.as_of_ms;
        let key = over.then(|| PageKey {
            traffic: query.traffic,
            domain: query.domain.clone(),
            direction: query.direction,
            cursor,
            limit: query.limit,
            gzipped,
        });
        if let Some(page) = key.as_ref().and_then(|k| self.pages.get(k)) {
            return Ok(page);
        }

        let hi = cursor.end_ms.min(cursor.as_of_ms);
        let mut days: Vec<Arc<TrafficDay>> = Vec::with_capacity(4);
        if cursor.start_ms <= hi {
            let first = cursor.start_ms.div_euclid(DAY_MS);
            // A 72-hour window touches at most four days.
            let last = hi.div_euclid(DAY_MS).min(first + 3);
            for n in first..=last {
                if let Some(day) = date_of_day_number(n) {
                    days.push(self.day(day, query.traffic));
                }
            }
        }
        // A day's records are sorted by genTime, so the window is one slice of each day, and only
        // the records up to the page's end (plus one, to know whether a token is due) are visited:
        // a page deep into a large day costs little more than the first one.
        let offset = usize::try_from(cursor.offset).unwrap_or(usize::MAX);
        let limit = query.limit as usize;
        let in_window = days.iter().flat_map(|d| {
            let lo = d.records.partition_point(|r| r.gen_ms < cursor.start_ms);
            let up = d.records.partition_point(|r| r.gen_ms <= hi).max(lo);
            &d.records[lo..up]
        });
        let page: Vec<&TrackingRecord> = if query.domain.is_none() && query.direction.is_none() {
            // Unfiltered, the slices skip `offset` records without visiting them.
            in_window.skip(offset).take(limit.saturating_add(1)).collect()
        } else {
            in_window
                .filter(|r| query.domain.as_deref().is_none_or(|d| r.domain == d))
                .filter(|r| query.direction.is_none_or(|d| r.direction == d))
                .skip(offset)
                .take(limit.saturating_add(1))
                .collect()
        };
        let more = page.len() > limit;
        let page = &page[..page.len().min(limit)];
        let token = more.then(|| {
            Cursor {
                offset: (offset + page.len()) as u64,
                ..cursor
            }
            .encode(self.shared.seed)
        });
        let text = render_page(page, token.as_deref());
        let body = if gzipped {
            gzip(text.as_bytes()).map_err(|e| ApiError::internal(format!("compressing the page failed: {e}")))?
        } else {
            text.into_bytes()
        };
        let page = Page {
            body: Bytes::from(body),
            gzipped,
            log_count: page.len(),
            more,
        };
        if let Some(key) = key {
            self.pages.insert(key, page.clone(), page.body.len());
        }
        Ok(page)
    }
}

fn page_response(page_body: Body, gzipped: bool) -> Response {
    let mut resp = json_response(StatusCode::OK, page_body);
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

async fn handle(
    State(api): State<Arc<MailTracking>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let params = decode_params(raw_query.as_deref().unwrap_or("").as_bytes());
    let arrival = api.shared.arrive(Api::MailTracking, params);
    let (resp, fault) = respond(&api, method, headers, raw_query, arrival.scripted.clone()).await;
    api.shared.answered(arrival, &resp, fault);
    resp
}

/// Answers one request, with the scripted fault if there is one, else perhaps a random one; returns
/// the response and the name of the fault injected.
async fn respond(
    api: &Arc<MailTracking>,
    method: Method,
    headers: HeaderMap,
    raw_query: Option<String>,
    scripted: Option<Scripted>,
) -> (Response, Option<String>) {
    let stats = &api.shared.stats.mail_tracking;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let (request_id, counter) = api.shared.next_request_id();
    let mut delivery = Delivery::Normal;
    let mut fault_name = None;
    if let Some(fault) = scripted {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        let name = fault.name();
        tracing::info!(api = "mail-tracking", %request_id, fault = %name, "injecting a scripted fault");
        match fault {
            Scripted::Status { status, retry_after } => {
                let resp = gateway_page(status)
                    .unwrap_or_else(|| error_response(&ApiError::for_status(status, "scripted fault")));
                return (with_retry_after(resp, retry_after.as_ref()), Some(name));
            }
            Scripted::RejectToken => {
                let err = ApiError::invalid("token is not valid: it has expired or was not issued for this query");
                return (error_response(&err), Some(name));
            }
            Scripted::Body(d) => delivery = d,
        }
        fault_name = Some(name);
    } else if let Some(fault) = api.shared.faults.pick() {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        tracing::info!(api = "mail-tracking", %request_id, fault = fault.name(), "injecting a fault");
        fault_name = Some(fault.name().to_string());
        match fault {
            Fault::InternalError => {
                return (
                    error_response(&ApiError::internal("injected fault: internal error")),
                    fault_name,
                );
            }
            Fault::Unavailable { retry_after } => {
                let err = ApiError::for_status(StatusCode::SERVICE_UNAVAILABLE, "injected fault");
                let retry_after = retry_after.then_some(RetryAfter::Seconds(1));
                return (with_retry_after(error_response(&err), retry_after.as_ref()), fault_name);
            }
            Fault::TooManyRequests { retry_after } => {
                let err = ApiError::for_status(StatusCode::TOO_MANY_REQUESTS, "injected fault");
                return (with_retry_after(error_response(&err), Some(&retry_after)), fault_name);
            }
            Fault::DropConnection => delivery = Delivery::Reset,
            Fault::Slow(delay) => tokio::time::sleep(delay).await,
        }
    }

    let now_ms = Utc::now().timestamp_millis();
    let worker = api.clone();
    let answered = tokio::task::spawn_blocking(move || worker.answer(&method, &headers, raw_query.as_deref(), now_ms))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("building the page failed: {e}"))));
    match answered {
        Ok(page) => {
            if delivery == Delivery::Normal {
                stats.data_requests.fetch_add(1, Ordering::Relaxed);
                tracing::info!(api = "mail-tracking", %request_id, log_count = page.log_count, more = page.more, gzip = page.gzipped, "page served");
            }
            let (body, length) = delivery.body(page.body, counter);
            let mut resp = page_response(body, page.gzipped);
            announce_length(&mut resp, length);
            (resp, fault_name)
        }
        Err(err) if delivery == Delivery::Normal => {
            tracing::info!(api = "mail-tracking", %request_id, status = err.status.as_u16(), code = err.code, message = %err.message, "request refused");
            (error_response(&err), fault_name)
        }
        Err(err) => {
            let (body, length) = delivery.body(Bytes::from(render_error(&err)), counter);
            let mut resp = json_response(err.status, body);
            announce_length(&mut resp, length);
            (resp, fault_name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    fn rendered(r: &TrackingRecord) -> serde_json::Value {
        let mut s = String::new();
        render_record(&mut s, r);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("record renders invalid JSON ({e}): {s}"))
    }

    #[test]
    fn a_day_is_a_pure_function_of_seed_date_and_type() {
        let d = day("2026-03-14");
        let a = generate_day(1, d, Traffic::Accepted, 300);
        assert_eq!(a, generate_day(1, d, Traffic::Accepted, 300));
        assert_ne!(a.records, generate_day(2, d, Traffic::Accepted, 300).records);
        assert_ne!(a.records, generate_day(1, d, Traffic::Blocked, 300).records);
        assert_ne!(
            a.records,
            generate_day(1, day("2026-03-15"), Traffic::Accepted, 300).records
        );
    }

    #[test]
    fn days_have_the_promised_shape() {
        let mut empty = 0;
        for i in 0..60 {
            let d = day("2026-01-01") + Days::new(i);
            for traffic in Traffic::ALL {
                let log = generate_day(3, d, traffic, 200);
                let n = log.records.len();
                if n == 0 {
                    empty += 1;
                    continue;
                }
                assert!((100..=300).contains(&n), "{d}: {n} records");
                let base = day_number(d) * DAY_MS;
                assert!(log.records.windows(2).all(|w| w[0].gen_ms <= w[1].gen_ms));
                assert_eq!(log.records[0].gen_ms, base);
                assert!(!log.records[0].style.millis);
                assert_eq!(log.records[1].gen_ms, base, "a second midnight record, with .000");
                assert!(log.records[1].style.millis);
                assert_eq!(log.records[n - 1].gen_ms, base + DAY_MS - 1);
                for r in &log.records {
                    assert!((base..base + DAY_MS).contains(&r.gen_ms));
                    assert!(r.timestamp_ms < r.gen_ms && r.gen_ms - r.timestamp_ms <= 10_000);
                    if let Some(t) = r.delivery_ms {
                        assert!(t > r.gen_ms && t - r.gen_ms <= 16_000);
                    }
                    if !r.style.millis {
                        assert_eq!(r.gen_ms % 1000, 0);
                        assert_eq!(r.timestamp_ms % 1000, 0);
                        assert!(r.delivery_ms.is_none_or(|t| t % 1000 == 0));
                    }
                    let managed = match r.direction {
                        Direction::In => &r.recipient,
                        Direction::Out => &r.sender,
                    };
                    assert!(
                        managed.ends_with(&format!("@{}", r.domain)),
                        "{managed} vs {}",
                        r.domain
                    );
                }
            }
        }
        assert!((3..=20).contains(&empty), "{empty} empty (day, type) pairs of 120");
    }

    #[test]
    fn records_render_as_json_that_reads_back_to_the_same_values() {
        let mut ascii_seen = false;
        for i in 0..5 {
            let d = day("2026-02-01") + Days::new(i);
            for r in generate_day(7, d, Traffic::Accepted, 300).records {
                let v = rendered(&r);
                let o = v.as_object().expect("object");
                assert_eq!(o.get("subject").and_then(|s| s.as_str()), r.subject.as_deref());
                assert_eq!(o.get("details").and_then(|s| s.as_str()), r.details.as_deref());
                assert_eq!(o["sender"], serde_json::json!(r.sender));
                assert_eq!(o["size"].as_u64(), Some(r.size));
                assert!(o.values().all(|v| !v.is_null()), "null in {v}");
                if r.style.ascii_only {
                    let mut s = String::new();
                    render_record(&mut s, &r);
                    assert!(s.is_ascii(), "{s}");
                    ascii_seen |= r.subject.as_deref().is_some_and(|s| !s.is_ascii());
                }
            }
        }
        assert!(ascii_seen, "some non-ASCII subject was written with \\u escapes");
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nd\u{1}é😀/", false);
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é😀/\"");
        let mut a = String::new();
        json_str(&mut a, "é😀/", true);
        assert_eq!(a, "\"\\u00E9\\uD83D\\uDE00\\/\"");
        assert_eq!(serde_json::from_str::<String>(&a).expect("valid JSON"), "é😀/");
    }

    #[test]
    fn tokens_round_trip_look_like_the_seed_and_refuse_tampering() {
        for (offset, as_of) in [(1u64, 1_700_000_000_000i64), (500, 1_800_000_000_123), (u64::MAX, 0)] {
            let c = Cursor {
                start_ms: as_of - 3_600_000,
                end_ms: as_of,
                as_of_ms: as_of,
                offset,
                binding: 0x1234_5678_9abc_def0,
            };
            let s = c.encode(9);
            assert!(s.starts_with("++//") && s.contains("++//") && s.ends_with("=="), "{s}");
            assert_eq!(Cursor::decode(9, &s), Ok(c));
            assert!(
                Cursor::decode(10, &s).is_err(),
                "another seed's simulator does not accept it"
            );
            let mut bytes = STANDARD.decode(&s).expect("own token decodes");
            bytes[20] ^= 1;
            assert!(
                Cursor::decode(9, &STANDARD.encode(&bytes))
                    .unwrap_err()
                    .contains("not issued")
            );
            assert!(Cursor::decode(9, &s.replace('+', " ")).unwrap_err().contains("base64"));
        }
        assert!(Cursor::decode(1, "AAAA").unwrap_err().contains("not issued"));
    }

    #[test]
    fn times_are_parsed_strictly() {
        assert_eq!(parse_time("start", "1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_time("start", "1970-01-01T00:00:01.001Z"), Ok(1001));
        assert_eq!(parse_time("start", "2016-07-22T01:51:31Z"), Ok(1_469_152_291_000));
        for bad in [
            "2016-07-22T01:51:31",
            "2016-07-22T01:51:31+00:00",
            "2016-07-22 01:51:31Z",
            "2016-07-22T01:51Z",
            "2016-07-22T01:51:31.1Z",
            "2016-07-22T01:51:31.0011Z",
            "2016-07-22T01:51:31z",
            "2016-02-30T00:00:00Z",
            "2016-07-22T24:00:00Z",
            "1469152291",
            "",
        ] {
            let err = parse_time("end", bad).expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains("end"), "{}", err.message);
        }
    }

    #[test]
    fn gzip_is_offered_only_when_asked() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).expect("header"));
            m
        };
        assert!(accepts_gzip(&h("gzip")));
        assert!(accepts_gzip(&h("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_canonical_text_follows_the_contract() {
        let r = (0..10)
            .flat_map(|i| generate_day(5, day("2026-04-01") + Days::new(i), Traffic::Blocked, 100).records)
            .find(|r| r.action == "Blocked" && r.tls_info.is_none())
            .expect("a connection-level block without TLS info");
        let c = canonical(&r);
        let fields: Vec<&str> = c.split('\u{1f}').collect();
        assert_eq!(fields.len(), 20);
        assert_eq!(fields[0], (r.gen_ms * 1000).to_string());
        assert_eq!(fields[2], "-", "no deliveryTime for blocked traffic");
        assert_eq!(fields[4], "-", "no headerFrom before DATA");
        assert_eq!(fields[6], "-", "empty headerTo");
        assert_eq!(fields[13], "0");
        assert_eq!(fields[14], "Blocked");
        assert_eq!(Some(fields[15]), r.reason);
        assert_eq!(fields[18], "-");
    }
}
