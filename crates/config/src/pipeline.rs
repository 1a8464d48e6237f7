//! The whole pipeline file: the top-level keys, the loader, and the translation of parser errors
//! into `file:line:column: message` with the key named.
//!
//! serde_norway's messages are precise but written for Rust types (`unknown field`, `variant`);
//! the few generic ones are rephrased in the vocabulary of the file (`unknown key`, the section's
//! path, the accepted keys), and every position is mapped back through the interpolation so that
//! it points into the text the user wrote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etl_core::{BadRecordPolicy, UnknownFieldPolicy};
use serde::{Deserialize, Deserializer};

use crate::de::str_with;
use crate::error::{ConfigError, ConfigErrors};
use crate::interpolate::{EnvLookup, Interpolated, interpolate};
use crate::{HttpSettings, RuntimeConfig, SinkConfig, SourceConfig, TimeSpec, TransformConfig};

/// A validated pipeline: everything `etl run` needs, with defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// The file this was read from.
    pub path: PathBuf,
    /// `name` (optional, default: the file name without extension): names the pipeline in logs,
    /// state and unit ids. Letters, digits, `_`, `-` and `.`, starting with a letter or digit.
    pub name: String,
    /// `source` (required): where records come from; see [`SourceConfig`].
    pub source: SourceConfig,
    /// `start` (optional, default `-7d`): the start of the range when `etl run` gets no
    /// `--from`; a time such as `2025-09-11`, `2025-09-11T06:00:00Z`, `now` or `-7d`.
    pub start: TimeSpec,
    /// `settle` (optional, default `1h`): a window is final (written once and marked done) only
    /// when it ended at least this long ago; a younger window is written provisionally and
    /// rewritten by the next run. A duration such as `30m` or `1h`.
    pub settle: Duration,
    /// `on_bad_record` (optional, default `fail`): what a record that does not parse does:
    /// `fail` fails its unit, `skip` counts it and keeps it in a dead-letter file.
    pub on_bad_record: BadRecordPolicy,
    /// `on_unknown_field` (optional, default `ignore`): what a field the source's schema does
    /// not know does (an API that grew a field): `ignore` counts it per name and reports the
    /// counts in the run summary; `fail` makes the record bad (then `on_bad_record` decides).
    pub on_unknown_field: UnknownFieldPolicy,
    /// `transforms` (optional, default none): applied in order; see [`TransformConfig`].
    pub transforms: Vec<TransformConfig>,
    /// `sink` (required): where the dataset is written; see [`SinkConfig`].
    pub sink: SinkConfig,
    /// `runtime` (optional): parallelism and memory bounds; see [`RuntimeConfig`].
    pub runtime: RuntimeConfig,
    /// `http` (optional): timeouts and retries; see [`HttpSettings`].
    pub http: HttpSettings,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of pipeline keys (name, source, sink, ...)"
)]
struct RawPipeline {
    #[serde(default, deserialize_with = "pipeline_name")]
    name: Option<String>,
    source: SourceConfig,
    #[serde(default = "default_start")]
    start: TimeSpec,
    #[serde(default = "default_settle", deserialize_with = "crate::duration::deserialize")]
    settle: Duration,
    #[serde(default)]
    on_bad_record: BadRecordPolicy,
    #[serde(default)]
    on_unknown_field: UnknownFieldPolicy,
    #[serde(default)]
    transforms: Vec<TransformConfig>,
    sink: SinkConfig,
    #[serde(default)]
    runtime: RuntimeConfig,
    #[serde(default)]
    http: HttpSettings,
}

fn default_start() -> TimeSpec {
    TimeSpec::Relative(chrono::Duration::days(-7))
}

fn default_settle() -> Duration {
    Duration::from_secs(3600)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        Ok(())
    } else {
        Err(format!(
            "invalid pipeline name `{name}`: use letters, digits, `_`, `-` and `.`, starting with a letter or digit"
        ))
    }
}

fn pipeline_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    str_with(d, "a pipeline name", |v| check_name(v).map(|()| Some(v.to_string())))
}

/// Reads and validates `text` as the pipeline file `path`, taking `${VAR}`s from `env`.
pub(crate) fn load_str(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<PipelineConfig, ConfigErrors> {
    let interpolated = interpolate(path, text, env).map_err(ConfigErrors)?;
    check_secret_references(path, text)?;
    let raw: RawPipeline =
        serde_norway::from_str(&interpolated.text).map_err(|e| yaml_error(path, &interpolated, &e))?;
    let name = match raw.name {
        Some(name) => name,
        None => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            check_name(&stem).map_err(|e| {
                ConfigError::at(
                    path,
                    1,
                    1,
                    format!("{e} (taken from the file name; set `name:` in the file)"),
                )
            })?;
            stem
        }
    };
    Ok(PipelineConfig {
        path: path.to_path_buf(),
        name,
        source: raw.source,
        start: raw.start,
        settle: raw.settle,
        on_bad_record: raw.on_bad_record,
        on_unknown_field: raw.on_unknown_field,
        transforms: raw.transforms,
        sink: raw.sink,
        runtime: raw.runtime,
        http: raw.http,
    })
}

