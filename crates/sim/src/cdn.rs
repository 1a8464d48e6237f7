//! The CDN delivery-log files API (`GET /lls/v1.0/logs/delivery` plus signed downloads), simulated from its
//! seed document.
//!
//! Everything here is read off `seeds/cdn-delivery-log-files-api.txt` and the "General" and "CDN
//! delivery-log files" sections of `FORMATS.md`, not off the client, so that a client that misreads the seed
//! fails against it. What a client may rely on:
//!
//! # Listing
//! - `GET` on the server root + `/lls/v1.0/logs/delivery` (the client's `CDN_LOGS_URL` is
//!   `http://127.0.0.1:PORT`). No authentication; request headers are ignored except `Host`.
//! - Parameters: `domain` (required; repeat it, or separate names with commas, or both: `domain=a,b` and
//!   `domain=a&domain=b` are the same request), `started` and `ended` (required, once each, exactly
//!   `yyyyMMddTHHmmssZ` UTC). Domain names are compared exactly (case-sensitive, no trimming, so `a, b`
//!   asks for `" b"`); a name given twice is answered once, in the order of first mention. Any other
//!   parameter, an empty domain name, a repeated `started`/`ended`, a malformed time, `ended` earlier than
//!   `started` and `ended - started` longer than 24 hours (exactly 24 hours is allowed) are all answered
//!   `400 {"code": "LLS.InvalidParameter" | "LLS.MissingParameter", "message": "..."}` with a message that
//!   names the parameter. If the request is otherwise valid but names a domain outside `--cdn-domains`,
//!   the whole request is `400 {"code": "LLS.Domain.NotFound", "message": "Domain name is not found."}`
//!   (the seed's wording). A method other than `GET` is `405` (`LLS.MethodNotAllowed`). There is no retention limit.
//! - The answer is a JSON array with one object per requested domain, in request order:
//!   `{"domain": "...", "logs": [{"timestamp": "yyyy-MM-ddTHH:mm:ssZ", "values": [{"name", "url", "size"}]}]}`.
//!   **Every** five-minute slot whose start `t` satisfies `floor5(started) <= t <= ceil5(ended)` is listed,
//!   in time order, with an empty array when it has no files. **Quirk:** the end is rounded *up* to the
//!   next five-minute boundary, so `started=DT000000Z&ended=DT235959Z` also returns the slot
//!   `D+1T00:00:00Z` (289 slots); a client keeps only the slots of its own day (FORMATS.md).
//! - **Quirk:** the array's key is `values` (the seed's table) for some slots and `value` (the seed's
//!   example) for others, a fixed function of `(seed, domain, slot)`; both occur in every day.
//! - A slot is *published* `--cdn-publish-delay` seconds (default 120) after it ends. Until then it is
//!   listed with an empty array, exactly like a slot without traffic: only its age tells a client that a
//!   slot (or a day) is final.
//! - `url` is a string (the seed's table says Array; its example shows a string), freshly minted by each
//!   listing call: `http://{Host}/cdn-dl/{domain}/{yyyyMMdd}/{name}?expire={unix secs}&sign={40 hex}`, where
//!   `Host` is the request's `Host` header (the bound address when it has none), `yyyyMMdd` is the slot's
//!   date, `expire` is the listing time plus `--cdn-url-ttl` seconds (default 900) and `sign` is the first
//!   20 bytes of HMAC-SHA-256, under a key derived from `--seed`, of `{path}?expire={expire}` (so two
//!   simulators with the same seed accept each other's URLs). `size` is the file's exact byte length.
//! - Successful listings are sent with chunked transfer encoding, `Content-Type: application/json`.
//!
//! # Rate limit (listing only)
//! Over all clients together, at most `--cdn-rate-per-minute` (default 100) listing requests in any
//! sliding 60 s and `--cdn-rate-per-hour` (default 1000) in any sliding 3600 s are admitted. A request that
//! would exceed either gets `429`, `Retry-After: <seconds>` (the ceiling of the time until it would be
//! admitted, at least 1) and `{"code": "LLS.RateLimit.Exceeded", "message": "..."}`. Every admitted request
//! counts, whatever its answer (a 400 or an injected fault included); rejected ones do not. The limiter
//! runs before anything else, so a limited request never gets an injected fault. Downloads are not limited.
//!
//! # Downloads
//! - `GET /cdn-dl/{domain}/{yyyyMMdd}/{name}?expire=..&sign=..` (also `HEAD`). Checked in this order, each
//!   refusal an S3-style XML body `<Error><Code>..</Code><Message>..</Message></Error>`:
//!   `expire`/`sign` missing, repeated or malformed: `403 AccessDenied`; `sign` not valid for this exact
//!   path and `expire`: `403 SignatureDoesNotMatch`; `expire` in the past (valid through the second
//!   `expire` itself): `403 AccessDenied` "Request has expired"; no such file: `404 NoSuchKey`. Other
//!   query parameters are ignored.
//! - `200` with the gzip bytes, `Content-Length`, `Content-Type: application/gzip` (never
//!   `Content-Encoding`: the file *is* gzip), `Accept-Ranges: bytes` and an `ETag`. A single
//!   `Range: bytes=N-`, `bytes=N-M` or `bytes=-K` is answered `206` with `Content-Range`; a range starting
//!   at or after the end is `416` with `Content-Range: bytes */LEN`; other `Range` forms are ignored (200).
//! - `--cdn-truncate-first`: the first `GET` of every file that has records (the first that draws no
//!   injected fault) is answered short (see the short answer below); every later `GET` of that file is
//!   complete. Header-only files are never cut this way.
//! - `--cdn-download-delay-ms N`: every download request waits N ms before it is checked and answered,
//!   as a slow file server would. A test uses it to make a day outlive its URLs whatever the machine's
//!   speed.
//!
//! # Files
//! Each (domain, slot) has 0 to 3 files (about 15 % of slots none), named `{yyyyMMddHHmm}00.log.gz`,
//! `{..}00-1.log.gz`, `{..}00-2.log.gz`; a file's bytes are a pure function of `(seed, domain, slot, index)`.
//! The text is the FORMATS.md access-log format: UTF-8, LF only, `#Version`/`#Software`/`#Start-Date`/
//! `#Fields` directives, then record lines of 13 space-separated fields with timestamps inside
//! `[t, t + 5 min)` (millisecond precision, ties and both ends of the slot occur). The awkward but legal
//! content: IPv4 and IPv6 (IPv6 always in RFC 5952 canonical text, so re-rendering a parsed address changes
//! nothing), GET/HEAD/POST/OPTIONS/PUT, quoted URLs with raw UTF-8, spaces, `\"`, `\\` and a URL ending in
//! a backslash (so the closing quote follows `\\`), referer/user agent sometimes `"-"`, cache status
//! sometimes `-`, HTTP/1.1, HTTP/2.0 and HTTP/3, statuses 200..503, byte counts above 2^32 now and then,
//! 32-hex request ids unique across everything. About 8 % of files are header-only (directives and no
//! record), some repeat a directive block between records, some lack the final newline, some carry a
//! file name in the gzip header, and about 30 % are 2-3 concatenated gzip members whose boundaries
//! usually fall in the middle of a line (even inside a UTF-8 sequence). Volume: `--cdn-lines-per-slot`
//! records per slot and domain on average (default 40), split over the slot's files.
//!
//! # Ground truth
//! Under `cdn_logs` in the `--truth` file: for the three full UTC days before today and each configured
//! domain, `{"rows", "files", "gz_bytes_sum", "bytes_sum", "distinct_request_ids", "fingerprint"}` over the 288
//! slots of the day (a record belongs to the day of its slot; the `D+1T00:00:00Z` slot belongs to `D+1`).
//! `files` counts header-only files too, `gz_bytes_sum` is the sum of their `size`s, and `bytes_sum` the
//! sum of the records' `sc-bytes`. The truth describes whole days
//! whatever `--cdn-publish-delay` says.
//!
//! **Fingerprint contract:** per record, the canonical text is these 14 fields joined by U+001F:
//! `requested_at` as integer epoch microseconds, `client_ip`, `method`, `url` (quote-unescaped, not
//! percent-decoded), `protocol`, `status`, `bytes`, `time_taken_ms`, `referer` and `user_agent`
//! (quote-unescaped, `-` when null), `cache_status` (`-` when null), `edge_location`, `request_id`, and the
//! name of the file it came from (e.g. `20251119120500-1.log.gz`). The record hash is FNV-1a-64 of its
//! UTF-8 bytes; a day's fingerprint is the wrapping u64 sum over that domain's records, as 16 lowercase hex
//! digits.
//!
//! # Test hooks and faults
//! `GET /_sim/cdn/requests` returns `{"listing": [{"at_ms", "status", "limited", "fault", "query"}],
//! "downloads": {"requests", "ok", "expired", "denied", "not_found", "truncated", "faults"}}`: one entry per
//! listing request (the newest 100 000), `limited` when the rate limiter refused it (a client that
//! keeps to the budget never sees one), `fault` when a fault was injected. `ok` counts complete 200/206
//! answers, `truncated` the short answers of `--cdn-truncate-first`. `/_sim/stats` has `cdn_logs` with the
//! usual `requests`/`data_requests`/`faults` over listings and downloads together.
//!
//! `--fault-rate p` gives an admitted listing request, before it is looked at, the usual faults (500, 503
//! with or without `Retry-After`, a 429 with `Retry-After` and the rate-limit body but `limited: false`,
//! a connection dropped mid-body, a slow answer). A download draws a fault after its URL was checked
//! (refusals stay refusals): 500, 503, a slow answer, a connection reset halfway through a body announced
//! by `Content-Length`, or the **short answer**: `200` (or `206`) whose body is only the first part of the
//! file with a `Content-Length` equal to that shorter length. When the file has several gzip members the
//! cut falls exactly at the end of the first, so the short body is a valid gzip stream of fewer lines and
//! only the listing's `size` reveals it; otherwise (and for a range that does not start at 0) it is cut in
//! the middle.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Days, NaiveDate, Timelike as _, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::Shared;
use crate::data::{DayCache, SplitMix64, fnv1a64, mix};
use crate::faults::{Fault, truncated_body};

