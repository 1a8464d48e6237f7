//! The operator's commands around a run: `etl plan` before it, the progress display (or its
//! absence) during it, `--summary-json`, `--metrics-file` and `etl state` after it.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

fn mail_pipeline() -> String {
    repo_path("pipelines/mail.yaml").display().to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn mail_requests(sim: &Sim) -> u64 {
    sim.stats()["mail_delivery"]["requests"].as_u64().unwrap()
}

fn run_mail(sim: &Sim, out: &Path, from: &str, to: &str, extra: &[&str]) -> std::process::Output {
    let pipeline = mail_pipeline();
    let mut args = vec!["run", pipeline.as_str(), "--from", from, "--to", to];
    args.extend_from_slice(extra);
    etl(&args, &mail_env(sim, out))
}

#[test]
fn plan_of_a_multi_day_cdn_range_shows_units_budget_and_clamps_without_a_request() {
    let sim = Sim::start(&["--seed", "41"]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = repo_path("pipelines/cdn.yaml");
    let from = days_ago(14).to_string();
    let beyond_now = (today() + chrono::Days::new(3)).to_string();
    let env = vec![
        ("CDN_LOGS_URL".to_string(), sim.base.clone()),
        (
            "CDN_LOGS_DOMAINS".to_string(),
            "live.example.com,vod.example.com".to_string(),
        ),
        ("CDN_LOGS_RATE_PER_MINUTE".to_string(), "10".to_string()),
        ("ETL_OUT".to_string(), out.display().to_string()),
    ];
    let args = ["plan", pipeline.to_str().unwrap(), "--from", &from, "--to", &beyond_now];
    let res = etl(&args, &env);
    assert_eq!(res.status.code(), Some(0));
    let text = stdout(&res);
    // 15 UTC days (14 closed, today open) for each of two domains.
    assert!(text.contains("30 unit(s): 28 to run, 2 provisional, 0 done"), "{text}");
    assert!(
        text.contains("rate budget: 30 listing requests under 10/min and 1000/h take at least 2 min"),
        "{text}"
    );
    assert!(text.contains("end clamped to now"), "{text}");
    let first = format!("cdn_logs-live.example.com-{from}");
    let line = text
        .lines()
        .find(|l| l.starts_with(&first))
        .unwrap_or_else(|| panic!("{first}:\n{text}"));
    assert!(line.contains(" run ") && line.contains("1+ (one listing"), "{line}");

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let res = etl(&json_args, &env);
    assert_eq!(res.status.code(), Some(0));
    let units = json_lines(&stdout(&res));
    assert_eq!(units.len(), 30);
    for u in &units {
        assert_eq!(u["source"], "cdn_logs");
        assert!(["run", "provisional"].contains(&u["status"].as_str().unwrap()), "{u}");
        assert_eq!(u["requests"]["requests"], 1, "{u}");
        assert!(u["partitions"]["domain"].is_string(), "{u}");
    }
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("rate budget: 30 listing requests"), "{stderr}");

    let requests = sim.get_json("/_sim/cdn/requests");
    assert_eq!(requests["listing"].as_array().map_or(0, Vec::len), 0, "{requests}");
    assert!(!out.exists(), "a plan must not create the dataset");
}

#[test]
fn plan_after_a_run_marks_units_done_and_state_forget_makes_the_next_run_reload_them() {
    let sim = Sim::start(&["--seed", "42", "--mail-rows-per-day", "300"]);
    let tmp = tempfile::tempdir().unwrap();
    let (d3, d2, d1) = (days_ago(3), days_ago(2), days_ago(1));
    let (from, to) = (d3.to_string(), today().to_string());
    assert_eq!(run_mail(&sim, tmp.path(), &from, &to, &[]).status.code(), Some(0));
    let before = read_mail(&tmp.path().join("mail_delivery"));

    let pipeline = mail_pipeline();
    let plan = |from: &str| {
        let res = etl(
            &["plan", &pipeline, "--from", from, "--to", &to, "--json"],
            &mail_env(&sim, tmp.path()),
        );
        assert_eq!(res.status.code(), Some(0));
        json_lines(&stdout(&res))
    };
    let requests = mail_requests(&sim);
    let units = plan(&days_ago(4).to_string());
    assert_eq!(mail_requests(&sim), requests, "a plan sends no request");
    let status: Vec<(String, String)> = units
        .iter()
        .map(|u| {
            (
                u["unit"].as_str().unwrap().to_string(),
                u["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            (format!("mail_delivery-{}", days_ago(4)), "run".to_string()),
            (format!("mail_delivery-{d3}"), "done".into()),
            (format!("mail_delivery-{d2}"), "done".into()),
            (format!("mail_delivery-{d1}"), "done".into()),
        ]
    );
    assert!(units[1]["committed_at"].is_string() && units[1].get("requests").is_none());

    // list shows the three days; forget one by id and one by window.
    let list = etl(&["state", &pipeline, "list", "--json"], &mail_env(&sim, tmp.path()));
    assert_eq!(list.status.code(), Some(0));
    let listed: Vec<String> = json_lines(&stdout(&list))
        .iter()
        .map(|r| r["unit"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let unknown = etl(
        &["state", &pipeline, "forget", "mail_delivery-1999-01-01"],
        &mail_env(&sim, tmp.path()),
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no state record for mail_delivery-1999-01-01"));
    let by_id = etl(
        &["state", &pipeline, "forget", &format!("mail_delivery-{d3}")],
        &mail_env(&sim, tmp.path()),
    );
    assert_eq!(by_id.status.code(), Some(0));
    let by_window = etl(
        &[
            "state",
            &pipeline,
            "forget",
            "--from",
            &d1.to_string(),
            "--to",
            &today().to_string(),
        ],
        &mail_env(&sim, tmp.path()),
    );
    assert_eq!(by_window.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&by_window.stderr).contains(&format!("forgot mail_delivery-{d1}")));
    let units = plan(&from);
    let statuses: Vec<&str> = units.iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["run", "done", "run"]);

    // The rerun fetches exactly the two forgotten days and replaces their files.
    let requests = mail_requests(&sim);
    assert_eq!(run_mail(&sim, tmp.path(), &from, &to, &[]).status.code(), Some(0));
    assert_eq!(mail_requests(&sim) - requests, 2);
    let after = read_mail(&tmp.path().join("mail_delivery"));
    assert_eq!(summarize(&after), summarize(&before));
    assert_eq!(summarize(&after), truth_summary(&sim, &[d3, d2, d1]));
    assert_no_stray_files(&tmp.path().join("mail_delivery"));
}

#[test]
fn etl_settle_sets_the_settle_lag_of_the_bundled_pipelines() {
    let sim = Sim::start(&["--seed", "45", "--mail-rows-per-day", "10"]);
    let tmp = tempfile::tempdir().unwrap();
    let (from, to) = (days_ago(1).to_string(), today().to_string());
    // Yesterday ended less than 25 hours ago, whatever the time of day.
    let status = |settle: &str| {
        let mut env = mail_env(&sim, tmp.path());
        env.push(("ETL_SETTLE".into(), settle.into()));
        let res = etl(
            &["plan", &mail_pipeline(), "--from", &from, "--to", &to, "--json"],
            &env,
        );
        assert_eq!(res.status.code(), Some(0));
        let units = json_lines(&stdout(&res));
        assert_eq!(units.len(), 1, "{units:?}");
        units[0]["status"].as_str().unwrap().to_string()
    };
    assert_eq!(status("25h"), "provisional");
    assert_eq!(status("0s"), "run");
}

#[test]
fn summary_json_and_metrics_file_describe_the_run_and_keep_the_last_success() {
    let sim = Sim::start(&["--seed", "43", "--mail-rows-per-day", "250"]);
    let tmp = tempfile::tempdir().unwrap();
    let summary = tmp.path().join("summary.json");
    let metrics = tmp.path().join("etl.prom");
    let days = [days_ago(2), days_ago(1)];
    let (from, to) = (days[0].to_string(), today().to_string());
    let flags = [
        "--summary-json",
        summary.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    let res = run_mail(&sim, &tmp.path().join("out"), &from, &to, &flags);
    assert_eq!(res.status.code(), Some(0));
    // Progress bars are for terminals only: a piped stderr gets plain log lines.
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!stderr.contains('\r') && !stderr.contains("\x1b["), "{stderr}");
    assert!(!stderr.contains("unit(s) 0s"), "{stderr}");

    let truth: u64 = days.iter().map(|d| sim.mail_day(*d)["rows"].as_u64().unwrap()).sum();
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["pipeline"], "mail_delivery");
    assert_eq!(s["exit_code"], 0);
    assert_eq!(s["outcome"], "ok");
    assert_eq!(s["units_run"], 2);
    assert_eq!(s["totals"]["rows"], truth);
    assert_eq!(s["totals"]["requests"], s["responses_by_status"]["200"]);
    let units = s["units"].as_array().unwrap();
    assert_eq!(units.len(), 2);
    assert!(units.iter().all(|u| u["status"] == "committed"), "{units:?}");
    assert!(s["query"].as_str().unwrap().contains("read_parquet("));
    // Linux reports the peak resident memory: more than the binary, less than the bound.
    let rss = s["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    assert!((1 << 20..256 << 20).contains(&rss), "{rss}");

    let text = std::fs::read_to_string(&metrics).unwrap();
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name}:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("etl_run_records{pipeline=\"mail_delivery\"}"), truth as f64);
    assert_eq!(
        value("etl_run_units{pipeline=\"mail_delivery\",outcome=\"committed\"}"),
        2.0
    );
    assert_eq!(value("etl_run_exit_code{pipeline=\"mail_delivery\"}"), 0.0);
    assert_eq!(value("etl_run_peak_rss_bytes{pipeline=\"mail_delivery\"}"), rss as f64);
    assert!(value("etl_run_requests{pipeline=\"mail_delivery\",status=\"200\"}") >= 2.0);
    let success = value("etl_last_success_timestamp_seconds{pipeline=\"mail_delivery\"}");
    assert!(success > 1.7e9, "{success}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.starts_with("etl_") && line.contains("{pipeline=\"mail_delivery\""),
            "{line}"
        );
    }

    // A failing run (wrong token, exit 4) keeps the previous success time.
    let mut env = mail_env(&sim, &tmp.path().join("out"));
    env.retain(|(k, _)| k != "MAIL_DELIVERY_TOKEN");
    env.push(("MAIL_DELIVERY_TOKEN".into(), "wrong-token".into()));
    let pipeline = mail_pipeline();
    let mut args = vec!["run", pipeline.as_str(), "--from", "-1h", "--to", "now"];
    args.extend_from_slice(&flags);
    let res = etl(&args, &env);
    assert_eq!(res.status.code(), Some(4));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("etl_run_exit_code{pipeline=\"mail_delivery\"} 4"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "etl_last_success_timestamp_seconds{{pipeline=\"mail_delivery\"}} {success}"
        )),
        "{text}"
    );
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["outcome"], "permanent");
    assert!(s["units"][0]["error"].as_str().unwrap().contains("401"), "{s}");
    assert!(!std::fs::read_to_string(&summary).unwrap().contains("wrong-token"));
}

