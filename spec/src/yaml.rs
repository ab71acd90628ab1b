//! YAML: reading into the spanned tree (saphyr-parser events, YAML 1.2 core schema) and writing
//! the model back as block-style YAML. The only module that knows YAML syntax.

use crate::diagnostic::{Code, Diagnostic, LineIndex, Loc};
use crate::limits;
use crate::tree::{Key, Node, Value};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;
use std::sync::Arc;

/// Nesting deeper than this is rejected rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    file: Arc<str>,
    lines: LineIndex<'a>,
    events: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Anchored>,
    /// Values read so far in this file, counting the copies aliases made.
    values: usize,
    /// Bytes of scalar text read so far, counting the copies aliases made.
    scalar_bytes: usize,
    /// What aliases have copied so far, against the budgets for this document's size.
    alias_values: usize,
    alias_bytes: usize,
    alias_value_budget: usize,
    alias_byte_budget: usize,
}

/// An anchored node and what one copy of it costs: every alias to it copies the whole subtree,
/// so its size, not the one alias event, is what counts against the limits.
struct Anchored {
    node: Node,
    values: usize,
    scalar_bytes: usize,
}

enum Stop {
    /// A syntax error, already turned into a diagnostic.
    Error(Box<Diagnostic>),
}

impl Stop {
    fn error(diagnostic: Diagnostic) -> Stop {
        Stop::Error(Box::new(diagnostic))
    }
}

impl<'a> Reader<'a> {
    fn loc(&self, span: &Span) -> Loc {
        let start = self
            .lines
            .byte_of_char_on_line(span.start.line(), span.start.col());
        let end = self
            .lines
            .byte_of_char_on_line(span.end.line(), span.end.col());
        Loc {
            file: self.file.clone(),
            line: span.start.line() as u32,
            col: span.start.col() as u32 + 1,
            offset: start as u32,
            len: end.saturating_sub(start) as u32,
        }
    }

    fn next(&mut self) -> Result<Option<(Event<'a>, Span)>, Stop> {
        match self.events.next_event() {
            None => Ok(None),
            Some(Ok(event)) => Ok(Some(event)),
            Some(Err(error)) => {
                let marker = error.marker();
                let offset = self.lines.byte_of_char_on_line(marker.line(), marker.col());
                let loc = Loc {
                    file: self.file.clone(),
                    line: marker.line() as u32,
                    col: marker.col() as u32 + 1,
                    offset: offset as u32,
                    len: 1,
                };
                Err(Stop::error(
                    Diagnostic::error(Code::Syntax, loc, "", format!("yaml: {}", error.info()))
                        .hint("check the indentation and quoting around this position"),
                ))
            }
        }
    }

    /// Counts one more value read, refusing the file past [`limits::MAX_VALUES`].
    fn count_value(&mut self, loc: &Loc) -> Result<(), Stop> {
        self.values += 1;
        if self.values > limits::MAX_VALUES {
            return Err(Stop::error(
                Diagnostic::error(
                    Code::TooLarge,
                    loc.clone(),
                    "",
                    format!("more than {} values in one file", limits::MAX_VALUES),
                )
                .hint("split the fleet into several files"),
            ));
        }
        Ok(())
    }

    /// A copy of the anchored node an alias names, if the copy stays within the alias budgets
    /// and the file's value limit. Checked before copying: the copy is what costs the memory.
    fn expand_alias(&mut self, id: usize, loc: Loc) -> Result<Node, Stop> {
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(Stop::error(Diagnostic::error(
                Code::Syntax,
                loc,
                "",
                "alias to an unknown anchor",
            )));
        };
        let values = self.alias_values.saturating_add(anchored.values);
        let bytes = self.alias_bytes.saturating_add(anchored.scalar_bytes);
        let problem = if values > self.alias_value_budget {
            Some(format!(
                "aliases expand to more than {} values (the limit for a document of this size)",
                self.alias_value_budget
            ))
        } else if bytes > self.alias_byte_budget {
            Some(format!(
                "aliases copy more than {} bytes of text (the limit for a document of this size)",
                self.alias_byte_budget
            ))
        } else if self.values.saturating_add(anchored.values) > limits::MAX_VALUES {
            Some(format!(
                "more than {} values in one file, counting what aliases expand to",
                limits::MAX_VALUES
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(Stop::error(
                Diagnostic::error(Code::TooLarge, loc, "", message).hint(
                    "each alias copies its whole anchor; write the values out or use fewer aliases",
                ),
            ));
        }
        self.alias_values = values;
        self.alias_bytes = bytes;
        self.values += anchored.values;
        self.scalar_bytes += anchored.scalar_bytes;
        Ok(anchored.node.clone())
    }

    /// Reads the node that starts with `event`.
    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, Stop> {
        let loc = self.loc(&span);
        if depth > MAX_DEPTH {
            return Err(Stop::error(Diagnostic::error(
                Code::Syntax,
                loc,
                "",
                format!("nesting deeper than {MAX_DEPTH} levels"),
            )));
        }
        if let Event::Alias(id) = event {
            return self.expand_alias(id, loc);
        }
        // What this node costs, for an anchor on it: the counters' growth while it is read.
        let (values_before, bytes_before) = (self.values, self.scalar_bytes);
        self.count_value(&loc)?;
        let (value, anchor, text_col_offset) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.scalar_bytes += text.len();
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
                (value, anchor, u32::from(quoted))
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let Some((event, span)) = self.next()? else {
                        return Err(self.unexpected_end(loc));
                    };
                    if let Event::SequenceEnd = event {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                (Value::Seq(items), anchor, 0)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                loop {
                    let Some((event, span)) = self.next()? else {
                        return Err(self.unexpected_end(loc));
                    };
                    if let Event::MappingEnd = event {
                        break;
                    }
                    let key = self.node(event, span, depth + 1)?;
                    let Some((event, span)) = self.next()? else {
                        return Err(self.unexpected_end(loc));
                    };
                    let value = self.node(event, span, depth + 1)?;
                    let name = match key.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_string(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(Stop::error(
                                Diagnostic::error(
                                    Code::WrongType,
                                    key.loc,
                                    "",
                                    "a mapping key must be a plain word",
                                )
                                .expected("a string key"),
                            ));
                        }
                    };
                    entries.push((Key { name, loc: key.loc }, value));
                }
                (Value::Map(entries), anchor, 0)
            }
            other => {
                return Err(Stop::error(Diagnostic::error(
                    Code::Syntax,
                    loc,
                    "",
                    format!("unexpected yaml event {other:?}"),
                )));
            }
        };
        let node = Node {
            value,
            loc,
            scalar_may_be_list: false,
            text_col_offset,
        };
        if anchor > 0 {
            let anchored = Anchored {
                node: node.clone(),
                values: self.values - values_before,
                scalar_bytes: self.scalar_bytes - bytes_before,
            };
            self.anchors.insert(anchor, anchored);
        }
        Ok(node)
    }

    fn unexpected_end(&self, loc: Loc) -> Stop {
        Stop::error(Diagnostic::error(
            Code::Syntax,
            loc,
            "",
            "unexpected end of input",
        ))
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i128>()
    {
        return Value::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i128::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i128::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    if looks_like_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Value::Float(f);
    }
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        _ => Value::Str(text.to_string()),
    }
}

