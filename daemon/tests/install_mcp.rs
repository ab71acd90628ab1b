//! `remote-agents install-mcp` / `uninstall-mcp` run as a user would, against a temporary HOME
//! holding a realistic config of each of the 11 clients: the merged entry's shape, every other
//! byte kept, idempotence, the backup, `--dry-run`, uninstall; then the registered command is
//! started from a written config and lists its tools over stdio.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};

const TOKEN: &str = "s3cr3t-room-token";
const RELAY: &str = "wss://relay.example.net/ws";
const COMMAND: &str = "/opt/remote-agents/bin/remote-agents";

/// A temporary HOME and the binary run inside it, with nothing from the outer environment that
/// would move the clients' files.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("temporary HOME"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_remote-agents"));
        command
            .env("HOME", self.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("REMOTE_AGENTS_LAUNCHER")
            .env("RUST_LOG", "warn");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("run remote-agents")
    }

    fn data_dir(&self) -> String {
        self.path().join("node-data").display().to_string()
    }

    fn install_args(&self, client: &str) -> Vec<String> {
        [
            "install-mcp",
            "--client",
            client,
            "--relay",
            RELAY,
            "--room",
            "lab",
            "--token",
            TOKEN,
            "--name",
            "workstation",
            "--tags",
            "gpu,lab",
            "--command",
            COMMAND,
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([self.data_dir()])
        .collect()
    }

    fn install(&self, client: &str, extra: &[&str]) -> Output {
        let mut args = self.install_args(client);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.command()
            .args(&args)
            .output()
            .expect("run install-mcp")
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `<file>.bak-*` siblings of `path`, in name order.
fn backups(path: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.bak-", path.file_name().unwrap().to_string_lossy());
    let mut found: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    found.sort();
    found
}

/// A YAML value as JSON, read with the same lossless parser the installer edits with.
fn yaml_json(node: &yaml_edit::YamlNode) -> Value {
    if let Some(scalar) = node.as_scalar() {
        if !scalar.is_quoted() {
            if let Some(flag) = scalar.as_bool() {
                return Value::Bool(flag);
            }
            if let Some(number) = scalar.as_i64() {
                return Value::from(number);
            }
        }
        Value::String(scalar.as_string())
    } else if let Some(mapping) = node.as_mapping() {
        Value::Object(
            mapping
                .entries()
                .map(|e| {
                    (
                        e.key_node().unwrap().as_scalar().unwrap().as_string(),
                        e.value_node().map_or(Value::Null, |v| yaml_json(&v)),
                    )
                })
                .collect(),
        )
    } else if let Some(sequence) = node.as_sequence() {
        Value::Array(sequence.values().map(|v| yaml_json(&v)).collect())
    } else {
        Value::Null
    }
}

/// The whole file as JSON, whatever its format.
fn file_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    if path.extension().is_some_and(|e| e == "yaml") {
        let doc = yaml_edit::Document::from_str(&text).expect("valid YAML");
        let root = doc.as_mapping().expect("a mapping");
        Value::Object(
            root.entries()
                .map(|e| {
                    (
                        e.key_node().unwrap().as_scalar().unwrap().as_string(),
                        e.value_node().map_or(Value::Null, |v| yaml_json(&v)),
                    )
                })
                .collect(),
        )
    } else {
        jsonc_parser::parse_to_serde_value(&text, &Default::default()).expect("valid JSONC")
    }
}

/// Every line of `original` is in `edited`, in order: the edit only added lines.
fn assert_only_added_lines(original: &str, edited: &str) {
    let mut edited_lines = edited.lines();
    for line in original.lines() {
        assert!(
            edited_lines.any(|l| l == line),
            "line {line:?} of the original is gone or moved:\n{edited}"
        );
    }
}

struct Case {
    client: &'static str,
    /// The config file, relative to HOME.
    file: &'static str,
    original: &'static str,
    /// Where the entry is: the JSON pointer of the server's entry in the parsed file.
    entry_pointer: &'static str,
    /// The other servers' pointers, which must hold the same values after the install.
    others: &'static [&'static str],
}

fn expected_args(home: &Home) -> Vec<Value> {
    [
        "mcp",
        "--relay",
        RELAY,
        "--room",
        "lab",
        "--name",
        "workstation",
        "--tags",
        "gpu,lab",
        "--data-dir",
    ]
    .iter()
    .map(|s| json!(s))
    .chain([json!(home.data_dir())])
    .collect()
}

