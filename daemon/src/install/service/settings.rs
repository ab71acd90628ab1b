//! The settings the service runs with, gathered the way `run` would see them in this shell (each
//! flag, else its `REMOTE_AGENTS_*` variable) and split in two: non-secret `run` arguments for
//! the unit or plist, and the secrets (token, end-to-end key, relay key) for the 0600
//! environment file. Relative paths are made absolute, since the service starts elsewhere.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use remote_agents_node::config::{Env, NodeFlags};

use super::render::{Secret, reject_control_characters};
use crate::node_args::{NodeArgs, WatchArgs};
use crate::room::RoomArgs;

/// The variables of the secrets, which go into the environment file and nowhere else.
pub const SECRET_VARIABLES: [&str; 3] = [
    "REMOTE_AGENTS_TOKEN",
    "REMOTE_AGENTS_ENCRYPTION_KEY",
    "REMOTE_AGENTS_RELAY_KEY",
];

/// The service's settings.
#[derive(Debug, Clone, Default)]
pub struct ServiceSettings {
    /// The words after `run`, each a whole `--flag=value`; none is secret.
    pub run_arguments: Vec<String>,
    /// The secrets, for the environment file.
    pub secrets: Vec<Secret>,
    /// The variables a setting was taken from because its flag was not given.
    pub from_environment: Vec<&'static str>,
    /// The flags that carried a secret on `install`'s own command line.
    pub secret_flags: Vec<&'static str>,
    /// The secrets kept from the previous install's environment file (see `keep_secrets`).
    pub kept_secrets: Vec<&'static str>,
    /// The same settings as the flag layer of the node's configuration, to check that the
    /// service would load them.
    pub node_flags: NodeFlags,
}

/// Gathers the service's settings from `install`'s flags and, for each flag not given, its
/// variable in `env`; relative paths are taken from `working_dir`.
pub fn collect(
    node: &NodeArgs,
    watch: &WatchArgs,
    env: &dyn Env,
    working_dir: &Path,
) -> anyhow::Result<ServiceSettings> {
    let mut collector = Collector {
        env,
        working_dir,
        settings: ServiceSettings::default(),
    };
    // Taken apart field by field so that a flag added to the node's flags fails to compile here
    // until the service carries it too.
    let NodeArgs {
        room:
            RoomArgs {
                relay,
                room,
                token,
                encryption_key,
                relay_key,
            },
        name,
        tags,
        no_agent,
        data_dir,
        config,
        mode,
        operators,
        operator_key,
        direct,
        udp_reflector,
    } = node.clone();
    let WatchArgs {
        spec,
        spec_repo,
        spec_branch,
        spec_interval,
    } = watch.clone();
    let relay = collector.text("--relay", "REMOTE_AGENTS_RELAY", relay)?;
    let room = collector.text("--room", "REMOTE_AGENTS_ROOM", room)?;
    let name = collector.text("--name", "REMOTE_AGENTS_NAME", name)?;
    let tags = collector.text("--tags", "REMOTE_AGENTS_TAGS", tags)?;
    let no_agent = collector.switch("--no-agent", "REMOTE_AGENTS_NO_AGENT", no_agent)?;
    let data_dir = collector.path("--data-dir", "REMOTE_AGENTS_DATA_DIR", data_dir)?;
    let config = collector.path("--config", "REMOTE_AGENTS_CONFIG", config)?;
    let mode = collector.text("--mode", "REMOTE_AGENTS_MODE", mode)?;
    let operators = collector.text("--operators", "REMOTE_AGENTS_OPERATORS", operators)?;
    let operator_key =
        collector.path("--operator-key", "REMOTE_AGENTS_OPERATOR_KEY", operator_key)?;
    let direct = match collector.text(
        "--direct",
        "REMOTE_AGENTS_DIRECT",
        direct.map(|on| on.to_string()),
    )? {
        None => None,
        Some(value) => Some(match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => bail!("REMOTE_AGENTS_DIRECT: `{value}` is not a boolean (true/false/1/0/yes/no)"),
        }),
    };
    let udp_reflector = collector.text(
        "--udp-reflector",
        "REMOTE_AGENTS_UDP_REFLECTOR",
        udp_reflector,
    )?;
    let spec = collector.path("--spec", "REMOTE_AGENTS_SPEC", spec)?;
    let spec_repo = collector.repository("--spec-repo", "REMOTE_AGENTS_SPEC_REPO", spec_repo)?;
    let spec_branch = collector.text("--branch", "REMOTE_AGENTS_SPEC_BRANCH", spec_branch)?;
    if let Some(interval) = spec_interval {
        // Seconds, which `--spec-interval` reads back exactly (humantime's form has spaces).
        collector
            .settings
            .run_arguments
            .push(format!("--spec-interval={}", interval.as_secs_f64()));
    }
    let token = collector.secret("--token", "REMOTE_AGENTS_TOKEN", token)?;
    let encryption_key = collector.secret(
        "--encryption-key",
        "REMOTE_AGENTS_ENCRYPTION_KEY",
        encryption_key,
    )?;
    let relay_key = collector.secret("--relay-key", "REMOTE_AGENTS_RELAY_KEY", relay_key)?;

    let mut settings = collector.settings;
    settings.node_flags = NodeFlags {
        relay,
        room,
        token,
        name,
        tags,
        no_agent,
        data_dir,
        config,
        mode,
        encryption_key,
        relay_key,
        operators,
        operator_key,
        direct,
        udp_reflector,
        // The service runs `run`, which serves no MCP.
        toolsets: None,
        watch: remote_agents_node::config::WatchFlags {
            spec,
            spec_repo,
            spec_branch,
            spec_interval,
        },
    };
    Ok(settings)
}

