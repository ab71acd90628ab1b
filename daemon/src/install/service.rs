//! `remote-agents install` / `uninstall`: the node as a per-user service (a systemd user unit on
//! Linux, a launchd LaunchAgent on macOS) or, with `--system`, a system one (a unit under
//! `/etc/systemd/system`, a LaunchDaemon), running `run` with the given settings.
//!
//! The secrets (token, end-to-end key, relay key) never go on a command line or into a
//! world-readable file: they go into a 0600 environment file the service loads at start
//! (systemd's `EnvironmentFile=`; under launchd a fixed `sh` script sources it). Everything
//! `install` writes is listed in a manifest beside that file, and `uninstall` removes what the
//! manifest lists (only paths an install can write) and nothing else: not the node's config,
//! data dir or identity. Re-running `install` rewrites the files in place and restarts the
//! service: its settings replace the earlier ones, except that a secret not given again is kept
//! from the earlier environment file.
//!
//! Without a running systemd manager (a machine where systemd is not PID 1, or a user with no
//! session) the unit is still written and enabled, which needs no manager, and `install`
//! succeeds, saying that the service starts with the manager (at the next login, or at boot with
//! lingering on).

mod files;
mod layout;
mod manager;
mod render;
mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use remote_agents_node::config::{Env, ProcessEnv, Settings};

use self::files::Manifest;
use self::layout::{Layout, Platform, Scope, UserDirs};
use self::manager::Facts;
use self::render::{RenderedFile, ServiceCommand};
use crate::node_args::{NodeArgs, WatchArgs};

/// Flags of `remote-agents install`.
#[derive(Debug, Args, Clone, Default)]
pub struct InstallArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Print the files it would write (secrets redacted) and the commands it would run, and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A system service run as root (a unit under /etc/systemd/system or a LaunchDaemon)
    /// instead of a per-user one.
    #[arg(long)]
    pub system: bool,
}

/// Flags of `remote-agents uninstall`.
#[derive(Debug, Args, Clone, Default)]
pub struct UninstallArgs {
    /// Print what it would remove and run, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The system service instead of the per-user one.
    #[arg(long)]
    pub system: bool,
}

/// `remote-agents install`.
pub fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let layout = layout_for(args.system, args.dry_run, &env)?;
    let working_dir = std::env::current_dir().context("cannot read the current folder")?;
    let mut settings = settings::collect(&args.node, &args.watch, &env, &working_dir)?;
    // An earlier install (its manifest says so) left secrets this one may keep.
    let previous = files::read_manifest(&layout.manifest)?;
    if previous.is_some() {
        match std::fs::read_to_string(&layout.environment_file) {
            Ok(text) => settings.keep_secrets(render::read_environment_file(
                &text,
                &settings::SECRET_VARIABLES,
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot read {}", layout.environment_file.display()));
            }
        }
    }
    let resolved = check_settings_load(&layout, &settings, &env)?;

    let executable = std::env::current_exe().context("cannot find this program's own path")?;
    let service_file = render::service_file(
        &layout,
        &ServiceCommand {
            executable: &executable,
            run_arguments: &settings.run_arguments,
        },
    )?;
    let environment_file = render::environment_file(&settings.secrets)?;
    let facts = Facts::gather(&layout, &env)?;
    let commands = manager::install_commands(&layout, &facts);

    // Folders an earlier install created stay in the record, so the last uninstall removes them.
    let mut created_folders: Vec<PathBuf> = previous
        .map(|manifest| manifest.created_folders)
        .unwrap_or_default();
    let new_folders = files::missing_folders(&layout, &layout.written_files());
    for (folder, _) in &new_folders {
        if !created_folders.contains(folder) {
            created_folders.push(folder.clone());
        }
    }
    // `systemctl enable` makes the `*.target.wants` folder when it is missing (and `disable`
    // removes it again); it is recorded as created so that it never outlives an uninstall.
    if let Some(enable_folder) = layout.enable_link.as_deref().and_then(Path::parent)
        && !enable_folder.exists()
        && layout.owns(enable_folder)
        && !created_folders.iter().any(|folder| folder == enable_folder)
    {
        created_folders.push(enable_folder.to_path_buf());
    }
    let manifest = Manifest::new(&layout, created_folders);
    let manifest_text = manifest.to_json();
    let manifest_file = RenderedFile {
        printable: manifest_text.clone(),
        content: manifest_text,
        mode: 0o600,
    };
    let writes: [(&Path, &RenderedFile); 3] = [
        (&layout.manifest, &manifest_file),
        (&layout.environment_file, &environment_file),
        (&layout.service_file, &service_file),
    ];

    if args.dry_run {
        println!("dry run: nothing is written or run");
        for (folder, mode) in &new_folders {
            println!("would create folder {} (mode {mode:04o})", folder.display());
        }
        for (path, file) in writes {
            println!("would write {} (mode {:04o}):", path.display(), file.mode);
            for line in file.printable.lines() {
                println!("    {line}");
            }
        }
        for command in &commands {
            println!("would run: {command}");
        }
        return Ok(());
    }

    files::create_folders(&layout, &layout.written_files())?;
    // The manifest goes first: an install cut short leaves a record `uninstall` can act on.
    for (path, file) in writes {
        files::write_atomically(path, file.content.as_bytes(), file.mode)?;
    }
    for command in &commands {
        manager::run(command)?;
    }

    report_install(&layout, &settings, &resolved, &facts);
    Ok(())
}