fn expected_entry(client: &str, home: &Home) -> Value {
    let args = expected_args(home);
    let env = json!({"REMOTE_AGENTS_TOKEN": TOKEN});
    match client {
        "claude-code" => json!({"type": "stdio", "command": COMMAND, "args": args, "env": env}),
        "zed" => json!({"source": "custom", "command": COMMAND, "args": args, "env": env}),
        "opencode" => {
            let mut command = vec![json!(COMMAND)];
            command.extend(args);
            json!({"type": "local", "command": command, "environment": env, "enabled": true})
        }
        "continue" => {
            json!({"name": "remote-agents", "command": COMMAND, "args": args, "env": env})
        }
        "goose" => json!({
            "name": "remote-agents", "type": "stdio", "cmd": COMMAND, "args": args,
            "envs": env, "enabled": true, "timeout": 300,
            "description": "remote-agents: the fleet of machines",
        }),
        _ => json!({"command": COMMAND, "args": args, "env": env}),
    }
}

fn exercise(case: &Case) {
    let home = Home::new();
    let path = home.path().join(case.file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, case.original).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = file_json(&path);

    // --dry-run prints the diff, with the token hidden, and writes nothing.
    let dry = home.install(case.client, &["--dry-run"]);
    assert_ok(&dry);
    let dry_text = stdout(&dry);
    assert!(
        dry_text.contains("+++ ") && dry_text.contains("\n+"),
        "{dry_text}"
    );
    assert!(
        dry_text.contains("<token>") && !dry_text.contains(TOKEN),
        "{dry_text}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), case.original);
    assert!(backups(&path).is_empty());

    // The install merges the entry in the client's shape and keeps everything else.
    assert_ok(&home.install(case.client, &[]));
    let installed = std::fs::read_to_string(&path).unwrap();
    let after = file_json(&path);
    let entry = after
        .pointer(case.entry_pointer)
        .unwrap_or_else(|| panic!("no entry at {} in:\n{installed}", case.entry_pointer));
    assert_eq!(entry, &expected_entry(case.client, &home), "{installed}");
    for other in case.others {
        assert_eq!(
            after.pointer(other),
            before.pointer(other),
            "{other} changed"
        );
        assert!(after.pointer(other).is_some(), "{other} missing");
    }
    assert_only_added_lines(case.original, &installed);
    // The token is in the environment block only.
    assert_eq!(installed.matches(TOKEN).count(), 1, "{installed}");
    let env_key = match case.client {
        "opencode" => "environment",
        "goose" => "envs",
        _ => "env",
    };
    assert_eq!(entry[env_key]["REMOTE_AGENTS_TOKEN"], TOKEN);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the file's mode is kept");
    let first_backups = backups(&path);
    assert_eq!(first_backups.len(), 1, "{first_backups:?}");
    assert_eq!(
        std::fs::read_to_string(&first_backups[0]).unwrap(),
        case.original
    );

    // The second run changes nothing and makes no backup.
    let again = home.install(case.client, &[]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("nothing changed"),
        "{}",
        stdout(&again)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), installed);
    assert_eq!(backups(&path), first_backups);

    // uninstall --dry-run shows the removal and writes nothing.
    let dry = home.run(&["uninstall-mcp", "--client", case.client, "--dry-run"]);
    assert_ok(&dry);
    assert!(stdout(&dry).contains("\n-"), "{}", stdout(&dry));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), installed);

    // uninstall removes exactly the entry: the original bytes come back.
    assert_ok(&home.run(&["uninstall-mcp", "--client", case.client]));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), case.original);
    let all_backups = backups(&path);
    assert_eq!(all_backups.len(), 2, "{all_backups:?}");
    let new_backup: Vec<&PathBuf> = all_backups
        .iter()
        .filter(|b| !first_backups.contains(b))
        .collect();
    assert_eq!(new_backup.len(), 1, "{all_backups:?}");
    assert_eq!(std::fs::read_to_string(new_backup[0]).unwrap(), installed);

    let nothing = home.run(&["uninstall-mcp", "--client", case.client]);
    assert_ok(&nothing);
    assert!(
        stdout(&nothing).contains("nothing to remove"),
        "{}",
        stdout(&nothing)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), case.original);
}

