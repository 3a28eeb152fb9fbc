//! What is wrong with a definition file, in a form an operator can act on:
//! the file, the JSON path of the offending value, its line and column when
//! known, and a message that says what to write instead.

use std::fmt;

/// One problem found in a definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// JSON path of the offending value, e.g. `nodes[1].config.provider`;
    /// empty for the document as a whole.
    pub path: String,
    pub message: String,
    /// 1-based line of the offending value, when it could be located.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column of the offending value, when it could be located.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Issue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// Every problem found in one definition file, all reported at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DefinitionError {
    /// The file as the user named it, or `<builtin>` / `<request>`.
    pub file: String,
    pub issues: Vec<Issue>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let (Some(line), Some(column)) = (issue.line, issue.column) {
                write!(f, ":{line}:{column}")?;
            }
            if issue.path.is_empty() {
                write!(f, ": {}", issue.message)?;
            } else {
                write!(f, ": {}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}
