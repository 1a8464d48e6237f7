//! The WebDAV log store of a Personium-style cell (`PROPFIND {cell}/__log/archive`, `{cell}/__log/current`,
//! and `GET` of the listed files), simulated from its seed document.
//!
//! Everything here is read off `seeds/webdav-log-files-api.txt` and the "General" and "WebDAV log store"
//! sections of `FORMATS.md`, not off the client, so that a client that misreads the seed fails against it.
//! Where the seed's tables and its XML sample disagree, the service behaves like the sample (FORMATS.md).
//! What a client may rely on:
//!
//! # The cell
//! The store lives under `http://127.0.0.1:PORT/{cell}/__log/` with `{cell}` = `--webdav-cell` (default
//! `sim-cell`), so a client's cell URL is `http://127.0.0.1:PORT/sim-cell/`. Every request to the cell must
//! carry `Authorization: Bearer {--webdav-token}` (default `sim-webdav-token`; the scheme is matched
//! case-insensitively, the token exactly). A missing or different token is `401` with
//! `WWW-Authenticate: Bearer realm="..."`. The seed's `p_cookie_peer` query parameter is not supported
//! (a request that only carries it is a 401). Every answer of the cell carries
//! `Access-Control-Allow-Origin: *` and `X-Personium-Version`.
//!
//! Errors are JSON, `{"code": "PR4xx-..", "message": {"lang": "en", "value": "..."}}` (FORMATS.md), with
//! `Content-Type: application/json`:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `PR400-DV-0001` | `Depth` missing, or not exactly `0` or `1` |
//! | 400 | `PR400-DV-0002` | a `PROPFIND` body that is not empty and not `{DAV:}propfind` holding one `{DAV:}allprop` |
//! | 401 | `PR401-AU-0001` | no `Authorization`, another scheme, or a wrong token |
//! | 404 | `PR404-DV-0001` | no such collection or file (also a file that rotated out of the archive) |
//! | 405 | `PR405-MC-0001` | a method other than `PROPFIND` on a collection, or other than `PROPFIND`/`GET`/`HEAD` on a file |
//! | 500 | `PR500-SV-0000` | injected fault |
//! | 503 | `PR503-SV-0002` | injected fault (with or without `Retry-After`) |
//!
//! Checked in this order: injected fault, authentication, path, method, `Depth`, body. The seed's
//! `X-HTTP-Method-Override` (on a `POST`) and `X-Override: Name:Value` (any number of them, each
//! replacing that header) are honoured, so `POST` + `X-HTTP-Method-Override: PROPFIND` + `X-Override:
//! Depth:1` is a `PROPFIND` with `Depth: 1`. File names in paths are compared as sent (not
//! percent-decoded); query strings are ignored.
//!
//! # Listing (`PROPFIND`)
//! `PROPFIND` on `{cell}/__log/archive` or `{cell}/__log/current`, with or without a trailing slash. The
//! body may be empty (treated as `allprop`, as the seed says) or `<propfind xmlns="DAV:"><allprop/>
//! </propfind>` with any prefix (matched by namespace URI and local name); the seed supports nothing but
//! `allprop`, so any other body is a 400. `Depth: 0` answers the collection alone, `Depth: 1` the
//! collection and its files. `PROPFIND` on a file answers that file alone (either depth).
//!
//! The answer is `207` (`Content-Type: application/xml`, chunked) laid out exactly like the seed's sample:
//! an XML declaration, then one element per line, no indentation, every element in the default namespace
//! `DAV:` (the root also declares `xmlns:p="urn:x-personium:xmlns"`, which no element uses: the sample
//! puts `getlastmodified` and `resourcetype` in `DAV:` although the seed's table says `p:`):
//!
//! ```xml
//! <?xml version="1.0" encoding="utf-8"?>
//! <multistatus xmlns="DAV:" xmlns:p="urn:x-personium:xmlns">
//! <response>
//! <href>http://127.0.0.1:PORT/sim-cell/__log/archive</href>
//! <propstat>
//! <prop>
//! <creationdate>2025-11-15T06:17:03.456+0000</creationdate>
//! <getlastmodified>Tue, 18 Nov 2025 00:17:03 GMT</getlastmodified>
//! <resourcetype>
//! <collection/>
//! </resourcetype>
//! </prop>
//! <status>HTTP/1.1 200 OK</status>
//! </propstat>
//! </response>
//! <response>
//! <href>http://127.0.0.1:PORT/sim-cell/__log/archive/default.log.1763424823456.zip</href>
//! <propstat>
//! <prop>
//! <creationdate>2025-11-18T00:13:43.456+0000</creationdate>
//! <getcontentlength>21877</getcontentlength>
//! <getcontenttype>application/zip</getcontenttype>
//! <getlastmodified>Tue, 18 Nov 2025 00:13:43 GMT</getlastmodified>
//! <resourcetype/>
//! </prop>
//! <status>HTTP/1.1 200 OK</status>
//! </propstat>
//! </response>
//! </multistatus>
//! ```
//!
//! - `href`s are absolute URLs `http://{Host}/{cell}/__log/...` built from the request's `Host` header (the
//!   bound address when it has none or an odd one); a collection's `href` has no trailing slash (as in the
//!   sample) whatever the request had.
//! - The collection's own `response` comes first; the files follow **in no particular order**: they are
//!   shuffled afresh for every request.
//! - Files have `creationdate`, `getcontentlength` (the exact byte length a `GET` returns),
//!   `getcontenttype` (`text/csv`, or `application/zip` for a `.zip`), `getlastmodified` and an empty
//!   `<resourcetype/>`, in that order. `creationdate` is `yyyy-MM-ddTHH:mm:ss.SSS+0000` (UTC),
//!   `getlastmodified` RFC 1123 (`Tue, 18 Nov 2025 00:13:43 GMT`). An archive's `creationdate` and
//!   `getlastmodified` are its rotation time; the current file's `creationdate` is the last rotation and
//!   its `getlastmodified` the time of its newest record. The collections' `creationdate` is the start
//!   of the oldest generation ever generated; their `getlastmodified` the newest rotation (archive) or
//!   the current file's `getlastmodified` (current).
//!
//! # Files (`GET`, `HEAD`)
//! - `{cell}/__log/current/default.log`: the generation being written, `text/csv`.
//! - `{cell}/__log/archive/default.log.{epoch-ms}` (`text/csv`) or `default.log.{epoch-ms}.zip`
//!   (`application/zip`): a rotated generation; `{epoch-ms}` is the moment it was rotated. Only the name the
//!   listing shows exists (a zipped archive has no plain twin).
//! - `200` with `Content-Length`, `Last-Modified`, an `ETag`; `Range` is ignored (always the whole file).
//! - A zip holds exactly one entry, deflated, named like the archive without `.zip`
//!   (`default.log.{epoch-ms}`), whose bytes are the event-log CSV.
//!
//! **Event-log CSV** (FORMATS.md): UTF-8 without BOM, no header row, every record followed by LF, every
//! field double-quoted with quotes doubled, ten fields: `dateTime` (`yyyy-MM-ddTHH:mm:ss.SSSZ`, UTC), level
//! (`[INFO ]`, `[WARN ]`, `[ERROR]`), `RequestKey` (unique per event: the seed's automatic
//! `{4}_{18}` base64url form, or a client-given key of letters, digits, `-` and `_`), source (`server` or
//! `client`), schema (an application URL or empty), subject (`https://.../#user` or empty), type (an HTTP
//! method for server events, an event type like `cellctl.Role.create` for client events), object (a
//! resource URL), result (an HTTP status for server events, free text or empty for client events), bytes
//! (a decimal integer, sometimes above 2^32). Awkward but legal content occurs in every generation of a
//! few hundred records: quotes, commas, semicolons, tabs, raw Japanese and emoji, and line breaks inside
//! quoted fields (in `result`, and now and then in `object`), leading and trailing spaces, empty fields,
//! several records with the same millisecond. No field is ever the single character `-` (it stands for
//! "empty" in the fingerprint). Records are in `dateTime` order within a file.
//!
//! # Generations and rotation
//! The store holds the current generation and at most 12 rotated ones (the seed's 12 generations): when a
//! rotation makes a 13th, the oldest archive disappears (its `GET` becomes a 404). Generations are numbered
//! from 0; generation `n` is zipped when archived iff `n % 3 == 2` (so about every third archive is a
//! `.zip`, the rest plain). The records of generation `n` are a pure function of `(--seed, n,
//! --webdav-rows-per-file)` except for their `dateTime`s, which lie in `[previous rotation, own
//! rotation)` (for the current generation: `[last rotation, the moment it was generated)`): about
//! `--webdav-rows-per-file` records (default 200; the count varies between half and one and a half times
//! that), in time order, even generations with a record stamped exactly at the previous rotation, and a
//! generation whose window contains a UTC midnight with records at `23:59:59.999` and `00:00:00.000` around
//! it, so one archive in four spans two UTC days.
//!
//! At start-up the store holds generations 0 to 11 as archives and generation 12 as the current file. The
//! archives were rotated on a 6-hour grid (`k * 6 h + offset`, the offset a function of `--seed`): the newest
//! rotation is the latest grid point at least a minute before start-up, so two simulators with the same seed
//! started within the same 6-hour period serve the same archives. The store never rotates on its own:
//! `POST /_sim/webdav/rotate` rotates now. The current file becomes `archive/default.log.{T}` (`.zip` by
//! the rule above), where `T` is the request time (moved forward if needed so that `T` is later than
//! every record of that generation and than the previous rotation); a new current generation begins, whose
//! records are stamped within the first 500 ms after `T`. The call answers only once those 500 ms have
//! passed, so no record is ever later than "now" once the call returned:
//! `{"archived": "default.log.T[.zip]", "removed": ["default.log.X[.zip]"], "rotated_at_ms": T,
//! "current_generation": n}`. Rotations are serialised.
//!
//! # Hostile switches
//! - `--webdav-evil-zip-entry`: the newest zipped archive (whichever that is at the moment of the request)
//!   names its one entry `../../x` instead of `default.log.{epoch-ms}`; the entry's content is unchanged and
//!   the listing's `getcontentlength` is that zip's length. A client must never turn the name into a path.
//! - `--webdav-evil-href`: the `archive` listing (Depth 1) also lists three files that are not in the cell:
//!   `http://{Host}/other-cell/__log/archive/default.log.1` (another cell on the same server),
//!   `http://{Host}/{cell}/__log/archive/%2e%2e/%2e%2e/secret` (dot segments that a WHATWG URL parser
//!   resolves to `/{cell}/secret`), and `http://evil.invalid/{cell}/__log/archive/default.log.2` (another
//!   host). They look like plain `text/csv` archives. With the switch on, `GET` of
//!   `/other-cell/__log/archive/default.log.1`, `/{cell}/secret` or the raw `%2e%2e` path answers `200` with
//!   a one-record bait CSV, so a client that follows them ingests a record that is in no truth. Every
//!   authenticated request to a path of the cell (or of another cell's `__log`) that is no collection or
//!   file of the store is counted under `other_paths` in `/_sim/webdav/requests`, keyed by the raw path
//!   (the `evil.invalid` host never resolves, so following that one fails in the client).
//!
//! # Ground truth
//! `GET /_sim/webdav/truth` describes the store as it is at that moment (rotation changes it):
//!
//! ```json
//! {"files": {"default.log": {"rows": 190, "fingerprint": "0f3a..."},
//!            "default.log.1763424823456.zip": {"rows": 231, "fingerprint": "..."}},
//!  "days": {"2025-11-17": {"rows": 812, "per_level": {"INFO": 700, "WARN": 90, "ERROR": 22},
//!                          "fingerprint": "..."}},
//!  "fingerprint_definition": "..."}
//! ```
//!
//! `files` has exactly the files in the store (the current file and the archives, under the names the
//! listing shows; the hostile hrefs are not files); `days` groups all their records by the UTC day of
//! `dateTime`. The same object is written under `webdav_logs` in the `--truth` file at start-up.
//!
//! **Fingerprint contract:** per record, the canonical text is these 10 fields joined by U+001F: `dateTime`
//! as integer epoch microseconds, the level without brackets or padding (`INFO`, `WARN`, `ERROR`),
//! `RequestKey`, `source`, `schema`, `subject`, `type`, `object`, `result`, `bytes` (decimal); every empty
//! field is written as `-`; the file name is *not* part of it, so a record keeps its hash when the current
//! file becomes an archive. The record hash is FNV-1a-64 of the canonical text's UTF-8 bytes; a file's or
//! a day's fingerprint is the wrapping u64 sum of its records' hashes, as 16 lowercase hex digits.
//!
//! # Test hooks and faults
//! `GET /_sim/webdav/requests` returns `{"propfind": N, "get": {"default.log.1763424823456.zip": 1, ...},
//! "rotations": R, "other_paths": {"/sim-cell/secret": 1}, "refused": {"401": n, ...}, "faults": F}`:
//! `propfind` counts `207` answers sent in full, `get` complete `200` `GET`s per file name (not `HEAD`, not
//! faulted ones), `refused` the 4xx answers by status. `/_sim/stats` has `webdav_logs` with the usual
//! `requests` (every request to a cell path), `data_requests` (complete 207s and file 200s) and `faults`.
//!
//! `--fault-rate p` gives each cell request, before anything else, the usual faults: `500`, `503` with
//! `Retry-After: 1`, `503` without it, `503` with a `Retry-After` as delta-seconds or as an HTTP-date (the
//! common fault set's 429, which this store answers as 503), a connection dropped in the middle of the body
//! (a `PROPFIND`'s chunked body stops before `</multistatus>`; a file's body stops halfway although
//! `Content-Length` announced all of it), or a 1-2 s delay before a normal answer. A dropped connection
//! only ever cuts a `207` or `200` answer: an error answer is sent whole. `/_sim/webdav/*` never faults.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use serde::Serialize;

