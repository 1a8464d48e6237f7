//! `etl validate` and configuration errors, as a user sees them.

use std::path::Path;

use crate::util::*;

fn dummy_env() -> Vec<(String, String)> {
    vec![
        ("MAIL_DELIVERY_URL".into(), "http://127.0.0.1:9/mail-delivery/".into()),
        ("MAIL_DELIVERY_TOKEN".into(), "t".into()),
        ("MAIL_TRACKING_URL".into(), "http://127.0.0.1:9".into()),
        ("MAIL_TRACKING_USER".into(), "u".into()),
        ("MAIL_TRACKING_API_KEY".into(), "k".into()),
        ("CDN_LOGS_URL".into(), "http://127.0.0.1:9".into()),
        ("CDN_LOGS_DOMAINS".into(), "live.example.com".into()),
        (
            "AUDIT_LOG_URL".into(),
            "http://127.0.0.1:9/services/V201812/AuditLogService".into(),
        ),
        ("AUDIT_LOG_LICENSE".into(), "l".into()),
        ("AUDIT_LOG_API_ACCOUNT_ID".into(), "a".into()),
        ("AUDIT_LOG_API_ACCOUNT_PASSWORD".into(), "p".into()),
        ("AUDIT_LOG_ACCOUNT_ID".into(), "100000001".into()),
        ("WEBDAV_CELL_URL".into(), "http://127.0.0.1:9/cell/".into()),
        ("WEBDAV_TOKEN".into(), "t".into()),
        ("ETL_OUT".into(), "/tmp/etl-validate-test".into()),
    ]
}

#[test]
fn every_pipeline_file_validates() {
    let dir = repo_path("pipelines");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let res = etl(&["validate", f.to_str().unwrap()], &dummy_env());
        assert_eq!(res.status.code(), Some(0), "{} does not validate", f.display());
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Writes `text` as a pipeline file and runs `etl validate` on it, which must refuse it with
/// exit 2; returns the file's path and stderr.
fn refused_by_validate(name: &str, text: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), name, text);
    let res = etl(&["validate", &file], &[]);
    assert_eq!(res.status.code(), Some(2), "{file} was not refused");
    (file, String::from_utf8_lossy(&res.stderr).into_owned())
}

#[test]
fn a_typo_is_reported_with_file_line_and_column() {
    let (file, stderr) = refused_by_validate(
        "typo.yaml",
        "source:\n  type: mail_delivery\n  url: http://x/\n  tokn: abc\nsink:\n  type: parquet\n  url: /tmp/x\n",
    );
    assert!(stderr.contains(&format!("{file}:4:3")), "{stderr}");
    assert!(stderr.contains("tokn"), "{stderr}");
}

#[test]
fn a_missing_variable_is_reported_with_file_line_and_column() {
    let (file, stderr) = refused_by_validate(
        "env.yaml",
        "source:\n  type: mail_delivery\n  url: http://x/\n  token: ${ETL_TEST_SURELY_UNSET_TOKEN}\nsink:\n  type: parquet\n  url: /tmp/x\n",
    );
    assert!(stderr.contains(&format!("{file}:4:10")), "{stderr}");
    assert!(stderr.contains("ETL_TEST_SURELY_UNSET_TOKEN"), "{stderr}");
}

