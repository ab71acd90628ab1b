//! Plan mode's sandbox for commands: on Linux a process started here runs under Landlock with
//! the whole file system read-only (read and execute everywhere but the hidden paths below,
//! writes only to `/dev/null`), with `no_new_privs` (set-uid programs such as `sudo` gain
//! nothing), TCP bind and connect denied where the kernel's Landlock ABI has network rules
//! (4+), and signals and abstract Unix sockets confined to the sandbox where it has scopes
//! (6+). Landlock does not cover a file's metadata, so a seccomp filter makes the calls that
//! change it fail with EPERM: modes (`chmod`), owners (`chown`), times (`touch` of an existing
//! file) and extended attributes. Elsewhere, or where Landlock is missing or too old to deny
//! every kind of write, plan mode refuses to run commands.
//!
//! The paths the caller hides (the policy's read hard limits, `Policy::hard_limit_paths`: the
//! node's data dir and identity, its config, `~/.config/remote-agents` with the operator keys,
//! its service files, `/etc/shadow*`, `/etc/gshadow*`, `/boot`) cannot be read, nor anything
//! beneath them, by whatever name reaches the same place (`..`, symlinks,
//! `/proc/self/root/...`: Landlock judges where a file really is). Landlock rules only allow,
//! so the rule set is "everything except": each ancestor of a hidden path may only be listed,
//! and each of its other entries may be read in full. Not covered: a hard link to a hidden
//! file placed elsewhere (or a bind mount of it) stays readable; the names in the ancestors
//! and inside hidden folders can be listed (listing is granted beneath an ancestor); an entry
//! created in an ancestor folder after the command started is unreadable to that command; the
//! deny lists of the configuration (as opposed to the hard limits) still don't reach inside
//! a command.
//!
//! The workspace forbids `unsafe`, so the ruleset is not applied between fork and exec
//! (`pre_exec`). Landlock and `no_new_privs` bind a *thread* and everything it starts later:
//! a short-lived thread restricts itself, spawns the command (the child inherits the
//! restriction across exec, and cannot drop it), and ends; the node's own threads stay free.
//!
//! What it does not cover otherwise: writes through descriptors the node passes (only pipes),
//! Unix sockets that have a path (a process may still connect to one, e.g. a container
//! daemon's), UDP, and reading beyond the hidden paths: plan mode's promise is that nothing
//! changes and the node's own secrets stay secret, not that nothing is read.

use std::path::PathBuf;

use tokio::process::{Child, Command};

/// Why a command cannot run in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// The platform or kernel cannot confine it; plan mode refuses to run commands here.
    #[error(
        "plan mode runs commands only inside a read-only Landlock sandbox, and this node cannot \
         make one: {0}; use read_file, list_dir, file_search or git_status, or switch the node \
         to edit mode to run commands"
    )]
    Unavailable(String),
    /// The sandbox could not be applied in full when the command was about to start.
    #[error("the read-only sandbox was not fully enforced ({0}); the command was not started")]
    NotEnforced(String),
    #[error("cannot start `{program}` in the sandbox: {message}")]
    Spawn { program: String, message: String },
}

/// Checks, without confining anything, that this node can run plan-mode commands; the answer
/// names what the sandbox enforces. The policy gate asks this before accepting a request.
pub fn check() -> Result<&'static str, SandboxError> {
    imp::check()
}

