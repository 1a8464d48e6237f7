//! Whole-file tests: the documented example, defaults, and the position of every kind of error.

use std::path::Path;
use std::time::Duration;

use super::*;

const FILE: &str = "pipelines/mail.yaml";

/// The example of the README, key for key.
const FULL: &str = r#"name: mail_delivery                 # optional, default = file stem
source:
  type: mail_delivery
  url: ${MAIL_DELIVERY_URL}         # the URL the form is POSTed to
  token: ${MAIL_DELIVERY_TOKEN}     # X-Auth-Token
  status: sent
  max_items: 5000
start: -7d
settle: 1h
on_bad_record: skip
transforms:
  - select: [delivered_at, result, recipient, sender, detail]
  - drop: [detail]
  - rename: {sender: mail_from}
  - hash: {columns: [mail_from, recipient], key: ${ETL_HASH_KEY}}
  - filter: {column: result, op: "=", value: sent}
sink:
  type: parquet
  url: ${ETL_OUT:-./data}/mail_delivery
  compression_level: 3
  row_group_rows: 100000
  statistics: chunk
  dictionary: true
  plain_columns: [recipient]
  max_file_size: 128MiB
  max_open_files: 8
runtime:
  channel_capacity: 8
  decode_workers: 3
  unit_concurrency: 4
  batch_size: 8192
http:
  connect_timeout: 5s
  read_timeout: 30s
  max_attempts: 4
  max_retry_time: 2m
  backoff_base: 100ms
  backoff_max: 10s
"#;

/// The smallest valid file.
const MINIMAL: &str = "source:
  type: mail_delivery
  url: https://api.example.com/deliverylog
  token: tok
sink:
  type: parquet
  url: ./data/mail
";

