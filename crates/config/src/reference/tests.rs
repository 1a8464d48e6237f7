//! The reference is what the code does: regenerated from the doc comments and compared with the
//! checked-in files, its defaults compared with the values the loader fills in, and its
//! renderings checked for what an operator looks for.

use std::collections::BTreeMap;
use std::path::Path;

use super::generate::{self, CONFIG_MD, GENERATED_RS};
use super::*;
use crate::de::Tagged;
use crate::{PipelineConfig, SinkConfig, SourceConfig};

/// `UPDATE_CONFIG_REFERENCE=1` rewrites the checked-in files instead of failing; the test then
/// still fails once, because this process was compiled with the old `generated.rs`.
#[test]
fn reference_is_up_to_date() {
    let extracted = generate::extract().unwrap_or_else(|e| panic!("cannot build the config reference: {e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let update = std::env::var("UPDATE_CONFIG_REFERENCE").is_ok_and(|v| v == "1");
    let (mut stale, mut rewritten) = (Vec::new(), Vec::new());
    for (rel, want) in [
        (GENERATED_RS, generate::render_rust(&extracted)),
        (CONFIG_MD, render_markdown(&extracted)),
    ] {
        match generate::sync(&root, rel, &want, update) {
            Ok(true) => rewritten.push(rel),
            Ok(false) => {}
            Err(e) => stale.push(e),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrun `UPDATE_CONFIG_REFERENCE=1 cargo test -p etl-config reference`",
        stale.join("\n")
    );
    assert!(
        rewritten.is_empty(),
        "rewrote {}; run `cargo test -p etl-config reference` again to check them",
        rewritten.join(" and ")
    );
    assert_eq!(
        REFERENCE, extracted,
        "the compiled reference differs from the doc comments"
    );
}

#[test]
fn reference_lists_every_type_the_loader_accepts() {
    let sources: Vec<&str> = REFERENCE.sources().map(|s| s.kind).collect();
    assert_eq!(sources, SourceConfig::TYPES);
    assert_eq!(sources, <SourceConfig as Tagged>::KINDS);
    let sinks: Vec<&str> = REFERENCE.sinks().map(|s| s.kind).collect();
    assert_eq!(sinks, <SinkConfig as Tagged>::KINDS);
    let keys: Vec<&str> = REFERENCE.chapters.iter().map(|c| c.key).collect();
    assert_eq!(keys, ["", "source", "transforms", "sink", "runtime", "http"]);
}

/// Values for the required keys, so that a minimal file can be written for every section. A new
/// required key needs one here (the test says which).
fn sample(section: &str, key: &str) -> Option<&'static str> {
    Some(match (section, key) {
        ("sink/parquet", "url") => "./data",
        (_, "url") => "https://api.example.com/",
        (_, "domains") => "live.example.com",
        (_, "user" | "account_id") => "100000001",
        (_, "token" | "api_key" | "license" | "api_account_id" | "api_account_password") => "s3cret",
        _ => return None,
    })
}

fn section_id(s: &Section) -> String {
    if s.kind.is_empty() {
        s.path.to_string()
    } else {
        format!("{}/{}", s.path, s.kind)
    }
}

/// `path:` with `type: kind` and a sample value for each required key.
fn minimal_section(s: &Section) -> String {
    let mut out = format!("{}:\n  type: {}\n", s.path, s.kind);
    for key in s.keys.iter().filter(|k| k.required) {
        let value = sample(&section_id(s), key.name).unwrap_or_else(|| {
            panic!(
                "no sample value for the required key `{}` of {}",
                key.name,
                section_id(s)
            )
        });
        out.push_str(&format!("  {}: {value}\n", key.name));
    }
    out
}

/// A minimal pipeline whose source or sink is the typed section `s` (the first of each
/// otherwise), with every other key left to its default.
fn minimal_pipeline(s: Option<&Section>) -> PipelineConfig {
    let source = s.filter(|s| s.path == "source").or(REFERENCE.sources().next()).unwrap();
    let sink = s.filter(|s| s.path == "sink").or(REFERENCE.sinks().next()).unwrap();
    let text = format!("{}{}", minimal_section(source), minimal_section(sink));
    crate::load_str(Path::new("minimal.yaml"), &text, &|_| None)
        .unwrap_or_else(|e| panic!("the minimal file\n{text}does not load: {e}"))
}

type Get = fn(&PipelineConfig) -> Option<String>;

macro_rules! source {
    ($c:expr, $variant:ident) => {
        match &$c.source {
            SourceConfig::$variant(s) => s,
            other => panic!("loaded a {} source", other.kind()),
        }
    };
}

macro_rules! sink {
    ($c:expr, $variant:ident) => {
        match &$c.sink {
            SinkConfig::$variant(s) => s,
            other => panic!("loaded a {} sink", other.kind()),
        }
    };
}

fn dur(d: std::time::Duration) -> Option<String> {
    Some(crate::duration::format(d))
}

/// What the loader fills in for each key with a documented default, as the reference writes it.
/// `None` is "nothing" (an absent `Option`, an empty list): the reference describes what that
/// means in words (`AWS_REGION`, else `us-east-1`), which the sink or source applies.
fn loaded_defaults() -> BTreeMap<&'static str, Get> {
    let entries: Vec<(&str, Get)> = vec![
        ("name", |c| (c.name != "minimal").then(|| c.name.clone())),
        ("start", |c| Some(c.start.to_string())),
        ("settle", |c| dur(c.settle)),
        ("on_bad_record", |c| {
            Some(format!("{:?}", c.on_bad_record).to_lowercase())
        }),
        ("on_unknown_field", |c| {
            Some(format!("{:?}", c.on_unknown_field).to_lowercase())
        }),
        ("transforms", |c| {
            (!c.transforms.is_empty()).then(|| format!("{:?}", c.transforms))
        }),
        ("source/mail_delivery.status", |c| {
            source!(c, MailDelivery).status.map(|s| s.to_string())
        }),
        ("source/mail_delivery.max_items", |c| {
            Some(source!(c, MailDelivery).max_items.to_string())
        }),
        ("source/mail_delivery.parallel_windows", |c| {
            Some(source!(c, MailDelivery).parallel_windows.to_string())
        }),
        ("source/mail_tracking.traffic_types", |c| {
            let types: Vec<&str> = source!(c, MailTracking)
                .traffic_types
                .iter()
                .map(|t| t.as_str())
                .collect();
            Some(format!("[{}]", types.join(", ")))
        }),
        ("source/mail_tracking.domains", |c| {
            let d = &source!(c, MailTracking).domains;
            (!d.is_empty()).then(|| d.join(", "))
        }),
        ("source/mail_tracking.direction", |c| {
            source!(c, MailTracking).direction.map(|d| d.as_str().into())
        }),
        ("source/mail_tracking.limit", |c| {
            Some(source!(c, MailTracking).limit.to_string())
        }),
        ("source/mail_tracking.parallel_windows", |c| {
            Some(source!(c, MailTracking).parallel_windows.to_string())
        }),
        ("source/cdn_logs.rate_per_minute", |c| {
            Some(source!(c, CdnLogs).rate_per_minute.to_string())
        }),
        ("source/cdn_logs.rate_per_hour", |c| {
            Some(source!(c, CdnLogs).rate_per_hour.to_string())
        }),
        ("source/cdn_logs.download_concurrency", |c| {
            Some(source!(c, CdnLogs).download_concurrency.to_string())
        }),
        ("source/cdn_logs.max_line_bytes", |c| {
            Some(source!(c, CdnLogs).max_line_bytes.to_string())
        }),
        ("source/audit_log.lang", |c| Some(source!(c, AuditLog).lang.clone())),
        ("source/audit_log.utc_offset", |c| {
            let m = source!(c, AuditLog).utc_offset_minutes;
            let sign = if m < 0 { '-' } else { '+' };
            Some(format!("{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60))
        }),
        ("source/audit_log.poll_interval", |c| {
            dur(source!(c, AuditLog).poll_interval)
        }),
        ("source/audit_log.poll_interval_max", |c| {
            dur(source!(c, AuditLog).poll_interval_max)
        }),
        (
            "source/audit_log.job_timeout",
            |c| dur(source!(c, AuditLog).job_timeout),
        ),
        ("source/audit_log.job_attempts", |c| {
            Some(source!(c, AuditLog).job_attempts.to_string())
        }),
        ("source/webdav_logs.include_current", |c| {
            Some(source!(c, WebdavLogs).include_current.to_string())
        }),
        ("source/webdav_logs.max_entry_bytes", |c| {
            Some(source!(c, WebdavLogs).max_entry_bytes.to_string())
        }),
        ("sink/parquet.compression_level", |c| {
            Some(sink!(c, Parquet).compression_level.to_string())
        }),
        ("sink/parquet.row_group_rows", |c| {
            Some(sink!(c, Parquet).row_group_rows.to_string())
        }),
        ("sink/parquet.statistics", |c| {
            Some(format!("{:?}", sink!(c, Parquet).statistics).to_lowercase())
        }),
        ("sink/parquet.dictionary", |c| {
            Some(sink!(c, Parquet).dictionary.to_string())
        }),
        ("sink/parquet.plain_columns", |c| {
            let p = &sink!(c, Parquet).plain_columns;
            (!p.is_empty()).then(|| p.join(", "))
        }),
        ("sink/parquet.max_file_size", |c| {
            Some(sink!(c, Parquet).max_file_size.to_string())
        }),
        ("sink/parquet.max_open_files", |c| {
            Some(sink!(c, Parquet).max_open_files.to_string())
        }),
        ("sink.s3.endpoint", |c| sink!(c, Parquet).s3.endpoint.clone()),
        ("sink.s3.region", |c| sink!(c, Parquet).s3.region.clone()),
        ("sink.s3.access_key_id", |c| sink!(c, Parquet).s3.access_key_id.clone()),
        ("sink.s3.secret_access_key", |c| {
            sink!(c, Parquet).s3.secret_access_key.as_ref().map(|_| "set".into())
        }),
        ("sink.s3.session_token", |c| {
            sink!(c, Parquet).s3.session_token.as_ref().map(|_| "set".into())
        }),
        ("sink.s3.allow_http", |c| {
            sink!(c, Parquet).s3.allow_http.map(|b| b.to_string())
        }),
        ("sink.s3.path_style", |c| {
            sink!(c, Parquet).s3.path_style.map(|b| b.to_string())
        }),
        ("sink/jsonl.url", |c| sink!(c, Jsonl).url.clone()),
        ("runtime.channel_capacity", |c| {
            Some(c.runtime.channel_capacity.to_string())
        }),
        ("runtime.decode_workers", |c| Some(c.runtime.decode_workers.to_string())),
        ("runtime.unit_concurrency", |c| {
            Some(c.runtime.unit_concurrency.to_string())
        }),
        ("runtime.batch_size", |c| Some(c.runtime.batch_size.to_string())),
        ("http.connect_timeout", |c| dur(c.http.connect_timeout)),
        ("http.read_timeout", |c| dur(c.http.read_timeout)),
        ("http.max_attempts", |c| Some(c.http.max_attempts.to_string())),
        ("http.max_retry_time", |c| dur(c.http.max_retry_time)),
        ("http.backoff_base", |c| dur(c.http.backoff_base)),
        ("http.backoff_max", |c| dur(c.http.backoff_max)),
    ];
    entries.into_iter().collect()
}

/// `60s` and `1m` are the same default.
fn canonical(value: &str) -> String {
    crate::duration::parse(value).map_or_else(|_| value.to_string(), crate::duration::format)
}

#[test]
fn reference_defaults_are_the_loaded_defaults() {
    let mut getters = loaded_defaults();
    let mut checked = 0;
    for chapter in REFERENCE.chapters {
        let mut typed = None;
        for section in chapter.sections {
            if !section.kind.is_empty() {
                typed = Some(section);
            }
            let cfg = minimal_pipeline(typed);
            for key in section.keys.iter().filter(|k| !k.default.is_empty()) {
                let id = match section_id(section) {
                    s if s.is_empty() => key.name.to_string(),
                    s => format!("{s}.{}", key.name),
                };
                let get = getters.remove(id.as_str()).unwrap_or_else(|| {
                    panic!(
                        "{id} documents the default {:?}: add it to loaded_defaults()",
                        key.default
                    )
                });
                let documented = key.default.replace('`', "");
                match get(&cfg) {
                    Some(value) => assert_eq!(
                        canonical(&documented),
                        canonical(&value),
                        "the default of {id} in its doc comment"
                    ),
                    None => assert!(!documented.is_empty()),
                }
                checked += 1;
            }
        }
    }
    assert!(
        getters.is_empty(),
        "loaded_defaults() names keys without a documented default: {:?}",
        getters.keys().collect::<Vec<_>>()
    );
    assert!(checked >= 40, "only {checked} defaults checked");
}

#[test]
fn markdown_has_a_section_per_source_with_limits_and_keys() {
    let md = markdown();
    assert!(md.starts_with("# Pipeline file reference\n"));
    for kind in SourceConfig::TYPES {
        assert!(md.contains(&format!("\n### `{kind}`\n")), "no heading for {kind}");
        assert!(
            md.contains(&format!("[`{kind}`](#{kind})")),
            "no contents entry for {kind}"
        );
    }
    assert!(md.contains("| `max_items` | optional, 1..=10000 | 10000 | "), "{md}");
    assert!(md.contains("| `url` | **required** |  | The URL the search form is POSTed to"));
    assert!(md.contains("- a listing covers at most 24 hours"));
    assert!(md.contains("100 listing requests per minute and 1000 per hour"));
    assert!(md.contains("the download URL is valid 15 minutes"));
    assert!(md.contains("\n#### `sink.s3`\n"));
    assert!(md.contains("\n## `runtime`\n") && md.contains("\n## `http`\n"));
    assert!(md.contains("| `select: [a, b]` | Keep only these columns, in this order. |"));
    // Type names of the code become links to the chapter of their key.
    assert!(md.contains("see [`source`](#source)"), "{md}");
    assert!(!md.contains("SourceConfig`]"));
}

#[test]
fn sources_text_lists_types_limits_and_defaults() {
    let text = sources_text();
    let positions: Vec<usize> = SourceConfig::TYPES
        .iter()
        .map(|k| {
            text.find(&format!("\n{k}\n"))
                .unwrap_or_else(|| panic!("{k} missing:\n{text}"))
        })
        .collect();
    assert!(positions.is_sorted(), "{text}");
    assert!(
        text.contains("    max_items (optional, 1..=10000, default 10000)\n        Records per page"),
        "{text}"
    );
    assert!(
        text.contains("    rate_per_minute (optional, 1..=100, default 100)\n"),
        "{text}"
    );
    assert!(
        text.contains("    - 100 listing requests per minute and 1000 per hour"),
        "{text}"
    );
    assert!(text.contains("  API limits:\n"));
    assert!(
        text.lines()
            .all(|l| l.chars().count() <= WIDTH || !l.trim().contains(' ')),
        "{text}"
    );
    assert!(!text.contains("](#"), "links are shown as text on a terminal");
}

#[test]
fn terminal_helpers() {
    assert_eq!(plain("see [`source`](#source) and [x]"), "see `source` and [x]");
    assert_eq!(first_sentence("a `b. c` (d. e). Then more."), "a `b. c` (d. e).");
    assert_eq!(first_sentence("no end"), "no end");
    let mut out = String::new();
    wrap_into(&mut out, &"word ".repeat(40), "  - ", "    ");
    assert!(
        out.lines().count() > 1 && out.lines().all(|l| l.len() <= WIDTH),
        "{out}"
    );
    assert!(out.starts_with("  - word") && out.lines().nth(1).unwrap().starts_with("    word"));
    assert_eq!(anchor("`sink.s3`"), "sinks3");
    assert_eq!(anchor("Top-level keys"), "top-level-keys");
    assert_eq!(anchor("`mail_delivery`"), "mail_delivery");
}

/// The generator refuses what it cannot document faithfully, naming the struct and field.
#[test]
fn reference_generator_rejects_undocumented_or_mislabelled_keys() {
    let check = |body: &str| -> Result<(), String> { generate::check_snippet(body) };
    let ok = "/// `x:` (optional): a section.\n#[derive(Deserialize)]\n#[serde(deny_unknown_fields)]\npub struct X {\n    /// `a` (optional, 1..=9, default 3): does a.\n    #[serde(default = \"three\")]\n    pub a: u32,\n    /// `b` (required, secret): does b.\n    pub b: String,\n}\n";
    assert_eq!(check(ok), Ok(()));
    let undocumented = ok.replace("    /// `b` (required, secret): does b.\n", "");
    let err = check(&undocumented).unwrap_err();
    assert!(err.contains("X.b") && err.contains("needs a doc comment"), "{err}");
    let mislabelled = ok.replace("`b` (required,", "`b` (optional,");
    let err = check(&mislabelled).unwrap_err();
    assert!(
        err.contains("X.b: documented as optional, but the key has no default"),
        "{err}"
    );
    let misnamed = ok.replace("`a` (optional", "`aa` (optional");
    let err = check(&misnamed).unwrap_err();
    assert!(err.contains("documents the key `aa`, which X does not read"), "{err}");
    let shapeless = ok.replace("`a` (optional, 1..=9, default 3): does a.", "`a`: does a.");
    let err = check(&shapeless).unwrap_err();
    assert!(err.contains("X.a: the doc must read"), "{err}");
    let renamed = ok.replace(
        "#[serde(default = \"three\")]",
        "#[serde(default = \"three\", rename = \"c\")]",
    );
    let err = check(&renamed).unwrap_err();
    assert!(err.contains("documents the key `a`, which X does not read"), "{err}");
}

#[test]
fn key_docs_are_split_into_rules_default_and_text() {
    let key = generate::parse_key_doc(
        "`region` (optional, default `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`): the bucket's region.",
    )
    .unwrap();
    assert_eq!(
        (key.name, key.required, key.rules, key.default, key.doc),
        (
            "region",
            false,
            "",
            "`AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`",
            "The bucket's region."
        )
    );
    let key =
        generate::parse_key_doc("`lang` (optional, `JA` or `EN`, a (b, c) d, default `JA`): the language.").unwrap();
    assert_eq!((key.rules, key.default), ("`JA` or `EN`, a (b, c) d", "`JA`"));
    let key = generate::parse_key_doc("`token` (required, non-empty): the token (sent as `X-Auth-Token`).").unwrap();
    assert_eq!((key.required, key.rules, key.default), (true, "non-empty", ""));
    assert!(generate::parse_key_doc("`x` (maybe): y").is_err());
    assert!(generate::parse_key_doc("`x` (optional).").is_err());
}
