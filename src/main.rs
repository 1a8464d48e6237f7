//! `etl`: the binary is glue. It parses the command line, turns a pipeline file into stages
//! through one registry `match` (`registry.rs`), runs them with `etl-core`'s runner, prints a
//! summary and maps the outcome to an exit code a scheduler can act on.

mod alloc;
mod catalog;
mod plan;
mod preview;
mod progress;
mod registry;
mod report;
mod select;
mod state_cmd;
mod summary;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use etl_config::TimeSpec;
use etl_core::{CancellationToken, ErrorClass, PlanRequest, RunOptions};

/// Exit codes, documented in `--help` and the README.
mod exit {
    pub const OK: u8 = 0;
    pub const INTERNAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const RETRYABLE: u8 = 3;
    pub const PERMANENT: u8 = 4;
    pub const INTERRUPTED: u8 = 130;
}

/// The exit codes as `--help` shows them (a macro, so that `concat!` can reuse the text).
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0    every unit done
  1    unexpected internal error
  2    usage or configuration error
  3    some unit failed for a reason a later run can overcome (network, 5xx, 429 after retries); other units committed
  4    some unit failed permanently (authentication, request rejected by the vendor, bad record under
       on_bad_record: fail), or a window was lost to the API's retention (see the LOST: line)
  130  interrupted by SIGINT/SIGTERM; committed units stay committed, the rest is redone by the next run"
    };
}

const EXIT_CODES: &str = exit_codes!();

const RUN_HELP: &str = concat!(
    "Example:\n",
    "  etl run pipelines/mail.yaml\n",
    "  etl run pipelines/cdn.yaml --from 2025-09-01 --to 2025-09-08 --summary-json summary.json\n",
    "  etl run pipelines/mail.yaml --log-format json --metrics-file /var/lib/node_exporter/etl_mail.prom\n",
    "  etl run pipelines/mail.yaml --from 2025-09-01 --to 2025-10-01 --shard $JOB_COMPLETION_INDEX/4\n",
    "  etl run pipelines/mail.yaml --from 2025-09-01 --to 2025-10-01 --unit mail_delivery-2025-09-14\n\n",
    exit_codes!()
);

const PREVIEW_HELP: &str = "\
Example:
  etl preview pipelines/mail.yaml --from 2025-09-11 --limit 5
  etl preview pipelines/cdn.yaml --json | jq .url

Exit codes: as for `etl run` (2 usage or configuration, 3 retryable, 4 permanent).";