use crate::Shared;
use crate::data::{SplitMix64, finalize, fnv1a64, mix};
use crate::faults::{Fault, truncated_body};

/// The log file's fixed name (the seed: "ログファイル名は"default.log"固定").
pub(crate) const LOG_NAME: &str = "default.log";
/// Archives kept (the seed's 12 generations).
pub(crate) const KEEP_ARCHIVES: usize = 12;
/// Spacing of the rotations that exist at start-up.
pub(crate) const ROTATION_SPACING_MS: i64 = 6 * 3_600_000;
/// The newest start-up rotation is at least this long before start-up, so the current file has a window.
const MIN_CURRENT_AGE_MS: i64 = 60_000;
/// Records of a generation begun by `POST /_sim/webdav/rotate` are stamped within this long after it.
pub(crate) const NEW_CURRENT_SPREAD_MS: i64 = 500;
pub(crate) const ROTATE_PATH: &str = "/_sim/webdav/rotate";
pub(crate) const TRUTH_PATH: &str = "/_sim/webdav/truth";
pub(crate) const REQUESTS_PATH: &str = "/_sim/webdav/requests";
/// The cell an evil href points into.
pub(crate) const OTHER_CELL: &str = "other-cell";
const PERSONIUM_VERSION: &str = "1.7.21";
const DAV_NS: &str = "DAV:";
/// Salts that separate this API's data streams from the other simulated APIs'.
const DATA_SALT: u64 = 0x7765_6264_6176_2d6c;
const TIME_SALT: u64 = 0x7765_6264_6176_2d74;
const KEY_SALT: u64 = 0x7765_6264_6176_2d6b;
const GRID_SALT: u64 = 0x7765_6264_6176_2d67;
const SHUFFLE_SALT: u64 = 0x7765_6264_6176_2d73;
const DAY_MS: i64 = 86_400_000;
/// First segments of the other simulated APIs' paths: a cell of that name would shadow them.
const RESERVED_CELLS: &[&str] = &[
    "_sim",
    "api",
    "lls",
    "cdn-dl",
    "mail-delivery",
    "services",
    "auditLogDownload",
    OTHER_CELL,
];

pub(crate) const FINGERPRINT_DEFINITION: &str = "per record, the canonical text is these 10 fields joined by \
U+001F: dateTime (integer epoch microseconds), level without brackets or padding (INFO, WARN, ERROR), RequestKey, \
source, schema, subject, type, object, result, bytes (decimal); every empty field is written as '-'; the file name \
is not part of it (a record keeps its hash when the current file is rotated into an archive). Record hash = \
FNV-1a-64 of the UTF-8 canonical text; a file's or a day's fingerprint = wrapping u64 sum of its records' hashes, \
as 16 lowercase hex digits. files = exactly the files in the store now, under their listed names (current \
default.log and the archives, .zip included); days = all their records grouped by the UTC day of dateTime.";

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

/// What the command line says about the WebDAV log store.
#[derive(Clone)]
pub(crate) struct WebdavConfig {
    pub(crate) cell: String,
    pub(crate) token: String,
    pub(crate) rows_per_file: u32,
    pub(crate) evil_zip_entry: bool,
    pub(crate) evil_href: bool,
}

