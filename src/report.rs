//! What a run leaves for schedulers: `--summary-json FILE` (the summary table as JSON) and
//! `--metrics-file FILE` (Prometheus text format, for node-exporter's textfile collector).
//!
//! Both files are written whole to a temporary name beside the target and renamed, so a
//! collector scraping at the wrong moment reads the previous run's file or this one, never half
//! of one. The metrics describe the last run (gauges, not counters: each run replaces the file),
//! except `etl_last_success_timestamp_seconds`, which a failed run carries over from the file it
//! replaces, so that an alert on "no success for 2 h" keeps working through failures.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_core::{RunReport, UnitStatus};

use crate::registry::Prepared;

/// Everything a run reports, gathered once for the summary table, the JSON and the metrics.
pub struct RunFacts<'a> {
    pub prepared: &'a Prepared,
    pub report: &'a RunReport,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub elapsed: Duration,
    pub planned: usize,
    pub lost: &'a [String],
    pub exit_code: u8,
    /// Responses by HTTP status, and attempts that got none.
    pub responses: (std::collections::BTreeMap<u16, u64>, u64),
    /// Rate-budget waits and their total time.
    pub waits: (u64, Duration),
    /// The process's peak resident memory so far, where the OS tells it.
    pub peak_rss: Option<u64>,
}

/// The peak resident set size of this process (`VmHWM` of `/proc/self/status`), in bytes;
/// `None` where there is no procfs. For operators sizing a container, and for the benchmark
/// that checks memory stays flat as data grows.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// How a unit ended, in the words of the summary table and the JSON.
pub fn unit_status(o: &etl_core::UnitOutcome) -> &'static str {
    match &o.status {
        UnitStatus::Committed { .. } if o.unit.provisional => "provisional",
        UnitStatus::Committed { .. } => "committed",
        UnitStatus::Failed {
            class: etl_core::ErrorClass::Permanent,
            ..
        } => "failed",
        UnitStatus::Failed { .. } => "retry later",
        UnitStatus::CommittedElsewhere { .. } => "elsewhere",
        UnitStatus::Cancelled => "interrupted",
    }
}

/// Files and bytes this run wrote for the unit.
pub fn written(o: &etl_core::UnitOutcome) -> (usize, u64) {
    match &o.status {
        UnitStatus::Committed { report } => (report.files.len(), report.bytes),
        _ => (0, 0),
    }
}