#[derive(Parser, Debug)]
#[command(name = "etl", version, about = "Load vendor logs into hive-partitioned Parquet", after_help = EXIT_CODES)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object per line) for schedulers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline: fetch every unit of the range not done yet and commit it to the sink.
    #[command(after_help = RUN_HELP)]
    Run {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// Start of the range: RFC 3339, a date (2025-09-11), `now`, or relative (`-2d`, `-36h`).
        /// Default: the pipeline's `start` (default -7d).
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// End of the range (exclusive), same forms. Default: now.
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// Also write the summary as JSON to this file (for schedulers).
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
        /// Also write Prometheus text-format metrics to this file (node-exporter's textfile
        /// collector): records, bytes, requests by status, retries, unit outcomes, last success.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Show the units a run would process (done, provisional, to run), the requests they need,
    /// the time the rate budget makes them take, and every clamp applied: sends no data request.
    #[command(after_help = plan::HELP)]
    Plan {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// Start of the range, as for `run`. Default: the pipeline's `start`.
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// End of the range (exclusive), as for `run`. Default: now.
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// One JSON object per unit and line on stdout (notes go to stderr), for orchestrators.
        #[arg(long)]
        json: bool,
        /// Only the units shard I of N would run (as `etl run --shard`).
        #[arg(long, value_name = "I/N")]
        shard: Option<etl_core::Shard>,
        /// As `etl run --rate-share`: the budget time and the shard assignment with 1/K of each
        /// rate limit.
        #[arg(long, value_name = "1/K", value_parser = select::parse_rate_share)]
        rate_share: Option<u32>,
    },
    /// Inspect and reset what is done: list the committed units, or forget some so that the
    /// next run loads them again.
    #[command(after_help = state_cmd::HELP)]
    State {
        /// The pipeline file (YAML): its sink holds the state.
        file: PathBuf,
        #[command(subcommand)]
        action: StateAction,
    },
    /// Check pipeline files without touching the network: syntax, keys, environment variables,
    /// values, and that every transform's columns exist.
    #[command(
        after_help = "Example:\n  etl validate pipelines/*.yaml\n\nExit codes: 0 every file is valid, 2 some file is not (each problem is printed with file:line:column)."
    )]
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the first page or file of the first unit as a table: fetches only that, writes
    /// nothing and reads no state (the first unit is shown even if it is done).
    #[command(after_help = PREVIEW_HELP)]
    Preview {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// Start of the range, as for `run`. Default: the pipeline's `start`.
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// End of the range (exclusive), as for `run`. Default: now.
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// Records shown at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the records as JSON lines (as `sink: {type: jsonl}` writes them) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the source types a pipeline can read: their keys, defaults, and the limits of each
    /// vendor's API that a run plans within.
    #[command(after_help = catalog::SOURCES_HELP)]
    Sources {
        /// Print the whole configuration reference (every section and key) as Markdown, the text
        /// of docs/CONFIG.md.
        #[arg(long)]
        markdown: bool,
    },
    /// Print the columns a source type's records have: name, Arrow type, nullability.
    #[command(after_help = catalog::SCHEMA_HELP)]
    Schema {
        /// The source type (the `type:` of the pipeline file's `source:`).
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(etl_config::SourceConfig::TYPES))]
        source: String,
        /// Print JSON: {"source", "time_column", "columns": [{"name", "type", "nullable"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Serve the bundled simulator of the vendor APIs on 127.0.0.1.
    #[command(after_help = "Example:\n  etl sim --port 8080 --mail-rows-per-day 5000")]
    Sim(Box<etl_sim::SimArgs>),
}

/// Which units of the plan a worker runs (`etl run`); see `select.rs`.
#[derive(clap::Args, Debug, Default)]
struct SelectArgs {
    /// Run only this unit (repeatable), an id as `etl plan` prints it, for orchestrators that
    /// fan a plan out; the exit code is the unit's. The range must cover its window.
    #[arg(long = "unit", value_name = "ID", conflicts_with = "shard")]
    units: Vec<String>,
    /// Run only the units of shard I of N (0 <= I < N, as JOB_COMPLETION_INDEX). Units are
    /// assigned by the rate budget they draw on (one budget, one shard), else by unit id, with
    /// rendezvous hashing: every worker computes the same assignment alone.
    #[arg(long, value_name = "I/N")]
    shard: Option<etl_core::Shard>,
    /// Take 1/K of each rate limit of the source, so that K workers together stay under it
    /// (a backfill of one account over K workers); units are then assigned by id.
    #[arg(long, value_name = "1/K", value_parser = select::parse_rate_share)]
    rate_share: Option<u32>,
}

impl SelectArgs {
    fn selection(self) -> select::Selection {
        select::Selection {
            units: self.units,
            shard: self.shard,
            rate_share: self.rate_share,
        }
    }
}

#[derive(Subcommand, Debug)]
enum StateAction {
    /// List the units done (and provisional ones committed so far).
    #[command(after_help = "Example:\n  etl state pipelines/mail.yaml list --json | jq -r .unit")]
    List {
        /// One JSON object per unit and line.
        #[arg(long)]
        json: bool,
    },
    /// Forget units, by id or by window, so that the next run fetches them again and replaces
    /// their files.
    #[command(
        after_help = "Example:\n  etl state pipelines/mail.yaml forget mail_delivery-2025-09-11\n  etl state pipelines/mail.yaml forget --from 2025-09-01 --to 2025-09-08"
    )]
    Forget {
        /// Unit ids, as `list` shows them.
        #[arg(conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
        units: Vec<String>,
        /// Forget every unit whose window overlaps --from..--to (forms as for `run`).
        #[arg(long, allow_hyphen_values = true, requires = "to")]
        from: Option<String>,
        #[arg(long, allow_hyphen_values = true, requires = "from")]
        to: Option<String>,
    },
}

