//! Where every object of a dataset lives, in one place.
//!
//! Object keys are built only from validated single segments joined with
//! [`object_store::path::Path::join`], never by formatting a whole path and parsing it back: a
//! partition value such as `../x` or `a/b` must be rejected, not silently turned into another
//! directory. Every segment the sink writes is checked to be "boring" (`[A-Za-z0-9._=-]`, not
//! `.`/`..`, not hidden), so the key is the same on S3, on local disk and to DuckDB's hive
//! partition parser.

use chrono::{DateTime, NaiveDate};
use object_store::path::{Path, PathPart};

use crate::error::SinkError;

/// Microseconds in a UTC day: `dt` is the day of `time_column` in µs since the epoch.
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The directory of the sink's own bookkeeping, beside the data. Starts with `_` so that
/// hive-partition readers (DuckDB, Spark) skip it.
const META_DIR: &str = "_etl";

/// The kinds of bookkeeping objects, one JSON (or JSONL) object per unit under each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaKind {
    Intents,
    Manifests,
    DeadLetter,
    State,
    Checkpoints,
    Claims,
}

impl MetaKind {
    fn dir(self) -> &'static str {
        match self {
            MetaKind::Intents => "intents",
            MetaKind::Manifests => "manifests",
            MetaKind::DeadLetter => "dead_letter",
            MetaKind::State => "state",
            MetaKind::Checkpoints => "checkpoints",
            MetaKind::Claims => "claims",
        }
    }
    fn extension(self) -> &'static str {
        match self {
            MetaKind::DeadLetter => "jsonl",
            _ => "json",
        }
    }
}

/// `<root>/_etl/<kind>/`.
pub(crate) fn meta_dir(root: &Path, kind: MetaKind) -> Path {
    root.clone().join(META_DIR).join(kind.dir())
}

/// `<root>/_etl/<kind>/<unit_id>.<ext>`; `unit_id` must already be checked with [`check_unit_id`].
pub(crate) fn meta_object(root: &Path, kind: MetaKind, unit_id: &str) -> Path {
    let name = [unit_id, kind.extension()].join(".");
    meta_dir(root, kind).join(name)
}

/// Checks that a unit id can be used as a file name as is (see `Unit::sanitize_id`).
pub(crate) fn check_unit_id(id: &str) -> Result<(), SinkError> {
    check_segment(id, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-')).map_err(|reason| {
        SinkError::UnsafeSegment {
            unit: id.to_string(),
            what: "unit id",
            value: id.to_string(),
            reason,
        }
    })
}

/// Checks one partition `key=value` pair and returns its directory segment.
///
/// Keys are column-like (`[A-Za-z][A-Za-z0-9_]*`, not `dt`, which the sink derives itself);
/// values are `[A-Za-z0-9._-]`, so that the segment needs no escaping anywhere.
pub(crate) fn partition_segment(unit: &str, key: &str, value: &str) -> Result<String, SinkError> {
    let unsafe_key = |reason: String| SinkError::UnsafeSegment {
        unit: unit.to_string(),
        what: "partition key",
        value: key.to_string(),
        reason,
    };
    check_segment(key, |c| c.is_ascii_alphanumeric() || c == '_').map_err(unsafe_key)?;
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(unsafe_key("a partition key must start with a letter".into()));
    }
    if key == DT {
        return Err(unsafe_key(
            "`dt` is derived from the time column and cannot be a unit partition".into(),
        ));
    }
    check_segment(value, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).map_err(|reason| {
        SinkError::UnsafeSegment {
            unit: unit.to_string(),
            what: "partition value",
            value: [key, value].join("="),
            reason,
        }
    })?;
    Ok([key, value].join("="))
}

/// The name of the partition column the sink derives from the time column.
pub(crate) const DT: &str = "dt";

/// `dt=YYYY-MM-DD` for a day number (days since 1970-01-01, UTC).
pub(crate) fn dt_segment(day: i32) -> Result<String, String> {
    let date = day_to_date(day).ok_or_else(|| format!("day {day} since the epoch is out of range"))?;
    let text = date.format("%Y-%m-%d").to_string();
    // Years outside 0000-9999 print with a sign or more digits; DuckDB would not read them as dates.
    if text.len() != 10 || text.starts_with(['+', '-']) {
        return Err(format!("date {text} is outside the years 0000-9999"));
    }
    Ok([DT, text.as_str()].join("="))
}

fn day_to_date(day: i32) -> Option<NaiveDate> {
    DateTime::from_timestamp(i64::from(day) * 86_400, 0).map(|t| t.date_naive())
}

/// A data file of a unit: its key under the store and its path relative to the dataset root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DataFile {
    pub location: Path,
    pub relative: String,
}

