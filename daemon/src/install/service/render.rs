//! The service's files as text, pure and platform-independent so that every platform's files
//! are rendered and checked by tests on any machine: the systemd unit (with systemd's quoting of
//! `ExecStart=` words), the launchd plist, and the environment file of secrets (readable by both
//! systemd's `EnvironmentFile=` and a POSIX shell).

use std::path::Path;

use anyhow::{Context as _, bail};

use super::layout::{LAUNCHD_LABEL, Layout, Platform, Scope};

/// A secret setting on its way to the environment file.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The `REMOTE_AGENTS_*` variable the node reads it from.
    pub variable: &'static str,
    pub value: String,
}

impl std::fmt::Debug for Secret {
    // Secrets never reach a log or a panic message through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, <redacted>)", self.variable)
    }
}

/// What the service runs: `<executable> run <run_arguments>` with the environment file loaded.
#[derive(Debug, Clone)]
pub struct ServiceCommand<'a> {
    /// The absolute path of this `remote-agents` binary.
    pub executable: &'a Path,
    /// The words after `run`, none of them secret.
    pub run_arguments: &'a [String],
}

/// A file's text, with a copy safe to print when it holds secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub content: String,
    /// What `--dry-run` prints: `content` with every secret value replaced.
    pub printable: String,
    /// Unix permission bits.
    pub mode: u32,
}

/// The service file (systemd unit or launchd plist) for `layout`.
pub fn service_file(layout: &Layout, command: &ServiceCommand<'_>) -> anyhow::Result<RenderedFile> {
    let content = match layout.platform {
        Platform::Linux => systemd_unit(layout, command)?,
        Platform::Macos => launchd_plist(layout, command)?,
    };
    Ok(RenderedFile {
        printable: content.clone(),
        content,
        mode: 0o644,
    })
}