fn main() -> ExitCode {
    alloc::tune();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let code = match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Run {
            file,
            from,
            to,
            summary_json,
            metrics_file,
            select,
        } => runtime().block_on(run(
            file,
            from,
            to,
            Outputs {
                summary_json,
                metrics_file,
            },
            select.selection(),
        )),
        Command::Plan {
            file,
            from,
            to,
            json,
            shard,
            rate_share,
        } => runtime().block_on(plan::plan(plan::Args {
            file,
            from,
            to,
            json,
            select: select::Selection {
                units: Vec::new(),
                shard,
                rate_share,
            },
        })),
        Command::State { file, action } => {
            let action = match action {
                StateAction::List { json } => state_cmd::Action::List { json },
                StateAction::Forget { units, from, to } => state_cmd::Action::Forget { units, from, to },
            };
            runtime().block_on(state_cmd::state(&file, action))
        }
        Command::Preview {
            file,
            from,
            to,
            limit,
            json,
        } => runtime().block_on(preview::preview(preview::Args {
            file,
            from,
            to,
            limit,
            json,
        })),
        Command::Sources { markdown } => catalog::sources(markdown),
        Command::Schema { source, json } => catalog::schema(&source, json),
        Command::Sim(args) => match runtime().block_on(etl_sim::run(*args)) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: simulator: {e}");
                exit::INTERNAL
            }
        },
    };
    ExitCode::from(code)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Logs on stderr, filtered by `ETL_LOG` (default `info`); on a terminal with text logs, the
/// progress display listens too (it reads the `etl::progress` trace events whatever the filter).
fn init_logging(format: LogFormat) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ETL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer().with_writer(progress::LogWriter);
    let log = match format {
        LogFormat::Json => log.json().with_current_span(false).with_filter(filter).boxed(),
        LogFormat::Text => log
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_filter(filter)
            .boxed(),
    };
    let progress = progress::wanted(matches!(format, LogFormat::Json)).then(|| {
        progress::Layer::new().with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() == "etl::progress" || *m.level() <= tracing::Level::INFO
        }))
    });
    tracing_subscriber::registry().with(log).with(progress).init();
}

fn validate(files: &[PathBuf]) -> u8 {
    let mut code = exit::OK;
    for file in files {
        match registry::check(file) {
            Ok(summary) => eprintln!("ok: {}: {summary}", file.display()),
            Err(e) => {
                eprintln!("{e:#}");
                code = exit::USAGE;
            }
        }
    }
    code
}

fn resolve(spec: &str, now: DateTime<Utc>, flag: &str) -> anyhow::Result<DateTime<Utc>> {
    let t = TimeSpec::parse(spec).map_err(|e| anyhow::anyhow!("{flag} {spec:?}: {e}"))?;
    Ok(t.resolve(now))
}

/// Where a run also reports, besides stderr.
#[derive(Debug, Default)]
struct Outputs {
    summary_json: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
}

/// The exit code of a failure of class `class`.
fn code_for(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Retryable => exit::RETRYABLE,
        ErrorClass::Permanent => exit::PERMANENT,
        ErrorClass::Internal => exit::INTERNAL,
        ErrorClass::Cancelled => exit::INTERRUPTED,
    }
}

/// The first step of `run`, `plan` and `preview`: the pipeline built by `prepare` and the plan
/// request of the range; on error, the message is printed and the exit code returned.
fn load(
    file: &std::path::Path,
    from: Option<&str>,
    to: Option<&str>,
    prepare: impl FnOnce(&std::path::Path) -> anyhow::Result<registry::Prepared>,
) -> Result<(registry::Prepared, PlanRequest), u8> {
    let now = Utc::now();
    let prepared = prepare(file).map_err(|e| {
        eprintln!("{e:#}");
        exit::USAGE
    })?;
    let (from, to) = resolve_range(&prepared, from, to, now).map_err(|e| {
        eprintln!("error: {e:#}");
        exit::USAGE
    })?;
    let settle = prepared.config.settle;
    Ok((prepared, PlanRequest { from, to, now, settle }))
}

