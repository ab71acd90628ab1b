//! The AI clients `install-mcp` knows: each one's config file on Linux and macOS and the shape
//! of a stdio server entry in it. Pure: paths come from the home folder and environment passed in.

use std::path::{Path, PathBuf};

use super::EntryValue;

/// The clients, by the ids `--client` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    Cline,
    Roo,
    Kilo,
    Windsurf,
    Zed,
    Opencode,
    Continue,
    Goose,
}

impl Client {
    pub const ALL: [Client; 11] = [
        Client::ClaudeDesktop,
        Client::ClaudeCode,
        Client::Cursor,
        Client::Cline,
        Client::Roo,
        Client::Kilo,
        Client::Windsurf,
        Client::Zed,
        Client::Opencode,
        Client::Continue,
        Client::Goose,
    ];

    /// The id `--client` takes.
    pub fn id(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::ClaudeCode => "claude-code",
            Client::Cursor => "cursor",
            Client::Cline => "cline",
            Client::Roo => "roo",
            Client::Kilo => "kilo",
            Client::Windsurf => "windsurf",
            Client::Zed => "zed",
            Client::Opencode => "opencode",
            Client::Continue => "continue",
            Client::Goose => "goose",
        }
    }

    /// Where in the file the servers live and how.
    pub fn layout(self) -> Layout {
        match self {
            Client::ClaudeDesktop
            | Client::ClaudeCode
            | Client::Cursor
            | Client::Cline
            | Client::Roo
            | Client::Kilo
            | Client::Windsurf => Layout::JsonMap { key: "mcpServers" },
            Client::Zed => Layout::JsonMap {
                key: "context_servers",
            },
            Client::Opencode => Layout::JsonMap { key: "mcp" },
            Client::Continue => Layout::YamlList { key: "mcpServers" },
            Client::Goose => Layout::YamlMap { key: "extensions" },
        }
    }

    /// The entry that runs `server` over stdio, in this client's own shape. A `YamlList` entry
    /// carries its name inside; the others are keyed by it.
    pub fn entry(self, server: &ServerCommand) -> EntryValue {
        let args = || EntryValue::List(server.args.iter().cloned().map(EntryValue::Str).collect());
        let env = || {
            EntryValue::Map(
                server
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), EntryValue::Str(v.clone())))
                    .collect(),
            )
        };
        let command = || EntryValue::Str(server.command.clone());
        let fields: Vec<(&str, EntryValue)> = match self {
            // Claude Code's own `claude mcp add` writes `"type": "stdio"` in every stdio entry.
            Client::ClaudeCode => vec![
                ("type", EntryValue::Str("stdio".into())),
                ("command", command()),
                ("args", args()),
                ("env", env()),
            ],
            // Zed's settings UI marks hand-added servers `"source": "custom"`; without it Zed
            // falls back to guessing the variant from the other keys.
            Client::Zed => vec![
                ("source", EntryValue::Str("custom".into())),
                ("command", command()),
                ("args", args()),
                ("env", env()),
            ],
            // opencode: one command array (program first) and `environment`.
            Client::Opencode => {
                let mut command_line = vec![EntryValue::Str(server.command.clone())];
                command_line.extend(server.args.iter().cloned().map(EntryValue::Str));
                vec![
                    ("type", EntryValue::Str("local".into())),
                    ("command", EntryValue::List(command_line)),
                    ("environment", env()),
                    ("enabled", EntryValue::Bool(true)),
                ]
            }
            Client::Continue => vec![
                ("name", EntryValue::Str(server.name.clone())),
                ("command", command()),
                ("args", args()),
                ("env", env()),
            ],
            // goose's `ExtensionConfig::Stdio`: `cmd`, `envs`, and a timeout in seconds.
            Client::Goose => vec![
                ("name", EntryValue::Str(server.name.clone())),
                ("type", EntryValue::Str("stdio".into())),
                ("cmd", command()),
                ("args", args()),
                ("envs", env()),
                ("enabled", EntryValue::Bool(true)),
                ("timeout", EntryValue::Int(300)),
                (
                    "description",
                    EntryValue::Str("remote-agents: the fleet of machines".into()),
                ),
            ],
            Client::ClaudeDesktop
            | Client::Cursor
            | Client::Cline
            | Client::Roo
            | Client::Kilo
            | Client::Windsurf => vec![("command", command()), ("args", args()), ("env", env())],
        };
        EntryValue::Map(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// Text for a config file that does not exist yet, before the entry is added: Continue
    /// refuses a `config.yaml` without its `name`, `version` and `schema`.
    pub fn new_file_text(self) -> &'static str {
        match self {
            Client::Continue => "name: Local Config\nversion: 1.0.0\nschema: v1\n",
            _ => "",
        }
    }
}