impl std::fmt::Debug for WebdavConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebdavConfig")
            .field("cell", &self.cell)
            .field("token", &"***")
            .field("rows_per_file", &self.rows_per_file)
            .field("evil_zip_entry", &self.evil_zip_entry)
            .field("evil_href", &self.evil_href)
            .finish()
    }
}

impl WebdavConfig {
    /// Cell names as Personium allows them (letters, digits, `-`, `_`, at most 128), not shadowing the
    /// other simulated APIs' paths; a token that fits in a header.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let c = &self.cell;
        let shaped = !c.is_empty()
            && c.len() <= 128
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && c.as_bytes()[0].is_ascii_alphanumeric();
        if !shaped {
            return Err(format!(
                "--webdav-cell must be 1-128 letters, digits, '-' or '_' starting with a letter or digit, got {c:?}"
            ));
        }
        if RESERVED_CELLS.contains(&c.as_str()) {
            return Err(format!(
                "--webdav-cell {c:?} is taken by another simulated API or the hostile hrefs"
            ));
        }
        if self.token.is_empty() || !self.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("--webdav-token must be non-empty printable ASCII without spaces".into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Data generation
// ---------------------------------------------------------------------------------------------------------

/// The event log's three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub(crate) const ALL: [Level; 3] = [Level::Info, Level::Warn, Level::Error];

    /// As the file writes it: bracketed and padded to five characters.
    pub(crate) fn bracketed(self) -> &'static str {
        match self {
            Level::Info => "[INFO ]",
            Level::Warn => "[WARN ]",
            Level::Error => "[ERROR]",
        }
    }

    /// As the fingerprint and the truth name it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// One event-log record, field by field as the CSV carries it (empty strings are empty fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRecord {
    pub(crate) at_ms: i64,
    pub(crate) level: Level,
    pub(crate) request_key: String,
    pub(crate) source: &'static str,
    pub(crate) schema: &'static str,
    pub(crate) subject: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) object: &'static str,
    pub(crate) result: String,
    pub(crate) bytes: u64,
}

const HTTP_METHODS: &[&str] = &[
    "GET",
    "GET",
    "GET",
    "PUT",
    "POST",
    "DELETE",
    "PROPFIND",
    "MKCOL",
    "MOVE",
    "PROPPATCH",
    "ACL",
    "MERGE",
];
const HTTP_STATUSES: &[(u16, u32)] = &[
    (200, 50),
    (201, 10),
    (204, 8),
    (207, 8),
    (304, 4),
    (400, 4),
    (401, 4),
    (403, 3),
    (404, 5),
    (409, 2),
    (412, 1),
    (500, 1),
    (503, 1),
];
const EVENT_TYPES: &[&str] = &[
    "cellctl.Role.create",
    "cellctl.Box.delete",
    "app.sync",
    "app.login",
    "custom.export",
    "app.error",
];
const SCHEMAS: &[&str] = &[
    "https://app1.unit1.example/",
    "https://demo-app.unit1.example/",
    "https://appcell.unit2.example/__/",
];
const SUBJECTS: &[&str] = &[
    "https://cell1.unit1.example/#me",
    "https://cell1.unit1.example/#taro",
    "https://user-hanako.unit1.example/#hanako",
    "https://cell1.unit1.example/#admin",
];
const SERVER_OBJECTS: &[&str] = &[
    "https://cell1.unit1.example/__/profile.json",
    "https://cell1.unit1.example/box1/photos/写真 2025.jpg",
    "https://cell1.unit1.example/box1/data/a,b;c.csv",
    "https://cell1.unit1.example/box1/notes/\"quoted\" name.txt",
    "https://cell1.unit1.example/__ctl/Role('admin')",
    "https://cell1.unit1.example/box1/odata/Entity?$filter=name eq 'x'&$top=10",
    "https://cell1.unit1.example/box1/emoji/😀.png",
    "https://cell1.unit1.example/box1/",
];
const CLIENT_OBJECTS: &[&str] = &[
    "https://cell1.unit1.example/box1/app",
    "https://cell1.unit1.example/__ctl/Box('box1')",
    "https://cell1.unit1.example/box1/sync/queue",
    "https://cell1.unit1.example/box1/notes\nsecond line.txt",
];
const CLIENT_RESULTS: &[&str] = &[
    "ok",
    "synced 42 items",
    "同期が完了しました",
    "said \"hello\", then left",
    "first line\nsecond line",
    "partial failure:\n- item 1\n- item 2\n",
    "",
    "  padded  ",
    "comma, separated, values",
    "\"\"",
    "tab\there",
    "trailing backslash \\",
    "🎉 done",
];
const CLIENT_KEY_WORDS: &[&str] = &["batch", "sync", "import", "cron_job"];
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn weighted<T: Copy>(rng: &mut SplitMix64, items: &[(T, u32)]) -> T {
    let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut at = rng.below(total);
    for &(item, w) in items {
        if at < u64::from(w) {
            return item;
        }
        at -= u64::from(w);
    }
    items[items.len() - 1].0
}

/// `digits` base64url characters from the low `6 * digits` bits of `value`, most significant first.
fn push_base64url(out: &mut String, value: u128, digits: u32) {
    for k in (0..digits).rev() {
        out.push(BASE64URL[((value >> (6 * k)) & 63) as usize] as char);
    }
}

/// The seed's automatic `{4}_{18}` base64url key, or a client-given one. Unique per `(seed, generation,
/// index)`: 64 of the 108 bits after `_` are a bijection of `(generation, index)`.
fn request_key(rng: &mut SplitMix64, seed: u64, generation: u64, index: usize) -> String {
    let mut out = String::with_capacity(23);
    if rng.chance(0.15) {
        let word = rng.pick(CLIENT_KEY_WORDS);
        let _ = write!(out, "{word}-{generation}_{index:04}");
        return out;
    }
    let unique = finalize(((generation & 0xf_ffff) << 32 | index as u64) ^ mix(seed, KEY_SALT));
    let noise = rng.next_u64();
    push_base64url(&mut out, u128::from(noise >> 40), 4);
    out.push('_');
    push_base64url(
        &mut out,
        (u128::from(unique) << 42) | u128::from(noise & 0x3ff_ffff_ffff),
        18,
    );
    out
}

/// The first UTC midnight strictly inside `(start_ms, end_ms)`, if any.
fn midnight_inside(start_ms: i64, end_ms: i64) -> Option<i64> {
    let m = (start_ms.div_euclid(DAY_MS) + 1) * DAY_MS;
    (m < end_ms).then_some(m)
}

/// The records of generation `generation` stamped within `[start_ms, end_ms)`. Everything but the
/// timestamps is a pure function of `(seed, generation, mean)`; the timestamps also of the window.
pub(crate) fn generate(seed: u64, generation: u64, start_ms: i64, end_ms: i64, mean: u32) -> Vec<EventRecord> {
    let mut rng = SplitMix64::new(mix(mix(seed, DATA_SALT), generation));
    let mean = u64::from(mean);
    let count = if mean == 0 {
        0
    } else {
        (mean / 2 + rng.below(mean + 1)) as usize
    };

    let mut trng = SplitMix64::new(mix(mix(seed, TIME_SALT), generation));
    let span = (end_ms - start_ms).max(1);
    let mut times: Vec<i64> = (0..count)
        .map(|_| start_ms + ((trng.unit() * span as f64) as i64).min(span - 1))
        .collect();
    if count > 0 && generation.is_multiple_of(2) {
        times[0] = start_ms;
    }
    if let Some(m) = midnight_inside(start_ms, end_ms)
        && count >= 3
    {
        times[1] = m - 1;
        times[2] = m;
    }
    times.sort_unstable();
    for i in 1..times.len() {
        if trng.chance(0.04) {
            times[i] = times[i - 1];
        }
    }

    times
        .into_iter()
        .enumerate()
        .map(|(i, at_ms)| {
            let request_key = request_key(&mut rng, seed, generation, i);
            let client = rng.chance(0.3);
            let schema = if rng.chance(0.4) { "" } else { rng.pick(SCHEMAS) };
            let subject = if rng.chance(0.3) { "" } else { rng.pick(SUBJECTS) };
            if client {
                let level = weighted(&mut rng, &[(Level::Info, 70), (Level::Warn, 20), (Level::Error, 10)]);
                EventRecord {
                    at_ms,
                    level,
                    request_key,
                    source: "client",
                    schema,
                    subject,
                    kind: rng.pick(EVENT_TYPES),
                    object: rng.pick(CLIENT_OBJECTS),
                    result: rng.pick(CLIENT_RESULTS).to_string(),
                    bytes: rng.below(4096),
                }
            } else {
                let status = weighted(&mut rng, HTTP_STATUSES);
                let level = match status {
                    500.. => Level::Error,
                    400.. => Level::Warn,
                    _ => Level::Info,
                };
                let bytes = if rng.chance(0.02) {
                    (1 << 32) + rng.below(1 << 36)
                } else {
                    rng.below(2_000_000)
                };
                EventRecord {
                    at_ms,
                    level,
                    request_key,
                    source: "server",
                    schema,
                    subject,
                    kind: rng.pick(HTTP_METHODS),
                    object: rng.pick(SERVER_OBJECTS),
                    result: status.to_string(),
                    bytes,
                }
            }
        })
        .collect()
}

