//! What happens to a record that does not parse inside an otherwise good page or file.

use serde::{Deserialize, Serialize};

/// The pipeline's `on_bad_record` policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// Fail the unit (nothing of it is committed). The default: silent loss is worse than a stop.
    #[default]
    Fail,
    /// Count the record, keep a copy in the unit's dead-letter file, and go on.
    Skip,
}

/// A skipped record, as written to the dead-letter file (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The unit the record belongs to (filled in by the runner).
    #[serde(default)]
    pub unit: String,
    /// The payload it came from (page or file name).
    #[serde(default)]
    pub payload: String,
    /// 1-based line within the payload.
    pub line: u64,
    pub reason: String,
    /// The raw record, cut to a bounded length.
    pub raw: String,
}

/// Longest raw excerpt kept in an error message or a dead-letter line.
pub const MAX_EXCERPT: usize = 512;

/// Cuts `raw` to at most [`MAX_EXCERPT`] bytes on a character boundary, lossily decoding UTF-8.
pub fn excerpt(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(MAX_EXCERPT)];
    let s = String::from_utf8_lossy(cut);
    s.trim_end_matches('\u{FFFD}').to_string()
}

/// The pipeline's `on_unknown_field` policy: what a decoder does with a field the documented
/// schema does not know (an API that grew a field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFieldPolicy {
    /// Count it per field name and report the counts in the run summary, keep the record.
    #[default]
    Ignore,
    /// Treat the record as bad (then `on_bad_record` decides).
    Fail,
}
