//! Configuration errors: each one names the key path, what is wrong and how to fix it.

use std::fmt;

/// One problem in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `lanes[1].source`.
    pub path: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)?;
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

/// Everything wrong with a configuration, reported together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration, {} problem(s):\n{}", .0.len(), render(.0))]
    Invalid(Vec<ConfigIssue>),
}

fn render(issues: &[ConfigIssue]) -> String {
    issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Invalid(v) => v,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// Collects issues while validating.
#[derive(Debug, Default)]
pub struct Issues(pub Vec<ConfigIssue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
