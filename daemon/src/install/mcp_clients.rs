//! `remote-agents install-mcp` / `uninstall-mcp`: the node as an MCP server entry in an AI
//! client's own config file, merged in place with its comments and formatting kept.
//!
//! The client table (paths, entry shapes) is `clients`; the edits are `json` (a JSONC concrete
//! syntax tree) and `yaml` (lossless tree, byte splices). This module reads and writes the files:
//! a timestamped backup (`<file>.bak-<UTC time>`) before every change, an atomic replace that
//! keeps the file's mode (0600 for a new file: the entry holds the room token), nothing written
//! when nothing changes. A file that does not parse is refused with its line and column; a file
//! that parses but is not shaped the way the client writes it (a top-level array, a flow-style
//! YAML list) is left untouched and the entry is printed for the user to add, with exit status 0.

mod clients;
mod json;
mod yaml;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

pub use clients::{Client, Layout, Os, ServerCommand, config_path, config_paths};

/// The environment variable the npm shim (`npm/remote-agents/lib/launch.js`) sets to the path of
/// its `remote-agents` script: a client started through it keeps working after an npm upgrade,
/// which replaces the binary's versioned folder.
pub const LAUNCHER_ENV: &str = "REMOTE_AGENTS_LAUNCHER";

/// The node reads its room token from this variable (`node::config`); the entry sets it.
const TOKEN_ENV: &str = "REMOTE_AGENTS_TOKEN";