fn looks_like_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body.bytes().any(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
}

/// Reads every document of a YAML stream. A syntax error ends the stream (YAML cannot resume
/// after one); the documents before it are still returned.
pub(crate) fn read(file: &Arc<str>, text: &str) -> (Vec<Node>, Vec<Diagnostic>) {
    let mut reader = Reader {
        file: file.clone(),
        lines: LineIndex::new(text),
        events: Parser::new_from_str(text),
        anchors: HashMap::new(),
        values: 0,
        scalar_bytes: 0,
        alias_values: 0,
        alias_bytes: 0,
        alias_value_budget: limits::alias_value_budget(text.len()),
        alias_byte_budget: limits::alias_byte_budget(text.len()),
    };
    let mut documents = Vec::new();
    let mut diagnostics = Vec::new();
    let result: Result<(), Stop> = (|| {
        while let Some((event, span)) = reader.next()? {
            match event {
                Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd => {}
                Event::StreamEnd => break,
                event => {
                    let node = reader.node(event, span, 0)?;
                    // An empty document (only comments or `---`) is not a resource.
                    if !matches!(node.value, Value::Null) {
                        documents.push(node);
                    }
                }
            }
        }
        Ok(())
    })();
    if let Err(Stop::Error(diagnostic)) = result {
        diagnostics.push(*diagnostic);
    }
    (documents, diagnostics)
}

/// Writes a JSON value (the serialized model) as block-style YAML.
pub(crate) fn write_value(out: &mut String, value: &serde_json::Value, indent: usize) {
    use serde_json::Value as J;
    match value {
        J::Object(map) => {
            for (key, item) in map {
                push_indent(out, indent);
                out.push_str(&scalar_text(key));
                out.push(':');
                write_after_key(out, item, indent);
            }
        }
        J::Array(items) => {
            for item in items {
                push_indent(out, indent);
                out.push('-');
                match item {
                    J::Object(map) if !map.is_empty() => {
                        // The first key goes on the dash line, the rest line up beneath it.
                        let mut first = true;
                        for (key, inner) in map {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                push_indent(out, indent + 2);
                            }
                            out.push_str(&scalar_text(key));
                            out.push(':');
                            write_after_key(out, inner, indent + 2);
                        }
                    }
                    other => write_after_key(out, other, indent),
                }
            }
        }
        scalar => {
            push_indent(out, indent);
            out.push_str(&json_scalar(scalar));
            out.push('\n');
        }
    }
}

fn write_after_key(out: &mut String, value: &serde_json::Value, indent: usize) {
    use serde_json::Value as J;
    match value {
        J::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_value(out, value, indent + 2);
        }
        J::Array(items) if !items.is_empty() => {
            if items.iter().all(|i| !i.is_object() && !i.is_array()) {
                // Lists of scalars read best in flow style: `tags: [web, frontend]`.
                out.push_str(" [");
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&json_scalar_flow(item));
                }
                out.push_str("]\n");
            } else {
                out.push('\n');
                write_value(out, value, indent + 2);
            }
        }
        J::Object(_) => out.push_str(" {}\n"),
        J::Array(_) => out.push_str(" []\n"),
        scalar => {
            out.push(' ');
            out.push_str(&json_scalar(scalar));
            out.push('\n');
        }
    }
}

fn push_indent(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push(' ');
    }
}

fn json_scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => scalar_text(s),
        other => other.to_string(),
    }
}

fn json_scalar_flow(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) if plain_is_safe(s) && !s.contains([' ', ':']) => s.clone(),
        serde_json::Value::String(s) => serde_json::Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

/// A string as a YAML scalar: plain when that reads back as the same string, otherwise double
/// quoted (JSON string escapes are valid YAML double-quoted escapes).
fn scalar_text(s: &str) -> String {
    if plain_is_safe(s) {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || matches!(first, '/' | '_' | '.'))
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-' | '~' | '=' | '@')
        })
        && matches!(resolve_plain(s), Value::Str(_))
}
