//! MapReduce across the fleet: a coordinator that runs on the caller (fleetctl or an MCP node),
//! turns a job's input into partitions, runs the map step of each partition on a targeted host
//! through the ordinary RPC (`ops::Request::Exec`, so every host's journal and policy gate
//! apply), and reduces the outputs in partition order.
//!
//! Inputs: file globs that each host expands for itself (the file is fed to the map's stdin on
//! that host, so its bytes never travel to the caller); the lines a command prints on the
//! caller; inline items; or a local file. The last three are text held by the caller, split at
//! line boundaries and shipped as each attempt's stdin, so their partitions can move between
//! hosts. Scheduling (retries, first-commit-wins, straggler backups, lost hosts) is the pure
//! [`scheduler`]; data handling and the built-in reducers are the pure [`data`].

pub mod data;
pub mod scheduler;
pub mod tool;
pub mod trigger;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use remote_agents_spec::{MapReduceSpec, Reducer, Selector};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{self, CallError, Client, peer_of};
use crate::fleet::fanout::Target;
use crate::fleet::remote::resolve_targets;
use crate::net::{self, Net};
use crate::node::{CallContext, Node};
use remote_agents_ops::operation::{Exec, FileSearch, ListDir};
use remote_agents_ops::{
    Caller, Envelope, ExecArgs, ExecResult, FileKind, FileSearchArgs, Outcome, PathArgs, Request,
};
use scheduler::{AttemptEnd, Placement, Scheduler, Verdict};

/// Default cap of one map output (and of the reduce output), in bytes.
pub const DEFAULT_MAX_OUTPUT: usize = 64 * 1024 * 1024;
/// Default size of one shipped partition when the input is large.
pub const DEFAULT_CHUNK_BYTES: usize = 16 * 1024 * 1024;
/// Default time one map attempt may take.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);
/// Extra time the RPC waits beyond the attempt's own timeout, so the host's answer (with its
/// `timed_out` flag) arrives before the call gives up.
const CALL_MARGIN: Duration = Duration::from_secs(30);

/// Errors that stop a job before or outside the per-partition accounting.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("no connected host matches target {0:?} ({1} peers connected)")]
    NoHosts(String, usize),
    #[error("reading the input failed: {0}")]
    Input(String),
    #[error("the job was cancelled")]
    Cancelled,
}

/// A command: argv without a shell, or a shell line (needs a shell grant where it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Argv(Vec<String>),
    Shell(String),
}

impl Command {
    /// From a spec step: exactly one of `command` and `shell`.
    pub fn from_parts(
        what: &str,
        argv: &[String],
        shell: Option<&str>,
    ) -> Result<Option<Self>, JobError> {
        match (argv.is_empty(), shell) {
            (true, None) => Ok(None),
            (false, None) => Ok(Some(Command::Argv(argv.to_vec()))),
            (true, Some(line)) => Ok(Some(Command::Shell(line.to_string()))),
            (false, Some(_)) => Err(JobError::Invalid(format!(
                "{what}: give either command (argv) or shell, not both"
            ))),
        }
    }

    /// The command as one shell line (argv words quoted).
    pub fn shell_line(&self) -> String {
        match self {
            Command::Argv(argv) => argv
                .iter()
                .map(|w| data::shell_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
            Command::Shell(line) => line.clone(),
        }
    }

    fn exec_args(&self, stdin: Option<String>, timeout: Duration, max_output: usize) -> ExecArgs {
        let (argv, shell) = match self {
            Command::Argv(argv) => (argv.clone(), false),
            Command::Shell(line) => (vec![line.clone()], true),
        };
        ExecArgs {
            agent_id: None,
            argv,
            shell,
            cwd: None,
            env: BTreeMap::new(),
            stdin,
            timeout_secs: Some(timeout.as_secs_f64()),
            max_output_bytes: Some(max_output),
        }
    }

    fn describe(&self) -> String {
        match self {
            Command::Argv(argv) => argv.join(" "),
            Command::Shell(line) => line.clone(),
        }
    }
}

/// Where the job's input comes from, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobInput {
    /// Globs each targeted host expands for itself; one partition per matching file, run on
    /// that host only.
    Files(Vec<String>),
    /// A command run on the caller; its output lines are split into partitions.
    Command(Command),
    /// Inline items, one per line, split into partitions.
    Items(Vec<String>),
    /// A file on the caller, split at line boundaries and shipped in partitions.
    Local(PathBuf),
}