pub(crate) fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// One CSV record with its terminating LF.
pub(crate) fn write_record(out: &mut String, r: &EventRecord) {
    let at = utc(r.at_ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let bytes = r.bytes.to_string();
    let fields: [&str; 10] = [
        &at,
        r.level.bracketed(),
        &r.request_key,
        r.source,
        r.schema,
        r.subject,
        r.kind,
        r.object,
        &r.result,
        &bytes,
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_quoted(out, f);
    }
    out.push('\n');
}

pub(crate) fn render_csv(records: &[EventRecord]) -> String {
    let mut out = String::with_capacity(records.len() * 320);
    for r in records {
        write_record(&mut out, r);
    }
    out
}

/// The fingerprint contract's canonical text of one record.
pub(crate) fn canonical(r: &EventRecord) -> String {
    let dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
    [
        (i128::from(r.at_ms) * 1000).to_string(),
        r.level.name().to_string(),
        dash(&r.request_key),
        dash(r.source),
        dash(r.schema),
        dash(r.subject),
        dash(r.kind),
        dash(r.object),
        dash(&r.result),
        r.bytes.to_string(),
    ]
    .join("\u{1f}")
}

/// A zip archive of one deflated entry, stamped with `modified_ms` so its bytes are reproducible.
pub(crate) fn zip_one(entry_name: &str, content: &[u8], modified_ms: i64) -> Bytes {
    let t = utc(modified_ms);
    let stamp = zip::DateTime::from_date_and_time(
        t.year().clamp(1980, 2107) as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .unwrap_or_default();
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(stamp);
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // Writing into memory cannot fail for I/O reasons; a failure here is a bug in this function.
    writer
        .start_file(entry_name, options)
        .and_then(|()| writer.write_all(content).map_err(zip::result::ZipError::from))
        .expect("starting and writing a zip entry in memory");
    let cursor = writer.finish().expect("finishing a zip archive in memory");
    Bytes::from(cursor.into_inner())
}

/// The bait a client gets if it follows a hostile href.
fn bait_csv() -> Bytes {
    let record = EventRecord {
        at_ms: 1_402_910_774_659,
        level: Level::Error,
        request_key: "bait_000000000000000000".into(),
        source: "server",
        schema: "",
        subject: "",
        kind: "GET",
        object: "https://other-cell.unit1.example/secret",
        result: "bait: this file is outside the cell and must never be read".into(),
        bytes: 0,
    };
    Bytes::from(render_csv(&[record]))
}

// ---------------------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------------------

/// One generation of the log: the current file or a rotated archive.
#[derive(Debug, Clone)]
pub(crate) struct Generation {
    pub(crate) number: u64,
    /// The previous rotation: the generation's records are not earlier.
    pub(crate) start_ms: i64,
    /// When it was rotated; `None` while it is the current file.
    pub(crate) rotated_ms: Option<i64>,
    pub(crate) records: Arc<Vec<EventRecord>>,
    pub(crate) csv: Bytes,
    /// The archive's zip (zipped generations, once rotated).
    zip: Option<Bytes>,
    /// The same zip with the hostile entry name (only with `--webdav-evil-zip-entry`).
    evil_zip: Option<Bytes>,
}

/// Whether generation `n` is compressed when it is rotated.
pub(crate) fn zipped(n: u64) -> bool {
    n % 3 == 2
}

impl Generation {
    fn new(seed: u64, number: u64, start_ms: i64, end_ms: i64, mean: u32) -> Self {
        let records = generate(seed, number, start_ms, end_ms, mean);
        let csv = Bytes::from(render_csv(&records));
        Self {
            number,
            start_ms,
            rotated_ms: None,
            records: Arc::new(records),
            csv,
            zip: None,
            evil_zip: None,
        }
    }

    fn rotate(&mut self, at_ms: i64, evil: bool) {
        self.rotated_ms = Some(at_ms);
        if zipped(self.number) {
            let plain = format!("{LOG_NAME}.{at_ms}");
            self.zip = Some(zip_one(&plain, &self.csv, at_ms));
            if evil {
                self.evil_zip = Some(zip_one("../../x", &self.csv, at_ms));
            }
        }
    }

    /// The name the listing shows.
    pub(crate) fn name(&self) -> String {
        match self.rotated_ms {
            None => LOG_NAME.to_string(),
            Some(t) if self.zip.is_some() => format!("{LOG_NAME}.{t}.zip"),
            Some(t) => format!("{LOG_NAME}.{t}"),
        }
    }

    fn last_record_ms(&self) -> Option<i64> {
        self.records.last().map(|r| r.at_ms)
    }
}

/// A file as the listing and a download see it.
#[derive(Debug, Clone)]
pub(crate) struct FileView {
    pub(crate) name: String,
    pub(crate) body: Bytes,
    pub(crate) content_type: &'static str,
    pub(crate) created_ms: i64,
    pub(crate) modified_ms: i64,
}

/// Which collection of `__log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    Archive,
    Current,
}

impl Collection {
    fn segment(self) -> &'static str {
        match self {
            Collection::Archive => "archive",
            Collection::Current => "current",
        }
    }
}

/// What `POST /_sim/webdav/rotate` reports.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rotation {
    pub(crate) archived: String,
    pub(crate) removed: Vec<String>,
    pub(crate) rotated_at_ms: i64,
    pub(crate) current_generation: u64,
}

/// The archives (oldest first) and the current generation.
#[derive(Debug)]
pub(crate) struct Store {
    seed: u64,
    rows_per_file: u32,
    evil_zip_entry: bool,
    /// The start of generation 0: the collections' `creationdate`.
    created_ms: i64,
    archives: VecDeque<Generation>,
    current: Generation,
    rotations: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileTruth {
    pub(crate) rows: u64,
    pub(crate) fingerprint: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DayTruth {
    pub(crate) rows: u64,
    pub(crate) per_level: BTreeMap<&'static str, u64>,
    pub(crate) fingerprint: String,
}

/// The `webdav_logs` ground truth.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WebdavTruth {
    pub(crate) files: BTreeMap<String, FileTruth>,
    pub(crate) days: BTreeMap<String, DayTruth>,
    pub(crate) fingerprint_definition: &'static str,
}

/// The latest point of the seed's 6-hour rotation grid at least [`MIN_CURRENT_AGE_MS`] before `now_ms`.
pub(crate) fn last_grid_rotation(seed: u64, now_ms: i64) -> i64 {
    let offset = (mix(seed, GRID_SALT) % ROTATION_SPACING_MS as u64) as i64;
    let at = now_ms - MIN_CURRENT_AGE_MS - offset;
    at.div_euclid(ROTATION_SPACING_MS) * ROTATION_SPACING_MS + offset
}

impl Store {
    /// The store as it is at start-up `now_ms`: generations 0..=11 archived on the 6-hour grid, 12 current.
    pub(crate) fn new(seed: u64, config: &WebdavConfig, now_ms: i64) -> Self {
        let last = last_grid_rotation(seed, now_ms);
        let first_start = last - KEEP_ARCHIVES as i64 * ROTATION_SPACING_MS;
        let mut archives = VecDeque::with_capacity(KEEP_ARCHIVES + 1);
        for n in 0..KEEP_ARCHIVES as u64 {
            let start = first_start + n as i64 * ROTATION_SPACING_MS;
            let end = start + ROTATION_SPACING_MS;
            let mut g = Generation::new(seed, n, start, end, config.rows_per_file);
            g.rotate(end, config.evil_zip_entry);
            archives.push_back(g);
        }
        let current = Generation::new(seed, KEEP_ARCHIVES as u64, last, now_ms, config.rows_per_file);
        Self {
            seed,
            rows_per_file: config.rows_per_file,
            evil_zip_entry: config.evil_zip_entry,
            created_ms: first_start,
            archives,
            current,
            rotations: 0,
        }
    }