/// The systemd unit: `run` restarted on failure, its secrets from the environment file.
pub fn systemd_unit(layout: &Layout, command: &ServiceCommand<'_>) -> anyhow::Result<String> {
    let mut exec_start = vec![systemd_quote_unexpanded(&path_text(command.executable)?)?];
    exec_start.push("run".to_string());
    for argument in command.run_arguments {
        exec_start.push(systemd_quote(argument)?);
    }
    let environment_file = path_text(&layout.environment_file)?;
    reject_control_characters("the environment file's path", &environment_file)?;

    let mut unit = String::new();
    unit.push_str("# Written by `remote-agents install`; `remote-agents uninstall` removes it.\n");
    unit.push_str("# Re-run `remote-agents install` with new settings rather than editing it.\n");
    unit.push_str("[Unit]\nDescription=remote-agents node\n");
    if layout.scope == Scope::System {
        // A user manager has no network-online.target; the system one orders the start after
        // the network is up (the node also reconnects on its own).
        unit.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    unit.push_str("\n[Service]\nType=simple\n");
    for (name, value) in layout.service_environment() {
        unit.push_str(&format!(
            "Environment={}\n",
            systemd_quote_unexpanded(&format!("{name}={value}"))?
        ));
    }
    // EnvironmentFile= takes the rest of the line as the path (no quoting), with `%` specifiers.
    unit.push_str(&format!(
        "EnvironmentFile={}\n",
        environment_file.replace('%', "%%")
    ));
    unit.push_str(&format!("ExecStart={}\n", exec_start.join(" ")));
    unit.push_str("Restart=on-failure\nRestartSec=5s\n");
    let wanted_by = match layout.scope {
        Scope::User => "default.target",
        Scope::System => "multi-user.target",
    };
    unit.push_str(&format!("\n[Install]\nWantedBy={wanted_by}\n"));
    Ok(unit)
}

/// One `ExecStart=` argument as systemd reads it back: bare when it holds only characters
/// systemd gives no meaning to, else in double quotes with `\` and `"` escaped, `%` doubled
/// (specifiers) and `$` doubled (variable expansion).
pub fn systemd_quote(word: &str) -> anyhow::Result<String> {
    systemd_quote_word(word, true)
}

/// A word systemd expands specifiers in but no variables: the program `ExecStart=` runs (its
/// first word is never variable-expanded, so a doubled `$` would stay doubled) and an
/// `Environment=` assignment.
pub fn systemd_quote_unexpanded(word: &str) -> anyhow::Result<String> {
    systemd_quote_word(word, false)
}

fn systemd_quote_word(word: &str, variables_expand: bool) -> anyhow::Result<String> {
    reject_control_characters("an ExecStart argument", word)?;
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@".contains(c));
    if plain {
        return Ok(word.to_string());
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('"');
    for c in word.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '%' => quoted.push_str("%%"),
            '$' if variables_expand => quoted.push_str("$$"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    Ok(quoted)
}

/// The script launchd runs: load the environment file (`set -a` exports what it assigns), then
/// become the node. launchd has no `EnvironmentFile=`, and `EnvironmentVariables` would put the
/// secrets in the plist; the script is fixed text and the paths are its positional parameters
/// (`$0` the file, `$@` the command), so nothing is quoted into it.
pub const LAUNCHD_SCRIPT: &str = "set -a && . \"$0\" && set +a && exec \"$@\"";

/// The launchd plist: a LaunchAgent (user) or LaunchDaemon (system) kept alive while it fails.
pub fn launchd_plist(layout: &Layout, command: &ServiceCommand<'_>) -> anyhow::Result<String> {
    use plist::{Dictionary, Value};

    let mut program_arguments = vec![
        Value::String("/bin/sh".into()),
        Value::String("-c".into()),
        Value::String(LAUNCHD_SCRIPT.into()),
        Value::String(path_text(&layout.environment_file)?),
        Value::String(path_text(command.executable)?),
        Value::String("run".into()),
    ];
    program_arguments.extend(command.run_arguments.iter().cloned().map(Value::String));

    let mut keep_alive = Dictionary::new();
    // Restart after a failure, not after a clean exit (launchd's `Restart=on-failure`).
    keep_alive.insert("SuccessfulExit".into(), Value::Boolean(false));

    let mut job = Dictionary::new();
    job.insert("Label".into(), Value::String(LAUNCHD_LABEL.into()));
    job.insert("ProgramArguments".into(), Value::Array(program_arguments));
    job.insert("RunAtLoad".into(), Value::Boolean(true));
    job.insert("KeepAlive".into(), Value::Dictionary(keep_alive));
    job.insert(
        "ThrottleInterval".into(),
        Value::Integer(plist::Integer::from(5_u64)),
    );
    let environment = layout.service_environment();
    if !environment.is_empty() {
        let mut variables = Dictionary::new();
        for (name, value) in environment {
            variables.insert(name.into(), Value::String(value));
        }
        job.insert("EnvironmentVariables".into(), Value::Dictionary(variables));
    }
    if let Some(log_file) = &layout.log_file {
        let log_file = path_text(log_file)?;
        job.insert("StandardOutPath".into(), Value::String(log_file.clone()));
        job.insert("StandardErrorPath".into(), Value::String(log_file));
    }

    let mut xml = Vec::new();
    Value::Dictionary(job)
        .to_writer_xml(&mut xml)
        .context("cannot render the launchd plist")?;
    xml.push(b'\n');
    String::from_utf8(xml).context("the launchd plist is not UTF-8")
}

/// The environment file: one `NAME='value'` line per secret, which systemd's `EnvironmentFile=`
/// and a POSIX shell's `.` read the same way (single quotes keep every other character as is).
pub fn environment_file(secrets: &[Secret]) -> anyhow::Result<RenderedFile> {
    let header = "# Written by `remote-agents install` (mode 0600): the node's secrets, read by its\n\
                  # service at start. `remote-agents uninstall` removes it.\n";
    let mut content = header.to_string();
    let mut printable = header.to_string();
    for secret in secrets {
        if secret.value.contains('\'') {
            bail!(
                "{}: a value with a single quote cannot go into the service's environment file",
                secret.variable
            );
        }
        reject_control_characters(secret.variable, &secret.value)?;
        content.push_str(&format!("{}='{}'\n", secret.variable, secret.value));
        printable.push_str(&format!(
            "{}=<redacted, {} bytes>\n",
            secret.variable,
            secret.value.len()
        ));
    }
    Ok(RenderedFile {
        content,
        printable,
        mode: 0o600,
    })
}

/// The `NAME='value'` lines of an environment file this module wrote, for the variables in
/// `wanted`; anything else in it is ignored.
pub fn read_environment_file(text: &str, wanted: &[&'static str]) -> Vec<Secret> {
    text.lines()
        .filter_map(|line| {
            let (name, quoted) = line.split_once('=')?;
            let variable = *wanted.iter().find(|wanted| **wanted == name)?;
            let value = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
            (!value.contains('\'')).then(|| Secret {
                variable,
                value: value.to_string(),
            })
        })
        .collect()
}

/// Refuses control characters (newlines included): no file format here can carry them on one
/// line, and none belongs in a setting.
pub fn reject_control_characters(what: &str, text: &str) -> anyhow::Result<()> {
    if text.chars().any(char::is_control) {
        bail!(
            "{what}: contains a control character (a newline?), which a service file cannot hold"
        );
    }
    Ok(())
}

fn path_text(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::install::service::layout::UserDirs;

    fn user_dirs() -> UserDirs {
        UserDirs {
            home: PathBuf::from("/home/ada"),
            config_home: PathBuf::from("/home/ada/.config"),
        }
    }

    fn arguments() -> Vec<String> {
        vec![
            "--relay=wss://relay.example/ws".to_string(),
            "--name=ada's laptop".to_string(),
        ]
    }

    #[test]
    fn plain_words_stay_bare_and_the_rest_are_quoted_for_systemd() {
        let cases = [
            (
                "--relay=wss://r.example:443/ws",
                "--relay=wss://r.example:443/ws",
            ),
            ("--name=a b", "\"--name=a b\""),
            ("--name=100%", "\"--name=100%%\""),
            ("--name=$HOME", "\"--name=$$HOME\""),
            ("--name=say \"hi\"", "\"--name=say \\\"hi\\\"\""),
            ("--name=back\\slash", "\"--name=back\\\\slash\""),
            ("--tags=;", "\"--tags=;\""),
            ("", "\"\""),
            (
                "/opt/my apps/remote-agents",
                "\"/opt/my apps/remote-agents\"",
            ),
        ];
        for (word, expected) in cases {
            assert_eq!(systemd_quote(word).unwrap(), expected, "word {word:?}");
        }
        assert_eq!(
            systemd_quote_unexpanded("/opt/$x 100%/remote-agents").unwrap(),
            "\"/opt/$x 100%%/remote-agents\""
        );
        let error = systemd_quote("--name=a\nb").unwrap_err().to_string();
        assert!(error.contains("control character"), "{error}");
    }

    #[test]
    fn user_unit_runs_the_binary_with_its_environment_file_and_restarts_on_failure() {
        let layout = Layout::user(Platform::Linux, &user_dirs());
        let arguments = arguments();
        let unit = systemd_unit(
            &layout,
            &ServiceCommand {
                executable: Path::new("/usr/local/bin/remote-agents"),
                run_arguments: &arguments,
            },
        )
        .unwrap();
        assert!(unit.contains(
            "\nExecStart=/usr/local/bin/remote-agents run --relay=wss://relay.example/ws \"--name=ada's laptop\"\n"
        ));
        assert!(unit.contains("\nEnvironmentFile=/home/ada/.config/remote-agents/service.env\n"));
        assert!(unit.contains("\nRestart=on-failure\n"));
        assert!(unit.contains("\nWantedBy=default.target\n"));
        assert!(!unit.contains("network-online"), "{unit}");
        assert!(!unit.contains("Environment=HOME"), "{unit}");
    }

    #[test]
    fn system_unit_waits_for_the_network_and_puts_the_node_in_system_folders() {
        let layout = Layout::system(Platform::Linux);
        let unit = systemd_unit(
            &layout,
            &ServiceCommand {
                executable: Path::new("/usr/bin/remote-agents"),
                run_arguments: &[],
            },
        )
        .unwrap();
        assert!(unit.contains("\nAfter=network-online.target\n"), "{unit}");
        assert!(unit.contains("\nWantedBy=multi-user.target\n"), "{unit}");
        assert!(
            unit.contains("\nEnvironmentFile=/etc/remote-agents/service.env\n"),
            "{unit}"
        );
        assert!(
            unit.contains("\nEnvironment=XDG_CONFIG_HOME=/etc\n"),
            "{unit}"
        );
        assert!(
            unit.contains("\nEnvironment=XDG_DATA_HOME=/var/lib\n"),
            "{unit}"
        );
    }

    #[test]
    fn percent_in_the_environment_file_path_is_escaped_as_a_specifier() {
        let dirs = UserDirs {
            home: PathBuf::from("/home/100%"),
            config_home: PathBuf::from("/home/100%/.config"),
        };
        let layout = Layout::user(Platform::Linux, &dirs);
        let unit = systemd_unit(
            &layout,
            &ServiceCommand {
                executable: Path::new("/bin/remote-agents"),
                run_arguments: &[],
            },
        )
        .unwrap();
        assert!(
            unit.contains("\nEnvironmentFile=/home/100%%/.config/remote-agents/service.env\n"),
            "{unit}"
        );
    }

    fn parse_plist(text: &str) -> plist::Dictionary {
        plist::Value::from_reader(std::io::Cursor::new(text.as_bytes()))
            .expect("the plist parses")
            .into_dictionary()
            .expect("the plist is a dictionary")
    }

    fn strings(value: &plist::Value) -> Vec<String> {
        value
            .as_array()
            .expect("an array")
            .iter()
            .map(|v| v.as_string().expect("a string").to_string())
            .collect()
    }

    #[test]
    fn launch_agent_parses_and_loads_the_environment_file_before_running_the_node() {
        let layout = Layout::user(Platform::Macos, &user_dirs());
        assert_eq!(
            layout.service_file,
            Path::new("/home/ada/Library/LaunchAgents/dev.remote-agents.node.plist")
        );
        let arguments = arguments();
        let text = launchd_plist(
            &layout,
            &ServiceCommand {
                executable: Path::new("/Applications/Remote Agents/remote-agents"),
                run_arguments: &arguments,
            },
        )
        .unwrap();
        let job = parse_plist(&text);
        assert_eq!(job["Label"].as_string(), Some(LAUNCHD_LABEL));
        assert_eq!(
            strings(&job["ProgramArguments"]),
            [
                "/bin/sh",
                "-c",
                LAUNCHD_SCRIPT,
                "/home/ada/.config/remote-agents/service.env",
                "/Applications/Remote Agents/remote-agents",
                "run",
                "--relay=wss://relay.example/ws",
                "--name=ada's laptop",
            ]
        );
        assert_eq!(job["RunAtLoad"].as_boolean(), Some(true));
        let keep_alive = job["KeepAlive"].as_dictionary().unwrap();
        assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
        assert_eq!(
            job["StandardOutPath"].as_string(),
            Some("/home/ada/Library/Logs/remote-agents.log")
        );
        assert_eq!(
            job["StandardErrorPath"].as_string(),
            job["StandardOutPath"].as_string()
        );
        // A per-user agent inherits its session's environment; nothing secret or otherwise is set.
        assert!(!job.contains_key("EnvironmentVariables"), "{text}");
    }

    #[test]
    fn launch_daemon_sets_the_system_folders_and_no_secret() {
        let layout = Layout::system(Platform::Macos);
        assert_eq!(
            layout.service_file,
            Path::new("/Library/LaunchDaemons/dev.remote-agents.node.plist")
        );
        let text = launchd_plist(
            &layout,
            &ServiceCommand {
                executable: Path::new("/usr/local/bin/remote-agents"),
                run_arguments: &[],
            },
        )
        .unwrap();
        let job = parse_plist(&text);
        let variables = job["EnvironmentVariables"].as_dictionary().unwrap();
        let names: Vec<&str> = variables.keys().map(String::as_str).collect();
        assert_eq!(names, ["HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"]);
        assert_eq!(variables["XDG_CONFIG_HOME"].as_string(), Some("/etc"));
        assert_eq!(
            strings(&job["ProgramArguments"])[3],
            "/etc/remote-agents/service.env"
        );
        assert_eq!(
            job["StandardOutPath"].as_string(),
            Some("/Library/Logs/remote-agents.log")
        );
    }

    #[test]
    fn launchd_script_exports_the_environment_file_to_the_node() {
        // The script launchd runs, run here by sh with a printing command in place of the node.
        let folder = tempfile::tempdir().unwrap();
        let env_path = folder.path().join("service env");
        let rendered = environment_file(&[Secret {
            variable: "REMOTE_AGENTS_TOKEN",
            value: "t0k$en \"with\" \\ spaces".to_string(),
        }])
        .unwrap();
        std::fs::write(&env_path, &rendered.content).unwrap();
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", LAUNCHD_SCRIPT])
            .arg(&env_path)
            .args(["/bin/sh", "-c", "printf %s \"$REMOTE_AGENTS_TOKEN\""])
            .env_clear()
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "t0k$en \"with\" \\ spaces"
        );
    }

    #[test]
    fn environment_file_holds_the_secrets_and_its_printable_copy_does_not() {
        let rendered = environment_file(&[
            Secret {
                variable: "REMOTE_AGENTS_TOKEN",
                value: "s3cret".to_string(),
            },
            Secret {
                variable: "REMOTE_AGENTS_RELAY_KEY",
                value: "k3y".to_string(),
            },
        ])
        .unwrap();
        assert_eq!(rendered.mode, 0o600);
        assert!(
            rendered
                .content
                .contains("\nREMOTE_AGENTS_TOKEN='s3cret'\n")
        );
        assert!(
            rendered
                .content
                .contains("\nREMOTE_AGENTS_RELAY_KEY='k3y'\n")
        );
        assert!(!rendered.printable.contains("s3cret"));
        assert!(!rendered.printable.contains("k3y"));
        assert!(
            rendered
                .printable
                .contains("REMOTE_AGENTS_TOKEN=<redacted, 6 bytes>")
        );
    }

    #[test]
    fn environment_file_reads_back_what_it_wrote() {
        let secrets = [
            Secret {
                variable: "REMOTE_AGENTS_TOKEN",
                value: "a=b $c \"d\"".to_string(),
            },
            Secret {
                variable: "REMOTE_AGENTS_RELAY_KEY",
                value: String::new(),
            },
        ];
        let rendered = environment_file(&secrets).unwrap();
        let text = format!(
            "{}OTHER='x'\nREMOTE_AGENTS_ENCRYPTION_KEY=unquoted\n",
            rendered.content
        );
        assert_eq!(
            read_environment_file(
                &text,
                &[
                    "REMOTE_AGENTS_TOKEN",
                    "REMOTE_AGENTS_ENCRYPTION_KEY",
                    "REMOTE_AGENTS_RELAY_KEY"
                ]
            ),
            secrets
        );
    }

    #[test]
    fn environment_file_refuses_values_it_cannot_quote() {
        for value in ["it's", "two\nlines"] {
            let error = environment_file(&[Secret {
                variable: "REMOTE_AGENTS_TOKEN",
                value: value.to_string(),
            }])
            .unwrap_err()
            .to_string();
            assert!(error.starts_with("REMOTE_AGENTS_TOKEN: "), "{error}");
        }
    }
}
