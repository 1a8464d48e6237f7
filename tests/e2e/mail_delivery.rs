//! `etl run pipelines/mail.yaml` against the simulator's mail delivery API.

use std::path::Path;
use std::time::{Duration, Instant};

use arrow_schema::{DataType, TimeUnit};
use chrono::NaiveDate;

use crate::util::*;

/// The three closed days the tests load: 4, 3 and 2 days ago.
fn three_days() -> (Vec<NaiveDate>, String, String) {
    let days = vec![days_ago(4), days_ago(3), days_ago(2)];
    (days, days_ago(4).to_string(), days_ago(1).to_string())
}

fn run_mail(sim: &Sim, out: &Path, from: &str, to: &str, extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut env = mail_env(sim, out);
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let pipeline = repo_path("pipelines/mail.yaml");
    etl(&["run", pipeline.to_str().unwrap(), "--from", from, "--to", to], &env)
}

fn assert_matches_truth(sim: &Sim, dataset: &Path, days: &[NaiveDate]) {
    let rows = read_mail(dataset);
    let got = summarize(&rows);
    let want = truth_summary(sim, days);
    assert!(!want.is_empty(), "the simulator generated no data for {days:?}");
    assert_eq!(
        got, want,
        "rows per day, per result and fingerprints must equal the ground truth"
    );
}

#[test]
fn three_days_match_the_ground_truth_with_pagination() {
    let sim = Sim::start(&["--seed", "7", "--mail-rows-per-day", "2500"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = three_days();
    // 700 per page: several pages per day, so NextToken (line-wrapped, with + / =) round-trips.
    let res = run_mail(&sim, out.path(), &from, &to, &[("MAIL_DELIVERY_MAX_ITEMS", "700")]);
    assert_eq!(res.status.code(), Some(0));
    let dataset = out.path().join("mail_delivery");
    assert_matches_truth(&sim, &dataset, &days);

    // Identical lines are distinct events: the output keeps them.
    let rows = read_mail(&dataset);
    let mut lines: Vec<_> = rows.iter().map(|r| r.line.clone()).collect();
    lines.sort();
    let dups = lines.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        dups > 0,
        "the simulator produces byte-identical lines and none may be dropped"
    );

    // Documented column types; dt lives in the path only.
    let file = &parquet_files(&dataset)[0];
    let schema = read_batches(file)[0].schema();
    let types: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone()))
        .collect();
    assert_eq!(
        types,
        vec![
            (
                "delivered_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            ),
            (
                "result",
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
            ),
            ("status_code", DataType::UInt16),
            ("transaction_id", DataType::Utf8),
            ("sender", DataType::Utf8),
            ("recipient", DataType::Utf8),
            ("detail", DataType::Utf8),
        ]
    );
    // One file per day unit, named after the unit.
    for d in &days {
        let dir = dataset.join(format!("dt={d}"));
        if sim.mail_day(*d)["rows"].as_u64().unwrap() > 0 {
            let names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names,
                vec![std::ffi::OsString::from(format!("mail_delivery-{d}-0000.parquet"))]
            );
        }
    }
}

