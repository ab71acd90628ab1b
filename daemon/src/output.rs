//! The one output format of every data command (`-o text|json|yaml`; `table` is an alias of
//! `text` where commands used to call their text form a table).

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people: tables, folded groups and a summary line.
    #[default]
    #[value(alias = "table")]
    Text,
    /// The data as JSON: pretty-printed, or one object a line for a stream (the audit log).
    Json,
    /// The same data as YAML.
    Yaml,
}

impl Output {
    /// The data in the machine-readable formats; `None` for `text`, which each command renders
    /// itself.
    pub fn data<T: Serialize + ?Sized>(self, value: &T) -> anyhow::Result<Option<String>> {
        Ok(match self {
            Output::Text => None,
            Output::Json => Some(format!("{}\n", serde_json::to_string_pretty(value)?)),
            Output::Yaml => Some(remote_agents_spec::json_to_yaml(&serde_json::to_value(
                value,
            )?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_an_alias_of_text_and_yaml_renders_the_same_data_as_json() {
        assert_eq!(Output::from_str("table", false), Ok(Output::Text));
        assert_eq!(Output::from_str("text", false), Ok(Output::Text));
        let value = serde_json::json!({"host": "web-1", "ok": true});
        assert_eq!(Output::Text.data(&value).unwrap(), None);
        let json = Output::Json.data(&value).unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            value
        );
        let yaml = Output::Yaml.data(&value).unwrap().unwrap();
        assert!(yaml.contains("host: web-1"), "{yaml}");
    }
}