fn env(name: &str) -> Option<String> {
    match name {
        "MAIL_DELIVERY_URL" => Some("https://api.example.com/api/deliverylog".into()),
        "MAIL_DELIVERY_TOKEN" => Some("MIIFvgY-secret".into()),
        "ETL_HASH_KEY" => Some("hash-key".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<PipelineConfig, ConfigErrors> {
    load_str(Path::new(FILE), text, &env)
}

/// The single error of loading `text`, displayed.
fn error(text: &str) -> String {
    let errors = load(text).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    errors.to_string()
}

/// `MINIMAL` with `extra` appended (top-level keys) or a line replaced.
fn minimal_with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn full_example_reads_every_key() {
    let cfg = load(FULL).unwrap();
    assert_eq!(cfg.path, Path::new(FILE));
    assert_eq!(cfg.name, "mail_delivery");
    let SourceConfig::MailDelivery(src) = &cfg.source else {
        panic!("a mail_delivery source")
    };
    assert_eq!(cfg.source.kind(), "mail_delivery");
    assert_eq!(src.url, "https://api.example.com/api/deliverylog");
    assert_eq!(src.token.expose(), "MIIFvgY-secret");
    assert_eq!(src.status, Some(DeliveryStatus::Sent));
    assert_eq!(src.max_items, 5000);
    assert_eq!(cfg.start, TimeSpec::Relative(chrono::Duration::days(-7)));
    assert_eq!(cfg.settle, Duration::from_secs(3600));
    assert_eq!(cfg.on_bad_record, BadRecordPolicy::Skip);
    assert_eq!(
        cfg.transforms,
        vec![
            TransformConfig::Select(
                ["delivered_at", "result", "recipient", "sender", "detail"]
                    .map(String::from)
                    .to_vec()
            ),
            TransformConfig::Drop(vec!["detail".into()]),
            TransformConfig::Rename(vec![("sender".into(), "mail_from".into())]),
            TransformConfig::Hash {
                columns: vec!["mail_from".into(), "recipient".into()],
                key: Secret::new("hash-key")
            },
            TransformConfig::Filter {
                column: "result".into(),
                op: FilterOp::Eq,
                value: Literal::Str("sent".into())
            },
        ]
    );
    let SinkConfig::Parquet(sink) = &cfg.sink else {
        panic!("a parquet sink")
    };
    assert_eq!(cfg.sink.kind(), "parquet");
    assert_eq!(
        sink,
        &ParquetSinkConfig {
            url: "./data/mail_delivery".into(),
            compression_level: 3,
            row_group_rows: 100_000,
            statistics: ParquetStatistics::Chunk,
            dictionary: true,
            plain_columns: vec!["recipient".into()],
            max_file_size: ByteSize(128 << 20),
            max_open_files: 8,
            s3: S3Config::default(),
        }
    );
    assert_eq!(
        cfg.runtime,
        RuntimeConfig {
            channel_capacity: 8,
            decode_workers: 3,
            unit_concurrency: 4,
            batch_size: 8192
        }
    );
    assert_eq!(
        cfg.http,
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_attempts: 4,
            max_retry_time: Duration::from_secs(120),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    );
}

#[test]
fn secrets_do_not_show_in_debug() {
    let cfg = load(FULL).unwrap();
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("MIIFvgY-secret") && !debug.contains("hash-key"),
        "{debug}"
    );
    assert_eq!(cfg.source.secrets(), vec![Secret::new("MIIFvgY-secret")]);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let cfg = load(MINIMAL).unwrap();
    assert_eq!(cfg.name, "mail");
    let SourceConfig::MailDelivery(src) = &cfg.source else {
        panic!("a mail_delivery source")
    };
    assert_eq!(src.status, None);
    assert_eq!(src.max_items, 10_000);
    assert_eq!(cfg.start, TimeSpec::Relative(chrono::Duration::days(-7)));
    assert_eq!(cfg.settle, Duration::from_secs(3600));
    assert_eq!(cfg.on_bad_record, BadRecordPolicy::Fail);
    assert!(cfg.transforms.is_empty());
    let SinkConfig::Parquet(sink) = &cfg.sink else {
        panic!("a parquet sink")
    };
    assert_eq!(sink.compression_level, 1);
    assert_eq!(sink.row_group_rows, 262_144);
    assert_eq!(sink.statistics, ParquetStatistics::Page);
    assert!(sink.dictionary);
    assert!(sink.plain_columns.is_empty());
    assert_eq!(sink.max_file_size, ByteSize(512 << 20));
    assert_eq!(sink.max_open_files, 16);
    assert_eq!(cfg.runtime, RuntimeConfig::default());
    assert_eq!(
        cfg.runtime,
        RuntimeConfig {
            channel_capacity: 4,
            decode_workers: 2,
            unit_concurrency: 2,
            batch_size: 16_384
        }
    );
    assert_eq!(cfg.http, HttpSettings::default());
    assert_eq!(cfg.http.connect_timeout, Duration::from_secs(10));
    assert_eq!(cfg.http.read_timeout, Duration::from_secs(60));
    assert_eq!(cfg.http.max_attempts, 8);
    assert_eq!(cfg.http.max_retry_time, Duration::from_secs(300));
    assert_eq!(cfg.http.backoff_base, Duration::from_millis(250));
    assert_eq!(cfg.http.backoff_max, Duration::from_secs(30));
}

#[test]
fn empty_sections_take_defaults() {
    let cfg = load(&minimal_with("runtime:\nhttp:\ntransforms:\n")).unwrap();
    assert_eq!(cfg.runtime, RuntimeConfig::default());
    assert_eq!(cfg.http, HttpSettings::default());
    assert!(cfg.transforms.is_empty());
    let cfg = load(&minimal_with("http: {max_attempts: 2}\n")).unwrap();
    assert_eq!(
        cfg.http,
        HttpSettings {
            max_attempts: 2,
            ..HttpSettings::default()
        }
    );
}

#[test]
fn status_accepts_names_and_codes() {
    for (text, want) in [
        ("sent", DeliveryStatus::Sent),
        ("retry", DeliveryStatus::Retry),
        ("faild", DeliveryStatus::Faild),
        ("failed", DeliveryStatus::Faild),
        ("1", DeliveryStatus::Sent),
        ("2", DeliveryStatus::Retry),
        ("3", DeliveryStatus::Faild),
    ] {
        let cfg = load(&MINIMAL.replace("  token: tok\n", &format!("  token: tok\n  status: {text}\n"))).unwrap();
        let SourceConfig::MailDelivery(src) = cfg.source else {
            panic!("a mail_delivery source")
        };
        assert_eq!(src.status, Some(want), "{text}");
    }
    assert_eq!(
        (
            DeliveryStatus::Sent.code(),
            DeliveryStatus::Retry.code(),
            DeliveryStatus::Faild.code()
        ),
        (1, 2, 3)
    );
    assert_eq!(DeliveryStatus::Faild.as_str(), "faild");
    assert_eq!(
        error(&MINIMAL.replace("  token: tok\n", "  token: tok\n  status: bounced\n")),
        "pipelines/mail.yaml:5:11: source.status: unknown status `bounced`; expected one of: sent, retry, faild (or 1, 2, 3)"
    );
}

#[test]
fn typo_at_top_level() {
    assert_eq!(
        error(&minimal_with("setle: 1h\n")),
        "pipelines/mail.yaml:8:1: unknown key `setle` at the top level; expected one of: name, source, start, settle, \
         on_bad_record, on_unknown_field, transforms, sink, runtime, http"
    );
}

#[test]
fn typo_inside_source_points_at_the_key() {
    let text = FULL.replace("  token: ${MAIL", "  tokn: ${MAIL");
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:5:3: unknown key `tokn` in `source` (mail_delivery); expected one of: url, token, status, \
         max_items, parallel_windows"
    );
}

#[test]
fn typo_inside_sink_points_at_the_key() {
    let text = FULL.replace("  max_open_files: 8", "  max_opne_files: 8");
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:26:3: unknown key `max_opne_files` in `sink` (parquet); expected one of: url, \
         compression_level, row_group_rows, statistics, dictionary, plain_columns, max_file_size, max_open_files, s3"
    );
}

