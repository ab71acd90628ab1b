//! Plan mode's sandbox for commands: on Linux a process started here runs under Landlock with
//! the whole file system read-only (read and execute everywhere, writes only to `/dev/null`),
//! with `no_new_privs` (set-uid programs such as `sudo` gain nothing), TCP bind and connect
//! denied where the kernel's Landlock ABI has network rules (4+), and signals and abstract Unix
//! sockets confined to the sandbox where it has scopes (6+). Landlock does not cover a file's
//! metadata, so a seccomp filter makes the calls that change it fail with EPERM: modes
//! (`chmod`), owners (`chown`), times (`touch` of an existing file) and extended attributes.
//! Elsewhere, or where Landlock is missing or too old to deny every kind of write, plan mode
//! refuses to run commands.
//!
//! The workspace forbids `unsafe`, so the ruleset is not applied between fork and exec
//! (`pre_exec`). Landlock and `no_new_privs` bind a *thread* and everything it starts later:
//! a short-lived thread restricts itself, spawns the command (the child inherits the
//! restriction across exec, and cannot drop it), and ends; the node's own threads stay free.
//!
//! What it does not cover: writes through descriptors the node passes (only pipes), Unix
//! sockets that have a path (a process may still connect to one, e.g. a container daemon's),
//! UDP, and reading: plan mode's promise is that nothing changes, not that nothing is read
//! (the read rules of the policy gate do not reach inside a command).

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

/// Starts `command` inside the sandbox. Returns the child and what the sandbox enforces.
pub async fn spawn(command: Command, program: &str) -> Result<(Child, String), SandboxError> {
    imp::spawn(command, program).await
}

#[cfg(target_os = "linux")]
mod imp {
    use std::sync::OnceLock;

    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
        RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, path_beneath_rules,
    };
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

    /// Builds the strongest rule set this kernel supports in full. Every tier requires its
    /// rights outright (`HardRequirement`), so a kernel that lacks one fails here, before
    /// anything is restricted, and the next tier is tried.
    fn ruleset() -> Result<(RulesetCreated, &'static str), String> {
        let mut errors = Vec::new();
        for (abi, description) in TIERS {
            match tier(abi) {
                Ok(created) => return Ok((created, description)),
                Err(e) => errors.push(format!("ABI {abi}: {e}")),
            }
        }
        Err(format!(
            "landlock is missing, disabled or older than ABI 3 (Linux 6.2) on this kernel ({})",
            errors.join("; ")
        ))
    }

    fn tier(abi: ABI) -> Result<RulesetCreated, RulesetError> {
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
        // beneath `/`, writing (and truncating, which `> /dev/null` does) `/dev/null`. No TCP
        // port is granted, so every bind and connect is denied.
        ruleset
            .create()?
            .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
            .add_rules(path_beneath_rules(
                ["/dev/null"],
                AccessFs::WriteFile | AccessFs::Truncate,
            ))
    }

    pub fn check() -> Result<&'static str, SandboxError> {
        static CHECKED: OnceLock<Result<&'static str, String>> = OnceLock::new();
        // Creating a rule set confines nothing (only `restrict_self` does).
        CHECKED
            .get_or_init(|| ruleset().map(|(_, description)| description))
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
        runtime: tokio::runtime::Handle,
    ) -> Result<(Child, String), SandboxError> {
        let (ruleset, description) = ruleset().map_err(SandboxError::Unavailable)?;
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
        Ok((child, description.to_string()))
    }

    pub async fn spawn(command: Command, program: &str) -> Result<(Child, String), SandboxError> {
        let runtime = tokio::runtime::Handle::current();
        let program = program.to_string();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // A fresh thread that ends right after the spawn: the restriction dies with it and
        // never reaches a thread of the node's runtime.
        let thread = std::thread::Builder::new()
            .name("plan-sandbox".into())
            .spawn(move || {
                let _ = sender.send(confine_and_spawn(command, program, runtime));
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

    pub async fn spawn(_: Command, _: &str) -> Result<(Child, String), SandboxError> {
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