/// The listing, on the server root.
pub(crate) const LIST_PATH: &str = "/lls/v1.0/logs/delivery";
/// Where minted download URLs point.
pub(crate) const DOWNLOAD_PREFIX: &str = "/cdn-dl/";
/// The request log for tests.
pub(crate) const REQUESTS_PATH: &str = "/_sim/cdn/requests";

pub(crate) const SLOT_SECS: i64 = 300;
pub(crate) const SLOTS_PER_DAY: i64 = 288;
/// The seed's longest `ended - started`.
const MAX_SPAN_SECS: i64 = 86_400;
/// Salt that separates this API's data stream from the other simulated APIs'.
const DATA_SALT: u64 = 0x6364_6e2d_6c6f_6773;
const SIGN_SALT: u64 = 0x6364_6e2d_7369_676e;
/// Probability that a (domain, slot) has no file at all.
const EMPTY_SLOT_P: f64 = 0.15;
/// How many full days before today the truth file describes.
const TRUTH_DAYS: u64 = 3;
/// Listing requests kept for `/_sim/cdn/requests` (the oldest go first).
const MAX_LOGGED: usize = 100_000;
/// Bytes of the HMAC tag in `sign` (40 hex digits, as long as the seed's example).
const SIGN_BYTES: usize = 20;
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

pub(crate) const FIELDS_DIRECTIVE: &str = "#Fields: timestamp c-ip cs-method cs-uri cs-version sc-status sc-bytes \
time-taken-ms cs(Referer) cs(User-Agent) x-cache-status x-edge-location x-request-id";

pub(crate) const FINGERPRINT_DEFINITION: &str = "per record, the canonical text is these 14 fields joined by U+001F: \
requested_at (integer epoch microseconds), client_ip, method, url (quote-unescaped, not percent-decoded), protocol, \
status, bytes, time_taken_ms, referer (quote-unescaped, '-' when null), user_agent (same), cache_status ('-' when \
null), edge_location, request_id, file_name (e.g. 20251119120500-1.log.gz). Record hash = FNV-1a-64 of the UTF-8 \
canonical text; fingerprint = wrapping u64 sum of the record hashes of that day and domain, as 16 lowercase hex \
digits. A record belongs to the UTC day of its 5-minute slot; a day is its 288 slots (the listing's extra \
D+1T00:00:00Z slot belongs to D+1). files counts header-only files; gz_bytes_sum is the sum of the files' sizes; bytes_sum the sum of the records' sc-bytes.";

// ---------------------------------------------------------------------------------------------------------
// Data generation
// ---------------------------------------------------------------------------------------------------------

/// One access-log record, as the file carries it. `None` is the log's `-`/`"-"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CdnRecord {
    pub(crate) at_ms: i64,
    pub(crate) client_ip: String,
    pub(crate) method: &'static str,
    pub(crate) url: String,
    pub(crate) protocol: &'static str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) time_taken_ms: u32,
    pub(crate) referer: Option<&'static str>,
    pub(crate) user_agent: Option<&'static str>,
    pub(crate) cache_status: Option<&'static str>,
    pub(crate) edge_location: &'static str,
    pub(crate) request_id: String,
}

/// One generated log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFile {
    pub(crate) name: String,
    pub(crate) records: Vec<CdnRecord>,
    /// The uncompressed text.
    pub(crate) text: String,
    /// Byte offsets in `text` where one gzip member ends and the next begins (empty: one member).
    pub(crate) text_cuts: Vec<usize>,
    /// The file as served.
    pub(crate) gz: Bytes,
    /// Offset in `gz` where each member ends (the last one is `gz.len()`).
    pub(crate) member_ends: Vec<usize>,
}

impl LogFile {
    /// Where a short answer cuts the file: at the end of the first member when there are several (a valid
    /// gzip stream of fewer lines), otherwise in the middle of the stream.
    pub(crate) fn short_len(&self) -> usize {
        match self.member_ends.as_slice() {
            [first, _, ..] => *first,
            _ => (self.gz.len() / 2).max(1),
        }
    }
}

const METHODS: &[(&str, u32)] = &[("GET", 85), ("HEAD", 6), ("POST", 4), ("OPTIONS", 3), ("PUT", 2)];
const PROTOCOLS: &[(&str, u32)] = &[("HTTP/1.1", 40), ("HTTP/2.0", 45), ("HTTP/3", 15)];
const STATUSES: &[(u16, u32)] = &[
    (200, 60),
    (206, 15),
    (304, 10),
    (404, 7),
    (403, 2),
    (500, 2),
    (502, 2),
    (503, 2),
];
const CACHE: &[(Option<&str>, u32)] = &[
    (Some("HIT"), 55),
    (Some("MISS"), 25),
    (Some("EXPIRED"), 5),
    (Some("STALE"), 3),
    (Some("BYPASS"), 4),
    (None, 8),
];
const EDGES: &[&str] = &["NRT01", "NRT02", "KIX01", "HND03", "SIN01", "HKG02", "LAX01", "FRA03"];
/// URL paths; `{n}` becomes a number.
const PATHS: &[&str] = &[
    "/live/ch1/index.m3u8",
    "/live/ch1/seg-{n}.ts",
    "/live/ch2/seg-{n}.m4s",
    "/vod/映画/予告編 {n}.mp4",
    "/vod/\"director's cut\"/part{n}.mp4",
    "/vod/\"特集\" 第{n}話.mp4",
    "/files/C:\\temp\\{n}.bin",
    "/dir\\",
    "/search?q=日本語 テスト&page={n}",
    "/img/a%20b/{n}.png?w=640&h=360",
    "/",
    "/robots.txt",
    "/api/v1/items?filter=\"a b\"&x=\\y",
    "/emoji/🎉/{n}.json",
];
const REFERERS: &[&str] = &[
    "https://www.example.jp/",
    "https://www.example.jp/watch?v=123&t=1m",
    "https://例え.jp/ページ?q=動画",
    "https://evil.example/\"inject\" here",
    "android-app://com.example.player",
    "https://example.org/path\\with\\backslashes",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X; ja_jp)",
    "curl/8.4.0",
    "VLC/3.0.20 LibVLC/3.0.20",
    "ExoPlayerLib/2.19.1",
    "Mozilla/5.0 \"quoted\" agent",
    "テストクライアント/1.0 (日本語)",
    "bot\\with\\backslashes\\",
];
const SOFTWARE: &[&str] = &["SwiftFederation Edge Log Exporter 3.2.1", "sf-logd/2.8"];

