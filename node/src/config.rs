//! Node settings and where each came from: CLI flag > `REMOTE_AGENTS_*` environment variable >
//! `config.toml` > built-in default. The flags arrive parsed (the binaries own the grammar).
//!
//! There is deliberately no default relay: with none configured the node runs local-only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use remote_agents_spec::Toolset;

use crate::policy::{Mode, PolicyConfig};

/// The mode of a node whose flags, environment and config file name none: `edit` (a spec host
/// without a mode is `plan`; a node run by hand is its user's own machine).
pub const DEFAULT_NODE_MODE: Mode = Mode::Edit;

/// The flag layer of a node's settings, as the binaries' argument grammar fills it in (each
/// field is the flag of the same name; `None`/`false` when not given). Environment variables are
/// read by `Settings::resolve` rather than by the argument parser, so that `config show` can tell
/// a flag from an environment variable.
#[derive(Debug, Clone, Default)]
pub struct NodeFlags {
    pub relay: Option<String>,
    pub room: Option<String>,
    pub token: Option<String>,
    pub name: Option<String>,
    pub tags: Option<String>,
    pub no_agent: bool,
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub mode: Option<String>,
    pub encryption_key: Option<String>,
    pub relay_key: Option<String>,
    pub operators: Option<String>,
    pub operator_key: Option<PathBuf>,
    /// `--direct[=BOOL]`: transfers try a direct UDP path before the relay.
    pub direct: Option<bool>,
    /// `--udp-reflector HOST:PORT`.
    pub udp_reflector: Option<String>,
    /// The MCP toolsets (`--toolsets core,files`): only `mcp` and `hybrid` take it.
    pub toolsets: Option<String>,
    /// Watch mode: only `run`, `mcp` and `hybrid` take it.
    pub watch: WatchFlags,
}

/// Watch mode (GitOps) flags of `run`, `mcp` and `hybrid`: `--spec`, `--spec-repo`, `--branch`,
/// `--spec-interval`.
#[derive(Debug, Clone, Default)]
pub struct WatchFlags {
    pub spec: Option<PathBuf>,
    pub spec_repo: Option<String>,
    pub spec_branch: Option<String>,
    pub spec_interval: Option<std::time::Duration>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// `config.toml`; every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub relay: Option<String>,
    pub room: Option<String>,
    pub token: Option<String>,
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub no_agent: Option<bool>,
    pub data_dir: Option<PathBuf>,
    pub mode: Option<String>,
    pub encryption_key: Option<String>,
    pub relay_key: Option<String>,
    pub operators: Option<Vec<String>>,
    pub operator_key: Option<PathBuf>,
    /// Whether transfers try a direct UDP path to the other host before the relay.
    pub direct: Option<bool>,
    /// The relay's UDP reflector (`HOST:PORT`) the direct path learns its outside address from.
    pub udp_reflector: Option<String>,
    /// The toolsets the MCP server offers (`["core", "files"]`, or `["all"]`).
    pub toolsets: Option<Vec<String>>,
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Limits of autonomous tasks (`[tasks]`).
    #[serde(default)]
    pub tasks: Option<crate::task::TaskLimits>,
}

/// Errors resolving settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid mode from {source_name}: {message}")]
    Mode {
        source_name: String,
        message: String,
    },
    #[error("invalid boolean `{value}` in {var}: expected true/false/1/0/yes/no")]
    Bool { var: &'static str, value: String },
    #[error("invalid toolsets from {source_name}: {message}")]
    Toolsets {
        source_name: String,
        message: String,
    },
}

