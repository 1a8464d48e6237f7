//! `etl sources` and `etl schema`: what a pipeline can read, and what it writes.
//!
//! Nothing here is written by hand. The source types, their keys, defaults and API limits come
//! from `etl_config::reference`, generated from the config structs' doc comments (and equal, by
//! a test, to `docs/CONFIG.md`); the columns come from each format's own Arrow schema. So what an
//! operator reads before writing a pipeline file is what `etl validate` accepts and what a run
//! writes.

use std::io::Write;

use arrow_schema::Schema;

use crate::exit;

/// `etl sources --help`.
pub const SOURCES_HELP: &str = "Example:\n  etl sources\n  etl sources --markdown > docs/CONFIG.md";

/// `etl schema --help`.
pub const SCHEMA_HELP: &str = "\
The time column gives the `dt=YYYY-MM-DD` partition (UTC) of a Parquet dataset; other partition
folders (`domain=`, `traffic_type=`) come from the unit, not from a column.

Example:
  etl schema cdn_logs
  etl schema mail_tracking --json | jq -r '.columns[].name'";

/// `etl sources [--markdown]`.
pub fn sources(markdown: bool) -> u8 {
    let text = if markdown {
        etl_config::reference::markdown()
    } else {
        etl_config::reference::sources_text()
    };
    print(&text)
}

/// `etl schema SOURCE [--json]`.
pub fn schema(kind: &str, json: bool) -> u8 {
    let Some(format) = crate::registry::format_for_kind(kind) else {
        eprintln!(
            "error: unknown source type `{kind}`; known: {}",
            etl_config::SourceConfig::TYPES.join(", ")
        );
        return exit::USAGE;
    };
    let schema = format.schema();
    let text = if json {
        schema_json(kind, &schema, format.time_column()).to_string() + "\n"
    } else {
        schema_text(kind, &schema, format.time_column())
    };
    print(&text)
}

/// Writes `text` to stdout. A closed pipe (`etl sources | head`) is the reader's choice, not an
/// error.
pub(crate) fn print(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            exit::INTERNAL
        }
    }
}

/// One line per column: name, Arrow type, nullability, and a note on the time column.
fn schema_text(kind: &str, schema: &Schema, time_column: &str) -> String {
    let rows: Vec<[String; 4]> = schema
        .fields()
        .iter()
        .map(|f| {
            [
                f.name().clone(),
                f.data_type().to_string(),
                if f.is_nullable() { "yes" } else { "no" }.to_string(),
                if f.name() == time_column {
                    "time column: sets the dt= partition".to_string()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let header = ["column", "type", "nullable", ""].map(String::from);
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = format!(
        "Records of source type `{kind}` before transforms: {} columns, in the Arrow types the Parquet files store.\n\n",
        rows.len()
    );
    for r in std::iter::once(&header).chain(&rows) {
        let line = format!("{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `{"source", "time_column", "columns": [{"name", "type", "nullable"}]}`, for scripts.
fn schema_json(kind: &str, schema: &Schema, time_column: &str) -> serde_json::Value {
    let columns: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })
        })
        .collect();
    serde_json::json!({ "source": kind, "time_column": time_column, "columns": columns })
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Field, TimeUnit};

    use super::*;

    fn sample() -> Schema {
        Schema::new(vec![
            Field::new(
                "seen_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("a_rather_long_name", DataType::Utf8, true),
        ])
    }

    #[test]
    fn schema_text_aligns_columns_and_marks_the_time_column() {
        let text = schema_text("demo", &sample(), "seen_at");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("Records of source type `demo` before transforms: 2 columns"),
            "{text}"
        );
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "column              type                  nullable");
        assert_eq!(
            lines[3],
            "seen_at             Timestamp(µs, \"UTC\")  no        time column: sets the dt= partition"
        );
        assert_eq!(lines[4], "a_rather_long_name  Utf8                  yes");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn schema_json_lists_every_column() {
        let v = schema_json("demo", &sample(), "seen_at");
        assert_eq!(v["source"], "demo");
        assert_eq!(v["time_column"], "seen_at");
        assert_eq!(v["columns"][0]["type"], "Timestamp(µs, \"UTC\")");
        assert_eq!(v["columns"][0]["nullable"], false);
        assert_eq!(v["columns"][1]["name"], "a_rather_long_name");
        assert_eq!(v["columns"].as_array().unwrap().len(), 2);
    }

    /// `etl schema` knows every type the config accepts, and each has its UTC time column.
    #[test]
    fn every_source_type_has_a_format_with_a_utc_time_column() {
        for kind in etl_config::SourceConfig::TYPES {
            let format = crate::registry::format_for_kind(kind).unwrap_or_else(|| panic!("no format for {kind}"));
            let schema = format.schema();
            let (_, time) = schema
                .column_with_name(format.time_column())
                .unwrap_or_else(|| panic!("{kind}: no time column {}", format.time_column()));
            assert_eq!(
                time.data_type(),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "{kind}"
            );
        }
        assert!(crate::registry::format_for_kind("nope").is_none());
    }
}