/// `remote-agents uninstall`.
pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let layout = layout_for(args.system, args.dry_run, &env)?;
    let Some(manifest) = files::read_manifest(&layout.manifest)? else {
        println!(
            "nothing to uninstall: no {} service installed by `remote-agents install` ({} does not exist)",
            scope_name(layout.scope),
            layout.manifest.display()
        );
        return Ok(());
    };
    if manifest.platform != layout.platform || manifest.scope != layout.scope {
        bail!(
            "{} records a {:?} {:?} service, not this machine's {:?} {:?} one; remove it by hand",
            layout.manifest.display(),
            manifest.platform,
            manifest.scope,
            layout.platform,
            layout.scope
        );
    }
    let facts = Facts::gather(&layout, &env)?;
    let before = manager::uninstall_commands_before_removal(&layout, &facts);
    let after = manager::uninstall_commands_after_removal(&layout, &facts);

    // Only paths an install writes are removed, whatever the manifest lists; the manifest last,
    // so an uninstall cut short can be run again.
    let mut removals: Vec<PathBuf> = Vec::new();
    let listed = manifest.files.iter().chain(manifest.enable_link.iter());
    for path in listed {
        if !layout.owns(path) {
            eprintln!(
                "warning: leaving {}: not a file `remote-agents install` writes",
                path.display()
            );
        } else if path != &layout.manifest && !removals.contains(path) {
            removals.push(path.clone());
        }
    }
    removals.push(layout.manifest.clone());
    let mut folders: Vec<PathBuf> = manifest
        .created_folders
        .iter()
        .filter(|folder| layout.owns(folder))
        .cloned()
        .collect();
    // Innermost first, so that a folder is empty by the time its parent's turn comes.
    folders.sort_by(|a, b| {
        (b.components().count().cmp(&a.components().count())).then_with(|| a.cmp(b))
    });
    folders.dedup();

    if args.dry_run {
        println!("dry run: nothing is removed or run");
        for command in &before {
            println!("would run: {command}");
        }
        for path in &removals {
            println!("would remove {}", path.display());
        }
        for folder in &folders {
            println!("would remove folder {} if empty", folder.display());
        }
        for command in &after {
            println!("would run: {command}");
        }
        return Ok(());
    }

    for command in &before {
        manager::run(command)?;
    }
    for path in &removals {
        if files::remove_file(path)? {
            println!("removed {}", path.display());
        }
    }
    for folder in &folders {
        if files::remove_empty_folder(folder)? {
            println!("removed folder {}", folder.display());
        } else if folder.exists() {
            println!("kept folder {} (not empty)", folder.display());
        }
    }
    for command in &after {
        manager::run(command)?;
    }
    println!(
        "uninstalled the {} service; the node's config, data dir and identity are untouched",
        scope_name(layout.scope)
    );
    Ok(())
}

