//! The YAML clients' files (Continue's list of `mcpServers`, goose's map of `extensions`):
//! `yaml_edit`'s lossless tree finds the entry's exact bytes, and the edit splices only those, so
//! every other byte (comments, quoting, blank lines) stays as it was.

use std::path::Path;
use std::str::FromStr;

use yaml_edit::{Document, Mapping, YamlError, YamlNode};

use super::{Edit, EntryValue};

/// How the servers are kept under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `- name: …` items (Continue).
    List,
    /// `name:` keys (goose).
    Map,
}

/// What a file's text is to the editor.
enum Parsed {
    /// Nothing but blank lines and comments: the key is added at the end.
    Empty,
    Document(Document),
    /// Valid YAML the lossless tree cannot give back byte for byte (several documents,
    /// comments outside the document); why.
    Unsupported(String),
}

fn parse(text: &str, path: &Path) -> anyhow::Result<Parsed> {
    let only_comments = text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    });
    if only_comments {
        return Ok(Parsed::Empty);
    }
    match Document::from_str(text) {
        Ok(doc) => {
            let has_content = doc.as_mapping().is_some()
                || doc.as_sequence().is_some()
                || doc.as_scalar().is_some()
                || doc.as_tagged().is_some();
            Ok(if has_content {
                Parsed::Document(doc)
            } else {
                Parsed::Empty
            })
        }
        Err(YamlError::Parse {
            message,
            line,
            column,
        }) => Err(anyhow::anyhow!(
            "{}:{}:{}: not valid YAML: {message}; fix or move the file, then run this again",
            path.display(),
            line.unwrap_or(1),
            column.unwrap_or(1)
        )),
        Err(other) => Ok(Parsed::Unsupported(other.to_string())),
    }
}

/// A scalar's value as JSON, the way YAML 1.2's core schema reads an unquoted one.
fn scalar_json(scalar: &yaml_edit::Scalar) -> serde_json::Value {
    if !scalar.is_quoted() {
        if scalar.is_null() {
            return serde_json::Value::Null;
        }
        if let Some(flag) = scalar.as_bool() {
            return serde_json::Value::Bool(flag);
        }
        if let Some(number) = scalar.as_i64() {
            return serde_json::Value::from(number);
        }
    }
    serde_json::Value::String(scalar.as_string())
}

fn node_json(node: &YamlNode) -> serde_json::Value {
    if let Some(scalar) = node.as_scalar() {
        scalar_json(scalar)
    } else if let Some(mapping) = node.as_mapping() {
        serde_json::Value::Object(
            mapping
                .entries()
                .filter_map(|entry| {
                    let key = entry.key_node()?.as_scalar()?.as_string();
                    let value = entry.value_node().map(|v| node_json(&v));
                    Some((key, value.unwrap_or(serde_json::Value::Null)))
                })
                .collect(),
        )
    } else if let Some(sequence) = node.as_sequence() {
        serde_json::Value::Array(sequence.values().map(|v| node_json(&v)).collect())
    } else {
        serde_json::Value::Null
    }
}

/// Whether `existing` already has every key of `wanted` with the same value (keys the client
/// added itself do not count).
fn covers(existing: &serde_json::Value, wanted: &EntryValue) -> bool {
    let EntryValue::Map(fields) = wanted else {
        return *existing == wanted.to_json();
    };
    fields
        .iter()
        .all(|(key, value)| existing.get(key) == Some(&value.to_json()))
}

/// A found entry: its bytes, from the start of its line (indentation and `- ` included) to its
/// end, and the column its text starts at.
struct Found {
    start: usize,
    end: usize,
    indent: usize,
    value: serde_json::Value,
}

/// The start of the line holding `offset`, if only indentation (and, for a list item, its dash)
/// comes before it on that line.
fn line_start(text: &str, offset: usize, dash: bool) -> Option<usize> {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let prefix = text[start..offset].trim_start_matches(' ');
    let ok = if dash {
        prefix.starts_with('-') && prefix[1..].chars().all(|c| c == ' ')
    } else {
        prefix.is_empty()
    };
    ok.then_some(start)
}

/// Where the servers are and what is there.
enum Servers {
    /// No key: it is added at the end of the file.
    Absent,
    /// The entries (block style), with the column they start at and where the last one ends.
    Block {
        entries: Vec<(String, Found)>,
        indent: usize,
        end: usize,
    },
}

