//! Scale-out: N shard processes over one pipeline and range, on the S3-compatible server, give
//! exactly what one process gives; one unit run by two processes at once is committed once; a
//! killed shard restarted finishes the job; shards that share a rate budget on purpose
//! (`--rate-share`) stay under the API's limit together.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Output, Stdio};

use etl_sink::s3_server;
use serde_json::Value;

use crate::cdn::{assert_listings_under, cdn_env, listing_requests, summarize_dataset, truth};
use crate::s3::{assert_s3_matches_truth, commits, run_until_failpoint, s3_mail_env};
use crate::util::*;

/// Six full days, a week ago to yesterday.
fn six_days() -> (Vec<chrono::NaiveDate>, String, String) {
    let days = (2..=7).rev().map(days_ago).collect();
    (days, days_ago(7).to_string(), days_ago(1).to_string())
}

fn spawn(args: &[&str], env: &[(String, String)]) -> Child {
    etl_command(args, env).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits for every child; each must exit 0. Returns their stderr.
fn wait_all(children: Vec<Child>) -> Vec<String> {
    children
        .into_iter()
        .map(|c| {
            let out: Output = c.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            eprintln!("--- worker -> {:?}\n{stderr}", out.status.code());
            assert_eq!(out.status.code(), Some(0), "{stderr}");
            stderr
        })
        .collect()
}

/// The unit ids of `etl plan --json` output.
fn planned_ids(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            v["unit"].as_str().unwrap().to_string()
        })
        .collect()
}

/// N = 1, 2 and 4 shards started together, each on its own bucket: the union of their output
/// is the single-process run's (row counts and key fingerprints per day, which equal the
/// simulator's truth), every unit is committed by exactly one shard, and the shards ran the
/// units `etl plan --shard` said they would.
#[test]
fn one_two_and_four_shards_give_the_single_process_dataset() {
    let sim = Sim::start(&["--seed", "91", "--mail-rows-per-day", "900"]);
    let (days, from, to) = six_days();
    let pipeline = repo_path("pipelines/mail.yaml");
    let pipeline = pipeline.to_str().unwrap();

    let single = s3_server::create_bucket();
    let res = etl(
        &["run", pipeline, "--from", &from, "--to", &to],
        &s3_mail_env(&sim, &single),
    );
    assert_eq!(res.status.code(), Some(0));
    let reference = summarize(&read_mail(assert_s3_matches_truth(&sim, &single, &days).path()));

    for n in [1u32, 2, 4] {
        let bucket = s3_server::create_bucket();
        let env = s3_mail_env(&sim, &bucket);
        let expected: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let shard = format!("{i}/{n}");
                let plan = etl(
                    &[
                        "plan", pipeline, "--from", &from, "--to", &to, "--shard", &shard, "--json",
                    ],
                    &env,
                );
                assert_eq!(plan.status.code(), Some(0));
                planned_ids(&plan.stdout)
            })
            .collect();
        let all: BTreeSet<&String> = expected.iter().flatten().collect();
        assert_eq!(
            all.len(),
            days.len(),
            "{n} shards: the plans partition the units: {expected:?}"
        );
        // (How evenly six keys spread is chance: core's shard tests measure the spread.)
        assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), days.len());

        let children: Vec<Child> = (0..n)
            .map(|i| {
                let shard = format!("{i}/{n}");
                spawn(
                    &["run", pipeline, "--from", &from, "--to", &to, "--shard", &shard],
                    &env,
                )
            })
            .collect();
        let logs = wait_all(children);
        let mut committed = BTreeMap::new();
        for (i, log) in logs.iter().enumerate() {
            let mine: Vec<String> = commits(log).into_keys().collect();
            assert_eq!(mine, expected[i], "shard {i}/{n} ran what its plan listed");
            for (unit, c) in commits(log) {
                *committed.entry(unit).or_insert(0) += c;
            }
        }
        assert_eq!(committed.len(), days.len(), "{committed:?}");
        assert!(
            committed.values().all(|c| *c == 1),
            "each unit committed once: {committed:?}"
        );
        let copy = assert_s3_matches_truth(&sim, &bucket, &days);
        assert_eq!(summarize(&read_mail(copy.path())), reference, "{n} shards");
        let manifests = std::fs::read_dir(copy.path().join("_etl/manifests")).unwrap().count();
        assert_eq!(manifests, days.len(), "one manifest per unit");
    }
}