/// How the map outputs are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReduceStep {
    Builtin(Reducer),
    /// A command fed every map output on stdin, in partition order.
    Command(Command),
}

/// A job ready to run.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub name: String,
    pub target: String,
    pub input: JobInput,
    /// Partitions per host for shipped input (the spec's `partitions`); default 1. Large input
    /// is cut further so that no partition exceeds `chunk_bytes`.
    pub partitions_per_host: usize,
    pub chunk_bytes: usize,
    pub map: Command,
    pub reduce: ReduceStep,
    /// Run the reduce command on this host instead of the caller.
    pub reduce_on: Option<String>,
    pub retries: u32,
    /// Map attempts in flight per host.
    pub slots_per_host: usize,
    /// Map attempts in flight across all hosts (`None`: no cap beyond the per-host slots).
    pub max_in_flight: Option<usize>,
    pub attempt_timeout: Duration,
    pub max_output_bytes: usize,
}

impl JobPlan {
    /// A plan from a declared `MapReduceJob` (defaults for what the spec leaves out).
    pub fn from_spec(name: &str, spec: &MapReduceSpec) -> Result<Self, JobError> {
        let input = &spec.input;
        let mut kinds = Vec::new();
        if !input.files.is_empty() {
            kinds.push(JobInput::Files(input.files.clone()));
        }
        if let Some(command) = Command::from_parts("input", &input.command, input.shell.as_deref())?
        {
            kinds.push(JobInput::Command(command));
        }
        if !input.items.is_empty() {
            kinds.push(JobInput::Items(input.items.clone()));
        }
        let input = match kinds.len() {
            1 => kinds.remove(0),
            0 => {
                return Err(JobError::Invalid(
                    "input: give files, command, shell or items".into(),
                ));
            }
            _ => {
                return Err(JobError::Invalid(
                    "input: give only one of files, command/shell and items".into(),
                ));
            }
        };
        let map = Command::from_parts("map", &spec.map.command, spec.map.shell.as_deref())?
            .ok_or_else(|| JobError::Invalid("map: give command (argv) or shell".into()))?;
        let reduce_command =
            Command::from_parts("reduce", &spec.reduce.command, spec.reduce.shell.as_deref())?;
        let reduce = match (spec.reduce.builtin, reduce_command) {
            (Some(builtin), None) => ReduceStep::Builtin(builtin),
            (None, Some(command)) => ReduceStep::Command(command),
            (None, None) => {
                return Err(JobError::Invalid(
                    "reduce: give builtin (sum, count, concat), command or shell".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(JobError::Invalid(
                    "reduce: give either builtin or a command, not both".into(),
                ));
            }
        };
        Ok(JobPlan {
            name: name.to_string(),
            target: spec.target.clone(),
            input,
            partitions_per_host: spec.partitions.unwrap_or(1).max(1) as usize,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            map,
            reduce,
            reduce_on: None,
            retries: spec.retries.unwrap_or(2),
            slots_per_host: 2,
            max_in_flight: None,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            max_output_bytes: DEFAULT_MAX_OUTPUT,
        })
    }
}

/// Where caller-side commands run (the input command, and the reduce command without
/// `reduce_on`): a local process for fleetctl, or the MCP node itself through its own journal
/// and policy gate.
#[derive(Clone)]
pub enum CallerSide {
    Process,
    Node(Arc<Node>),
    /// A declared job (`trigger: on-apply` or `cron`) that this node coordinates: its own
    /// commands run as the spec of `generation` (not a model), and when the job's target
    /// selects this node it maps on it too.
    Declared {
        node: Arc<Node>,
        generation: u64,
    },
}

/// Runs a declared job's requests to its own coordinator as the spec's (the net has no
/// session with itself).
struct DeclaredOwnNode {
    node: Arc<Node>,
    generation: u64,
}

impl client::OwnNode for DeclaredOwnNode {
    fn run(&self, mut envelope: Envelope) -> futures_util::future::BoxFuture<'static, Outcome> {
        envelope.caller = Caller::Spec {
            generation: self.generation,
        };
        envelope.on_behalf_of_model = false;
        let node = self.node.clone();
        Box::pin(async move { node.handle_local(envelope, CallContext::default()).await })
    }
}

impl CallerSide {
    async fn run(
        &self,
        id: String,
        command: &Command,
        stdin: Option<String>,
        timeout: Duration,
        max_output: usize,
    ) -> Result<String, String> {
        match self {
            CallerSide::Process => run_process(command, stdin, timeout, max_output).await,
            CallerSide::Node(node) => {
                let envelope = Envelope {
                    id,
                    caller: Caller::McpLocal,
                    request: Request::Exec(command.exec_args(stdin, timeout, max_output)),
                    on_behalf_of_model: true,
                    window_override: None,
                };
                let outcome = node.handle_local(envelope, CallContext::default()).await;
                exec_output(outcome)
            }
            CallerSide::Declared { node, generation } => {
                let envelope = Envelope {
                    id,
                    caller: Caller::Spec {
                        generation: *generation,
                    },
                    request: Request::Exec(command.exec_args(stdin, timeout, max_output)),
                    on_behalf_of_model: false,
                    window_override: None,
                };
                let outcome = node.handle_local(envelope, CallContext::default()).await;
                exec_output(outcome)
            }
        }
    }
}

/// Runs a command as a local process (fleetctl's side), feeding `stdin`.
async fn run_process(
    command: &Command,
    stdin: Option<String>,
    timeout: Duration,
    max_output: usize,
) -> Result<String, String> {
    let mut process = match command {
        Command::Argv(argv) => {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| "empty command".to_string())?;
            let mut p = tokio::process::Command::new(program);
            p.args(args);
            p
        }
        Command::Shell(line) => {
            let mut p = tokio::process::Command::new("/bin/sh");
            p.args(["-c", line]);
            p
        }
    };
    process
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = process
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", command.describe()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        crate::runtime::spawn(async move {
            // A command that stops reading early closes the pipe: not an error here.
            let _ = pipe.write_all(text.as_bytes()).await;
        });
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("`{}` timed out", command.describe()))?
        .map_err(|e| format!("waiting for `{}`: {e}", command.describe()))?;
    if !output.status.success() {
        return Err(format!(
            "`{}` exited with {}: {}",
            command.describe(),
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr))
        ));
    }
    if output.stdout.len() > max_output {
        return Err(format!(
            "`{}` printed more than {max_output} bytes",
            command.describe()
        ));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| format!("`{}` printed bytes that are not UTF-8", command.describe()))
}

