//! The service manager's side: what is known about it here (is it running, is lingering on, the
//! user's id), the `systemctl` / `launchctl` commands an install or uninstall runs (chosen by a
//! pure function of the layout and those facts, so tests and `--dry-run` see the same list), and
//! running them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use remote_agents_node::config::Env;

use super::layout::{LAUNCHD_LABEL, Layout, Platform, SYSTEMD_UNIT_NAME, Scope};

/// What decides the commands, read from the machine (or given by a test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Whether the scope's service manager runs and can be reached: a per-user systemd has its
    /// socket in the runtime folder; the system one runs when `/run/systemd/system` exists
    /// (what `sd_booted` checks). launchd always runs.
    pub manager_running: bool,
    /// Linux, per-user: whether the user's manager outlives their sessions (`loginctl
    /// enable-linger`), read from `/var/lib/systemd/linger/<user>`.
    pub lingering: Option<bool>,
    /// The user's name, for the lingering hint.
    pub user_name: String,
    /// The user's id: launchd's per-user domain is `gui/<uid>`.
    pub uid: u32,
}

impl Facts {
    /// Reads the facts of this machine for `layout`.
    pub fn gather(layout: &Layout, env: &dyn Env) -> anyhow::Result<Facts> {
        let uid = effective_uid()?;
        let user_name = match env.get("USER") {
            Some(name) => name,
            None => id(&["-un"])?,
        };
        let (manager_running, lingering) = match (layout.platform, layout.scope) {
            (Platform::Linux, Scope::User) => {
                let runtime_folder = env
                    .get("XDG_RUNTIME_DIR")
                    .unwrap_or_else(|| format!("/run/user/{uid}"));
                (
                    Path::new(&runtime_folder).join("systemd/private").exists(),
                    Some(
                        Path::new("/var/lib/systemd/linger")
                            .join(&user_name)
                            .exists(),
                    ),
                )
            }
            (Platform::Linux, Scope::System) => (Path::new("/run/systemd/system").is_dir(), None),
            (Platform::Macos, _) => (true, None),
        };
        Ok(Facts {
            manager_running,
            lingering,
            user_name,
            uid,
        })
    }
}

/// The effective user id, as `id` prints it.
pub fn effective_uid() -> anyhow::Result<u32> {
    id(&["-u"])?
        .parse()
        .context("`id -u` did not print a number")
}

fn id(arguments: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("id")
        .args(arguments)
        .output()
        .context("cannot run `id`")?;
    if !output.status.success() {
        bail!(
            "`id {}` failed: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// What a failed command means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The step matters: stop with an error.
    Stop,
    /// Say so and go on.
    Warn,
    /// Expected to fail when there is nothing to act on (stopping a service that is not
    /// loaded): go on silently.
    Ignore,
}

/// One command of an install or uninstall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerCommand {
    pub argv: Vec<String>,
    pub on_failure: OnFailure,
}

impl std::fmt::Display for ManagerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = self
            .argv
            .iter()
            .map(|word| {
                if word
                    .chars()
                    .any(|c| c.is_whitespace() || "'\"$\\".contains(c))
                {
                    format!("'{}'", word.replace('\'', "'\\''"))
                } else {
                    word.clone()
                }
            })
            .collect();
        f.write_str(&words.join(" "))
    }
}

fn systemctl(scope: Scope, verb: &str, on_failure: OnFailure) -> ManagerCommand {
    let mut argv = vec!["systemctl".to_string()];
    if scope == Scope::User {
        argv.push("--user".to_string());
    }
    argv.push(verb.to_string());
    if verb != "daemon-reload" {
        argv.push(SYSTEMD_UNIT_NAME.to_string());
    }
    ManagerCommand { argv, on_failure }
}

fn launchctl(arguments: &[&str], on_failure: OnFailure) -> ManagerCommand {
    let mut argv = vec!["launchctl".to_string()];
    argv.extend(arguments.iter().map(|word| word.to_string()));
    ManagerCommand { argv, on_failure }
}

fn launchd_domain(scope: Scope, facts: &Facts) -> String {
    match scope {
        Scope::User => format!("gui/{}", facts.uid),
        Scope::System => "system".to_string(),
    }
}

/// The commands that make the freshly written files the running service: systemd reloads,
/// enables and (re)starts it; launchd unloads the old job and loads the new one. Without a
/// running systemd manager the unit is only enabled (that needs no manager): it starts when the
/// manager does.
pub fn install_commands(layout: &Layout, facts: &Facts) -> Vec<ManagerCommand> {
    match layout.platform {
        Platform::Linux if facts.manager_running => vec![
            systemctl(layout.scope, "daemon-reload", OnFailure::Stop),
            systemctl(layout.scope, "enable", OnFailure::Stop),
            systemctl(layout.scope, "restart", OnFailure::Stop),
        ],
        Platform::Linux => vec![systemctl(layout.scope, "enable", OnFailure::Stop)],
        Platform::Macos => {
            let domain = launchd_domain(layout.scope, facts);
            let target = format!("{domain}/{LAUNCHD_LABEL}");
            let plist = layout.service_file.to_string_lossy();
            vec![
                // Fails when the job is not loaded yet, which is the first install.
                launchctl(&["bootout", &target], OnFailure::Ignore),
                // A job disabled earlier would refuse to bootstrap.
                launchctl(&["enable", &target], OnFailure::Stop),
                launchctl(&["bootstrap", &domain, &plist], OnFailure::Stop),
            ]
        }
    }
}

