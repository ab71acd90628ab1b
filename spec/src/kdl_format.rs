//! KDL v2: reading into the spanned tree and writing the model back. The only module that
//! knows KDL syntax.
//!
//! Mapping (documented in `spec/README.md`): a top-level node is a document, its name the kind,
//! its first argument `metadata.name`, its children the `spec` fields (a `metadata` child holds
//! the labels). Inside, a node with children or properties is a mapping; a node with one
//! argument is a scalar (or a list of one where a list is expected); a node with several
//! arguments is a list of scalars; a node whose children are all named `-` is a list, and a
//! `-` item's first argument is its `name` field.

use crate::diagnostic::{Code, Diagnostic, LineIndex, Loc};
use crate::limits;
use crate::model::API_VERSION;
use crate::tree::{Key, Node, Value};
use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;
use std::sync::Arc;

/// Nesting deeper than this is rejected rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    file: Arc<str>,
    lines: LineIndex<'a>,
    diagnostics: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn loc(&self, span: SourceSpan) -> Loc {
        let (line, col) = self.lines.line_col(span.offset());
        Loc {
            file: self.file.clone(),
            line,
            col,
            offset: span.offset() as u32,
            len: span.len() as u32,
        }
    }

    fn scalar(&self, entry: &KdlEntry) -> Node {
        let value = match entry.value() {
            KdlValue::String(s) => Value::Str(s.clone()),
            KdlValue::Integer(i) => Value::Int(*i),
            KdlValue::Float(f) => Value::Float(*f),
            KdlValue::Bool(b) => Value::Bool(*b),
            KdlValue::Null => Value::Null,
        };
        let mut loc = self.loc(entry.span());
        // The entry span can include the whitespace before the value; point at the value.
        let text = self.lines_text(&loc);
        let skipped = text.len() - text.trim_start().len();
        loc.offset += skipped as u32;
        loc.len = loc.len.saturating_sub(skipped as u32);
        let (line, col) = self.lines.line_col(loc.offset as usize);
        loc.line = line;
        loc.col = col;
        let quoted = self.lines_text(&loc).starts_with('"');
        Node {
            value,
            loc,
            scalar_may_be_list: true,
            text_col_offset: u32::from(quoted),
        }
    }

    fn lines_text(&self, loc: &Loc) -> &str {
        let text = self.lines.text();
        let start = (loc.offset as usize).min(text.len());
        let end = (start + loc.len as usize).min(text.len());
        text.get(start..end).unwrap_or("")
    }

    fn name_loc(&self, node: &KdlNode) -> Loc {
        self.loc(node.name().span())
    }

    /// The value a (non top-level) node stands for.
    fn value(&mut self, node: &KdlNode, depth: usize) -> Node {
        let loc = self.name_loc(node);
        if depth > MAX_DEPTH {
            self.diagnostics.push(Diagnostic::error(
                Code::Syntax,
                loc.clone(),
                "",
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
            return Node {
                value: Value::Null,
                loc,
                scalar_may_be_list: true,
                text_col_offset: 0,
            };
        }
        let is_item = node.name().value() == "-";
        let arguments: Vec<&KdlEntry> = node
            .entries()
            .iter()
            .filter(|e| e.name().is_none())
            .collect();
        let properties: Vec<&KdlEntry> = node
            .entries()
            .iter()
            .filter(|e| e.name().is_some())
            .collect();
        let children = node.children();

        if children.is_none() && properties.is_empty() {
            let value = match arguments.as_slice() {
                [] => Value::Null,
                [one] => return self.scalar(one),
                many => Value::Seq(many.iter().map(|e| self.scalar(e)).collect()),
            };
            return Node {
                value,
                loc,
                scalar_may_be_list: true,
                text_col_offset: 0,
            };
        }

        if let Some(children) = children {
            let all_items = !children.nodes().is_empty()
                && children.nodes().iter().all(|c| c.name().value() == "-");
            if all_items && properties.is_empty() && arguments.is_empty() {
                let items = children
                    .nodes()
                    .iter()
                    .map(|c| self.value(c, depth + 1))
                    .collect();
                return Node {
                    value: Value::Seq(items),
                    loc,
                    scalar_may_be_list: true,
                    text_col_offset: 0,
                };
            }
        }

        let mut entries = Vec::new();
        for (i, argument) in arguments.iter().enumerate() {
            if is_item && i == 0 {
                let value = self.scalar(argument);
                entries.push((
                    Key {
                        name: "name".to_string(),
                        loc: value.loc.clone(),
                    },
                    value,
                ));
            } else {
                let at = self.scalar(argument).loc;
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::Syntax,
                        at,
                        node.name().value(),
                        "unexpected argument on a node that has children or properties",
                    )
                    .hint("move the value into a child node or a property"),
                );
            }
        }
        for property in properties {
            let Some(name) = property.name() else {
                continue;
            };
            entries.push((
                Key {
                    name: name.value().to_string(),
                    loc: self.loc(name.span()),
                },
                self.scalar(property),
            ));
        }
        if let Some(children) = children {
            for child in children.nodes() {
                let key = Key {
                    name: child.name().value().to_string(),
                    loc: self.name_loc(child),
                };
                let value = self.value(child, depth + 1);
                entries.push((key, value));
            }
        }
        Node {
            value: Value::Map(entries),
            loc,
            scalar_may_be_list: true,
            text_col_offset: 0,
        }
    }

    /// A top-level node: one document.
    fn document(&mut self, node: &KdlNode) -> Node {
        let loc = self.name_loc(node);
        let key = |name: &str, loc: &Loc| Key {
            name: name.to_string(),
            loc: loc.clone(),
        };
        let plain = |value: Value, loc: &Loc| Node {
            value,
            loc: loc.clone(),
            scalar_may_be_list: true,
            text_col_offset: 0,
        };
        let mut api_version = plain(Value::Str(API_VERSION.to_string()), &loc);
        let mut metadata = Vec::new();
        let mut arguments = 0;
        for entry in node.entries() {
            match entry.name().map(|n| n.value()) {
                Some("apiVersion") => api_version = self.scalar(entry),
                Some(other) => {
                    let at = self.loc(entry.span());
                    self.diagnostics.push(
                        Diagnostic::error(
                            Code::UnknownField,
                            at,
                            other,
                            format!("unknown property `{other}` on a document node"),
                        )
                        .expected("apiVersion")
                        .hint("spec fields go in the node's children"),
                    );
                }
                None => {
                    arguments += 1;
                    let value = self.scalar(entry);
                    if arguments == 1 {
                        metadata.push((key("name", &value.loc), value));
                    } else {
                        self.diagnostics.push(
                            Diagnostic::error(
                                Code::Syntax,
                                value.loc,
                                "metadata.name",
                                "a document node takes one argument, its name",
                            )
                            .expected("`Kind \"name\" { ... }`"),
                        );
                    }
                }
            }
        }
        let mut spec = Vec::new();
        if let Some(children) = node.children() {
            for child in children.nodes() {
                let child_key = Key {
                    name: child.name().value().to_string(),
                    loc: self.name_loc(child),
                };
                let value = self.value(child, 1);
                if child_key.name == "metadata" {
                    match value.value {
                        Value::Map(entries) => metadata.extend(entries),
                        Value::Null => {}
                        _ => self.diagnostics.push(
                            Diagnostic::error(
                                Code::WrongType,
                                child_key.loc,
                                "metadata",
                                "metadata must be a block of fields",
                            )
                            .expected("`metadata { labels { ... } }`"),
                        ),
                    }
                } else {
                    spec.push((child_key, value));
                }
            }
        }
        let kind = plain(Value::Str(node.name().value().to_string()), &loc);
        Node {
            value: Value::Map(vec![
                (key("apiVersion", &api_version.loc.clone()), api_version),
                (key("kind", &loc), kind),
                (key("metadata", &loc), plain(Value::Map(metadata), &loc)),
                (key("spec", &loc), plain(Value::Map(spec), &loc)),
            ]),
            loc: loc.clone(),
            scalar_may_be_list: true,
            text_col_offset: 0,
        }
    }
}

