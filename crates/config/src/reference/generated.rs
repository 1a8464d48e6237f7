// @generated from the doc comments in crates/config/src/ by
// `UPDATE_CONFIG_REFERENCE=1 cargo test -p etl-config reference`; do not edit by hand.

use super::{Chapter, Key, Reference, Section, TransformDoc};

/// The configuration reference, from the doc comments of the configuration structs.
pub static REFERENCE: Reference = Reference {
    chapters: &[
        Chapter {
            key: "",
            doc: "",
            sections: &[
                Section {
                    path: "",
                    kind: "",
                    doc: "",
                    limits: &[
                    ],
                    keys: &[
                        Key { name: "name", required: false, rules: "", default: "the file name without extension", doc: "Names the pipeline in logs, state and unit ids. Letters, digits, `_`, `-` and `.`, starting with a letter or digit." },
                        Key { name: "source", required: true, rules: "", default: "", doc: "Where records come from; see [`source`](#source)." },
                        Key { name: "start", required: false, rules: "", default: "`-7d`", doc: "The start of the range when `etl run` gets no `--from`; a time such as `2025-09-11`, `2025-09-11T06:00:00Z`, `now` or `-7d`." },
                        Key { name: "settle", required: false, rules: "", default: "`1h`", doc: "A window is final (written once and marked done) only when it ended at least this long ago; a younger window is written provisionally and rewritten by the next run. A duration such as `30m` or `1h`." },
                        Key { name: "on_bad_record", required: false, rules: "", default: "`fail`", doc: "What a record that does not parse does: `fail` fails its unit, `skip` counts it and keeps it in a dead-letter file." },
                        Key { name: "on_unknown_field", required: false, rules: "", default: "`ignore`", doc: "What a field the source's schema does not know does (an API that grew a field): `ignore` counts it per name and reports the counts in the run summary; `fail` makes the record bad (then `on_bad_record` decides)." },
                        Key { name: "transforms", required: false, rules: "", default: "none", doc: "Applied in order; see [`transforms`](#transforms)." },
                        Key { name: "sink", required: true, rules: "", default: "", doc: "Where the dataset is written; see [`sink`](#sink)." },
                        Key { name: "runtime", required: false, rules: "", default: "", doc: "Parallelism and memory bounds; see [`runtime`](#runtime)." },
                        Key { name: "http", required: false, rules: "", default: "", doc: "Timeouts and retries; see [`http`](#http)." },
                    ],
                },
            ],
            transforms: &[
            ],
        },
        Chapter {
            key: "source",
            doc: "Where records come from. Written as a mapping whose first key is `type`:\n\n```yaml\nsource:\n  type: mail_delivery\n  url: ${MAIL_DELIVERY_URL}\n  token: ${MAIL_DELIVERY_TOKEN}\n```",
            sections: &[
                Section {
                    path: "source",
                    kind: "mail_delivery",
                    doc: "The mail delivery log API: one result line per recipient, read as XML\npages from a form POST (`X-Auth-Token`). A unit is one UTC day.",
                    limits: &[
                        "a request's window is shorter than 24 hours (`EndDate`'s minute is inclusive, so `00:00` to `23:59` is one UTC day): one request window per unit;",
                        "`StartDate` reaches back at most to 00:00 UTC of the day 90 days ago: older days are skipped with a note;",
                        "at most `max_items` (1..=10000) records per page; `NextToken` continues the same window, and a replayed token is never written twice;",
                        "a 429's `Retry-After` holds every request made with the same token.",
                    ],
                    keys: &[
                        Key { name: "url", required: true, rules: "", default: "", doc: "The URL the search form is POSTed to, `http://` or `https://`." },
                        Key { name: "token", required: true, rules: "non-empty", default: "", doc: "The API token, sent as the `X-Auth-Token` header. Write it as `${VAR}` so that it stays out of the file; it is never printed." },
                        Key { name: "status", required: false, rules: "", default: "every status", doc: "Only fetch records with this delivery result: `sent`, `retry` or `faild` (the vendor's spelling; `failed` and the codes 1, 2, 3 are accepted too)." },
                        Key { name: "max_items", required: false, rules: "1..=10000", default: "10000", doc: "Records per page (the API's `MaxItems`)." },
                        Key { name: "parallel_windows", required: false, rules: "1..=24", default: "1", doc: "A unit's day is asked as this many consecutive request windows of whole minutes, each with its own `NextToken` chain, fetched at the same time (a chain waits a round trip per page); pages are still written in time order. Only for a server that answers exactly the window asked (as the API documents): one that ignored `StartDate`/`EndDate` would send each window the same records. Costs one request more per extra window." },
                    ],
                },
                Section {
                    path: "source",
                    kind: "mail_tracking",
                    doc: "The mail tracking log API: accepted and blocked mail traffic, read as\nJSON pages from a GET with HTTP Basic authentication. A unit is one UTC day of one traffic\ntype (and one domain when `domains` is set).",
                    limits: &[
                        "one traffic type per request: each type is its own unit, under the `traffic_type=` partition;",
                        "`start`/`end` reach back at most 72 hours before the request: a unit that would start earlier is refused, naming the earliest day the API still serves;",
                        "both `start` and `end` are always sent (without them the API answers only five minutes), a day as `T00:00:00.000Z` to `T23:59:59.999Z`;",
                        "`limit` records per page (1..=10000 here; the API's default is 500); `nextToken` continues the same query, and a replayed token is never written twice.",
                    ],
                    keys: &[
                        Key { name: "url", required: true, rules: "", default: "", doc: "The service URL; `/api/v1/log/mailtrackinglog` is appended." },
                        Key { name: "user", required: true, rules: "", default: "", doc: "The HTTP Basic user name." },
                        Key { name: "api_key", required: true, rules: "non-empty", default: "", doc: "The HTTP Basic password; never printed." },
                        Key { name: "traffic_types", required: false, rules: "", default: "`[accepted_traffic, blocked_traffic]`", doc: "The traffic types to load. The API takes one type per request; each type is its own unit and partition." },
                        Key { name: "domains", required: false, rules: "", default: "all domains in one query", doc: "Query each of these domains separately (the API's `domain` filter); each domain is its own unit." },
                        Key { name: "direction", required: false, rules: "", default: "both", doc: "`in` or `out` (the API's `direction` filter)." },
                        Key { name: "limit", required: false, rules: "1..=10000", default: "500", doc: "Records per page (the API's `limit`)." },
                        Key { name: "parallel_windows", required: false, rules: "1..=24", default: "1", doc: "A unit's day is asked as this many consecutive `start`/`end` windows, each with its own `nextToken` chain, fetched at the same time (a chain waits a round trip per page); pages are still written in time order. Only for a server that answers exactly the window asked (as the API documents): one that ignored `start`/`end` would send each window the same records. Costs one request more per extra window." },
                    ],
                },
                Section {
                    path: "source",
                    kind: "cdn_logs",
                    doc: "The CDN delivery-log API: a listing (`GET /lls/v1.0/logs/delivery`) gives\nthe 5-minute slots of a domain with signed, expiring URLs of `.log.gz` access-log files, which\nare then downloaded and decoded as they stream. A unit is one domain and UTC day.",
                    limits: &[
                        "a listing covers at most 24 hours: one listing request per domain and UTC day;",
                        "100 listing requests per minute and 1000 per hour: every listing request of the run, retries and URL refreshes included, waits for both budgets (`rate_per_minute`, `rate_per_hour`), and a 429 holds them for its `Retry-After`;",
                        "slots are 5 minutes (`t` covers `[t, t+5min)`); only the slots of the unit's day are kept;",
                        "download URLs expire: one that has expired or is about to is never used, the day is listed again for fresh URLs (a bounded number of times per file);",
                        "downloads are not rate-limited (`download_concurrency` at once) and come only from the listing's host and `download_hosts`, without the listing's `headers`.",
                    ],
                    keys: &[
                        Key { name: "url", required: true, rules: "", default: "", doc: "The API's base URL; `/lls/v1.0/logs/delivery` is appended." },
                        Key { name: "domains", required: true, rules: "", default: "", doc: "The delivery domains to load, as a list or a comma-separated string (`${CDN_LOGS_DOMAINS}`). Each domain and UTC day is one unit, written under the `domain=` partition." },
                        Key { name: "download_hosts", required: false, rules: "", default: "", doc: "The only hosts `.log.gz` files are downloaded from, as a list or a comma-separated string; `*.example.com` allows every subdomain. The listing's own host is always allowed; an empty value means only that host." },
                        Key { name: "headers", required: false, rules: "", default: "", doc: "Extra request headers for the listing only (never sent to the download hosts), for deployments that put the API behind a gateway. Values are treated as secrets: write them as `${VAR}`." },
                        Key { name: "rate_per_minute", required: false, rules: "1..=100", default: "100", doc: "Listing requests allowed in any sliding minute (the API allows 100)." },
                        Key { name: "rate_per_hour", required: false, rules: "1..=1000", default: "1000", doc: "Listing requests allowed in any sliding hour (the API allows 1000)." },
                        Key { name: "download_concurrency", required: false, rules: "1..=64", default: "8", doc: "Files downloaded at once." },
                        Key { name: "max_line_bytes", required: false, rules: "", default: "64KiB", doc: "A longer access-log line is a bad record." },
                    ],
                },
                Section {
                    path: "source",
                    kind: "audit_log",
                    doc: "The audit-log SOAP service: account operations, exported as CSV by\nasynchronous jobs. A unit is one UTC day: `getDownload` creates its job, `getDownloadStatus`\nis polled until the job is `COMPLETED`, and the CSV is downloaded from the URL the status shows.",
                    limits: &[
                        "`dateRange` is in local dates of the account's time zone (`utc_offset`): a UTC day is asked as the local dates that overlap it, and only the records of the UTC day are kept;",
                        "an export job runs on the server: it is polled with backoff (`poll_interval` to `poll_interval_max`) within `job_timeout`, and resumed, not created again, after a crash;",
                        "the download URL is valid 15 minutes: an expired one is replaced by polling again;",
                        "a `SYSTEM_ERROR` job is created again, at most `job_attempts` jobs per unit and run;",
                        "SOAP faults (HTTP 500) are not retried, the unit fails with the fault string; a `Server` fault is retried like any other 500.",
                    ],
                    keys: &[
                        Key { name: "url", required: true, rules: "", default: "", doc: "The service endpoint the SOAP envelopes are POSTed to." },
                        Key { name: "license", required: true, rules: "secret", default: "", doc: "The RequestHeader's `license`." },
                        Key { name: "api_account_id", required: true, rules: "secret", default: "", doc: "The RequestHeader's `apiAccountId`." },
                        Key { name: "api_account_password", required: true, rules: "secret", default: "", doc: "The RequestHeader's `apiAccountPassword`." },
                        Key { name: "account_id", required: true, rules: "", default: "", doc: "The account whose operations are exported." },
                        Key { name: "lang", required: false, rules: "`JA` or `EN`", default: "`JA`", doc: "The language of the CSV header." },
                        Key { name: "utc_offset", required: false, rules: "", default: "`+09:00`", doc: "The account's time zone, in which the API reads `dateRange`. A UTC day is asked as the local dates that overlap it." },
                        Key { name: "download_hosts", required: false, rules: "", default: "", doc: "Hosts the download URL may point at besides the service's own (list or comma-separated; `*.example.com` allowed)." },
                        Key { name: "poll_interval", required: false, rules: "", default: "`2s`", doc: "The first wait between status polls; doubled after each poll up to `poll_interval_max` (default `30s`)." },
                        Key { name: "poll_interval_max", required: false, rules: "", default: "`30s`", doc: "The longest wait between two status polls." },
                        Key { name: "job_timeout", required: false, rules: "", default: "`30m`", doc: "How long one job may stay IN_PROGRESS." },
                        Key { name: "job_attempts", required: false, rules: "1..=10", default: "3", doc: "Jobs created per unit and run before it fails (after SYSTEM_ERROR, or a download URL that cannot be renewed)." },
                    ],
                },
                Section {
                    path: "source",
                    kind: "webdav_logs",
                    doc: "A cell's WebDAV event log store: `{url}__log/archive` (rotated files)\nand `{url}__log/current` (`default.log`), listed with `PROPFIND` and read with `GET`. A unit\nis one archive file, or the current log.",
                    limits: &[
                        "units come from the listing (`PROPFIND`, `Depth: 1`), not from a time range: `--from` and `--to` do not select archives;",
                        "a rotated archive (`default.log.{epoch-ms}`, plain or `.zip` with one entry) never changes: it is loaded once;",
                        "`current/default.log` keeps growing: it is loaded on every run and its output replaced;",
                        "the store keeps 12 generations and deletes the oldest: archives that rotated away before they were loaded are reported as `LOST` and the run exits non-zero;",
                        "a zipped archive is inflated as it downloads, capped at `max_entry_bytes`.",
                    ],
                    keys: &[
                        Key { name: "url", required: true, rules: "", default: "", doc: "The cell URL (`https://cell1.unit1.example/`); `__log/...` is appended." },
                        Key { name: "token", required: true, rules: "secret", default: "", doc: "The OAuth 2.0 access token, sent as `Authorization: Bearer`." },
                        Key { name: "include_current", required: false, rules: "", default: "true", doc: "Also load `current/default.log` (re-loaded and replaced on every run)." },
                        Key { name: "max_entry_bytes", required: false, rules: "", default: "`4GiB`", doc: "The most a zipped archive may inflate to." },
                    ],
                },
            ],
            transforms: &[
            ],
        },
        Chapter {
            key: "transforms",
            doc: "One transform of the `transforms:` list.\n\n```yaml\ntransforms:\n  - select: [delivered_at, result, recipient]\n  - drop: [detail]\n  - rename: {sender: mail_from}\n  - hash: {columns: [sender, recipient], key: ${ETL_HASH_KEY}}\n  - filter: {column: result, op: \"=\", value: sent}\n```",
            sections: &[
            ],
            transforms: &[
                TransformDoc { name: "select", syntax: "select: [a, b]", doc: "Keep only these columns, in this order." },
                TransformDoc { name: "drop", syntax: "drop: [a, b]", doc: "Remove these columns." },
                TransformDoc { name: "rename", syntax: "rename: {old: new, ...}", doc: "Rename columns; the targets must be distinct." },
                TransformDoc { name: "hash", syntax: "hash: {columns: [a, b], key: ${KEY}}", doc: "Replace the values of these columns with a keyed hash (HMAC) so that they can still be joined and counted but not read. The key (required, non-empty) is a secret." },
                TransformDoc { name: "filter", syntax: "filter: {column: c, op: \"=\", value: v}", doc: "Keep only the rows where the comparison holds. `op` is one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `in` (or the words `eq`, `ne`, `lt`, `le`, `gt`, `ge`; quote the symbols in YAML: `op: \">=\"`). `value` is a scalar (string, integer, float, bool), and a non-empty list of scalars exactly when `op` is `in`." },
            ],
        },
        Chapter {
            key: "sink",
            doc: "Where batches are written. Written as a mapping whose first key is `type`:\n\n```yaml\nsink:\n  type: parquet\n  url: ${ETL_OUT:-./data}/mail_delivery\n```",
            sections: &[
                Section {
                    path: "sink",
                    kind: "parquet",
                    doc: "Zstd-compressed Parquet files under `url`, one folder per partition\n(`dt=2025-09-11/`), files named after the unit that wrote them.",
                    limits: &[
                    ],
                    keys: &[
                        Key { name: "url", required: true, rules: "", default: "", doc: "The dataset root: a local path (`./data/mail_delivery`), a `file://` URL, or an `s3://bucket/prefix` URL." },
                        Key { name: "compression_level", required: false, rules: "1..=22", default: "1", doc: "The zstd level. 1 is fast and already small for logs; higher levels cost CPU for a few percent." },
                        Key { name: "row_group_rows", required: false, rules: ">= 1", default: "262144", doc: "Rows per Parquet row group." },
                        Key { name: "statistics", required: false, rules: "`none`, `chunk` or `page`", default: "`page`", doc: "The min/max and null counts written. `chunk` keeps them per column chunk (row-group pruning); `page` adds the page index, so a reader can skip pages inside a row group too. The three measured within noise of each other in time and size on the mail, tracking and CDN benchmarks (BENCHMARKS.md), so the most useful one is the default; `none` leaves readers nothing to prune with." },
                        Key { name: "dictionary", required: false, rules: "", default: "true", doc: "Dictionary-encode columns. A column chunk whose dictionary outgrows 1 MiB falls back to plain encoding by itself, but only after building it, and a number or timestamp column with a new value on most rows (up to ~130k distinct per chunk) stays dictionary-encoded and comes out larger than plain: list such columns in `plain_columns`. false writes every column plain." },
                        Key { name: "plain_columns", required: false, rules: "a list of top-level column names", default: "none", doc: "Columns written without a dictionary even when `dictionary` is true, such as ids that never repeat (the shipped `pipelines/cdn.yaml`, `mail.yaml` and `tracking.yaml` list theirs: files 8-12 % smaller, BENCHMARKS.md). A name that is not a column of the records reaching the sink (after the transforms) is refused when the pipeline is loaded." },
                        Key { name: "max_file_size", required: false, rules: "a size such as `512MiB` or `1GB`", default: "512MiB", doc: "A file is closed and the next part started once it reaches this size." },
                        Key { name: "max_open_files", required: false, rules: ">= 1", default: "16", doc: "Partitions written at the same time; more partitions in one unit are flushed and reopened as new parts." },
                        Key { name: "s3", required: false, rules: "", default: "", doc: "How to reach an `s3://` dataset. Every key may be left out, in which case the standard `AWS_*` environment variables apply (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...); a key set here wins over its variable." },
                    ],
                },
                Section {
                    path: "sink.s3",
                    kind: "",
                    doc: "The connection to an S3-compatible object store.\n\n```yaml\nsink:\n  type: parquet\n  url: s3://logs/etl/mail_delivery\n  s3:\n    endpoint: ${S3_ENDPOINT:-http://127.0.0.1:9000}\n    region: us-east-1\n    access_key_id: ${S3_ACCESS_KEY_ID}\n    secret_access_key: ${S3_SECRET_ACCESS_KEY}\n    allow_http: true\n```",
                    limits: &[
                    ],
                    keys: &[
                        Key { name: "endpoint", required: false, rules: "", default: "`AWS_ENDPOINT_URL` or AWS itself", doc: "The base URL of an S3-compatible server, such as `http://127.0.0.1:9000`." },
                        Key { name: "region", required: false, rules: "", default: "`AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`", doc: "The bucket's region." },
                        Key { name: "access_key_id", required: false, rules: "", default: "`AWS_ACCESS_KEY_ID`", doc: "The access key id." },
                        Key { name: "secret_access_key", required: false, rules: "secret", default: "`AWS_SECRET_ACCESS_KEY`", doc: "Must be written as `${VAR}`, never as a literal." },
                        Key { name: "session_token", required: false, rules: "secret", default: "`AWS_SESSION_TOKEN`", doc: "Must be written as `${VAR}`." },
                        Key { name: "allow_http", required: false, rules: "", default: "`AWS_ALLOW_HTTP`, else false", doc: "Allow a plain `http://` endpoint (a local test server); off, such an endpoint is refused." },
                        Key { name: "path_style", required: false, rules: "", default: "true", doc: "Address objects as `<endpoint>/<bucket>/<key>`, as most S3-compatible servers expect; false uses `<bucket>.<endpoint>/<key>` (virtual-hosted)." },
                    ],
                },
                Section {
                    path: "sink",
                    kind: "jsonl",
                    doc: "One JSON object per record and line (timestamps as RFC 3339 UTC strings,\nlists as arrays), written as soon as each batch is decoded. For looking at records while a\npipeline is set up, or piping them into `jq`; not for loading: lines written before a unit\nfails stay written, a file is appended to, and nothing is remembered between runs, so every\nrun fetches its whole range again.\n\n```yaml\nsink:\n  type: jsonl\n  url: ./out.jsonl     # optional; `-` or absent: standard output\n```",
                    limits: &[
                    ],
                    keys: &[
                        Key { name: "url", required: false, rules: "", default: "`-`", doc: "`-` for standard output, else a local path or a `file://` URL of a file the lines are appended to (created with its directories if missing). `None` means standard output." },
                    ],
                },
            ],
            transforms: &[
            ],
        },
        Chapter {
            key: "runtime",
            doc: "",
            sections: &[
                Section {
                    path: "runtime",
                    kind: "",
                    doc: "Parallelism and memory bounds of the run.",
                    limits: &[
                    ],
                    keys: &[
                        Key { name: "channel_capacity", required: false, rules: ">= 1", default: "4", doc: "Items buffered between two stages. Bounds memory: a slow sink slows the source instead of filling RAM." },
                        Key { name: "decode_workers", required: false, rules: ">= 1", default: "2", doc: "Blocking threads that decode payloads while the network waits." },
                        Key { name: "unit_concurrency", required: false, rules: ">= 1", default: "2", doc: "Units fetched at the same time." },
                        Key { name: "batch_size", required: false, rules: ">= 1", default: "16384", doc: "Rows per decoded record batch." },
                    ],
                },
            ],
            transforms: &[
            ],
        },
        Chapter {
            key: "http",
            doc: "",
            sections: &[
                Section {
                    path: "http",
                    kind: "",
                    doc: "Timeouts and the retry policy of every request the source sends.\nDurations are written with a unit: `500ms`, `10s`, `5m`, `1h30m`.",
                    limits: &[
                    ],
                    keys: &[
                        Key { name: "connect_timeout", required: false, rules: "> 0", default: "10s", doc: "Time allowed to open a connection." },
                        Key { name: "read_timeout", required: false, rules: "> 0", default: "60s", doc: "Longest wait for the next bytes of a response (a stall timeout; a large download that keeps moving is never cut)." },
                        Key { name: "max_attempts", required: false, rules: ">= 1", default: "8", doc: "Attempts per request, the first included." },
                        Key { name: "max_retry_time", required: false, rules: "> 0", default: "5m", doc: "Total time budget of one request including its retries; no retry starts that would end after it. Time queued for an API's rate limit (the CDN listing budget) does not count." },
                        Key { name: "backoff_base", required: false, rules: "", default: "250ms", doc: "The first retry waits up to this long; each further retry doubles the bound (with full jitter), up to `backoff_max`." },
                        Key { name: "backoff_max", required: false, rules: ">= `backoff_base`", default: "30s", doc: "The largest wait between two attempts (a `Retry-After` from the server may ask for more)." },
                    ],
                },
            ],
            transforms: &[
            ],
        },
    ],
};
