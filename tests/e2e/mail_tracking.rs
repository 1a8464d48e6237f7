//! `etl run pipelines/tracking.yaml` against the simulator's mail tracking API.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};

use crate::util::*;

fn tracking_env(sim: &Sim, out: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("MAIL_TRACKING_URL".to_string(), sim.base.clone()),
        ("MAIL_TRACKING_USER".to_string(), "sim-user".to_string()),
        ("MAIL_TRACKING_API_KEY".to_string(), "sim-tracking-key".to_string()),
        ("ETL_OUT".to_string(), out.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn run_tracking(sim: &Sim, out: &Path, from: &str, to: &str, extra: &[(&str, &str)]) -> std::process::Output {
    let pipeline = repo_path("pipelines/tracking.yaml");
    etl(
        &["run", pipeline.to_str().unwrap(), "--from", from, "--to", to],
        &tracking_env(sim, out, extra),
    )
}

/// Yesterday and the day before: always fully inside the API's 72 hours.
fn two_days() -> (Vec<chrono::NaiveDate>, String, String) {
    (
        vec![days_ago(2), days_ago(1)],
        days_ago(2).to_string(),
        today().to_string(),
    )
}

/// The canonical text of row `i` as the simulator defines it for its fingerprint.
fn canonical(b: &RecordBatch, i: usize) -> String {
    let col = |n: &str| -> &ArrayRef { b.column_by_name(n).unwrap_or_else(|| panic!("no column {n}")) };
    let ts = |n: &str| {
        let a = col(n).as_primitive::<TimestampMicrosecondType>();
        if a.is_null(i) {
            "-".to_string()
        } else {
            a.value(i).to_string()
        }
    };
    let s = |n: &str| {
        let a = col(n);
        let v = match a.data_type() {
            arrow_schema::DataType::Dictionary(..) => {
                let d = a.as_dictionary::<Int8Type>();
                (!d.is_null(i)).then(|| {
                    d.values()
                        .as_string::<i32>()
                        .value(d.keys().value(i) as usize)
                        .to_string()
                })
            }
            _ => {
                let a = a.as_string::<i32>();
                (!a.is_null(i)).then(|| a.value(i).to_string())
            }
        };
        v.unwrap_or_else(|| "-".to_string())
    };
    let list = |n: &str| {
        let l = col(n).as_list::<i32>();
        if l.is_null(i) || l.value(i).is_empty() {
            return "-".to_string();
        }
        let v = l.value(i);
        let v = v.as_string::<i32>();
        v.iter().map(|x| x.unwrap_or("")).collect::<Vec<_>>().join("\u{1e}")
    };
    let attachments = {
        let l = col("attachments").as_list::<i32>();
        if l.is_null(i) || l.value(i).is_empty() {
            "-".to_string()
        } else {
            let v = l.value(i);
            let st = v.as_struct();
            let names = st.column_by_name("file_name").unwrap().as_string::<i32>();
            let shas = st.column_by_name("sha256").unwrap().as_string::<i32>();
            (0..st.len())
                .map(|j| format!("{}\u{1d}{}", names.value(j), shas.value(j)))
                .collect::<Vec<_>>()
                .join("\u{1e}")
        }
    };
    let size = {
        let a = col("size").as_primitive::<Int64Type>();
        if a.is_null(i) {
            "-".to_string()
        } else {
            a.value(i).to_string()
        }
    };
    [
        ts("gen_time"),
        ts("timestamp"),
        ts("delivery_time"),
        s("sender"),
        s("header_from"),
        s("recipient"),
        list("header_to"),
        s("subject"),
        s("sender_ip"),
        s("delivered_to"),
        s("mail_id"),
        s("direction"),
        s("message_id"),
        size,
        s("action"),
        s("reason"),
        attachments,
        list("embedded_urls"),
        s("tls_info"),
        s("details"),
    ]
    .join("\u{1f}")
}

/// (traffic_type, dt) -> (rows, fingerprint), read back from the dataset.
fn summarize_tracking(root: &Path) -> BTreeMap<(String, String), (u64, String)> {
    let mut sums: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for file in parquet_files(root) {
        let dt = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_prefix("dt=")
            .unwrap()
            .to_string();
        let tt = file
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let tt = tt.strip_prefix("traffic_type=").unwrap().to_string();
        for b in read_batches(&file) {
            for i in 0..b.num_rows() {
                let e = sums.entry((tt.clone(), dt.clone())).or_default();
                e.0 += 1;
                e.1 = e.1.wrapping_add(fnv1a64(&canonical(&b, i)));
            }
        }
    }
    sums.into_iter()
        .map(|(k, (n, fp))| (k, (n, format!("{fp:016x}"))))
        .collect()
}

fn tracking_truth(sim: &Sim, days: &[chrono::NaiveDate]) -> BTreeMap<(String, String), (u64, String)> {
    let mut out = BTreeMap::new();
    for d in days {
        let day = d.to_string();
        for tt in ["accepted_traffic", "blocked_traffic"] {
            let t = &sim.truth["mail_tracking"]["days"][&day][tt];
            let rows = t["rows"]
                .as_u64()
                .unwrap_or_else(|| panic!("no tracking truth for {day} {tt}: {t}"));
            if rows > 0 {
                out.insert(
                    (tt.to_string(), day.clone()),
                    (rows, t["fingerprint"].as_str().unwrap().to_string()),
                );
            }
        }
    }
    out
}

#[test]
fn two_days_of_both_traffic_types_match_the_ground_truth() {
    let sim = Sim::start(&["--seed", "8", "--tracking-rows-per-day", "1200"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let res = run_tracking(&sim, out.path(), &from, &to, &[("MAIL_TRACKING_LIMIT", "150")]);
    assert_eq!(res.status.code(), Some(0));
    let want = tracking_truth(&sim, &days);
    assert!(!want.is_empty());
    assert_eq!(summarize_tracking(&out.path().join("mail_tracking")), want);
    // The simulator adds fields the seed does not list: counted and reported, not lost silently.
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("fields not in the schema"), "{stderr}");

    // A rerun is a no-op.
    let requests = sim.stats()["mail_tracking"]["requests"].as_u64().unwrap();
    let before = snapshot(out.path());
    let again = run_tracking(&sim, out.path(), &from, &to, &[("MAIL_TRACKING_LIMIT", "150")]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(sim.stats()["mail_tracking"]["requests"].as_u64().unwrap(), requests);
    assert_eq!(snapshot(out.path()), before);
}

#[test]
fn tracking_faults_do_not_change_the_result() {
    let sim = Sim::start(&["--seed", "12", "--tracking-rows-per-day", "600", "--fault-rate", "0.2"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let res = run_tracking(&sim, out.path(), &from, &to, &[("MAIL_TRACKING_LIMIT", "100")]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(
        summarize_tracking(&out.path().join("mail_tracking")),
        tracking_truth(&sim, &days)
    );
    assert!(sim.stats()["mail_tracking"]["faults"].as_u64().unwrap() > 0);
}

#[test]
fn tracking_killed_mid_run_then_rerun_is_identical() {
    let sim = Sim::start(&["--seed", "13", "--tracking-rows-per-day", "4000"]);
    let out = tempfile::tempdir().unwrap();
    let (days, from, to) = two_days();
    let pipeline = repo_path("pipelines/tracking.yaml");
    let env = tracking_env(&sim, out.path(), &[("MAIL_TRACKING_LIMIT", "50")]);
    let mut child = etl_command(&["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to], &env)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let intents = out.path().join("mail_tracking/_etl/intents");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_dir(&intents).is_ok_and(|mut d| d.next().is_some()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it wrote anything"
        );
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let res = run_tracking(&sim, out.path(), &from, &to, &[("MAIL_TRACKING_LIMIT", "50")]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(
        summarize_tracking(&out.path().join("mail_tracking")),
        tracking_truth(&sim, &days)
    );
}

#[test]
fn a_range_beyond_72_hours_is_refused_before_any_request() {
    let sim = Sim::start(&["--seed", "1", "--tracking-rows-per-day", "10"]);
    let out = tempfile::tempdir().unwrap();
    let res = run_tracking(&sim, out.path(), "-5d", "now", &[]);
    assert_eq!(res.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("72 hours"), "{stderr}");
    assert_eq!(sim.stats()["mail_tracking"]["requests"].as_u64().unwrap(), 0);
}

#[test]
fn a_window_lost_to_retention_is_reported_and_exits_non_zero() {
    let sim = Sim::start(&["--seed", "1", "--tracking-rows-per-day", "10"]);
    let out = tempfile::tempdir().unwrap();
    // State as a run six days ago would have left it: the last committed accepted-traffic day.
    let old = days_ago(6);
    let state = out.path().join("mail_tracking/_etl/state");
    std::fs::create_dir_all(&state).unwrap();
    let id = format!("mail_tracking-accepted_traffic-{old}");
    let record = serde_json::json!({
        "unit": {"id": id, "window": {"start": format!("{old}T00:00:00Z"), "end": format!("{}T00:00:00Z", days_ago(5))},
                 "params": {}, "partitions": [["traffic_type", "accepted_traffic"]], "provisional": false},
        "committed_at": format!("{}T01:00:00Z", days_ago(5)),
        "report": {"files": [], "rows": 0, "bytes": 0, "bad_records": 0}
    });
    std::fs::write(state.join(format!("{id}.json")), record.to_string()).unwrap();
    let (_, from, to) = two_days();
    let res = run_tracking(&sim, out.path(), &from, &to, &[]);
    assert_eq!(res.status.code(), Some(4), "a lost window must make a scheduler alert");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains(&format!(
            "LOST: mail_tracking-accepted_traffic: records from {}T00:00:00Z to",
            days_ago(5)
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("LOST: mail_tracking-blocked_traffic"),
        "no state, no gap: {stderr}"
    );
    // What is still reachable was loaded all the same.
    assert!(!parquet_files(&out.path().join("mail_tracking")).is_empty());
}

#[test]
fn duckdb_unnests_the_nested_columns() {
    let python = test_python();
    let sim = Sim::start(&["--seed", "14", "--tracking-rows-per-day", "300"]);
    let out = tempfile::tempdir().unwrap();
    let (_, from, to) = two_days();
    assert_eq!(run_tracking(&sim, out.path(), &from, &to, &[]).status.code(), Some(0));
    let root = out.path().join("mail_tracking");
    let mut attachments = 0usize;
    for f in parquet_files(&root) {
        for b in read_batches(&f) {
            let l = b.column_by_name("attachments").unwrap().as_list::<i32>();
            attachments += (0..b.num_rows())
                .filter(|i| !l.is_null(*i))
                .map(|i| l.value(i).len())
                .sum::<usize>();
        }
    }
    let script = r#"
import json, sys, duckdb
src = f"read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)"
n = duckdb.sql(f"SELECT count(*) FROM (SELECT unnest(attachments) AS a FROM {src})").fetchone()[0]
types = dict(duckdb.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})").fetchall())
print(json.dumps({"n": n, "types": types}))
"#;
    let res = std::process::Command::new(python)
        .args(["-c", script, root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["n"].as_u64().unwrap() as usize, attachments);
    assert!(attachments > 0);
    assert_eq!(v["types"]["gen_time"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(v["types"]["traffic_type"], "VARCHAR");
    assert_eq!(v["types"]["attachments"], "STRUCT(file_name VARCHAR, sha256 VARCHAR)[]");
}

#[test]
fn a_day_fetched_as_parallel_windows_is_written_exactly_as_one_chain_writes_it() {
    let sim = Sim::start(&["--seed", "8", "--tracking-rows-per-day", "1500"]);
    let (days, from, to) = two_days();
    let mut outs = Vec::new();
    for windows in ["1", "4", "7"] {
        let out = tempfile::tempdir().unwrap();
        let before = sim.stats()["mail_tracking"]["requests"].as_u64().unwrap();
        let res = run_tracking(
            &sim,
            out.path(),
            &from,
            &to,
            &[
                ("MAIL_TRACKING_LIMIT", "100"),
                ("MAIL_TRACKING_PARALLEL_WINDOWS", windows),
            ],
        );
        assert_eq!(res.status.code(), Some(0), "parallel_windows {windows}");
        let requests = sim.stats()["mail_tracking"]["requests"].as_u64().unwrap() - before;
        outs.push((windows, out, requests));
    }
    let dataset = |o: &tempfile::TempDir| o.path().join("mail_tracking");
    assert_eq!(summarize_tracking(&dataset(&outs[0].1)), tracking_truth(&sim, &days));
    for (windows, out, _) in &outs[1..] {
        eprintln!("comparing parallel_windows {windows} with 1");
        assert_same_parquet_content(&dataset(&outs[0].1), &dataset(out));
    }
    // Each extra window costs at most one request per unit (its last, possibly short, page).
    let units = 4;
    assert!(
        outs[1].2 <= outs[0].2 + 3 * units,
        "{:?}",
        outs.iter().map(|o| o.2).collect::<Vec<_>>()
    );
    assert!(
        outs[1].2 >= outs[0].2,
        "{:?}",
        outs.iter().map(|o| o.2).collect::<Vec<_>>()
    );
}