    /// Rotates at `now_ms` (moved forward past the current records and the previous rotation).
    pub(crate) fn rotate(&mut self, now_ms: i64) -> Rotation {
        let at = now_ms
            .max(self.current.start_ms + 1)
            .max(self.current.last_record_ms().map_or(i64::MIN, |t| t + 1));
        let number = self.current.number + 1;
        let next = Generation::new(self.seed, number, at, at + NEW_CURRENT_SPREAD_MS, self.rows_per_file);
        let mut old = std::mem::replace(&mut self.current, next);
        old.rotate(at, self.evil_zip_entry);
        let archived = old.name();
        self.archives.push_back(old);
        let mut removed = Vec::new();
        while self.archives.len() > KEEP_ARCHIVES {
            if let Some(g) = self.archives.pop_front() {
                removed.push(g.name());
            }
        }
        self.rotations += 1;
        Rotation {
            archived,
            removed,
            rotated_at_ms: at,
            current_generation: number,
        }
    }

    pub(crate) fn rotations(&self) -> u64 {
        self.rotations
    }

    /// The generations in the store, oldest first, the current one last.
    pub(crate) fn generations(&self) -> impl Iterator<Item = &Generation> {
        self.archives.iter().chain(std::iter::once(&self.current))
    }

    /// The files of a collection, oldest first.
    pub(crate) fn files(&self, collection: Collection) -> Vec<FileView> {
        match collection {
            Collection::Current => vec![FileView {
                name: LOG_NAME.to_string(),
                body: self.current.csv.clone(),
                content_type: "text/csv",
                created_ms: self.current.start_ms,
                modified_ms: self.current_modified_ms(),
            }],
            Collection::Archive => {
                let evil_number = self
                    .evil_zip_entry
                    .then(|| self.archives.iter().rev().find(|g| g.zip.is_some()).map(|g| g.number))
                    .flatten();
                self.archives
                    .iter()
                    .map(|g| {
                        let rotated = g.rotated_ms.unwrap_or(g.start_ms);
                        let (body, content_type) = match (&g.zip, &g.evil_zip) {
                            (Some(_), Some(evil)) if Some(g.number) == evil_number => (evil.clone(), "application/zip"),
                            (Some(zip), _) => (zip.clone(), "application/zip"),
                            (None, _) => (g.csv.clone(), "text/csv"),
                        };
                        FileView {
                            name: g.name(),
                            body,
                            content_type,
                            created_ms: rotated,
                            modified_ms: rotated,
                        }
                    })
                    .collect()
            }
        }
    }

    fn current_modified_ms(&self) -> i64 {
        self.current
            .last_record_ms()
            .unwrap_or(self.current.start_ms)
            .max(self.current.start_ms)
    }

    /// `creationdate` and `getlastmodified` of a collection.
    fn collection_times(&self, collection: Collection) -> (i64, i64) {
        let modified = match collection {
            Collection::Archive => self
                .archives
                .back()
                .and_then(|g| g.rotated_ms)
                .unwrap_or(self.created_ms),
            Collection::Current => self.current_modified_ms(),
        };
        (self.created_ms, modified)
    }

    pub(crate) fn truth(&self) -> WebdavTruth {
        let mut files = BTreeMap::new();
        let mut days: BTreeMap<String, (u64, [u64; 3], u64)> = BTreeMap::new();
        for g in self.generations() {
            let mut sum = 0u64;
            for r in g.records.iter() {
                let h = fnv1a64(canonical(r).as_bytes());
                sum = sum.wrapping_add(h);
                let day = utc(r.at_ms).date_naive().format("%Y-%m-%d").to_string();
                let entry = days.entry(day).or_default();
                entry.0 += 1;
                entry.1[r.level as usize] += 1;
                entry.2 = entry.2.wrapping_add(h);
            }
            files.insert(
                g.name(),
                FileTruth {
                    rows: g.records.len() as u64,
                    fingerprint: format!("{sum:016x}"),
                },
            );
        }
        let days = days
            .into_iter()
            .map(|(day, (rows, levels, sum))| {
                let per_level = Level::ALL.into_iter().map(|l| (l.name(), levels[l as usize])).collect();
                (
                    day,
                    DayTruth {
                        rows,
                        per_level,
                        fingerprint: format!("{sum:016x}"),
                    },
                )
            })
            .collect();
        WebdavTruth {
            files,
            days,
            fingerprint_definition: FINGERPRINT_DEFINITION,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------------

/// An error answer of the cell.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

fn personium_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert("x-personium-version", HeaderValue::from_static(PERSONIUM_VERSION));
}

fn error_response(err: &ApiError, realm: &str) -> Response {
    let body = serde_json::json!({
        "code": err.code,
        "message": {"lang": "en", "value": err.message},
    })
    .to_string();
    let mut resp = (err.status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if err.status == StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\""))
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    personium_headers(&mut resp);
    resp
}

/// The host for absolute hrefs: the request's `Host` when it looks like one, else the bound address.
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

fn xml_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
}

pub(crate) fn creationdate(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

pub(crate) fn rfc1123(ms: i64) -> String {
    let secs = u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// One `<response>` of the multistatus, laid out like the seed's sample.
fn push_response(out: &mut String, href: &str, created_ms: i64, modified_ms: i64, file: Option<(usize, &str)>) {
    out.push_str("<response>\n<href>");
    xml_escape(out, href);
    out.push_str("</href>\n<propstat>\n<prop>\n");
    let _ = writeln!(out, "<creationdate>{}</creationdate>", creationdate(created_ms));
    if let Some((len, content_type)) = file {
        let _ = writeln!(out, "<getcontentlength>{len}</getcontentlength>");
        let _ = writeln!(out, "<getcontenttype>{content_type}</getcontenttype>");
    }
    let _ = writeln!(out, "<getlastmodified>{}</getlastmodified>", rfc1123(modified_ms));
    if file.is_some() {
        out.push_str("<resourcetype/>\n");
    } else {
        out.push_str("<resourcetype>\n<collection/>\n</resourcetype>\n");
    }
    out.push_str("</prop>\n<status>HTTP/1.1 200 OK</status>\n</propstat>\n</response>\n");
}

const MULTISTATUS_OPEN: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<multistatus xmlns=\"DAV:\" xmlns:p=\"urn:x-personium:xmlns\">\n";
const MULTISTATUS_CLOSE: &str = "</multistatus>\n";

/// Whether a `PROPFIND` body asks for `allprop`: empty, or `{DAV:}propfind` holding exactly one
/// `{DAV:}allprop` and nothing else (comments, processing instructions and whitespace aside).
pub(crate) fn is_allprop(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(());
    }
    let mut reader = quick_xml::NsReader::from_str(text);
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut allprops = 0usize;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("the body is not well-formed XML: {e}"))?;
        let is_dav = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == DAV_NS);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name();
                let name = local.as_ref().to_string();
                match depth {
                    0 if seen_root => return Err("the body has more than one root element".into()),
                    0 if is_dav && name == "propfind" => seen_root = true,
                    0 => return Err(format!("the root element must be {{DAV:}}propfind, got {name}")),
                    1 if is_dav && name == "allprop" => allprops += 1,
                    _ => return Err(format!("only allprop is supported, got {name}")),
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(ref t) if !t.trim().is_empty() => {
                return Err("the body has text outside the elements".into());
            }
            Event::CData(_) | Event::GeneralRef(_) => return Err("the body has text outside the elements".into()),
            Event::Eof if depth > 0 => return Err("the body ends inside an element".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    match (seen_root, allprops) {
        (true, 1) => Ok(()),
        (false, _) => Err("the body has no propfind element".into()),
        (true, n) => Err(format!("propfind must hold exactly one allprop, got {n}")),
    }
}

/// What a path of the cell names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Collection(Collection),
    File(Collection, String),
    Other,
}

fn resolve(cell: &str, path: &str) -> Target {
    let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(cell)) else {
        return Target::Other;
    };
    let Some(rest) = rest.strip_prefix("/__log/") else {
        return Target::Other;
    };
    for c in [Collection::Archive, Collection::Current] {
        if let Some(after) = rest.strip_prefix(c.segment()) {
            if after.is_empty() || after == "/" {
                return Target::Collection(c);
            }
            if let Some(name) = after.strip_prefix('/')
                && !name.is_empty()
                && !name.contains('/')
            {
                return Target::File(c, name.to_string());
            }
        }
    }
    Target::Other
}