/// Where the servers sit in a client's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// JSON or JSONC: an object of entries keyed by server name under a top-level key.
    JsonMap { key: &'static str },
    /// YAML: a list of entries, each with a `name`, under a top-level key.
    YamlList { key: &'static str },
    /// YAML: a mapping of entries keyed by server name under a top-level key.
    YamlMap { key: &'static str },
}

impl Layout {
    pub fn key(self) -> &'static str {
        match self {
            Layout::JsonMap { key } | Layout::YamlList { key } | Layout::YamlMap { key } => key,
        }
    }
}

/// What the entry runs: the program, its arguments and its environment (the secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCommand {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The operating systems whose paths are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    MacOs,
}

impl Os {
    /// This machine's, or `None` where the clients' paths are not known (Windows).
    pub fn current() -> Option<Os> {
        if cfg!(target_os = "macos") {
            Some(Os::MacOs)
        } else if cfg!(target_os = "linux") {
            Some(Os::Linux)
        } else {
            None
        }
    }
}

/// The config file candidates of `client`, best first: the first that exists is edited, and the
/// first is created when none does. Only opencode has two (`opencode.json`, `opencode.jsonc`).
pub fn config_paths(
    client: Client,
    os: Os,
    home: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<PathBuf> {
    // `$XDG_CONFIG_HOME` counts only when absolute, as the XDG spec says.
    let xdg_config = || {
        env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"))
    };
    // Electron apps (Claude Desktop, VS Code) keep their data in the platform's app-data folder,
    // which on Linux follows `$XDG_CONFIG_HOME`.
    let app_data = || match os {
        Os::MacOs => home.join("Library/Application Support"),
        Os::Linux => xdg_config(),
    };
    let vscode_global_storage = |extension: &str, file: &str| {
        app_data()
            .join("Code/User/globalStorage")
            .join(extension)
            .join("settings")
            .join(file)
    };
    match client {
        Client::ClaudeDesktop => vec![app_data().join("Claude/claude_desktop_config.json")],
        Client::ClaudeCode => vec![home.join(".claude.json")],
        Client::Cursor => vec![home.join(".cursor/mcp.json")],
        Client::Cline => vec![vscode_global_storage(
            "saoudrizwan.claude-dev",
            "cline_mcp_settings.json",
        )],
        Client::Roo => vec![vscode_global_storage(
            "rooveterinaryinc.roo-cline",
            "mcp_settings.json",
        )],
        Client::Kilo => vec![vscode_global_storage(
            "kilocode.kilo-code",
            "mcp_settings.json",
        )],
        Client::Windsurf => vec![home.join(".codeium/windsurf/mcp_config.json")],
        // Zed reads `~/.config/zed` on macOS whatever XDG says, and the XDG folder on Linux.
        Client::Zed => match os {
            Os::MacOs => vec![home.join(".config/zed/settings.json")],
            Os::Linux => vec![xdg_config().join("zed/settings.json")],
        },
        // opencode and goose use the XDG layout on both systems.
        Client::Opencode => vec![
            xdg_config().join("opencode/opencode.json"),
            xdg_config().join("opencode/opencode.jsonc"),
        ],
        Client::Continue => vec![home.join(".continue/config.yaml")],
        Client::Goose => vec![xdg_config().join("goose/config.yaml")],
    }
}

/// The file to edit: the first candidate that exists, else the first.
pub fn config_path(
    client: Client,
    os: Os,
    home: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> PathBuf {
    let candidates = config_paths(client, os, home, env);
    candidates
        .iter()
        .find(|p| p.exists())
        .unwrap_or(&candidates[0])
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(client: Client, os: Os, xdg: Option<&str>) -> String {
        let xdg = xdg.map(str::to_string);
        let env = move |name: &str| {
            if name == "XDG_CONFIG_HOME" {
                xdg.clone()
            } else {
                None
            }
        };
        config_paths(client, os, Path::new("/home/u"), &env)[0]
            .display()
            .to_string()
    }

    #[test]
    fn every_client_has_its_path_on_linux_and_macos() {
        let expected: [(Client, &str, &str); 11] = [
            (
                Client::ClaudeDesktop,
                "/home/u/.config/Claude/claude_desktop_config.json",
                "/home/u/Library/Application Support/Claude/claude_desktop_config.json",
            ),
            (
                Client::ClaudeCode,
                "/home/u/.claude.json",
                "/home/u/.claude.json",
            ),
            (
                Client::Cursor,
                "/home/u/.cursor/mcp.json",
                "/home/u/.cursor/mcp.json",
            ),
            (
                Client::Cline,
                "/home/u/.config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
                "/home/u/Library/Application Support/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
            ),
            (
                Client::Roo,
                "/home/u/.config/Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
                "/home/u/Library/Application Support/Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
            ),
            (
                Client::Kilo,
                "/home/u/.config/Code/User/globalStorage/kilocode.kilo-code/settings/mcp_settings.json",
                "/home/u/Library/Application Support/Code/User/globalStorage/kilocode.kilo-code/settings/mcp_settings.json",
            ),
            (
                Client::Windsurf,
                "/home/u/.codeium/windsurf/mcp_config.json",
                "/home/u/.codeium/windsurf/mcp_config.json",
            ),
            (
                Client::Zed,
                "/home/u/.config/zed/settings.json",
                "/home/u/.config/zed/settings.json",
            ),
            (
                Client::Opencode,
                "/home/u/.config/opencode/opencode.json",
                "/home/u/.config/opencode/opencode.json",
            ),
            (
                Client::Continue,
                "/home/u/.continue/config.yaml",
                "/home/u/.continue/config.yaml",
            ),
            (
                Client::Goose,
                "/home/u/.config/goose/config.yaml",
                "/home/u/.config/goose/config.yaml",
            ),
        ];
        for (client, linux, macos) in expected {
            assert_eq!(path_of(client, Os::Linux, None), linux, "{client:?} linux");
            assert_eq!(path_of(client, Os::MacOs, None), macos, "{client:?} macos");
        }
    }

    #[test]
    fn xdg_config_home_moves_only_the_clients_that_follow_it() {
        let xdg = Some("/x");
        assert_eq!(
            path_of(Client::ClaudeDesktop, Os::Linux, xdg),
            "/x/Claude/claude_desktop_config.json"
        );
        assert_eq!(
            path_of(Client::Cline, Os::Linux, xdg),
            "/x/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json"
        );
        assert_eq!(path_of(Client::Zed, Os::Linux, xdg), "/x/zed/settings.json");
        assert_eq!(
            path_of(Client::Zed, Os::MacOs, xdg),
            "/home/u/.config/zed/settings.json"
        );
        assert_eq!(
            path_of(Client::Opencode, Os::MacOs, xdg),
            "/x/opencode/opencode.json"
        );
        assert_eq!(
            path_of(Client::Goose, Os::Linux, xdg),
            "/x/goose/config.yaml"
        );
        assert_eq!(
            path_of(Client::ClaudeDesktop, Os::MacOs, xdg),
            "/home/u/Library/Application Support/Claude/claude_desktop_config.json"
        );
        assert_eq!(
            path_of(Client::Cursor, Os::Linux, xdg),
            "/home/u/.cursor/mcp.json"
        );
        // A relative XDG_CONFIG_HOME is ignored, as the spec says.
        assert_eq!(
            path_of(Client::Goose, Os::Linux, Some("rel")),
            "/home/u/.config/goose/config.yaml"
        );
    }

    #[test]
    fn ids_are_the_public_client_names() {
        use clap::ValueEnum;
        for client in Client::ALL {
            let parsed = Client::from_str(client.id(), false).expect("parses");
            assert_eq!(parsed, client);
        }
    }
}