/// `--from`/`--to` of `run`, `plan` and `preview`, with the pipeline's `start` and now as
/// defaults.
fn resolve_range(
    prepared: &registry::Prepared,
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let from = match from {
        Some(s) => resolve(s, now, "--from")?,
        None => prepared.config.start.resolve(now),
    };
    let to = match to {
        Some(s) => resolve(s, now, "--to")?,
        None => now,
    };
    anyhow::ensure!(from < to, "the range is empty: --from {from} is not before --to {to}");
    Ok((from, to))
}

async fn run(
    file: PathBuf,
    from: Option<String>,
    to: Option<String>,
    outputs: Outputs,
    select: select::Selection,
) -> u8 {
    if let Err(e) = select.check() {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let prepare = |f: &std::path::Path| registry::prepare(f, select.rate_share);
    let (prepared, req) = match load(&file, from.as_deref(), to.as_deref(), prepare) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match execute(prepared, req, &outputs, &select).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::INTERNAL
        }
    }
}

async fn execute(
    prepared: registry::Prepared,
    req: PlanRequest,
    outputs: &Outputs,
    select: &select::Selection,
) -> anyhow::Result<u8> {
    let cfg = &prepared.config;
    let pipeline = Arc::clone(&prepared.pipeline);
    let done = pipeline
        .state
        .load()
        .await
        .map_err(|e| anyhow::anyhow!("reading state: {e}"))?;
    // Sources whose units are files on the server list them; the others plan from the range.
    let discovered = match pipeline.source.discover(&req, &done).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: listing the source's files: {e}", cfg.path.display());
            return Ok(match e.class() {
                ErrorClass::Permanent => exit::PERMANENT,
                ErrorClass::Internal => exit::INTERNAL,
                _ => exit::RETRYABLE,
            });
        }
    };
    let plan = match discovered.map_or_else(|| pipeline.source.plan(&req), Ok) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}: planning: {e}", cfg.path.display());
            return Ok(if e.class() == ErrorClass::Permanent {
                exit::USAGE
            } else {
                exit::RETRYABLE
            });
        }
    };
    for note in &plan.notes {
        tracing::warn!(pipeline = %cfg.name, "{note}");
    }
    // Each lost stream is reported by one worker (all of the plan's streams are looked at,
    // not only this worker's units').
    let reported: Vec<etl_core::Unit> = plan
        .units
        .iter()
        .filter(|u| select.reports_lost(u.stream()))
        .cloned()
        .collect();
    let mut lost = lost_windows(pipeline.source.as_ref(), &reported, &done, req.now);
    if select.reports_lost(pipeline.source.kind()) {
        lost.extend(plan.lost.iter().map(|l| format!("LOST: {l}")));
    }
    for l in &lost {
        tracing::error!(pipeline = %cfg.name, "{l}");
    }
    // A `--unit` run's exit code is its unit's: the loss is reported, by `etl plan` too.
    if !select.units.is_empty() {
        lost.clear();
    }
    let all = plan.units.len();
    let mine = match select.apply(pipeline.source.as_ref(), plan.units) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {}: {e}", cfg.path.display());
            return Ok(exit::USAGE);
        }
    };
    if let Some(shard) = select.shard {
        tracing::info!(pipeline = %cfg.name, %shard, units = mine.len(), of = all, "shard");
    }
    let planned = mine.len();
    let units: Vec<_> = mine
        .into_iter()
        .filter(|u| !done.get(&u.id).is_some_and(|r| r.is_final()))
        .collect();
    tracing::info!(
        pipeline = %cfg.name,
        from = %req.from.format("%Y-%m-%dT%H:%M:%SZ"),
        to = %req.to.format("%Y-%m-%dT%H:%M:%SZ"),
        planned,
        already_done = planned - units.len(),
        to_run = units.len(),
        "plan"
    );
    let cancel = CancellationToken::new();
    tokio::spawn(watch_signals(cancel.clone()));
    let opts = RunOptions {
        channel_capacity: cfg.runtime.channel_capacity,
        decode_workers: cfg.runtime.decode_workers,
        unit_concurrency: cfg.runtime.unit_concurrency,
        decode: etl_core::DecodeContext {
            policy: cfg.on_bad_record,
            batch_size: cfg.runtime.batch_size,
            unknown_fields: cfg.on_unknown_field,
        },
    };
    let started_at = Utc::now();
    let started = std::time::Instant::now();
    let display = progress::Display::start(&units);
    let report = etl_core::runner::run(Arc::clone(&pipeline), units, opts, cancel.clone()).await;
    display.finish();
    let elapsed = started.elapsed();
    summary::print(&prepared, &report, planned, elapsed, &lost);
    let code = match report.worst() {
        Some(ErrorClass::Internal) => exit::INTERNAL,
        Some(ErrorClass::Cancelled) => exit::INTERRUPTED,
        // Data beyond the API's retention cannot be fetched by any later run.
        _ if !lost.is_empty() => exit::PERMANENT,
        None => exit::OK,
        Some(ErrorClass::Permanent) => exit::PERMANENT,
        Some(ErrorClass::Retryable) => exit::RETRYABLE,
    };
    let facts = report::RunFacts {
        prepared: &prepared,
        report: &report,
        from: req.from,
        to: req.to,
        started_at,
        elapsed,
        planned,
        lost: &lost,
        exit_code: code,
        responses: etl_http::responses_by_status(),
        waits: etl_http::rate_limit_waits(),
        peak_rss: report::peak_rss(),
    };
    let mut code = code;
    if let Some(path) = &outputs.summary_json {
        let text = format!("{:#}\n", report::summary_json(&facts));
        if let Err(e) = report::write_atomic(path, &text) {
            eprintln!("error: writing the summary to {}: {e}", path.display());
            code = code.max(exit::INTERNAL);
        }
    }
    if let Some(path) = &outputs.metrics_file {
        let previous = std::fs::read_to_string(path).ok();
        let text = report::metrics(&facts, previous.as_deref(), Utc::now());
        if let Err(e) = report::write_atomic(path, &text) {
            eprintln!("error: writing the metrics to {}: {e}", path.display());
            code = code.max(exit::INTERNAL);
        }
    }
    Ok(code)
}

