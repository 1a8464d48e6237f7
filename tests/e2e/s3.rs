//! The same pipelines on S3-compatible storage (a moto server on loopback), and the crash and
//! concurrency cases where "exactly once" is decided: SIGKILL between the data files and the
//! manifest, between the manifest and the state record, and two processes on one dataset.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use etl_sink::s3_server;

use crate::util::*;

fn two_days() -> (Vec<NaiveDate>, String, String) {
    (
        vec![days_ago(3), days_ago(2)],
        days_ago(3).to_string(),
        days_ago(1).to_string(),
    )
}

/// Environment for `pipelines/mail.yaml` writing to `s3://<bucket>/etl`.
pub(crate) fn s3_mail_env(sim: &Sim, bucket: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("MAIL_DELIVERY_URL".to_string(), sim.mail_url()),
        ("MAIL_DELIVERY_TOKEN".to_string(), "sim-mail-token".to_string()),
        ("MAIL_DELIVERY_MAX_ITEMS".to_string(), "300".to_string()),
        ("ETL_OUT".to_string(), format!("s3://{bucket}/etl")),
    ];
    env.extend(s3_server::aws_env());
    env
}

fn run(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    etl(args, env)
}

fn mail_args<'a>(pipeline: &'a str, from: &'a str, to: &'a str) -> Vec<&'a str> {
    vec!["run", pipeline, "--from", from, "--to", to]
}

/// Copies the dataset down and compares it with the truth; returns the local copy.
pub(crate) fn assert_s3_matches_truth(sim: &Sim, bucket: &str, days: &[NaiveDate]) -> tempfile::TempDir {
    let local = tempfile::tempdir().unwrap();
    s3_server::mirror(bucket, "etl/mail_delivery", local.path());
    let got = summarize(&read_mail(local.path()));
    assert_eq!(
        got,
        truth_summary(sim, days),
        "the S3 dataset must equal the ground truth"
    );
    assert_no_stray_files(local.path());
    local
}

#[test]
fn mail_to_s3_equals_the_truth_and_a_rerun_is_a_no_op() {
    let sim = Sim::start(&["--seed", "21", "--mail-rows-per-day", "900"]);
    let bucket = s3_server::create_bucket();
    let (days, from, to) = two_days();
    let pipeline = repo_path("pipelines/mail.yaml");
    let env = s3_mail_env(&sim, &bucket);
    let res = run(&mail_args(pipeline.to_str().unwrap(), &from, &to), &env);
    assert_eq!(res.status.code(), Some(0));
    let copy = assert_s3_matches_truth(&sim, &bucket, &days);
    // State and manifests live under the same prefix.
    assert_eq!(std::fs::read_dir(copy.path().join("_etl/state")).unwrap().count(), 2);
    let claims = std::fs::read_dir(copy.path().join("_etl/claims")).map_or(0, Iterator::count);
    assert_eq!(claims, 0, "claims are released after the run");

    let requests = sim.stats()["mail_delivery"]["requests"].as_u64().unwrap();
    let res = run(&mail_args(pipeline.to_str().unwrap(), &from, &to), &env);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(
        sim.stats()["mail_delivery"]["requests"].as_u64().unwrap(),
        requests,
        "a rerun sends no data request"
    );
    assert!(String::from_utf8_lossy(&res.stderr).contains("2 already done"));
}

#[test]
fn the_connection_can_be_set_in_the_pipeline_file() {
    let sim = Sim::start(&["--seed", "22", "--mail-rows-per-day", "400"]);
    let bucket = s3_server::create_bucket();
    let (days, from, to) = two_days();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_path("pipelines/mail.yaml"))
        .unwrap()
        .replace(
            "  url: ${ETL_OUT:-./data}/mail_delivery\n",
            "  url: s3://${TEST_BUCKET}/etl/mail_delivery\n  s3:\n    endpoint: ${TEST_S3_ENDPOINT}\n    region: eu-west-1\n    access_key_id: ${TEST_S3_KEY}\n    secret_access_key: ${TEST_S3_SECRET}\n    allow_http: true\n",
        );
    assert!(
        text.contains("TEST_S3_ENDPOINT"),
        "the sink section of mail.yaml changed"
    );
    let file = dir.path().join("mail_s3.yaml");
    std::fs::write(&file, text).unwrap();
    // No AWS_* at all: everything comes from the file.
    let env = vec![
        ("MAIL_DELIVERY_URL".to_string(), sim.mail_url()),
        ("MAIL_DELIVERY_TOKEN".to_string(), "sim-mail-token".to_string()),
        ("TEST_BUCKET".to_string(), bucket.clone()),
        ("TEST_S3_ENDPOINT".to_string(), s3_server::endpoint().to_string()),
        ("TEST_S3_KEY".to_string(), "file-key".to_string()),
        ("TEST_S3_SECRET".to_string(), "file-secret-value-1234".to_string()),
    ];
    let mut cmd = etl_command(&mail_args(file.to_str().unwrap(), &from, &to), &env);
    for (k, _) in s3_server::aws_env() {
        cmd.env_remove(k);
    }
    let res = cmd.env("ETL_LOG", "debug").output().unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("file-secret-value-1234"),
        "the secret key leaked into the logs"
    );
    assert_s3_matches_truth(&sim, &bucket, &days);
}

