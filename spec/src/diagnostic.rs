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
    UnknownToolset,
    /// A policy test of the fleet (`spec.tests`) does not hold.
    PolicyTestFailed,
    /// Input beyond a parser limit (file size, values, alias expansion): refused unparsed.
    TooLarge,
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
            Code::UnknownToolset => "unknown-toolset",
            Code::PolicyTestFailed => "policy-test-failed",
            Code::TooLarge => "too-large",
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
///
/// Converting between bytes and characters never walks a whole line: on a one-line file of
/// half a million values that made positioning quadratic (minutes for a 1 MB list). ASCII text
/// converts directly; other text through a checkpoint every [`CHARS_PER_CHECKPOINT`]
/// characters.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// Byte offset of every [`CHARS_PER_CHECKPOINT`]th character; empty for ASCII text, whose
    /// byte and character offsets are the same.
    checkpoints: Vec<usize>,
}

const CHARS_PER_CHECKPOINT: usize = 64;

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let checkpoints = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices()
                .step_by(CHARS_PER_CHECKPOINT)
                .map(|(i, _)| i)
                .collect()
        };
        LineIndex {
            text,
            line_starts,
            checkpoints,
        }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// Characters before byte `offset` (a char boundary).
    fn chars_before(&self, offset: usize) -> usize {
        if self.checkpoints.is_empty() {
            return offset;
        }
        let checkpoint = self.checkpoints.partition_point(|&start| start <= offset) - 1;
        checkpoint * CHARS_PER_CHECKPOINT
            + self.text[self.checkpoints[checkpoint]..offset]
                .chars()
                .count()
    }

    /// Byte offset of character `index`, or the text's length past its end.
    fn byte_of_char(&self, index: usize) -> usize {
        if self.checkpoints.is_empty() {
            return index.min(self.text.len());
        }
        let Some(&start) = self.checkpoints.get(index / CHARS_PER_CHECKPOINT) else {
            return self.text.len();
        };
        self.text[start..]
            .char_indices()
            .nth(index % CHARS_PER_CHECKPOINT)
            .map_or(self.text.len(), |(i, _)| start + i)
    }

    pub(crate) fn line_col(&self, offset: usize) -> (u32, u32) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let col = self.chars_before(offset) - self.chars_before(start) + 1;
        (line as u32, col as u32)
    }

    /// Byte offset of a character index (saphyr reports positions in characters).
    pub(crate) fn byte_of_char_on_line(&self, line: usize, col0: usize) -> usize {
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        self.byte_of_char(self.chars_before(start) + col0)
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    /// The fast conversions agree with walking the text, on ASCII and on multi-byte text that
    /// spans several checkpoints.
    #[test]
    fn line_index_positions_match_a_walk_of_the_text() {
        for text in [
            "ab\ncd\n\nlast".to_string(),
            format!("é{}\nß{}\nx", "ü".repeat(150), "a€".repeat(100)),
        ] {
            let index = LineIndex::new(&text);
            for (offset, _) in text.char_indices() {
                let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
                let line = text[..offset].matches('\n').count() + 1;
                let col = text[line_start..offset].chars().count() + 1;
                assert_eq!(index.line_col(offset), (line as u32, col as u32));
                assert_eq!(index.byte_of_char_on_line(line, col - 1), offset);
            }
            let last_line = text.matches('\n').count() + 1;
            assert_eq!(index.byte_of_char_on_line(last_line, 10_000), text.len());
        }
    }
}