fn servers(text: &str, doc: &Document, key: &str, shape: Shape) -> Result<Servers, String> {
    let Some(root) = doc.as_mapping() else {
        return Err("its top level is not a mapping".into());
    };
    let Some(value) = root.get(key) else {
        return Ok(Servers::Absent);
    };
    let mut entries = Vec::new();
    match shape {
        Shape::List => {
            let Some(sequence) = value.as_sequence().filter(|s| !s.is_flow_style()) else {
                return Err(format!(
                    "its `{key}` is not a block list (`- name: …` items)"
                ));
            };
            for item in sequence.values() {
                let range = item.byte_range();
                let (start, end) = (range.start as usize, range.end as usize);
                let Some(line) = line_start(text, start, true) else {
                    return Err(format!("an item of `{key}` does not start its own line"));
                };
                let value = node_json(&item);
                let name = value
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string();
                let indent = text[line..].len() - text[line..].trim_start_matches(' ').len();
                entries.push((
                    name,
                    Found {
                        start: line,
                        end,
                        indent,
                        value,
                    },
                ));
            }
        }
        Shape::Map => {
            let Some(mapping) = value.as_mapping().filter(|m| !m.is_flow_style()) else {
                return Err(format!("its `{key}` is not a block mapping"));
            };
            for entry in mapping.entries() {
                let range = entry.byte_range();
                let (start, end) = (range.start as usize, range.end as usize);
                let Some(line) = line_start(text, start, false) else {
                    return Err(format!("an entry of `{key}` does not start its own line"));
                };
                let name = entry
                    .key_node()
                    .and_then(|k| k.as_scalar().map(|s| s.as_string()))
                    .unwrap_or_default();
                let value = entry
                    .value_node()
                    .map_or(serde_json::Value::Null, |v| node_json(&v));
                entries.push((
                    name,
                    Found {
                        start: line,
                        end,
                        indent: start - line,
                        value,
                    },
                ));
            }
        }
    }
    let Some((_, first)) = entries.first() else {
        return Err(format!("its `{key}` is empty"));
    };
    let indent = first.indent;
    let end = entries.iter().map(|(_, f)| f.end).max().unwrap_or(0);
    Ok(Servers::Block {
        entries,
        indent,
        end,
    })
}

/// A key written plain when YAML reads it back as the same string, else double-quoted.
fn key_text(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if plain && !reads_as_other_than_string(key) {
        key.to_string()
    } else {
        quoted(key)
    }
}

/// A string value: plain when unambiguous (a path, a word, a URL-free flag-free value), else
/// double-quoted; JSON's string escapes are YAML's double-quoted ones.
fn string_text(value: &str) -> String {
    let plain = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain && !reads_as_other_than_string(value) {
        value.to_string()
    } else {
        quoted(value)
    }
}

fn reads_as_other_than_string(text: &str) -> bool {
    matches!(
        text.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
    )
}

fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn scalar_text(value: &EntryValue) -> Option<String> {
    match value {
        EntryValue::Str(text) => Some(string_text(text)),
        EntryValue::Bool(flag) => Some(flag.to_string()),
        EntryValue::Int(number) => Some(number.to_string()),
        EntryValue::List(items) if items.is_empty() => Some("[]".into()),
        EntryValue::Map(fields) if fields.is_empty() => Some("{}".into()),
        EntryValue::List(_) | EntryValue::Map(_) => None,
    }
}

/// `fields` as block mapping lines at `indent`; the first line's indentation is left to the
/// caller (it may follow a `- `).
fn render_fields(fields: &[(String, EntryValue)], indent: usize, out: &mut String) {
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&key_text(key));
        out.push(':');
        render_value(value, indent, out);
    }
}

/// ` scalar\n`, or a nested block on the next lines two columns further in.
fn render_value(value: &EntryValue, indent: usize, out: &mut String) {
    if let Some(text) = scalar_text(value) {
        out.push(' ');
        out.push_str(&text);
        out.push('\n');
        return;
    }
    out.push('\n');
    match value {
        EntryValue::List(items) => {
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                match item {
                    EntryValue::Map(fields) if !fields.is_empty() => {
                        out.push(' ');
                        render_fields(fields, indent + 4, out);
                    }
                    _ => render_value(item, indent + 2, out),
                }
            }
        }
        EntryValue::Map(fields) => {
            out.push_str(&" ".repeat(indent + 2));
            render_fields(fields, indent + 2, out);
        }
        _ => {}
    }
}