/// The effective settings of a node.
#[derive(Debug, Clone)]
pub struct Settings {
    pub relay: Sourced<Option<String>>,
    pub room: Sourced<Option<String>>,
    pub token: Sourced<Option<String>>,
    pub name: Sourced<String>,
    pub tags: Sourced<Vec<String>>,
    pub no_agent: Sourced<bool>,
    pub data_dir: Sourced<PathBuf>,
    pub config_file: Sourced<Option<PathBuf>>,
    pub mode: Sourced<Mode>,
    pub encryption_key: Sourced<Option<String>>,
    pub relay_key: Sourced<Option<String>>,
    pub policy: Sourced<PolicyConfig>,
    /// Limits of autonomous tasks on this host (`[tasks]` in `config.toml`).
    pub tasks: Sourced<crate::task::TaskLimits>,
    /// Locally trusted operator keys (`ed25519:...`); empty: trust follows the applied spec.
    pub operators: Sourced<Vec<String>>,
    /// This process's operator key file, when it acts for an operator.
    pub operator_key: Sourced<Option<PathBuf>>,
    /// Transfers try a direct UDP path (`node::net::direct`) before the relay; off where UDP
    /// is known not to pass, or to keep every byte on the relay.
    pub direct: Sourced<bool>,
    /// The relay's UDP reflector (`HOST:PORT`): without it the direct path offers local
    /// addresses only.
    pub udp_reflector: Sourced<Option<String>>,
    /// The toolsets the node's MCP server offers a model (`spec::DEFAULT_TOOLSETS` unless set);
    /// an applied `McpSurface` may narrow them further.
    pub toolsets: Sourced<BTreeSet<Toolset>>,
    /// Watch mode: a local spec folder (`--spec`).
    pub spec: Sourced<Option<PathBuf>>,
    /// Watch mode: a git repository to follow (`--spec-repo`), its branch and fetch interval.
    pub spec_repo: Sourced<Option<String>>,
    pub spec_branch: Sourced<Option<String>>,
    pub spec_interval: std::time::Duration,
}

/// Reads environment variables; a trait object so tests pass a map instead of the process env.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

fn default_data_dir(env: &dyn Env) -> PathBuf {
    if let Some(xdg) = env.get("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("remote-agents");
    }
    let home = env.get("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/share/remote-agents")
}

fn default_config_file(env: &dyn Env) -> PathBuf {
    if let Some(xdg) = env.get("XDG_CONFIG_HOME") {
        return PathBuf::from(xdg).join("remote-agents/config.toml");
    }
    let home = env.get("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".config/remote-agents/config.toml")
}

fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "node".to_string())
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::Bool {
            var,
            value: value.to_string(),
        }),
    }
}

