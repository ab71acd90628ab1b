//! Runs one process for `exec`: argv without a shell (or `/bin/sh -c` when the gate granted it),
//! in its own process group so that a timeout or a cancellation kills everything it started;
//! stdout and stderr are captured up to a cap with an explicit `truncated` flag, and kept once:
//! text as it is, binary output (not UTF-8, or mostly control bytes such as NUL, which JSON
//! would write six bytes each) as base64. In plan mode the process starts inside the read-only
//! sandbox of [`crate::sandbox`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use base64::Engine;

use remote_agents_ops::{Encoding, ExecResult, Outcome};

/// Default cap of captured bytes per stream.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;
/// Default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long captured pipes may stay open after the program exited (a background child that
/// inherited them keeps them open); after this the output collected so far is returned.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// What to run, after the policy gate.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub shell: bool,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub stdin: Option<String>,
    pub timeout: Duration,
    pub max_output: usize,
    /// Start the process inside the read-only sandbox (plan mode).
    pub sandboxed: bool,
    /// What the sandbox makes unreadable too: the policy's hard-limit paths (the node's own
    /// files, system credentials).
    pub hidden: Vec<PathBuf>,
}

/// A progress report while a process runs.
#[derive(Debug, Clone, Copy)]
pub struct ExecProgress {
    pub elapsed: Duration,
    pub output_bytes: u64,
}

/// Errors that keep a process from starting.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec needs a non-empty argv")]
    EmptyArgv,
    #[error("cannot start `{program}` (check that it exists and is executable on this host)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for the process failed")]
    Wait(#[source] std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
}

/// Writes captured bytes for the result without copying them: valid UTF-8 stays text unless
/// escaping it for JSON would cost more than base64 (each control byte but `\n`, `\r` and
/// `\t` becomes six bytes, `\u0000`); anything else is base64, so binary output is neither
/// mangled (lossy UTF-8) nor blown up.
pub fn encode_output(bytes: Vec<u8>) -> (String, Encoding) {
    let escaped = bytes
        .iter()
        .filter(|b| **b < 0x20 && !matches!(**b, b'\n' | b'\r' | b'\t'))
        .count();
    // Text pays 5 extra bytes per escaped byte; base64 pays a third of the whole length.
    let text_is_cheaper = escaped.saturating_mul(5) <= bytes.len() / 3;
    if text_is_cheaper {
        match String::from_utf8(bytes) {
            Ok(text) => return (text, Encoding::Utf8),
            Err(e) => {
                let bytes = e.into_bytes();
                return (
                    base64::engine::general_purpose::STANDARD.encode(&bytes),
                    Encoding::Base64,
                );
            }
        }
    }
    (
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        Encoding::Base64,
    )
}

/// The outcome of a finished run. The output strings are moved into the JSON value rather than
/// serialized from a borrow, so the node never holds two copies of a large output.
pub fn outcome(mut result: ExecResult) -> Outcome {
    let stdout = std::mem::take(&mut result.stdout);
    let stderr = std::mem::take(&mut result.stderr);
    match serde_json::to_value(&result) {
        Ok(mut value) => {
            if let Some(fields) = value.as_object_mut() {
                fields.insert("stdout".into(), serde_json::Value::String(stdout));
                fields.insert("stderr".into(), serde_json::Value::String(stderr));
            }
            Outcome::Ok { result: value }
        }
        Err(e) => Outcome::failed(format!("cannot encode result: {e}")),
    }
}

async fn capture<R: AsyncRead + Unpin>(
    mut reader: R,
    max: usize,
    counter: Arc<AtomicU64>,
) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                let room = max.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                // Keep draining past the cap so the program never blocks on a full pipe.
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

pub(crate) fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        // The child leads its own group (process_group(0)), so this reaches everything it
        // started that did not deliberately leave the group.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Runs `spec`, reporting progress about once a second, until it exits, times out or `cancel`