/// Where KDL text passes the parser's limits ([`limits::MAX_KDL_NODES`],
/// [`limits::MAX_KDL_VALUES`]), found without parsing it: the kdl parser keeps kilobytes per
/// node, so a 4 MiB file of one-word lines would take gigabytes before any check on its result.
///
/// The count is of words (runs of characters between whitespace and `;{}`), and a node for the
/// first word after each newline, `;`, `{` or `}`. Every node the parser would build starts
/// after such a separator and every value is at least one word, so the count never falls below
/// the parser's; words inside strings and comments make it higher, which only matters for
/// files far from any real spec.
fn beyond_parser_limits(text: &str) -> Option<(usize, String)> {
    let mut beyond = None;
    count_words(text, |offset, nodes, words| {
        if nodes > limits::MAX_KDL_NODES {
            beyond = Some((
                offset,
                format!("more than {} nodes in one KDL file", limits::MAX_KDL_NODES),
            ));
        } else if words > limits::MAX_KDL_VALUES {
            beyond = Some((
                offset,
                format!(
                    "more than {} values in one KDL file",
                    limits::MAX_KDL_VALUES
                ),
            ));
        }
        beyond.is_none()
    });
    beyond
}

/// Calls `word(offset, nodes, words)` at the start of every word with the counts so far,
/// while it returns true.
fn count_words(text: &str, mut word: impl FnMut(usize, usize, usize) -> bool) {
    let is_separator = |c: char| {
        matches!(
            c,
            ';' | '{' | '}' | '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        )
    };
    let is_space = |c: char| c.is_whitespace() || c == '\u{feff}';
    let (mut nodes, mut words) = (0usize, 0usize);
    let mut node_starts = true;
    let mut in_word = false;
    for (offset, c) in text.char_indices() {
        if is_separator(c) {
            node_starts = true;
            in_word = false;
        } else if is_space(c) {
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
            if std::mem::take(&mut node_starts) {
                nodes += 1;
            }
            if !word(offset, nodes, words) {
                return;
            }
        }
    }
}

/// Reads every document of a KDL file; syntax errors are all reported (the kdl parser
/// recovers), and then no documents are returned from that file.
pub(crate) fn read(file: &Arc<str>, text: &str) -> (Vec<Node>, Vec<Diagnostic>) {
    let mut reader = Reader {
        file: file.clone(),
        lines: LineIndex::new(text),
        diagnostics: Vec::new(),
    };
    if let Some((offset, message)) = beyond_parser_limits(text) {
        let (line, col) = reader.lines.line_col(offset);
        let loc = Loc {
            file: file.clone(),
            line,
            col,
            offset: offset as u32,
            len: 1,
        };
        let diagnostic = Diagnostic::error(Code::TooLarge, loc, "", message)
            .hint("split the fleet into several files");
        return (Vec::new(), vec![diagnostic]);
    }
    let document = match KdlDocument::parse_v2(text) {
        Ok(document) => document,
        Err(error) => {
            // The kdl parser's recovery reports cascades: every enclosing block as unclosed
            // and every following line as "expected end of document". Keep what a person
            // needs: the first real error, or else the innermost unclosed block.
            let is_brace = |d: &&kdl::KdlDiagnostic| {
                d.message.as_deref().is_some_and(|m| {
                    m.starts_with("No closing '}'") || m.starts_with("Closing '}' was not found")
                })
            };
            let mut chosen: Vec<&kdl::KdlDiagnostic> =
                error.diagnostics.iter().filter(|d| !is_brace(d)).collect();
            chosen.sort_by_key(|d| d.span.offset());
            chosen.dedup_by(|later, earlier| later.message == earlier.message);
            if chosen.is_empty() {
                chosen = error
                    .diagnostics
                    .iter()
                    .filter(|d| {
                        d.message
                            .as_deref()
                            .is_some_and(|m| m.starts_with("No closing '}'"))
                    })
                    .max_by_key(|d| d.span.offset())
                    .into_iter()
                    .collect();
            }
            if chosen.is_empty() {
                chosen = error.diagnostics.iter().take(1).collect();
            }
            let diagnostics = chosen
                .into_iter()
                .map(|d| {
                    let mut diagnostic = Diagnostic::error(
                        Code::Syntax,
                        reader.loc(d.span),
                        "",
                        format!(
                            "kdl: {}",
                            d.message.as_deref().unwrap_or("cannot parse this")
                        ),
                    );
                    if let Some(help) = &d.help {
                        diagnostic = diagnostic.hint(help.clone());
                    }
                    diagnostic
                })
                .collect();
            return (Vec::new(), diagnostics);
        }
    };
    let nodes = document
        .nodes()
        .iter()
        .map(|node| reader.document(node))
        .collect();
    (nodes, reader.diagnostics)
}

/// Writes one serialized document as a KDL node.
pub(crate) fn document_node(document: &serde_json::Value) -> KdlNode {
    let mut node = KdlNode::new(document["kind"].as_str().unwrap_or("Unknown"));
    let metadata = &document["metadata"];
    node.entries_mut().push(KdlEntry::new(
        metadata["name"].as_str().unwrap_or_default().to_string(),
    ));
    let mut children = KdlDocument::new();
    if let Some(labels) = metadata.get("labels") {
        let mut meta = KdlNode::new("metadata");
        meta.ensure_children()
            .nodes_mut()
            .push(value_node("labels", labels));
        children.nodes_mut().push(meta);
    }
    if let Some(spec) = document["spec"].as_object() {
        for (key, value) in spec {
            children.nodes_mut().push(value_node(key, value));
        }
    }
    node.set_children(children);
    node
}

fn scalar_value(value: &serde_json::Value) -> KdlValue {
    match value {
        serde_json::Value::String(s) => KdlValue::String(s.clone()),
        serde_json::Value::Bool(b) => KdlValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => KdlValue::Integer(i128::from(i)),
            None => match n.as_u64() {
                Some(u) => KdlValue::Integer(i128::from(u)),
                None => KdlValue::Float(n.as_f64().unwrap_or_default()),
            },
        },
        _ => KdlValue::Null,
    }
}