fn split_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Picks flag > env > file > default for one setting.
fn layer<T>(
    flag: (Option<T>, &'static str),
    env: (Option<T>, &'static str),
    file: (Option<T>, &Option<PathBuf>),
    default: T,
) -> Sourced<T> {
    if let Some(value) = flag.0 {
        return Sourced {
            value,
            source: Source::Flag(flag.1),
        };
    }
    if let Some(value) = env.0 {
        return Sourced {
            value,
            source: Source::Env(env.1),
        };
    }
    if let (Some(value), Some(path)) = (file.0, file.1) {
        return Sourced {
            value,
            source: Source::File(path.clone()),
        };
    }
    Sourced {
        value: default,
        source: Source::Default,
    }
}

impl Settings {
    /// Resolves every setting from flags, the environment and the config file.
    pub fn resolve(flags: &NodeFlags, env: &dyn Env) -> Result<Self, ConfigError> {
        const E_RELAY: &str = "REMOTE_AGENTS_RELAY";
        const E_ROOM: &str = "REMOTE_AGENTS_ROOM";
        const E_TOKEN: &str = "REMOTE_AGENTS_TOKEN";
        const E_NAME: &str = "REMOTE_AGENTS_NAME";
        const E_TAGS: &str = "REMOTE_AGENTS_TAGS";
        const E_NO_AGENT: &str = "REMOTE_AGENTS_NO_AGENT";
        const E_DATA_DIR: &str = "REMOTE_AGENTS_DATA_DIR";
        const E_MODE: &str = "REMOTE_AGENTS_MODE";
        const E_KEY: &str = "REMOTE_AGENTS_ENCRYPTION_KEY";
        const E_RELAY_KEY: &str = "REMOTE_AGENTS_RELAY_KEY";
        const E_CONFIG: &str = "REMOTE_AGENTS_CONFIG";
        const E_OPERATORS: &str = "REMOTE_AGENTS_OPERATORS";
        const E_OPERATOR_KEY: &str = "REMOTE_AGENTS_OPERATOR_KEY";
        const E_DIRECT: &str = "REMOTE_AGENTS_DIRECT";
        const E_UDP_REFLECTOR: &str = "REMOTE_AGENTS_UDP_REFLECTOR";
        const E_TOOLSETS: &str = "REMOTE_AGENTS_TOOLSETS";
        const E_SPEC: &str = "REMOTE_AGENTS_SPEC";
        const E_SPEC_REPO: &str = "REMOTE_AGENTS_SPEC_REPO";
        const E_SPEC_BRANCH: &str = "REMOTE_AGENTS_SPEC_BRANCH";

        // The config file is located first (flag > env > default path); a missing default file is
        // fine, a missing explicitly named one is an error.
        let (config_path, config_source, explicit) = match (&flags.config, env.get(E_CONFIG)) {
            (Some(path), _) => (path.clone(), Source::Flag("--config"), true),
            (None, Some(path)) => (PathBuf::from(path), Source::Env(E_CONFIG), true),
            (None, None) => (default_config_file(env), Source::Default, false),
        };
        let (file, file_path) = match std::fs::read_to_string(&config_path) {
            Ok(text) => {
                let parsed: FileConfig =
                    toml::from_str(&text).map_err(|source| ConfigError::Parse {
                        path: config_path.clone(),
                        source: Box::new(source),
                    })?;
                (parsed, Some(config_path.clone()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                (FileConfig::default(), None)
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: config_path,
                    source,
                });
            }
        };
        let fp = &file_path;

        let no_agent_env = match env.get(E_NO_AGENT) {
            Some(v) => Some(parse_bool(E_NO_AGENT, &v)?),
            None => None,
        };
        let direct_env = match env.get(E_DIRECT) {
            Some(v) => Some(parse_bool(E_DIRECT, &v)?),
            None => None,
        };
        let mode_text = layer(
            (flags.mode.clone(), "--mode"),
            (env.get(E_MODE), E_MODE),
            (file.mode.clone(), fp),
            DEFAULT_NODE_MODE.as_str().to_string(),
        );
        let mode = Sourced {
            value: mode_text
                .value
                .parse::<Mode>()
                .map_err(|message| ConfigError::Mode {
                    source_name: mode_text.source.to_string(),
                    message,
                })?,
            source: mode_text.source,
        };
        let toolsets_text = layer(
            (flags.toolsets.clone(), "--toolsets"),
            (env.get(E_TOOLSETS), E_TOOLSETS),
            (file.toolsets.as_ref().map(|names| names.join(",")), fp),
            remote_agents_spec::DEFAULT_TOOLSETS
                .map(Toolset::as_str)
                .join(","),
        );
        let toolsets = Sourced {
            value: Toolset::parse_list(&toolsets_text.value).map_err(|message| {
                ConfigError::Toolsets {
                    source_name: toolsets_text.source.to_string(),
                    message,
                }
            })?,
            source: toolsets_text.source,
        };
        let policy = match (&file.policy, fp) {
            (Some(p), Some(path)) => Sourced {
                value: p.clone(),
                source: Source::File(path.clone()),
            },
            _ => Sourced {
                value: PolicyConfig::default(),
                source: Source::Default,
            },
        };
        let tasks = match (&file.tasks, fp) {
            (Some(t), Some(path)) => Sourced {
                value: t.clone(),
                source: Source::File(path.clone()),
            },
            _ => Sourced {
                value: crate::task::TaskLimits::default(),
                source: Source::Default,
            },
        };

        Ok(Settings {
            relay: layer(
                (flags.relay.clone().map(Some), "--relay"),
                (env.get(E_RELAY).map(Some), E_RELAY),
                (file.relay.clone().map(Some), fp),
                None,
            ),
            room: layer(
                (flags.room.clone().map(Some), "--room"),
                (env.get(E_ROOM).map(Some), E_ROOM),
                (file.room.clone().map(Some), fp),
                None,
            ),
            token: layer(
                (flags.token.clone().map(Some), "--token"),
                (env.get(E_TOKEN).map(Some), E_TOKEN),
                (file.token.clone().map(Some), fp),
                None,
            ),
            name: layer(
                (flags.name.clone(), "--name"),
                (env.get(E_NAME), E_NAME),
                (file.name.clone(), fp),
                hostname(),
            ),
            tags: layer(
                (flags.tags.as_deref().map(split_tags), "--tags"),
                (env.get(E_TAGS).as_deref().map(split_tags), E_TAGS),
                (file.tags.clone(), fp),
                Vec::new(),
            ),
            no_agent: layer(
                (flags.no_agent.then_some(true), "--no-agent"),
                (no_agent_env, E_NO_AGENT),
                (file.no_agent, fp),
                false,
            ),
            data_dir: layer(
                (flags.data_dir.clone(), "--data-dir"),
                (env.get(E_DATA_DIR).map(PathBuf::from), E_DATA_DIR),
                (file.data_dir.clone(), fp),
                default_data_dir(env),
            ),
            config_file: Sourced {
                value: file_path.clone(),
                source: config_source,
            },
            mode,
            encryption_key: layer(
                (flags.encryption_key.clone().map(Some), "--encryption-key"),
                (env.get(E_KEY).map(Some), E_KEY),
                (file.encryption_key.clone().map(Some), fp),
                None,
            ),
            relay_key: layer(
                (flags.relay_key.clone().map(Some), "--relay-key"),
                (env.get(E_RELAY_KEY).map(Some), E_RELAY_KEY),
                (file.relay_key.clone().map(Some), fp),
                None,
            ),
            policy,
            tasks,
            operators: layer(
                (flags.operators.as_deref().map(split_tags), "--operators"),
                (env.get(E_OPERATORS).as_deref().map(split_tags), E_OPERATORS),
                (file.operators.clone(), fp),
                Vec::new(),
            ),
            operator_key: layer(
                (flags.operator_key.clone().map(Some), "--operator-key"),
                (
                    env.get(E_OPERATOR_KEY).map(|p| Some(PathBuf::from(p))),
                    E_OPERATOR_KEY,
                ),
                (file.operator_key.clone().map(Some), fp),
                None,
            ),
            direct: layer(
                (flags.direct, "--direct"),
                (direct_env, E_DIRECT),
                (file.direct, fp),
                true,
            ),
            udp_reflector: layer(
                (flags.udp_reflector.clone().map(Some), "--udp-reflector"),
                (env.get(E_UDP_REFLECTOR).map(Some), E_UDP_REFLECTOR),
                (file.udp_reflector.clone().map(Some), fp),
                None,
            ),
            toolsets,
            spec: layer(
                (flags.watch.spec.clone().map(Some), "--spec"),
                (env.get(E_SPEC).map(|p| Some(PathBuf::from(p))), E_SPEC),
                (None, fp),
                None,
            ),
            spec_repo: layer(
                (flags.watch.spec_repo.clone().map(Some), "--spec-repo"),
                (env.get(E_SPEC_REPO).map(Some), E_SPEC_REPO),
                (None, fp),
                None,
            ),
            spec_branch: layer(
                (flags.watch.spec_branch.clone().map(Some), "--branch"),
                (env.get(E_SPEC_BRANCH).map(Some), E_SPEC_BRANCH),
                (None, fp),
                None,
            ),
            spec_interval: flags
                .watch
                .spec_interval
                .unwrap_or(std::time::Duration::from_secs(10)),
        })
    }

    /// Whether the node should connect anywhere; without a relay it is local-only.
    pub fn local_only(&self) -> bool {
        self.relay.value.is_none()
    }

    /// Lines of `config show`: name, value (secrets redacted), source.
    pub fn show(&self) -> String {
        fn opt(v: &Option<String>) -> String {
            v.clone().unwrap_or_else(|| "(unset)".into())
        }
        fn secret(v: &Option<String>) -> String {
            match v {
                Some(_) => "(set, redacted)".into(),
                None => "(unset)".into(),
            }
        }
        let policy = &self.policy.value;
        let rows: Vec<(&str, String, String)> = vec![
            (
                "relay",
                match &self.relay.value {
                    Some(r) => r.clone(),
                    None => "(unset: local-only)".into(),
                },
                self.relay.source.to_string(),
            ),
            ("room", opt(&self.room.value), self.room.source.to_string()),
            (
                "token",
                secret(&self.token.value),
                self.token.source.to_string(),
            ),
            (
                "name",
                self.name.value.clone(),
                self.name.source.to_string(),
            ),
            (
                "tags",
                self.tags.value.join(","),
                self.tags.source.to_string(),
            ),
            (
                "no_agent",
                self.no_agent.value.to_string(),
                self.no_agent.source.to_string(),
            ),
            (
                "direct",
                self.direct.value.to_string(),
                self.direct.source.to_string(),
            ),
            (
                "udp_reflector",
                opt(&self.udp_reflector.value),
                self.udp_reflector.source.to_string(),
            ),
            (
                "data_dir",
                self.data_dir.value.display().to_string(),
                self.data_dir.source.to_string(),
            ),
            (
                "config",
                self.config_file
                    .value
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(none found)".into()),
                self.config_file.source.to_string(),
            ),
            (
                "mode",
                self.mode.value.to_string(),
                self.mode.source.to_string(),
            ),
            (
                "toolsets",
                self.toolsets
                    .value
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                self.toolsets.source.to_string(),
            ),
            (
                "encryption_key",
                secret(&self.encryption_key.value),
                self.encryption_key.source.to_string(),
            ),
            (
                "relay_key",
                secret(&self.relay_key.value),
                self.relay_key.source.to_string(),
            ),
            (
                "operators",
                if self.operators.value.is_empty() {
                    "(none: trust follows the applied spec)".into()
                } else {
                    self.operators.value.join(",")
                },
                self.operators.source.to_string(),
            ),
            (
                "operator_key",
                self.operator_key
                    .value
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(unset)".into()),
                self.operator_key.source.to_string(),
            ),
            (
                "spec",
                self.spec
                    .value
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(unset)".into()),
                self.spec.source.to_string(),
            ),
            (
                "spec_repo",
                match (&self.spec_repo.value, &self.spec_branch.value) {
                    (Some(repo), Some(branch)) => format!("{repo} (branch {branch})"),
                    (Some(repo), None) => repo.clone(),
                    (None, _) => "(unset)".into(),
                },
                self.spec_repo.source.to_string(),
            ),
            (
                "policy.roots",
                if policy.roots.is_empty() {
                    "(home, temp dir)".into()
                } else {
                    join_paths(&policy.roots)
                },
                self.policy.source.to_string(),
            ),
            (
                "policy.allow_paths",
                policy.allow_paths.join(","),
                self.policy.source.to_string(),
            ),
            (
                "policy.deny_paths",
                policy.deny_paths.join(","),
                self.policy.source.to_string(),
            ),
            (
                "policy.allow_commands",
                policy.allow_commands.join(","),
                self.policy.source.to_string(),
            ),
            (
                "policy.deny_commands",
                policy.deny_commands.join(","),
                self.policy.source.to_string(),
            ),
            (
                "policy.allow_shell",
                policy.allow_shell.to_string(),
                self.policy.source.to_string(),
            ),
            (
                "tasks",
                self.tasks.value.describe(),
                self.tasks.source.to_string(),
            ),
        ];
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).min(60);
        rows.iter()
            .map(|(k, v, s)| format!("{k:width$}  {v:value_width$}  ({s})\n"))
            .collect()
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates the data directory with owner-only permissions.
pub fn ensure_data_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("HOME".into())
            .or_insert_with(|| "/home/test".into());
        map
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "relay = \"ws://file\"\nroom = \"file-room\"\nname = \"file-name\"\nmode = \"plan\"\n",
        )
        .unwrap();
        let flags = NodeFlags {
            relay: Some("ws://flag".into()),
            config: Some(file.clone()),
            ..Default::default()
        };
        let env = env(&[
            ("REMOTE_AGENTS_RELAY", "ws://env"),
            ("REMOTE_AGENTS_ROOM", "env-room"),
        ]);
        let s = Settings::resolve(&flags, &env).unwrap();
        assert_eq!(s.relay.value.as_deref(), Some("ws://flag"));
        assert_eq!(s.relay.source, Source::Flag("--relay"));
        assert_eq!(s.room.value.as_deref(), Some("env-room"));
        assert_eq!(s.room.source, Source::Env("REMOTE_AGENTS_ROOM"));
        assert_eq!(s.name.value, "file-name");
        assert_eq!(s.name.source, Source::File(file.clone()));
        assert_eq!(s.mode.value, Mode::Plan);
        assert_eq!(s.tags.source, Source::Default);
        assert_eq!(
            s.data_dir.value,
            PathBuf::from("/home/test/.local/share/remote-agents")
        );
    }

    #[test]
    fn toolsets_come_from_flag_env_or_file_and_default_to_the_default_set() {
        let s = Settings::resolve(&NodeFlags::default(), &env(&[])).unwrap();
        assert_eq!(
            s.toolsets.value,
            BTreeSet::from(remote_agents_spec::DEFAULT_TOOLSETS)
        );
        assert_eq!(s.toolsets.source, Source::Default);
        assert!(s.show().contains("core,files,git,fleet"), "{}", s.show());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "toolsets = [\"spec\", \"schedule\"]\n").unwrap();
        let with_file = NodeFlags {
            config: Some(file.clone()),
            ..Default::default()
        };
        let s = Settings::resolve(&with_file, &env(&[])).unwrap();
        assert_eq!(
            s.toolsets.value,
            BTreeSet::from([Toolset::Spec, Toolset::Schedule])
        );
        assert_eq!(s.toolsets.source, Source::File(file));

        let from_env = env(&[("REMOTE_AGENTS_TOOLSETS", "all")]);
        let s = Settings::resolve(&with_file, &from_env).unwrap();
        assert_eq!(s.toolsets.value, BTreeSet::from(Toolset::ALL));
        assert_eq!(s.toolsets.source, Source::Env("REMOTE_AGENTS_TOOLSETS"));

        let with_flag = NodeFlags {
            toolsets: Some("core,transfer".into()),
            ..with_file
        };
        let s = Settings::resolve(&with_flag, &from_env).unwrap();
        assert_eq!(
            s.toolsets.value,
            BTreeSet::from([Toolset::Core, Toolset::Transfer])
        );
        assert_eq!(s.toolsets.source, Source::Flag("--toolsets"));

        let bad = NodeFlags {
            toolsets: Some("core,shell".into()),
            ..Default::default()
        };
        let error = Settings::resolve(&bad, &env(&[])).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid toolsets from flag --toolsets: unknown toolset `shell`: expected core, \
             files, git, fleet, spec, schedule, mapreduce, transfer, tasks, or all"
        );
    }

    #[test]
    fn no_relay_means_local_only_and_no_hosted_default() {
        let s = Settings::resolve(&NodeFlags::default(), &env(&[])).unwrap();
        assert!(s.local_only());
        assert_eq!(s.relay.source, Source::Default);
        assert!(s.show().contains("(unset: local-only)"));
    }

    #[test]
    fn secrets_are_redacted_in_show() {
        let flags = NodeFlags {
            token: Some("hunter2-token".into()),
            encryption_key: Some("k".repeat(64)),
            ..Default::default()
        };
        let env = env(&[("REMOTE_AGENTS_RELAY_KEY", "relay-secret")]);
        let s = Settings::resolve(&flags, &env).unwrap();
        let shown = s.show();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("relay-secret"), "{shown}");
        assert!(shown.contains("(set, redacted)"));
        assert!(shown.contains("env REMOTE_AGENTS_RELAY_KEY"));
    }

    #[test]
    fn tags_and_booleans_from_env() {
        let env = env(&[
            ("REMOTE_AGENTS_TAGS", "web, db,,edge"),
            ("REMOTE_AGENTS_NO_AGENT", "yes"),
            ("REMOTE_AGENTS_MODE", "bypass"),
        ]);
        let s = Settings::resolve(&NodeFlags::default(), &env).unwrap();
        assert_eq!(s.tags.value, vec!["web", "db", "edge"]);
        assert!(s.no_agent.value);
        assert_eq!(s.mode.value, Mode::Bypass);
        let bad = self::env(&[("REMOTE_AGENTS_MODE", "root")]);
        assert!(Settings::resolve(&NodeFlags::default(), &bad).is_err());
    }

    #[test]
    fn the_direct_path_is_on_by_default_and_set_from_env_or_file() {
        let s = Settings::resolve(&NodeFlags::default(), &env(&[])).unwrap();
        assert!(s.direct.value);
        assert_eq!(s.udp_reflector.value, None);
        let env = env(&[
            ("REMOTE_AGENTS_DIRECT", "false"),
            ("REMOTE_AGENTS_UDP_REFLECTOR", "relay.example:3479"),
        ]);
        let s = Settings::resolve(&NodeFlags::default(), &env).unwrap();
        assert!(!s.direct.value);
        assert_eq!(s.direct.source, Source::Env("REMOTE_AGENTS_DIRECT"));
        assert_eq!(s.udp_reflector.value.as_deref(), Some("relay.example:3479"));
        assert!(s.show().contains("relay.example:3479"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "direct = false\nudp_reflector = \"10.0.0.1:3479\"\n").unwrap();
        let flags = NodeFlags {
            config: Some(file.clone()),
            ..NodeFlags::default()
        };
        let s = Settings::resolve(&flags, &self::env(&[])).unwrap();
        assert!(!s.direct.value);
        assert_eq!(s.direct.source, Source::File(file));
        assert_eq!(s.udp_reflector.value.as_deref(), Some("10.0.0.1:3479"));
        // A flag beats the file.
        let flags = NodeFlags {
            direct: Some(true),
            udp_reflector: Some("192.0.2.1:3479".into()),
            ..flags
        };
        let s = Settings::resolve(&flags, &self::env(&[])).unwrap();
        assert!(s.direct.value);
        assert_eq!(s.direct.source, Source::Flag("--direct"));
        assert_eq!(s.udp_reflector.value.as_deref(), Some("192.0.2.1:3479"));
        assert_eq!(s.udp_reflector.source, Source::Flag("--udp-reflector"));
    }

    #[test]
    fn explicit_missing_config_is_an_error_and_unknown_keys_are_rejected() {
        let flags = NodeFlags {
            config: Some("/nonexistent/remote-agents.toml".into()),
            ..Default::default()
        };
        assert!(Settings::resolve(&flags, &env(&[])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "relly = \"typo\"\n").unwrap();
        let flags = NodeFlags {
            config: Some(file),
            ..Default::default()
        };
        assert!(Settings::resolve(&flags, &env(&[])).is_err());
    }

    #[test]
    fn policy_section_is_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[policy]\nroots = [\"/srv\"]\ndeny_commands = [\"rm *\"]\nallow_shell = true\n",
        )
        .unwrap();
        let env = env(&[("REMOTE_AGENTS_CONFIG", file.to_str().unwrap())]);
        let s = Settings::resolve(&NodeFlags::default(), &env).unwrap();
        assert_eq!(s.policy.value.roots, vec![PathBuf::from("/srv")]);
        assert!(s.policy.value.allow_shell);
        assert_eq!(s.config_file.source, Source::Env("REMOTE_AGENTS_CONFIG"));
    }
}