fn weighted<T: Copy>(rng: &mut SplitMix64, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut r = rng.below(u64::from(total)) as u32;
    for &(item, w) in items {
        if r < w {
            return item;
        }
        r -= w;
    }
    items[items.len() - 1].0
}

/// `{yyyyMMddHHmm}00.log.gz`, `-1`, `-2` for later files of the slot.
pub(crate) fn file_name(slot_secs: i64, index: usize) -> String {
    let t = utc(slot_secs);
    let mut name = t.format("%Y%m%d%H%M%S").to_string();
    if index > 0 {
        let _ = write!(name, "-{index}");
    }
    name.push_str(".log.gz");
    name
}

fn utc(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn client_ip(rng: &mut SplitMix64) -> String {
    let roll = rng.below(100);
    if roll < 70 {
        let o = rng.next_u64().to_le_bytes();
        Ipv4Addr::new(o[0].max(1), o[1], o[2], o[3].max(1)).to_string()
    } else if roll < 75 {
        let o = rng.next_u64().to_le_bytes();
        Ipv4Addr::new(o[0].max(1), o[1], o[2], o[3])
            .to_ipv6_mapped()
            .to_string()
    } else {
        // Runs of zero groups so that canonical text compresses them (`2001:db8::1:0:5`).
        let mut g = [0u16; 8];
        g[0] = 0x2001;
        g[1] = 0x0db8;
        for seg in g.iter_mut().skip(2) {
            if !rng.chance(0.45) {
                *seg = rng.below(0x1_0000) as u16;
            }
        }
        Ipv6Addr::from(g).to_string()
    }
}

fn record(rng: &mut SplitMix64, domain: &str, at_ms: i64) -> CdnRecord {
    let method = weighted(rng, METHODS);
    let status = weighted(rng, STATUSES);
    let scheme = if rng.chance(0.85) { "https" } else { "http" };
    let path = rng.pick(PATHS).replace("{n}", &rng.below(100_000).to_string());
    let bytes = match status {
        304 => rng.below(400),
        400..=599 => 200 + rng.below(600),
        _ if rng.chance(0.003) => (1u64 << 32) + rng.below(1u64 << 33),
        // Log-uniform up to ~64 MiB.
        _ => (1u64 << rng.below(26)) | rng.below(1 << 16),
    };
    let request_id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    CdnRecord {
        at_ms,
        client_ip: client_ip(rng),
        method,
        url: format!("{scheme}://{domain}{path}"),
        protocol: weighted(rng, PROTOCOLS),
        status,
        bytes,
        time_taken_ms: if rng.chance(0.05) {
            rng.below(30_000) as u32
        } else {
            rng.below(400) as u32
        },
        referer: (!rng.chance(0.4)).then(|| rng.pick(REFERERS)),
        user_agent: (!rng.chance(0.15)).then(|| rng.pick(AGENTS)),
        cache_status: weighted(rng, CACHE),
        edge_location: rng.pick(EDGES),
        request_id,
    }
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ`.
fn write_timestamp(out: &mut String, at_ms: i64) {
    let t = DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        at_ms.rem_euclid(1000)
    );
}

/// A quoted field: `"` and `\` escaped with a backslash, nothing else; `"-"` for null.
fn write_quoted(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push_str("\"-\"");
        return;
    };
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One record line, without its line break.
pub(crate) fn write_record(out: &mut String, r: &CdnRecord) {
    write_timestamp(out, r.at_ms);
    let _ = write!(out, " {} {} ", r.client_ip, r.method);
    write_quoted(out, Some(&r.url));
    let _ = write!(out, " {} {} {} {} ", r.protocol, r.status, r.bytes, r.time_taken_ms);
    write_quoted(out, r.referer);
    out.push(' ');
    write_quoted(out, r.user_agent);
    let _ = write!(
        out,
        " {} {} {}",
        r.cache_status.unwrap_or("-"),
        r.edge_location,
        r.request_id
    );
}

fn write_directives(out: &mut String, rng: &mut SplitMix64, slot_secs: i64, full: bool) {
    if full {
        out.push_str("#Version: 1.0\n");
        let _ = writeln!(out, "#Software: {}", rng.pick(SOFTWARE));
    }
    let _ = writeln!(out, "#Start-Date: {}", utc(slot_secs).format("%Y-%m-%d %H:%M:%S"));
    out.push_str(FIELDS_DIRECTIVE);
    out.push('\n');
}

fn gzip_member(part: &[u8], header_name: Option<(&str, i64)>) -> Vec<u8> {
    let level = flate2::Compression::fast();
    let mut out = Vec::with_capacity(part.len() / 3 + 32);
    let result = match header_name {
        Some((name, mtime)) => {
            let mut enc = flate2::GzBuilder::new()
                .filename(name.trim_end_matches(".gz"))
                .mtime(u32::try_from(mtime).unwrap_or(0))
                .write(&mut out, level);
            enc.write_all(part).and_then(|()| enc.finish().map(|_| ()))
        }
        None => {
            let mut enc = flate2::write::GzEncoder::new(&mut out, level);
            enc.write_all(part).and_then(|()| enc.finish().map(|_| ()))
        }
    };
    // Writing into a Vec cannot fail.
    result.expect("gzip into memory");
    out
}

fn make_file(rng: &mut SplitMix64, domain: &str, slot_secs: i64, index: usize, count: usize) -> LogFile {
    let name = file_name(slot_secs, index);
    let mut offsets: Vec<i64> = (0..count).map(|_| rng.below(300_000) as i64).collect();
    offsets.sort_unstable();
    for k in 1..offsets.len() {
        if rng.chance(0.05) {
            offsets[k] = offsets[k - 1];
        }
    }
    if let Some(first) = offsets.first_mut()
        && rng.chance(0.05)
    {
        *first = 0;
    }
    if let Some(last) = offsets.last_mut()
        && rng.chance(0.05)
    {
        *last = 299_999;
    }
    let slot_ms = slot_secs * 1000;
    let records: Vec<CdnRecord> = offsets.iter().map(|o| record(rng, domain, slot_ms + o)).collect();

    let mut text = String::with_capacity(300 + records.len() * 260);
    write_directives(&mut text, rng, slot_secs, true);
    let repeat_at = (records.len() >= 4 && rng.chance(0.1)).then(|| 1 + rng.below(records.len() as u64 - 1) as usize);
    for (i, r) in records.iter().enumerate() {
        if repeat_at == Some(i) {
            write_directives(&mut text, rng, slot_secs, false);
        }
        write_record(&mut text, r);
        text.push('\n');
    }
    if rng.chance(0.15) {
        text.pop();
    }

    let mut text_cuts = Vec::new();
    if rng.chance(0.3) && text.len() > 4 {
        let members = 2 + rng.below(2) as usize;
        let line_ends: Vec<usize> = text
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .filter(|&i| i < text.len())
            .collect();
        while text_cuts.len() < members - 1 {
            let cut = if rng.chance(0.25) && !line_ends.is_empty() {
                rng.pick(&line_ends)
            } else {
                1 + rng.below(text.len() as u64 - 1) as usize
            };
            if !text_cuts.contains(&cut) {
                text_cuts.push(cut);
            }
        }
        text_cuts.sort_unstable();
    }
    let named = rng.chance(0.5).then_some((name.as_str(), slot_secs + 300));
    let mut gz = Vec::new();
    let mut member_ends = Vec::new();
    let mut from = 0;
    for (k, &to) in text_cuts.iter().chain(std::iter::once(&text.len())).enumerate() {
        gz.extend_from_slice(&gzip_member(
            &text.as_bytes()[from..to],
            if k == 0 { named } else { None },
        ));
        member_ends.push(gz.len());
        from = to;
    }
    LogFile {
        name,
        records,
        text,
        text_cuts,
        gz: Bytes::from(gz),
        member_ends,
    }
}

/// The files of one domain and slot (`slot_secs` a multiple of 300), a pure function of its arguments.
pub(crate) fn generate_slot(seed: u64, domain: &str, slot_secs: i64, mean_lines: u32) -> Vec<LogFile> {
    let mut rng = SplitMix64::new(mix(mix(seed ^ DATA_SALT, fnv1a64(domain.as_bytes())), slot_secs as u64));
    if rng.chance(EMPTY_SLOT_P) {
        return Vec::new();
    }
    let files = rng.pick(&[1usize, 1, 1, 2, 2, 3]);
    let total = (f64::from(mean_lines) * (0.5 + rng.unit())).round() as usize;
    let header_only: Vec<bool> = (0..files).map(|_| rng.chance(0.08)).collect();
    let with_records: Vec<usize> = (0..files).filter(|&i| !header_only[i]).collect();
    let mut counts = vec![0usize; files];
    if !with_records.is_empty() {
        for _ in 0..total {
            counts[rng.pick(&with_records)] += 1;
        }
    }
    (0..files)
        .map(|i| make_file(&mut rng, domain, slot_secs, i, counts[i]))
        .collect()
}

/// Which key the listing uses for a slot's array: `values` or `value`.
pub(crate) fn values_key(seed: u64, domain: &str, slot_secs: i64) -> &'static str {
    if mix(mix(seed ^ 0x6b65_7973, fnv1a64(domain.as_bytes())), slot_secs as u64) & 1 == 0 {
        "values"
    } else {
        "value"
    }
}

/// The canonical text of one record (see the fingerprint contract in the module docs).
pub(crate) fn canonical(r: &CdnRecord, file_name: &str) -> String {
    let sep = '\u{1f}';
    let mut s = String::with_capacity(300);
    let _ = write!(
        s,
        "{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}",
        r.at_ms * 1000,
        r.client_ip,
        r.method,
        r.url,
        r.protocol,
        r.status,
        r.bytes,
        r.time_taken_ms,
        r.referer.unwrap_or("-"),
        r.user_agent.unwrap_or("-"),
        r.cache_status.unwrap_or("-"),
        r.edge_location,
        r.request_id,
        file_name
    );
    s
}

/// What the truth says of one domain on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DomainDayTruth {
    pub(crate) rows: u64,
    pub(crate) files: u64,
    pub(crate) gz_bytes_sum: u64,
    pub(crate) bytes_sum: u64,
    pub(crate) distinct_request_ids: u64,
    pub(crate) fingerprint: u64,
}