/// Starts `command` inside the sandbox, with the files and folders `hidden` (and everything
/// beneath them) unreadable. Returns the child and what the sandbox enforces.
pub async fn spawn(
    command: Command,
    program: &str,
    hidden: &[PathBuf],
) -> Result<(Child, String), SandboxError> {
    imp::spawn(command, program, hidden.to_vec()).await
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::fd::{AsFd as _, OwnedFd};
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, Ruleset,
        RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope,
        path_beneath_rules,
    };
    use rustix::fs::{FileType, Mode, OFlags, fstat, openat};
    use tokio::process::{Child, Command};

    use super::SandboxError;

    /// The rule sets tried, strongest first. ABI 3 is the floor: before it Landlock cannot deny
    /// truncating a file, so a "read-only" sandbox could still empty any file.
    const TIERS: [(ABI, &str); 3] = [
        (
            ABI::V6,
            "landlock: file system read-only (writes only to /dev/null), TCP bind/connect \
             denied, signals and abstract sockets confined; seccomp: no metadata changes; \
             no_new_privs",
        ),
        (
            ABI::V4,
            "landlock: file system read-only (writes only to /dev/null), TCP bind/connect \
             denied; seccomp: no metadata changes; no_new_privs",
        ),
        (
            ABI::V3,
            "landlock: file system read-only (writes only to /dev/null); seccomp: no metadata \
             changes; no_new_privs; this kernel's landlock cannot deny network access",
        ),
    ];

    /// What may be read: a directory (`dir`, read beneath it) or a single file, opened
    /// `O_PATH` without following a symlink; or, with `list_only`, a directory whose names may
    /// be listed (an ancestor of a hidden path).
    struct Grant {
        fd: OwnedFd,
        dir: bool,
        list_only: bool,
    }

    /// `O_PATH` descriptor on `name` in `dir`, never following a symlink there.
    fn open_path(dir: &OwnedFd, name: &Path) -> Option<(OwnedFd, FileType)> {
        let fd = openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let kind = FileType::from_raw_mode(fstat(&fd).ok()?.st_mode);
        Some((fd, kind))
    }

    /// The read grants for "everything but `hidden`". Landlock rules only allow, beneath a
    /// path, so the hidden paths are cut out: each of their ancestors (from `/` down) may only
    /// be listed, and each entry of an ancestor that is neither hidden nor an ancestor itself
    /// may be read in full. A few listings (one per ancestor) per command.
    ///
    /// Every open goes from the parent's descriptor with `O_NOFOLLOW`, so no name on the way
    /// is followed through a symlink; symlinked entries get no rule of their own (a rule on a
    /// link would follow it, and a link needs none: its target is read under the rules of
    /// where it really is). An ancestor that cannot be opened or listed grants nothing below
    /// it (closed rather than open).
    fn grants(hidden: &[PathBuf]) -> Vec<Grant> {
        let mut real: Vec<PathBuf> = hidden
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        real.sort();
        real.dedup();
        // A path beneath another hidden one is hidden with it (sorted: parents come first).
        let mut kept: Vec<PathBuf> = Vec::new();
        for path in real {
            if !kept.iter().any(|k| path.starts_with(k)) {
                kept.push(path);
            }
        }
        let root = Path::new("/");
        let open_root = || {
            rustix::fs::open(
                root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        };
        if kept.is_empty() {
            return open_root()
                .map(|fd| Grant {
                    fd,
                    dir: true,
                    list_only: false,
                })
                .into_iter()
                .collect();
        }
        let hidden: BTreeSet<&Path> = kept.iter().map(PathBuf::as_path).collect();
        // Sorted, so each ancestor comes after its own parent and opens from its descriptor.
        let ancestors: BTreeSet<&Path> = kept.iter().flat_map(|p| p.ancestors().skip(1)).collect();
        let mut opened: BTreeMap<&Path, OwnedFd> = BTreeMap::new();
        let mut grants = Vec::new();
        for &ancestor in &ancestors {
            let fd = match ancestor.parent() {
                None => open_root(),
                Some(parent) => opened.get(parent).and_then(|parent_fd| {
                    let name = Path::new(ancestor.file_name()?);
                    open_path(parent_fd, name)
                        .filter(|(_, kind)| *kind == FileType::Directory)
                        .map(|(fd, _)| fd)
                }),
            };
            let Some(fd) = fd else { continue };
            let Ok(entries) = std::fs::read_dir(ancestor) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = ancestor.join(entry.file_name());
                if hidden.contains(path.as_path()) || ancestors.contains(path.as_path()) {
                    continue;
                }
                match open_path(&fd, Path::new(&entry.file_name())) {
                    Some((_, FileType::Symlink)) | None => {}
                    Some((entry_fd, kind)) => grants.push(Grant {
                        fd: entry_fd,
                        dir: kind == FileType::Directory,
                        list_only: false,
                    }),
                }
            }
            if let Ok(listed) = fd.try_clone() {
                grants.push(Grant {
                    fd: listed,
                    dir: true,
                    list_only: true,
                });
            }
            opened.insert(ancestor, fd);
        }
        grants
    }

    /// Builds the strongest rule set this kernel supports in full. Every tier requires its
    /// rights outright (`HardRequirement`), so a kernel that lacks one fails here, before
    /// anything is restricted, and the next tier is tried.
    fn ruleset(grants: &[Grant]) -> Result<(RulesetCreated, &'static str), String> {
        let mut errors = Vec::new();
        for (abi, description) in TIERS {
            match tier(abi, grants) {
                Ok(created) => return Ok((created, description)),
                Err(e) => errors.push(format!("ABI {abi}: {e}")),
            }
        }
        Err(format!(
            "landlock is missing, disabled or older than ABI 3 (Linux 6.2) on this kernel ({})",
            errors.join("; ")
        ))
    }

    fn tier(abi: ABI, grants: &[Grant]) -> Result<RulesetCreated, RulesetError> {
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))?;
        if abi >= ABI::V4 {
            ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
        }
        if abi >= ABI::V6 {
            ruleset = ruleset.scope(Scope::from_all(abi))?;
        }
        // Only rights the kernel handles and that no rule grants are denied: read and execute
        // everywhere but the hidden paths (`grants`), writing (and truncating, which
        // `> /dev/null` does) `/dev/null`. No TCP port is granted, so every bind and connect
        // is denied.
        let mut created = ruleset.create()?;
        for grant in grants {
            let access = if grant.list_only {
                AccessFs::ReadDir.into()
            } else if grant.dir {
                AccessFs::from_read(abi)
            } else {
                AccessFs::from_read(abi) & AccessFs::from_file(abi)
            };
            created = created.add_rule(PathBeneath::new(grant.fd.as_fd(), access))?;
        }
        created.add_rules(path_beneath_rules(
            ["/dev/null"],
            AccessFs::WriteFile | AccessFs::Truncate,
        ))
    }

    pub fn check() -> Result<&'static str, SandboxError> {
        static CHECKED: OnceLock<Result<&'static str, String>> = OnceLock::new();
        // Creating a rule set confines nothing (only `restrict_self` does).
        CHECKED
            .get_or_init(|| ruleset(&grants(&[])).map(|(_, description)| description))
            .clone()
            .map_err(SandboxError::Unavailable)
    }

    /// The system calls that change a file's metadata, which Landlock leaves open. A filter
    /// that names them (rather than allowing a list) keeps every other program working.
    fn metadata_calls() -> Vec<i64> {
        // setxattrat and removexattrat (Linux 6.13) have one number on every architecture and
        // are not in libc yet.
        const SYS_SETXATTRAT: i64 = 463;
        const SYS_REMOVEXATTRAT: i64 = 466;
        let mut calls = vec![
            libc::SYS_fchmod,
            libc::SYS_fchmodat,
            libc::SYS_fchmodat2,
            libc::SYS_fchown,
            libc::SYS_fchownat,
            libc::SYS_utimensat,
            libc::SYS_setxattr,
            libc::SYS_lsetxattr,
            libc::SYS_fsetxattr,
            libc::SYS_removexattr,
            libc::SYS_lremovexattr,
            libc::SYS_fremovexattr,
            SYS_SETXATTRAT,
            SYS_REMOVEXATTRAT,
        ];
        // The legacy calls exist only on the older architectures.
        #[cfg(target_arch = "x86_64")]
        calls.extend([
            libc::SYS_chmod,
            libc::SYS_chown,
            libc::SYS_lchown,
            libc::SYS_utime,
            libc::SYS_utimes,
            libc::SYS_futimesat,
        ]);
        calls
    }

    /// Makes the metadata calls fail with EPERM on this thread and what it starts.
    fn deny_metadata_changes() -> Result<(), String> {
        use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
        let rules = metadata_calls()
            .into_iter()
            .map(|call| (call, Vec::new()))
            .collect();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?;
        // Without TSYNC: this thread only (and its children), like the Landlock domain.
        seccompiler::apply_filter(&program).map_err(|e| e.to_string())
    }

    /// Runs on a thread of its own: restricts that thread, then starts the command from it.
    fn confine_and_spawn(
        mut command: Command,
        program: String,
        hidden: Vec<PathBuf>,
        runtime: tokio::runtime::Handle,
    ) -> Result<(Child, String), SandboxError> {
        let (ruleset, description) =
            ruleset(&grants(&hidden)).map_err(SandboxError::Unavailable)?;
        let status = ruleset
            .restrict_self()
            .map_err(|e| SandboxError::NotEnforced(e.to_string()))?;
        if status.ruleset != RulesetStatus::FullyEnforced {
            return Err(SandboxError::NotEnforced(format!(
                "landlock reports {:?}",
                status.ruleset
            )));
        }
        if !status.no_new_privs {
            return Err(SandboxError::NotEnforced(
                "no_new_privs could not be set".into(),
            ));
        }
        deny_metadata_changes()
            .map_err(|e| SandboxError::NotEnforced(format!("seccomp filter: {e}")))?;
        // The child registers with the runtime's process driver (to be reaped and awaited).
        let _entered = runtime.enter();
        let child = command.spawn().map_err(|e| SandboxError::Spawn {
            program,
            message: e.to_string(),
        })?;
        let description = if hidden.is_empty() {
            description.to_string()
        } else {
            format!("{description}; the node's own files and system credentials unreadable")
        };
        Ok((child, description))
    }

    pub async fn spawn(
        command: Command,
        program: &str,
        hidden: Vec<PathBuf>,
    ) -> Result<(Child, String), SandboxError> {
        let runtime = tokio::runtime::Handle::current();
        let program = program.to_string();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // A fresh thread that ends right after the spawn: the restriction dies with it and
        // never reaches a thread of the node's runtime.
        let thread = std::thread::Builder::new()
            .name("plan-sandbox".into())
            .spawn(move || {
                let _ = sender.send(confine_and_spawn(command, program, hidden, runtime));
            })
            .map_err(|e| SandboxError::NotEnforced(format!("cannot start a thread: {e}")))?;
        drop(thread);
        receiver
            .await
            .map_err(|_| SandboxError::NotEnforced("the sandbox thread died".into()))?
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use tokio::process::{Child, Command};

    use super::SandboxError;

    fn unsupported() -> SandboxError {
        SandboxError::Unavailable(format!(
            "Landlock is a Linux feature and this node runs on {}",
            std::env::consts::OS
        ))
    }

    pub fn check() -> Result<&'static str, SandboxError> {
        Err(unsupported())
    }

    pub async fn spawn(
        _: Command,
        _: &str,
        _: Vec<std::path::PathBuf>,
    ) -> Result<(Child, String), SandboxError> {
        Err(unsupported())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use crate::exec::{ExecSpec, run};

    fn sandboxed(argv: &[&str], cwd: &std::path::Path) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            shell: false,
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
            stdin: None,
            timeout: Duration::from_secs(20),
            max_output: 64 * 1024,
            sandboxed: true,
            hidden: Vec::new(),
        }
    }

    /// The kernel here has Landlock (ABI 7): the check passes and names what it enforces.
    #[test]
    fn this_kernel_can_make_the_sandbox() {
        let description = super::check().unwrap();
        assert!(description.contains("read-only"), "{description}");
        assert!(description.contains("TCP"), "{description}");
    }

    #[tokio::test]
    async fn a_sandboxed_command_reads_but_cannot_write_delete_or_connect() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept.txt");
        std::fs::write(&kept, "kept\n").unwrap();
        let cancel = CancellationToken::new;

        let read = run(
            sandboxed(&["cat", "kept.txt"], dir.path()),
            cancel(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((read.exit_code, read.stdout.as_str()), (Some(0), "kept\n"));
        assert!(read.sandbox.is_some_and(|s| s.contains("landlock")));

        let script = "echo x > new.txt; echo x >> kept.txt; rm -f kept.txt; mkdir d; \
                      chmod 0 kept.txt; touch -d 2001-01-01 kept.txt; chown $(id -u) kept.txt; \
                      echo x > /dev/null && echo devnull-ok";
        let before = std::fs::metadata(&kept).unwrap();
        let write = run(
            sandboxed(&["sh", "-c", script], dir.path()),
            cancel(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(write.stdout, "devnull-ok\n", "{write:?}");
        assert!(!dir.path().join("new.txt").exists());
        assert!(!dir.path().join("d").exists());
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "kept\n");
        // Landlock leaves metadata open; the seccomp filter closes it.
        let after = std::fs::metadata(&kept).unwrap();
        assert_eq!(after.permissions(), before.permissions());
        assert_eq!(after.modified().unwrap(), before.modified().unwrap());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
        let net = run(
            sandboxed(&["bash", "-c", &connect], dir.path()),
            cancel(),
            |_| {},
        )
        .await
        .unwrap();
        assert_ne!(net.exit_code, Some(0), "{net:?}");
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the sandboxed command connected"
        );
    }

    /// Plan mode used to let a command `cat` the node's identity key, operator keys and config:
    /// the hidden paths are unreadable (a hard link placed elsewhere is not), while their
    /// siblings stay readable and their folders listable.
    #[tokio::test]
    async fn a_sandboxed_command_cannot_read_the_hidden_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let data = root.join("data");
        let config = root.join("config/node.toml");
        std::fs::create_dir_all(data.join("store")).unwrap();
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::write(data.join("identity.key"), "IDENTITY\n").unwrap();
        std::fs::write(data.join("store/log"), "LOG\n").unwrap();
        std::fs::write(&config, "CONFIG\n").unwrap();
        std::fs::write(root.join("config/other.toml"), "other\n").unwrap();
        std::fs::write(root.join("sibling.txt"), "sibling\n").unwrap();
        std::os::unix::fs::symlink(data.join("identity.key"), root.join("link")).unwrap();
        let mut spec = sandboxed(&["sh", "-c", ""], &root);
        // A path that does not exist is left out.
        spec.hidden = vec![data.clone(), config.clone(), root.join("missing")];
        let run_script = |script: &str| {
            let mut spec = spec.clone();
            spec.argv = vec!["sh".into(), "-c".into(), script.into()];
            run(spec, CancellationToken::new(), |_| {})
        };
        for secret in [
            "cat data/identity.key",
            "cat data/store/log",
            "cat config/node.toml",
            "cat link",
            "cat /proc/self/root$PWD/data/identity.key",
        ] {
            let result = run_script(secret).await.unwrap();
            assert_ne!(result.exit_code, Some(0), "`{secret}` read: {result:?}");
            assert!(!result.stdout.contains("IDENTITY"), "{result:?}");
            assert!(!result.stdout.contains("LOG"), "{result:?}");
            assert!(!result.stdout.contains("CONFIG"), "{result:?}");
        }
        let readable = run_script(
            "cat sibling.txt config/other.toml /etc/hostname >/dev/null && cat sibling.txt && \
             ls && ls config && ls / >/dev/null && echo listed",
        )
        .await
        .unwrap();
        assert_eq!(readable.exit_code, Some(0), "{readable:?}");
        assert_eq!(
            readable.stdout,
            "sibling\nconfig\ndata\nlink\nsibling.txt\nnode.toml\nother.toml\nlisted\n",
            "{readable:?}"
        );
        assert!(readable.sandbox.is_some_and(|s| s.contains("unreadable")));
    }

    /// The restriction binds only the short-lived thread that started the command: the node's
    /// own threads, and commands started outside plan mode, still write.
    #[tokio::test]
    async fn the_restriction_never_reaches_the_nodes_own_threads() {
        let dir = tempfile::tempdir().unwrap();
        let sandboxed_run = run(
            sandboxed(&["touch", "in-sandbox"], dir.path()),
            CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap();
        assert_ne!(sandboxed_run.exit_code, Some(0));
        std::fs::write(dir.path().join("from-the-node"), "ok").unwrap();
        let mut free = sandboxed(&["touch", "outside-plan-mode"], dir.path());
        free.sandboxed = false;
        let free_run = run(free, CancellationToken::new(), |_| {}).await.unwrap();
        assert_eq!(free_run.exit_code, Some(0), "{free_run:?}");
        assert!(dir.path().join("outside-plan-mode").exists());
    }
}
