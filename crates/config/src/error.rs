//! Errors: every problem found in a configuration file is a [`Diagnostic`] naming where it is
//! and what is wrong; one file can produce several, reported together as borgmatic does
//! (`borgmatic/config/validate.py`, `Validation_error`).

use std::fmt;
use std::path::PathBuf;

use crate::node::Mark;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the offending key or value is written (None when there is no such place, e.g.
    /// a missing required option in an empty file).
    pub mark: Option<Mark>,
    /// The option path as borgmatic prints it (`repositories[0].path`), empty for the top level.
    pub path: String,
    /// What is wrong, with a "did you mean" suggestion where one is close.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(mark) = &self.mark {
            write!(f, "{mark}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "At the top level: {}", self.message)
        } else {
            write!(f, "At '{}': {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration or included file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid YAML, or not a valid borgmatic configuration: every problem found.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The diagnostics of an invalid configuration (empty for I/O errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            ConfigError::Io { .. } => &[],
        }
    }

    /// A single diagnostic at `mark`.
    pub(crate) fn at(mark: &Mark, path: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid(vec![Diagnostic {
            mark: Some(mark.clone()),
            path: path.to_string(),
            message: message.into(),
        }])
    }
}

fn display_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