impl DomainDayTruth {
    pub(crate) fn of(seed: u64, domain: &str, day: NaiveDate, mean_lines: u32) -> Self {
        let start = day_start_secs(day);
        let mut t = Self::default();
        let mut ids = HashSet::new();
        for k in 0..SLOTS_PER_DAY {
            for f in generate_slot(seed, domain, start + k * SLOT_SECS, mean_lines) {
                t.files += 1;
                t.gz_bytes_sum += f.gz.len() as u64;
                for r in &f.records {
                    t.rows += 1;
                    t.bytes_sum += r.bytes;
                    t.fingerprint = t.fingerprint.wrapping_add(fnv1a64(canonical(r, &f.name).as_bytes()));
                    ids.insert(r.request_id.clone());
                }
            }
        }
        t.distinct_request_ids = ids.len() as u64;
        t
    }
}

pub(crate) fn day_start_secs(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default()
}

#[derive(Debug, Serialize)]
struct DomainDayTruthJson {
    rows: u64,
    files: u64,
    gz_bytes_sum: u64,
    bytes_sum: u64,
    distinct_request_ids: u64,
    fingerprint: String,
}

impl From<DomainDayTruth> for DomainDayTruthJson {
    fn from(t: DomainDayTruth) -> Self {
        Self {
            rows: t.rows,
            files: t.files,
            gz_bytes_sum: t.gz_bytes_sum,
            bytes_sum: t.bytes_sum,
            distinct_request_ids: t.distinct_request_ids,
            fingerprint: format!("{:016x}", t.fingerprint),
        }
    }
}

/// The `cdn_logs` section of the truth file.
#[derive(Debug, Serialize)]
pub(crate) struct CdnTruth {
    days: BTreeMap<String, BTreeMap<String, DomainDayTruthJson>>,
    fingerprint_definition: &'static str,
}

/// Truth for the three full UTC days before `today`, every domain.
pub(crate) fn truth(seed: u64, domains: &[String], mean_lines: u32, today: NaiveDate) -> CdnTruth {
    let mut days = BTreeMap::new();
    for back in (1..=TRUTH_DAYS).rev() {
        let Some(day) = today.checked_sub_days(Days::new(back)) else {
            continue;
        };
        let per_domain = domains
            .iter()
            .map(|d| (d.clone(), DomainDayTruth::of(seed, d, day, mean_lines).into()))
            .collect();
        days.insert(day.format("%Y-%m-%d").to_string(), per_domain);
    }
    CdnTruth {
        days,
        fingerprint_definition: FINGERPRINT_DEFINITION,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Listing requests
// ---------------------------------------------------------------------------------------------------------

/// A refused listing request: HTTP status and the JSON body's `code` and `message`.
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
            code: "LLS.InvalidParameter",
            message: message.into(),
        }
    }

    fn missing(param: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "LLS.MissingParameter",
            message: format!("{param} is required"),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "LLS.InternalError",
            message: message.into(),
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

/// Parses exactly `yyyyMMddTHHmmssZ` (UTC) to Unix seconds.
pub(crate) fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    let b = value.as_bytes();
    let shape_ok = b.len() == 16
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 => c == b'T',
            15 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    let bad = |why: &str| {
        ApiError::invalid(format!(
            "{name} must be a UTC time yyyyMMddTHHmmssZ ({why}), got {}",
            shown(value)
        ))
    };
    if !shape_ok {
        return Err(bad("e.g. 20250911T173000Z"));
    }
    let num = |r: std::ops::Range<usize>| -> u32 { value[r].parse().unwrap_or(u32::MAX) };
    NaiveDate::from_ymd_opt(num(0..4) as i32, num(4..6), num(6..8))
        .and_then(|d| d.and_hms_opt(num(9..11), num(11..13), num(13..15)))
        .map(|t| t.and_utc().timestamp())
        .ok_or_else(|| bad("no such date or time"))
}

const KNOWN_PARAMS: &[&str] = &["domain", "started", "ended"];

/// A valid listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// Distinct, in order of first mention; not yet checked against the known domains.
    pub(crate) domains: Vec<String>,
    pub(crate) started: i64,
    pub(crate) ended: i64,
}

impl ListQuery {
    /// Start times of the listed slots: `floor5(started)..=ceil5(ended)`.
    pub(crate) fn slots(&self) -> impl Iterator<Item = i64> {
        let first = self.started.div_euclid(SLOT_SECS) * SLOT_SECS;
        let last = (self.ended + SLOT_SECS - 1).div_euclid(SLOT_SECS) * SLOT_SECS;
        (0..)
            .map(move |k| first + k * SLOT_SECS)
            .take_while(move |&t| t <= last)
    }
}

pub(crate) fn parse_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut domains: Vec<String> = Vec::new();
    let mut domain_given = false;
    let mut started = None;
    let mut ended = None;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "domain" => {
                domain_given = true;
                for name in v.split(',') {
                    if name.is_empty() {
                        return Err(ApiError::invalid(format!(
                            "domain must be a list of non-empty domain names, got {}",
                            shown(&v)
                        )));
                    }
                    if !domains.iter().any(|d| d == name) {
                        domains.push(name.to_string());
                    }
                }
            }
            "started" | "ended" => {
                let slot = if k == "started" { &mut started } else { &mut ended };
                if slot.is_some() {
                    return Err(ApiError::invalid(format!("{k} is given more than once")));
                }
                *slot = Some(parse_time(&k, &v)?);
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter {}; the API takes {}",
                    shown(other),
                    KNOWN_PARAMS.join(", ")
                )));
            }
        }
    }
    if !domain_given {
        return Err(ApiError::missing("domain (one or more delivery domain names)"));
    }
    let started = started.ok_or_else(|| ApiError::missing("started (yyyyMMddTHHmmssZ)"))?;
    let ended = ended.ok_or_else(|| ApiError::missing("ended (yyyyMMddTHHmmssZ)"))?;
    if ended < started {
        return Err(ApiError::invalid("ended must not be earlier than started"));
    }
    if ended - started > MAX_SPAN_SECS {
        return Err(ApiError::invalid(
            "Interval between started and ended cannot be longer than 24 hours.",
        ));
    }
    Ok(ListQuery {
        domains,
        started,
        ended,
    })
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
    json_response(err.status, Body::from(render_error(err)))
}

