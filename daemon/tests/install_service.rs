//! `remote-agents install` / `uninstall` end to end: the built binary run with a temporary HOME
//! and runtime folder (never the real ones, never /etc), checked with this machine's own
//! systemd: `systemd-analyze verify` accepts the unit and `systemctl --user is-enabled` sees it
//! enabled. Starting it needs a user manager, which a test machine may not have; the launchd
//! plist is parsed in the unit tests of `install::service::render`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOKEN: &str = "room-token-5ecret";
const ENCRYPTION_KEY: &str = "e2e-key-5ecret";

/// A temporary HOME and `XDG_RUNTIME_DIR` (0700, as systemd wants it) for one test.
struct Sandbox {
    _root: tempfile::TempDir,
    home: PathBuf,
    runtime: PathBuf,
    /// The folder commands run in (relative paths in flags are taken from it).
    work: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("home");
        let runtime = root.path().join("runtime");
        let work = root.path().join("work");
        for folder in [&home, &runtime, &work] {
            std::fs::create_dir(folder).unwrap();
        }
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        Sandbox {
            _root: root,
            home,
            runtime,
            work,
        }
    }

    /// `program` with an environment of this sandbox's only (no REMOTE_AGENTS_* of the caller).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .current_dir(&self.work);
        command
    }

    fn remote_agents(&self, arguments: &[&str]) -> Command {
        let mut command = self.command(env!("CARGO_BIN_EXE_remote-agents"));
        command.args(arguments);
        command
    }

    fn unit(&self) -> PathBuf {
        self.home.join(".config/systemd/user/remote-agents.service")
    }

    fn environment_file(&self) -> PathBuf {
        self.home.join(".config/remote-agents/service.env")
    }

    /// Every path under HOME with its content (folders and links marked), to compare states.
    fn home_tree(&self) -> BTreeMap<PathBuf, String> {
        let mut tree = BTreeMap::new();
        walk(&self.home, &self.home, &mut tree);
        tree
    }

    fn verify_user_unit(&self) -> Output {
        self.command("systemd-analyze")
            .args(["--user", "verify"])
            .arg(self.unit())
            .output()
            .unwrap()
    }

    fn is_enabled(&self) -> String {
        let output = self
            .command("systemctl")
            .args(["--user", "is-enabled", "remote-agents.service"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

fn walk(root: &Path, folder: &Path, tree: &mut BTreeMap<PathBuf, String>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(root).unwrap().to_path_buf();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            tree.insert(relative, format!("link to {}", target.display()));
        } else if metadata.is_dir() {
            tree.insert(relative, "folder".to_string());
            walk(root, &path, tree);
        } else {
            tree.insert(relative, std::fs::read_to_string(&path).unwrap());
        }
    }
}

fn succeed(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn fail(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "{command:?} succeeded");
    String::from_utf8(output.stderr).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn exec_start(unit: &str) -> &str {
    unit.lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart= line")
}

#[test]
fn install_writes_a_unit_systemd_verifies_and_enables_and_uninstall_leaves_nothing() {
    let sandbox = Sandbox::new();
    let installed = succeed(
        sandbox
            .remote_agents(&[
                "install",
                "--relay",
                "wss://relay.example/ws",
                "--room",
                "lab",
                "--name",
                "ada's \"100%\" $laptop",
                "--encryption-key",
                ENCRYPTION_KEY,
                "--data-dir",
                "data",
            ])
            .env("REMOTE_AGENTS_TOKEN", TOKEN),
    );
    assert!(
        installed.contains("taken from the environment: REMOTE_AGENTS_TOKEN"),
        "{installed}"
    );
    assert!(
        installed.contains("note: --encryption-key was on this command line"),
        "{installed}"
    );
    // The sandbox's runtime folder has no user manager's socket: enabled, to start with it.
    assert!(
        installed.contains("enabled; the user's systemd manager is not running here"),
        "{installed}"
    );
    // The lingering hint follows this machine's state for the user running the test.
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let lingering = Path::new("/var/lib/systemd/linger")
        .join(user.trim())
        .exists();
    assert_eq!(
        installed.contains("`loginctl enable-linger"),
        !lingering,
        "{installed}"
    );

    let unit = std::fs::read_to_string(sandbox.unit()).unwrap();
    assert_eq!(mode(&sandbox.unit()), 0o644);
    assert!(
        !unit.contains(TOKEN) && !unit.contains(ENCRYPTION_KEY),
        "{unit}"
    );
    let exec_start = exec_start(&unit);
    assert!(
        exec_start.starts_with(env!("CARGO_BIN_EXE_remote-agents")),
        "{exec_start}"
    );
    assert!(
        exec_start.ends_with(&format!(
            " run --relay=wss://relay.example/ws --room=lab \"--name=ada's \\\"100%%\\\" $$laptop\" --data-dir={}/data",
            sandbox.work.display()
        )),
        "{exec_start}"
    );
    assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
    assert!(
        unit.contains(&format!(
            "\nEnvironmentFile={}\n",
            sandbox.environment_file().display()
        )),
        "{unit}"
    );

    let environment = std::fs::read_to_string(sandbox.environment_file()).unwrap();
    assert_eq!(mode(&sandbox.environment_file()), 0o600);
    assert!(environment.contains(&format!("\nREMOTE_AGENTS_TOKEN='{TOKEN}'\n")));
    assert!(environment.contains(&format!(
        "\nREMOTE_AGENTS_ENCRYPTION_KEY='{ENCRYPTION_KEY}'\n"
    )));

    let verified = sandbox.verify_user_unit();
    assert!(verified.status.success(), "systemd-analyze: {verified:?}");
    assert_eq!(sandbox.is_enabled(), "enabled");
    let link = sandbox
        .home
        .join(".config/systemd/user/default.target.wants/remote-agents.service");
    assert_eq!(std::fs::read_link(&link).unwrap(), sandbox.unit());

    let uninstalled = succeed(&mut sandbox.remote_agents(&["uninstall"]));
    assert!(uninstalled.contains("uninstalled"), "{uninstalled}");
    assert_eq!(sandbox.home_tree(), BTreeMap::new());
    assert_ne!(sandbox.is_enabled(), "enabled");

    let again = succeed(&mut sandbox.remote_agents(&["uninstall"]));
    assert!(again.starts_with("nothing to uninstall"), "{again}");
}

#[test]
fn reinstall_updates_the_service_in_place_and_keeps_secrets_not_given_again() {
    let sandbox = Sandbox::new();
    succeed(
        sandbox
            .remote_agents(&[
                "install",
                "--name",
                "first",
                "--relay",
                "wss://r.example/ws",
            ])
            .env("REMOTE_AGENTS_TOKEN", TOKEN),
    );
    let first_tree = sandbox.home_tree();

    let reinstalled = succeed(&mut sandbox.remote_agents(&[
        "install",
        "--name",
        "second",
        "--relay",
        "wss://r.example/ws",
        "--relay-key",
        "relay-5ecret",
    ]));
    assert!(
        reinstalled.contains("kept from the previous install: REMOTE_AGENTS_TOKEN"),
        "{reinstalled}"
    );
    let unit = std::fs::read_to_string(sandbox.unit()).unwrap();
    assert!(
        exec_start(&unit).ends_with(" run --relay=wss://r.example/ws --name=second"),
        "{unit}"
    );
    let environment = std::fs::read_to_string(sandbox.environment_file()).unwrap();
    assert!(environment.contains(&format!("\nREMOTE_AGENTS_TOKEN='{TOKEN}'\n")));
    assert!(environment.contains("\nREMOTE_AGENTS_RELAY_KEY='relay-5ecret'\n"));
    assert_eq!(mode(&sandbox.environment_file()), 0o600);
    // The same files, rewritten: no second unit, no temporary file left behind.
    let second_tree = sandbox.home_tree();
    assert_eq!(
        first_tree.keys().collect::<Vec<_>>(),
        second_tree.keys().collect::<Vec<_>>()
    );
    assert!(sandbox.verify_user_unit().status.success());
    assert_eq!(sandbox.is_enabled(), "enabled");

    succeed(&mut sandbox.remote_agents(&["uninstall"]));
    assert_eq!(sandbox.home_tree(), BTreeMap::new());
}

#[test]
fn uninstall_leaves_the_nodes_own_files_and_other_units_alone() {
    let sandbox = Sandbox::new();
    let config_folder = sandbox.home.join(".config/remote-agents");
    let units = sandbox.home.join(".config/systemd/user");
    let data = sandbox.home.join(".local/share/remote-agents");
    for folder in [&config_folder, &units, &data] {
        std::fs::create_dir_all(folder).unwrap();
    }
    std::fs::write(
        config_folder.join("config.toml"),
        "name = \"from-config\"\n",
    )
    .unwrap();
    std::fs::write(config_folder.join("operator.key"), "key").unwrap();
    std::fs::write(
        units.join("other.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    std::fs::write(data.join("identity"), "identity").unwrap();
    let before = sandbox.home_tree();

    succeed(
        sandbox
            .remote_agents(&["install", "--relay", "wss://r.example/ws"])
            .env("REMOTE_AGENTS_TOKEN", TOKEN),
    );
    assert!(sandbox.unit().exists());
    succeed(&mut sandbox.remote_agents(&["uninstall"]));
    assert_eq!(sandbox.home_tree(), before);
}

#[test]
fn dry_run_prints_the_files_with_secrets_redacted_and_writes_nothing() {
    let sandbox = Sandbox::new();
    let printed = succeed(
        sandbox
            .remote_agents(&["install", "--dry-run", "--relay", "wss://r.example/ws"])
            .env("REMOTE_AGENTS_TOKEN", TOKEN),
    );
    assert_eq!(sandbox.home_tree(), BTreeMap::new());
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(
        printed.contains(&format!(
            "would write {} (mode 0600):",
            sandbox.environment_file().display()
        )),
        "{printed}"
    );
    assert!(
        printed.contains("    REMOTE_AGENTS_TOKEN=<redacted, 17 bytes>\n"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "would write {} (mode 0644):",
            sandbox.unit().display()
        )),
        "{printed}"
    );
    assert!(printed.contains("    ExecStart="), "{printed}");
    assert!(
        printed.contains("would run: systemctl --user enable remote-agents.service"),
        "{printed}"
    );

    succeed(&mut sandbox.remote_agents(&["install"]));
    let installed = sandbox.home_tree();
    let printed = succeed(&mut sandbox.remote_agents(&["uninstall", "--dry-run"]));
    assert_eq!(sandbox.home_tree(), installed);
    assert!(
        printed.contains(&format!("would remove {}", sandbox.unit().display())),
        "{printed}"
    );
    assert!(
        printed.contains("would run: systemctl --user disable remote-agents.service"),
        "{printed}"
    );
    assert_eq!(sandbox.is_enabled(), "enabled");
}

/// The lines of the file a dry run would write at `path`.
fn printed_file(printed: &str, path: &str) -> String {
    let header = format!("would write {path} (mode ");
    let mut lines = printed
        .lines()
        .skip_while(|line| !line.starts_with(&header));
    assert!(lines.next().is_some(), "no {path} in {printed}");
    lines
        .map_while(|line| {
            line.strip_prefix("    ")
                .or((line.is_empty()).then_some(""))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn system_dry_run_renders_a_system_unit_systemd_verifies_and_touches_nothing() {
    let sandbox = Sandbox::new();
    let system_unit = Path::new("/etc/systemd/system/remote-agents.service");
    let system_folder = Path::new("/etc/remote-agents");
    let existed = (system_unit.exists(), system_folder.exists());
    let printed = succeed(
        sandbox
            .remote_agents(&[
                "install",
                "--system",
                "--dry-run",
                "--relay",
                "wss://r.example/ws",
            ])
            .env("REMOTE_AGENTS_TOKEN", TOKEN),
    );
    assert_eq!((system_unit.exists(), system_folder.exists()), existed);
    assert_eq!(sandbox.home_tree(), BTreeMap::new());
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(
        printed.contains("would write /etc/remote-agents/service.env (mode 0600):"),
        "{printed}"
    );

    let unit = printed_file(&printed, "/etc/systemd/system/remote-agents.service");
    assert!(unit.contains("\nWantedBy=multi-user.target\n"), "{unit}");
    assert!(unit.contains("\nAfter=network-online.target\n"), "{unit}");
    assert!(
        unit.contains("\nEnvironmentFile=/etc/remote-agents/service.env\n"),
        "{unit}"
    );
    // Verified from a copy in the sandbox: the real /etc is never written.
    let copy = sandbox.work.join("remote-agents.service");
    std::fs::write(&copy, &unit).unwrap();
    let verified = sandbox
        .command("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(verified.status.success(), "systemd-analyze: {verified:?}");
}

#[test]
fn executable_path_with_spaces_percent_and_dollar_is_quoted_for_systemd() {
    let sandbox = Sandbox::new();
    let folder = sandbox.work.join("my apps 100% $HOME");
    std::fs::create_dir(&folder).unwrap();
    let binary = folder.join("remote-agents");
    // A hard link costs nothing; a copy where links cannot be made (another file system).
    if std::fs::hard_link(env!("CARGO_BIN_EXE_remote-agents"), &binary).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_remote-agents"), &binary).unwrap();
    }
    succeed(sandbox.command(&binary).args(["install", "--name", "n"]));
    let unit = std::fs::read_to_string(sandbox.unit()).unwrap();
    assert!(
        exec_start(&unit).starts_with(&format!(
            "\"{}/my apps 100%% $HOME/remote-agents\" run",
            sandbox.work.display()
        )),
        "{unit}"
    );
    // systemd-analyze refuses a unit whose ExecStart does not name an executable file, so this
    // checks that systemd reads the quoted path back as the binary's.
    let verified = sandbox.verify_user_unit();
    assert!(verified.status.success(), "systemd-analyze: {verified:?}");
    succeed(sandbox.command(&binary).arg("uninstall"));
    assert_eq!(sandbox.home_tree(), BTreeMap::new());
}

#[test]
fn bad_settings_are_refused_naming_the_flag_and_write_nothing() {
    let sandbox = Sandbox::new();
    let cases: [(&[&str], &str); 4] = [
        (&["install", "--mode", "wat"], "--mode"),
        (
            &["install", "--name", "two\nlines"],
            "--name: contains a control character",
        ),
        (
            &["install", "--token", "it's"],
            "--token: a value with a single quote",
        ),
        (&["install", "--config", "missing.toml"], "missing.toml"),
    ];
    for (arguments, expected) in cases {
        let error = fail(&mut sandbox.remote_agents(arguments));
        assert!(error.contains(expected), "{arguments:?}: {error}");
    }
    assert_eq!(sandbox.home_tree(), BTreeMap::new());
}