fn value_node(key: &str, value: &serde_json::Value) -> KdlNode {
    use serde_json::Value as J;
    let mut node = KdlNode::new(key);
    match value {
        J::Object(map) => {
            let children = node.ensure_children();
            for (k, v) in map {
                children.nodes_mut().push(value_node(k, v));
            }
        }
        J::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            for item in items {
                node.entries_mut().push(KdlEntry::new(scalar_value(item)));
            }
        }
        J::Array(items) => {
            let children = node.ensure_children();
            for item in items {
                children.nodes_mut().push(item_node(item));
            }
        }
        J::Null => {}
        scalar => node.entries_mut().push(KdlEntry::new(scalar_value(scalar))),
    }
    node
}

/// A list item: `- "web-1" { tags web; }`, the `name` field (when it is a string) as the
/// argument, which the reader maps back to `name`.
fn item_node(item: &serde_json::Value) -> KdlNode {
    let Some(map) = item.as_object() else {
        return value_node("-", item);
    };
    let Some(serde_json::Value::String(name)) = map.get("name") else {
        return value_node("-", item);
    };
    let mut node = KdlNode::new("-");
    node.entries_mut().push(KdlEntry::new(name.clone()));
    let children = node.ensure_children();
    for (key, value) in map.iter().filter(|(key, _)| key.as_str() != "name") {
        children.nodes_mut().push(value_node(key, value));
    }
    node
}