fn with_retry_after(mut resp: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The sliding-window limiter of the listing: admitted requests of the last hour, oldest first.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_minute: usize,
    per_hour: usize,
    admitted: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32, per_hour: u32) -> Self {
        Self {
            per_minute: per_minute as usize,
            per_hour: per_hour as usize,
            admitted: Mutex::new(VecDeque::new()),
        }
    }

    /// Admits a request now, or says how long until it would be admitted.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let mut q = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        // Read the clock under the lock, so the queue stays in time order.
        Self::admit_at(&mut q, Instant::now(), self.per_minute, self.per_hour)
    }

    pub(crate) fn admit_at(
        q: &mut VecDeque<Instant>,
        now: Instant,
        per_minute: usize,
        per_hour: usize,
    ) -> Result<(), Duration> {
        while q.front().is_some_and(|&t| now.duration_since(t) >= HOUR) {
            q.pop_front();
        }
        let in_minute_from = q.partition_point(|&t| now.duration_since(t) >= MINUTE);
        let in_minute = q.len() - in_minute_from;
        let mut wait = Duration::ZERO;
        if in_minute >= per_minute {
            // Admission needs the oldest `in_minute - per_minute + 1` of them gone.
            let t = q[in_minute_from + in_minute - per_minute];
            wait = wait.max((t + MINUTE).saturating_duration_since(now));
        }
        if q.len() >= per_hour {
            let t = q[q.len() - per_hour];
            wait = wait.max((t + HOUR).saturating_duration_since(now));
        }
        if wait.is_zero() {
            q.push_back(now);
            Ok(())
        } else {
            Err(wait)
        }
    }
}

/// One listing request, as `/_sim/cdn/requests` shows it.
#[derive(Debug, Clone, Serialize)]
struct ListingEntry {
    at_ms: i64,
    status: u16,
    limited: bool,
    fault: bool,
    query: String,
}

#[derive(Debug, Default)]
struct DownloadCounters {
    requests: AtomicU64,
    ok: AtomicU64,
    expired: AtomicU64,
    denied: AtomicU64,
    not_found: AtomicU64,
    truncated: AtomicU64,
    faults: AtomicU64,
}

#[derive(Debug, Serialize)]
struct DownloadCountersSnapshot {
    requests: u64,
    ok: u64,
    expired: u64,
    denied: u64,
    not_found: u64,
    truncated: u64,
    faults: u64,
}

impl DownloadCounters {
    fn snapshot(&self) -> DownloadCountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DownloadCountersSnapshot {
            requests: g(&self.requests),
            ok: g(&self.ok),
            expired: g(&self.expired),
            denied: g(&self.denied),
            not_found: g(&self.not_found),
            truncated: g(&self.truncated),
            faults: g(&self.faults),
        }
    }
}

#[derive(Debug, Serialize)]
struct RequestLog {
    listing: Vec<ListingEntry>,
    downloads: DownloadCountersSnapshot,
}

// ---------------------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------------------

/// The CDN options of `SimArgs`, validated.
#[derive(Debug, Clone)]
pub(crate) struct CdnConfig {
    pub(crate) domains: Vec<String>,
    pub(crate) url_ttl_secs: u64,
    pub(crate) rate_per_minute: u32,
    pub(crate) rate_per_hour: u32,
    pub(crate) lines_per_slot: u32,
    pub(crate) publish_delay_secs: u64,
    pub(crate) truncate_first: bool,
    /// How long every download waits before it is answered (`--cdn-download-delay-ms`).
    pub(crate) download_delay: std::time::Duration,
}

impl CdnConfig {
    /// Checks what a client could otherwise never satisfy; the message names the option.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.domains.is_empty() {
            return Err("--cdn-domains must name at least one domain".into());
        }
        for (i, d) in self.domains.iter().enumerate() {
            let dns_like = !d.is_empty() && d.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
            if !dns_like {
                return Err(format!(
                    "--cdn-domains: {d:?} is not a domain name (letters, digits, '.' and '-' only)"
                ));
            }
            if self.domains[..i].contains(d) {
                return Err(format!("--cdn-domains names {d} twice"));
            }
        }
        if self.url_ttl_secs == 0 {
            return Err("--cdn-url-ttl must be at least 1 second".into());
        }
        if self.rate_per_minute == 0 || self.rate_per_hour == 0 {
            return Err("--cdn-rate-per-minute and --cdn-rate-per-hour must be at least 1".into());
        }
        Ok(())
    }
}

/// The files of one domain and one hour: 12 slots, each a list of files.
type HourFiles = Vec<Vec<Arc<LogFile>>>;

/// The API's state.
pub(crate) struct CdnLogs {
    shared: Arc<Shared>,
    config: CdnConfig,
    addr: SocketAddr,
    key: [u8; 32],
    /// Generated hours, keyed by (domain index, hour number since the epoch).
    cache: DayCache<(usize, i64), HourFiles>,
    limiter: RateLimiter,
    listing: Mutex<VecDeque<ListingEntry>>,
    downloads: DownloadCounters,
    /// Files already downloaded once, for `--cdn-truncate-first`.
    downloaded: Mutex<HashSet<(usize, String)>>,
}

impl std::fmt::Debug for CdnLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdnLogs")
            .field("config", &self.config)
            .field("addr", &self.addr)
            .field("key", &"***")
            .finish()
    }
}

/// The signing key of download URLs, derived from the seed.
fn signing_key(seed: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(seed ^ SIGN_SALT, i as u64).to_le_bytes());
    }
    key
}

fn mac(key: &[u8; 32], path: &str, expire: u64) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(path.as_bytes());
    m.update(b"?expire=");
    m.update(expire.to_string().as_bytes());
    m
}

/// `sign` for a download path and expiry: 40 lowercase hex digits.
pub(crate) fn sign(key: &[u8; 32], path: &str, expire: u64) -> String {
    let tag = mac(key, path, expire).finalize().into_bytes();
    hex::encode(&tag[..SIGN_BYTES])
}