/// The last few hundred bytes of an error stream, on whole characters.
fn tail(text: &str) -> String {
    let text = text.trim();
    let mut start = text.len().saturating_sub(400);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Turns an exec outcome into its stdout, or an error that says why not.
fn exec_output(outcome: Outcome) -> Result<String, String> {
    client::decode::<Exec>(outcome)
        .map_err(|error| error.to_string())
        .and_then(exec_text)
}

/// A command's stdout when it exited 0 with whole text output, or an error that says why not.
fn exec_text(exec: ExecResult) -> Result<String, String> {
    if exec.timed_out {
        Err(format!("timed out after {} ms", exec.duration_ms))
    } else if exec.truncated {
        Err("output exceeded max_output_bytes and was cut".into())
    } else if exec.exit_code == Some(0) && !exec.stdout_encoding.is_utf8() {
        // The node sent binary output as base64; a map or reduce step works on text.
        Err(
            "the command printed binary output (not UTF-8 text); map and reduce \
             commands must print text"
                .into(),
        )
    } else if exec.exit_code == Some(0) {
        Ok(exec.stdout)
    } else {
        let how = match (exec.exit_code, exec.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".into(),
        };
        Err(format!("{how}: {}", tail(&exec.stderr)))
    }
}

/// The shell line that feeds a host's file to the map. `cat` streams it in large reads: a map
/// such as awk reads its stdin 4 KiB at a time, and where each read of a file is a costly
/// system call (sandboxed kernels, network file systems) a redirect made the map 3x slower
/// than the same bytes through a pipe. An unreadable file fails the attempt instead of
/// mapping nothing.
fn feed_file(path: &str, map_line: &str) -> String {
    let path = data::shell_quote(path);
    format!(
        "if [ -r {path} ]; then cat -- {path} | ( {map_line} ); \
         else echo cannot read {path} >&2; exit 66; fi"
    )
}

/// What a partition reads.
#[derive(Debug, Clone)]
enum PartitionInput {
    /// A file on its host, fed to the map's stdin there.
    File(String),
    /// A range of the shipped text.
    Shipped(Range<usize>),
}

/// One partition that finally failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PartitionFailure {
    pub partition: usize,
    /// What it reads: `HOST:PATH` for a host's file, `bytes A..B` of shipped input.
    pub input: String,
    /// The host of its last attempt, when it ran anywhere.
    pub host: Option<String>,
    pub attempts: u32,
    pub error: String,
}