/// Writes documents as one KDL file.
pub(crate) fn write(documents: &[serde_json::Value]) -> String {
    let mut out = KdlDocument::new();
    for document in documents {
        out.nodes_mut().push(document_node(document));
    }
    out.autoformat();
    escape_forbidden_characters(&out.to_string())
}

/// The kdl crate writes every string quoted but escapes only `\\ \" \n \r \t \b \f`; KDL v2 also
/// forbids other newlines (NEL, VT, LS, PS), control and bidi-override characters and the BOM
/// from appearing literally. The writer emits them only inside quoted strings (everything else
/// it writes is ASCII), so escaping them everywhere is exact. Found by the round-trip proptest.
fn escape_forbidden_characters(text: &str) -> String {
    let forbidden = |c: char| {
        matches!(c,
            '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{85}'
            | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    if !text.contains(forbidden) {
        return text.to_string();
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if forbidden(c) {
            escaped.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed_counts(nodes: &[KdlNode]) -> (usize, usize) {
        let mut counts = (0, 0);
        for node in nodes {
            counts.0 += 1;
            counts.1 += 1 + node.entries().len();
            if let Some(children) = node.children() {
                let (n, w) = parsed_counts(children.nodes());
                counts.0 += n;
                counts.1 += w;
            }
        }
        counts
    }

    /// The limits are checked on the word count before parsing, so it must never count fewer
    /// nodes or values than the parser builds, whatever the spelling: comments, slashdash,
    /// semicolons, properties, strings, type annotations, line continuations.
    #[test]
    fn the_word_count_never_falls_below_what_the_parser_builds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut texts: Vec<String> = ["fleet-kdl", "secure-fleet"]
            .iter()
            .flat_map(|folder| std::fs::read_dir(root.join(folder)).expect("examples"))
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "kdl"))
            .map(|path| std::fs::read_to_string(path).expect("read"))
            .collect();
        assert!(!texts.is_empty());
        texts.extend(
            [
                "a;b;c 1 2;d{e;f{g}}",
                "a /* x */ b /- c\n/* y */d \"s p a c e\" k=v (t)1 #true",
                "/-a 1\n/-b { c }\nd \\\n  e f",
                "a\u{2028}b\u{85}c d\u{a0}e",
                "a #\"raw \" string\"#",
                "b \"\"\"\n  multi\n  line\n  \"\"\"\nc",
                "a { b; c }; d{e}",
            ]
            .map(String::from),
        );
        for text in &texts {
            let Ok(document) = KdlDocument::parse_v2(text) else {
                panic!("not KDL: {text}");
            };
            let (real_nodes, real_words) = parsed_counts(document.nodes());
            let mut counted = (0, 0);
            count_words(text, |_, nodes, words| {
                counted = (nodes, words);
                true
            });
            assert!(
                counted.0 >= real_nodes && counted.1 >= real_words,
                "counted {counted:?}, parsed ({real_nodes}, {real_words}): {text}"
            );
        }
    }
}
