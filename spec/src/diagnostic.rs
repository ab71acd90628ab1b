//! Diagnostics: every problem found while loading a spec, with its file:line:col, the field it
//! concerns, what was expected and a hint. Loading never stops at the first problem.

use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// A position in one source file. Lines and columns are 1-based; `offset` and `len` are bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
    #[serde(skip)]
    pub offset: u32,
    #[serde(skip)]
    pub len: u32,
}

impl Loc {
    /// The same position moved `columns` characters to the right on its line, used to point
    /// inside a string value (a selector error at character 7 of the target).
    pub fn shifted(&self, columns: u32, bytes: u32) -> Loc {
        Loc {
            file: self.file.clone(),
            line: self.line,
            col: self.col + columns,
            offset: self.offset + bytes,
            len: 1,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// How bad a diagnostic is: errors make a spec invalid, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The class of a problem; stable names used by tests, JSON output and documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    Syntax,
    UnknownKind,
    BadApiVersion,
    UnknownField,
    MissingField,
    DuplicateKey,
    WrongType,
    DuplicateName,
    BadCron,
    BadSelector,
    BadGlob,
    UnknownMode,
    BadValue,
    BadOperatorKey,
    RuleNeverMatches,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::UnknownKind => "unknown-kind",
            Code::BadApiVersion => "bad-api-version",
            Code::UnknownField => "unknown-field",
            Code::MissingField => "missing-field",
            Code::DuplicateKey => "duplicate-key",
            Code::WrongType => "wrong-type",
            Code::DuplicateName => "duplicate-name",
            Code::BadCron => "bad-cron",
            Code::BadSelector => "bad-selector",
            Code::BadGlob => "bad-glob",
            Code::UnknownMode => "unknown-mode",
            Code::BadValue => "bad-value",
            Code::BadOperatorKey => "bad-operator-key",
            Code::RuleNeverMatches => "rule-never-matches",
        }
    }
}

/// One problem in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    #[serde(flatten)]
    pub loc: Loc,
    /// The field path inside the document, e.g. `spec.hosts[2].mode` (empty for syntax errors).
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(
        code: Code,
        loc: Loc,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            loc,
            field: field.into(),
            expected: None,
            hint: None,
        }
    }

    pub fn warning(
        code: Code,
        loc: Loc,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, loc, field, message)
        }
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}: {severity}[{}]: {}",
            self.loc,
            self.code.as_str(),
            self.message
        )?;
        if !self.field.is_empty() {
            write!(f, "\n  field: {}", self.field)?;
        }
        if let Some(expected) = &self.expected {
            write!(f, "\n  expected: {expected}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// miette rendering: the caller attaches the source text (`miette::Report::new(d).with_source_code(..)`)
/// to get a snippet with the offending span underlined.
impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint
            .as_ref()
            .map(|hint| Box::new(hint) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let label = self
            .expected
            .as_ref()
            .map(|expected| format!("expected {expected}"));
        Some(Box::new(std::iter::once(miette::LabeledSpan::new(
            label,
            self.loc.offset as usize,
            self.loc.len.max(1) as usize,
        ))))
    }
}

/// Byte offsets to line and column (1-based, columns in characters), with the line starts
/// computed once so that positioning every node of a large file stays linear.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    pub(crate) fn line_col(&self, offset: usize) -> (u32, u32) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        (line as u32, col as u32)
    }

    /// Byte offset of a character index (saphyr reports positions in characters).
    pub(crate) fn byte_of_char_on_line(&self, line: usize, col0: usize) -> usize {
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        self.text[start..]
            .char_indices()
            .nth(col0)
            .map_or(self.text.len(), |(i, _)| start + i)
    }
}