/// The layout for this machine and scope; `--system` needs root unless nothing is changed.
fn layout_for(system: bool, dry_run: bool, env: &dyn Env) -> anyhow::Result<Layout> {
    let platform = Platform::current()?;
    if !system {
        return Ok(Layout::user(platform, &UserDirs::from_env(env)?));
    }
    if !dry_run && manager::effective_uid()? != 0 {
        bail!(
            "--system manages a system service and needs root: run it with sudo, or leave out \
             --system for a service of your own user"
        );
    }
    Ok(Layout::system(platform))
}

/// Resolves the settings as the service will (its flags, the secrets from the environment file,
/// its HOME and config file), so that a bad mode or an unreadable config file fails `install`
/// rather than the service at every restart.
fn check_settings_load(
    layout: &Layout,
    settings: &settings::ServiceSettings,
    env: &dyn Env,
) -> anyhow::Result<Settings> {
    let mut service_env: BTreeMap<String, String> = BTreeMap::new();
    match layout.scope {
        Scope::User => {
            for name in ["HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"] {
                if let Some(value) = env.get(name) {
                    service_env.insert(name.to_string(), value);
                }
            }
        }
        Scope::System => {
            for (name, value) in layout.service_environment() {
                service_env.insert(name.to_string(), value);
            }
        }
    }
    for secret in &settings.secrets {
        service_env.insert(secret.variable.to_string(), secret.value.clone());
    }
    Settings::resolve(&settings.node_flags, &service_env)
        .context("the service would not start with these settings")
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "per-user",
        Scope::System => "system",
    }
}

fn report_install(
    layout: &Layout,
    settings: &settings::ServiceSettings,
    resolved: &Settings,
    facts: &Facts,
) {
    let kind = match (layout.platform, layout.scope) {
        (Platform::Linux, Scope::User) => "systemd user unit",
        (Platform::Linux, Scope::System) => "systemd system unit",
        (Platform::Macos, Scope::User) => "launchd LaunchAgent",
        (Platform::Macos, Scope::System) => "launchd LaunchDaemon",
    };
    println!("installed the remote-agents service ({kind})");
    println!("  {}", layout.service_file.display());
    let secret_names: Vec<&str> = settings.secrets.iter().map(|s| s.variable).collect();
    println!(
        "  {} (mode 0600: {})",
        layout.environment_file.display(),
        if secret_names.is_empty() {
            "no secrets given".to_string()
        } else {
            secret_names.join(", ")
        }
    );
    println!("  {} (what `uninstall` removes)", layout.manifest.display());
    if !settings.from_environment.is_empty() {
        println!(
            "taken from the environment: {}",
            settings.from_environment.join(", ")
        );
    }
    for flag in &settings.secret_flags {
        println!(
            "note: {flag} was on this command line, which other local users can read while it \
             runs; its REMOTE_AGENTS_* variable keeps a secret off command lines"
        );
    }
    if !settings.kept_secrets.is_empty() {
        println!(
            "kept from the previous install: {} (`uninstall` first to drop them)",
            settings.kept_secrets.join(", ")
        );
    }
    if resolved.relay.value.is_none() {
        println!(
            "note: no relay is set (--relay, REMOTE_AGENTS_RELAY or the config file): the service \
             runs local-only"
        );
    }
    match (layout.platform, facts.manager_running) {
        (Platform::Linux, true) => println!("enabled and (re)started"),
        (Platform::Linux, false) => println!(
            "enabled; the {} systemd manager is not running here, so the service starts when it \
             does{}",
            if layout.scope == Scope::User {
                "user's"
            } else {
                "system's"
            },
            if layout.scope == Scope::User {
                " (at your next login)"
            } else {
                " (at the next boot)"
            }
        ),
        (Platform::Macos, _) => {
            println!("loaded into launchd and started");
            if let Some(log_file) = &layout.log_file {
                println!("  its output goes to {}", log_file.display());
            }
        }
    }
    if facts.lingering == Some(false) {
        println!(
            "hint: lingering is off for {user}: the service stops when your last session ends and \
             starts at your next login; `loginctl enable-linger {user}` keeps it running from boot",
            user = facts.user_name
        );
    }
}