/// A retried pod, or an orchestrator that starts a task twice: two processes run the same
/// `--unit` at the same moment. One commits it, the other waits on the claim and finds it
/// done; the data is the truth's, with one manifest.
#[test]
fn one_unit_run_by_two_processes_at_once_is_committed_once() {
    let sim = Sim::start(&["--seed", "92", "--mail-rows-per-day", "3000"]);
    let bucket = s3_server::create_bucket();
    let env = s3_mail_env(&sim, &bucket);
    let day = days_ago(3);
    let unit = format!("mail_delivery-{day}");
    let pipeline = repo_path("pipelines/mail.yaml");
    let pipeline = pipeline.to_str().unwrap();
    let (from, to) = (days_ago(7).to_string(), days_ago(1).to_string());
    let args = ["run", pipeline, "--from", &from, "--to", &to, "--unit", &unit];
    let logs = wait_all(vec![spawn(&args, &env), spawn(&args, &env)]);
    let total: usize = logs.iter().map(|l| commits(l).get(&unit).copied().unwrap_or(0)).sum();
    assert_eq!(total, 1, "committed once over both processes");
    let skipped: usize = logs
        .iter()
        .map(|l| {
            l.matches("unit committed by another worker").count()
                + l.split_whitespace()
                    .find_map(|w| w.strip_prefix("already_done="))
                    .map_or(0, |n| n.parse::<usize>().unwrap())
        })
        .sum();
    assert_eq!(skipped, 1, "the other process skipped it");
    let copy = assert_s3_matches_truth(&sim, &bucket, &[day]);
    let manifests: Vec<_> = std::fs::read_dir(copy.path().join("_etl/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(manifests, [format!("{unit}.json")]);
}

/// A `--unit` that the range does not plan is a usage error naming it, and nothing runs.
#[test]
fn an_unknown_unit_is_refused_by_name() {
    let sim = Sim::start(&["--seed", "93", "--mail-rows-per-day", "100"]);
    let out = tempfile::tempdir().unwrap();
    let pipeline = repo_path("pipelines/mail.yaml");
    let res = etl(
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--from",
            &days_ago(3).to_string(),
            "--to",
            &days_ago(1).to_string(),
            "--unit",
            "mail_delivery-2001-01-01",
        ],
        &mail_env(&sim, out.path()),
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--unit mail_delivery-2001-01-01: not in the plan of this range"),
        "{stderr}"
    );
    assert_eq!(sim.stats()["mail_delivery"]["requests"], 0);
}

/// Shard 0 of 2 is SIGKILLed after writing a unit's data and before its manifest; shard 1 runs
/// to the end meanwhile; shard 0 restarted finishes: the dataset is exact, with no orphan file.
#[test]
fn a_killed_shard_restarted_gives_the_exact_dataset() {
    let sim = Sim::start(&["--seed", "94", "--mail-rows-per-day", "900"]);
    let bucket = s3_server::create_bucket();
    let env = s3_mail_env(&sim, &bucket);
    let (days, from, to) = six_days();
    let pipeline = repo_path("pipelines/mail.yaml");
    let pipeline = pipeline.to_str().unwrap();
    let shard_args = |i: u32| {
        vec![
            "--from".to_string(),
            from.clone(),
            "--to".into(),
            to.clone(),
            "--shard".into(),
            format!("{i}/2"),
        ]
    };
    // The shard with units to kill in: whichever owns more of the six days.
    let owned = |i: u32| {
        let mut args = vec!["plan".to_string(), pipeline.to_string()];
        args.extend(shard_args(i));
        args.push("--json".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        planned_ids(&etl(&args, &env).stdout).len()
    };
    let (victim, other) = if owned(0) >= owned(1) { (0, 1) } else { (1, 0) };
    let victim_args = shard_args(victim);
    let victim_args: Vec<&str> = victim_args.iter().map(String::as_str).collect();
    let mut child = run_until_failpoint(pipeline, &env, &victim_args, "sink.before_manifest");
    let mut other_args = vec!["run".to_string(), pipeline.to_string()];
    other_args.extend(shard_args(other));
    let other_args: Vec<&str> = other_args.iter().map(String::as_str).collect();
    let survivor = spawn(&other_args, &env);
    child.kill().unwrap();
    child.wait().unwrap();
    wait_all(vec![survivor]);

    let mut rerun = vec!["run", pipeline];
    rerun.extend_from_slice(&victim_args);
    let res = etl(&rerun, &env);
    assert_eq!(res.status.code(), Some(0), "{}", String::from_utf8_lossy(&res.stderr));
    assert_s3_matches_truth(&sim, &bucket, &days);
}

const DOMAINS: &str = "a.example,b.example,c.example";

/// One CDN listing budget: without `--rate-share` every unit of the pipeline goes to one shard
/// (the budget stays in one process); with `--rate-share 1/2` the units spread over two
/// shards, each taking half of the limit, and together they never exceed it in any sliding
/// minute (the simulator would answer 429 and log the request as limited).
#[test]
fn shards_sharing_one_rate_budget_stay_under_it_together() {
    // Three days (the simulator's truth) of three domains: nine listings against six a minute.
    let sim = Sim::start(&[
        "--seed",
        "95",
        "--cdn-lines-per-slot",
        "1",
        "--cdn-rate-per-minute",
        "6",
        "--cdn-domains",
        DOMAINS,
    ]);
    let out = tempfile::tempdir().unwrap();
    let pipeline = repo_path("pipelines/cdn.yaml");
    let pipeline = pipeline.to_str().unwrap();
    let days: Vec<_> = (1..=3).rev().map(days_ago).collect();
    let (from, to) = (days_ago(3).to_string(), today().to_string());
    let env = cdn_env(
        &sim,
        out.path(),
        &[("CDN_LOGS_RATE_PER_MINUTE", "6"), ("CDN_LOGS_DOMAINS", DOMAINS)],
    );
    let plan = |extra: &[&str]| -> Vec<usize> {
        (0..2)
            .map(|i| {
                let shard = format!("{i}/2");
                let mut args = vec![
                    "plan", pipeline, "--from", &from, "--to", &to, "--json", "--shard", &shard,
                ];
                args.extend_from_slice(extra);
                let res = etl(&args, &env);
                assert_eq!(res.status.code(), Some(0), "{}", String::from_utf8_lossy(&res.stderr));
                // Every unit draws on the listing budget; it is assigned by that budget, or by its
                // own id when the budget is shared on purpose.
                for line in String::from_utf8_lossy(&res.stdout).lines() {
                    let u: Value = serde_json::from_str(line).unwrap();
                    let budget = u["budget"].as_str().expect("a CDN unit has a budget");
                    assert!(budget.starts_with("cdn_logs listing http://127.0.0.1:"), "{budget}");
                    let by = if extra.is_empty() {
                        budget
                    } else {
                        u["unit"].as_str().unwrap()
                    };
                    assert_eq!(u["shard_key"].as_str(), Some(by), "{line}");
                }
                planned_ids(&res.stdout).len()
            })
            .collect()
    };
    let mut together = plan(&[]);
    together.sort();
    assert_eq!(together, [0, 9], "one budget, one shard");
    // Assigned by unit id now (how evenly is chance: core's shard tests measure the spread).
    let shared = plan(&["--rate-share", "1/2"]);
    assert_eq!(shared.iter().sum::<usize>(), 9, "{shared:?}");

    let children: Vec<Child> = (0..2)
        .map(|i| {
            let shard = format!("{i}/2");
            spawn(
                &[
                    "run",
                    pipeline,
                    "--from",
                    &from,
                    "--to",
                    &to,
                    "--shard",
                    &shard,
                    "--rate-share",
                    "1/2",
                ],
                &env,
            )
        })
        .collect();
    let logs = wait_all(children);
    assert!(
        logs.iter()
            .all(|l| l.contains("this worker keeps under 3 listing requests per minute")),
        "each worker took half the budget"
    );
    let got = summarize_dataset(&out.path().join("cdn_access"));
    assert_eq!(got, truth(&sim, &days, &DOMAINS.split(',').collect::<Vec<_>>()));
    let listings = listing_requests(&sim);
    assert_eq!(listings.len(), 9, "{listings:?}");
    assert_listings_under(&listings, 6);
    assert_no_stray_files(&out.path().join("cdn_access"));
}
