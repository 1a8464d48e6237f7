//! The one place that knows every source, format, transform and sink type: a pipeline file
//! becomes a ready-to-run [`Pipeline`] through a plain `match` per section. Adding a source
//! means one arm here and one module in `etl-sources`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use etl_config::{ParquetStatistics, PipelineConfig, SinkConfig, SourceConfig, TransformConfig};
use etl_core::{Format, MemoryState, Pipeline, Secret, Sink, Source, StateStore, Transform};
use etl_http::{Client, HttpConfig, Redactor};
use etl_sink::{EnabledStatistics, JsonlSink, ParquetSink, ParquetSinkOptions, S3Options};

/// A loaded pipeline, with its config kept for messages and summaries.
pub struct Prepared {
    pub config: PipelineConfig,
    pub pipeline: Arc<Pipeline>,
}

/// Loads and validates a pipeline file, builds its stages, and checks the transforms against
/// the source's schema. Opens nothing on the network. `rate_share` K (`--rate-share 1/K`)
/// gives the source 1/K of each of its rate limits.
pub fn prepare(file: &Path, rate_share: Option<u32>) -> anyhow::Result<Prepared> {
    build(file, Mode::Run, rate_share)
}

/// For `etl plan` and `etl state`: the pipeline with the configured sink's state, but a local
/// dataset that does not exist yet is not created (its state is empty), so that looking
/// writes nothing. `rate_share` as for [`prepare`] (`etl plan --rate-share`).
pub fn prepare_inspect(file: &Path, rate_share: Option<u32>) -> anyhow::Result<Prepared> {
    build(file, Mode::Inspect, rate_share)
}

/// What the pipeline is built for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Preview,
    Inspect,
}

/// The local directory a Parquet sink URL names (`./data`, `file:///srv/data`); `None` for an
/// object store.
fn local_dir(url: &str) -> Option<std::path::PathBuf> {
    let url = url.trim();
    match url.split_once("://") {
        None => Some(url.into()),
        Some(_) => url::Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok()),
    }
}

/// For `etl preview`: the pipeline as [`prepare`] builds it, except that the configured sink is
/// never opened (a Parquet sink would create its directory): the sink is JSON lines on standard
/// output and the state is in memory, so a preview writes nothing and reads no state.
pub fn prepare_preview(file: &Path) -> anyhow::Result<Prepared> {
    build(file, Mode::Preview, None)
}