#[test]
fn claude_desktop() {
    exercise(&Case {
        client: "claude-desktop",
        file: ".config/Claude/claude_desktop_config.json",
        original: r#"{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/home/me/Desktop"
      ]
    }
  },
  "globalShortcut": "Ctrl+Space"
}
"#,
        entry_pointer: "/mcpServers/remote-agents",
        others: &["/mcpServers/filesystem", "/globalShortcut"],
    });
}

#[test]
fn claude_code() {
    exercise(&Case {
        client: "claude-code",
        file: ".claude.json",
        original: r#"{
  "numStartups": 42,
  "installMethod": "npm-global",
  "autoUpdates": true,
  "projects": {
    "/home/me/src/app": {
      "allowedTools": [],
      "mcpServers": {
        "postgres": {
          "type": "stdio",
          "command": "npx",
          "args": ["-y", "@modelcontextprotocol/server-postgres"],
          "env": {}
        }
      },
      "hasTrustDialogAccepted": true
    }
  },
  "mcpServers": {
    "sentry": {
      "type": "http",
      "url": "https://mcp.sentry.dev/mcp"
    }
  },
  "hasCompletedOnboarding": true
}
"#,
        entry_pointer: "/mcpServers/remote-agents",
        others: &[
            "/mcpServers/sentry",
            "/projects",
            "/numStartups",
            "/hasCompletedOnboarding",
        ],
    });
}

#[test]
fn cursor() {
    exercise(&Case {
        client: "cursor",
        file: ".cursor/mcp.json",
        original: r#"{
	"mcpServers": {
		"github": {
			"url": "https://api.githubcopilot.com/mcp/",
			"headers": { "Authorization": "Bearer ${env:GITHUB_TOKEN}" }
		},
		"memory": {
			"command": "npx",
			"args": ["-y", "@modelcontextprotocol/server-memory"]
		}
	}
}
"#,
        entry_pointer: "/mcpServers/remote-agents",
        others: &["/mcpServers/github", "/mcpServers/memory"],
    });
}

#[test]
fn cline() {
    exercise(&Case {
        client: "cline",
        file: ".config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        original: r#"{
  "mcpServers": {
    "git": {
      "command": "uvx",
      "args": ["mcp-server-git", "--repository", "/home/me/src/app"],
      "disabled": false,
      "alwaysAllow": ["git_status"],
      "networkTimeout": 60000
    }
  }
}"#,
        entry_pointer: "/mcpServers/remote-agents",
        others: &["/mcpServers/git"],
    });
}

#[test]
fn roo() {
    exercise(&Case {
        client: "roo",
        file: ".config/Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
        original: r#"{
  "mcpServers": {
    "context7": {
      "command": "npx",
      "args": ["-y", "@upstash/context7-mcp"],
      "alwaysAllow": [],
      "disabled": false
    },
    "remote": {
      "type": "streamable-http",
      "url": "https://example.com/mcp"
    }
  }
}
"#,
        entry_pointer: "/mcpServers/remote-agents",
        others: &["/mcpServers/context7", "/mcpServers/remote"],
    });
}

#[test]
fn kilo() {
    exercise(&Case {
        client: "kilo",
        file: ".config/Code/User/globalStorage/kilocode.kilo-code/settings/mcp_settings.json",
        original: r#"{
  "mcpServers": {
    "server1": {
      "command": "python",
      "args": ["/home/me/server.py"],
      "env": { "API_KEY": "k" },
      "alwaysAllow": ["tool1"],
      "disabled": false
    }
  }
}
"#,
        entry_pointer: "/mcpServers/remote-agents",
        others: &["/mcpServers/server1"],
    });
}

#[test]
fn windsurf() {
    exercise(&Case {
        client: "windsurf",
        file: ".codeium/windsurf/mcp_config.json",
        original: r#"{
    "mcpServers": {
        "figma": {
            "serverUrl": "https://mcp.figma.com/mcp"
        },
        "puppeteer": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-puppeteer"],
            "env": {}
        }
    }
}
"#,
        entry_pointer: "/mcpServers/remote-agents",
        others: &["/mcpServers/figma", "/mcpServers/puppeteer"],
    });
}

