//! Git over the network with the system `git` binary: `fetch` and `push` to `https://`,
//! `http://`, `ssh://`, `git://` and scp-style (`user@host:path`) remotes, with the credentials
//! of the user the node runs as, and git's failures turned into errors that say what to fix.
//!
//! Why the system `git` and not libgit2's transports: users expect their `~/.ssh/config`,
//! ssh-agent, `known_hosts`, credential helpers, proxies and `http.sslCAInfo` to just work, and
//! the errors to be the ones they know. libgit2's transports read neither `~/.ssh/config` nor
//! most global `http.*` settings, and would link OpenSSL and libssh2 into every prebuilt
//! binary. Only the transfer goes through `git`: it updates refs and objects, and the caller
//! (libgit2) still decides and writes every checkout through the policy gate.
//!
//! The user's global and system git config are trusted (they are the node user's own); the
//! repository's config is not, and passes `guard_config` and `guard_network_config` before `git`
//! runs. `git` runs with hooks, fsmonitor, `ext::`/`file://` transports, submodule recursion and
//! automatic gc off, never prompts (no terminal prompt, ssh in batch mode unless the user
//! configured their own ssh command), reads nothing from stdin, runs in its own process group
//! that a timeout kills whole, and its output is captured up to a bound.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::{GitError, refused};

/// How long one fetch or push may take before its process group is killed.
pub const TIMEOUT: Duration = Duration::from_secs(600);
/// How much of each of git's output streams is kept (the end is kept: git's last lines say why
/// it failed).
const OUTPUT_CAP: usize = 64 * 1024;
/// How many of git's last stderr lines an error quotes.
const QUOTED_LINES: usize = 6;
/// How long the output pipes may stay open after git exited (a background ssh master can hold
/// them); what was read by then is what is reported.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// The ssh command used when the user configured none: batch mode so that a missing key, an
/// unknown host key or a passphrase fails at once instead of waiting for a prompt nobody sees.
const BATCH_SSH: &str = "ssh -o BatchMode=yes -o ConnectTimeout=30";
/// Variables that would make `git` use another repository, work tree or object store than the
/// one the gate checked (libgit2 opens the repository ignoring them too).
const REPOSITORY_VARIABLES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
];

/// Whether `url` (one `guard_remote_url` passed) is a network remote this module transfers
/// with, rather than a local path or `file://` URL libgit2 handles.
pub fn is_network(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file://") || url.starts_with('/') {
        return false;
    }
    [
        "https://",
        "http://",
        "ssh://",
        "git://",
        "git+ssh://",
        "ssh+git://",
    ]
    .iter()
    .any(|scheme| lower.starts_with(scheme))
        // scp-style `user@host:path`; `transport::address` forms (`ext::`, `fd::`) are not, and
        // `guard_remote_url` refuses them before they get here.
        || (!url.contains("::")
            && url
                .split_once(':')
                .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/')))
}

/// `url` with any password removed, for messages and logs (`https://user:secret@host/` becomes
/// `https://user:***@host/`).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A repository-config key that would redirect or weaken a network transfer, which the system
/// `git` (unlike libgit2) honours: TLS and proxy settings, cookie and certificate files, extra
/// headers, remote helpers. The user's global config may set all of these.
fn network_key(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let section = lower.split('.').next().unwrap_or_default();
    let key = lower.rsplit('.').next().unwrap_or_default();
    let has_subsection = lower.matches('.').count() >= 2;
    match (section, has_subsection, key) {
        ("http", _, _) => Some(
            "http.* settings (TLS verification, proxies, cookie and certificate files, extra \
             headers) belong in the node user's global config, not the repository's",
        ),
        ("remote", true, "proxy" | "vcs" | "proxyauthmethod") => {
            Some("it routes the transfer through a proxy or a remote helper program")
        }
        ("core", false, "sshcommand" | "gitproxy") | ("ssh", _, _) => {
            Some("it chooses how ssh runs; set it in the node user's global config")
        }
        ("extensions", false, "worktreeconfig") => {
            Some("it makes git read config.worktree, which is not checked")
        }
        _ => None,
    }
}

/// The extra guard a repository's config passes before the system `git` transfers for it (on
/// top of `guard_config`, which every operation passes).
pub fn guard_network_config(config: &git2::Config, file: &Path) -> Result<(), GitError> {
    let mut entries = config.entries(None)?;
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        if let Some(why) = network_key(&name) {
            return Err(refused(format!(
                "git: config key `{name}` in {} is refused for a network remote: {why}; remove \
                 it (git config --unset {name}) and retry",
                file.display()
            )));
        }
    }
    Ok(())
}

/// What git printed, its ends kept.
struct Captured {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Which transfer, for messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    Fetch,
    Push,
}

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Direction::Fetch => "fetch from",
            Direction::Push => "push to",
        }
    }
}

