//! `etl run pipelines/webdav.yaml` against the simulator's WebDAV log store.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

const COLUMNS: [&str; 10] = [
    "logged_at",
    "level",
    "request_key",
    "source",
    "schema",
    "subject",
    "type",
    "object",
    "result",
    "bytes",
];

fn webdav_env(sim: &Sim, out: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("WEBDAV_CELL_URL".to_string(), format!("{}/sim-cell/", sim.base)),
        ("WEBDAV_TOKEN".to_string(), "sim-webdav-token".to_string()),
        ("ETL_OUT".to_string(), out.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn run_webdav(sim: &Sim, out: &Path, extra: &[(&str, &str)]) -> std::process::Output {
    let pipeline = repo_path("pipelines/webdav.yaml");
    etl(&["run", pipeline.to_str().unwrap()], &webdav_env(sim, out, extra))
}

/// The dataset equals the simulator's live truth: every day's rows, rows per level and
/// fingerprint.
fn assert_matches_truth(sim: &Sim, out: &Path) {
    let truth: Value = sim.get_json("/_sim/webdav/truth");
    let got = fingerprint_by_day(&out.join("event_log"), &COLUMNS, "level");
    let days = truth["days"].as_object().unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        days.keys().collect::<Vec<_>>(),
        "the same days"
    );
    for (day, t) in days {
        let (rows, per_level, fp) = &got[day];
        assert_eq!(*rows, t["rows"].as_u64().unwrap(), "{day}");
        for (level, n) in t["per_level"].as_object().unwrap() {
            assert_eq!(
                per_level.get(level).copied().unwrap_or(0),
                n.as_u64().unwrap(),
                "{day} {level}"
            );
        }
        assert_eq!(fp, t["fingerprint"].as_str().unwrap(), "{day}");
    }
}

/// Per source file (the `file_name` column): rows and fingerprint.
fn by_file(out: &Path) -> std::collections::BTreeMap<String, (u64, String)> {
    let mut acc: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for file in parquet_files(&out.join("event_log")) {
        for b in read_batches(&file) {
            let cols: Vec<_> = COLUMNS.iter().map(|c| b.column_by_name(c).unwrap()).collect();
            let names = b.column_by_name("file_name").unwrap();
            for i in 0..b.num_rows() {
                let text: Vec<String> = cols.iter().map(|c| cell_text(c, i)).collect();
                let e = acc.entry(cell_text(names, i)).or_default();
                e.0 += 1;
                e.1 = e.1.wrapping_add(fnv1a64(&text.join("\u{1f}")));
            }
        }
    }
    acc.into_iter()
        .map(|(k, (n, fp))| (k, (n, format!("{fp:016x}"))))
        .collect()
}

fn truth_files(truth: &Value) -> std::collections::BTreeMap<String, (u64, String)> {
    truth["files"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (
                    v["rows"].as_u64().unwrap(),
                    v["fingerprint"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn archive_gets(sim: &Sim) -> u64 {
    let r = sim.get_json("/_sim/webdav/requests");
    r["get"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.as_str() != "default.log")
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

#[test]
fn archives_and_current_match_the_truth_and_a_rerun_fetches_no_archive() {
    let sim = Sim::start(&["--seed", "31"]);
    let out = tempfile::tempdir().unwrap();
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path());
    assert!(!String::from_utf8_lossy(&res.stderr).contains("sim-webdav-token"));
    let fetched = archive_gets(&sim);
    assert_eq!(fetched, 12, "every archive once");

    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(archive_gets(&sim), fetched, "archives are never fetched again");
    assert_matches_truth(&sim, out.path());
    assert_no_stray_files(&out.path().join("event_log"));
}

#[test]
fn a_rotation_between_runs_loses_and_duplicates_nothing() {
    let sim = Sim::start(&["--seed", "32"]);
    let out = tempfile::tempdir().unwrap();
    assert_eq!(run_webdav(&sim, out.path(), &[]).status.code(), Some(0));
    let before = truth_files(&sim.get_json("/_sim/webdav/truth"));
    assert_eq!(by_file(out.path()), before);
    let rotated = sim.post_json("/_sim/webdav/rotate");
    let archived = rotated["archived"].as_str().unwrap().to_string();
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(0));
    // Everything the store holds now, plus the generation it deleted (loaded by the first
    // run), each record once: the old current file's records now come from the new archive.
    let mut want = truth_files(&sim.get_json("/_sim/webdav/truth"));
    for removed in rotated["removed"].as_array().unwrap() {
        let name = removed.as_str().unwrap();
        want.insert(name.to_string(), before[name].clone());
    }
    assert!(want.contains_key(&archived) && want.contains_key("default.log"));
    assert_eq!(by_file(out.path()), want);
}

#[test]
fn faults_do_not_change_the_result() {
    let sim = Sim::start(&["--seed", "33", "--fault-rate", "0.2"]);
    let out = tempfile::tempdir().unwrap();
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path());
}

#[test]
fn a_zip_entry_named_like_a_path_is_refused() {
    let sim = Sim::start(&["--seed", "34", "--webdav-evil-zip-entry"]);
    let out = tempfile::tempdir().unwrap();
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("`../../x` is not a plain file name"), "{stderr}");
    // Nothing was written outside the dataset.
    assert!(!out.path().join("x").exists() && !out.path().parent().unwrap().join("x").exists());
}

#[test]
fn an_href_outside_the_cell_is_refused_and_never_fetched() {
    let sim = Sim::start(&["--seed", "35", "--webdav-evil-href"]);
    let out = tempfile::tempdir().unwrap();
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("outside the collection"), "{stderr}");
    let requests = sim.get_json("/_sim/webdav/requests");
    assert!(
        requests["other_paths"].as_object().is_none_or(|m| m.is_empty()),
        "{requests}"
    );
}

#[test]
fn an_oversized_zip_stops_at_the_cap() {
    let sim = Sim::start(&["--seed", "36"]);
    let out = tempfile::tempdir().unwrap();
    let res = run_webdav(&sim, out.path(), &[("WEBDAV_MAX_ENTRY_BYTES", "1KiB")]);
    assert_eq!(res.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("inflates to more than the cap of 1024 bytes"),
        "{stderr}"
    );
}

#[test]
fn generations_deleted_before_they_were_loaded_are_reported_lost() {
    let sim = Sim::start(&["--seed", "37", "--webdav-rows-per-file", "20"]);
    let out = tempfile::tempdir().unwrap();
    assert_eq!(run_webdav(&sim, out.path(), &[]).status.code(), Some(0));
    // Six rotations: the archives loaded so far are still listed.
    for _ in 0..6 {
        sim.post_json("/_sim/webdav/rotate");
    }
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(0), "nothing lost yet");
    assert!(!String::from_utf8_lossy(&res.stderr).contains("LOST"));
    // Thirteen more: one generation went unloaded.
    for _ in 0..13 {
        sim.post_json("/_sim/webdav/rotate");
    }
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("LOST: webdav_logs-sim-cell-archive") && stderr.contains("12 generations"),
        "{stderr}"
    );
    // What is still listed was loaded, and the next run has nothing more to report.
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(0));
}

#[test]
fn killed_mid_run_then_rerun_equals_the_truth() {
    let sim = Sim::start(&["--seed", "38", "--webdav-rows-per-file", "3000"]);
    let out = tempfile::tempdir().unwrap();
    let pipeline = repo_path("pipelines/webdav.yaml");
    let mut child = etl_command(&["run", pipeline.to_str().unwrap()], &webdav_env(&sim, out.path(), &[]))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let intents = out.path().join("event_log/_etl/intents");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_dir(&intents).is_ok_and(|mut d| d.next().is_some()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it wrote anything"
        );
        assert!(std::time::Instant::now() < deadline, "no unit started writing");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let res = run_webdav(&sim, out.path(), &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(by_file(out.path()), truth_files(&sim.get_json("/_sim/webdav/truth")));
    assert_no_stray_files(&out.path().join("event_log"));
}