/// The entry's lines at `indent`, ending in a newline.
fn render_entry(shape: Shape, name: &str, entry: &EntryValue, indent: usize) -> String {
    let mut out = " ".repeat(indent);
    let fields: &[(String, EntryValue)] = match entry {
        EntryValue::Map(fields) => fields,
        _ => &[],
    };
    match shape {
        Shape::List => {
            out.push_str("- ");
            render_fields(fields, indent + 2, &mut out);
        }
        Shape::Map => {
            out.push_str(&key_text(name));
            out.push(':');
            render_value(entry, indent, &mut out);
        }
    }
    out
}

/// Adds the entry `name` under `key`, or replaces an existing one that differs from `entry` in
/// any key `entry` has.
pub fn upsert(
    text: &str,
    key: &str,
    shape: Shape,
    name: &str,
    entry: &EntryValue,
    path: &Path,
) -> anyhow::Result<Edit> {
    let found = match parse(text, path)? {
        Parsed::Empty => Servers::Absent,
        Parsed::Unsupported(reason) => return Ok(Edit::Unsupported(reason)),
        Parsed::Document(doc) => match servers(text, &doc, key, shape) {
            Ok(found) => found,
            Err(reason) => return Ok(Edit::Unsupported(reason)),
        },
    };
    let new_text = match found {
        Servers::Absent => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&key_text(key));
            out.push_str(":\n");
            out.push_str(&render_entry(shape, name, entry, 2));
            out
        }
        Servers::Block {
            entries,
            indent,
            end,
        } => match entries.iter().find(|(n, _)| n == name) {
            Some((_, existing)) if covers(&existing.value, entry) => return Ok(Edit::Unchanged),
            Some((_, existing)) => {
                let mut block = render_entry(shape, name, entry, existing.indent);
                // The last entry of a file without a final newline ends without one.
                if !text[..existing.end].ends_with('\n') {
                    block.pop();
                }
                format!(
                    "{}{}{}",
                    &text[..existing.start],
                    block,
                    &text[existing.end..]
                )
            }
            None => {
                let separator = if text[..end].ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                format!(
                    "{}{}{}{}",
                    &text[..end],
                    separator,
                    render_entry(shape, name, entry, indent),
                    &text[end..]
                )
            }
        },
    };
    Ok(Edit::Changed(new_text))
}

/// The root entry `key: …` with its bytes, when it starts its own line.
fn root_entry_range(text: &str, root: &Mapping, key: &str) -> Option<(usize, usize)> {
    let entry = root.entries().find(|e| {
        e.key_node()
            .and_then(|k| k.as_scalar().map(|s| s.as_string()))
            .is_some_and(|k| k == key)
    })?;
    let range = entry.byte_range();
    let start = line_start(text, range.start as usize, false)?;
    Some((start, range.end as usize))
}

/// Removes the entry `name` under `key` (and the key, when that entry was its only one: YAML has
/// no empty block collection); `Unchanged` when there is none.
pub fn remove(
    text: &str,
    key: &str,
    shape: Shape,
    name: &str,
    path: &Path,
) -> anyhow::Result<Edit> {
    let Parsed::Document(doc) = parse(text, path)? else {
        return Ok(Edit::Unchanged);
    };
    let Ok(Servers::Block { entries, .. }) = servers(text, &doc, key, shape) else {
        return Ok(Edit::Unchanged);
    };
    let Some((_, found)) = entries.iter().find(|(n, _)| n == name) else {
        return Ok(Edit::Unchanged);
    };
    let (start, end) = if entries.len() == 1 {
        let root = doc.as_mapping().expect("servers() checked the root");
        root_entry_range(text, &root, key).unwrap_or((found.start, found.end))
    } else {
        (found.start, found.end)
    };
    Ok(Edit::Changed(format!("{}{}", &text[..start], &text[end..])))
}

