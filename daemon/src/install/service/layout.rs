//! Where the service's files go, per platform and scope: the systemd unit or launchd plist, the
//! 0600 environment file holding the secrets, the manifest of what `install` wrote, and the
//! enable link `systemctl enable` makes. Pure: paths are computed from the home and config folders
//! it is given, so tests use a temporary HOME.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use remote_agents_node::config::Env;
use serde::{Deserialize, Serialize};

/// The systemd unit's name (the node's policy refuses `remote-agents*.service` to every mode).
pub const SYSTEMD_UNIT_NAME: &str = "remote-agents.service";
/// The launchd job's label (the node's policy refuses `*remote-agents*` plists to every mode).
pub const LAUNCHD_LABEL: &str = "dev.remote-agents.node";

/// The service manager family, which decides the file formats and the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// systemd units.
    Linux,
    /// launchd jobs.
    Macos,
}

impl Platform {
    /// The platform this binary was built for, when it has a supported service manager.
    pub fn current() -> anyhow::Result<Platform> {
        if cfg!(target_os = "linux") {
            Ok(Platform::Linux)
        } else if cfg!(target_os = "macos") {
            Ok(Platform::Macos)
        } else {
            bail!(
                "install supports Linux (systemd) and macOS (launchd) only, not {}",
                std::env::consts::OS
            )
        }
    }
}

/// A per-user service or a system one (`--system`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    User,
    System,
}

/// The user's folders, from `$HOME` and `$XDG_CONFIG_HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDirs {
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME` when set to an absolute path, else `~/.config` (as systemd and the
    /// node itself decide it).
    pub config_home: PathBuf,
}

impl UserDirs {
    /// Reads `HOME` and `XDG_CONFIG_HOME`; a relative `XDG_CONFIG_HOME` is ignored, as the XDG
    /// specification says.
    pub fn from_env(env: &dyn Env) -> anyhow::Result<UserDirs> {
        let home = env
            .get("HOME")
            .context("HOME is not set: the per-user service's files go under it")?;
        let home = PathBuf::from(home);
        if !home.is_absolute() {
            bail!("HOME ({}) is not an absolute path", home.display());
        }
        let config_home = env
            .get("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
            .unwrap_or_else(|| home.join(".config"));
        Ok(UserDirs { home, config_home })
    }
}

/// The paths one installation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub platform: Platform,
    pub scope: Scope,
    /// The systemd unit or the launchd plist.
    pub service_file: PathBuf,
    /// The 0600 file of `REMOTE_AGENTS_*` secrets the service reads at start.
    pub environment_file: PathBuf,
    /// The record of what `install` wrote, read by `uninstall`.
    pub manifest: PathBuf,
    /// systemd: the symlink `systemctl enable` makes (removed by `systemctl disable`).
    pub enable_link: Option<PathBuf>,
    /// launchd: where launchd writes the node's stdout and stderr (launchd creates it; the
    /// node's log is its own, so `uninstall` leaves it).
    pub log_file: Option<PathBuf>,
    /// The folders `install` may create for these files, outermost first; each is removed by
    /// `uninstall` only if `install` created it and it is empty then.
    pub folders: Vec<PathBuf>,
}

impl Layout {
    /// A per-user service of `dirs`' user.
    pub fn user(platform: Platform, dirs: &UserDirs) -> Layout {
        let node_config_folder = dirs.config_home.join("remote-agents");
        let environment_file = node_config_folder.join("service.env");
        let manifest = node_config_folder.join("service-install.json");
        match platform {
            Platform::Linux => {
                let unit_folder = dirs.config_home.join("systemd/user");
                Layout {
                    platform,
                    scope: Scope::User,
                    service_file: unit_folder.join(SYSTEMD_UNIT_NAME),
                    environment_file,
                    manifest,
                    enable_link: Some(
                        unit_folder
                            .join("default.target.wants")
                            .join(SYSTEMD_UNIT_NAME),
                    ),
                    log_file: None,
                    folders: vec![
                        dirs.config_home.clone(),
                        node_config_folder,
                        dirs.config_home.join("systemd"),
                        unit_folder.clone(),
                        unit_folder.join("default.target.wants"),
                    ],
                }
            }
            Platform::Macos => {
                let agents_folder = dirs.home.join("Library/LaunchAgents");
                Layout {
                    platform,
                    scope: Scope::User,
                    service_file: agents_folder.join(format!("{LAUNCHD_LABEL}.plist")),
                    environment_file,
                    manifest,
                    enable_link: None,
                    log_file: Some(dirs.home.join("Library/Logs/remote-agents.log")),
                    folders: vec![
                        dirs.config_home.clone(),
                        node_config_folder,
                        dirs.home.join("Library"),
                        agents_folder,
                    ],
                }
            }
        }
    }

    /// A system service, run as root.
    pub fn system(platform: Platform) -> Layout {
        let node_config_folder = PathBuf::from("/etc/remote-agents");
        let environment_file = node_config_folder.join("service.env");
        let manifest = node_config_folder.join("service-install.json");
        match platform {
            Platform::Linux => Layout {
                platform,
                scope: Scope::System,
                service_file: Path::new("/etc/systemd/system").join(SYSTEMD_UNIT_NAME),
                environment_file,
                manifest,
                enable_link: Some(
                    Path::new("/etc/systemd/system/multi-user.target.wants")
                        .join(SYSTEMD_UNIT_NAME),
                ),
                log_file: None,
                folders: vec![node_config_folder],
            },
            Platform::Macos => Layout {
                platform,
                scope: Scope::System,
                service_file: Path::new("/Library/LaunchDaemons")
                    .join(format!("{LAUNCHD_LABEL}.plist")),
                environment_file,
                manifest,
                enable_link: None,
                log_file: Some(PathBuf::from("/Library/Logs/remote-agents.log")),
                folders: vec![node_config_folder],
            },
        }
    }

    /// The non-secret environment a system service gets from its unit or plist: a root service
    /// has no login session, so HOME and the XDG folders are set to put the node's defaults
    /// (config file, data dir) in the system's places: `/etc/remote-agents/config.toml` and
    /// `/var/lib/remote-agents` (macOS: `/Library/Application Support/remote-agents`). A per-user
    /// service gets its session's own.
    pub fn service_environment(&self) -> Vec<(&'static str, String)> {
        match (self.scope, self.platform) {
            (Scope::User, _) => Vec::new(),
            (Scope::System, Platform::Linux) => vec![
                ("HOME", "/root".to_string()),
                ("XDG_CONFIG_HOME", "/etc".to_string()),
                ("XDG_DATA_HOME", "/var/lib".to_string()),
            ],
            (Scope::System, Platform::Macos) => vec![
                ("HOME", "/var/root".to_string()),
                ("XDG_CONFIG_HOME", "/etc".to_string()),
                ("XDG_DATA_HOME", "/Library/Application Support".to_string()),
            ],
        }
    }

    /// The files `install` writes itself, in the order it writes them (the manifest first, so
    /// that an install cut short can still be undone).
    pub fn written_files(&self) -> [&Path; 3] {
        [&self.manifest, &self.environment_file, &self.service_file]
    }

    /// Whether `path` is one of this layout's files or folders: `uninstall` removes nothing
    /// else, whatever a manifest says.
    pub fn owns(&self, path: &Path) -> bool {
        self.written_files().contains(&path)
            || self.enable_link.as_deref() == Some(path)
            || self.folders.iter().any(|folder| folder == path)
    }
}