/// The ssh command to set in `GIT_SSH_COMMAND`, or `None` to leave git's choice alone: the
/// user's own `GIT_SSH_COMMAND`, `GIT_SSH` or `core.sshCommand` is theirs to run as they set it
/// (their ssh config may need it), and only git's default `ssh` gets batch mode.
fn batch_ssh_command(
    env_ssh_command: bool,
    env_ssh: bool,
    configured_ssh_command: bool,
) -> Option<&'static str> {
    (!env_ssh_command && !env_ssh && !configured_ssh_command).then_some(BATCH_SSH)
}

/// A `git` command for the repository at `git_dir`, with the settings every transfer runs with.
fn git_command(git_dir: &Path) -> Command {
    let mut command = Command::new("git");
    command.arg("--git-dir").arg(git_dir);
    for setting in [
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "protocol.ext.allow=never",
        "protocol.file.allow=never",
        "submodule.recurse=false",
        "fetch.recurseSubmodules=false",
        "gc.auto=0",
        "maintenance.auto=false",
    ] {
        command.args(["-c", setting]);
    }
    for variable in REPOSITORY_VARIABLES {
        command.env_remove(variable);
    }
    command
        // Messages in English, so the failures below are recognised whatever the locale.
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .stdin(Stdio::null());
    command
}

/// Whether the user configured an ssh command for git (their global or system config; the
/// repository's config cannot, `guard_network_config` refuses it).
fn configured_ssh_command(git_dir: &Path) -> Result<bool, String> {
    let mut command = git_command(git_dir);
    command.args(["config", "--get", "core.sshCommand"]);
    let captured = run(command, Duration::from_secs(30))?;
    Ok(captured.success && !captured.stdout.trim().is_empty())
}

/// Starts `command` in its own process group and waits at most `timeout`; `Err` says why it
/// could not run or was killed.
fn run(mut command: Command, timeout: Duration) -> Result<Captured, String> {
    use std::os::unix::process::CommandExt;
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the system `git` command, which network remotes use, \
                                         was not found on the node's PATH; install git"
            .to_string(),
        _ => format!("cannot start the system `git`: {e}"),
    })?;
    let pid = child.id();
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (sender, receiver) = mpsc::channel();
    // A plain thread waits for git so this one can give up at the deadline; the blocking pool
    // this runs on is already off the async threads.
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    let status = match receiver.recv_timeout(timeout) {
        Ok(status) => status.map_err(|e| format!("waiting for git: {e}"))?,
        Err(_) => {
            crate::exec::kill_group(Some(pid));
            let _ = receiver.recv();
            return Err(format!(
                "git did not finish within {}s and was stopped; check the network and the \
                 remote, or that nothing waits for input",
                timeout.as_secs()
            ));
        }
    };
    Ok(Captured {
        success: status.success(),
        code: status.code(),
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    })
}

