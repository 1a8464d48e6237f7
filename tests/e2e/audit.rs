//! `etl run pipelines/audit.yaml` against the simulator's audit-log SOAP service.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::util::*;

const COLUMNS: [&str; 14] = [
    "operation_id",
    "operated_at",
    "account_id",
    "operator",
    "tool",
    "operation",
    "target_type",
    "target_id",
    "target_name",
    "changed_item",
    "before_value",
    "after_value",
    "affected_count",
    "ip_address",
];

fn audit_env(sim: &Sim, out: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "AUDIT_LOG_URL".to_string(),
            format!("{}/services/V201812/AuditLogService", sim.base),
        ),
        ("AUDIT_LOG_LICENSE".to_string(), "sim-license".to_string()),
        ("AUDIT_LOG_API_ACCOUNT_ID".to_string(), "sim-api-account".to_string()),
        (
            "AUDIT_LOG_API_ACCOUNT_PASSWORD".to_string(),
            "sim-api-password".to_string(),
        ),
        ("AUDIT_LOG_ACCOUNT_ID".to_string(), "100000001".to_string()),
        ("AUDIT_LOG_POLL_INTERVAL".to_string(), "50ms".to_string()),
        ("AUDIT_LOG_POLL_INTERVAL_MAX".to_string(), "200ms".to_string()),
        ("ETL_OUT".to_string(), out.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn run_audit(sim: &Sim, out: &Path, days: &[NaiveDate], extra: &[(&str, &str)]) -> std::process::Output {
    let pipeline = repo_path("pipelines/audit.yaml");
    let from = days[0].to_string();
    let to = (days[days.len() - 1] + chrono::Days::new(1)).to_string();
    etl(
        &["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to],
        &audit_env(sim, out, extra),
    )
}

fn assert_matches_truth(sim: &Sim, out: &Path, days: &[NaiveDate]) {
    let got = fingerprint_by_day(&out.join("audit_log"), &COLUMNS, "operation");
    for d in days {
        let day = d.to_string();
        let t = &sim.truth["audit_log"]["days"][&day];
        let (rows, per_op, fp) = got.get(&day).unwrap_or_else(|| panic!("no data for {day}"));
        assert_eq!(*rows, t["rows"].as_u64().unwrap(), "{day}");
        for (op, n) in t["per_operation"].as_object().unwrap() {
            assert_eq!(per_op.get(op).copied().unwrap_or(0), n.as_u64().unwrap(), "{day} {op}");
        }
        assert_eq!(fp, t["fingerprint"].as_str().unwrap(), "{day}");
    }
    assert_eq!(got.len(), days.len(), "no other day: {:?}", got.keys());
}

fn jobs(sim: &Sim) -> serde_json::Value {
    sim.get_json("/_sim/audit/jobs")
}

#[test]
fn two_days_match_the_truth_and_a_rerun_creates_no_job() {
    let sim = Sim::start(&["--seed", "21"]);
    let out = tempfile::tempdir().unwrap();
    let days = [days_ago(2), days_ago(1)];
    let res = run_audit(&sim, out.path(), &days, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path(), &days);
    assert_eq!(jobs(&sim)["created"], 2);
    let stderr = String::from_utf8_lossy(&res.stderr);
    for secret in ["sim-license", "sim-api-password", "sim-api-account"] {
        assert!(!stderr.contains(secret), "{secret} leaked");
    }
    assert!(
        !out.path()
            .join("audit_log/_etl/checkpoints")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
    let res = run_audit(&sim, out.path(), &days, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(jobs(&sim)["created"], 2, "a rerun creates no job");
}

#[test]
fn faults_do_not_change_the_result() {
    let sim = Sim::start(&["--seed", "22", "--fault-rate", "0.2"]);
    let out = tempfile::tempdir().unwrap();
    let days = [days_ago(2), days_ago(1)];
    let res = run_audit(&sim, out.path(), &days, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path(), &days);
}

#[test]
fn a_system_error_job_is_created_again() {
    let sim = Sim::start(&["--seed", "23", "--audit-system-error-first"]);
    let out = tempfile::tempdir().unwrap();
    let days = [days_ago(1)];
    let res = run_audit(&sim, out.path(), &days, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_matches_truth(&sim, out.path(), &days);
    assert_eq!(jobs(&sim)["created"], 2, "the failed job and its replacement");
}

#[test]
fn wrong_credentials_fail_with_the_fault_string_and_no_secret() {
    let sim = Sim::start(&["--seed", "24"]);
    let out = tempfile::tempdir().unwrap();
    let res = run_audit(
        &sim,
        out.path(),
        &[days_ago(1)],
        &[("AUDIT_LOG_API_ACCOUNT_PASSWORD", "wrong-password-123")],
    );
    assert_eq!(res.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("SOAP fault"), "{stderr}");
    assert!(!stderr.contains("wrong-password-123"), "{stderr}");
    assert_eq!(jobs(&sim)["created"], 0);
}

#[test]
fn a_run_killed_while_the_job_is_in_progress_resumes_the_same_job() {
    // Thirty polls at most 200 ms apart: the job stays IN_PROGRESS for a few seconds.
    let sim = Sim::start(&["--seed", "25", "--audit-job-polls", "30"]);
    let out = tempfile::tempdir().unwrap();
    let days = [days_ago(1)];
    let pipeline = repo_path("pipelines/audit.yaml");
    let (from, to) = (days[0].to_string(), today().to_string());
    let mut child = etl_command(
        &["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to],
        &audit_env(&sim, out.path(), &[]),
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let checkpoints = out.path().join("audit_log/_etl/checkpoints");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Only a complete checkpoint counts: a local write goes through a staging file
    // (`<name>#<n>`) in the same folder first, and a kill before its rename leaves no job saved.
    let saved = |dir: &std::path::Path| {
        std::fs::read_dir(dir).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".json")))
    };
    while !saved(&checkpoints) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the job was saved"
        );
        assert!(Instant::now() < deadline, "no job was saved");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(jobs(&sim)["created"], 1);

    let res = run_audit(&sim, out.path(), &days, &[]);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(
        jobs(&sim)["created"],
        1,
        "the rerun resumed the job instead of creating one"
    );
    assert_matches_truth(&sim, out.path(), &days);
    assert_no_stray_files(&out.path().join("audit_log"));
}

#[test]
fn a_unit_whose_last_job_failed_gets_a_new_job_on_the_next_run() {
    // One job per unit and run: the first run's only job ends in SYSTEM_ERROR and stays in the
    // unit's checkpoint. The rerun finds it failed and creates a job of its own instead of
    // failing on the old one (the attempts of earlier runs do not count against this one).
    let sim = Sim::start(&["--seed", "26", "--audit-system-error-first"]);
    let out = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(repo_path("pipelines/audit.yaml")).unwrap();
    let pipeline = out.path().join("audit-one-attempt.yaml");
    std::fs::write(&pipeline, yaml.replace("job_attempts: 3", "job_attempts: 1")).unwrap();
    let days = [days_ago(1)];
    let (from, to) = (days[0].to_string(), today().to_string());
    let run = || {
        etl(
            &["run", pipeline.to_str().unwrap(), "--from", &from, "--to", &to],
            &audit_env(&sim, out.path(), &[]),
        )
    };
    let first = run();
    assert_ne!(first.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("SYSTEM_ERROR"), "{stderr}");
    assert_eq!(jobs(&sim)["created"], 1);

    let second = run();
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(jobs(&sim)["created"], 2, "the failed job and the rerun's own");
    assert_matches_truth(&sim, out.path(), &days);
}
