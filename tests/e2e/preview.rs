//! `etl preview` and the `jsonl` sink against the simulator: a preview fetches one page or file,
//! prints it, and leaves no trace; a run into JSON lines writes every record once per run.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// The data rows of a table printed by `pretty_format_batches`: the `| ... |` lines after the
/// header row.
fn table_rows(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with('|')).skip(1).collect()
}

/// The column names of the table's header row.
fn table_header(text: &str) -> Vec<String> {
    let header = text.lines().find(|l| l.starts_with('|')).expect("a table header");
    header
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

fn assert_no_output(out_dir: &Path) {
    assert!(
        !out_dir.exists(),
        "a preview must write nothing, yet {} exists: {:?}",
        out_dir.display(),
        std::fs::read_dir(out_dir).map(|d| d.map(|e| e.unwrap().path()).collect::<Vec<_>>())
    );
}

/// A mail day that fits in one page, so that the first payload is the whole unit.
fn one_page_mail(sim: &Sim, out: &Path) -> Vec<(String, String)> {
    let mut env = mail_env(sim, out);
    env.push(("MAIL_DELIVERY_MAX_ITEMS".into(), "10000".into()));
    env
}

#[test]
fn preview_prints_the_first_page_as_a_table_and_writes_nothing() {
    let sim = Sim::start(&["--seed", "5", "--mail-rows-per-day", "600"]);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let day = sim.mail_day_with_records(3);
    let pipeline = repo_path("pipelines/mail.yaml");
    let res = etl(
        &[
            "preview",
            pipeline.to_str().unwrap(),
            "--from",
            &day.to_string(),
            "--to",
            &(day + chrono::Days::new(1)).to_string(),
            "--limit",
            "7",
        ],
        &one_page_mail(&sim, &out_dir),
    );
    assert_eq!(res.status.code(), Some(0));
    let text = stdout(&res);
    assert_eq!(
        table_header(&text),
        [
            "delivered_at",
            "result",
            "status_code",
            "transaction_id",
            "sender",
            "recipient",
            "detail"
        ]
    );
    let rows = table_rows(&text);
    assert_eq!(rows.len(), 7, "{text}");
    for row in &rows {
        assert!(
            row.starts_with(&format!("| {day}T")),
            "every record of the unit is of day {day}: {row}"
        );
    }
    let day_rows = sim.mail_day(day)["rows"].as_u64().unwrap();
    assert!(day_rows > 7);
    assert!(
        text.contains(&format!(
            "unit mail_delivery-{day} (first of 1 planned; {day}T00:00:00Z to "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("payload \"page 1\": {day_rows} record(s), 7 shown")),
        "the page holds the whole day: {text}"
    );
    assert_eq!(
        sim.stats()["mail_delivery"]["requests"].as_u64(),
        Some(1),
        "a preview fetches one page"
    );
    assert_no_output(&out_dir);
}

#[test]
fn preview_json_prints_records_as_json_lines_with_rfc3339_times() {
    let sim = Sim::start(&["--seed", "6", "--mail-rows-per-day", "300"]);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let day = sim.mail_day_with_records(2);
    let pipeline = repo_path("pipelines/mail.yaml");
    let res = etl(
        &[
            "preview",
            pipeline.to_str().unwrap(),
            "--from",
            &day.to_string(),
            "--to",
            &(day + chrono::Days::new(1)).to_string(),
            "--limit",
            "3",
            "--json",
        ],
        &one_page_mail(&sim, &out_dir),
    );
    assert_eq!(res.status.code(), Some(0));
    let text = stdout(&res);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in &lines {
        let at = line["delivered_at"].as_str().expect("delivered_at is a string");
        let t = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        assert_eq!(t.offset().local_minus_utc(), 0, "{at}");
        assert_eq!(t.date_naive(), day);
        assert!(line["status_code"].is_u64(), "{line}");
    }
    // The description goes to stderr, so stdout stays JSON.
    assert!(String::from_utf8_lossy(&res.stderr).contains("3 shown"));
    assert_no_output(&out_dir);
}

#[test]
fn preview_of_a_cdn_log_file_shows_its_records() {
    let sim = Sim::start(&["--seed", "8"]);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let day = days_ago(2);
    let env = vec![
        ("CDN_LOGS_URL".to_string(), sim.base.clone()),
        (
            "CDN_LOGS_DOMAINS".to_string(),
            "live.example.com,vod.example.com".to_string(),
        ),
        ("ETL_OUT".to_string(), out_dir.display().to_string()),
    ];
    let pipeline = repo_path("pipelines/cdn.yaml");
    let res = etl(
        &[
            "preview",
            pipeline.to_str().unwrap(),
            "--from",
            &day.to_string(),
            "--to",
            &(day + chrono::Days::new(1)).to_string(),
            "--limit",
            "4",
        ],
        &env,
    );
    assert_eq!(res.status.code(), Some(0));
    let text = stdout(&res);
    let header = table_header(&text);
    for column in ["requested_at", "client_ip", "status", "request_id", "file_name"] {
        assert!(header.iter().any(|h| h == column), "{column} in {header:?}");
    }
    assert_eq!(table_rows(&text).len(), 4, "{text}");
    assert!(
        text.contains(&format!("unit cdn_logs-live.example.com-{day} (first of 2 planned; ")),
        "{text}"
    );
    assert!(text.contains(".log.gz\": "), "the payload is a log file: {text}");
    let listings = sim.get_json("/_sim/cdn/requests")["listing"].as_array().unwrap().len();
    assert_eq!(listings, 1, "one listing, for the first unit only");
    assert_no_output(&out_dir);
}

#[test]
fn preview_fails_with_the_exit_codes_of_run() {
    let sim = Sim::start(&["--seed", "9", "--mail-rows-per-day", "50"]);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let pipeline = repo_path("pipelines/mail.yaml");
    let file = pipeline.to_str().unwrap();

    let mut env = mail_env(&sim, &out_dir);
    env.retain(|(k, _)| k != "MAIL_DELIVERY_TOKEN");
    env.push(("MAIL_DELIVERY_TOKEN".into(), "wrong-token".into()));
    let res = etl(&["preview", file, "--from", "-2d"], &env);
    assert_eq!(res.status.code(), Some(4), "a rejected token is permanent");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("error: ") && stderr.contains("preview of unit mail_delivery-"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-token"), "the token is redacted: {stderr}");
    assert!(res.stdout.is_empty());

    let res = etl(&["preview", file, "--from", "yesterday-ish"], &mail_env(&sim, &out_dir));
    assert_eq!(res.status.code(), Some(2));
    assert_no_output(&out_dir);

    let help = etl(&["preview", "--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        stdout(&help).contains("Example:\n  etl preview pipelines/mail.yaml"),
        "{}",
        stdout(&help)
    );
}

#[test]
fn run_into_a_jsonl_file_writes_every_record_as_one_line_per_run() {
    let sim = Sim::start(&["--seed", "12", "--mail-rows-per-day", "700"]);
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("lines/out.jsonl");
    let pipeline = tmp.path().join("mail-jsonl.yaml");
    let yaml = std::fs::read_to_string(repo_path("pipelines/mail.yaml")).unwrap();
    // The sink section is the file's last: everything from `sink:` on is replaced.
    let (head, parquet_sink) = yaml.split_once("\nsink:\n").expect("pipelines/mail.yaml has a sink");
    assert!(
        parquet_sink.starts_with("  type: parquet\n  url: ${ETL_OUT:-./data}/mail_delivery\n"),
        "pipelines/mail.yaml changed its sink"
    );
    let yaml = format!("{head}\nsink:\n  type: jsonl\n  url: {}\n", jsonl.display());
    std::fs::write(&pipeline, yaml).unwrap();
    let out_dir = tmp.path().join("out");
    let env = mail_env(&sim, &out_dir);
    let days = [days_ago(4), days_ago(3), days_ago(2)];
    let args = [
        "run",
        pipeline.to_str().unwrap(),
        "--from",
        &days[0].to_string(),
        "--to",
        &days_ago(1).to_string(),
    ];
    let want: u64 = days.iter().map(|d| sim.mail_day(*d)["rows"].as_u64().unwrap()).sum();
    assert!(want > 0);

    let res = etl(&args, &env);
    assert_eq!(res.status.code(), Some(0));
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let mut per_day = std::collections::BTreeMap::<String, u64>::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let at = v["delivered_at"]
            .as_str()
            .unwrap_or_else(|| panic!("delivered_at is a string: {line}"));
        let t = chrono::DateTime::parse_from_rfc3339(at).unwrap_or_else(|e| panic!("{e}: {at}"));
        assert!(at.ends_with('Z'), "UTC: {at}");
        *per_day.entry(t.date_naive().to_string()).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<String, u64> = days
        .iter()
        .map(|d| (d.to_string(), sim.mail_day(*d)["rows"].as_u64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(per_day, expected, "one line per record of the truth");
    assert_eq!(text.lines().count() as u64, want);
    assert!(!out_dir.exists(), "the jsonl sink writes no dataset or state");

    // No state: a second run fetches every day again and appends it again.
    let res = etl(&args, &env);
    assert_eq!(res.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&jsonl).unwrap().lines().count() as u64,
        2 * want
    );
}