/// Flags of `remote-agents install-mcp`.
#[derive(Debug, Args, Clone, Default)]
pub struct InstallMcpArgs {
    /// The client whose config to edit; without it, list the clients and their config files.
    #[arg(long, value_enum)]
    pub client: Option<Client>,
    /// The entry's name in the client's config.
    #[arg(long, default_value = "remote-agents")]
    pub server_name: String,
    /// Relay WebSocket URL the node joins (none: the node runs local-only).
    #[arg(long)]
    pub relay: Option<String>,
    /// Room name on the relay.
    #[arg(long)]
    pub room: Option<String>,
    /// Room token: written to the entry's environment (REMOTE_AGENTS_TOKEN), never its arguments.
    #[arg(long)]
    pub token: Option<String>,
    /// Agent name shown to peers.
    #[arg(long)]
    pub name: Option<String>,
    /// Comma-separated tags.
    #[arg(long)]
    pub tags: Option<String>,
    /// Send-only: join the fleet but accept no commands.
    #[arg(long)]
    pub no_agent: bool,
    /// Directory for the node's identity, store and backups (default: the node's own default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The program the client starts (default: the npm launcher when run through npm, else this
    /// binary's absolute path).
    #[arg(long, value_name = "PATH")]
    pub command: Option<PathBuf>,
    /// Print the change as a unified diff and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `remote-agents uninstall-mcp`.
#[derive(Debug, Args, Clone, Default)]
pub struct UninstallMcpArgs {
    /// The client whose config to edit; without it, list the clients and their config files.
    #[arg(long, value_enum)]
    pub client: Option<Client>,
    /// The entry's name in the client's config.
    #[arg(long, default_value = "remote-agents")]
    pub server_name: String,
    /// Print the change as a unified diff and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A value of an entry, with its keys in the order they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryValue {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<EntryValue>),
    Map(Vec<(String, EntryValue)>),
}

impl EntryValue {
    /// The same value as JSON, to compare with what a file holds.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            EntryValue::Str(text) => serde_json::Value::String(text.clone()),
            EntryValue::Bool(flag) => serde_json::Value::Bool(*flag),
            EntryValue::Int(number) => serde_json::Value::from(*number),
            EntryValue::List(items) => {
                serde_json::Value::Array(items.iter().map(EntryValue::to_json).collect())
            }
            EntryValue::Map(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// What an edit of a file's text comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The file already says what it should.
    Unchanged,
    /// The new text.
    Changed(String),
    /// The file parses but is not shaped the way the client writes it; why.
    Unsupported(String),
}

/// The client's file to edit on this machine.
fn locate(client: Client) -> anyhow::Result<PathBuf> {
    let os = Os::current().ok_or_else(|| {
        anyhow::anyhow!("install-mcp knows the clients' config files on Linux and macOS only")
    })?;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("HOME is not set: cannot find the clients' config files"))?;
    Ok(config_path(client, os, &home, &|name| {
        std::env::var(name).ok()
    }))
}

/// The file's text, or `None` when it does not exist yet.
fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The program the entry starts: `--command`, else the npm launcher, else this binary.
fn entry_command(args: &InstallMcpArgs) -> anyhow::Result<String> {
    let path = match (&args.command, std::env::var_os(LAUNCHER_ENV)) {
        (Some(command), _) => std::path::absolute(command)
            .with_context(|| format!("--command {}", command.display()))?,
        (None, Some(launcher)) if !launcher.is_empty() => PathBuf::from(launcher),
        (None, _) => std::env::current_exe()
            .context("cannot find this binary's path: pass --command PATH")?,
    };
    path.into_os_string().into_string().map_err(|path| {
        anyhow::anyhow!(
            "the command path {} is not UTF-8: pass --command PATH",
            PathBuf::from(path).display()
        )
    })
}

/// The entry's program, arguments and environment from the flags.
fn server_command(args: &InstallMcpArgs) -> anyhow::Result<ServerCommand> {
    let mut argv = vec!["mcp".to_string()];
    let mut push = |flag: &str, value: &Option<String>| {
        if let Some(value) = value {
            argv.push(flag.to_string());
            argv.push(value.clone());
        }
    };
    push("--relay", &args.relay);
    push("--room", &args.room);
    push("--name", &args.name);
    push("--tags", &args.tags);
    if args.no_agent {
        argv.push("--no-agent".into());
    }
    if let Some(dir) = &args.data_dir {
        let dir =
            std::path::absolute(dir).with_context(|| format!("--data-dir {}", dir.display()))?;
        argv.push("--data-dir".into());
        argv.push(
            dir.into_os_string()
                .into_string()
                .map_err(|_| anyhow::anyhow!("--data-dir: the path is not UTF-8"))?,
        );
    }
    // Secrets go in the environment: arguments show in `ps` and in the client's UI.
    let env = args
        .token
        .iter()
        .map(|token| (TOKEN_ENV.to_string(), token.clone()))
        .collect();
    Ok(ServerCommand {
        name: args.server_name.clone(),
        command: entry_command(args)?,
        args: argv,
        env,
    })
}

fn yaml_shape(layout: Layout) -> Option<yaml::Shape> {
    match layout {
        Layout::JsonMap { .. } => None,
        Layout::YamlList { .. } => Some(yaml::Shape::List),
        Layout::YamlMap { .. } => Some(yaml::Shape::Map),
    }
}

fn upsert(
    client: Client,
    text: &str,
    name: &str,
    entry: &EntryValue,
    path: &Path,
) -> anyhow::Result<Edit> {
    let layout = client.layout();
    match yaml_shape(layout) {
        None => json::upsert(text, layout.key(), name, entry, path),
        Some(shape) => yaml::upsert(text, layout.key(), shape, name, entry, path),
    }
}

fn remove(client: Client, text: &str, name: &str, path: &Path) -> anyhow::Result<Edit> {
    let layout = client.layout();
    match yaml_shape(layout) {
        None => json::remove(text, layout.key(), name, path),
        Some(shape) => yaml::remove(text, layout.key(), shape, name, path),
    }
}

fn find(
    client: Client,
    text: &str,
    name: &str,
    path: &Path,
) -> anyhow::Result<Option<serde_json::Value>> {
    let layout = client.layout();
    match yaml_shape(layout) {
        None => json::find(text, layout.key(), name, path),
        Some(shape) => yaml::find(text, layout.key(), shape, name, path),
    }
}

/// A sibling `<file>.bak-<UTC time>` that does not exist yet.
fn backup_path(path: &Path) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let base = format!("{}.bak-{stamp}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut counter = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{counter}"));
        counter += 1;
    }
    candidate
}