/// Request counters for `/_sim/webdav/requests`.
#[derive(Debug, Default)]
struct Counters {
    propfind: u64,
    get: BTreeMap<String, u64>,
    other_paths: BTreeMap<String, u64>,
    refused: BTreeMap<String, u64>,
    faults: u64,
}

#[derive(Debug, Serialize)]
struct RequestsSnapshot {
    propfind: u64,
    get: BTreeMap<String, u64>,
    rotations: u64,
    other_paths: BTreeMap<String, u64>,
    refused: BTreeMap<String, u64>,
    faults: u64,
}

/// The simulated log store's HTTP side.
#[derive(Debug)]
pub(crate) struct WebdavLogs {
    shared: Arc<Shared>,
    config: WebdavConfig,
    addr: SocketAddr,
    store: Mutex<Store>,
    /// Serialises rotations, which sleep while holding it.
    rotating: tokio::sync::Mutex<()>,
    counters: Mutex<Counters>,
    bait: Bytes,
}

impl WebdavLogs {
    pub(crate) fn new(shared: Arc<Shared>, config: WebdavConfig, store: Store, addr: SocketAddr) -> Self {
        Self {
            shared,
            config,
            addr,
            store: Mutex::new(store),
            rotating: tokio::sync::Mutex::new(()),
            counters: Mutex::new(Counters::default()),
            bait: bait_csv(),
        }
    }

    pub(crate) fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(&format!("/{}/{{*rest}}", self.config.cell), any(handle))
            .route("/{cell}/__log/{*rest}", any(handle))
            .route(ROTATE_PATH, post(rotate))
            .route(TRUTH_PATH, get(truth))
            .route(REQUESTS_PATH, get(requests))
            .with_state(self)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refuse(&self, err: &ApiError, host: &str) -> Response {
        *self
            .counters()
            .refused
            .entry(err.status.as_u16().to_string())
            .or_default() += 1;
        tracing::info!(api = "webdav-logs", status = err.status.as_u16(), code = err.code, message = %err.message, "request refused");
        error_response(err, &format!("http://{host}/{}/", self.config.cell))
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token.trim() == self.config.token)
    }

    /// The paths the hostile hrefs resolve to, as a client might request them.
    fn is_bait_path(&self, path: &str) -> bool {
        let cell = &self.config.cell;
        path == format!("/{OTHER_CELL}/__log/archive/{LOG_NAME}.1")
            || path == format!("/{cell}/secret")
            || path == format!("/{cell}/__log/archive/%2e%2e/%2e%2e/secret")
    }

    fn multistatus(&self, target: &Target, depth_one: bool, host: &str, salt: u64) -> Option<String> {
        let cell = &self.config.cell;
        let store = self.store();
        let mut out = String::from(MULTISTATUS_OPEN);
        let (collection, only) = match target {
            Target::Collection(c) => (*c, None),
            Target::File(c, name) => (*c, Some(name.as_str())),
            Target::Other => return None,
        };
        let base = format!("http://{host}/{cell}/__log/{}", collection.segment());
        let files = store.files(collection);
        match only {
            Some(name) => {
                let f = files.iter().find(|f| f.name == name)?;
                let href = format!("{base}/{}", f.name);
                push_response(
                    &mut out,
                    &href,
                    f.created_ms,
                    f.modified_ms,
                    Some((f.body.len(), f.content_type)),
                );
            }
            None => {
                let (created, modified) = store.collection_times(collection);
                push_response(&mut out, &base, created, modified, None);
                if depth_one {
                    let mut entries: Vec<(String, i64, i64, usize, &str)> = files
                        .iter()
                        .map(|f| {
                            (
                                format!("{base}/{}", f.name),
                                f.created_ms,
                                f.modified_ms,
                                f.body.len(),
                                f.content_type,
                            )
                        })
                        .collect();
                    if self.config.evil_href && collection == Collection::Archive {
                        let t = modified;
                        let len = self.bait.len();
                        entries.push((
                            format!("http://{host}/{OTHER_CELL}/__log/archive/{LOG_NAME}.1"),
                            t,
                            t,
                            len,
                            "text/csv",
                        ));
                        entries.push((format!("{base}/%2e%2e/%2e%2e/secret"), t, t, len, "text/csv"));
                        entries.push((
                            format!("http://evil.invalid/{cell}/__log/archive/{LOG_NAME}.2"),
                            t,
                            t,
                            len,
                            "text/csv",
                        ));
                    }
                    let mut rng = SplitMix64::new(mix(self.shared.seed ^ SHUFFLE_SALT, salt));
                    for i in (1..entries.len()).rev() {
                        let j = rng.below(i as u64 + 1) as usize;
                        entries.swap(i, j);
                    }
                    for (href, created, modified, len, content_type) in &entries {
                        push_response(&mut out, href, *created, *modified, Some((*len, content_type)));
                    }
                }
            }
        }
        out.push_str(MULTISTATUS_CLOSE);
        Some(out)
    }
}

/// Applies the seed's `X-HTTP-Method-Override` (on POST) and `X-Override: Name:Value` headers.
fn overridden(method: Method, headers: &HeaderMap) -> (Method, HeaderMap) {
    let mut out = headers.clone();
    for v in headers.get_all("x-override") {
        let Some((name, value)) = v.to_str().ok().and_then(|s| s.split_once(':')) else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            out.insert(name, value);
        }
    }
    let method = match (method, out.get("x-http-method-override").and_then(|v| v.to_str().ok())) {
        (Method::POST, Some(m)) => Method::from_bytes(m.trim().as_bytes()).unwrap_or(Method::POST),
        (m, _) => m,
    };
    (method, out)
}

fn propfind_method() -> Method {
    Method::from_bytes(b"PROPFIND").unwrap_or(Method::OPTIONS)
}

async fn handle(
    State(api): State<Arc<WebdavLogs>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let stats = &api.shared.stats.webdav_logs;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let (request_id, counter) = api.shared.next_request_id();
    let host = url_host(&headers, api.addr);
    let path = uri.path().to_string();

    let mut drop_connection = false;
    if let Some(fault) = api.shared.faults.pick() {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        api.counters().faults += 1;
        tracing::info!(api = "webdav-logs", %request_id, %path, fault = fault.name(), "injecting a fault");
        let realm = format!("http://{host}/{}/", api.config.cell);
        let unavailable = |retry_after: Option<String>| {
            let err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PR503-SV-0002",
                "injected fault: service unavailable",
            );
            let mut resp = error_response(&err, &realm);
            if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        };
        match fault {
            Fault::InternalError => {
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "PR500-SV-0000",
                    "injected fault: internal server error",
                );
                return error_response(&err, &realm);
            }
            Fault::Unavailable { retry_after } => return unavailable(retry_after.then(|| "1".to_string())),
            Fault::TooManyRequests { retry_after } => return unavailable(Some(retry_after.header_value())),
            Fault::DropConnection => drop_connection = true,
            Fault::Slow(delay) => tokio::time::sleep(delay).await,
        }
    }

    let (method, headers) = overridden(method, &headers);
    if !api.authorized(&headers) {
        let err = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "PR401-AU-0001",
            "Authorization required: send Authorization: Bearer {AccessToken}.",
        );
        return api.refuse(&err, &host);
    }

    let target = resolve(&api.config.cell, &path);
    let is_file = match &target {
        Target::File(c, name) => api.store().files(*c).iter().any(|f| &f.name == name),
        _ => false,
    };
    if matches!(target, Target::Other) || (matches!(target, Target::File(..)) && !is_file) {
        *api.counters().other_paths.entry(path.clone()).or_default() += 1;
        if api.config.evil_href && api.is_bait_path(&path) && (method == Method::GET || method == Method::HEAD) {
            tracing::warn!(api = "webdav-logs", %path, "a client followed a hostile href");
            return file_response(&method, api.bait.clone(), "text/csv", 0, false);
        }
        let err = ApiError::new(
            StatusCode::NOT_FOUND,
            "PR404-DV-0001",
            format!("No such resource: {path}"),
        );
        return api.refuse(&err, &host);
    }

    let propfind = method == propfind_method();
    let readable = matches!(target, Target::File(..)) && (method == Method::GET || method == Method::HEAD);
    if !propfind && !readable {
        let err = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "PR405-MC-0001",
            format!("Method {method} is not allowed on {path}"),
        );
        return api.refuse(&err, &host);
    }

    if readable {
        let Target::File(collection, name) = &target else {
            unreachable!("readable implies a file target");
        };
        let Some(file) = api.store().files(*collection).into_iter().find(|f| &f.name == name) else {
            // Rotated away between the check above and now.
            let err = ApiError::new(
                StatusCode::NOT_FOUND,
                "PR404-DV-0001",
                format!("No such resource: {path}"),
            );
            return api.refuse(&err, &host);
        };
        if method == Method::HEAD {
            return file_response(&method, file.body, file.content_type, file.modified_ms, false);
        }
        if drop_connection {
            tracing::info!(api = "webdav-logs", file = %file.name, "dropping the connection halfway through a file");
            return file_response(&method, file.body, file.content_type, file.modified_ms, true);
        }
        stats.data_requests.fetch_add(1, Ordering::Relaxed);
        *api.counters().get.entry(file.name.clone()).or_default() += 1;
        tracing::info!(api = "webdav-logs", %request_id, file = %file.name, bytes = file.body.len(), "file served");
        return file_response(&method, file.body, file.content_type, file.modified_ms, false);
    }

    let depth_one = match headers.get("depth").map(|v| v.to_str().map(str::trim)) {
        None => {
            let err = ApiError::new(
                StatusCode::BAD_REQUEST,
                "PR400-DV-0001",
                "Depth header is required (0 or 1).",
            );
            return api.refuse(&err, &host);
        }
        Some(Ok("0")) => false,
        Some(Ok("1")) => true,
        Some(other) => {
            let shown = other.unwrap_or("(not text)");
            let err = ApiError::new(
                StatusCode::BAD_REQUEST,
                "PR400-DV-0001",
                format!("Depth header must be 0 or 1, got {shown:?}."),
            );
            return api.refuse(&err, &host);
        }
    };
    if let Err(why) = is_allprop(&body) {
        let err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "PR400-DV-0002",
            format!("Invalid PROPFIND body: {why}."),
        );
        return api.refuse(&err, &host);
    }
    let Some(xml) = api.multistatus(&target, depth_one, &host, counter) else {
        let err = ApiError::new(
            StatusCode::NOT_FOUND,
            "PR404-DV-0001",
            format!("No such resource: {path}"),
        );
        return api.refuse(&err, &host);
    };
    let body = if drop_connection {
        tracing::info!(api = "webdav-logs", %path, "dropping the connection in the middle of a multistatus");
        truncated_body(Bytes::from(xml))
    } else {
        stats.data_requests.fetch_add(1, Ordering::Relaxed);
        api.counters().propfind += 1;
        tracing::info!(api = "webdav-logs", %request_id, %path, depth_one, "multistatus served");
        crate::chunked_body(Bytes::from(xml), counter)
    };
    let mut resp = (StatusCode::MULTI_STATUS, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    personium_headers(&mut resp);
    resp
}