/// The entry `name` under `key`, as JSON, if the file has it.
pub fn find(
    text: &str,
    key: &str,
    shape: Shape,
    name: &str,
    path: &Path,
) -> anyhow::Result<Option<serde_json::Value>> {
    let Parsed::Document(doc) = parse(text, path)? else {
        return Ok(None);
    };
    let Ok(Servers::Block { entries, .. }) = servers(text, &doc, key, shape) else {
        return Ok(None);
    };
    Ok(entries
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, found)| found.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(shape: Shape) -> EntryValue {
        let mut fields = Vec::new();
        if shape == Shape::List {
            fields.push(("name".to_string(), EntryValue::Str("ra".into())));
        }
        fields.extend([
            ("command".to_string(), EntryValue::Str("/bin/ra".into())),
            (
                "args".to_string(),
                EntryValue::List(vec![
                    EntryValue::Str("mcp".into()),
                    EntryValue::Str("--tags".into()),
                    EntryValue::Str("a,b".into()),
                ]),
            ),
            (
                "env".to_string(),
                EntryValue::Map(vec![(
                    "REMOTE_AGENTS_TOKEN".into(),
                    EntryValue::Str("s3cr3t: yes".into()),
                )]),
            ),
            ("enabled".to_string(), EntryValue::Bool(true)),
            ("timeout".to_string(), EntryValue::Int(300)),
        ]);
        EntryValue::Map(fields)
    }

    const CONTINUE: &str = "name: Local\nversion: 1.0.0\nschema: v1\nmcpServers:\n  # sqlite\n  - name: SQLite\n    command: npx\n    args:\n      - \"-y\"\n# after\n";
    const GOOSE: &str = "GOOSE_PROVIDER: anthropic\nextensions:\n  developer:\n    enabled: true\n    type: builtin\n  # a comment\nGOOSE_MODE: smart_approve\n";

    #[test]
    fn upsert_then_remove_gives_back_the_original_bytes() {
        let path = Path::new("c.yaml");
        for (original, shape, key) in [
            (CONTINUE, Shape::List, "mcpServers"),
            (GOOSE, Shape::Map, "extensions"),
            ("a: 1", Shape::List, "mcpServers"),
        ] {
            let wanted = entry(shape);
            let Edit::Changed(added) = upsert(original, key, shape, "ra", &wanted, path).unwrap()
            else {
                panic!("expected a change");
            };
            let found = find(&added, key, shape, "ra", path).unwrap().expect(&added);
            assert_eq!(found, wanted.to_json(), "{added}");
            assert_eq!(
                upsert(&added, key, shape, "ra", &wanted, path).unwrap(),
                Edit::Unchanged,
                "{added}"
            );
            let Edit::Changed(removed) = remove(&added, key, shape, "ra", path).unwrap() else {
                panic!("expected a change");
            };
            // The file without a final newline gets one before the new key; the rest is exact.
            let original = if original.ends_with('\n') {
                original.to_string()
            } else {
                format!("{original}\n")
            };
            assert_eq!(removed, original);
        }
    }

    #[test]
    fn a_changed_entry_is_replaced_in_place() {
        let path = Path::new("c.yaml");
        let Edit::Changed(added) = upsert(
            GOOSE,
            "extensions",
            Shape::Map,
            "ra",
            &entry(Shape::Map),
            path,
        )
        .unwrap() else {
            panic!("expected a change");
        };
        let other = EntryValue::Map(vec![("cmd".into(), EntryValue::Str("/other".into()))]);
        let Edit::Changed(replaced) =
            upsert(&added, "extensions", Shape::Map, "ra", &other, path).unwrap()
        else {
            panic!("expected a change");
        };
        assert!(replaced.contains("  ra:\n    cmd: /other\n"), "{replaced}");
        assert!(
            replaced.ends_with("GOOSE_MODE: smart_approve\n"),
            "{replaced}"
        );
    }

    #[test]
    fn a_file_of_comments_gets_the_key_after_them() {
        let path = Path::new("c.yaml");
        let Edit::Changed(added) = upsert(
            "# nothing yet\n",
            "mcpServers",
            Shape::List,
            "ra",
            &entry(Shape::List),
            path,
        )
        .unwrap() else {
            panic!("expected a change");
        };
        assert!(
            added.starts_with("# nothing yet\nmcpServers:\n  - name: ra\n"),
            "{added}"
        );
        assert_eq!(
            find(&added, "mcpServers", Shape::List, "ra", path).unwrap(),
            Some(entry(Shape::List).to_json())
        );
    }

    #[test]
    fn a_parse_error_names_file_line_and_column() {
        let error = upsert(
            "a: 1\nb: [\n",
            "mcpServers",
            Shape::List,
            "ra",
            &entry(Shape::List),
            Path::new("/x/c.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("/x/c.yaml:3:1: not valid YAML"),
            "{error}"
        );
    }

    #[test]
    fn a_flow_list_is_left_alone() {
        assert!(matches!(
            upsert(
                "mcpServers: []\n",
                "mcpServers",
                Shape::List,
                "ra",
                &entry(Shape::List),
                Path::new("c.yaml")
            )
            .unwrap(),
            Edit::Unsupported(_)
        ));
    }
}
