//! Pipeline files: YAML in, a typed and validated [`PipelineConfig`] out, or errors that say
//! `file:line:column: what is wrong`.
//!
//! A pipeline file is the one thing an operator edits, usually in CI or a scheduler where a
//! vague error costs a deploy. So loading is strict and precise:
//!
//! ```text
//! file text ──► ${VAR} interpolation ──► YAML (serde_norway) ──► typed config
//!              (positions kept,          every struct denies        checks run inside
//!               all missing vars         unknown keys               deserialization, so
//!               reported at once)                                   errors keep positions)
//! ```
//!
//! - `${VAR}` and `${VAR:-default}` are substituted in the raw text (see [`interpolate`] for
//!   quoting rules); `$${` is a literal `${`. Every unset variable is reported, each at its `$`.
//! - Unknown keys are errors everywhere (a typo must not silently fall back to a default).
//! - Validation is pure: no file, network or clock access, so `etl validate` is safe in CI.
//!   Checks live in `Deserialize` impls (module `de`) because that is where the parser still
//!   knows the position.
//! - The `source:` and `sink:` sections are tagged by their first key, `type`; the rest of the
//!   mapping is read by the variant's struct so that a typo inside it is reported where it is.
//!
//! ```
//! use std::path::Path;
//! let text = "
//! source:
//!   type: mail_delivery
//!   url: https://api.example.com/deliverylog
//!   token: ${TOKEN}
//! sink:
//!   type: parquet
//!   url: ./data/mail
//! ";
//! let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
//! let cfg = etl_config::load_str(Path::new("pipelines/mail.yaml"), text, &env).unwrap();
//! assert_eq!(cfg.name, "mail");
//! assert_eq!(cfg.source.kind(), "mail_delivery");
//!
//! let typo = text.replace("token:", "tokn:");
//! let err = etl_config::load_str(Path::new("pipelines/mail.yaml"), &typo, &env).unwrap_err();
//! assert!(err.to_string().starts_with("pipelines/mail.yaml:5:3: unknown key `tokn` in `source` (mail_delivery)"));
//! ```

mod bytesize;
mod de;
pub mod duration;
mod error;
pub mod interpolate;
mod pipeline;
pub mod reference;
mod settings;
mod sink;
mod source;
mod timespec;
mod transform;

use std::path::Path;

pub use bytesize::ByteSize;
pub use error::{ConfigError, ConfigErrors};
pub use etl_core::{BadRecordPolicy, Secret, UnknownFieldPolicy};
pub use pipeline::PipelineConfig;
pub use settings::{HttpSettings, RuntimeConfig};
pub use sink::{JsonlSinkConfig, ParquetSinkConfig, ParquetStatistics, S3Config, SinkConfig};
pub use source::{
    AuditLogConfig, CdnLogsConfig, DeliveryStatus, Direction, MailDeliveryConfig, MailTrackingConfig, SourceConfig,
    TrafficType, WebdavLogsConfig,
};
pub use timespec::TimeSpec;
pub use transform::{FilterOp, Literal, TransformConfig};

/// Reads the pipeline file at `path`, taking `${VAR}`s from the process environment.
pub fn load(path: &Path) -> Result<PipelineConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read the pipeline file: {e}")))?;
    load_str(path, &text, &|name| std::env::var(name).ok())
}

/// Reads `text` as the pipeline file `path` (used in messages and for the default name), taking
/// `${VAR}`s from `env`. Pure: no I/O.
pub fn load_str(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<PipelineConfig, ConfigErrors> {
    pipeline::load_str(path, text, env)
}

/// Every interpolation problem of `text`: unset variables (each at its `$`), malformed
/// references, values that cannot be substituted. Empty when every reference resolves. For
/// `etl validate`, which reports these apart from (or instead of) structural errors when the
/// secrets are not available where it runs.
pub fn missing_vars(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    interpolate::problems(path, text, env)
}

#[cfg(test)]
mod tests;
