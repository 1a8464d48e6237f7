//! `etl plan`: what a run would do, without doing any of it.
//!
//! An operator setting a pipeline up, or an orchestrator fanning units out to workers, needs
//! to know before anything is fetched: which units the range becomes, which of them are done
//! already, which are provisional (their window is still open, so every run replaces them),
//! which windows are lost to the API's retention, how many requests the rest needs, how long
//! the rate budget makes that take, and every clamp or split the source applied to fit the
//! API's rules. The plan is the one `etl run` computes (same code path: `discover` or `plan`,
//! then the state), so what it says is what a run does. It sends no data request; a source
//! whose units are files on the server (WebDAV) has to list them, which is said.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use etl_core::{BudgetTime, Cost, ErrorClass, PlanRequest, Unit, UnitRecord};
use serde::Serialize;

use crate::registry::{self, Prepared};
use crate::{exit, lost_windows};

/// `etl plan --help`.
pub const HELP: &str = "\
Sends no data request (a WebDAV source lists its collections, since its units are the files
listed there). Writes nothing.

Statuses:
  run          not done: the next run fetches and commits it for good
  provisional  its window is still open (or within `settle` of closing): every run fetches it
               again and replaces its files, until it has closed
  done         committed for good: the next run skips it (`etl state forget` reloads it)

Example:
  etl plan pipelines/cdn.yaml --from -3d
  etl plan pipelines/mail.yaml --from 2025-09-01 --to 2025-09-08 --json | jq -r 'select(.status != \"done\") | .unit'

Exit codes: 0 planned, 2 usage or configuration error (a range the API cannot serve included),
3 the listing failed for a reason a later try can overcome, 4 it failed permanently.";

/// What `etl plan` was asked.
#[derive(Debug)]
pub struct Args {
    pub file: std::path::PathBuf,
    pub from: Option<String>,
    pub to: Option<String>,
    pub json: bool,
    /// `--shard` and `--rate-share`, as `etl run` takes them.
    pub select: crate::select::Selection,
}

/// One unit of the plan, as `--json` prints it (one object per line).
#[derive(Debug, Serialize)]
struct PlannedUnit<'a> {
    pipeline: &'a str,
    source: &'a str,
    unit: &'a str,
    stream: &'a str,
    status: &'static str,
    window_start: String,
    window_end: String,
    partitions: BTreeMap<&'a str, &'a str>,
    /// The rate budget the unit draws on (`null` where the API limits no rate): units with
    /// the same budget belong in one worker, or need `--rate-share`.
    budget: Option<String>,
    /// The key `etl run --shard` assigns the unit by: the budget, or the unit id.
    shard_key: String,
    /// When it was committed, for `done` units and provisional ones committed before.
    #[serde(skip_serializing_if = "Option::is_none")]
    committed_at: Option<String>,
    /// What it costs in requests; absent for done units.
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<Cost>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn status(unit: &Unit, done: &BTreeMap<String, UnitRecord>) -> &'static str {
    match done.get(&unit.id) {
        Some(r) if r.is_final() => "done",
        _ if unit.provisional => "provisional",
        _ => "run",
    }
}