#[test]
fn typo_inside_runtime_and_http() {
    assert_eq!(
        error(&minimal_with("runtime:\n  workers: 2\n")),
        "pipelines/mail.yaml:9:3: unknown key `workers` in `runtime`; expected one of: channel_capacity, \
         decode_workers, unit_concurrency, batch_size"
    );
    assert_eq!(
        error(&minimal_with("http:\n  max_attempts: 3\n  timeout: 2s\n")),
        "pipelines/mail.yaml:10:3: unknown key `timeout` in `http`; expected one of: connect_timeout, read_timeout, \
         max_attempts, max_retry_time, backoff_base, backoff_max"
    );
}

#[test]
fn typo_inside_a_transform() {
    let text = FULL.replace(
        "{columns: [mail_from, recipient], key:",
        "{columns: [mail_from, recipient], kye:",
    );
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:15:45: unknown key `kye` in `transforms[3].hash`; expected one of: columns, key"
    );
    let text = FULL.replace("{column: result, op:", "{colum: result, op:");
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:16:14: unknown key `colum` in `transforms[4].filter`; expected one of: column, op, value"
    );
    let text = FULL.replace("  - drop: [detail]", "  - dorp: [detail]");
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:13:5: unknown transform `dorp` in `transforms[1]`; expected one of: select, drop, \
         rename, hash, filter"
    );
}

#[test]
fn missing_required_keys() {
    assert_eq!(
        error("source:\n  type: mail_delivery\n  url: https://x.example\n  token: t\n"),
        "pipelines/mail.yaml:1:1: missing required key `sink` at the top level"
    );
    assert_eq!(
        error(&MINIMAL.replace("  token: tok\n", "")),
        "pipelines/mail.yaml:2:3: missing required key `token` in `source`"
    );
    assert_eq!(
        error(""),
        "pipelines/mail.yaml:1:1: missing required key `source` at the top level"
    );
}

#[test]
fn missing_variable_points_at_the_dollar() {
    let errors = load_str(Path::new(FILE), FULL, &|k| {
        (k != "MAIL_DELIVERY_TOKEN").then(|| env(k)).flatten()
    })
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "pipelines/mail.yaml:5:10: environment variable MAIL_DELIVERY_TOKEN is not set (used in ${MAIL_DELIVERY_TOKEN})"
    );
}

#[test]
fn every_missing_variable_is_reported() {
    let errors = load_str(Path::new(FILE), FULL, &|_| None).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "pipelines/mail.yaml:4:8: environment variable MAIL_DELIVERY_URL is not set (used in ${MAIL_DELIVERY_URL})\n\
         pipelines/mail.yaml:5:10: environment variable MAIL_DELIVERY_TOKEN is not set (used in ${MAIL_DELIVERY_TOKEN})\n\
         pipelines/mail.yaml:15:50: environment variable ETL_HASH_KEY is not set (used in ${ETL_HASH_KEY})"
    );
    let missing = missing_vars(Path::new(FILE), FULL, &|_| None);
    assert_eq!(missing, errors.0);
    assert!(missing_vars(Path::new(FILE), FULL, &env).is_empty());
}

#[test]
fn default_and_escape() {
    let cfg = load_str(Path::new(FILE), FULL, &|k| {
        if k == "ETL_OUT" {
            Some("s3://bucket/etl".into())
        } else {
            env(k)
        }
    })
    .unwrap();
    let SinkConfig::Parquet(sink) = &cfg.sink else {
        panic!("a parquet sink")
    };
    assert_eq!(sink.url, "s3://bucket/etl/mail_delivery");

    let text = MINIMAL.replace("./data/mail", "./data/$${literal}");
    let cfg = load(&text).unwrap();
    let SinkConfig::Parquet(sink) = &cfg.sink else {
        panic!("a parquet sink")
    };
    assert_eq!(sink.url, "./data/${literal}");
}

#[test]
fn positions_after_a_substitution_point_into_the_original_line() {
    // `${ETL_HASH_KEY}` is longer than its value: the typo after it is still reported at its
    // column in the file as written.
    let text = FULL.replace("key: ${ETL_HASH_KEY}}", "key: ${ETL_HASH_KEY}, salt: x}");
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:15:67: unknown key `salt` in `transforms[3].hash`; expected one of: columns, key"
    );
}

#[test]
fn type_must_come_first() {
    let text = MINIMAL.replace(
        "  type: mail_delivery\n  url: https://api.example.com/deliverylog\n",
        "  url: https://api.example.com/deliverylog\n  type: mail_delivery\n",
    );
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:2:3: `type` must be the first key of `source` (found `url`)"
    );
    let text = MINIMAL.replace(
        "sink:\n  type: parquet\n  url: ./data/mail\n",
        "sink:\n  url: ./data/mail\n  type: parquet\n",
    );
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:6:3: `type` must be the first key of `sink` (found `url`)"
    );
    assert_eq!(
        error(&minimal_with("").replace("sink:\n  type: parquet\n  url: ./data/mail\n", "sink: {}\n")),
        "pipelines/mail.yaml:5:7: `sink` needs a `type` (one of: parquet, jsonl)"
    );
}

