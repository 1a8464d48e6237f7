//! `etl state`: see and reset what is done.
//!
//! A run skips every unit the state marks done, which is what makes reruns cheap and exact.
//! Sometimes an operator wants a unit loaded again on purpose (the vendor fixed a day, a
//! transform changed): forgetting its state record is all it takes. Its files stay visible
//! until the next run rewrites them under the same names (names come from the unit id), so
//! the dataset never holds the day twice and never lacks it in between.

use chrono::{DateTime, Utc};
use etl_core::UnitRecord;

use crate::exit;
use crate::registry;

/// `etl state --help`.
pub const HELP: &str = "\
Example:
  etl state pipelines/mail.yaml list
  etl state pipelines/mail.yaml list --json | jq -r .unit
  etl state pipelines/mail.yaml forget mail_delivery-2025-09-11
  etl state pipelines/cdn.yaml forget --from 2025-09-01 --to 2025-09-08

A forgotten unit keeps its files until the next run fetches it again and replaces them.";

/// What `etl state` was asked.
#[derive(Debug)]
pub enum Action {
    List {
        json: bool,
    },
    Forget {
        units: Vec<String>,
        from: Option<String>,
        to: Option<String>,
    },
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Runs `etl state FILE ACTION`; returns the exit code.
pub async fn state(file: &std::path::Path, action: Action) -> u8 {
    let now = Utc::now();
    let prepared = match registry::prepare_inspect(file, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e:#}");
            return exit::USAGE;
        }
    };
    let store = &prepared.pipeline.state;
    let records = match store.load().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: reading state: {e}", file.display());
            return crate::code_for(e.class());
        }
    };
    match action {
        Action::List { json } => crate::catalog::print(&list(&records, json)),
        Action::Forget { units, from, to } => {
            let chosen: Vec<&UnitRecord> = if units.is_empty() {
                let (Some(from), Some(to)) = (from, to) else {
                    eprintln!("error: name the units to forget, or give both --from and --to");
                    return exit::USAGE;
                };
                let range = (|| -> anyhow::Result<_> {
                    let (from, to) = (crate::resolve(&from, now, "--from")?, crate::resolve(&to, now, "--to")?);
                    anyhow::ensure!(from < to, "the range is empty: --from {from} is not before --to {to}");
                    Ok((from, to))
                })();
                let (from, to) = match range {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return exit::USAGE;
                    }
                };
                records
                    .values()
                    .filter(|r| r.unit.window.start < to && r.unit.window.end > from)
                    .collect()
            } else {
                let unknown: Vec<&str> = units
                    .iter()
                    .map(String::as_str)
                    .filter(|u| !records.contains_key(*u))
                    .collect();
                if !unknown.is_empty() {
                    eprintln!(
                        "error: {}: no state record for {}; nothing was forgotten (`etl state {} list` shows the units done)",
                        file.display(),
                        unknown.join(", "),
                        file.display()
                    );
                    return exit::USAGE;
                }
                units.iter().filter_map(|u| records.get(u)).collect()
            };
            if chosen.is_empty() {
                eprintln!("no unit of the state falls in that range: nothing forgotten");
                return exit::OK;
            }
            for r in chosen {
                match store.forget(&r.unit.id).await {
                    Ok(_) => eprintln!(
                        "forgot {} ({} .. {}, committed {}, {} rows): the next run loads it again and replaces its files",
                        r.unit.id,
                        rfc3339(r.unit.window.start),
                        rfc3339(r.unit.window.end),
                        rfc3339(r.committed_at),
                        r.report.rows
                    ),
                    Err(e) => {
                        eprintln!("error: {}: forgetting {}: {e}", file.display(), r.unit.id);
                        return crate::code_for(e.class());
                    }
                }
            }
            exit::OK
        }
    }
}

fn list(records: &std::collections::BTreeMap<String, UnitRecord>, json: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if json {
        for r in records.values() {
            let v = serde_json::json!({
                "unit": r.unit.id,
                "stream": r.unit.stream(),
                "window_start": rfc3339(r.unit.window.start),
                "window_end": rfc3339(r.unit.window.end),
                "provisional": r.unit.provisional,
                "committed_at": rfc3339(r.committed_at),
                "rows": r.report.rows,
                "files": r.report.files,
                "bytes": r.report.bytes,
                "bad_records": r.report.bad_records,
            });
            let _ = writeln!(s, "{v}");
        }
        return s;
    }
    if records.is_empty() {
        return "no unit is done yet\n".into();
    }
    let width = records.keys().map(String::len).max().unwrap_or(4).max(4);
    let _ = writeln!(
        s,
        "{:<width$}  {:<44}  {:<11}  {:<20}  {:>10}  {:>5}",
        "unit", "window (UTC, end exclusive)", "status", "committed", "rows", "files"
    );
    for r in records.values() {
        let _ = writeln!(
            s,
            "{:<width$}  {} .. {}  {:<11}  {:<20}  {:>10}  {:>5}",
            r.unit.id,
            rfc3339(r.unit.window.start),
            rfc3339(r.unit.window.end),
            if r.is_final() { "done" } else { "provisional" },
            rfc3339(r.committed_at),
            r.report.rows,
            r.report.files.len()
        );
    }
    s
}