fn verify(key: &[u8; 32], path: &str, expire: u64, sign: &str) -> bool {
    match hex::decode(sign) {
        Ok(tag) if tag.len() == SIGN_BYTES => mac(key, path, expire).verify_truncated_left(&tag).is_ok(),
        _ => false,
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

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

impl CdnLogs {
    pub(crate) fn new(shared: Arc<Shared>, config: CdnConfig, addr: SocketAddr) -> Self {
        let key = signing_key(shared.seed);
        let limiter = RateLimiter::new(config.rate_per_minute, config.rate_per_hour);
        // One 24-hour listing touches 25 hours of every domain it names; keep the truth's three
        // days of every domain, so that a client loading them again (a benchmark's repeated
        // runs) is served from memory instead of making the files again.
        let capacity = (24 * TRUTH_DAYS as usize + 2) * config.domains.len() + 8;
        Self {
            shared,
            config,
            addr,
            key,
            cache: DayCache::new(capacity),
            limiter,
            listing: Mutex::new(VecDeque::new()),
            downloads: DownloadCounters::default(),
            downloaded: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(LIST_PATH, any(handle_listing))
            .route("/cdn-dl/{*file}", any(handle_download))
            .route(REQUESTS_PATH, get(request_log))
            .with_state(self)
    }

    /// The files of a slot (`slot_secs` a multiple of 300).
    fn slot_files(&self, domain: usize, slot_secs: i64) -> Vec<Arc<LogFile>> {
        let hour = slot_secs.div_euclid(3600);
        let files = self.cache.get_or_make((domain, hour), || {
            (0..12)
                .map(|k| {
                    generate_slot(
                        self.shared.seed,
                        &self.config.domains[domain],
                        hour * 3600 + k * SLOT_SECS,
                        self.config.lines_per_slot,
                    )
                    .into_iter()
                    .map(Arc::new)
                    .collect()
                })
                .collect()
        });
        files[(slot_secs.rem_euclid(3600) / SLOT_SECS) as usize].clone()
    }

    fn log_listing(&self, entry: ListingEntry) {
        let mut log = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= MAX_LOGGED {
            log.pop_front();
        }
        log.push_back(entry);
    }

    /// The listing body, or why not. Runs on a blocking thread (it may generate a day of files).
    fn answer(&self, method: &Method, raw_query: Option<&str>, host: &str, now_secs: i64) -> Result<String, ApiError> {
        if method != Method::GET {
            return Err(ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "LLS.MethodNotAllowed",
                message: format!("{method} is not allowed; the delivery log list is read with GET"),
            });
        }
        let query = parse_query(raw_query)?;
        let mut indices = Vec::with_capacity(query.domains.len());
        for d in &query.domains {
            match self.config.domains.iter().position(|k| k == d) {
                Some(i) => indices.push(i),
                None => {
                    return Err(ApiError {
                        status: StatusCode::BAD_REQUEST,
                        code: "LLS.Domain.NotFound",
                        message: "Domain name is not found.".into(),
                    });
                }
            }
        }
        let expire = (now_secs.max(0) as u64).saturating_add(self.config.url_ttl_secs);
        let published_before = now_secs - SLOT_SECS - self.config.publish_delay_secs.min(i64::MAX as u64 / 2) as i64;
        let mut out = String::with_capacity(64 * 1024);
        out.push('[');
        for (n, &di) in indices.iter().enumerate() {
            let domain = &self.config.domains[di];
            if n > 0 {
                out.push(',');
            }
            out.push_str("\n{\"domain\": ");
            push_json_str(&mut out, domain);
            out.push_str(", \"logs\": [");
            for (k, t) in query.slots().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                let when = utc(t);
                let _ = write!(
                    out,
                    "\n  {{\"timestamp\": \"{}\", \"{}\": [",
                    when.format("%Y-%m-%dT%H:%M:%SZ"),
                    values_key(self.shared.seed, domain, t)
                );
                if t <= published_before {
                    let day = when.format("%Y%m%d");
                    for (i, f) in self.slot_files(di, t).iter().enumerate() {
                        let path = format!("{DOWNLOAD_PREFIX}{domain}/{day}/{}", f.name);
                        let url = format!(
                            "http://{host}{path}?expire={expire}&sign={}",
                            sign(&self.key, &path, expire)
                        );
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str("\n    {\"name\": ");
                        push_json_str(&mut out, &f.name);
                        out.push_str(", \"url\": ");
                        push_json_str(&mut out, &url);
                        let _ = write!(out, ", \"size\": {}}}", f.gz.len());
                    }
                }
                out.push_str("]}");
            }
            out.push_str("]}");
        }
        out.push_str("\n]\n");
        Ok(out)
    }
}

async fn request_log(State(api): State<Arc<CdnLogs>>) -> axum::Json<RequestLog> {
    let listing = api
        .listing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    axum::Json(RequestLog {
        listing,
        downloads: api.downloads.snapshot(),
    })
}

fn rate_limited(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "LLS.RateLimit.Exceeded",
        message: message.into(),
    }
}

async fn handle_listing(
    State(api): State<Arc<CdnLogs>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let at_ms = Utc::now().timestamp_millis();
    let stats = &api.shared.stats.cdn_logs;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let entry = |status: StatusCode, limited: bool, fault: bool| ListingEntry {
        at_ms,
        status: status.as_u16(),
        limited,
        fault,
        query: raw_query.clone().unwrap_or_default(),
    };

    if let Err(wait) = api.limiter.admit() {
        let secs = wait.as_millis().div_ceil(1000).max(1);
        api.log_listing(entry(StatusCode::TOO_MANY_REQUESTS, true, false));
        tracing::info!(api = "cdn-logs", retry_after = secs, "listing rate limit exceeded");
        let err = rate_limited(&format!(
            "Rate limit exceeded: at most {} requests per minute and {} per hour. Retry after {secs} s.",
            api.config.rate_per_minute, api.config.rate_per_hour
        ));
        return with_retry_after(error_response(&err), &secs.to_string());
    }

    let (request_id, counter) = api.shared.next_request_id();
    let mut drop_connection = false;
    let mut faulted = false;
    if let Some(fault) = api.shared.faults.pick() {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        faulted = true;
        tracing::info!(api = "cdn-logs", %request_id, fault = fault.name(), "injecting a listing fault");
        let refusal = match fault {
            Fault::InternalError => Some((
                error_response(&ApiError::internal("injected fault: internal error")),
                None,
            )),
            Fault::Unavailable { retry_after } => {
                let err = ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "LLS.ServiceUnavailable",
                    message: "injected fault: service unavailable".into(),
                };
                Some((error_response(&err), retry_after.then(|| "1".to_string())))
            }
            Fault::TooManyRequests { retry_after } => Some((
                error_response(&rate_limited("injected fault: rate limit exceeded")),
                Some(retry_after.header_value()),
            )),
            Fault::DropConnection => {
                drop_connection = true;
                None
            }
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                None
            }
        };
        if let Some((resp, retry_after)) = refusal {
            api.log_listing(entry(resp.status(), false, true));
            return match retry_after {
                Some(v) => with_retry_after(resp, &v),
                None => resp,
            };
        }
    }

    let host = url_host(&headers, api.addr);
    let now_secs = Utc::now().timestamp();
    let worker = api.clone();
    let query = raw_query.clone();
    let answered = tokio::task::spawn_blocking(move || worker.answer(&method, query.as_deref(), &host, now_secs))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("building the listing failed: {e}"))));
    match answered {
        Ok(body) => {
            api.log_listing(entry(StatusCode::OK, false, faulted));
            if drop_connection {
                return json_response(StatusCode::OK, truncated_body(Bytes::from(body)));
            }
            stats.data_requests.fetch_add(1, Ordering::Relaxed);
            tracing::info!(api = "cdn-logs", %request_id, bytes = body.len(), "listing served");
            json_response(StatusCode::OK, crate::chunked_body(Bytes::from(body), counter))
        }
        Err(err) => {
            api.log_listing(entry(err.status, false, faulted));
            tracing::info!(api = "cdn-logs", %request_id, status = err.status.as_u16(), code = err.code, message = %err.message, "listing refused");
            if drop_connection {
                return json_response(err.status, truncated_body(Bytes::from(render_error(&err))));
            }
            error_response(&err)
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------------------------------------

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>\n"
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    resp
}

/// What a `Range` header asks of a `len`-byte file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No usable single byte range: the whole file, 200.
    Whole,
    /// Bytes `start..=end`, 206.
    Part { start: usize, end: usize },
    /// 416.
    Unsatisfiable,
}

pub(crate) fn parse_range(value: Option<&str>, len: usize) -> RangeAsk {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<usize> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().unwrap_or(usize::MAX))
    };
    match (num(a), num(b)) {
        (Some(start), None) if b.is_empty() => {
            if start < len {
                RangeAsk::Part { start, end: len - 1 }
            } else {
                RangeAsk::Unsatisfiable
            }
        }
        (Some(start), Some(end)) if start <= end => {
            if start < len {
                RangeAsk::Part {
                    start,
                    end: end.min(len - 1),
                }
            } else {
                RangeAsk::Unsatisfiable
            }
        }
        (None, Some(suffix)) if a.is_empty() => {
            if suffix == 0 || len == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part {
                    start: len - suffix.min(len),
                    end: len - 1,
                }
            }
        }
        _ => RangeAsk::Whole,
    }
}