/// Replaces `path` with `text` atomically (a temporary sibling renamed over it), keeping the
/// old file's permissions; a new file (and its folders) gets the temporary file's, which
/// `tempfile` creates readable by its owner only (0600 on Unix): the entry holds the token.
fn write_atomically(
    path: &Path,
    text: &str,
    keep_permissions_of: Option<&Path>,
) -> anyhow::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    let permissions = match keep_permissions_of {
        Some(original) => Some(
            std::fs::metadata(original)
                .with_context(|| format!("cannot read {}", original.display()))?
                .permissions(),
        ),
        None => None,
    };
    let mut temporary = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    temporary
        .write_all(text.as_bytes())
        .and_then(|()| temporary.as_file().sync_all())
        .and_then(|()| match permissions {
            Some(permissions) => temporary.as_file().set_permissions(permissions),
            None => Ok(()),
        })
        .with_context(|| format!("cannot write a temporary file in {}", parent.display()))?;
    temporary
        .persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The diff with the token's value hidden on every line that sets it: the diff goes to a
/// terminal or a log.
fn redact_token(diff: &str) -> String {
    diff.lines()
        .map(|line| match line.find(TOKEN_ENV) {
            Some(at) => match line[at..].find(':') {
                Some(colon) => {
                    let comma = if line.trim_end().ends_with(',') {
                        ","
                    } else {
                        ""
                    };
                    format!("{} <token>{comma}\n", &line[..at + colon + 1])
                }
                None => format!("{line}\n"),
            },
            None => format!("{line}\n"),
        })
        .collect()
}

/// Writes the change, or prints it as a diff with `--dry-run`. Returns the backup's path.
fn apply(
    path: &Path,
    old: Option<&str>,
    new: &str,
    dry_run: bool,
) -> anyhow::Result<Option<PathBuf>> {
    if dry_run {
        let label = path.display().to_string();
        let diff = similar::TextDiff::from_lines(old.unwrap_or(""), new)
            .unified_diff()
            .header(&label, &label)
            .to_string();
        print!("{}", redact_token(&diff));
        return Ok(None);
    }
    // Follow a symlink (dotfile managers link these files): the link stays, its target changes.
    let target = if path.is_symlink() {
        std::fs::canonicalize(path).with_context(|| format!("cannot resolve {}", path.display()))?
    } else {
        path.to_path_buf()
    };
    let backup = match old {
        Some(old) => {
            // The backup may hold a token too: it gets the file's own permissions.
            let backup = backup_path(&target);
            write_atomically(&backup, old, Some(&target))?;
            Some(backup)
        }
        None => None,
    };
    write_atomically(&target, new, old.map(|_| target.as_path()))?;
    Ok(backup)
}

fn check_server_name(name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() {
        anyhow::bail!("--server-name: the entry needs a name");
    }
    Ok(())
}

/// `remote-agents install-mcp`.
pub fn install(args: &InstallMcpArgs) -> anyhow::Result<()> {
    let Some(client) = args.client else {
        return list(&args.server_name);
    };
    check_server_name(&args.server_name)?;
    let path = locate(client)?;
    let server = server_command(args)?;
    let entry = client.entry(&server);
    let old = read(&path)?;
    let base = old
        .clone()
        .unwrap_or_else(|| client.new_file_text().to_string());
    match upsert(client, &base, &server.name, &entry, &path)? {
        Edit::Unchanged => {
            println!(
                "{}: `{}` is already registered as asked; nothing changed",
                path.display(),
                server.name
            );
        }
        Edit::Changed(new) => {
            let backup = apply(&path, old.as_deref(), &new, args.dry_run)?;
            if args.dry_run {
                println!("(dry run: {} not written)", path.display());
            } else {
                let kept = backup.map_or_else(
                    || "a new file".to_string(),
                    |b| format!("previous file kept as {}", b.display()),
                );
                println!(
                    "registered `{}` for {} in {} ({kept}); restart {} to load it",
                    server.name,
                    client.id(),
                    path.display(),
                    client.id()
                );
            }
        }
        Edit::Unsupported(reason) => {
            // The snippet is the entry as it would stand in a file of its own.
            let snippet = match upsert(client, client.new_file_text(), &server.name, &entry, &path)?
            {
                Edit::Changed(text) => text,
                _ => String::new(),
            };
            println!(
                "{} was left untouched: {reason}, which install-mcp does not edit.\n\
                 Add this entry to it by hand:\n\n{snippet}",
                path.display()
            );
        }
    }
    Ok(())
}

