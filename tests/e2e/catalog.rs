//! `etl sources` and `etl schema`, as an operator setting up a pipeline uses them.

use crate::util::*;

const SOURCE_TYPES: [&str; 5] = ["mail_delivery", "mail_tracking", "cdn_logs", "audit_log", "webdav_logs"];

fn stdout_of(args: &[&str]) -> String {
    let out = etl(args, &[]);
    assert_eq!(out.status.code(), Some(0), "etl {}", args.join(" "));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn sources_lists_every_type_with_its_limits_and_defaults() {
    let text = stdout_of(&["sources"]);
    for kind in SOURCE_TYPES {
        assert!(text.contains(&format!("\n{kind}\n")), "{kind} is not listed:\n{text}");
    }
    assert!(
        text.contains("max_items (optional, 1..=10000, default 10000)"),
        "{text}"
    );
    assert!(
        text.contains("rate_per_hour (optional, 1..=1000, default 1000)"),
        "{text}"
    );
    assert!(
        text.contains("100 listing requests per minute and 1000 per hour"),
        "{text}"
    );
    assert!(text.contains("valid 15 minutes"), "{text}");
}

#[test]
fn sources_markdown_is_the_checked_in_reference() {
    let text = stdout_of(&["sources", "--markdown"]);
    let checked_in = std::fs::read_to_string(repo_path("docs/CONFIG.md")).expect("docs/CONFIG.md");
    assert!(
        text == checked_in,
        "`etl sources --markdown` differs from docs/CONFIG.md; run `UPDATE_CONFIG_REFERENCE=1 cargo test -p etl-config reference`"
    );
}

#[test]
fn schema_shows_the_utc_time_column() {
    let text = stdout_of(&["schema", "cdn_logs"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("requested_at "))
        .unwrap_or_else(|| panic!("no requested_at column:\n{text}"));
    let fields: Vec<&str> = line.split("  ").map(str::trim).filter(|f| !f.is_empty()).collect();
    assert_eq!(fields[..3], ["requested_at", "Timestamp(µs, \"UTC\")", "no"], "{line}");
    assert!(line.contains("time column"), "{line}");
    assert!(text.lines().any(|l| l.starts_with("file_name ")), "{text}");
}

#[test]
fn schema_json_parses_for_every_source_type() {
    for kind in SOURCE_TYPES {
        let v: serde_json::Value = serde_json::from_str(&stdout_of(&["schema", kind, "--json"])).expect("JSON");
        assert_eq!(v["source"], kind);
        let time = v["time_column"].as_str().unwrap();
        let columns = v["columns"].as_array().unwrap();
        let column = columns
            .iter()
            .find(|c| c["name"] == time)
            .expect("the time column is a column");
        assert_eq!(column["type"], "Timestamp(µs, \"UTC\")", "{kind}");
    }
}

#[test]
fn schema_of_an_unknown_type_is_a_usage_error_listing_the_known_ones() {
    let out = etl(&["schema", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for kind in SOURCE_TYPES {
        assert!(stderr.contains(kind), "{kind} not named:\n{stderr}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn help_of_both_commands_has_an_example() {
    assert!(stdout_of(&["sources", "--help"]).contains("Example:\n  etl sources\n"));
    assert!(stdout_of(&["schema", "--help"]).contains("Example:\n  etl schema cdn_logs\n"));
}