/// `{domain}/{yyyyMMdd}/{name}` resolved to a configured domain and a slot.
fn locate(config: &CdnConfig, rest: &str) -> Option<(usize, i64, String)> {
    let mut parts = rest.split('/');
    let (domain, day, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let di = config.domains.iter().position(|d| d == domain)?;
    let stem = name.strip_suffix(".log.gz")?;
    let stamp = stem.get(..14)?;
    let index_ok = matches!(&stem[14..], "" | "-1" | "-2");
    if !index_ok || !stamp.bytes().all(|c| c.is_ascii_digit()) || day != &stamp[..8] {
        return None;
    }
    let t = parse_time("name", &format!("{}T{}Z", &stamp[..8], &stamp[8..])).ok()?;
    (t.rem_euclid(SLOT_SECS) == 0).then(|| (di, t, name.to_string()))
}

async fn handle_download(State(api): State<Arc<CdnLogs>>, method: Method, headers: HeaderMap, uri: Uri) -> Response {
    let counters = &api.downloads;
    let stats = &api.shared.stats.cdn_logs;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if !api.config.download_delay.is_zero() {
        tokio::time::sleep(api.config.download_delay).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return xml_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Use GET to download a log file",
        );
    }
    let path = uri.path();
    let mut expire = None;
    let mut sign_param = None;
    let mut malformed = false;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        let slot = match k.as_ref() {
            "expire" => &mut expire,
            "sign" => &mut sign_param,
            _ => continue,
        };
        malformed |= slot.replace(v.into_owned()).is_some();
    }
    let expire = expire
        .filter(|e| !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|e| e.parse::<u64>().ok());
    let (Some(expire), Some(sign_param)) = (expire, sign_param) else {
        counters.denied.fetch_add(1, Ordering::Relaxed);
        return xml_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires one expire (Unix seconds) and one sign parameter",
        );
    };
    if malformed || !verify(&api.key, path, expire, &sign_param) {
        counters.denied.fetch_add(1, Ordering::Relaxed);
        return xml_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided",
        );
    }
    if Utc::now().timestamp() > expire.min(i64::MAX as u64) as i64 {
        counters.expired.fetch_add(1, Ordering::Relaxed);
        return xml_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    let found = path
        .strip_prefix(DOWNLOAD_PREFIX)
        .and_then(|rest| locate(&api.config, rest))
        .and_then(|(di, slot, name)| {
            let file = api.slot_files(di, slot).into_iter().find(|f| f.name == name)?;
            Some((di, file))
        });
    let Some((di, file)) = found else {
        counters.not_found.fetch_add(1, Ordering::Relaxed);
        return xml_error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist.");
    };

    let len = file.gz.len();
    let range = parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), len);
    let (start, end) = match range {
        RangeAsk::Whole => (0, len - 1),
        RangeAsk::Part { start, end } => (start, end),
        RangeAsk::Unsatisfiable => {
            let mut resp = xml_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    if method == Method::HEAD {
        return file_response(&file, range, start, end, Body::empty(), Some(end + 1 - start));
    }

    let mut short = false;
    let mut reset = false;
    if let Some(fault) = api.shared.faults.pick() {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        counters.faults.fetch_add(1, Ordering::Relaxed);
        tracing::info!(api = "cdn-logs", file = %file.name, fault = fault.name(), "injecting a download fault");
        match fault {
            Fault::InternalError => {
                return xml_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                );
            }
            Fault::Unavailable { retry_after } => {
                let resp = xml_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "Please reduce your request rate.",
                );
                return if retry_after { with_retry_after(resp, "1") } else { resp };
            }
            Fault::TooManyRequests { .. } => short = true,
            Fault::DropConnection => reset = true,
            Fault::Slow(delay) => tokio::time::sleep(delay).await,
        }
    } else if api.config.truncate_first && !file.records.is_empty() {
        let first = api
            .downloaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((di, file.name.clone()));
        if first {
            short = true;
            counters.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    let wanted = file.gz.slice(start..=end);
    if short && wanted.len() > 1 {
        // A whole-file answer is cut where [`LogFile::short_len`] says; a range answer in its middle.
        let keep = if start == 0 {
            file.short_len().min(wanted.len() - 1)
        } else {
            wanted.len() / 2
        };
        tracing::info!(api = "cdn-logs", file = %file.name, sent = keep, of = wanted.len(), "sending a short body");
        let part = wanted.slice(..keep);
        return file_response(&file, range, start, start + keep - 1, Body::from(part), None);
    }
    if reset {
        // Content-Length announces the whole answer; the body stops halfway and the connection drops.
        let n = wanted.len();
        return file_response(&file, range, start, end, truncated_body(wanted), Some(n));
    }
    counters.ok.fetch_add(1, Ordering::Relaxed);
    stats.data_requests.fetch_add(1, Ordering::Relaxed);
    file_response(&file, range, start, end, Body::from(wanted), None)
}

/// A 200 (whole file asked) or 206 (range asked) answer for bytes `start..=end` of `file`; `length` sets
/// `Content-Length` explicitly (for bodies whose size hyper cannot see).
fn file_response(
    file: &LogFile,
    range: RangeAsk,
    start: usize,
    end: usize,
    body: Body,
    length: Option<usize>,
) -> Response {
    let status = match range {
        RangeAsk::Part { .. } => StatusCode::PARTIAL_CONTENT,
        _ => StatusCode::OK,
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a64(&file.gz))) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{}", file.gz.len()))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Some(n) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    fn gunzip_all(gz: &[u8]) -> String {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(gz), &mut s).expect("valid gzip");
        s
    }

    #[test]
    fn a_slot_is_a_pure_function_of_seed_domain_and_time() {
        let t = day_start_secs(day("2026-03-14")) + 12 * 3600;
        let busy = (0..50)
            .map(|k| t + k * SLOT_SECS)
            .find(|&s| !generate_slot(1, "a.example", s, 40).is_empty())
            .expect("a slot with files");
        let a = generate_slot(1, "a.example", busy, 40);
        assert_eq!(a, generate_slot(1, "a.example", busy, 40));
        assert_ne!(a, generate_slot(2, "a.example", busy, 40));
        assert_ne!(a, generate_slot(1, "b.example", busy, 40));
        assert_ne!(a, generate_slot(1, "a.example", busy + SLOT_SECS, 40));
    }

    #[test]
    fn files_decode_to_their_text_and_hold_their_records() {
        let start = day_start_secs(day("2026-02-01"));
        let (mut multi, mut mid_line, mut header_only, mut no_newline, mut repeated, mut named) = (0, 0, 0, 0, 0, 0);
        let mut files_seen = 0;
        let mut empty_slots = 0;
        for k in 0..SLOTS_PER_DAY {
            let slot = start + k * SLOT_SECS;
            let files = generate_slot(9, "live.example.com", slot, 40);
            empty_slots += usize::from(files.is_empty());
            for (i, f) in files.iter().enumerate() {
                files_seen += 1;
                assert_eq!(f.name, file_name(slot, i));
                assert_eq!(gunzip_all(&f.gz), f.text);
                assert_eq!(*f.member_ends.last().expect("a member"), f.gz.len());
                assert_eq!(f.member_ends.len(), f.text_cuts.len() + 1);
                let lines: Vec<&str> = f.text.lines().filter(|l| !l.starts_with('#')).collect();
                assert_eq!(lines.len(), f.records.len());
                for (line, r) in lines.iter().zip(&f.records) {
                    let mut expect = String::new();
                    write_record(&mut expect, r);
                    assert_eq!(*line, expect);
                    assert!((slot * 1000..(slot + SLOT_SECS) * 1000).contains(&r.at_ms));
                }
                assert!(f.text.starts_with("#Version: 1.0\n#Software: "));
                multi += usize::from(f.member_ends.len() > 1);
                mid_line += usize::from(f.text_cuts.iter().any(|&c| f.text.as_bytes()[c - 1] != b'\n'));
                header_only += usize::from(f.records.is_empty());
                no_newline += usize::from(!f.text.ends_with('\n'));
                repeated += usize::from(f.text.matches("#Fields:").count() > 1);
                named += usize::from(f.gz[3] & 0x08 != 0);
            }
        }
        assert!((20..=70).contains(&empty_slots), "{empty_slots} empty slots of 288");
        assert!(
            multi * 5 > files_seen && mid_line > 10,
            "{multi} multi-member ({mid_line} mid-line) of {files_seen}"
        );
        assert!(header_only >= 5, "{header_only} header-only files");
        assert!(
            no_newline >= 10 && repeated >= 5 && named >= 50,
            "{no_newline} {repeated} {named}"
        );
    }

    #[test]
    fn records_cover_the_awkward_values() {
        let start = day_start_secs(day("2026-01-10"));
        let records: Vec<CdnRecord> = (0..SLOTS_PER_DAY * 3)
            .flat_map(|k| generate_slot(4, "vod.example.com", start + k * SLOT_SECS, 40))
            .flat_map(|f| f.records)
            .collect();
        let ids: HashSet<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids.len(), records.len(), "request ids are unique");
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()))
        );
        for m in ["GET", "HEAD", "POST", "OPTIONS", "PUT"] {
            assert!(records.iter().any(|r| r.method == m), "{m}");
        }
        for p in ["HTTP/1.1", "HTTP/2.0", "HTTP/3"] {
            assert!(records.iter().any(|r| r.protocol == p), "{p}");
        }
        assert!(records.iter().any(|r| r.bytes > 1 << 32));
        assert!(records.iter().any(|r| r.client_ip.contains(':')));
        assert!(records.iter().any(|r| r.client_ip.starts_with("::ffff:")));
        for r in &records {
            let parsed: std::net::IpAddr = r.client_ip.parse().expect("an IP address");
            assert_eq!(parsed.to_string(), r.client_ip, "canonical text");
        }
        assert!(
            records
                .iter()
                .any(|r| r.url.contains('"') && r.url.contains(' ') && !r.url.is_ascii())
        );
        assert!(records.iter().any(|r| r.url.ends_with('\\')));
        assert!(records.iter().any(|r| r.referer.is_none()) && records.iter().any(|r| r.user_agent.is_none()));
        assert!(records.iter().any(|r| r.cache_status.is_none()));
        assert!(records.windows(2).any(|w| w[0].at_ms == w[1].at_ms), "ties");
        assert!(records.iter().any(|r| r.at_ms % 300_000 == 0) && records.iter().any(|r| r.at_ms % 300_000 == 299_999));
    }

    #[test]
    fn quoted_fields_escape_only_quote_and_backslash() {
        let mut s = String::new();
        write_quoted(&mut s, Some("a \"b\" c:\\d\\ é"));
        assert_eq!(s, "\"a \\\"b\\\" c:\\\\d\\\\ é\"");
        s.clear();
        write_quoted(&mut s, None);
        assert_eq!(s, "\"-\"");
    }

    #[test]
    fn both_keys_occur_in_every_day() {
        for i in 0..30 {
            let start = day_start_secs(day("2026-05-01") + Days::new(i));
            let keys: HashSet<&str> = (0..SLOTS_PER_DAY)
                .map(|k| values_key(3, "live.example.com", start + k * SLOT_SECS))
                .collect();
            assert_eq!(keys.len(), 2);
        }
    }

    #[test]
    fn names_and_times_follow_the_seed() {
        let t = parse_time("started", "20250911T175500Z").expect("valid");
        assert_eq!(file_name(t, 0), "20250911175500.log.gz");
        assert_eq!(file_name(t, 2), "20250911175500-2.log.gz");
        for bad in [
            "2025-09-11T17:55:00Z",
            "20250911T1755Z",
            "20250911T175500",
            "20250230T000000Z",
            "20250911T240000Z",
            "20250911t175500Z",
            "",
        ] {
            let err = parse_time("ended", bad).expect_err(bad);
            assert!(err.message.contains("ended"), "{}", err.message);
        }
    }

    #[test]
    fn slots_run_from_floor_to_ceiling() {
        let q = |s: &str, e: &str| parse_query(Some(&format!("domain=a&started={s}&ended={e}"))).expect("valid");
        let whole = q("20250911T000000Z", "20250911T235959Z");
        let slots: Vec<i64> = whole.slots().collect();
        assert_eq!(slots.len(), 289);
        assert_eq!(slots[288], parse_time("x", "20250912T000000Z").expect("valid"));
        let odd: Vec<i64> = q("20250911T173201Z", "20250911T174000Z").slots().collect();
        assert_eq!(
            odd.first().copied(),
            Some(parse_time("x", "20250911T173000Z").expect("valid"))
        );
        assert_eq!(odd.len(), 3);
    }

    #[test]
    fn queries_are_checked_strictly() {
        let ok = parse_query(Some(
            "domain=a,b&domain=c&domain=a&started=20250911T000000Z&ended=20250912T000000Z",
        ))
        .expect("valid");
        assert_eq!(ok.domains, ["a", "b", "c"]);
        for (raw, needle) in [
            ("started=20250911T000000Z&ended=20250911T010000Z", "domain"),
            ("domain=a&ended=20250911T010000Z", "started"),
            ("domain=a&started=20250911T000000Z", "ended"),
            ("domain=a,,b&started=20250911T000000Z&ended=20250911T010000Z", "domain"),
            ("domain=&started=20250911T000000Z&ended=20250911T010000Z", "domain"),
            (
                "domain=a&started=20250911T000000Z&started=20250911T000000Z&ended=20250911T010000Z",
                "started",
            ),
            ("domain=a&started=20250911T010000Z&ended=20250911T000000Z", "ended"),
            ("domain=a&started=20250911T000000Z&ended=20250912T000001Z", "24 hours"),
            ("domain=a&start=20250911T000000Z&ended=20250911T010000Z", "start"),
        ] {
            let err = parse_query(Some(raw)).expect_err(raw);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(needle), "{raw}: {}", err.message);
        }
    }

    #[test]
    fn the_limiter_keeps_both_sliding_windows() {
        let t0 = Instant::now();
        let mut q = VecDeque::new();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        for i in 0..3 {
            assert_eq!(RateLimiter::admit_at(&mut q, at(f64::from(i)), 3, 5), Ok(()));
        }
        assert_eq!(
            RateLimiter::admit_at(&mut q, at(10.0), 3, 5),
            Err(Duration::from_secs(50))
        );
        assert_eq!(q.len(), 3, "refused requests do not count");
        assert_eq!(RateLimiter::admit_at(&mut q, at(60.0), 3, 5), Ok(()));
        assert_eq!(RateLimiter::admit_at(&mut q, at(61.5), 3, 5), Ok(()));
        // Five in the hour: the next waits for the first (t=0) to leave the hour.
        assert_eq!(
            RateLimiter::admit_at(&mut q, at(200.0), 3, 5),
            Err(Duration::from_secs(3400))
        );
        assert_eq!(RateLimiter::admit_at(&mut q, at(3600.0), 3, 5), Ok(()));
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=4-"), 10), RangeAsk::Part { start: 4, end: 9 });
        assert_eq!(parse_range(Some("bytes=4-6"), 10), RangeAsk::Part { start: 4, end: 6 });
        assert_eq!(parse_range(Some("bytes=4-60"), 10), RangeAsk::Part { start: 4, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeAsk::Part { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=-30"), 10), RangeAsk::Part { start: 0, end: 9 });
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=6-4"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeAsk::Whole);
    }

    #[test]
    fn signatures_bind_path_and_expiry() {
        let key = signing_key(5);
        let s = sign(&key, "/cdn-dl/a/20250911/20250911175500.log.gz", 1_700_000_000);
        assert_eq!(s.len(), 40);
        assert!(verify(
            &key,
            "/cdn-dl/a/20250911/20250911175500.log.gz",
            1_700_000_000,
            &s
        ));
        assert!(verify(
            &key,
            "/cdn-dl/a/20250911/20250911175500.log.gz",
            1_700_000_000,
            &s.to_uppercase()
        ));
        assert!(!verify(
            &key,
            "/cdn-dl/a/20250911/20250911175500-1.log.gz",
            1_700_000_000,
            &s
        ));
        assert!(!verify(
            &key,
            "/cdn-dl/a/20250911/20250911175500.log.gz",
            1_700_000_001,
            &s
        ));
        assert!(!verify(
            &signing_key(6),
            "/cdn-dl/a/20250911/20250911175500.log.gz",
            1_700_000_000,
            &s
        ));
        assert!(!verify(
            &key,
            "/cdn-dl/a/20250911/20250911175500.log.gz",
            1_700_000_000,
            &s[..38]
        ));
    }

    #[test]
    fn the_canonical_text_follows_the_contract() {
        let start = day_start_secs(day("2026-04-01"));
        let (r, name) = (0..SLOTS_PER_DAY)
            .flat_map(|k| generate_slot(5, "live.example.com", start + k * SLOT_SECS, 40))
            .flat_map(|f| f.records.into_iter().map(move |r| (r, f.name.clone())))
            .find(|(r, _)| r.referer.is_none() && r.cache_status.is_none())
            .expect("a record without referer and cache status");
        let c = canonical(&r, &name);
        let fields: Vec<&str> = c.split('\u{1f}').collect();
        assert_eq!(fields.len(), 14);
        assert_eq!(fields[0], (r.at_ms * 1000).to_string());
        assert_eq!(fields[3], r.url);
        assert_eq!(fields[8], "-");
        assert_eq!(fields[10], "-");
        assert_eq!(fields[13], name);
    }
}
