//! The summary a person reads after a run (on stderr, so stdout stays free for data), with a
//! DuckDB query to paste.

use std::fmt::Write as _;
use std::time::Duration;

use etl_core::RunReport;

use crate::registry::Prepared;

pub fn print(prepared: &Prepared, report: &RunReport, planned: usize, elapsed: Duration, lost: &[String]) {
    eprint!("{}", render(prepared, report, planned, elapsed, lost));
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn render(prepared: &Prepared, report: &RunReport, planned: usize, elapsed: Duration, lost: &[String]) -> String {
    let mut s = String::new();
    let cfg = &prepared.config;
    let run = report.outcomes.len();
    let _ = writeln!(
        s,
        "\netl run {}: {planned} unit(s) planned, {} already done, {run} run, in {:.1}s",
        cfg.name,
        planned - run,
        elapsed.as_secs_f64()
    );
    if run > 0 {
        let _ = writeln!(
            s,
            "{:<48} {:<11} {:>10} {:>5} {:>10} {:>8} {:>7} {:>5} {:>7}",
            "unit", "status", "rows", "files", "bytes", "requests", "retries", "bad", "time"
        );
    }
    let (mut rows, mut files, mut bytes, mut requests, mut retries, mut bad) = (0u64, 0usize, 0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for o in &report.outcomes {
        let status = crate::report::unit_status(o);
        let (f, b) = crate::report::written(o);
        if let etl_core::UnitStatus::Failed { message, .. } = &o.status {
            failures.push(format!("  {}: {message}", o.unit.id));
        }
        rows += o.rows;
        files += f;
        bytes += b;
        requests += o.fetch.requests;
        retries += o.fetch.retries;
        bad += o.bad_records;
        let _ = writeln!(
            s,
            "{:<48} {:<11} {:>10} {:>5} {:>10} {:>8} {:>7} {:>5} {:>6.1}s",
            o.unit.id,
            status,
            o.rows,
            f,
            human_bytes(b),
            o.fetch.requests,
            o.fetch.retries,
            o.bad_records,
            o.duration.as_secs_f64()
        );
    }
    if run > 1 {
        let _ = writeln!(
            s,
            "{:<48} {:<11} {rows:>10} {files:>5} {:>10} {requests:>8} {retries:>7} {bad:>5}",
            "total",
            "",
            human_bytes(bytes)
        );
    }
    let mut unknown: std::collections::BTreeMap<&str, u64> = Default::default();
    for o in &report.outcomes {
        for (name, n) in &o.unknown_fields {
            *unknown.entry(name.as_str()).or_default() += n;
        }
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let _ = writeln!(
            s,
            "fields not in the schema (ignored; set on_unknown_field: fail to stop on them): {}",
            list.join(", ")
        );
    }
    if !failures.is_empty() {
        let _ = writeln!(s, "failures:");
        for f in failures {
            let _ = writeln!(s, "{f}");
        }
    }
    for l in lost {
        let _ = writeln!(s, "{l}");
    }
    let (waits, waited) = etl_http::rate_limit_waits();
    if waits > 0 {
        let _ = writeln!(
            s,
            "rate-limit waits: {waits}, {:.1}s in all (the API's limits, or a server's Retry-After)",
            waited.as_secs_f64()
        );
    }
    let location = prepared.pipeline.sink.location();
    let _ = writeln!(s, "data: {location}");
    let _ = writeln!(s, "try:  duckdb -c \"{}\"", crate::report::duckdb_query(&location));
    s
}