/// A `200` file answer. With `cut` the body breaks off halfway although `Content-Length` announces all
/// of it (an injected dropped connection).
fn file_response(method: &Method, body: Bytes, content_type: &'static str, modified_ms: i64, cut: bool) -> Response {
    let etag = format!("\"1-{:016x}\"", fnv1a64(&body));
    let len = body.len();
    let (body, length) = if cut {
        (truncated_body(body), Some(len))
    } else if *method == Method::HEAD {
        (Body::empty(), Some(len))
    } else {
        (Body::from(body), None)
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(n) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&rfc1123(modified_ms)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    personium_headers(&mut resp);
    resp
}

async fn rotate(State(api): State<Arc<WebdavLogs>>) -> axum::Json<Rotation> {
    let _serial = api.rotating.lock().await;
    let now_ms = Utc::now().timestamp_millis();
    let rotation = {
        let mut store = api.store();
        let rotation = store.rotate(now_ms);
        tracing::info!(api = "webdav-logs", archived = %rotation.archived, removed = ?rotation.removed, "rotated");
        rotation
    };
    // The new current's records are stamped up to NEW_CURRENT_SPREAD_MS after the rotation: answer once
    // they are all in the past.
    let ready = rotation.rotated_at_ms + NEW_CURRENT_SPREAD_MS;
    let wait = ready - Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64 + 1)).await;
    }
    axum::Json(rotation)
}

async fn truth(State(api): State<Arc<WebdavLogs>>) -> axum::Json<WebdavTruth> {
    let store = api.store();
    axum::Json(store.truth())
}