/// The commands that stop and disable the service, run before its files are removed.
pub fn uninstall_commands_before_removal(layout: &Layout, facts: &Facts) -> Vec<ManagerCommand> {
    match layout.platform {
        Platform::Linux if facts.manager_running => vec![
            systemctl(layout.scope, "stop", OnFailure::Ignore),
            systemctl(layout.scope, "disable", OnFailure::Warn),
        ],
        Platform::Linux => vec![systemctl(layout.scope, "disable", OnFailure::Warn)],
        Platform::Macos => {
            let target = format!("{}/{LAUNCHD_LABEL}", launchd_domain(layout.scope, facts));
            vec![launchctl(&["bootout", &target], OnFailure::Ignore)]
        }
    }
}

/// The commands that make the manager forget the removed files.
pub fn uninstall_commands_after_removal(layout: &Layout, facts: &Facts) -> Vec<ManagerCommand> {
    match layout.platform {
        Platform::Linux if facts.manager_running => {
            vec![systemctl(layout.scope, "daemon-reload", OnFailure::Warn)]
        }
        Platform::Linux | Platform::Macos => Vec::new(),
    }
}

/// Runs `command`; its failure is an error, a warning or nothing, as `on_failure` says.
pub fn run(command: &ManagerCommand) -> anyhow::Result<()> {
    let output = Command::new(&command.argv[0])
        .args(&command.argv[1..])
        .output();
    let failure = match output {
        Ok(output) if output.status.success() => return Ok(()),
        Ok(output) => format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => error.to_string(),
    };
    match command.on_failure {
        OnFailure::Stop => bail!("`{command}` failed: {failure}"),
        OnFailure::Warn => {
            eprintln!("warning: `{command}` failed: {failure}");
            Ok(())
        }
        OnFailure::Ignore => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::install::service::layout::UserDirs;

    fn facts(manager_running: bool) -> Facts {
        Facts {
            manager_running,
            lingering: Some(false),
            user_name: "ada".to_string(),
            uid: 501,
        }
    }

    fn lines(commands: &[ManagerCommand]) -> Vec<String> {
        commands.iter().map(ToString::to_string).collect()
    }

    fn dirs() -> UserDirs {
        UserDirs {
            home: PathBuf::from("/Users/ada"),
            config_home: PathBuf::from("/Users/ada/.config"),
        }
    }

    #[test]
    fn systemd_user_install_enables_and_starts_only_with_a_running_manager() {
        let layout = Layout::user(Platform::Linux, &dirs());
        assert_eq!(
            lines(&install_commands(&layout, &facts(true))),
            [
                "systemctl --user daemon-reload",
                "systemctl --user enable remote-agents.service",
                "systemctl --user restart remote-agents.service",
            ]
        );
        assert_eq!(
            lines(&install_commands(&layout, &facts(false))),
            ["systemctl --user enable remote-agents.service"]
        );
        assert_eq!(
            lines(&uninstall_commands_before_removal(&layout, &facts(true))),
            [
                "systemctl --user stop remote-agents.service",
                "systemctl --user disable remote-agents.service",
            ]
        );
        assert_eq!(
            lines(&uninstall_commands_after_removal(&layout, &facts(true))),
            ["systemctl --user daemon-reload"]
        );
    }

    #[test]
    fn systemd_system_install_uses_the_system_manager() {
        let layout = Layout::system(Platform::Linux);
        assert_eq!(
            lines(&install_commands(&layout, &facts(true))),
            [
                "systemctl daemon-reload",
                "systemctl enable remote-agents.service",
                "systemctl restart remote-agents.service",
            ]
        );
    }

    #[test]
    fn launchd_replaces_the_job_in_the_users_gui_domain_or_the_system_one() {
        let layout = Layout::user(Platform::Macos, &dirs());
        assert_eq!(
            lines(&install_commands(&layout, &facts(true))),
            [
                "launchctl bootout gui/501/dev.remote-agents.node",
                "launchctl enable gui/501/dev.remote-agents.node",
                "launchctl bootstrap gui/501 /Users/ada/Library/LaunchAgents/dev.remote-agents.node.plist",
            ]
        );
        assert_eq!(
            lines(&uninstall_commands_before_removal(&layout, &facts(true))),
            ["launchctl bootout gui/501/dev.remote-agents.node"]
        );
        let system = Layout::system(Platform::Macos);
        assert_eq!(
            lines(&install_commands(&system, &facts(true)))[2],
            "launchctl bootstrap system /Library/LaunchDaemons/dev.remote-agents.node.plist"
        );
    }

    #[test]
    fn a_failed_command_stops_warns_or_passes_as_asked() {
        let failing = |on_failure| ManagerCommand {
            argv: vec!["false".to_string()],
            on_failure,
        };
        let error = run(&failing(OnFailure::Stop)).unwrap_err().to_string();
        assert!(
            error.starts_with("`false` failed: exit status: 1"),
            "{error}"
        );
        run(&failing(OnFailure::Warn)).unwrap();
        run(&failing(OnFailure::Ignore)).unwrap();
    }
}