#[test]
fn on_a_terminal_the_run_shows_progress_bars() {
    // `script` gives the run a pseudo-terminal as stderr.
    if std::process::Command::new("script").arg("--version").output().is_err() {
        panic!("the `script` command (util-linux) is needed for this test");
    }
    let sim = Sim::start(&["--seed", "44", "--mail-rows-per-day", "200"]);
    let tmp = tempfile::tempdir().unwrap();
    let command = format!(
        "{} run {} --from {} --to {}",
        etl_bin(),
        mail_pipeline(),
        days_ago(2),
        today()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"]);
    for (k, v) in mail_env(&sim, tmp.path()) {
        cmd.env(k, v);
    }
    let res = cmd.env("ETL_LOG", "info").output().unwrap();
    let screen = String::from_utf8_lossy(&res.stdout);
    assert!(res.status.success(), "{screen}");
    assert!(screen.contains("etl run") && screen.contains("unit(s)"), "{screen}");
    assert!(screen.contains(&format!("mail_delivery-{}", days_ago(2))), "{screen}");
    assert!(screen.contains("records/s"), "{screen}");
}

#[test]
fn every_subcommand_help_has_an_example_and_run_lists_the_exit_codes() {
    let commands: [&[&str]; 10] = [
        &["run"],
        &["plan"],
        &["validate"],
        &["preview"],
        &["state"],
        &["state", "x.yaml", "list"],
        &["state", "x.yaml", "forget"],
        &["sources"],
        &["schema"],
        &["sim"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = etl(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "etl {}", args.join(" "));
        let help = stdout(&out);
        assert!(
            help.contains("Example:\n  etl "),
            "etl {} has no example:\n{help}",
            args.join(" ")
        );
    }
    let help = stdout(&etl(&["run", "--help"], &[]));
    for code in ["  0 ", "  2 ", "  3 ", "  4 ", "  130 "] {
        assert!(help.contains(code), "exit code {code} missing:\n{help}");
    }
}