#[test]
fn unknown_type_lists_the_known_ones() {
    assert_eq!(
        error(&MINIMAL.replace("type: mail_delivery", "type: mail_trekking")),
        "pipelines/mail.yaml:2:9: source.type: unknown source type `mail_trekking`; known types: mail_delivery, mail_tracking, cdn_logs, audit_log, webdav_logs"
    );
    assert_eq!(
        error(&MINIMAL.replace("type: parquet", "type: csv")),
        "pipelines/mail.yaml:6:9: sink.type: unknown sink type `csv`; known types: parquet, jsonl"
    );
}

#[test]
fn numbers_out_of_range_point_at_the_value() {
    let with_source_line = |line: &str| MINIMAL.replace("  token: tok\n", &format!("  token: tok\n  {line}\n"));
    assert_eq!(
        error(&with_source_line("max_items: 0")),
        "pipelines/mail.yaml:5:14: source.max_items: must be between 1 and 10000 (got 0)"
    );
    assert_eq!(
        error(&with_source_line("max_items: 10001")),
        "pipelines/mail.yaml:5:14: source.max_items: must be between 1 and 10000 (got 10001)"
    );
    assert!(error(&with_source_line("max_items: many")).starts_with(
        "pipelines/mail.yaml:5:14: source.max_items: invalid type: string \"many\", expected an integer between 1 and 10000"
    ));
    assert_eq!(
        error(&minimal_with("runtime:\n  decode_workers: 0\n")),
        "pipelines/mail.yaml:9:19: runtime.decode_workers: must be at least 1 (got 0)"
    );
    assert_eq!(
        error(&minimal_with("http:\n  max_attempts: 0\n")),
        "pipelines/mail.yaml:9:17: http.max_attempts: must be at least 1 (got 0)"
    );
    assert_eq!(
        error(&format!("{MINIMAL}  compression_level: 23\n")),
        "pipelines/mail.yaml:8:22: sink.compression_level: must be between 1 and 22 (got 23)"
    );
    assert_eq!(
        error(&format!("{MINIMAL}  statistics: rows\n")),
        "pipelines/mail.yaml:8:15: unknown value `rows` for `sink.statistics`; expected one of: none, chunk, page"
    );
    assert_eq!(
        error(&format!("{MINIMAL}  plain_columns: [id, id]\n")),
        "pipelines/mail.yaml:8:23: sink.plain_columns[1]: duplicate column `id`"
    );
    assert_eq!(
        error(&format!("{MINIMAL}  max_file_size: 0\n")),
        "pipelines/mail.yaml:8:18: sink.max_file_size: must be larger than zero"
    );
    assert_eq!(
        error(&format!("{MINIMAL}  max_file_size: 12 parsecs\n")),
        "pipelines/mail.yaml:8:18: sink.max_file_size: invalid size `12 parsecs`: unknown unit `parsecs`; use B, KB, \
         MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
    );
}

#[test]
fn jsonl_sink_writes_to_stdout_by_default_or_to_a_local_file() {
    let with_sink = |sink: &str| MINIMAL.replace("sink:\n  type: parquet\n  url: ./data/mail\n", sink);
    for (sink, url) in [
        ("sink:\n  type: jsonl\n", None),
        ("sink: {type: jsonl}\n", None),
        ("sink:\n  type: jsonl\n  url: '-'\n", None),
        ("sink:\n  type: jsonl\n  url: ./out.jsonl\n", Some("./out.jsonl")),
        (
            "sink:\n  type: jsonl\n  url: file:///tmp/out.jsonl\n",
            Some("file:///tmp/out.jsonl"),
        ),
    ] {
        let cfg = load(&with_sink(sink)).unwrap();
        assert_eq!(cfg.sink.kind(), "jsonl");
        assert_eq!(
            cfg.sink,
            SinkConfig::Jsonl(JsonlSinkConfig {
                url: url.map(String::from)
            }),
            "{sink}"
        );
    }
    assert_eq!(
        error(&with_sink("sink:\n  type: jsonl\n  url: s3://bucket/x.jsonl\n")),
        "pipelines/mail.yaml:7:8: sink.url: unsupported URL scheme `s3`; the jsonl sink writes to `-` (standard \
         output), a local path or a file:// URL"
    );
    assert_eq!(
        error(&with_sink("sink:\n  type: jsonl\n  url: file://\n")),
        "pipelines/mail.yaml:7:8: sink.url: `file://` names no file"
    );
    assert_eq!(
        error(&with_sink("sink:\n  type: jsonl\n  url: ''\n")),
        "pipelines/mail.yaml:7:8: sink.url: must not be empty; expected `-` (standard output), a local path or a \
         file:// URL"
    );
    // Parquet keys mean nothing here: a typo-like mistake is reported, not ignored.
    assert_eq!(
        error(&with_sink("sink:\n  type: jsonl\n  compression_level: 3\n")),
        "pipelines/mail.yaml:7:3: unknown key `compression_level` in `sink` (jsonl); expected one of: url"
    );
}