#[test]
fn zed() {
    exercise(&Case {
        client: "zed",
        file: ".config/zed/settings.json",
        original: r#"// Zed settings
//
// For information on how to configure Zed, see the Zed
// documentation: https://zed.dev/docs/configuring-zed
{
  "theme": "One Dark", // the dark one
  "ui_font_size": 16,
  /* the agent's servers */
  "context_servers": {
    "postgres-context-server": {
      "source": "extension",
      "enabled": true,
      "settings": {
        "database_url": "postgresql://localhost/app",
      },
    },
    "local-mcp-server": {
      "command": "some-command",
      "args": ["arg-1"],
      "env": {},
    },
  },
  "vim_mode": false,
}
"#,
        entry_pointer: "/context_servers/remote-agents",
        others: &[
            "/context_servers/postgres-context-server",
            "/context_servers/local-mcp-server",
            "/theme",
            "/vim_mode",
        ],
    });
}

#[test]
fn opencode() {
    exercise(&Case {
        client: "opencode",
        // The `.jsonc` spelling: the installer edits the file that exists.
        file: ".config/opencode/opencode.jsonc",
        original: r#"{
  "$schema": "https://opencode.ai/config.json",
  // the model I use
  "model": "anthropic/claude-sonnet-4-5",
  "mcp": {
    /* docs search */
    "context7": {
      "type": "remote",
      "url": "https://mcp.context7.com/mcp",
      "enabled": true
    },
    "my-local-mcp-server": {
      "type": "local",
      "command": ["bun", "x", "my-mcp-command"],
      "enabled": true,
      "environment": { "MY_ENV_VAR": "value" }
    }
  }
}
"#,
        entry_pointer: "/mcp/remote-agents",
        others: &[
            "/mcp/context7",
            "/mcp/my-local-mcp-server",
            "/model",
            "/$schema",
        ],
    });
}

#[test]
fn continue_dev() {
    exercise(&Case {
        client: "continue",
        file: ".continue/config.yaml",
        original: r#"name: Local Config
version: 1.0.0
schema: v1

models:
  - name: Llama 3.1 8B
    provider: ollama
    model: llama3.1:8b
    roles:
      - chat
      - edit

# tools for agent mode
mcpServers:
  # the database
  - name: SQLite MCP
    command: npx
    args:
      - "-y"
      - "mcp-sqlite"
      - "/home/me/app.db"

context:
  - provider: code
"#,
        entry_pointer: "/mcpServers/1",
        others: &["/mcpServers/0", "/models", "/context", "/name"],
    });
}

#[test]
fn goose() {
    exercise(&Case {
        client: "goose",
        file: ".config/goose/config.yaml",
        original: r#"GOOSE_PROVIDER: anthropic
GOOSE_MODEL: claude-sonnet-4-5
GOOSE_MODE: smart_approve
extensions:
  developer:
    bundled: true
    display_name: Developer
    enabled: true
    name: developer
    timeout: 300
    type: builtin
  # fetches web pages
  fetch:
    args:
    - mcp-server-fetch
    bundled: null
    cmd: uvx
    description: Fetch web pages
    enabled: true
    env_keys: []
    envs: {}
    name: fetch
    timeout: 300
    type: stdio
GOOSE_TELEMETRY_ENABLED: false
"#,
        entry_pointer: "/extensions/remote-agents",
        others: &[
            "/extensions/developer",
            "/extensions/fetch",
            "/GOOSE_MODE",
            "/GOOSE_TELEMETRY_ENABLED",
        ],
    });
}

#[test]
fn a_missing_config_is_created_private_with_its_folders() {
    let home = Home::new();
    let output = home.install("claude-desktop", &[]);
    assert_ok(&output);
    let path = home
        .path()
        .join(".config/Claude/claude_desktop_config.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a new file holding the token is private");
    assert_eq!(
        file_json(&path)["mcpServers"]["remote-agents"],
        expected_entry("claude-desktop", &home)
    );
    assert!(backups(&path).is_empty(), "nothing to back up");

    // Continue's new file gets the keys Continue requires.
    assert_ok(&home.install("continue", &[]));
    let continue_config = file_json(&home.path().join(".continue/config.yaml"));
    assert_eq!(continue_config["schema"], "v1");
    assert_eq!(
        continue_config["mcpServers"][0],
        expected_entry("continue", &home)
    );
}