fn build(file: &Path, mode: Mode, rate_share: Option<u32>) -> anyhow::Result<Prepared> {
    let mut config = etl_config::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(k) = rate_share {
        match config.source.share_rate_budget(k) {
            Some(limits) => tracing::info!(
                pipeline = %config.name,
                "--rate-share 1/{k}: this worker keeps under {limits}"
            ),
            None => tracing::warn!(
                pipeline = %config.name,
                "--rate-share 1/{k}: the {} API limits no request rate; there is nothing to share",
                config.source.kind()
            ),
        }
    }
    let format = format_for(&config.source);
    let client = Client::new(http_config(&config), Redactor::new(secrets(&config)))
        .map_err(|e| anyhow::anyhow!("{}: setting up HTTP: {e}", file.display()))?;
    let source: Arc<dyn Source> = match &config.source {
        SourceConfig::MailDelivery(c) => Arc::new(etl_sources::mail_delivery::MailDelivery::new(c.clone(), client)),
        SourceConfig::MailTracking(c) => Arc::new(etl_sources::mail_tracking::MailTracking::new(c.clone(), client)),
        SourceConfig::CdnLogs(c) => Arc::new(
            etl_sources::cdn_logs::CdnLogs::new(c.clone(), client)
                .map_err(|e| anyhow::anyhow!("{}: source: {e}", file.display()))?,
        ),
        SourceConfig::AuditLog(c) => Arc::new(
            etl_sources::audit_log::AuditLog::new(c.clone(), client)
                .map_err(|e| anyhow::anyhow!("{}: source: {e}", file.display()))?,
        ),
        SourceConfig::WebdavLogs(c) => Arc::new(
            etl_sources::webdav_logs::WebdavLogs::new(c.clone(), client)
                .map_err(|e| anyhow::anyhow!("{}: source: {e}", file.display()))?,
        ),
    };
    let transforms = etl_transform::build(&config.transforms);
    let (sink, state): (Arc<dyn Sink>, Arc<dyn StateStore>) = match &config.sink {
        _ if mode == Mode::Preview => (Arc::new(JsonlSink::stdout()), Arc::new(MemoryState::default())),
        SinkConfig::Parquet(c) if mode == Mode::Inspect && local_dir(&c.url).is_some_and(|d| !d.exists()) => {
            (Arc::new(JsonlSink::stdout()), Arc::new(MemoryState::default()))
        }
        SinkConfig::Parquet(c) => {
            let opts = ParquetSinkOptions {
                time_column: format.time_column().to_string(),
                compression_level: c.compression_level,
                row_group_rows: c.row_group_rows,
                statistics: match c.statistics {
                    ParquetStatistics::None => EnabledStatistics::None,
                    ParquetStatistics::Chunk => EnabledStatistics::Chunk,
                    ParquetStatistics::Page => EnabledStatistics::Page,
                },
                dictionary: c.dictionary,
                plain_columns: c.plain_columns.clone(),
                max_file_size: c.max_file_size.0,
                max_open_files: c.max_open_files,
            };
            let s3 = S3Options {
                endpoint: c.s3.endpoint.clone(),
                region: c.s3.region.clone(),
                access_key_id: c.s3.access_key_id.clone(),
                secret_access_key: c.s3.secret_access_key.clone(),
                session_token: c.s3.session_token.clone(),
                allow_http: c.s3.allow_http,
                path_style: c.s3.path_style,
            };
            let sink = ParquetSink::open_with(&c.url, opts, &s3)
                .with_context(|| format!("{}: sink url {:?}", file.display(), c.url))?;
            let state = Arc::new(sink.state_store());
            (Arc::new(sink), state)
        }
        // A debugging sink keeps no state: nothing durable marks a unit done, so every run
        // fetches its whole range again (and appends it again to a file).
        SinkConfig::Jsonl(c) => {
            let sink = JsonlSink::open(c.url.as_deref())
                .with_context(|| format!("{}: sink url {:?}", file.display(), c.url.as_deref().unwrap_or("-")))?;
            (Arc::new(sink), Arc::new(MemoryState::default()))
        }
    };
    check_schema(file, format.as_ref(), &transforms, &config.sink)?;
    let pipeline = Pipeline {
        source,
        format,
        transforms,
        sink,
        state,
    };
    Ok(Prepared {
        config,
        pipeline: Arc::new(pipeline),
    })
}

/// `etl validate`: everything `prepare` checks, without creating the sink's directory.
pub fn check(file: &Path) -> anyhow::Result<String> {
    let config = etl_config::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let format = format_for(&config.source);
    check_schema(
        file,
        format.as_ref(),
        &etl_transform::build(&config.transforms),
        &config.sink,
    )?;
    let sink = match &config.sink {
        SinkConfig::Parquet(c) => format!("parquet at {}", c.url),
        SinkConfig::Jsonl(c) => format!("jsonl to {}", c.url.as_deref().unwrap_or("stdout")),
    };
    Ok(format!(
        "source {}, {} transform(s), sink {sink}",
        config.source.kind(),
        config.transforms.len(),
    ))
}