/// fires.
pub async fn run(
    spec: ExecSpec,
    cancel: CancellationToken,
    progress: impl Fn(ExecProgress) + Send,
) -> Result<ExecResult, ExecError> {
    let started = Instant::now();
    let (program, args): (String, Vec<String>) = if spec.shell {
        ("/bin/sh".into(), vec!["-c".into(), spec.argv.join(" ")])
    } else {
        let (first, rest) = spec.argv.split_first().ok_or(ExecError::EmptyArgv)?;
        (first.clone(), rest.to_vec())
    };
    let mut command = Command::new(&program);
    command
        .args(&args)
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let (mut child, sandbox) = if spec.sandboxed {
        let (child, description) = crate::sandbox::spawn(command, &program, &spec.hidden).await?;
        (child, Some(description))
    } else {
        let child = command.spawn().map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
        (child, None)
    };
    let pid = child.id();
    if let (Some(text), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        crate::runtime::spawn(async move {
            // A program that does not read its input closes the pipe: that is not an error.
            let _ = stdin.write_all(text.as_bytes()).await;
        });
    }
    let counter = Arc::new(AtomicU64::new(0));
    let stdout = child
        .stdout
        .take()
        .map(|s| crate::runtime::spawn(capture(s, spec.max_output, counter.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|s| crate::runtime::spawn(capture(s, spec.max_output, counter.clone())));

    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut timed_out = false;
    let mut cancelled = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break Some(status.map_err(ExecError::Wait)?),
            _ = &mut deadline => { timed_out = true; break None; }
            _ = cancel.cancelled() => { cancelled = true; break None; }
            _ = ticker.tick() => progress(ExecProgress {
                elapsed: started.elapsed(),
                output_bytes: counter.load(Ordering::Relaxed),
            }),
        }
    };
    let status = match status {
        Some(status) => status,
        None => {
            kill_group(pid);
            child.wait().await.map_err(ExecError::Wait)?
        }
    };
    if timed_out || cancelled {
        // Grandchildren may still hold the pipes; the group kill above ended them.
        kill_group(pid);
    }
    let collect = |handle: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>| async move {
        match handle {
            Some(h) => match tokio::time::timeout(PIPE_GRACE, h).await {
                Ok(Ok(v)) => v,
                _ => (Vec::new(), false),
            },
            None => (Vec::new(), false),
        }
    };
    let (out, out_cut) = collect(stdout).await;
    let (err, err_cut) = collect(stderr).await;
    let (stdout, stdout_encoding) = encode_output(out);
    let (stderr, stderr_encoding) = encode_output(err);
    use std::os::unix::process::ExitStatusExt;
    Ok(ExecResult {
        exit_code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        stdout_encoding,
        stderr_encoding,
        truncated: out_cut || err_cut,
        timed_out,
        cancelled,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        sandbox,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            shell: false,
            cwd: std::env::temp_dir(),
            env: BTreeMap::new(),
            stdin: None,
            timeout: Duration::from_secs(10),
            max_output: DEFAULT_MAX_OUTPUT,
            sandboxed: false,
            hidden: Vec::new(),
        }
    }

    #[tokio::test]
    async fn argv_runs_without_a_shell() {
        let result = run(
            spec(&["echo", "$HOME", "a;b"]),
            CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(result.stdout, "$HOME a;b\n");
        assert_eq!(result.exit_code, Some(0));
        assert!(!result.truncated);
    }

    #[tokio::test]
    async fn stdin_env_cwd_and_exit_code_pass_through() {
        let mut s = spec(&["sh", "-c", "read x; echo \"$x $FOO $(pwd)\"; exit 3"]);
        s.stdin = Some("hello\n".into());
        s.env.insert("FOO".into(), "bar".into());
        s.cwd = PathBuf::from("/");
        let result = run(s, CancellationToken::new(), |_| {}).await.unwrap();
        assert_eq!(result.stdout, "hello bar /\n");
        assert_eq!(result.exit_code, Some(3));
    }

    #[tokio::test]
    async fn output_over_the_cap_is_cut_and_flagged() {
        let mut s = spec(&["sh", "-c", "yes | head -c 100000"]);
        s.max_output = 1000;
        let result = run(s, CancellationToken::new(), |_| {}).await.unwrap();
        assert_eq!(result.stdout.len(), 1000);
        assert_eq!(result.stdout_encoding, Encoding::Utf8);
        assert!(result.truncated);
    }

    /// 1 GiB of NULs took a node to 23.5 GB: each NUL was kept, then written as `\u0000` (six
    /// bytes) in the JSON result, and the result was held twice. Now the output is cut at the
    /// cap and sent as base64 (4 bytes per 3).
    #[tokio::test]
    async fn nul_output_is_capped_and_encoded_compactly() {
        let cap = 256 * 1024;
        let mut s = spec(&["head", "-c", "20000000", "/dev/zero"]);
        s.max_output = cap;
        let result = run(s, CancellationToken::new(), |_| {}).await.unwrap();
        assert!(result.truncated);
        assert_eq!(result.stdout_encoding, Encoding::Base64);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&result.stdout)
            .unwrap();
        assert_eq!(decoded, vec![0u8; cap]);
        let json = serde_json::to_vec(&outcome(result)).unwrap();
        assert!(
            json.len() < cap * 4 / 3 + 1024,
            "{} bytes of JSON for {cap} bytes of output",
            json.len()
        );
    }

    #[test]
    fn output_is_text_unless_binary_or_mostly_escapes() {
        let check = |bytes: &[u8]| encode_output(bytes.to_vec());
        assert_eq!(
            check(b"plain\ttext\n"),
            ("plain\ttext\n".into(), Encoding::Utf8)
        );
        // A few control bytes in text cost less as escapes than base64 would.
        let mostly_text = [b"x".repeat(100), vec![0u8]].concat();
        assert_eq!(check(&mostly_text).1, Encoding::Utf8);
        // Not UTF-8: base64, byte for byte (it used to be replaced by U+FFFD).
        assert_eq!(
            check(&[0xff, 0xfe, b'a']),
            ("//5h".into(), Encoding::Base64)
        );
        assert_eq!(check(&[0u8; 30]).1, Encoding::Base64);
        assert_eq!(check(b""), (String::new(), Encoding::Utf8));
    }

    #[test]
    fn the_outcome_carries_the_same_result_as_serializing_it() {
        let result = ExecResult {
            exit_code: Some(0),
            signal: None,
            stdout: "out".into(),
            stderr: "AAAA".into(),
            stdout_encoding: Encoding::Utf8,
            stderr_encoding: Encoding::Base64,
            truncated: false,
            timed_out: false,
            cancelled: false,
            duration_ms: 3,
            sandbox: None,
        };
        assert_eq!(outcome(result.clone()), Outcome::ok(&result));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-survived");
        let mut s = spec(&[
            "sh",
            "-c",
            &format!("(sleep 3; touch {}) & sleep 30", marker.display()),
        ]);
        s.timeout = Duration::from_millis(300);
        let result = run(s, CancellationToken::new(), |_| {}).await.unwrap();
        assert!(result.timed_out);
        assert_eq!(result.exit_code, None);
        assert!(result.duration_ms < 5000, "{result:?}");
        // The grandchild was in the group: it must be gone, so its marker never appears. Poll
        // for the grandchild's process instead of sleeping: pgrep on the marker path.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive = std::process::Command::new("pgrep")
                .args(["-f", &marker.display().to_string()])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(Instant::now() < deadline, "grandchild still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn cancellation_kills_the_process() {
        let token = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let started = dir.path().join("started");
        let script = format!("touch {}; exec sleep 30", started.display());
        let s = spec(&["sh", "-c", &script]);
        let trigger = token.clone();
        // Cancel once the process is really running (its marker exists), within a deadline.
        crate::runtime::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !started.exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            trigger.cancel();
        });
        let result = run(s, token, |_| {}).await.unwrap();
        assert!(result.cancelled);
        assert_eq!(result.signal, Some(9));
    }

    #[tokio::test]
    async fn a_missing_program_is_an_actionable_error() {
        let err = run(
            spec(&["no-such-program-xyz"]),
            CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no-such-program-xyz"));
    }
}