#[test]
fn urls_are_checked() {
    let with_url = |url: &str| MINIMAL.replace("https://api.example.com/deliverylog", url);
    assert_eq!(
        error(&with_url("ftp://api.example.com/x")),
        "pipelines/mail.yaml:3:8: source.url: `ftp://api.example.com/x` is not an http:// or https:// URL"
    );
    assert_eq!(
        error(&with_url("api.example.com/x")),
        "pipelines/mail.yaml:3:8: source.url: invalid URL `api.example.com/x`: relative URL without a base"
    );
    assert_eq!(
        error(&with_url("\"\"")),
        "pipelines/mail.yaml:3:8: source.url: must not be empty; expected an http:// or https:// URL"
    );
    let with_sink = |url: &str| MINIMAL.replace("./data/mail", url);
    assert_eq!(
        error(&with_sink("gs://bucket/x")),
        "pipelines/mail.yaml:7:8: sink.url: unsupported URL scheme `gs`; expected a local path, file:// or s3:// URL"
    );
    assert_eq!(
        error(&with_sink("s3:///x")),
        "pipelines/mail.yaml:7:8: sink.url: `s3:///x` names no bucket; expected s3://bucket/prefix"
    );
    for ok in [
        "/var/lib/etl/mail",
        "file:///var/lib/etl",
        "s3://bucket/prefix/mail",
        "data",
    ] {
        let cfg = load(&with_sink(ok)).unwrap();
        let SinkConfig::Parquet(sink) = cfg.sink else {
            panic!("a parquet sink")
        };
        assert_eq!(sink.url, ok);
    }
}

#[test]
fn empty_secrets_are_rejected_without_printing_them() {
    let empty_token = load_str(
        Path::new(FILE),
        MINIMAL.replace("token: tok", "token: \"${T}\"").as_str(),
        &|_| Some(String::new()),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        empty_token,
        "pipelines/mail.yaml:4:10: source.token: must not be empty (is the environment variable set to an empty value?)"
    );
    let text = minimal_with("transforms:\n  - hash: {columns: [a], key: \"\"}\n");
    assert_eq!(
        error(&text),
        "pipelines/mail.yaml:9:31: transforms[0].hash.key: must not be empty (is the environment variable set to an \
         empty value?)"
    );
}

#[test]
fn column_lists_are_checked() {
    assert_eq!(
        error(&minimal_with("transforms:\n  - select: []\n")),
        "pipelines/mail.yaml:9:13: transforms[0].select: the list of columns must not be empty"
    );
    assert_eq!(
        error(&minimal_with("transforms:\n  - drop: [a, b, a]\n")),
        "pipelines/mail.yaml:9:18: transforms[0].drop[2]: duplicate column `a`"
    );
    assert_eq!(
        error(&minimal_with("transforms:\n  - hash: {columns: [], key: k}\n")),
        "pipelines/mail.yaml:9:21: transforms[0].hash.columns: the list of columns must not be empty"
    );
}

#[test]
fn rename_targets_must_be_distinct() {
    let cfg = load(&minimal_with("transforms:\n  - rename: {a: x, b: y}\n")).unwrap();
    assert_eq!(
        cfg.transforms,
        vec![TransformConfig::Rename(vec![
            ("a".into(), "x".into()),
            ("b".into(), "y".into())
        ])]
    );
    assert_eq!(
        error(&minimal_with("transforms:\n  - rename:\n      a: x\n      b: x\n")),
        "pipelines/mail.yaml:11:10: transforms[0].rename.b: duplicate rename target `x`"
    );
    assert_eq!(
        error(&minimal_with("transforms:\n  - rename: {}\n")),
        "pipelines/mail.yaml:9:13: transforms[0].rename: needs at least one `old_name: new_name` pair"
    );
}