fn outcome(code: u8) -> &'static str {
    match code {
        crate::exit::OK => "ok",
        crate::exit::RETRYABLE => "retryable",
        crate::exit::PERMANENT => "permanent",
        crate::exit::INTERRUPTED => "interrupted",
        crate::exit::USAGE => "usage",
        _ => "internal",
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The DuckDB query the summary suggests.
pub fn duckdb_query(location: &str) -> String {
    format!(
        "SELECT dt, count(*) AS rows FROM read_parquet('{}/**/*.parquet', hive_partitioning = true) GROUP BY dt ORDER BY dt",
        location.trim_end_matches('/')
    )
}

/// `--summary-json`: the run as one JSON object.
pub fn summary_json(f: &RunFacts<'_>) -> serde_json::Value {
    let cfg = &f.prepared.config;
    let units: Vec<serde_json::Value> = f
        .report
        .outcomes
        .iter()
        .map(|o| {
            let (files, bytes) = written(o);
            let mut v = serde_json::json!({
                "unit": o.unit.id,
                "status": unit_status(o),
                "provisional": o.unit.provisional,
                "window_start": rfc3339(o.unit.window.start),
                "window_end": rfc3339(o.unit.window.end),
                "rows": o.rows,
                "files": files,
                "bytes": bytes,
                "requests": o.fetch.requests,
                "retries": o.fetch.retries,
                "bad_records": o.bad_records,
                "duration_seconds": o.duration.as_secs_f64(),
            });
            if let UnitStatus::Failed { message, .. } = &o.status {
                v["error"] = message.clone().into();
            }
            v
        })
        .collect();
    let sum = |g: &dyn Fn(&etl_core::UnitOutcome) -> u64| f.report.outcomes.iter().map(g).sum::<u64>();
    let location = f.prepared.pipeline.sink.location();
    serde_json::json!({
        "pipeline": cfg.name,
        "file": cfg.path.display().to_string(),
        "source": f.prepared.pipeline.source.kind(),
        "from": rfc3339(f.from),
        "to": rfc3339(f.to),
        "started_at": rfc3339(f.started_at),
        "duration_seconds": f.elapsed.as_secs_f64(),
        "peak_rss_bytes": f.peak_rss,
        "exit_code": f.exit_code,
        "outcome": outcome(f.exit_code),
        "units_planned": f.planned,
        "units_already_done": f.planned - f.report.outcomes.len(),
        "units_run": f.report.outcomes.len(),
        "totals": {
            "rows": sum(&|o| o.rows),
            "files": sum(&|o| written(o).0 as u64),
            "bytes": sum(&|o| written(o).1),
            "requests": sum(&|o| o.fetch.requests),
            "retries": sum(&|o| o.fetch.retries),
            "bad_records": sum(&|o| o.bad_records),
            "rate_limit_waits": f.waits.0,
            "rate_limit_wait_seconds": f.waits.1.as_secs_f64(),
        },
        "responses_by_status": f
            .responses
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>(),
        "attempts_without_response": f.responses.1,
        "units": units,
        "lost": f.lost,
        "data": location,
        "query": duckdb_query(&location),
    })
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

const LAST_SUCCESS: &str = "etl_last_success_timestamp_seconds";

/// The last success time the metrics file `previous` recorded for `pipeline`.
fn previous_success(previous: &str, pipeline: &str) -> Option<f64> {
    let prefix = format!("{LAST_SUCCESS}{{pipeline=\"{}\"}} ", label(pipeline));
    previous
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// `--metrics-file`: Prometheus text format. `previous` is the file this one replaces.
pub fn metrics(f: &RunFacts<'_>, previous: Option<&str>, now: DateTime<Utc>) -> String {
    let pipeline = label(&f.prepared.config.name);
    let mut s = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let extra = if labels.is_empty() {
                String::new()
            } else {
                format!(",{labels}")
            };
            let _ = writeln!(s, "{name}{{pipeline=\"{pipeline}\"{extra}}} {v}");
        }
    };
    let outcomes = &f.report.outcomes;
    let sum = |g: &dyn Fn(&etl_core::UnitOutcome) -> u64| outcomes.iter().map(g).sum::<u64>() as f64;
    let one = |v: f64| vec![(String::new(), v)];
    gauge(
        "etl_run_records",
        "Records the last run committed.",
        &one(sum(&|o| o.rows)),
    );
    gauge(
        "etl_run_bytes_written",
        "Bytes of Parquet the last run committed.",
        &one(sum(&|o| written(o).1)),
    );
    gauge(
        "etl_run_files_written",
        "Files the last run committed.",
        &one(sum(&|o| written(o).0 as u64)),
    );
    let mut by_status: Vec<(String, f64)> = f
        .responses
        .0
        .iter()
        .map(|(code, n)| (format!("status=\"{code}\""), *n as f64))
        .collect();
    by_status.push(("status=\"none\"".into(), f.responses.1 as f64));
    gauge(
        "etl_run_requests",
        "HTTP attempts of the last run by response status (`none`: no response, e.g. a connect error or timeout).",
        &by_status,
    );
    gauge(
        "etl_run_retries",
        "Attempts the last run retried.",
        &one(sum(&|o| o.fetch.retries)),
    );
    gauge(
        "etl_run_rate_limit_waits",
        "Times a request of the last run waited for a rate budget.",
        &one(f.waits.0 as f64),
    );
    gauge(
        "etl_run_rate_limit_wait_seconds",
        "Time the last run's requests spent waiting for rate budgets.",
        &one(f.waits.1.as_secs_f64()),
    );
    gauge(
        "etl_run_bad_records",
        "Bad records the last run skipped (on_bad_record: skip).",
        &one(sum(&|o| o.bad_records)),
    );
    let mut units: std::collections::BTreeMap<&str, u64> = [
        "committed",
        "provisional",
        "failed",
        "retry later",
        "elsewhere",
        "interrupted",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    for o in outcomes {
        *units.entry(unit_status(o)).or_default() += 1;
    }
    let mut samples: Vec<(String, f64)> = units
        .iter()
        .map(|(k, n)| (format!("outcome=\"{}\"", k.replace(' ', "_")), *n as f64))
        .collect();
    samples.push(("outcome=\"already_done\"".into(), (f.planned - outcomes.len()) as f64));
    gauge("etl_run_units", "Units of the last run by outcome.", &samples);
    gauge(
        "etl_run_duration_seconds",
        "Wall time of the last run.",
        &one(f.elapsed.as_secs_f64()),
    );
    if let Some(rss) = f.peak_rss {
        gauge(
            "etl_run_peak_rss_bytes",
            "Peak resident memory of the last run's process.",
            &one(rss as f64),
        );
    }
    gauge(
        "etl_run_exit_code",
        "Exit code of the last run.",
        &one(f64::from(f.exit_code)),
    );
    gauge(
        "etl_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        &one(now.timestamp_millis() as f64 / 1000.0),
    );
    let last_success = if f.exit_code == crate::exit::OK {
        Some(now.timestamp_millis() as f64 / 1000.0)
    } else {
        previous.and_then(|p| previous_success(p, &f.prepared.config.name))
    };
    if let Some(t) = last_success {
        gauge(
            LAST_SUCCESS,
            "When a run of the pipeline last ended with exit code 0 (Unix time).",
            &one(t),
        );
    }
    s
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_previous_success_is_found_for_its_pipeline_only() {
        let prev = "etl_last_success_timestamp_seconds{pipeline=\"other\"} 5\n\
                    etl_last_success_timestamp_seconds{pipeline=\"mail\"} 1764806400.5\n";
        assert_eq!(previous_success(prev, "mail"), Some(1_764_806_400.5));
        assert_eq!(previous_success(prev, "cdn"), None);
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etl.prom");
        write_atomic(&path, "one\n").unwrap();
        write_atomic(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