/// Windows that fell out of the API's retention between the last committed unit of a stream
/// and now: nothing can fetch them any more, so the run says exactly which and exits non-zero
/// for a scheduler to alert.
fn lost_windows(
    source: &dyn etl_core::Source,
    planned: &[etl_core::Unit],
    done: &std::collections::BTreeMap<String, etl_core::UnitRecord>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let Some(oldest) = source.retention_start(now) else {
        return Vec::new();
    };
    let streams: std::collections::BTreeSet<&str> = planned.iter().map(|u| u.stream()).collect();
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    streams
        .into_iter()
        .filter_map(|stream| {
            let last = done.values().filter(|r| r.is_final() && r.unit.stream() == stream).map(|r| r.unit.window.end).max()?;
            (last < oldest).then(|| {
                format!(
                    "LOST: {stream}: records from {} to {} can no longer be fetched: the last committed unit ended at {}, \
                     and the API now serves only from {}. Schedule runs more often than the API's retention.",
                    fmt(last),
                    fmt(oldest),
                    fmt(last),
                    fmt(oldest)
                )
            })
        })
        .collect()
}

/// First SIGINT/SIGTERM: stop starting work, abort in-flight units (nothing partial becomes
/// visible, their state is untouched) and report. Second: exit at once, which is still safe
/// because uncommitted files are never visible and are cleaned by the next run.
async fn watch_signals(cancel: CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return;
    };
    let next = async |term: &mut tokio::signal::unix::Signal| {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    };
    let sig = next(&mut term).await;
    tracing::warn!(
        "{sig} received: stopping; committed units stay committed, unfinished ones are redone next run (again to exit at once)"
    );
    cancel.cancel();
    let sig = next(&mut term).await;
    eprintln!("{sig} received again: exiting now");
    std::process::exit(i32::from(exit::INTERRUPTED));
}