/// One output stream read on its own thread into a bounded buffer.
struct Drained {
    buffer: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Drained {
    /// What was read, once the stream closed or the grace after git's exit ran out.
    fn finish(self) -> String {
        let _ = self.done.recv_timeout(PIPE_GRACE);
        let bytes = self
            .buffer
            .lock()
            .map(|b| b.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn drain(stream: Option<impl Read + Send + 'static>) -> Drained {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let (done, receiver) = mpsc::channel();
    if let Some(mut stream) = stream {
        let shared = buffer.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(read) = stream.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                let Ok(mut kept) = shared.lock() else { break };
                kept.extend_from_slice(&chunk[..read]);
                // Keep the end: the last lines say why git failed.
                if kept.len() > 2 * OUTPUT_CAP {
                    let excess = kept.len() - OUTPUT_CAP;
                    kept.drain(..excess);
                }
            }
            let _ = done.send(());
        });
    } else {
        let _ = done.send(());
    }
    Drained {
        buffer,
        done: receiver,
    }
}

/// Runs one transfer: `git fetch` or `git push` of `refspecs` with the remote `url`.
fn transfer(
    git_dir: &Path,
    direction: Direction,
    url: &str,
    refspecs: &[String],
) -> Result<Captured, GitError> {
    let failed =
        |why: String| GitError::Remote(format!("git {} {}: {why}", direction.verb(), redact(url)));
    let env_ssh_command = std::env::var_os("GIT_SSH_COMMAND").is_some();
    let env_ssh = std::env::var_os("GIT_SSH").is_some();
    let configured = if env_ssh_command || env_ssh {
        false
    } else {
        configured_ssh_command(git_dir).map_err(failed)?
    };
    let mut command = git_command(git_dir);
    if let Some(ssh) = batch_ssh_command(env_ssh_command, env_ssh, configured) {
        command.env("GIT_SSH_COMMAND", ssh);
    }
    match direction {
        Direction::Fetch => command.args([
            "fetch",
            "--no-recurse-submodules",
            "--no-write-commit-graph",
        ]),
        Direction::Push => command.args([
            "push",
            "--no-verify",
            "--porcelain",
            "--recurse-submodules=no",
        ]),
    };
    // `--` ends the options: a URL cannot be read as one.
    command.arg("--").arg(url).args(refspecs);
    run(command, TIMEOUT).map_err(failed)
}

/// Fetches `refspecs` from the network remote `url` into the repository at `git_dir`; refs and
/// objects only, and `FETCH_HEAD` names what came first.
pub fn fetch(git_dir: &Path, url: &str, refspecs: &[String]) -> Result<(), GitError> {
    let captured = transfer(git_dir, Direction::Fetch, url, refspecs)?;
    if captured.success {
        return Ok(());
    }
    Err(GitError::Remote(explain(Direction::Fetch, url, &captured)))
}

/// Pushes `refspecs` to the network remote `url`; a rejected update is a refusal saying to pull
/// first.
pub fn push(git_dir: &Path, url: &str, refspecs: &[String]) -> Result<(), GitError> {
    let captured = transfer(git_dir, Direction::Push, url, refspecs)?;
    // `--porcelain` prints one line per ref; `!` marks a ref the remote rejected.
    let rejected: Vec<String> = captured
        .stdout
        .lines()
        .filter(|line| line.starts_with('!'))
        .map(|line| line.trim_start_matches('!').trim().replace('\t', " "))
        .collect();
    if !rejected.is_empty() {
        return Err(GitError::Refused(format!(
            "the remote {} rejected the push ({}); pull first",
            redact(url),
            rejected.join("; ")
        )));
    }
    if captured.success {
        return Ok(());
    }
    Err(GitError::Remote(explain(Direction::Push, url, &captured)))
}

/// What went wrong and what to fix, recognised from git's (and ssh's and curl's) stderr.
fn diagnose(stderr: &str, url: &str) -> String {
    let lower = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "host key verification failed",
        "remote host identification has changed",
        "no ed25519 host key is known",
        "no rsa host key is known",
        "no ecdsa host key is known",
    ]) {
        return "the ssh host key check failed: the server's host key is unknown or changed; \
                check the key and add it to the known_hosts file of the user the node runs as \
                (ssh-keyscan, or one ssh by hand), then retry"
            .into();
    }
    if has(&[
        "permission denied (",
        "permission denied, please try again",
        "too many authentication failures",
    ]) {
        return "ssh authentication failed: the server accepted none of the keys offered; load \
                the key into ssh-agent or name it with IdentityFile in ~/.ssh/config of the user \
                the node runs as, and check that the server authorizes it"
            .into();
    }
    if has(&[
        "authentication failed for",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "http basic: access denied",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
    ]) {
        return "https authentication failed: no valid credentials for this remote; store them \
                with a credential helper in the node user's global git config (git config \
                --global credential.helper …), then retry"
            .into();
    }
    if has(&[
        "ssl certificate problem",
        "server certificate verification failed",
        "certificate verify failed",
        "unable to get local issuer certificate",
        "self-signed certificate",
        "self signed certificate",
        "no alternative certificate subject name",
        "ssl: certificate subject name",
    ]) {
        return "the server's TLS certificate could not be verified; if it is signed by a \
                private CA, name that CA in the node user's global git config (git config \
                --global http.sslCAInfo /path/to/ca.pem), then retry"
            .into();
    }
    if has(&[
        "could not resolve host",
        "could not resolve hostname",
        "connection refused",
        "failed to connect",
        "connection timed out",
        "network is unreachable",
        "no route to host",
    ]) {
        return format!(
            "cannot reach the server of {}: check the host name, port and network",
            redact(url)
        );
    }
    if has(&["couldn't find remote ref"]) {
        return "the remote has no such branch; check the branch name".into();
    }
    if has(&[
        "repository not found",
        "does not appear to be a git repository",
        "not found",
    ]) {
        return "the remote has no repository at that path; check the URL".into();
    }
    "git failed".into()
}