/// `<root>/<k=v>.../dt=YYYY-MM-DD/<unit_id>-<part:04>.parquet`.
pub(crate) fn data_file(root: &Path, partitions: &[String], dt: &str, unit_id: &str, part: u32) -> DataFile {
    let name = format!("{unit_id}-{part:04}.parquet");
    let relative: Path = partitions
        .iter()
        .map(String::as_str)
        .chain([dt, name.as_str()])
        .map(PathPart::from)
        .collect();
    let location = root.parts().chain(relative.parts()).collect();
    DataFile {
        location,
        relative: relative.as_ref().to_string(),
    }
}

/// Turns a path read back from an intent or a manifest into a key under `root`, refusing
/// anything the sink would not have written itself (so a damaged manifest cannot make the sink
/// delete objects outside the dataset's data files).
pub(crate) fn stored_data_file(root: &Path, relative: &str) -> Result<DataFile, String> {
    let mut parts = Vec::new();
    for segment in relative.split('/') {
        check_segment(segment, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-')
        })
        .map_err(|reason| format!("stored data path {relative:?}: segment {segment:?}: {reason}"))?;
        parts.push(PathPart::from(segment));
    }
    if !relative.ends_with(".parquet") {
        return Err(format!("stored data path {relative:?} is not a .parquet file"));
    }
    let location = root.parts().chain(parts).collect();
    Ok(DataFile {
        location,
        relative: relative.to_string(),
    })
}

/// A segment is safe when it is non-empty, made of `allowed` characters only, is not `.` or
/// `..`, does not start with `.` or `_` (hidden from hive readers), and survives
/// [`PathPart`] unchanged (no percent-escaping).
fn check_segment(segment: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if segment.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(c) = segment.chars().find(|&c| !allowed(c)) {
        return Err(format!("character {c:?} is not allowed"));
    }
    if segment.starts_with(['.', '_']) {
        return Err("it must not start with `.` or `_` (readers treat such names as hidden)".into());
    }
    if PathPart::from(segment).as_ref() != segment {
        return Err("it would be escaped in an object key".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_joins_partitions_dt_and_part() {
        let root = Path::from_iter(["data", "mail"]);
        let f = data_file(&root, &["domain=example.com".into()], "dt=2025-09-11", "u-1", 3);
        assert_eq!(f.relative, "domain=example.com/dt=2025-09-11/u-1-0003.parquet");
        assert_eq!(
            f.location.as_ref(),
            "data/mail/domain=example.com/dt=2025-09-11/u-1-0003.parquet"
        );
        let at_root = data_file(&Path::default(), &[], "dt=2025-09-11", "u", 0);
        assert_eq!(at_root.location.as_ref(), "dt=2025-09-11/u-0000.parquet");
    }

    #[test]
    fn stored_paths_round_trip_and_reject_escapes() {
        let root = Path::from("r");
        let f = stored_data_file(&root, "k=v/dt=2025-09-11/u-0000.parquet").unwrap();
        assert_eq!(f.location.as_ref(), "r/k=v/dt=2025-09-11/u-0000.parquet");
        for bad in [
            "../x.parquet",
            "a//b.parquet",
            "_etl/state/x.parquet",
            "dt=1/u.json",
            "/abs.parquet",
            "a b.parquet",
        ] {
            assert!(stored_data_file(&root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dt_segment_formats_utc_days() {
        assert_eq!(dt_segment(0).unwrap(), "dt=1970-01-01");
        assert_eq!(dt_segment(20_342).unwrap(), "dt=2025-09-11");
        assert_eq!(dt_segment(-1).unwrap(), "dt=1969-12-31");
        assert!(dt_segment(3_000_000).is_err());
    }

    #[test]
    fn partition_segments_are_checked() {
        assert_eq!(
            partition_segment("u", "domain", "example.com").unwrap(),
            "domain=example.com"
        );
        for (k, v) in [
            ("domain", "a/b"),
            ("domain", ".."),
            ("domain", ""),
            ("domain", "x y"),
            ("domain", "a=b"),
            ("domain", "a#1"),
            ("dt", "2025-01-01"),
            ("_k", "v"),
            ("1k", "v"),
            ("k-k", "v"),
        ] {
            assert!(partition_segment("u", k, v).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn unit_ids_must_be_single_plain_segments() {
        assert!(check_unit_id("mail_delivery-2025-09-11").is_ok());
        for bad in ["", ".", "..", "a/b", ".hidden", "a b", "a#1"] {
            assert!(check_unit_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn meta_objects_live_under_etl() {
        let root = Path::from("r");
        assert_eq!(
            meta_object(&root, MetaKind::Intents, "u").as_ref(),
            "r/_etl/intents/u.json"
        );
        assert_eq!(
            meta_object(&root, MetaKind::DeadLetter, "u").as_ref(),
            "r/_etl/dead_letter/u.jsonl"
        );
        assert_eq!(meta_dir(&Path::default(), MetaKind::State).as_ref(), "_etl/state");
    }
}
