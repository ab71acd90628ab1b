//! The toolsets of the MCP surface: every MCP tool belongs to exactly one, a node's MCP server
//! offers only the selected ones (`--toolsets`), and an `McpSurface` declares which ones a
//! model may use on its hosts. Here, rather than in the MCP adapter, because the spec names
//! them and the node enforces them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A group of MCP tools a model is offered or refused as a whole.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Toolset {
    /// This node and its peers: get_info, list_agents, exec, set_mode.
    Core,
    /// Files: read, write, list, stat, search, thumbnails, backups.
    Files,
    /// git status, pull, commit, push.
    Git,
    /// Fan-outs over a target selector and their job records.
    Fleet,
    /// Desired state: the spec tools, fleet_status, and the bundle operations.
    Spec,
    /// Imperative schedules.
    Schedule,
    /// MapReduce jobs.
    Mapreduce,
    /// Host-to-host file transfers.
    Transfer,
    /// Autonomous tasks: prompts delegated to a host's own AI CLI.
    Tasks,
}

/// The toolsets a node's MCP server offers when nothing selects them: what a model needs to
/// work on hosts, one at a time or many at once, within a tool list of about 30 KB.
pub const DEFAULT_TOOLSETS: [Toolset; 4] =
    [Toolset::Core, Toolset::Files, Toolset::Git, Toolset::Fleet];

impl Toolset {
    pub const ALL: [Toolset; 9] = [
        Toolset::Core,
        Toolset::Files,
        Toolset::Git,
        Toolset::Fleet,
        Toolset::Spec,
        Toolset::Schedule,
        Toolset::Mapreduce,
        Toolset::Transfer,
        Toolset::Tasks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Toolset::Core => "core",
            Toolset::Files => "files",
            Toolset::Git => "git",
            Toolset::Fleet => "fleet",
            Toolset::Spec => "spec",
            Toolset::Schedule => "schedule",
            Toolset::Mapreduce => "mapreduce",
            Toolset::Transfer => "transfer",
            Toolset::Tasks => "tasks",
        }
    }

    /// The valid names, for messages: `core, files, …, transfer` (and `all` where a list is
    /// parsed).
    pub fn names() -> String {
        Toolset::ALL.map(Toolset::as_str).join(", ")
    }

    /// Parses a comma-separated list such as `core,files` (`all` selects every toolset; spaces
    /// and empty items are ignored). An unknown name is an error naming it and the valid ones;
    /// an empty list is an error too, since a server with no tools is never what was meant.
    pub fn parse_list(text: &str) -> Result<BTreeSet<Toolset>, String> {
        let mut selected = BTreeSet::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name.eq_ignore_ascii_case("all") {
                selected.extend(Toolset::ALL);
            } else {
                selected.insert(name.parse::<Toolset>()?);
            }
        }
        if selected.is_empty() {
            return Err(format!(
                "no toolset selected: expected a comma-separated list of {}, or all",
                Toolset::names()
            ));
        }
        Ok(selected)
    }
}

impl std::str::FromStr for Toolset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        Toolset::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown toolset `{}`: expected {}, or all",
                    s.trim(),
                    Toolset::names()
                )
            })
    }
}

impl std::fmt::Display for Toolset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_selects_its_toolsets_and_all_selects_every_one() {
        assert_eq!(
            Toolset::parse_list("core, files,,git").unwrap(),
            BTreeSet::from([Toolset::Core, Toolset::Files, Toolset::Git])
        );
        assert_eq!(
            Toolset::parse_list("ALL").unwrap(),
            BTreeSet::from(Toolset::ALL)
        );
        assert_eq!(
            Toolset::parse_list("spec,all").unwrap().len(),
            Toolset::ALL.len()
        );
    }

    #[test]
    fn an_unknown_toolset_is_named_with_the_valid_ones() {
        let error = Toolset::parse_list("core,shell").unwrap_err();
        assert_eq!(
            error,
            "unknown toolset `shell`: expected core, files, git, fleet, spec, schedule, \
             mapreduce, transfer, tasks, or all"
        );
        let empty = Toolset::parse_list(" , ").unwrap_err();
        assert!(empty.starts_with("no toolset selected"), "{empty}");
    }
}
