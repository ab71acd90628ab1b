//! The JSON and JSONC clients' files, edited through `jsonc_parser`'s concrete syntax tree so
//! that every comment, blank line and indentation outside the entry stays as it was.

use std::path::Path;

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstNode, CstObject, CstRootNode};

use super::{Edit, EntryValue};

fn parse(text: &str, path: &Path) -> anyhow::Result<CstRootNode> {
    CstRootNode::parse(text, &ParseOptions::default()).map_err(|error| {
        anyhow::anyhow!(
            "{}:{}:{}: not valid JSON: {}; fix or move the file, then run this again",
            path.display(),
            error.line_display(),
            error.column_display(),
            error.kind()
        )
    })
}

/// A node's value as JSON: its own text read back (the crate's `serde_json` bridge is not
/// enabled; its `serde` one is).
fn node_json(node: &CstNode) -> Option<serde_json::Value> {
    jsonc_parser::parse_to_serde_value(&node.to_string(), &ParseOptions::default()).ok()
}

fn to_cst(value: &EntryValue) -> CstInputValue {
    match value {
        EntryValue::Str(text) => CstInputValue::String(text.clone()),
        EntryValue::Bool(flag) => CstInputValue::Bool(*flag),
        EntryValue::Int(number) => CstInputValue::Number(number.to_string()),
        EntryValue::List(items) => CstInputValue::Array(items.iter().map(to_cst).collect()),
        EntryValue::Map(fields) => {
            CstInputValue::Object(fields.iter().map(|(k, v)| (k.clone(), to_cst(v))).collect())
        }
    }
}

/// The top-level object, or why the file is not one this edits.
fn root_object(root: &CstRootNode) -> Result<CstObject, String> {
    match root.value() {
        None => Ok(root.object_value_or_set()),
        Some(value) => value
            .as_object()
            .ok_or_else(|| "its top level is not an object".to_string()),
    }
}

/// The servers' object under `key`, if the file has one.
fn servers(root: &CstObject, key: &str) -> Result<Option<CstObject>, String> {
    match root.get(key) {
        None => Ok(None),
        Some(prop) => prop
            .object_value()
            .map(Some)
            .ok_or_else(|| format!("its `{key}` is not an object")),
    }
}

/// Adds the entry `name` under `key`, or brings an existing one to `entry`: the keys the entry
/// has are set, keys the client added to it (Cline's `alwaysAllow`, `disabled`) are kept.
pub fn upsert(
    text: &str,
    key: &str,
    name: &str,
    entry: &EntryValue,
    path: &Path,
) -> anyhow::Result<Edit> {
    let root = parse(text, path)?;
    let root_obj = match root_object(&root) {
        Ok(object) => object,
        Err(reason) => return Ok(Edit::Unsupported(reason)),
    };
    let container = match servers(&root_obj, key) {
        Ok(container) => container,
        Err(reason) => return Ok(Edit::Unsupported(reason)),
    };
    match container {
        None => {
            root_obj.append(
                key,
                CstInputValue::Object(vec![(name.to_string(), to_cst(entry))]),
            );
        }
        Some(container) => match container.get(name) {
            None => {
                container.append(name, to_cst(entry));
            }
            Some(prop) => match (prop.object_value(), entry) {
                (Some(existing), EntryValue::Map(fields)) => {
                    for (field, wanted) in fields {
                        match existing.get(field) {
                            Some(current)
                                if current.value().and_then(|v| node_json(&v))
                                    == Some(wanted.to_json()) => {}
                            Some(current) => current.set_value(to_cst(wanted)),
                            None => {
                                existing.append(field, to_cst(wanted));
                            }
                        }
                    }
                }
                _ => prop.set_value(to_cst(entry)),
            },
        },
    }
    let new_text = root.to_string();
    Ok(if new_text == text {
        Edit::Unchanged
    } else {
        Edit::Changed(new_text)
    })
}

/// Removes the entry `name` under `key`; `Unchanged` when there is none.
pub fn remove(text: &str, key: &str, name: &str, path: &Path) -> anyhow::Result<Edit> {
    let root = parse(text, path)?;
    let root_obj = match root.value() {
        None => return Ok(Edit::Unchanged),
        Some(value) => match value.as_object() {
            Some(object) => object,
            None => return Ok(Edit::Unchanged),
        },
    };
    let Ok(Some(container)) = servers(&root_obj, key) else {
        return Ok(Edit::Unchanged);
    };
    let Some(prop) = container.get(name) else {
        return Ok(Edit::Unchanged);
    };
    prop.remove();
    Ok(Edit::Changed(root.to_string()))
}

/// The entry `name` under `key`, as JSON, if the file has it.
pub fn find(
    text: &str,
    key: &str,
    name: &str,
    path: &Path,
) -> anyhow::Result<Option<serde_json::Value>> {
    let root = parse(text, path)?;
    let Some(root_obj) = root.value().and_then(|v| v.as_object()) else {
        return Ok(None);
    };
    let Ok(Some(container)) = servers(&root_obj, key) else {
        return Ok(None);
    };
    Ok(container
        .get(name)
        .and_then(|prop| prop.value())
        .and_then(|value| node_json(&value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> EntryValue {
        EntryValue::Map(vec![
            ("command".into(), EntryValue::Str("/bin/ra".into())),
            (
                "args".into(),
                EntryValue::List(vec![EntryValue::Str("mcp".into())]),
            ),
            (
                "env".into(),
                EntryValue::Map(vec![(
                    "REMOTE_AGENTS_TOKEN".into(),
                    EntryValue::Str("t".into()),
                )]),
            ),
        ])
    }

    const ORIGINAL: &str = r#"{
  // my servers
  "mcpServers": {
    "git": {
      "command": "uvx", // the git one
      "args": ["mcp-server-git"]
    }
  },
  /* theme */
  "theme": "dark",
}
"#;

    #[test]
    fn upsert_then_remove_gives_back_the_original_bytes() {
        let path = Path::new("c.json");
        let Edit::Changed(added) = upsert(ORIGINAL, "mcpServers", "ra", &entry(), path).unwrap()
        else {
            panic!("expected a change");
        };
        assert!(
            added.contains("// the git one") && added.contains("/* theme */"),
            "{added}"
        );
        let found = find(&added, "mcpServers", "ra", path).unwrap().unwrap();
        assert_eq!(found, entry().to_json());
        assert_eq!(
            upsert(&added, "mcpServers", "ra", &entry(), path).unwrap(),
            Edit::Unchanged
        );
        let Edit::Changed(removed) = remove(&added, "mcpServers", "ra", path).unwrap() else {
            panic!("expected a change");
        };
        assert_eq!(removed, ORIGINAL);
        assert_eq!(
            remove(ORIGINAL, "mcpServers", "ra", path).unwrap(),
            Edit::Unchanged
        );
    }

    #[test]
    fn an_empty_file_gets_the_key_and_the_entry() {
        let Edit::Changed(text) = upsert("", "mcp", "ra", &entry(), Path::new("o.json")).unwrap()
        else {
            panic!("expected a change");
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["mcp"]["ra"], entry().to_json());
    }

    #[test]
    fn a_parse_error_names_file_line_and_column() {
        let error = upsert(
            "{\n  \"a\": ,\n}",
            "mcp",
            "ra",
            &entry(),
            Path::new("/x/o.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("/x/o.json:2:"), "{error}");
    }

    #[test]
    fn a_top_level_array_is_left_alone() {
        assert!(matches!(
            upsert("[1]", "mcp", "ra", &entry(), Path::new("o.json")).unwrap(),
            Edit::Unsupported(_)
        ));
    }
}