/// Applies the transforms to the source's schema: a stage naming a missing column fails here,
/// before any request; the column a Parquet sink partitions by must survive them (JSON lines
/// have no partitions).
fn check_schema(
    file: &Path,
    format: &dyn Format,
    transforms: &[Arc<dyn Transform>],
    sink: &SinkConfig,
) -> anyhow::Result<()> {
    let mut schema = format.schema();
    for t in transforms {
        schema = t
            .output_schema(&schema)
            .map_err(|e| anyhow::anyhow!("{}: transform {}: {e}", file.display(), t.describe()))?;
    }
    let SinkConfig::Parquet(parquet) = sink else {
        return Ok(());
    };
    if let Some(missing) = parquet
        .plain_columns
        .iter()
        .find(|c| schema.column_with_name(c).is_none())
    {
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        anyhow::bail!(
            "{}: sink.plain_columns: `{missing}` is not a column of the records the sink receives (columns: {})",
            file.display(),
            names.join(", ")
        );
    }
    let time_column = format.time_column();
    anyhow::ensure!(
        schema.column_with_name(time_column).is_some(),
        "{}: transforms: the sink derives the `dt` partition from `{time_column}`, which the transforms remove or rename",
        file.display()
    );
    Ok(())
}

fn format_for(source: &SourceConfig) -> Arc<dyn Format> {
    match source {
        SourceConfig::MailDelivery(_) => Arc::new(etl_formats::mail_delivery::MailDeliveryFormat::new()),
        SourceConfig::MailTracking(_) => Arc::new(etl_formats::mail_tracking::MailTrackingFormat::new()),
        SourceConfig::CdnLogs(c) => {
            use etl_formats::cdn_access::{CdnAccessFormat, CdnAccessOptions};
            Arc::new(CdnAccessFormat::new(CdnAccessOptions {
                max_line_bytes: usize::try_from(c.max_line_bytes.0).unwrap_or(usize::MAX),
                ..CdnAccessOptions::default()
            }))
        }
        SourceConfig::AuditLog(_) => Arc::new(etl_formats::audit_log::AuditLogFormat::new(Default::default())),
        SourceConfig::WebdavLogs(_) => Arc::new(etl_formats::event_log::EventLogFormat::new(Default::default())),
    }
}

/// The format of a source type's records, by its `type` (for `etl schema`); `None` for a type
/// no source has. It must agree with [`format_for`]: the options that one takes from the config
/// (a line length cap) bound decoding and never change the schema.
pub fn format_for_kind(kind: &str) -> Option<Arc<dyn Format>> {
    Some(match kind {
        "mail_delivery" => Arc::new(etl_formats::mail_delivery::MailDeliveryFormat::new()),
        "mail_tracking" => Arc::new(etl_formats::mail_tracking::MailTrackingFormat::new()),
        "cdn_logs" => Arc::new(etl_formats::cdn_access::CdnAccessFormat::new(Default::default())),
        "audit_log" => Arc::new(etl_formats::audit_log::AuditLogFormat::new(Default::default())),
        "webdav_logs" => Arc::new(etl_formats::event_log::EventLogFormat::new(Default::default())),
        _ => return None,
    })
}

fn http_config(c: &PipelineConfig) -> HttpConfig {
    HttpConfig {
        connect_timeout: c.http.connect_timeout,
        read_timeout: c.http.read_timeout,
        max_attempts: c.http.max_attempts,
        max_retry_time: c.http.max_retry_time,
        backoff_base: c.http.backoff_base,
        backoff_max: c.http.backoff_max,
        ..HttpConfig::default()
    }
}

/// Every secret of the pipeline, so the HTTP layer can redact them from logs and errors.
fn secrets(c: &PipelineConfig) -> Vec<Secret> {
    let mut s = c.source.secrets();
    match &c.sink {
        SinkConfig::Parquet(sink) => s.extend(sink.s3.secrets()),
        SinkConfig::Jsonl(_) => {}
    }
    s.extend(
        ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
            .into_iter()
            .filter_map(|name| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
            .map(Secret::new),
    );
    for t in &c.transforms {
        if let TransformConfig::Hash { key, .. } = t {
            s.push(key.clone());
        }
    }
    s
}