/// Runs `etl plan`; returns the exit code.
pub async fn plan(args: Args) -> u8 {
    if let Err(e) = args.select.check() {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let rate_share = args.select.rate_share;
    let (prepared, req) = match crate::load(&args.file, args.from.as_deref(), args.to.as_deref(), |f| {
        registry::prepare_inspect(f, rate_share)
    }) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let now = req.now;
    let cfg = &prepared.config;
    let pipeline = &prepared.pipeline;
    let done = match pipeline.state.load().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: reading state: {e}", cfg.path.display());
            return crate::code_for(e.class());
        }
    };
    let discovered = match pipeline.source.discover(&req, &done).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: listing the source's files: {e}", cfg.path.display());
            return crate::code_for(e.class());
        }
    };
    let listed = discovered.is_some();
    let plan = match discovered.map_or_else(|| pipeline.source.plan(&req), Ok) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}: planning: {e}", cfg.path.display());
            return if e.class() == ErrorClass::Permanent {
                exit::USAGE
            } else {
                exit::RETRYABLE
            };
        }
    };
    let mut lost = lost_windows(pipeline.source.as_ref(), &plan.units, &done, now);
    lost.extend(plan.lost.iter().map(|l| format!("LOST: {l}")));
    let source = pipeline.source.as_ref();
    let all = plan.units.len();
    let units = args
        .select
        .apply(source, plan.units)
        .expect("a shard selection never fails");
    let rows: Vec<PlannedUnit<'_>> = units
        .iter()
        .map(|u| {
            let status = status(u, &done);
            PlannedUnit {
                pipeline: &cfg.name,
                source: source.kind(),
                unit: &u.id,
                stream: u.stream(),
                status,
                window_start: rfc3339(u.window.start),
                window_end: rfc3339(u.window.end),
                partitions: u.partitions.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                budget: source.budget_key(u),
                shard_key: args.select.shard_key(source, u),
                committed_at: done.get(&u.id).map(|r| rfc3339(r.committed_at)),
                requests: (status != "done").then(|| source.cost(u)).flatten(),
            }
        })
        .collect();
    let to_run: Vec<Unit> = units.iter().filter(|u| status(u, &done) != "done").cloned().collect();
    let budget = source.budget_time(&to_run);
    if let Some(shard) = args.select.shard {
        eprintln!("shard {shard}: {} of the plan's {all} unit(s)", units.len());
    }
    let text = if args.json {
        let mut s = String::new();
        for r in &rows {
            s.push_str(&serde_json::to_string(r).expect("a plan serializes"));
            s.push('\n');
        }
        // People and logs still see the notes; stdout stays one object per unit.
        eprint!("{}", footer(&plan.notes, budget.as_ref(), &lost, listed));
        s
    } else {
        render(&prepared, &req, &rows, budget.as_ref(), &plan.notes, &lost, listed)
    };
    crate::catalog::print(&text)
}

fn render(
    prepared: &Prepared,
    req: &PlanRequest,
    rows: &[PlannedUnit<'_>],
    budget: Option<&BudgetTime>,
    notes: &[String],
    lost: &[String],
    listed: bool,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let count = |st: &str| rows.iter().filter(|r| r.status == st).count();
    let _ = writeln!(
        s,
        "etl plan {} ({}): {} to {}: {} unit(s): {} to run, {} provisional, {} done",
        prepared.config.name,
        prepared.pipeline.source.kind(),
        rfc3339(req.from),
        rfc3339(req.to),
        rows.len(),
        count("run"),
        count("provisional"),
        count("done"),
    );
    if !rows.is_empty() {
        let width = rows.iter().map(|r| r.unit.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            s,
            "{:<width$}  {:<44}  {:<11}  requests",
            "unit", "window (UTC, end exclusive)", "status"
        );
        for r in rows {
            let requests = match &r.requests {
                Some(c) if c.exact => format!("{} ({})", c.requests, c.how),
                Some(c) => format!("{}+ ({})", c.requests, c.how),
                None => "-".into(),
            };
            let _ = writeln!(
                s,
                "{:<width$}  {} .. {}  {:<11}  {requests}",
                r.unit, r.window_start, r.window_end, r.status
            );
        }
        let costs: Vec<&Cost> = rows.iter().filter_map(|r| r.requests.as_ref()).collect();
        if !costs.is_empty() {
            let total: u64 = costs.iter().map(|c| c.requests).sum();
            let exact = costs.iter().all(|c| c.exact);
            let _ = writeln!(
                s,
                "requests: {}{total}{}",
                if exact { "" } else { "at least " },
                if exact {
                    ""
                } else {
                    " (more follow as pages or files turn up)"
                }
            );
        }
    }
    s.push_str(&footer(notes, budget, lost, listed));
    s
}

/// The rate budget, the source's clamps and splits, and lost windows.
fn footer(notes: &[String], budget: Option<&BudgetTime>, lost: &[String], listed: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if let Some(b) = budget {
        let _ = writeln!(
            s,
            "rate budget: {} {} under {} take at least {}",
            b.count,
            b.requests,
            b.limits,
            human(b.at_least)
        );
    }
    if listed {
        let _ = writeln!(
            s,
            "units found by listing the source's collections (no file was downloaded)"
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "applied to fit the API's rules:");
        for n in notes {
            let _ = writeln!(s, "  - {n}");
        }
    }
    for l in lost {
        let _ = writeln!(s, "{l}");
    }
    s
}

/// `0 s`, `2 min`, `1 h 5 min`.
fn human(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min", secs.div_ceil(60))
    } else {
        format!("{} h {} min", secs / 3600, (secs % 3600).div_ceil(60))
    }
}