/// The error of a failed transfer: the remote, the cause with a hint, and git's last lines.
fn explain(direction: Direction, url: &str, captured: &Captured) -> String {
    let exit = captured
        .code
        .map(|code| format!("exit {code}"))
        .unwrap_or_else(|| "killed by a signal".into());
    let tail: Vec<&str> = captured
        .stderr
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect();
    let tail = tail[tail.len().saturating_sub(QUOTED_LINES)..].join("\n  ");
    format!(
        "git {} {}: {} ({exit}); git said:\n  {tail}",
        direction.verb(),
        redact(url),
        diagnose(&captured.stderr, url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_urls_are_the_ones_libgit2_does_not_handle() {
        for url in [
            "https://example.invalid/r.git",
            "HTTP://example.invalid/r.git",
            "ssh://git@example.invalid:2222/r.git",
            "git@example.invalid:r.git",
            "example.invalid:r.git",
            "git://example.invalid/r.git",
        ] {
            assert!(is_network(url), "{url}");
        }
        for url in [
            "/srv/r.git",
            "file:///srv/r.git",
            "FILE://localhost/srv/r.git",
            "ext::sh -c touch% /tmp/x",
        ] {
            assert!(!is_network(url), "{url}");
        }
    }

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("https://alice:s3cret@example.invalid:8443/r.git"),
            "https://alice:***@example.invalid:8443/r.git"
        );
        assert_eq!(
            redact("https://alice@example.invalid/r.git"),
            "https://alice@example.invalid/r.git"
        );
        assert_eq!(redact("git@host:r.git"), "git@host:r.git");
    }

    #[test]
    fn only_git_default_ssh_gets_batch_mode() {
        assert_eq!(batch_ssh_command(false, false, false), Some(BATCH_SSH));
        assert_eq!(batch_ssh_command(true, false, false), None);
        assert_eq!(batch_ssh_command(false, true, false), None);
        assert_eq!(batch_ssh_command(false, false, true), None);
    }

    fn failed(stderr: &str) -> Captured {
        Captured {
            success: false,
            code: Some(128),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn failures_name_the_remote_the_cause_and_keep_git_last_lines() {
        let cases = [
            (
                "git@127.0.0.1: Permission denied (publickey).\r\nfatal: Could not read from \
                 remote repository.\n\nPlease make sure you have the correct access rights\nand \
                 the repository exists.\n",
                "ssh authentication failed",
                "Permission denied (publickey)",
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict \
                 checking.\r\nHost key verification failed.\r\nfatal: Could not read from remote \
                 repository.\n",
                "host key check failed",
                "Host key verification failed.",
            ),
            (
                "remote: Unauthorized\nfatal: Authentication failed for \
                 'https://127.0.0.1:4443/r.git/'\n",
                "https authentication failed",
                "Authentication failed for",
            ),
            (
                "fatal: unable to access 'https://127.0.0.1:4443/r.git/': SSL certificate \
                 problem: unable to get local issuer certificate\n",
                "http.sslCAInfo",
                "SSL certificate problem",
            ),
            (
                "fatal: couldn't find remote ref refs/heads/nope\n",
                "no such branch",
                "couldn't find remote ref",
            ),
        ];
        for (stderr, cause, quoted) in cases {
            let message = explain(
                Direction::Fetch,
                "https://alice:pw@127.0.0.1:4443/r.git",
                &failed(stderr),
            );
            assert!(message.contains(cause), "{message}");
            assert!(message.contains(quoted), "{message}");
            assert!(
                message.contains("https://alice:***@127.0.0.1:4443/r.git"),
                "{message}"
            );
            assert!(!message.contains(":pw@"), "{message}");
        }
    }

    #[test]
    fn repository_settings_that_redirect_a_transfer_are_refused() {
        for key in [
            "http.sslVerify",
            "http.https://example.invalid/.proxy",
            "http.cookieFile",
            "remote.origin.proxy",
            "remote.origin.vcs",
            "core.sshCommand",
            "ssh.variant",
            "extensions.worktreeConfig",
        ] {
            assert!(network_key(key).is_some(), "{key}");
        }
        for key in [
            "remote.origin.url",
            "remote.origin.fetch",
            "branch.main.remote",
            "core.bare",
            "user.name",
        ] {
            assert!(network_key(key).is_none(), "{key}");
        }
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("survived");
        let mut command = Command::new("sh");
        // The grandchild would create the marker after the deadline if it outlived the kill.
        command.args([
            "-c",
            &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
        ]);
        let started = std::time::Instant::now();
        let error = run(command, Duration::from_millis(300)).err().unwrap();
        assert!(error.contains("did not finish"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // The grandchild was in the group: it must be gone. Poll for its process (pgrep on the
        // marker path in its command line) instead of sleeping past its delay.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::process::Command::new("pgrep")
            .args(["-f", &marker.display().to_string()])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "a process of the group outlived the timeout"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !marker.exists(),
            "a process of the group outlived the timeout"
        );
    }

    #[test]
    fn a_missing_git_is_named() {
        let error = run(
            Command::new("/nonexistent/remote-agents-test/git"),
            Duration::from_secs(5),
        )
        .err()
        .unwrap();
        assert!(error.contains("`git`"), "{error}");
        assert!(error.contains("not found"), "{error}");
    }
}