#[test]
fn filters_check_op_and_value_together() {
    let filter = |body: &str| minimal_with(&format!("transforms:\n  - filter: {{{body}}}\n"));
    let ok = |body: &str| {
        let cfg = load(&filter(body)).unwrap();
        match cfg.transforms.into_iter().next() {
            Some(TransformConfig::Filter { column, op, value }) => (column, op, value),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        ok("column: n, op: '>=', value: 3"),
        ("n".into(), FilterOp::Ge, Literal::Int(3))
    );
    assert_eq!(
        ok("column: n, op: lt, value: 2.5"),
        ("n".into(), FilterOp::Lt, Literal::Float(2.5))
    );
    assert_eq!(
        ok("column: f, op: '!=', value: true"),
        ("f".into(), FilterOp::Ne, Literal::Bool(true))
    );
    assert_eq!(
        ok("column: s, op: '=', value: '1'"),
        ("s".into(), FilterOp::Eq, Literal::Str("1".into()))
    );
    assert_eq!(
        ok("column: r, op: in, value: [sent, 2]"),
        (
            "r".into(),
            FilterOp::In,
            Literal::List(vec![Literal::Str("sent".into()), Literal::Int(2)])
        )
    );
    // `value` before `op` is checked when `op` arrives.
    assert_eq!(ok("value: [a], op: in, column: r").1, FilterOp::In);

    assert_eq!(
        error(&filter("column: r, op: in, value: sent")),
        "pipelines/mail.yaml:9:40: transforms[0].filter.value: `in` needs a list of values, e.g. [sent, retry]"
    );
    assert_eq!(
        error(&filter("column: r, op: '=', value: [a, b]")),
        "pipelines/mail.yaml:9:41: transforms[0].filter.value: `=` compares with one value, but this is a list; use \
         `op: in` for a list"
    );
    assert_eq!(
        error(&filter("value: sent, op: in, column: r")),
        "pipelines/mail.yaml:9:31: transforms[0].filter.op: `in` needs a list `value`, e.g. [sent, retry]"
    );
    assert_eq!(
        error(&filter("column: r, op: in, value: []")),
        "pipelines/mail.yaml:9:40: transforms[0].filter.value: the list of `in` values must not be empty"
    );
    assert_eq!(
        error(&filter("column: r, op: like, value: x")),
        "pipelines/mail.yaml:9:29: transforms[0].filter.op: unknown filter op `like`; expected one of: =, !=, <, <=, \
         >, >=, in"
    );
    assert_eq!(
        error(&filter("column: r, value: x")),
        "pipelines/mail.yaml:9:13: missing required key `op` in `transforms[0].filter`"
    );
    assert_eq!(
        error(&filter("column: '', op: '=', value: x")),
        "pipelines/mail.yaml:9:22: transforms[0].filter.column: must not be empty"
    );
}

#[test]
fn durations_and_times_in_the_file() {
    let cfg = load(&minimal_with("start: 2025-09-11\nsettle: 90m\n")).unwrap();
    assert_eq!(cfg.start, TimeSpec::parse("2025-09-11T00:00:00Z").unwrap());
    assert_eq!(cfg.settle, Duration::from_secs(5400));
    let cfg = load(&minimal_with("start: 2025-09-11T06:00:00+09:00\nsettle: 0s\n")).unwrap();
    assert_eq!(cfg.start, TimeSpec::parse("2025-09-10T21:00:00Z").unwrap());
    assert_eq!(cfg.settle, Duration::ZERO);
    assert_eq!(
        error(&minimal_with("settle: 10\n")),
        "pipelines/mail.yaml:8:9: settle: a bare number has no unit; write e.g. `10s` or `10m`"
    );
    assert_eq!(
        error(&minimal_with("start: 7d\n")),
        "pipelines/mail.yaml:8:8: start: invalid time `7d`: an offset needs a sign; write `-7d` for 7d ago"
    );
    assert_eq!(
        error(&minimal_with("http:\n  read_timeout: 0s\n")),
        "pipelines/mail.yaml:9:17: http.read_timeout: must be longer than zero (got `0s`)"
    );
    assert_eq!(
        error(&minimal_with("http:\n  backoff_base: 1m\n  backoff_max: 10s\n")),
        "pipelines/mail.yaml:9:3: http: backoff_base (1m) must not be longer than backoff_max (10s)"
    );
}

#[test]
fn bad_record_policy_and_name() {
    assert_eq!(
        error(&minimal_with("on_bad_record: ignore\n")),
        "pipelines/mail.yaml:8:16: unknown value `ignore` for `on_bad_record`; expected one of: fail, skip"
    );
    assert_eq!(
        error(&format!("name: mail delivery\n{MINIMAL}")),
        "pipelines/mail.yaml:1:7: name: invalid pipeline name `mail delivery`: use letters, digits, `_`, `-` and `.`, \
         starting with a letter or digit"
    );
    let errors = load_str(Path::new("pipelines/my mail.yaml"), MINIMAL, &env).unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with("pipelines/my mail.yaml:1:1: invalid pipeline name `my mail`"),
        "{errors}"
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let text = MINIMAL.replace("  token: tok\n", "  token: tok\n    bad: indent\n");
    let msg = error(&text);
    assert!(msg.starts_with("pipelines/mail.yaml:5:"), "{msg}");
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("etl-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("daily.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    let cfg = crate::load(&path).unwrap();
    assert_eq!(cfg.name, "daily");
    assert_eq!(cfg.path, path);
    std::fs::remove_dir_all(&dir).unwrap();
    let err = crate::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: cannot read the pipeline file: ", path.display())),
        "{err}"
    );
}

#[test]
fn a_transform_item_has_one_key() {
    assert_eq!(
        error(&minimal_with("transforms:\n  - select: [a]\n    drop: [b]\n")),
        "pipelines/mail.yaml:10:5: transforms[0]: a transform item has exactly one key, but `drop` follows `select`; \
         start a new item with `- `"
    );
    assert_eq!(
        error(&minimal_with("transforms:\n  - {}\n")),
        "pipelines/mail.yaml:9:5: transforms[0]: a transform needs one key naming it: one of select, drop, rename, \
         hash, filter"
    );
}

#[test]
fn shape_errors_name_what_was_expected() {
    assert_eq!(
        error(&MINIMAL.replace("  token: tok\n", "  token: tok\n    bad: indent\n")),
        "pipelines/mail.yaml:5:8: mapping values are not allowed in this context"
    );
    assert_eq!(
        error(&MINIMAL.replace("  token: tok\n", "  token: [tok]\n")),
        "pipelines/mail.yaml:4:10: source.token: invalid type: sequence, expected a non-empty string (a secret)"
    );
    assert_eq!(
        error(&minimal_with("transforms:\n  - select\n")),
        "pipelines/mail.yaml:9:5: transforms[0]: invalid type: string \"select\", expected a mapping with one key, the \
         transform: one of select, drop, rename, hash, filter"
    );
    assert_eq!(
        error("- a\n- b\n"),
        "pipelines/mail.yaml:1:1: invalid type: sequence, expected a mapping of pipeline keys (name, source, sink, ...)"
    );
    assert_eq!(
        error(&minimal_with("runtime: 4\n")),
        "pipelines/mail.yaml:8:10: runtime: invalid type: integer `4`, expected the runtime keys (channel_capacity, \
         decode_workers, ...)"
    );
    assert_eq!(
        error(&minimal_with("---\nfoo: 1\n")),
        "pipelines/mail.yaml:1:1: deserializing from YAML containing more than one document is not supported"
    );
}

#[test]
fn mail_tracking_source_with_defaults_and_filters() {
    let text = "source:\n  type: mail_tracking\n  url: https://tm.example.com\n  user: u\n  api_key: k\nsink:\n  type: parquet\n  url: /tmp/x\n";
    let cfg = load_str(Path::new("t.yaml"), text, &|_| None).unwrap();
    let SourceConfig::MailTracking(src) = &cfg.source else {
        panic!("a mail_tracking source")
    };
    assert_eq!(
        src.traffic_types,
        [crate::TrafficType::Accepted, crate::TrafficType::Blocked]
    );
    assert_eq!(src.limit, 500);
    assert!(src.domains.is_empty() && src.direction.is_none());
    assert_eq!(cfg.on_unknown_field, etl_core::UnknownFieldPolicy::Ignore);
    assert_eq!(cfg.source.secrets(), [Secret::new("k")]);

    let text = "source:\n  type: mail_tracking\n  url: https://tm.example.com\n  user: u\n  api_key: k\n  traffic_types: [blocked_traffic]\n  domains: [a.example]\n  direction: in\n  limit: 50\non_unknown_field: fail\nsink:\n  type: parquet\n  url: /tmp/x\n";
    let cfg = load_str(Path::new("t.yaml"), text, &|_| None).unwrap();
    let SourceConfig::MailTracking(src) = &cfg.source else {
        panic!("a mail_tracking source")
    };
    assert_eq!(src.traffic_types, [crate::TrafficType::Blocked]);
    assert_eq!(src.domains, ["a.example"]);
    assert_eq!(src.direction, Some(crate::Direction::In));
    assert_eq!(src.limit, 50);
    assert_eq!(cfg.on_unknown_field, etl_core::UnknownFieldPolicy::Fail);

    let bad = "source:\n  type: mail_tracking\n  url: https://tm.example.com\n  user: u\n  api_key: k\n  traffic_types: [all_traffic]\nsink:\n  type: parquet\n  url: /tmp/x\n";
    let err = load_str(Path::new("t.yaml"), bad, &|_| None).unwrap_err().to_string();
    assert!(err.starts_with("t.yaml:6:19:") && err.contains("all_traffic"), "{err}");
}

#[test]
fn cdn_logs_source_with_defaults_and_env_lists() {
    let env = |name: &str| match name {
        "CDN_LOGS_DOMAINS" => Some("live.example.com, VOD.example.com".to_string()),
        "CDN_LOGS_DOWNLOAD_HOSTS" => Some(String::new()),
        _ => None,
    };
    let text = "source:\n  type: cdn_logs\n  url: http://127.0.0.1:9\n  domains: ${CDN_LOGS_DOMAINS}\n  download_hosts: ${CDN_LOGS_DOWNLOAD_HOSTS:-}\nsink:\n  type: parquet\n  url: /tmp/x\n";
    let cfg = load_str(Path::new("t.yaml"), text, &env).unwrap();
    let SourceConfig::CdnLogs(src) = &cfg.source else {
        panic!("a cdn_logs source")
    };
    assert_eq!(src.domains, ["live.example.com", "vod.example.com"]);
    assert!(src.download_hosts.is_empty() && src.headers.is_empty());
    assert_eq!((src.rate_per_minute, src.rate_per_hour), (100, 1000));
    assert_eq!(src.download_concurrency, 8);
    assert_eq!(src.max_line_bytes.0, 64 << 10);

    let text = "source:\n  type: cdn_logs\n  url: https://lls.example.com\n  domains: [a.example.com]\n  download_hosts: [cdn-dl.example.net, '*.cdn.example.com']\n  headers:\n    X-Api-Key: s3cr3t\n  rate_per_minute: 10\n  rate_per_hour: 50\n  download_concurrency: 2\n  max_line_bytes: 1KiB\nsink:\n  type: parquet\n  url: /tmp/x\n";
    let cfg = load_str(Path::new("t.yaml"), text, &|_| None).unwrap();
    let SourceConfig::CdnLogs(src) = &cfg.source else {
        panic!("a cdn_logs source")
    };
    assert_eq!(src.download_hosts, ["cdn-dl.example.net", "*.cdn.example.com"]);
    assert_eq!(src.headers, [("X-Api-Key".to_string(), Secret::new("s3cr3t"))]);
    assert_eq!(cfg.source.secrets(), [Secret::new("s3cr3t")]);
    assert_eq!(
        (src.rate_per_minute, src.rate_per_hour, src.download_concurrency),
        (10, 50, 2)
    );
    assert_eq!(src.max_line_bytes.0, 1024);

    for (bad, want) in [
        (
            "  domains: ''\n",
            "t.yaml:4:12: source.domains: the list of domains must not be empty",
        ),
        ("  domains: [a.example.com, a.example.com]\n", "listed twice"),
        ("  domains: 'a.example.com/x'\n", "is not a domain name"),
        (
            "  domains: [a.example.com]\n  rate_per_minute: 101\n",
            "must be between 1 and 100",
        ),
        (
            "  domains: [a.example.com]\n  headers:\n    'Bad Header': x\n",
            "not a valid HTTP header name",
        ),
    ] {
        let text = format!(
            "source:\n  type: cdn_logs\n  url: http://127.0.0.1:9\n{bad}sink:\n  type: parquet\n  url: /tmp/x\n"
        );
        let err = load_str(Path::new("t.yaml"), &text, &|_| None).unwrap_err().to_string();
        assert!(err.contains(want), "{bad}: {err}");
    }
}

#[test]
fn audit_log_source_with_defaults() {
    let text = "source:\n  type: audit_log\n  url: http://127.0.0.1:9/services/V201812/AuditLogService\n  license: L\n  api_account_id: A\n  api_account_password: P\n  account_id: '100000001'\nsink:\n  type: parquet\n  url: /tmp/x\n";
    let cfg = load_str(Path::new("t.yaml"), text, &|_| None).unwrap();
    let SourceConfig::AuditLog(src) = &cfg.source else {
        panic!("an audit_log source")
    };
    assert_eq!((src.lang.as_str(), src.utc_offset_minutes), ("JA", 540));
    assert_eq!(src.poll_interval, std::time::Duration::from_secs(2));
    assert_eq!(src.job_attempts, 3);
    assert_eq!(cfg.source.secrets().len(), 3);
    let bad = text.replace("account_id: '100000001'\n", "account_id: '1'\n  utc_offset: '9'\n");
    let err = load_str(Path::new("t.yaml"), &bad, &|_| None).unwrap_err().to_string();
    assert!(err.contains("invalid UTC offset `9`"), "{err}");
    let en = text.replace(
        "account_id: '100000001'\n",
        "account_id: '1'\n  lang: en\n  utc_offset: '-03:30'\n",
    );
    let cfg = load_str(Path::new("t.yaml"), &en, &|_| None).unwrap();
    let SourceConfig::AuditLog(src) = &cfg.source else {
        panic!("an audit_log source")
    };
    assert_eq!((src.lang.as_str(), src.utc_offset_minutes), ("EN", -210));
}

#[test]
fn s3_connection_keys_are_read_and_secrets_must_be_references() {
    let text = MINIMAL.replace(
        "  url: ./data/mail\n",
        "  url: s3://logs/etl/mail\n  s3:\n    endpoint: http://127.0.0.1:9000\n    region: eu-west-1\n    access_key_id: AKIDEXAMPLE\n    secret_access_key: ${MAIL_DELIVERY_TOKEN}\n    allow_http: true\n    path_style: true\n",
    );
    let config = load(&text).unwrap();
    let SinkConfig::Parquet(sink) = &config.sink else {
        panic!("a parquet sink")
    };
    assert_eq!(sink.url, "s3://logs/etl/mail");
    assert_eq!(sink.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(sink.s3.region.as_deref(), Some("eu-west-1"));
    assert_eq!(sink.s3.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
    assert_eq!(
        sink.s3.secret_access_key.as_ref().map(|s| s.expose()),
        Some("MIIFvgY-secret")
    );
    assert_eq!(sink.s3.allow_http, Some(true));
    assert_eq!(sink.s3.secrets().len(), 1);

    // Nothing set: everything comes from the AWS_* environment later.
    let SinkConfig::Parquet(plain) = &load(MINIMAL).unwrap().sink else {
        panic!("a parquet sink")
    };
    assert_eq!(plain.s3, S3Config::default());

    for literal in ["hunter2", "${MAIL_DELIVERY_TOKEN:-hunter2}"] {
        let text = MINIMAL.replace(
            "  url: ./data/mail\n",
            &format!("  url: s3://logs/mail\n  s3:\n    secret_access_key: {literal}\n"),
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains("mail.yaml:9:5: sink.s3.secret_access_key is a secret: write it as ${VAR}"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
    let bad = MINIMAL.replace(
        "  url: ./data/mail\n",
        "  url: s3://logs/mail\n  s3:\n    endpoint: 127.0.0.1:9000\n",
    );
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    let unknown = MINIMAL.replace("  url: ./data/mail\n", "  url: s3://logs/mail\n  s3:\n    bucket: x\n");
    let err = load(&unknown).unwrap_err().to_string();
    assert!(err.contains("bucket"), "{err}");
}