/// `remote-agents uninstall-mcp`.
pub fn uninstall(args: &UninstallMcpArgs) -> anyhow::Result<()> {
    let Some(client) = args.client else {
        return list(&args.server_name);
    };
    check_server_name(&args.server_name)?;
    let path = locate(client)?;
    let Some(old) = read(&path)? else {
        println!("{}: no such file; nothing to remove", path.display());
        return Ok(());
    };
    match remove(client, &old, &args.server_name, &path)? {
        Edit::Changed(new) => {
            let backup = apply(&path, Some(&old), &new, args.dry_run)?;
            if args.dry_run {
                println!("(dry run: {} not written)", path.display());
            } else {
                let kept = backup.map_or_else(String::new, |b| {
                    format!(" (previous file kept as {})", b.display())
                });
                println!(
                    "removed `{}` from {}{kept}",
                    args.server_name,
                    path.display()
                );
            }
        }
        Edit::Unchanged | Edit::Unsupported(_) => {
            println!(
                "{}: no entry `{}`; nothing to remove",
                path.display(),
                args.server_name
            );
        }
    }
    Ok(())
}

/// The clients, their config file here and whether it holds the entry `name`.
fn list(name: &str) -> anyhow::Result<()> {
    println!("{:<16} {:<28} CONFIG FILE", "CLIENT", "STATUS");
    for client in Client::ALL {
        let path = locate(client)?;
        let status = match read(&path) {
            Ok(None) => "no config".to_string(),
            Ok(Some(text)) => match find(client, &text, name, &path) {
                Ok(Some(_)) => format!("has `{name}`"),
                Ok(None) => "config, no entry".to_string(),
                Err(_) => "config does not parse".to_string(),
            },
            Err(_) => "config unreadable".to_string(),
        };
        println!("{:<16} {:<28} {}", client.id(), status, path.display());
    }
    println!("\nremote-agents install-mcp --client CLIENT [--relay URL --room ROOM --token TOKEN]");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_shows_the_token_by_name_only() {
        let diff = "@@ -1 +1 @@\n-    \"REMOTE_AGENTS_TOKEN\": \"old\",\n+      REMOTE_AGENTS_TOKEN: new\n \"x\": 1\n";
        assert_eq!(
            redact_token(diff),
            "@@ -1 +1 @@\n-    \"REMOTE_AGENTS_TOKEN\": <token>,\n+      REMOTE_AGENTS_TOKEN: <token>\n \"x\": 1\n"
        );
    }

    #[test]
    fn the_token_goes_in_the_environment_and_the_flags_in_the_arguments() {
        let args = InstallMcpArgs {
            relay: Some("wss://r".into()),
            room: Some("lab".into()),
            token: Some("t0k3n".into()),
            name: Some("box".into()),
            tags: Some("a,b".into()),
            no_agent: true,
            command: Some(PathBuf::from("/opt/ra")),
            server_name: "remote-agents".into(),
            ..InstallMcpArgs::default()
        };
        let server = server_command(&args).unwrap();
        assert_eq!(server.command, "/opt/ra");
        assert_eq!(
            server.args,
            [
                "mcp",
                "--relay",
                "wss://r",
                "--room",
                "lab",
                "--name",
                "box",
                "--tags",
                "a,b",
                "--no-agent"
            ]
        );
        assert_eq!(server.env, [(TOKEN_ENV.to_string(), "t0k3n".to_string())]);
    }
}
