//! The `sink:` section: where the Parquet dataset goes and how its files are cut, or, while a
//! pipeline is being set up, where its records are shown as JSON lines.

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess};

use crate::bytesize::ByteSize;
use etl_core::Secret;

use crate::de::{Tagged, column_list, int_in, non_empty_secret, non_empty_string, positive_usize, str_with, tagged};

/// Where batches are written. Written as a mapping whose first key is `type`:
///
/// ```yaml
/// sink:
///   type: parquet
///   url: ${ETL_OUT:-./data}/mail_delivery
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkConfig {
    /// `type: parquet`: a hive-partitioned Parquet dataset on local disk or S3.
    Parquet(ParquetSinkConfig),
    /// `type: jsonl`: newline-delimited JSON on standard output or in a local file, for
    /// debugging. Not exactly once, and no state is kept: every run fetches its range again.
    Jsonl(JsonlSinkConfig),
}

impl SinkConfig {
    /// The `type` as written in the file (`parquet`, `jsonl`).
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Parquet(_) => "parquet",
            SinkConfig::Jsonl(_) => "jsonl",
        }
    }
}

impl Tagged for SinkConfig {
    const SECTION: &'static str = "sink";
    const KINDS: &'static [&'static str] = &["parquet", "jsonl"];

    fn variant<'de, A: MapAccess<'de>>(kind: &'static str, rest: A) -> Result<Self, A::Error> {
        match kind {
            "parquet" => ParquetSinkConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::Parquet),
            "jsonl" => JsonlSinkConfig::deserialize(MapAccessDeserializer::new(rest)).map(Self::Jsonl),
            other => Err(de::Error::custom(format!("unknown sink type `{other}`"))),
        }
    }
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged(d)
    }
}

/// `type: parquet`: zstd-compressed Parquet files under `url`, one folder per partition
/// (`dt=2025-09-11/`), files named after the unit that wrote them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the parquet sink keys (url, compression_level, ...)"
)]
pub struct ParquetSinkConfig {
    /// `url` (required): the dataset root: a local path (`./data/mail_delivery`), a `file://`
    /// URL, or an `s3://bucket/prefix` URL.
    #[serde(deserialize_with = "dataset_url")]
    pub url: String,
    /// `compression_level` (optional, 1..=22, default 1): the zstd level. 1 is fast and already
    /// small for logs; higher levels cost CPU for a few percent.
    #[serde(default = "default_compression_level", deserialize_with = "zstd_level")]
    pub compression_level: i32,
    /// `row_group_rows` (optional, >= 1, default 262144): rows per Parquet row group.
    #[serde(default = "default_row_group_rows", deserialize_with = "positive_usize")]
    pub row_group_rows: usize,
    /// `statistics` (optional, `none`, `chunk` or `page`, default `page`): the min/max and null
    /// counts written. `chunk` keeps them per column chunk (row-group pruning); `page` adds the
    /// page index, so a reader can skip pages inside a row group too. The three measured within
    /// noise of each other in time and size on the mail, tracking and CDN benchmarks
    /// (BENCHMARKS.md), so the most useful one is the default; `none` leaves readers nothing to
    /// prune with.
    #[serde(default)]
    pub statistics: ParquetStatistics,
    /// `dictionary` (optional, default true): dictionary-encode columns. A column chunk whose
    /// dictionary outgrows 1 MiB falls back to plain encoding by itself, but only after building
    /// it, and a number or timestamp column with a new value on most rows (up to ~130k distinct
    /// per chunk) stays dictionary-encoded and comes out larger than plain: list such columns in
    /// `plain_columns`. false writes every column plain.
    #[serde(default = "default_dictionary")]
    pub dictionary: bool,
    /// `plain_columns` (optional, a list of top-level column names, default none): columns
    /// written without a dictionary even when `dictionary` is true, such as ids that never
    /// repeat (the shipped `pipelines/cdn.yaml`, `mail.yaml` and `tracking.yaml` list theirs:
    /// files 8-12 % smaller, BENCHMARKS.md). A name that is not a column of the records
    /// reaching the sink (after the transforms) is refused when the pipeline is loaded.
    #[serde(default, deserialize_with = "column_list")]
    pub plain_columns: Vec<String>,
    /// `max_file_size` (optional, a size such as `512MiB` or `1GB`, default 512MiB): a file is
    /// closed and the next part started once it reaches this size.
    #[serde(default = "default_max_file_size", deserialize_with = "positive_size")]
    pub max_file_size: ByteSize,
    /// `max_open_files` (optional, >= 1, default 16): partitions written at the same time; more
    /// partitions in one unit are flushed and reopened as new parts.
    #[serde(default = "default_max_open_files", deserialize_with = "positive_usize")]
    pub max_open_files: usize,
    /// `s3` (optional): how to reach an `s3://` dataset. Every key may be left out, in which
    /// case the standard `AWS_*` environment variables apply (`AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...); a key set here wins over its variable.
    #[serde(default)]
    pub s3: S3Config,
}

/// The parquet sink's `statistics` level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetStatistics {
    /// No statistics.
    None,
    /// Per column chunk.
    Chunk,
    /// Per column chunk and per page (the page index).
    #[default]
    Page,
}

/// `type: jsonl`: one JSON object per record and line (timestamps as RFC 3339 UTC strings,
/// lists as arrays), written as soon as each batch is decoded. For looking at records while a
/// pipeline is set up, or piping them into `jq`; not for loading: lines written before a unit
/// fails stay written, a file is appended to, and nothing is remembered between runs, so every
/// run fetches its whole range again.
///
/// ```yaml
/// sink:
///   type: jsonl
///   url: ./out.jsonl     # optional; `-` or absent: standard output
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the jsonl sink keys (url)")]
pub struct JsonlSinkConfig {
    /// `url` (optional, default `-`): `-` for standard output, else a local path or a `file://`
    /// URL of a file the lines are appended to (created with its directories if missing).
    /// `None` means standard output.
    #[serde(default, deserialize_with = "jsonl_url")]
    pub url: Option<String>,
}