/// A host that could not take part (e.g. its glob could not be expanded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostProblem {
    pub host: String,
    pub error: String,
}

/// Where a partition's kept output came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PartitionDone {
    pub partition: usize,
    pub host: String,
    pub attempt: u32,
    /// How long the kept attempt took, call included.
    pub duration_ms: u64,
}

/// The result of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobReport {
    /// Request ids of map attempts are `JOB_ID/PARTITION/ATTEMPT`.
    pub job_id: String,
    pub name: String,
    pub target: String,
    pub hosts: Vec<String>,
    pub partitions: usize,
    pub done: usize,
    pub failed: usize,
    /// True when every partition committed and the reduce ran: the result covers all input.
    pub complete: bool,
    /// The reduce output (over the committed partitions only when not complete).
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_error: Option<String>,
    pub failed_partitions: Vec<PartitionFailure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_problems: Vec<HostProblem>,
    /// Map attempts started in all (first attempts, retries and backups).
    pub attempts: u32,
    /// Straggler backups started.
    pub backups: u32,
    /// Successful outputs ignored because the partition had already committed.
    pub duplicates_ignored: u32,
    /// Hosts lost during the job (their movable partitions ran elsewhere).
    pub hosts_lost: Vec<String>,
    /// Bytes of input held by the caller and split into partitions (0 when hosts read their
    /// own files).
    pub input_bytes: u64,
    /// Bytes of input shipped from the caller, counting every attempt (retries and backups
    /// send their partition again).
    pub shipped_bytes: u64,
    pub map_ms: u64,
    pub reduce_ms: u64,
    pub duration_ms: u64,
    /// Where each partition's kept output came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub committed: Vec<PartitionDone>,
}

/// Progress: (partitions finished, total, message).
pub type Progress = Arc<dyn Fn(usize, usize, String) + Send + Sync>;

/// How one attempt ended, as seen by the coordinator.
struct AttemptResult {
    partition: usize,
    attempt: u32,
    host: usize,
    output: Result<String, AttemptEnd>,
}

/// Runs an exec on one host and classifies the answer.
async fn call_exec(
    client: &Client,
    agent_id: Option<&str>,
    id: String,
    args: ExecArgs,
    timeout: Duration,
) -> Result<String, AttemptEnd> {
    let answer = match peer_of(agent_id) {
        Ok(peer) => client.call_with::<Exec>(peer, id, args, timeout).await,
        Err(error) => Err(error),
    };
    answer
        .map_err(attempt_end)
        .and_then(|exec| exec_text(exec).map_err(AttemptEnd::Failed))
}

/// How a failed call ends an attempt. A host that is gone (not connected, unreachable, or that
/// took the request and went away, e.g. it left the room mid-run) is lost: a map is a pure
/// step, so running it again elsewhere is safe. Anything else fails the attempt.
fn attempt_end(error: CallError) -> AttemptEnd {
    match error {
        CallError::NotConnected(_)
        | CallError::Transport(
            net::CallError::Unreachable(_)
            | net::CallError::Shutdown
            | net::CallError::OutcomeUnknown(_),
        ) => AttemptEnd::HostLost(error.to_string()),
        other => AttemptEnd::Failed(other.to_string()),
    }
}