/// Starts `etl run` with `ETL_FAILPOINT=point` and waits until it stops there.
pub(crate) fn run_until_failpoint(pipeline: &str, env: &[(String, String)], args: &[&str], point: &str) -> Child {
    let mut all = vec!["run", pipeline];
    all.extend_from_slice(args);
    let mut child = etl_command(&all, env)
        .env("ETL_FAILPOINT", point)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = format!("failpoint {point} reached");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(&wanted) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the run never reached failpoint {point}"));
    child
}

/// SIGKILL at the two points where a crash is most expensive, on local disk and on S3; the
/// rerun must give the exact dataset with no orphan `*.parquet`.
#[test]
fn killed_before_the_manifest_or_before_the_state_then_rerun_is_exact() {
    let sim = Sim::start(&["--seed", "23", "--mail-rows-per-day", "700"]);
    let (days, from, to) = two_days();
    let pipeline = repo_path("pipelines/mail.yaml");
    let pipeline = pipeline.to_str().unwrap();
    for point in ["sink.before_manifest", "runner.before_state"] {
        // Local disk.
        let out = tempfile::tempdir().unwrap();
        let mut env = mail_env(&sim, out.path());
        env.push(("MAIL_DELIVERY_MAX_ITEMS".into(), "300".into()));
        let mut child = run_until_failpoint(pipeline, &env, &["--from", &from, "--to", &to], point);
        child.kill().unwrap();
        child.wait().unwrap();
        let dataset = out.path().join("mail_delivery");
        let res = run(&mail_args(pipeline, &from, &to), &env);
        assert_eq!(res.status.code(), Some(0), "rerun after a kill at {point}");
        assert_eq!(
            summarize(&read_mail(&dataset)),
            truth_summary(&sim, &days),
            "after a kill at {point}"
        );
        assert_no_stray_files(&dataset);

        // S3.
        let bucket = s3_server::create_bucket();
        let env = s3_mail_env(&sim, &bucket);
        let mut child = run_until_failpoint(pipeline, &env, &["--from", &from, "--to", &to], point);
        child.kill().unwrap();
        child.wait().unwrap();
        let res = run(&mail_args(pipeline, &from, &to), &env);
        assert_eq!(res.status.code(), Some(0), "rerun on S3 after a kill at {point}");
        assert_s3_matches_truth(&sim, &bucket, &days);
    }
}

/// Counts `unit committed` log lines per unit id in a run's stderr.
pub(crate) fn commits(stderr: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for line in stderr
        .lines()
        .filter(|l| l.contains("unit committed") && !l.contains("another worker"))
    {
        if let Some(unit) = line.split_whitespace().find_map(|w| w.strip_prefix("unit=")) {
            *out.entry(unit.trim_matches('"').to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// A CronJob started twice, or two shards given the same units: both processes run the same
/// pipeline over the same range on one S3 dataset at the same moment.
#[test]
fn two_processes_on_one_s3_dataset_commit_each_unit_once() {
    let sim = Sim::start(&["--seed", "24", "--mail-rows-per-day", "1500"]);
    let bucket = s3_server::create_bucket();
    let days = vec![days_ago(5), days_ago(4), days_ago(3), days_ago(2)];
    let (from, to) = (days_ago(5).to_string(), days_ago(1).to_string());
    let pipeline = repo_path("pipelines/mail.yaml");
    let env = s3_mail_env(&sim, &bucket);
    let start = Instant::now();
    let children: Vec<Child> = (0..2)
        .map(|_| {
            etl_command(&mail_args(pipeline.to_str().unwrap(), &from, &to), &env)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let mut total = std::collections::BTreeMap::new();
    for out in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("--- concurrent run -> {:?}\n{stderr}", out.status.code());
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        for (unit, n) in commits(&stderr) {
            *total.entry(unit).or_insert(0) += n;
        }
    }
    assert_eq!(total.len(), 4, "every unit committed: {total:?}");
    // The worker that did not write a unit skipped it: either it was done when that worker
    // planned, or it waited on the other's claim and then found it committed.
    let mut not_written = 0;
    for o in &outputs {
        let stderr = String::from_utf8_lossy(&o.stderr);
        not_written += stderr.matches("unit committed by another worker").count();
        not_written += stderr
            .split_whitespace()
            .find_map(|w| w.strip_prefix("already_done="))
            .map_or(0, |n| n.parse::<usize>().unwrap());
    }
    assert_eq!(
        not_written, 4,
        "each unit was skipped by the worker that did not write it"
    );
    assert!(
        total.values().all(|n| *n == 1),
        "each unit committed exactly once: {total:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(120));
    assert_s3_matches_truth(&sim, &bucket, &days);
}