impl ServiceSettings {
    /// Adds the secrets of an earlier install that this one was not given: re-running `install`
    /// to change a name or a tag should not silently drop the room token passed the first time.
    /// (`uninstall` then `install` starts from nothing.)
    pub fn keep_secrets(&mut self, previous: Vec<Secret>) {
        for secret in previous {
            if !self
                .secrets
                .iter()
                .any(|given| given.variable == secret.variable)
            {
                self.kept_secrets.push(secret.variable);
                self.secrets.push(secret);
            }
        }
        self.secrets.sort_by_key(|secret| {
            SECRET_VARIABLES
                .iter()
                .position(|variable| *variable == secret.variable)
        });
    }
}

struct Collector<'a> {
    env: &'a dyn Env,
    working_dir: &'a Path,
    settings: ServiceSettings,
}

impl Collector<'_> {
    /// The flag's value, else its variable's; checked to fit on one line of a service file.
    fn value(
        &mut self,
        flag: &'static str,
        variable: &'static str,
        given: Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let (value, source) = match given {
            Some(value) => (value, flag),
            None => match self.env.get(variable) {
                Some(value) => {
                    self.settings.from_environment.push(variable);
                    (value, variable)
                }
                None => return Ok(None),
            },
        };
        reject_control_characters(source, &value)?;
        Ok(Some(value))
    }

    fn text(
        &mut self,
        flag: &'static str,
        variable: &'static str,
        given: Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let value = self.value(flag, variable, given)?;
        if let Some(value) = &value {
            self.settings.run_arguments.push(format!("{flag}={value}"));
        }
        Ok(value)
    }

    fn path(
        &mut self,
        flag: &'static str,
        variable: &'static str,
        given: Option<PathBuf>,
    ) -> anyhow::Result<Option<PathBuf>> {
        let given = match given {
            Some(path) => Some(
                path.to_str()
                    .with_context(|| format!("{flag} {}: not valid UTF-8", path.display()))?
                    .to_string(),
            ),
            None => None,
        };
        let Some(value) = self.value(flag, variable, given)? else {
            return Ok(None);
        };
        if value.is_empty() {
            bail!("{flag}: an empty path");
        }
        let absolute = self.working_dir.join(&value);
        let text = absolute
            .to_str()
            .with_context(|| format!("{flag} {}: not valid UTF-8", absolute.display()))?;
        self.settings.run_arguments.push(format!("{flag}={text}"));
        Ok(Some(absolute))
    }

    /// A repository: a local folder (made absolute) or a URL (kept as is).
    fn repository(
        &mut self,
        flag: &'static str,
        variable: &'static str,
        given: Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let Some(value) = self.value(flag, variable, given)? else {
            return Ok(None);
        };
        let local = self.working_dir.join(&value);
        let value = if !Path::new(&value).is_absolute() && local.exists() {
            local
                .to_str()
                .with_context(|| format!("{flag} {}: not valid UTF-8", local.display()))?
                .to_string()
        } else {
            value
        };
        self.settings.run_arguments.push(format!("{flag}={value}"));
        Ok(Some(value))
    }

    fn switch(
        &mut self,
        flag: &'static str,
        variable: &'static str,
        given: bool,
    ) -> anyhow::Result<bool> {
        let on = match self.value(flag, variable, given.then(|| "true".to_string()))? {
            None => false,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                _ => bail!("{variable}: `{value}` is not a boolean (true/false/1/0/yes/no)"),
            },
        };
        if on {
            self.settings.run_arguments.push(flag.to_string());
        }
        Ok(on)
    }

    fn secret(
        &mut self,
        flag: &'static str,
        variable: &'static str,
        given: Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let source = if given.is_some() {
            self.settings.secret_flags.push(flag);
            flag
        } else {
            variable
        };
        let Some(value) = self.value(flag, variable, given)? else {
            return Ok(None);
        };
        if value.contains('\'') {
            bail!(
                "{source}: a value with a single quote cannot go into the service's environment file"
            );
        }
        self.settings.secrets.push(Secret {
            variable,
            value: value.clone(),
        });
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn flags_become_run_arguments_and_secrets_stay_out_of_them() {
        let node = NodeArgs {
            room: RoomArgs {
                relay: Some("wss://relay.example/ws".into()),
                room: Some("lab".into()),
                token: Some("s3cret".into()),
                encryption_key: Some("e-key".into()),
                relay_key: None,
            },
            name: Some("ada's laptop".into()),
            no_agent: true,
            data_dir: Some("data".into()),
            ..NodeArgs::default()
        };
        let watch = WatchArgs {
            spec_repo: Some("https://git.example/fleet.git".into()),
            spec_interval: Some(Duration::from_millis(1500)),
            ..WatchArgs::default()
        };
        let settings = collect(
            &node,
            &watch,
            &env(&[("REMOTE_AGENTS_RELAY_KEY", "r-key")]),
            Path::new("/work"),
        )
        .unwrap();
        assert_eq!(
            settings.run_arguments,
            [
                "--relay=wss://relay.example/ws",
                "--room=lab",
                "--name=ada's laptop",
                "--no-agent",
                "--data-dir=/work/data",
                "--spec-repo=https://git.example/fleet.git",
                "--spec-interval=1.5",
            ]
        );
        let secrets: Vec<(&str, &str)> = settings
            .secrets
            .iter()
            .map(|secret| (secret.variable, secret.value.as_str()))
            .collect();
        assert_eq!(
            secrets,
            [
                ("REMOTE_AGENTS_TOKEN", "s3cret"),
                ("REMOTE_AGENTS_ENCRYPTION_KEY", "e-key"),
                ("REMOTE_AGENTS_RELAY_KEY", "r-key"),
            ]
        );
        assert_eq!(settings.from_environment, ["REMOTE_AGENTS_RELAY_KEY"]);
        assert_eq!(settings.secret_flags, ["--token", "--encryption-key"]);
        assert_eq!(
            settings.node_flags.data_dir.as_deref(),
            Some(Path::new("/work/data"))
        );
    }

    #[test]
    fn secrets_not_given_again_are_kept_and_given_ones_replace_the_old() {
        let node = NodeArgs {
            room: RoomArgs {
                relay_key: Some("new-relay-key".into()),
                ..RoomArgs::default()
            },
            ..NodeArgs::default()
        };
        let mut settings =
            collect(&node, &WatchArgs::default(), &env(&[]), Path::new("/")).unwrap();
        settings.keep_secrets(vec![
            Secret {
                variable: "REMOTE_AGENTS_RELAY_KEY",
                value: "old-relay-key".into(),
            },
            Secret {
                variable: "REMOTE_AGENTS_TOKEN",
                value: "old-token".into(),
            },
        ]);
        let secrets: Vec<(&str, &str)> = settings
            .secrets
            .iter()
            .map(|secret| (secret.variable, secret.value.as_str()))
            .collect();
        assert_eq!(
            secrets,
            [
                ("REMOTE_AGENTS_TOKEN", "old-token"),
                ("REMOTE_AGENTS_RELAY_KEY", "new-relay-key"),
            ]
        );
        assert_eq!(settings.kept_secrets, ["REMOTE_AGENTS_TOKEN"]);
    }

    #[test]
    fn a_flag_wins_over_its_variable() {
        let node = NodeArgs {
            name: Some("from-flag".into()),
            ..NodeArgs::default()
        };
        let settings = collect(
            &node,
            &WatchArgs::default(),
            &env(&[
                ("REMOTE_AGENTS_NAME", "from-env"),
                ("REMOTE_AGENTS_TAGS", "a,b"),
            ]),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(settings.run_arguments, ["--name=from-flag", "--tags=a,b"]);
        assert_eq!(settings.from_environment, ["REMOTE_AGENTS_TAGS"]);
    }

    #[test]
    fn errors_name_the_flag_or_variable_at_fault() {
        let cases: [(NodeArgs, BTreeMap<String, String>, &str); 4] = [
            (
                NodeArgs {
                    name: Some("two\nlines".into()),
                    ..NodeArgs::default()
                },
                env(&[]),
                "--name: contains a control character",
            ),
            (
                NodeArgs {
                    room: RoomArgs {
                        token: Some("it's".into()),
                        ..RoomArgs::default()
                    },
                    ..NodeArgs::default()
                },
                env(&[]),
                "--token: a value with a single quote",
            ),
            (
                NodeArgs::default(),
                env(&[("REMOTE_AGENTS_ENCRYPTION_KEY", "a'b")]),
                "REMOTE_AGENTS_ENCRYPTION_KEY: a value with a single quote",
            ),
            (
                NodeArgs::default(),
                env(&[("REMOTE_AGENTS_NO_AGENT", "maybe")]),
                "REMOTE_AGENTS_NO_AGENT: `maybe` is not a boolean",
            ),
        ];
        for (node, env, expected) in cases {
            let error = collect(&node, &WatchArgs::default(), &env, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        }
    }
}