/// Expands the globs on one host (it lists or searches its own folders): the matching files.
async fn expand_globs(
    client: &Client,
    job_id: &str,
    target: &Target,
    globs: &[String],
) -> Result<Vec<String>, String> {
    let peer = peer_of(target.agent_id.as_deref()).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for (index, glob) in globs.iter().enumerate() {
        let parts = data::split_glob(glob);
        let matcher = globset::GlobBuilder::new(&parts.pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid glob {glob:?}: {e}"))?
            .compile_matcher();
        let id = format!("{job_id}/list/{}/{index}", target.host);
        if parts.recursive {
            let last = parts.pattern.rsplit('/').next().unwrap_or("*").to_string();
            let args = FileSearchArgs {
                agent_id: None,
                roots: Some(vec![parts.root.clone()]),
                name: Some(last),
                content: None,
                images_only: false,
                include_hidden: true,
                max_results: Some(1_000_000),
                ai_fallback: false,
                ai_provider: None,
            };
            let result = client
                .call_with::<FileSearch>(peer, id, args, client::DEFAULT_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            let root = result.searched_roots.first().cloned().unwrap_or_default();
            for hit in result.matches {
                if let Ok(relative) = std::path::Path::new(&hit.path).strip_prefix(&root)
                    && matcher.is_match(relative)
                {
                    files.push(hit.path);
                }
            }
        } else {
            let args = PathArgs {
                agent_id: None,
                path: parts.root.clone(),
            };
            let listing = client
                .call_with::<ListDir>(peer, id, args, client::DEFAULT_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            let mut names: Vec<&str> = listing
                .entries
                .iter()
                .filter(|e| e.kind == FileKind::File && matcher.is_match(&e.name))
                .map(|e| e.name.as_str())
                .collect();
            names.sort_unstable();
            for name in names {
                files.push(format!("{}/{name}", listing.path.trim_end_matches('/')));
            }
        }
    }
    files.dedup();
    Ok(files)
}

/// Reads the caller-held input into text.
async fn shipped_text(
    input: &JobInput,
    side: &CallerSide,
    job_id: &str,
    timeout: Duration,
) -> Result<String, JobError> {
    match input {
        JobInput::Files(_) => Ok(String::new()),
        JobInput::Items(items) => {
            let mut text = items.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            Ok(text)
        }
        JobInput::Local(path) => {
            let path = path.clone();
            crate::runtime::spawn_blocking(move || {
                let bytes = std::fs::read(&path)
                    .map_err(|e| JobError::Input(format!("{}: {e}", path.display())))?;
                String::from_utf8(bytes).map_err(|_| {
                    JobError::Input(format!(
                        "{}: not UTF-8 text (map stdin is text)",
                        path.display()
                    ))
                })
            })
            .await
            .map_err(|e| JobError::Input(e.to_string()))?
        }
        JobInput::Command(command) => side
            .run(
                format!("{job_id}/input"),
                command,
                None,
                timeout,
                usize::MAX / 2,
            )
            .await
            .map_err(JobError::Input),
    }
}

/// Runs a job to its end: partitions, map attempts, reduce. Per-partition failures are in the
/// report; only problems that prevent the job from starting are errors.
pub async fn run(
    net: &Net,
    caller_id: &str,
    side: &CallerSide,
    plan: JobPlan,
    progress: Option<Progress>,
    cancel: CancellationToken,
) -> Result<JobReport, JobError> {
    let started = Instant::now();
    let selector = Selector::parse(&plan.target)
        .map_err(|e| JobError::Invalid(format!("target {:?}: {e}", plan.target)))?;
    let mut targets: Vec<Target> = resolve_targets(&selector, &net.peers(), &[]);
    // The net reaches peers only: a declared job's coordinator adds itself when selected.
    if let CallerSide::Declared { node, .. } = side
        && !node.settings().no_agent.value
        && selector.matches(&node.announced_host())
    {
        let own = Target {
            host: node.settings().name.value.clone(),
            agent_id: Some(node.agent_id().to_string()),
        };
        targets.retain(|t| t.host != own.host);
        let at = targets.partition_point(|t| t.host < own.host);
        targets.insert(at, own);
    }
    if targets.is_empty() {
        return Err(JobError::NoHosts(plan.target.clone(), net.peers().len()));
    }
    let job_id = format!("mr-{}", crate::fleet::jobs::new_op_id());
    // A node coordinates jobs only for its MCP client's `mapreduce` tool: every map and glob
    // request is then a model's, and each host applies its McpSurface to it.
    let client = Client::new(
        net.clone(),
        Caller::MapReduce {
            caller: caller_id.to_string(),
        },
    )
    .on_behalf_of_model(matches!(side, CallerSide::Node(_)));
    let client = match side {
        CallerSide::Declared { node, generation } => {
            client.with_own_node(Arc::new(DeclaredOwnNode {
                node: node.clone(),
                generation: *generation,
            }))
        }
        _ => client,
    };
    let report = |message: String, done: usize, total: usize| {
        if let Some(progress) = &progress {
            progress(done, total, message);
        }
    };

    // Partitions and where they may run.
    let mut inputs: Vec<PartitionInput> = Vec::new();
    let mut placements: Vec<Placement> = Vec::new();
    let mut host_problems = Vec::new();
    let text: Arc<str>;
    match &plan.input {
        JobInput::Files(globs) => {
            text = Arc::from("");
            let listings = futures_util::future::join_all(
                targets
                    .iter()
                    .map(|t| expand_globs(&client, &job_id, t, globs)),
            )
            .await;
            for (host, listing) in listings.into_iter().enumerate() {
                match listing {
                    Ok(files) => {
                        for file in files {
                            inputs.push(PartitionInput::File(file));
                            placements.push(Placement::Pinned(host));
                        }
                    }
                    Err(error) => host_problems.push(HostProblem {
                        host: targets[host].host.clone(),
                        error: format!("cannot expand the input globs: {error}"),
                    }),
                }
            }
            // A glob that matches nothing anywhere is almost always a mistake: say so rather
            // than reduce an empty input.
            if inputs.is_empty() && host_problems.is_empty() {
                return Err(JobError::Input(format!(
                    "no file matches {globs:?} on any of the {} hosts",
                    targets.len()
                )));
            }
        }
        other => {
            text = Arc::from(shipped_text(other, side, &job_id, plan.attempt_timeout).await?);
            let by_hosts = targets.len() * plan.partitions_per_host.max(1);
            let by_size = text.len().div_ceil(plan.chunk_bytes.max(1));
            // Whole waves: a count that fills every slot evenly leaves no lone last partition
            // running while the other hosts idle.
            let wave = targets.len() * plan.slots_per_host.max(1);
            let parts = if by_size > by_hosts {
                by_size.div_ceil(wave) * wave
            } else {
                by_hosts
            };
            for (index, range) in data::split_lines(&text, parts).into_iter().enumerate() {
                inputs.push(PartitionInput::Shipped(range));
                placements.push(Placement::Movable {
                    home: index % targets.len(),
                });
            }
        }
    }
    let total = inputs.len();
    report(
        format!("{total} partitions over {} hosts", targets.len()),
        0,
        total,
    );

    let mut scheduler = Scheduler::new(
        vec![plan.slots_per_host.max(1); targets.len()],
        placements,
        plan.retries,
    )
    .with_max_running(plan.max_in_flight);
    let mut outputs: Vec<Option<String>> = vec![None; total];
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<AttemptResult>();
    let mut running: BTreeMap<(usize, u32), (tokio::task::AbortHandle, Instant)> = BTreeMap::new();
    let mut durations: Vec<u64> = vec![0; total];
    let mut attempts = 0u32;
    let mut backups = 0u32;
    let mut duplicates = 0u32;
    let mut shipped_bytes = 0u64;
    let mut hosts_lost = Vec::new();
    let map_started = Instant::now();
    let map = Arc::new(plan.map.clone());
    let map_line = plan.map.shell_line();

    loop {
        for assignment in scheduler.assign() {
            attempts += 1;
            if assignment.backup {
                backups += 1;
            }
            let target = &targets[assignment.host];
            let (exec, shipped) = match &inputs[assignment.partition] {
                // The host feeds its own file to the map: the bytes never leave it. Without an
                // exec argument for a stdin file, this needs the host's shell grant.
                PartitionInput::File(path) => (
                    Command::Shell(feed_file(path, &map_line)).exec_args(
                        None,
                        plan.attempt_timeout,
                        plan.max_output_bytes,
                    ),
                    0,
                ),
                PartitionInput::Shipped(range) => (
                    map.exec_args(
                        Some(text[range.clone()].to_string()),
                        plan.attempt_timeout,
                        plan.max_output_bytes,
                    ),
                    range.len() as u64,
                ),
            };
            shipped_bytes += shipped;
            let id = format!("{job_id}/{}/{}", assignment.partition, assignment.attempt);
            let client = client.clone();
            let agent_id = target.agent_id.clone();
            let results = results_tx.clone();
            let timeout = plan.attempt_timeout + CALL_MARGIN;
            let handle = crate::runtime::spawn(async move {
                let output = call_exec(&client, agent_id.as_deref(), id, exec, timeout).await;
                let _ = results.send(AttemptResult {
                    partition: assignment.partition,
                    attempt: assignment.attempt,
                    host: assignment.host,
                    output,
                });
            });
            running.insert(
                (assignment.partition, assignment.attempt),
                (handle.abort_handle(), Instant::now()),
            );
        }
        if scheduler.is_finished() {
            break;
        }
        let result = tokio::select! {
            result = results_rx.recv() => result,
            _ = cancel.cancelled() => {
                for (handle, _) in running.values() {
                    handle.abort();
                }
                return Err(JobError::Cancelled);
            }
        };
        let Some(result) = result else { break };
        let attempt_started = running
            .remove(&(result.partition, result.attempt))
            .map(|(_, started)| started);
        let host_name = targets[result.host].host.clone();
        let (end, output) = match result.output {
            Ok(output) => (AttemptEnd::Succeeded, Some(output)),
            Err(end) => (end, None),
        };
        if let AttemptEnd::HostLost(reason) = &end
            && !hosts_lost.contains(&host_name)
        {
            tracing::warn!(host = %host_name, %reason, "mapreduce: host lost");
            hosts_lost.push(host_name.clone());
        }
        let failed_before = scheduler.failed();
        match scheduler.finish(result.partition, result.attempt, result.host, end.clone()) {
            Verdict::Commit { cancel } => {
                outputs[result.partition] = output;
                durations[result.partition] = attempt_started
                    .map(|started| started.elapsed().as_millis() as u64)
                    .unwrap_or(0);
                for (attempt, _) in cancel {
                    // Dropping the call cancels the losing attempt on its host.
                    if let Some((handle, _)) = running.remove(&(result.partition, attempt)) {
                        handle.abort();
                    }
                }
            }
            Verdict::Duplicate => {
                if output.is_some() {
                    duplicates += 1;
                }
            }
            Verdict::Failed => {
                if let AttemptEnd::Failed(error) = &end {
                    tracing::debug!(
                        partition = result.partition,
                        attempt = result.attempt,
                        host = %host_name,
                        %error,
                        "mapreduce: attempt failed"
                    );
                }
            }
        }
        let (done, failed) = (scheduler.done(), scheduler.failed());
        if done + failed > 0 || failed != failed_before {
            report(
                format!(
                    "{done}/{total} partitions done, {failed} failed, {} running",
                    scheduler.running()
                ),
                done + failed,
                total,
            );
        }
    }
    for (handle, _) in running.values() {
        handle.abort();
    }
    let map_ms = map_started.elapsed().as_millis() as u64;

    let mut failed_partitions = Vec::new();
    let mut committed = Vec::new();
    for (partition, input) in inputs.iter().enumerate() {
        let described = match input {
            PartitionInput::File(path) => {
                format!("{}:{path}", targets[scheduler.home(partition)].host)
            }
            PartitionInput::Shipped(range) => format!("bytes {}..{}", range.start, range.end),
        };
        if let Some((host, attempt)) = scheduler.committed(partition) {
            committed.push(PartitionDone {
                partition,
                host: targets[host].host.clone(),
                attempt,
                duration_ms: durations[partition],
            });
        } else if let Some((host, error)) = scheduler.final_error(partition) {
            failed_partitions.push(PartitionFailure {
                partition,
                input: described,
                host: host.map(|h| targets[h].host.clone()),
                attempts: scheduler.attempts(partition),
                error: error.to_string(),
            });
        }
    }

    // Reduce, in partition order so the result is deterministic.
    let reduce_started = Instant::now();
    let kept: Vec<&str> = outputs.iter().flatten().map(String::as_str).collect();
    let reduced = match &plan.reduce {
        ReduceStep::Builtin(builtin) => {
            data::builtin(*builtin, &kept).map_err(|e| format!("reduce {builtin:?}: {e}"))
        }
        ReduceStep::Command(command) => {
            let stdin = kept.concat();
            let id = format!("{job_id}/reduce");
            match &plan.reduce_on {
                None => {
                    side.run(
                        id,
                        command,
                        Some(stdin),
                        plan.attempt_timeout,
                        plan.max_output_bytes,
                    )
                    .await
                }
                Some(host) => {
                    let agent_id = net
                        .peers()
                        .into_iter()
                        .find(|p| crate::fleet::remote::host_facts(p).name == *host)
                        .map(|p| p.agent_id);
                    match agent_id {
                        None => Err(format!("reduce host {host:?} is not connected")),
                        Some(agent_id) => call_exec(
                            &client,
                            Some(&agent_id),
                            id,
                            command.exec_args(
                                Some(stdin),
                                plan.attempt_timeout,
                                plan.max_output_bytes,
                            ),
                            plan.attempt_timeout + CALL_MARGIN,
                        )
                        .await
                        .map_err(|end| match end {
                            AttemptEnd::Failed(e) | AttemptEnd::HostLost(e) => {
                                format!("reduce on {host}: {e}")
                            }
                            AttemptEnd::Succeeded => String::new(),
                        }),
                    }
                }
            }
        }
    };
    let reduce_ms = reduce_started.elapsed().as_millis() as u64;
    let (result, reduce_error) = match reduced {
        Ok(text) => (Some(text), None),
        Err(error) => (None, Some(error)),
    };
    let done = scheduler.done();
    report(
        format!("finished: {done}/{total} partitions done"),
        total,
        total,
    );
    Ok(JobReport {
        job_id,
        name: plan.name.clone(),
        target: plan.target.clone(),
        hosts: targets.iter().map(|t| t.host.clone()).collect(),
        partitions: total,
        done,
        failed: scheduler.failed(),
        complete: done == total && reduce_error.is_none() && host_problems.is_empty(),
        result,
        reduce_error,
        failed_partitions,
        host_problems,
        attempts,
        backups,
        duplicates_ignored: duplicates,
        hosts_lost,
        input_bytes: text.len() as u64,
        shipped_bytes,
        map_ms,
        reduce_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        committed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(line: &str) -> std::process::Output {
        std::process::Command::new("/bin/sh")
            .args(["-c", line])
            .output()
            .unwrap()
    }

    #[test]
    fn a_hosts_file_reaches_the_map_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's a $file.txt");
        std::fs::write(&path, "one two\nthree\n").unwrap();
        let out = sh(&feed_file(path.to_str().unwrap(), "wc -w"));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
        // A file that is gone fails the attempt, with its name, instead of mapping nothing.
        let missing = dir.path().join("gone $x.txt");
        let out = sh(&feed_file(missing.to_str().unwrap(), "wc -w"));
        assert_eq!(out.status.code(), Some(66));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("gone $x.txt"),
            "{out:?}"
        );
    }

    #[test]
    fn exec_outcomes_become_output_or_a_reason() {
        let result = |exit_code: Option<i32>, truncated: bool| {
            Outcome::ok(&ExecResult {
                exit_code,
                signal: None,
                stdout: "out".into(),
                stderr: "boom".into(),
                stdout_encoding: Default::default(),
                stderr_encoding: Default::default(),
                truncated,
                timed_out: false,
                cancelled: false,
                duration_ms: 1,
                sandbox: None,
            })
        };
        assert_eq!(exec_output(result(Some(0), false)), Ok("out".into()));
        assert_eq!(
            exec_output(result(Some(2), false)),
            Err("exit 2: boom".into())
        );
        assert!(
            exec_output(result(Some(0), true))
                .unwrap_err()
                .contains("cut")
        );
        let refused = Outcome::Refused {
            reason: "plan mode".into(),
        };
        assert_eq!(
            exec_output(refused),
            Err("refused by policy: plan mode".into())
        );
    }
}