#[test]
fn a_config_that_does_not_parse_is_refused_with_its_position() {
    let home = Home::new();
    let path = home.path().join(".cursor/mcp.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let broken = "{\n  \"mcpServers\": {\n    \"a\": ,\n  }\n}\n";
    std::fs::write(&path, broken).unwrap();
    let output = home.install("cursor", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3:", path.display())),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    assert!(backups(&path).is_empty());
}

#[test]
fn an_unexpected_shape_is_left_alone_and_the_entry_printed() {
    let home = Home::new();
    let path = home.path().join(".continue/config.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let flow =
        "name: Local Config\nversion: 1.0.0\nschema: v1\nmcpServers: [{name: a, command: b}]\n";
    std::fs::write(&path, flow).unwrap();
    let output = home.install("continue", &[]);
    assert_ok(&output);
    let text = stdout(&output);
    assert!(text.contains("left untouched"), "{text}");
    assert!(text.contains("- name: remote-agents"), "{text}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), flow);
    assert!(backups(&path).is_empty());
}

#[test]
fn without_client_the_clients_and_their_files_are_listed() {
    let home = Home::new();
    assert_ok(&home.install("windsurf", &[]));
    let output = home.run(&["install-mcp"]);
    assert_ok(&output);
    let text = stdout(&output);
    for client in [
        "claude-desktop",
        "claude-code",
        "cursor",
        "cline",
        "roo",
        "kilo",
        "windsurf",
        "zed",
        "opencode",
        "continue",
        "goose",
    ] {
        assert!(text.contains(client), "{client} missing:\n{text}");
    }
    let windsurf = text.lines().find(|l| l.starts_with("windsurf")).unwrap();
    assert!(windsurf.contains("has `remote-agents`"), "{text}");
    let cursor = text.lines().find(|l| l.starts_with("cursor ")).unwrap();
    assert!(cursor.contains("no config"), "{text}");
    assert_eq!(stdout(&home.run(&["uninstall-mcp"])), text);
}

#[test]
fn the_npm_launcher_is_registered_rather_than_the_versioned_binary() {
    let home = Home::new();
    let output = home
        .command()
        .args(["install-mcp", "--client", "cursor"])
        .env("REMOTE_AGENTS_LAUNCHER", "/usr/local/bin/remote-agents")
        .output()
        .unwrap();
    assert_ok(&output);
    let config = file_json(&home.path().join(".cursor/mcp.json"));
    assert_eq!(
        config["mcpServers"]["remote-agents"]["command"],
        "/usr/local/bin/remote-agents"
    );
    assert_eq!(
        config["mcpServers"]["remote-agents"]["args"],
        json!(["mcp"])
    );
    assert_eq!(config["mcpServers"]["remote-agents"]["env"], json!({}));
}

#[test]
fn the_registered_command_lists_its_tools_over_stdio() {
    let home = Home::new();
    // No --command: the entry runs this very binary; no --relay: the node is local-only.
    let output = home.run(&[
        "install-mcp",
        "--client",
        "claude-desktop",
        "--name",
        "from-config",
        "--data-dir",
        &home.data_dir(),
    ]);
    assert_ok(&output);
    let config = file_json(
        &home
            .path()
            .join(".config/Claude/claude_desktop_config.json"),
    );
    let entry = &config["mcpServers"]["remote-agents"];
    let program = entry["command"].as_str().unwrap();
    assert_eq!(
        std::fs::canonicalize(program).unwrap(),
        std::fs::canonicalize(env!("CARGO_BIN_EXE_remote-agents")).unwrap()
    );
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut child = Command::new(program)
        .args(&args)
        .envs(
            entry["env"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
        )
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the registered command");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // Lines are read on a thread so that a silent server fails the test at a deadline rather
    // than hanging it.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut send = |value: Value| {
        let mut line = serde_json::to_vec(&value).unwrap();
        line.push(b'\n');
        stdin.write_all(&line).unwrap();
        stdin.flush().unwrap();
    };
    let response_to = |id: u64| -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = lines_rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no response to request {id}: {e}"));
            let message: Value = serde_json::from_str(&line).expect("a JSON-RPC line");
            if message["id"] == json!(id) {
                return message;
            }
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "install-mcp-test", "version": "0"},
        }}),
    );
    let initialized = response_to(1);
    assert!(
        initialized["result"]["serverInfo"].is_object(),
        "{initialized}"
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}));
    let listed = response_to(2);
    let tools = listed["result"]["tools"].as_array().expect("a tool list");
    assert!(!tools.is_empty(), "{listed}");
    assert!(tools.iter().all(|t| t["name"].is_string()), "{listed}");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    // The node used the data dir the entry names.
    assert!(Path::new(&home.data_dir()).exists());
}