/// Storage credentials are the keys to every dataset: `sink.s3` secrets must be `${VAR}`
/// references, so a pipeline file can be committed and shared without leaking them.
fn check_secret_references(path: &Path, text: &str) -> Result<(), ConfigErrors> {
    // The file as written, before interpolation; one that does not parse is reported later,
    // with its position, by the real parse.
    let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return Ok(());
    };
    let Some(s3) = doc.get("sink").and_then(|s| s.get("s3")) else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for key in crate::S3Config::SECRET_KEYS {
        let Some(value) = s3.get(key) else { continue };
        let is_reference = value.as_str().is_some_and(|v| {
            v.trim()
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .is_some_and(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        });
        if !is_reference {
            let (line, column) = text
                .lines()
                .enumerate()
                .find_map(|(i, l)| l.find(&format!("{key}:")).map(|c| (i + 1, c + 1)))
                .unwrap_or((1, 1));
            errors.push(ConfigError::at(
                path,
                line,
                column,
                format!("sink.s3.{key} is a secret: write it as ${{VAR}} (for example ${{AWS_SECRET_ACCESS_KEY}}), not as a literal or a default"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Turns a serde_norway error into a positioned, rephrased [`ConfigError`].
fn yaml_error(path: &Path, interpolated: &Interpolated, err: &serde_norway::Error) -> ConfigError {
    let mut message = err.to_string();
    let (line, column) = match err.location() {
        Some(loc) => {
            // serde_norway appends the position; it is shown as the prefix instead.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(at) = message.find(&suffix) {
                message.replace_range(at..at + suffix.len(), "");
            }
            interpolated.original_position(loc.line(), loc.column())
        }
        None => (1, 1),
    };
    let message = rephrase(&message, |section| section_type(&interpolated.text, section));
    ConfigError::at(path, line, column, message)
}

/// The `type` of a tagged section, to say which variant's keys an unknown key was checked against.
fn section_type(text: &str, section: &str) -> Option<String> {
    let doc: serde_norway::Value = serde_norway::from_str(text).ok()?;
    doc.get(section)?.get("type")?.as_str().map(str::to_string)
}

/// Extracts every `...`-quoted word of `s`, in order.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// Rewrites serde's generic messages (`unknown field`, `missing field`, `unknown variant`,
/// `duplicate field`) with the key's path; prefixes other messages with their path unless they
/// already name it.
fn rephrase(message: &str, section_type: impl Fn(&str) -> Option<String>) -> String {
    const PHRASES: [&str; 4] = [
        "unknown field `",
        "unknown variant `",
        "missing field `",
        "duplicate field `",
    ];
    let found = PHRASES.iter().filter_map(|p| message.find(p).map(|at| (at, *p))).min();
    let Some((at, phrase)) = found else {
        return drop_redundant_path(message);
    };
    let path = message[..at].strip_suffix(": ").unwrap_or(&message[..at]);
    let words = backticked(&message[at..]);
    let Some((name, expected)) = words.split_first() else {
        return message.to_string();
    };
    let within = if path.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{path}`")
    };
    let choices = if expected.is_empty() {
        String::new()
    } else {
        format!("; expected one of: {}", expected.join(", "))
    };
    match phrase {
        "unknown field `" => {
            let kind = section_type(path).map(|t| format!(" ({t})")).unwrap_or_default();
            if expected.is_empty() {
                format!("unknown key `{name}` {within}{kind}; it takes no keys")
            } else {
                format!("unknown key `{name}` {within}{kind}{choices}")
            }
        }
        "unknown variant `" if is_transform_item(path) => format!("unknown transform `{name}` {within}{choices}"),
        "unknown variant `" => format!("unknown value `{name}` for `{path}`{choices}"),
        "missing field `" => format!("missing required key `{name}` {within}"),
        _ => format!("duplicate key `{name}` {within}"),
    }
}

fn is_transform_item(path: &str) -> bool {
    path.strip_prefix("transforms[")
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|i| i.parse::<usize>().is_ok())
}

/// `source: `type` must be the first key of `source`` reads better without the prefix.
fn drop_redundant_path(message: &str) -> String {
    if let Some((path, rest)) = message.split_once(": ")
        && !path.contains(' ')
        && rest.contains(&format!("`{path}`"))
    {
        return rest.to_string();
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rephrases_serde_messages() {
        let none = |_: &str| None;
        assert_eq!(
            rephrase("source: unknown field `tokn`, expected one of `url`, `token`", |s| (s
                == "source")
                .then(|| "mail_delivery".to_string())),
            "unknown key `tokn` in `source` (mail_delivery); expected one of: url, token"
        );
        assert_eq!(
            rephrase("unknown field `nmae`, expected `name` or `source`", none),
            "unknown key `nmae` at the top level; expected one of: name, source"
        );
        assert_eq!(
            rephrase("missing field `sink`", none),
            "missing required key `sink` at the top level"
        );
        assert_eq!(
            rephrase(
                "transforms[1]: unknown variant `selct`, expected one of `select`, `drop`",
                none
            ),
            "unknown transform `selct` in `transforms[1]`; expected one of: select, drop"
        );
        assert_eq!(
            rephrase("on_bad_record: unknown variant `skp`, expected `fail` or `skip`", none),
            "unknown value `skp` for `on_bad_record`; expected one of: fail, skip"
        );
        assert_eq!(
            rephrase("http: duplicate field `read_timeout`", none),
            "duplicate key `read_timeout` in `http`"
        );
        assert_eq!(
            rephrase("source: `type` must be the first key of `source` (found `url`)", none),
            "`type` must be the first key of `source` (found `url`)"
        );
        assert_eq!(
            rephrase("source.max_items: must be between 1 and 10000 (got 0)", none),
            "source.max_items: must be between 1 and 10000 (got 0)"
        );
    }
}
