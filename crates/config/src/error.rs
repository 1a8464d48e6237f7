//! Errors that point at the exact place in the pipeline file, so a user fixes a typo without
//! hunting for it.
//!
//! Every problem, whether the YAML parser, a missing environment variable or a range check found
//! it, becomes one [`ConfigError`] displayed as `<file>:<line>:<column>: <message>` (the format
//! editors and CI annotations understand). Interpolation reports every missing variable at once,
//! which is why the functions of this crate return [`ConfigErrors`].

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The pipeline file, as the caller named it.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file (it could not be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 together with `line`.
    pub column: usize,
    /// What is wrong, naming the offending key. Never contains a secret value.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn at(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about the whole file, which has no position (it could not be read).
    pub(crate) fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self::at(file, 0, 0, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// One or more [`ConfigError`]s, in file order, displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_column_message() {
        let e = ConfigError::at(Path::new("pipelines/mail.yaml"), 7, 3, "unknown key `tokn` in `source`");
        assert_eq!(e.to_string(), "pipelines/mail.yaml:7:3: unknown key `tokn` in `source`");
        let io = ConfigError::whole_file(Path::new("x.yaml"), "cannot read: gone");
        assert_eq!(io.to_string(), "x.yaml: cannot read: gone");
        let all = ConfigErrors(vec![e, io]);
        assert_eq!(
            all.to_string(),
            "pipelines/mail.yaml:7:3: unknown key `tokn` in `source`\nx.yaml: cannot read: gone"
        );
    }
}