#[test]
fn faults_do_not_change_the_result() {
    let sim = Sim::start(&["--seed", "11", "--mail-rows-per-day", "1500", "--fault-rate", "0.2"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = three_days();
    let res = run_mail(&sim, out.path(), &from, &to, &[("MAIL_DELIVERY_MAX_ITEMS", "300")]);
    assert_eq!(res.status.code(), Some(0), "every fault is retried");
    assert_matches_truth(&sim, &out.path().join("mail_delivery"), &days);
    let faults = sim.stats()["mail_delivery"]["faults"].as_u64().unwrap();
    assert!(faults > 0, "the simulator injected no fault");
}

#[test]
fn rerun_sends_no_data_request_and_changes_no_file() {
    let sim = Sim::start(&["--seed", "3", "--mail-rows-per-day", "800"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = three_days();
    assert_eq!(run_mail(&sim, out.path(), &from, &to, &[]).status.code(), Some(0));
    let before = snapshot(out.path());
    let requests = sim.stats()["mail_delivery"]["requests"].as_u64().unwrap();
    assert!(requests >= 3);

    let res = run_mail(&sim, out.path(), &from, &to, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(
        sim.stats()["mail_delivery"]["requests"].as_u64().unwrap(),
        requests,
        "no request for done days"
    );
    assert_eq!(snapshot(out.path()), before, "a rerun over done days changes no file");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("3 already done"), "{stderr}");
    assert_matches_truth(&sim, &out.path().join("mail_delivery"), &days);
}

/// Starts a run and waits until a unit is being written (its intent exists).
fn start_and_wait_for_write(sim: &Sim, out: &Path, from: &str, to: &str) -> std::process::Child {
    let mut env = mail_env(sim, out);
    env.push(("MAIL_DELIVERY_MAX_ITEMS".into(), "200".into()));
    let pipeline = repo_path("pipelines/mail.yaml");
    let mut cmd = etl_command(&["run", pipeline.to_str().unwrap(), "--from", from, "--to", to], &env);
    // The log goes beside the dataset, for tests that read what the run said.
    let log = std::fs::File::create(out.join("etl.log")).unwrap();
    let mut child = cmd.stderr(log).spawn().unwrap();
    let intents = out.join("mail_delivery/_etl/intents");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::fs::read_dir(&intents).is_ok_and(|mut d| d.next().is_some()) {
            return child;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it wrote anything"
        );
        assert!(Instant::now() < deadline, "no unit started writing");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killed_mid_unit_then_rerun_equals_a_clean_run() {
    // Slow pages (200 lines each, 6000 per day) so the kill lands inside a unit.
    let sim = Sim::start(&["--seed", "5", "--mail-rows-per-day", "6000"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = three_days();
    let mut child = start_and_wait_for_write(&sim, out.path(), &from, &to);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let res = run_mail(&sim, out.path(), &from, &to, &[("MAIL_DELIVERY_MAX_ITEMS", "200")]);
    assert_eq!(res.status.code(), Some(0));
    let dataset = out.path().join("mail_delivery");
    assert_matches_truth(&sim, &dataset, &days);
    assert_no_stray_files(&dataset);
}

#[test]
fn sigterm_stops_cleanly_and_the_next_run_finishes() {
    interrupted_then_rerun("-TERM", "9");
}

#[test]
fn ctrl_c_stops_cleanly_and_the_next_run_finishes() {
    interrupted_then_rerun("-INT", "10");
}

/// Sends `signal` to a run in the middle of a unit: the run says what it committed and what
/// the next run redoes, exits 130, leaves nothing partial, and a rerun gives the exact dataset.
fn interrupted_then_rerun(signal: &str, seed: &str) {
    let sim = Sim::start(&["--seed", seed, "--mail-rows-per-day", "6000"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = three_days();
    let child = start_and_wait_for_write(&sim, out.path(), &from, &to);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let res = child.wait_with_output().unwrap();
    assert_eq!(res.status.code(), Some(130), "an interrupted run exits non-zero");
    let stderr = std::fs::read_to_string(out.path().join("etl.log")).unwrap();
    assert!(stderr.contains("received: stopping"), "{stderr}");
    assert!(
        stderr.contains(" interrupted "),
        "the summary names the interrupted units:\n{stderr}"
    );
    let dataset = out.path().join("mail_delivery");
    // Nothing partial is visible and no unfinished unit is marked done.
    assert_no_stray_files(&dataset);
    let state: Vec<_> = std::fs::read_dir(dataset.join("_etl/state"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    let manifests = std::fs::read_dir(dataset.join("_etl/manifests"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(state.first().copied().unwrap_or(0), manifests);
    assert!(manifests < 3, "the run was stopped before finishing every unit");

    let res = run_mail(&sim, out.path(), &from, &to, &[("MAIL_DELIVERY_MAX_ITEMS", "200")]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, &dataset, &days);
    assert_no_stray_files(&dataset);
}

#[test]
fn a_wrong_token_fails_permanently_without_leaking_it() {
    let sim = Sim::start(&["--seed", "1", "--mail-rows-per-day", "100"]);
    let out = tempfile::tempdir().unwrap();
    let (_, from, to) = three_days();
    let res = run_mail(
        &sim,
        out.path(),
        &from,
        &to,
        &[("MAIL_DELIVERY_TOKEN", "wrong-secret-value")],
    );
    assert_eq!(res.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-value"), "the token leaked: {stderr}");
    assert!(parquet_files(out.path()).is_empty());
}

#[test]
fn duckdb_reads_the_dataset_as_analysts_do() {
    let python = test_python();
    let sim = Sim::start(&["--seed", "21", "--mail-rows-per-day", "1000"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = three_days();
    assert_eq!(run_mail(&sim, out.path(), &from, &to, &[]).status.code(), Some(0));
    let dataset = out.path().join("mail_delivery");
    let want = truth_summary(&sim, &days);
    let total: u64 = want.values().map(|d| d.rows).sum();
    let (probe_day, probe) = want.iter().next().unwrap();
    let script = r#"
import json, sys, duckdb
root, day = sys.argv[1], sys.argv[2]
src = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
con = duckdb.connect()
total = con.sql(f"SELECT count(*) FROM {src}").fetchone()[0]
types = dict(con.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})").fetchall())
day_rows = con.sql(f"SELECT count(*) FROM {src} WHERE dt = DATE '{day}'").fetchone()[0]
plan = "\n".join(r[1] for r in con.sql(f"EXPLAIN ANALYZE SELECT sum(status_code) FROM {src} WHERE dt = DATE '{day}'").fetchall())
print(json.dumps({"total": total, "types": types, "day_rows": day_rows, "plan": plan}))
"#;
    let res = std::process::Command::new(python)
        .args(["-c", script, dataset.to_str().unwrap(), probe_day])
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["total"].as_u64().unwrap(), total);
    assert_eq!(v["day_rows"].as_u64().unwrap(), probe.rows);
    assert_eq!(v["types"]["dt"], "DATE");
    assert_eq!(v["types"]["delivered_at"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(v["types"]["status_code"], "USMALLINT");
    // Partition pruning: filtering on dt reads only that day's file.
    let plan = v["plan"].as_str().unwrap();
    let files_read = plan
        .lines()
        .find_map(|l| l.split("Total Files Read:").nth(1))
        .unwrap_or_else(|| panic!("no file count in the plan:\n{plan}"))
        .trim()
        .trim_end_matches('│')
        .trim()
        .parse::<u64>()
        .unwrap();
    assert_eq!(files_read, 1, "{plan}");
}

#[test]
fn relative_times_are_accepted_after_from_and_to() {
    let sim = Sim::start(&["--seed", "4", "--mail-rows-per-day", "50"]);
    let out = tempfile::tempdir().unwrap();
    // `-3d` must be read as a value, not as a flag; the range widens to whole UTC days.
    let res = run_mail(&sim, out.path(), "-3d", "-2d", &[]);
    assert_eq!(res.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("2 unit(s) planned"), "{stderr}");
    assert!(stderr.contains(&format!("mail_delivery-{}", days_ago(3))), "{stderr}");
    let bad = run_mail(&sim, out.path(), "yesterday", "now", &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--from \"yesterday\""));
}

#[test]
fn an_open_day_is_provisional_and_replaced_by_every_run() {
    let sim = Sim::start(&["--seed", "6", "--mail-rows-per-day", "20000"]);
    let out = tempfile::tempdir().unwrap();
    let pipeline = out.path().join("today.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "source:\n  type: mail_delivery\n  url: {}\n  token: sim-mail-token\nsettle: 1m\nsink:\n  type: parquet\n  url: {}/ds\n",
            sim.mail_url(),
            out.path().display()
        ),
    )
    .unwrap();
    let today = today().to_string();
    let dataset = out.path().join("ds");
    let rows_today = || -> (usize, usize) {
        let files = parquet_files(&dataset.join(format!("dt={today}")));
        (
            files.len(),
            files.iter().flat_map(|f| read_batches(f)).map(|b| b.num_rows()).sum(),
        )
    };
    for run in 0..2 {
        let res = etl(
            &["run", pipeline.to_str().unwrap(), "--from", &today, "--to", "now"],
            &[],
        );
        assert_eq!(res.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(
            stderr.contains("0 already done") && stderr.contains("provisional"),
            "run {run}: {stderr}"
        );
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dataset.join(format!("_etl/state/mail_delivery-{today}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(state["unit"]["provisional"], true);
        let (files, rows) = rows_today();
        // Replaced, not added to: one file whose rows are what this run committed.
        assert!(files <= 1, "run {run}: {files} files for today");
        assert_eq!(rows as u64, state["report"]["rows"].as_u64().unwrap(), "run {run}");
    }
}

#[test]
fn a_day_fetched_as_parallel_windows_is_written_exactly_as_one_chain_writes_it() {
    let sim = Sim::start(&["--seed", "7", "--mail-rows-per-day", "2500"]);
    let (days, from, to) = three_days();
    let run_with = |windows: &str| {
        let out = tempfile::tempdir().unwrap();
        let env = [
            ("MAIL_DELIVERY_MAX_ITEMS", "300"),
            ("MAIL_DELIVERY_PARALLEL_WINDOWS", windows),
        ];
        let res = run_mail(&sim, out.path(), &from, &to, &env);
        assert_eq!(res.status.code(), Some(0), "parallel_windows {windows}");
        out
    };
    let one = run_with("1");
    assert_matches_truth(&sim, &one.path().join("mail_delivery"), &days);
    for windows in ["4", "24"] {
        let many = run_with(windows);
        assert_same_parquet_content(&one.path().join("mail_delivery"), &many.path().join("mail_delivery"));
    }
}