/// `deserialize_with`: `-` (standard output, read as `None`), a local path or a `file://` URL.
fn jsonl_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    str_with(d, "`-`, a local path or a file:// URL", |v| {
        let v = v.trim();
        if v.is_empty() {
            return Err("must not be empty; expected `-` (standard output), a local path or a file:// URL".to_string());
        }
        if v == "-" {
            return Ok(None);
        }
        match v.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
                if rest.is_empty() {
                    Err(format!("`{v}` names no file"))
                } else {
                    Ok(Some(v.to_string()))
                }
            }
            Some((scheme, _)) => Err(format!(
                "unsupported URL scheme `{scheme}`; the jsonl sink writes to `-` (standard output), a local path or a file:// URL"
            )),
            None => Ok(Some(v.to_string())),
        }
    })
}

/// `sink.s3`: the connection to an S3-compatible object store.
///
/// ```yaml
/// sink:
///   type: parquet
///   url: s3://logs/etl/mail_delivery
///   s3:
///     endpoint: ${S3_ENDPOINT:-http://127.0.0.1:9000}
///     region: us-east-1
///     access_key_id: ${S3_ACCESS_KEY_ID}
///     secret_access_key: ${S3_SECRET_ACCESS_KEY}
///     allow_http: true
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the s3 keys (endpoint, region, access_key_id, secret_access_key, session_token, allow_http, path_style)"
)]
pub struct S3Config {
    /// `endpoint` (optional, default `AWS_ENDPOINT_URL` or AWS itself): the base URL of an
    /// S3-compatible server, such as `http://127.0.0.1:9000`.
    #[serde(default, deserialize_with = "optional_endpoint")]
    pub endpoint: Option<String>,
    /// `region` (optional, default `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`): the
    /// bucket's region.
    #[serde(default, deserialize_with = "optional_non_empty")]
    pub region: Option<String>,
    /// `access_key_id` (optional, default `AWS_ACCESS_KEY_ID`): the access key id.
    #[serde(default, deserialize_with = "optional_non_empty")]
    pub access_key_id: Option<String>,
    /// `secret_access_key` (optional, secret, default `AWS_SECRET_ACCESS_KEY`): must be written
    /// as `${VAR}`, never as a literal.
    #[serde(default, deserialize_with = "optional_secret")]
    pub secret_access_key: Option<Secret>,
    /// `session_token` (optional, secret, default `AWS_SESSION_TOKEN`): must be written as `${VAR}`.
    #[serde(default, deserialize_with = "optional_secret")]
    pub session_token: Option<Secret>,
    /// `allow_http` (optional, default `AWS_ALLOW_HTTP`, else false): allow a plain `http://`
    /// endpoint (a local test server); off, such an endpoint is refused.
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// `path_style` (optional, default true): address objects as `<endpoint>/<bucket>/<key>`, as
    /// most S3-compatible servers expect; false uses `<bucket>.<endpoint>/<key>` (virtual-hosted).
    #[serde(default)]
    pub path_style: Option<bool>,
}

impl S3Config {
    /// The keys that hold secrets, as written in the file: they must be `${VAR}` references.
    pub const SECRET_KEYS: &'static [&'static str] = &["secret_access_key", "session_token"];

    /// The secrets set here, for redaction.
    pub fn secrets(&self) -> Vec<Secret> {
        self.secret_access_key
            .iter()
            .chain(self.session_token.iter())
            .cloned()
            .collect()
    }
}

fn optional_non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    non_empty_string(d).map(Some)
}

fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    non_empty_secret(d).map(Some)
}

fn optional_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    str_with(d, "an http:// or https:// URL", |v| {
        let v = v.trim();
        match v.split_once("://") {
            Some((scheme, rest)) if matches!(scheme, "http" | "https") && !rest.is_empty() => Ok(Some(v.to_string())),
            _ => Err(format!("`{v}` is not an http:// or https:// URL")),
        }
    })
}

fn default_compression_level() -> i32 {
    1
}
fn default_row_group_rows() -> usize {
    262_144
}
fn default_dictionary() -> bool {
    true
}
fn default_max_file_size() -> ByteSize {
    ByteSize(512 << 20)
}
fn default_max_open_files() -> usize {
    16
}

fn zstd_level<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    // In range by construction.
    int_in(d, 1, 22).map(|v| v as i32)
}

fn positive_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    str_with(d, "a size such as 512MiB", |v| match ByteSize::parse(v)? {
        ByteSize(0) => Err("must be larger than zero".to_string()),
        size => Ok(size),
    })
}

/// `deserialize_with`: a local path, `file://` or `s3://` URL.
fn dataset_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    str_with(d, "a local path, file:// or s3:// URL", |v| {
        if v.trim().is_empty() {
            return Err("must not be empty; expected a local path, file:// or s3:// URL".to_string());
        }
        if let Some((scheme, rest)) = v.split_once("://") {
            match scheme.to_ascii_lowercase().as_str() {
                "file" if rest.is_empty() => return Err(format!("`{v}` names no path")),
                "s3" if rest.split('/').next().is_none_or(str::is_empty) => {
                    return Err(format!("`{v}` names no bucket; expected s3://bucket/prefix"));
                }
                "file" | "s3" => {}
                other => {
                    return Err(format!(
                        "unsupported URL scheme `{other}`; expected a local path, file:// or s3:// URL"
                    ));
                }
            }
        }
        Ok(v.to_string())
    })
}