#[test]
fn a_transform_on_a_missing_column_fails_validation() {
    let (_, stderr) = refused_by_validate(
        "t.yaml",
        "source:\n  type: mail_delivery\n  url: http://x/\n  token: t\ntransforms:\n  - drop: [no_such_column]\nsink:\n  type: parquet\n  url: /tmp/x\n",
    );
    assert!(
        stderr.contains("no_such_column") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn transforms_apply_end_to_end() {
    let sim = Sim::start(&["--seed", "2", "--mail-rows-per-day", "500"]);
    let out = tempfile::tempdir().unwrap();
    let day = sim.mail_day_with_records(3);
    let file = write(
        out.path(),
        "t.yaml",
        &format!(
            "source:\n  type: mail_delivery\n  url: {}\n  token: sim-mail-token\ntransforms:\n  - filter: {{column: result, op: \"=\", value: sent}}\n  - hash: {{columns: [recipient], key: k}}\n  - drop: [detail]\n  - rename: {{sender: mail_from}}\nsink:\n  type: parquet\n  url: {}/ds\n",
            sim.mail_url(),
            out.path().display()
        ),
    );
    let from = day.to_string();
    let to = (day + chrono::Days::new(1)).to_string();
    let res = etl(&["run", &file, "--from", &from, "--to", &to], &[]);
    assert_eq!(res.status.code(), Some(0));
    let files = parquet_files(&out.path().join("ds"));
    let batches: Vec<_> = files.iter().flat_map(|f| read_batches(f)).collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows as u64, sim.mail_day(day)["sent"].as_u64().unwrap());
    let schema = batches[0].schema();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "delivered_at",
            "result",
            "status_code",
            "transaction_id",
            "mail_from",
            "recipient"
        ]
    );
    use arrow_array::cast::AsArray;
    let rcpt = batches[0].column_by_name("recipient").unwrap().as_string::<i32>();
    assert!(
        rcpt.iter()
            .all(|v| v.is_some_and(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())))
    );
}

#[test]
fn a_plain_column_the_transforms_drop_fails_validation() {
    let (file, stderr) = refused_by_validate(
        "plain.yaml",
        "source:\n  type: mail_delivery\n  url: http://x/\n  token: t\ntransforms:\n  - drop: [detail]\nsink:\n  type: parquet\n  url: /tmp/x\n  plain_columns: [detail]\n",
    );
    assert!(
        stderr.contains(&format!(
            "{file}: sink.plain_columns: `detail` is not a column of the records the sink receives (columns: delivered_at,"
        )),
        "{stderr}"
    );
}

/// The sink's `statistics`, `dictionary` and `plain_columns`, set in a pipeline file, are what
/// the written files carry; the rows are the simulator's either way.
#[test]
fn writer_encoding_options_reach_the_files() {
    let sim = Sim::start(&["--seed", "2", "--mail-rows-per-day", "500"]);
    let day = sim.mail_day_with_records(3);
    let from = day.to_string();
    let to = (day + chrono::Days::new(1)).to_string();
    // (sink keys, statistics written, page index written, the columns with a dictionary: all
    // but the named one, or none)
    for (options, stats, page_index, dictionary) in [
        (
            "  statistics: none\n  plain_columns: [transaction_id]\n",
            false,
            false,
            Some("transaction_id"),
        ),
        ("  statistics: chunk\n  dictionary: false\n", true, false, None),
    ] {
        let out = tempfile::tempdir().unwrap();
        let file = write(
            out.path(),
            "p.yaml",
            &format!(
                "source:\n  type: mail_delivery\n  url: {}\n  token: sim-mail-token\nsink:\n  type: parquet\n  url: {}/ds\n{options}",
                sim.mail_url(),
                out.path().display()
            ),
        );
        let res = etl(&["run", &file, "--from", &from, "--to", &to], &[]);
        assert_eq!(res.status.code(), Some(0), "{}", String::from_utf8_lossy(&res.stderr));
        let files = parquet_files(&out.path().join("ds"));
        assert!(!files.is_empty());
        let mut rows = 0;
        for f in &files {
            let reader = std::fs::File::open(f).unwrap();
            let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(reader).unwrap();
            let meta = builder.metadata().clone();
            let columns = meta.file_metadata().schema_descr();
            for rg in meta.row_groups() {
                for (i, c) in rg.columns().iter().enumerate() {
                    let name = columns.column(i).path().string();
                    assert_eq!(c.statistics().is_some(), stats, "{name} statistics with {options:?}");
                    assert_eq!(
                        c.column_index_offset().is_some(),
                        page_index,
                        "{name} page index with {options:?}"
                    );
                    assert_eq!(
                        c.dictionary_page_offset().is_some(),
                        dictionary.is_some_and(|plain| name != plain),
                        "{name} dictionary with {options:?}"
                    );
                }
            }
            rows += builder.build().unwrap().map(|b| b.unwrap().num_rows()).sum::<usize>();
        }
        assert_eq!(rows as u64, sim.mail_day(day)["rows"].as_u64().unwrap(), "{options:?}");
    }
}