async fn requests(State(api): State<Arc<WebdavLogs>>) -> axum::Json<RequestsSnapshot> {
    let rotations = api.store().rotations();
    let c = api.counters();
    axum::Json(RequestsSnapshot {
        propfind: c.propfind,
        get: c.get.clone(),
        rotations,
        other_paths: c.other_paths.clone(),
        refused: c.refused.clone(),
        faults: c.faults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn config(rows: u32) -> WebdavConfig {
        WebdavConfig {
            cell: "sim-cell".into(),
            token: "t".into(),
            rows_per_file: rows,
            evil_zip_entry: false,
            evil_href: false,
        }
    }

    const NOW: i64 = 1_763_430_000_123; // 2025-11-18T01:40:00.123Z

    fn day_of(ms: i64) -> NaiveDate {
        utc(ms).date_naive()
    }

    #[test]
    fn a_generation_is_a_pure_function_of_seed_number_and_window() {
        let a = generate(7, 3, NOW - ROTATION_SPACING_MS, NOW, 200);
        assert_eq!(a, generate(7, 3, NOW - ROTATION_SPACING_MS, NOW, 200));
        assert_ne!(a, generate(8, 3, NOW - ROTATION_SPACING_MS, NOW, 200));
        assert_ne!(a, generate(7, 4, NOW - ROTATION_SPACING_MS, NOW, 200));
        // Only the timestamps follow the window.
        let shifted = generate(7, 3, NOW, NOW + 1000, 200);
        assert_eq!(a.len(), shifted.len());
        assert!(
            a.iter()
                .zip(&shifted)
                .all(|(x, y)| x.request_key == y.request_key && x.result == y.result)
        );
        assert!((100..=300).contains(&a.len()), "{} records for a mean of 200", a.len());
        assert!(generate(7, 3, NOW - 1000, NOW, 0).is_empty());
    }

    #[test]
    fn records_stay_in_their_window_in_order_with_the_edges() {
        let start = NOW - ROTATION_SPACING_MS;
        let midnight = midnight_inside(start, NOW).expect("the window crosses a midnight");
        let recs = generate(1, 4, start, NOW, 200);
        assert!(recs.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(recs.iter().all(|r| (start..NOW).contains(&r.at_ms)));
        assert_eq!(
            recs[0].at_ms, start,
            "even generations have a record at the previous rotation"
        );
        assert!(recs.iter().any(|r| r.at_ms == midnight));
        assert!(recs.iter().any(|r| r.at_ms == midnight - 1));
        assert!(recs.windows(2).any(|w| w[0].at_ms == w[1].at_ms), "ties occur");
    }

    #[test]
    fn request_keys_are_unique_and_shaped_like_the_seed_says() {
        let mut seen = std::collections::HashSet::new();
        let mut auto = 0;
        for g in 0..30 {
            for r in generate(5, g, NOW - 1000, NOW, 400) {
                let k = &r.request_key;
                assert!(k.len() <= 128 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                if k.len() == 23 && k.as_bytes()[4] == b'_' {
                    auto += 1;
                }
                assert!(seen.insert(k.clone()), "duplicate key {k}");
            }
        }
        assert!(auto > seen.len() / 2, "most keys are the automatic form");
    }

    #[test]
    fn no_field_is_a_lone_dash_and_awkward_content_occurs() {
        let recs: Vec<EventRecord> = (0..12).flat_map(|g| generate(2, g, NOW - 1000, NOW, 200)).collect();
        for r in &recs {
            for f in [
                r.request_key.as_str(),
                r.schema,
                r.subject,
                r.kind,
                r.object,
                r.result.as_str(),
            ] {
                assert_ne!(f, "-");
            }
        }
        let csv = render_csv(&recs);
        assert!(csv.contains("\"\"quoted\"\""));
        assert!(recs.iter().any(|r| r.result.contains('\n')));
        assert!(recs.iter().any(|r| r.object.contains('\n')));
        assert!(recs.iter().any(|r| r.result.is_empty()));
        assert!(recs.iter().any(|r| r.bytes > u64::from(u32::MAX)));
        for l in Level::ALL {
            assert!(recs.iter().any(|r| r.level == l), "{l:?} occurs");
        }
    }

    #[test]
    fn csv_quotes_every_field_and_doubles_quotes() {
        let r = EventRecord {
            at_ms: 0,
            level: Level::Warn,
            request_key: "k".into(),
            source: "client",
            schema: "",
            subject: "",
            kind: "app.sync",
            object: "a\"b",
            result: "x\ny".into(),
            bytes: 7,
        };
        let mut out = String::new();
        write_record(&mut out, &r);
        assert_eq!(
            out,
            "\"1970-01-01T00:00:00.000Z\",\"[WARN ]\",\"k\",\"client\",\"\",\"\",\"app.sync\",\"a\"\"b\",\"x\ny\",\"7\"\n"
        );
        assert_eq!(
            canonical(&r),
            "0\u{1f}WARN\u{1f}k\u{1f}client\u{1f}-\u{1f}-\u{1f}app.sync\u{1f}a\"b\u{1f}x\ny\u{1f}7"
        );
    }

    #[test]
    fn the_start_up_store_has_twelve_archives_on_the_grid_and_a_current_file() {
        let store = Store::new(9, &config(50), NOW);
        let gens: Vec<&Generation> = store.generations().collect();
        assert_eq!(gens.len(), 13);
        let last = last_grid_rotation(9, NOW);
        assert!(last <= NOW - MIN_CURRENT_AGE_MS && last > NOW - MIN_CURRENT_AGE_MS - ROTATION_SPACING_MS);
        assert_eq!(last_grid_rotation(9, NOW + 1000), last, "the same grid a second later");
        for (n, g) in gens.iter().enumerate() {
            assert_eq!(g.number, n as u64);
            let end = g.rotated_ms.unwrap_or(NOW);
            assert!(g.records.iter().all(|r| (g.start_ms..end).contains(&r.at_ms)));
        }
        assert_eq!(gens[11].rotated_ms, Some(last));
        assert_eq!(gens[12].start_ms, last);
        let archive = store.files(Collection::Archive);
        let zips: Vec<&str> = archive
            .iter()
            .filter(|f| f.name.ends_with(".zip"))
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(zips.len(), 4, "generations 2, 5, 8 and 11 are zipped");
        assert_eq!(archive[11].name, format!("default.log.{last}.zip"));
        assert_eq!(
            archive[0].name,
            format!("default.log.{}", last - 11 * ROTATION_SPACING_MS)
        );
        let days: std::collections::BTreeSet<NaiveDate> = gens
            .iter()
            .flat_map(|g| g.records.iter().map(|r| day_of(r.at_ms)))
            .collect();
        assert!(days.len() >= 4, "72 hours of archives span at least four UTC days");
    }

    #[test]
    fn rotation_archives_the_current_file_and_drops_the_oldest() {
        let mut store = Store::new(3, &config(30), NOW);
        let before = store.truth();
        let oldest = store.files(Collection::Archive)[0].name.clone();
        let current_fp = before.files[LOG_NAME].fingerprint.clone();
        // A rotation asked for in the past still lands after every record of the current file.
        let r = store.rotate(NOW - 5_000_000);
        assert!(r.rotated_at_ms > store.archives[10].rotated_ms.unwrap_or(0));
        assert_eq!(r.removed, vec![oldest.clone()]);
        assert_eq!(r.current_generation, 13);
        assert_eq!(
            r.archived,
            format!("default.log.{}", r.rotated_at_ms),
            "generation 12 is plain"
        );
        let after = store.truth();
        assert_eq!(after.files.len(), 13);
        assert!(!after.files.contains_key(&oldest));
        assert_eq!(after.files[&r.archived].fingerprint, current_fp);
        assert_ne!(after.files[LOG_NAME].fingerprint, current_fp);
        assert!(
            store
                .current
                .records
                .iter()
                .all(|x| (r.rotated_at_ms..r.rotated_at_ms + NEW_CURRENT_SPREAD_MS).contains(&x.at_ms))
        );
        // Two rotations within one millisecond still get distinct, increasing names; 13 % 3 == 1, 14 % 3 == 2.
        let r2 = store.rotate(r.rotated_at_ms);
        let r3 = store.rotate(r.rotated_at_ms);
        assert!(r3.rotated_at_ms > r2.rotated_at_ms && r2.rotated_at_ms > r.rotated_at_ms);
        assert!(!r2.archived.ends_with(".zip"));
        assert!(r3.archived.ends_with(".zip"));
        assert_eq!(store.rotations(), 3);
        assert_eq!(store.files(Collection::Archive).len(), KEEP_ARCHIVES);
    }

    #[test]
    fn the_evil_entry_goes_to_the_newest_zip_only() {
        let mut cfg = config(20);
        cfg.evil_zip_entry = true;
        let mut store = Store::new(4, &cfg, NOW);
        let names = |store: &Store| -> Vec<(String, String)> {
            store
                .files(Collection::Archive)
                .into_iter()
                .filter(|f| f.name.ends_with(".zip"))
                .map(|f| {
                    let mut z = zip::ZipArchive::new(std::io::Cursor::new(f.body.to_vec())).expect("zip opens");
                    assert_eq!(z.len(), 1);
                    let entry = z.by_index(0).expect("entry").name().to_string();
                    (f.name, entry)
                })
                .collect()
        };
        let all = names(&store);
        assert_eq!(all.len(), 4);
        for (i, (name, entry)) in all.iter().enumerate() {
            if i == 3 {
                assert_eq!(entry, "../../x");
            } else {
                assert_eq!(format!("{entry}.zip"), *name);
            }
        }
        // After rotations that archive a new zipped generation (14), the evil name moves to it.
        store.rotate(NOW);
        store.rotate(NOW);
        store.rotate(NOW);
        let all = names(&store);
        assert_eq!(all.last().map(|(_, e)| e.as_str()), Some("../../x"));
        assert_eq!(all.iter().filter(|(_, e)| e == "../../x").count(), 1);
    }

    #[test]
    fn allprop_bodies_are_recognised_by_namespace() {
        for ok in [
            "",
            "  \n",
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:propfind xmlns:D=\"DAV:\">\n<D:allprop/>\n</D:propfind>",
            "<propfind xmlns=\"DAV:\"><allprop></allprop></propfind>",
            "<x:propfind xmlns:x=\"DAV:\"><!-- all --><x:allprop/></x:propfind>\n",
        ] {
            assert_eq!(is_allprop(ok.as_bytes()), Ok(()), "{ok:?}");
        }
        for bad in [
            "<propfind><allprop/></propfind>",
            "<D:propfind xmlns:D=\"DAV:\"><D:prop><D:getcontentlength/></D:prop></D:propfind>",
            "<D:propfind xmlns:D=\"DAV:\"><D:propname/></D:propfind>",
            "<D:propfind xmlns:D=\"DAV:\"/>",
            "<D:propfind xmlns:D=\"DAV:\"><D:allprop/>",
            "not xml",
            "<D:propfind xmlns:D=\"DAV:\"><D:allprop/><D:allprop/></D:propfind>",
        ] {
            assert!(is_allprop(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_resolve_to_collections_and_files() {
        let r = |p: &str| resolve("sim-cell", p);
        assert_eq!(r("/sim-cell/__log/archive"), Target::Collection(Collection::Archive));
        assert_eq!(r("/sim-cell/__log/archive/"), Target::Collection(Collection::Archive));
        assert_eq!(r("/sim-cell/__log/current/"), Target::Collection(Collection::Current));
        assert_eq!(
            r("/sim-cell/__log/current/default.log"),
            Target::File(Collection::Current, "default.log".into())
        );
        assert_eq!(r("/sim-cell/__log/archives"), Target::Other);
        assert_eq!(r("/sim-cell/__log/archive/a/b"), Target::Other);
        assert_eq!(r("/sim-cellx/__log/archive"), Target::Other);
        assert_eq!(r("/other-cell/__log/archive"), Target::Other);
        assert_eq!(r("/sim-cell/secret"), Target::Other);
    }

    #[test]
    fn dates_look_like_the_seed() {
        assert_eq!(creationdate(1_486_085_251_093), "2017-02-03T01:27:31.093+0000");
        assert_eq!(rfc1123(1_486_085_251_093), "Fri, 03 Feb 2017 01:27:31 GMT");
    }

    #[test]
    fn config_refuses_cells_that_would_shadow_other_paths() {
        let mut c = config(1);
        assert!(c.validate().is_ok());
        for bad in ["", "_sim", "cdn-dl", "a/b", "-x", "other-cell"] {
            c.cell = bad.into();
            assert!(c.validate().is_err(), "{bad:?} accepted");
        }
        assert!(!format!("{c:?}").contains("\"t\""), "the token is redacted");
    }
}
