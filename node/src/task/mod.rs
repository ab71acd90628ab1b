//! Autonomous tasks: a prompt handed to this host's own AI CLI (Claude Code, opencode, Codex),
//! run as a process with the host's credentials, its events parsed into one model
//! (`events`, per provider in `claude`, `opencode`, `codex`) and kept as a record in the store.
//!
//! A task is an `exec` in disguise: the `task_dispatch` operation passes the same gate (the
//! mode, the cwd beneath a root, the command lists for the provider's program) and needs the
//! `task` capability from a peer; the host's mode becomes the provider's own permission mode,
//! since the AI CLI must reach its API and write its session files and so cannot run inside
//! plan mode's read-only sandbox. Limits per host (`[tasks]` in `config.toml`): tasks at once,
//! wall time, turns and budget.
//!
//! Journaled like other side effects: the record is written `running` before the process
//! starts and again once the provider names its session; a record still `running` when the
//! store is next opened (the node stopped) reads `interrupted`, with that session id to resume
//! it by, and is never run again.

mod claude;
mod codex;
pub(crate) mod events;
mod opencode;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use remote_agents_ops::{TaskEvent, TaskProvider, TaskState, TaskStatus, TaskUsage};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::journal::{Store, now_ms};
use crate::policy::Mode;
use events::{Fold, Stop};

/// Task id → the JSON of a [`StoredTask`]. Ids start with a millisecond timestamp, so key order
/// is start order.
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");

/// A line of a provider's stream longer than this is skipped (and counted), not parsed.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Bytes of the provider's stderr kept for the error of a task that failed without a message.
const STDERR_KEPT: usize = 64 * 1024;
/// What `interrupted` tasks read as.
const INTERRUPTED: &str = "the node stopped while the task ran; it was not run again (continue \
                           it with task_dispatch resume=<session_id> where there is one)";

/// The limits of autonomous tasks on one host (`[tasks]` in `config.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskLimits {
    /// Tasks running at once; a dispatch beyond it is refused.
    pub max_concurrent: usize,
    /// Wall time of one task at most, in seconds.
    pub max_wall_secs: u64,
    /// Turns of one task at most.
    pub max_turns: Option<u32>,
    /// US dollars one task may cost at most, as the provider reports cost.
    pub max_budget_usd: Option<f64>,
    /// Where the provider programs are looked up (a `PATH`-style list); default the node's
    /// own `PATH` (a service's `PATH` is often short: point this at where `claude` lives).
    pub path: Option<String>,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            max_concurrent: 4,
            max_wall_secs: 4 * 3600,
            max_turns: None,
            max_budget_usd: None,
            path: None,
        }
    }
}

impl TaskLimits {
    /// One line for `remote-agents config`.
    pub fn describe(&self) -> String {
        format!(
            "{} at once, {}s, {} turns, {} budget",
            self.max_concurrent,
            self.max_wall_secs,
            self.max_turns
                .map_or("unlimited".to_string(), |t| t.to_string()),
            self.max_budget_usd
                .map_or("no".to_string(), |b| format!("${b}"))
        )
    }
}

/// What the gate approved: everything the provider is started with.
#[derive(Debug, Clone)]
pub struct Launch {
    pub provider: TaskProvider,
    pub prompt: String,
    pub cwd: PathBuf,
    pub model: Option<String>,
    pub max_turns: Option<u32>,
    pub budget_usd: Option<f64>,
    pub timeout: Duration,
    pub resume: Option<String>,
    /// The host's mode, mapped onto the provider's permissions.
    pub mode: Mode,
    pub allowed_tools: Vec<String>,
    /// The caller's disallowed tools (Claude Code rules).
    pub disallowed_tools: Vec<String>,
    /// The host's command deny globs (empty in bypass mode, like the gate's).
    pub deny_commands: Vec<String>,
    /// Absolute path globs the provider may not read or edit: the host's deny list (not in
    /// bypass mode) and the node's own protected files (always).
    pub deny_paths: Vec<String>,
}

/// How a provider is started.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderCommand {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The prompt, where the provider reads it from stdin.
    pub stdin: Option<String>,
}

/// The command that runs `launch` with its provider.
pub fn command(launch: &Launch) -> ProviderCommand {
    match launch.provider {
        TaskProvider::Claude => claude::command(launch),
        TaskProvider::Opencode => opencode::command(launch),
        TaskProvider::Codex => codex::command(launch),
    }
}

/// How the mode was mapped, for the record: e.g. `plan (claude --permission-mode plan)`.
fn mode_mapping(launch: &Launch) -> String {
    let mapped = match (launch.provider, launch.mode) {
        (TaskProvider::Claude, Mode::Plan) => "--permission-mode plan",
        (TaskProvider::Claude, Mode::Edit) => "--permission-mode acceptEdits",
        (TaskProvider::Claude, Mode::Bypass) => "--permission-mode bypassPermissions",
        (TaskProvider::Codex, Mode::Plan) => "--sandbox read-only",
        (TaskProvider::Codex, Mode::Edit) => "--sandbox workspace-write",
        (TaskProvider::Codex, Mode::Bypass) => "--dangerously-bypass-approvals-and-sandbox",
        (TaskProvider::Opencode, Mode::Plan) => "--agent plan, edit and bash denied",
        (TaskProvider::Opencode, Mode::Edit) => "edit allowed, bash but the deny list",
        (TaskProvider::Opencode, Mode::Bypass) => "--auto",
        (_, Mode::Disabled) => "refused",
    };
    format!("{} ({} {mapped})", launch.mode, launch.provider)
}

/// One provider's stream parser.
enum Parser {
    Claude(claude::Parser),
    Opencode(opencode::Parser),
    Codex(codex::Parser),
}

impl Parser {
    fn new(provider: TaskProvider) -> Self {
        match provider {
            TaskProvider::Claude => Parser::Claude(claude::Parser::default()),
            TaskProvider::Opencode => Parser::Opencode(opencode::Parser),
            TaskProvider::Codex => Parser::Codex(codex::Parser),
        }
    }

    fn parse(&mut self, line: &serde_json::Value) -> Vec<TaskEvent> {
        match self {
            Parser::Claude(p) => p.parse(line),
            Parser::Opencode(p) => p.parse(line),
            Parser::Codex(p) => p.parse(line),
        }
    }
}

/// Errors of the task store.
#[derive(Debug, thiserror::Error)]
pub enum TaskStoreError {
    #[error("task store database error")]
    Db(#[from] Box<redb::Error>),
    #[error("corrupt task record")]
    Json(#[from] serde_json::Error),
}

fn db<E: Into<redb::Error>>(e: E) -> TaskStoreError {
    TaskStoreError::Db(Box::new(e.into()))
}

/// A task as stored: its record and its transcript.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTask {
    status: TaskStatus,
    transcript: Vec<TaskEvent>,
}

/// A running task: its fold (shared with its driver) and how to stop it.
struct Running {
    fold: Arc<Mutex<Fold>>,
    cancel: CancellationToken,
}

/// A progress report per turn: (turns so far, the turn limit, a line).
pub type TaskProgress = Arc<dyn Fn(u32, Option<u32>, String) + Send + Sync>;

/// This host's tasks: the running ones and the store of all.
pub struct Tasks {
    store: Arc<Store>,
    limits: TaskLimits,
    running: Mutex<HashMap<String, Running>>,
    /// Bumped whenever a task ends, for `wait`.
    ended: tokio::sync::watch::Sender<u64>,
}

impl Tasks {
    /// Opens the task store; tasks an earlier life of the node left `running` now read
    /// `interrupted`.
    pub fn open(store: Arc<Store>, limits: TaskLimits) -> Result<Arc<Self>, TaskStoreError> {
        let tasks = Tasks {
            store,
            limits,
            running: Mutex::new(HashMap::new()),
            ended: tokio::sync::watch::channel(0).0,
        };
        tasks.settle_interrupted()?;
        Ok(Arc::new(tasks))
    }

    pub fn limits(&self) -> &TaskLimits {
        &self.limits
    }

    fn settle_interrupted(&self) -> Result<(), TaskStoreError> {
        let tx = self.store.database().begin_write().map_err(db)?;
        {
            let mut table = tx.open_table(TASKS).map_err(db)?;
            let mut interrupted = Vec::new();
            for item in table.iter().map_err(db)? {
                let (key, value) = item.map_err(db)?;
                let Ok(mut stored) = serde_json::from_slice::<StoredTask>(value.value()) else {
                    continue;
                };
                if stored.status.state == TaskState::Running {
                    stored.status.state = TaskState::Interrupted;
                    stored.status.error = Some(INTERRUPTED.into());
                    interrupted.push((key.value().to_string(), serde_json::to_vec(&stored)?));
                }
            }
            for (key, bytes) in interrupted {
                tracing::warn!(task_id = %key, "a task was interrupted by the node stopping");
                table.insert(key.as_str(), bytes.as_slice()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn save(&self, status: &TaskStatus, transcript: &[TaskEvent]) -> Result<(), TaskStoreError> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            status: &'a TaskStatus,
            transcript: &'a [TaskEvent],
        }
        let bytes = serde_json::to_vec(&Borrowed { status, transcript })?;
        let tx = self.store.database().begin_write().map_err(db)?;
        {
            let mut table = tx.open_table(TASKS).map_err(db)?;
            table
                .insert(status.task_id.as_str(), bytes.as_slice())
                .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    fn load(&self, task_id: &str) -> Result<Option<StoredTask>, TaskStoreError> {
        let tx = self.store.database().begin_read().map_err(db)?;
        let table = match tx.open_table(TASKS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db(e)),
        };
        match table.get(task_id).map_err(db)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
            None => Ok(None),
        }
    }

    /// One task's record (with its transcript when asked), running or ended.
    pub fn get(&self, task_id: &str, transcript: bool) -> Result<Option<TaskStatus>, String> {
        if let Some(running) = self.lock().get(task_id) {
            let fold = running.fold.lock().unwrap_or_else(|e| e.into_inner());
            let mut status = fold.status.clone();
            status.duration_ms = now_ms().saturating_sub(status.started_at_ms);
            if transcript {
                status.transcript = Some(fold.transcript.clone());
            }
            return Ok(Some(status));
        }
        let stored = self.load(task_id).map_err(|e| e.to_string())?;
        Ok(stored.map(|stored| {
            let mut status = stored.status;
            if transcript {
                status.transcript = Some(stored.transcript);
            }
            status
        }))
    }

    /// The record once the task ends, or as it stands after `wait`.
    pub async fn wait(
        &self,
        task_id: &str,
        wait: Duration,
        transcript: bool,
        cancel: &CancellationToken,
    ) -> Result<Option<TaskStatus>, String> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut ended = self.ended.subscribe();
        loop {
            let status = self.get(task_id, transcript)?;
            match &status {
                Some(s) if s.state == TaskState::Running => {}
                _ => return Ok(status),
            }
            tokio::select! {
                changed = ended.changed() => if changed.is_err() { return Ok(status) },
                _ = tokio::time::sleep_until(deadline) => return Ok(status),
                _ = cancel.cancelled() => return Ok(status),
            }
        }
    }

    /// The newest `limit` tasks, newest first, without transcripts.
    pub fn list(&self, limit: usize) -> Result<Vec<TaskStatus>, String> {
        let stored: Vec<TaskStatus> = (|| -> Result<Vec<TaskStatus>, TaskStoreError> {
            let tx = self.store.database().begin_read().map_err(db)?;
            let table = match tx.open_table(TASKS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(db(e)),
            };
            let mut list = Vec::new();
            for item in table.iter().map_err(db)?.rev().take(limit) {
                let (_, value) = item.map_err(db)?;
                match serde_json::from_slice::<StoredTask>(value.value()) {
                    Ok(stored) => list.push(stored.status),
                    Err(e) => tracing::warn!("skipping a corrupt task record: {e}"),
                }
            }
            Ok(list)
        })()
        .map_err(|e| e.to_string())?;
        // A running task's stored record is from its start: show it as it stands.
        Ok(stored
            .into_iter()
            .map(|s| match self.get(&s.task_id, false) {
                Ok(Some(live)) => live,
                _ => s,
            })
            .collect())
    }

    /// Stops a running task (its provider's process group is killed) and answers with its
    /// record once it reads `cancelled`.
    pub async fn cancel(&self, task_id: &str) -> Result<TaskStatus, String> {
        // The guard is let go before `get` takes the lock again.
        let running = self.lock().get(task_id).map(|r| r.cancel.clone());
        let token = match running {
            Some(token) => token,
            None => {
                return match self.get(task_id, false)? {
                    Some(status) => Err(format!(
                        "task `{task_id}` already ended ({})",
                        status.state.as_str()
                    )),
                    None => Err(format!(
                        "no task `{task_id}` on this host; task_list shows them"
                    )),
                };
            }
        };
        token.cancel();
        match self
            .wait(
                task_id,
                Duration::from_secs(30),
                false,
                &CancellationToken::new(),
            )
            .await?
        {
            Some(status) => Ok(status),
            None => Err("the task's record was lost".into()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `launch` as a task of this host (`agent_id`): its record is durable before the
    /// provider starts, and the provider runs until it ends, a limit stops it, or `cancel`
    /// fires. Fails, starting nothing, when the host is at its limit of tasks or the provider
    /// is not installed.
    pub fn start(
        self: &Arc<Self>,
        agent_id: &str,
        launch: Launch,
        cancel: CancellationToken,
        progress: Option<TaskProgress>,
    ) -> Result<TaskStatus, String> {
        let program = find_program(launch.provider.program(), self.limits.path.as_deref())
            .ok_or_else(|| {
                format!(
                    "provider {0} is not installed on this host: no `{0}` program on its PATH{1} \
                     (install it, log it in, or set `[tasks] path` in the node's config.toml)",
                    launch.provider.program(),
                    match &self.limits.path {
                        Some(path) => format!(" ({path})"),
                        None => String::new(),
                    }
                )
            })?;
        let task_id = format!(
            "{:013}-{}",
            now_ms(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let status = TaskStatus {
            task_id: task_id.clone(),
            agent_id: agent_id.to_string(),
            provider: launch.provider,
            state: TaskState::Running,
            mode: mode_mapping(&launch),
            session_id: launch.resume.clone(),
            answer: None,
            error: None,
            turns: 0,
            usage: TaskUsage::default(),
            duration_ms: 0,
            started_at_ms: now_ms(),
            finished_at_ms: None,
            prompt: remote_agents_ops::prompt_summary(&launch.prompt, 120),
            transcript_events: 0,
            transcript_bytes: 0,
            skipped_lines: 0,
            transcript: None,
        };
        let fold = Arc::new(Mutex::new(Fold::new(status.clone())));
        let running = {
            let mut running = self.lock();
            if running.len() >= self.limits.max_concurrent {
                return Err(format!(
                    "this host runs {} tasks already, its limit (`[tasks] max_concurrent`); wait \
                     for one to end or cancel one",
                    running.len()
                ));
            }
            running.insert(
                task_id.clone(),
                Running {
                    fold: fold.clone(),
                    cancel: cancel.clone(),
                },
            );
            running.len()
        };
        // Durable before the side effect: a crash from here on reads `interrupted`.
        if let Err(e) = self.save(&status, &[]) {
            self.lock().remove(&task_id);
            return Err(format!("task store unavailable, nothing ran: {e}"));
        }
        tracing::info!(%task_id, provider = %launch.provider, running, "task started");
        let tasks = self.clone();
        crate::runtime::spawn(async move {
            tasks.drive(program, launch, fold, cancel, progress).await;
        });
        Ok(status)
    }

    /// Runs the provider to its end and records how it ended.
    async fn drive(
        self: Arc<Self>,
        program: PathBuf,
        launch: Launch,
        fold: Arc<Mutex<Fold>>,
        cancel: CancellationToken,
        progress: Option<TaskProgress>,
    ) {
        let started = Instant::now();
        let ended = run_provider(&program, &launch, &fold, &cancel, progress, |status, t| {
            if let Err(e) = self.save(status, t) {
                tracing::warn!(task_id = %status.task_id, "cannot record a task's session: {e}");
            }
        })
        .await;
        let (status, transcript) = {
            let mut fold = fold.lock().unwrap_or_else(|e| e.into_inner());
            let provider = launch.provider.as_str();
            match ended {
                Ok(end) => fold.finish(end.exit_ok, &end.exit, end.stop, &end.stderr, provider),
                Err(error) => {
                    fold.finish(false, "could not start", None, &error, provider);
                }
            }
            fold.status.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(0);
            fold.status.finished_at_ms = Some(now_ms());
            (fold.status.clone(), std::mem::take(&mut fold.transcript))
        };
        if let Err(e) = self.save(&status, &transcript) {
            tracing::error!(task_id = %status.task_id, "cannot record a finished task: {e}");
        }
        fold.lock().unwrap_or_else(|e| e.into_inner()).transcript = transcript;
        self.lock().remove(&status.task_id);
        self.ended.send_modify(|n| *n += 1);
        tracing::info!(task_id = %status.task_id, state = status.state.as_str(), "task ended");
    }
}

/// How a provider's process ended.
struct End {
    exit_ok: bool,
    exit: String,
    stop: Option<Stop>,
    stderr: String,
}

/// Starts the provider, feeds its stream into `fold`, and stops it at a limit or on `cancel`
/// by killing its process group. `session_known` is called when the provider names its
/// session, so that the record carries it should the node stop.
async fn run_provider(
    program: &Path,
    launch: &Launch,
    fold: &Mutex<Fold>,
    cancel: &CancellationToken,
    progress: Option<TaskProgress>,
    session_known: impl Fn(&TaskStatus, &[TaskEvent]),
) -> Result<End, String> {
    let spec = command(launch);
    let mut process = tokio::process::Command::new(program);
    process
        .args(&spec.argv[1..])
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = process
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", program.display()))?;
    let pid = child.id();
    if let (Some(text), Some(mut stdin)) = (spec.stdin, child.stdin.take()) {
        crate::runtime::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
        });
    }
    let stderr = child.stderr.take().map(|mut pipe| {
        crate::runtime::spawn(async move {
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
            }
            // Colour codes (opencode prints its errors in red) would reach the caller's JSON.
            anstream::adapter::strip_str(&String::from_utf8_lossy(&kept)).to_string()
        })
    });
    let stdout = child
        .stdout
        .take()
        .ok_or("the provider's stdout was not captured")?;
    let mut lines = BufReader::new(stdout);
    let mut parser = Parser::new(launch.provider);
    let max_turns = launch.max_turns;
    let deadline = tokio::time::sleep(launch.timeout);
    tokio::pin!(deadline);
    let mut stop = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut capped = (&mut lines).take(MAX_LINE as u64 + 1);
        let read = tokio::select! {
            read = capped.read_until(b'\n', &mut line) => read,
            _ = &mut deadline => { stop = Some(Stop::TimedOut(launch.timeout)); break; }
            _ = cancel.cancelled() => { stop = Some(Stop::Cancelled); break; }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let parsed = (line.len() <= MAX_LINE)
            .then(|| serde_json::from_slice::<serde_json::Value>(text).ok())
            .flatten();
        let Some(value) = parsed else {
            // A malformed line (or one past the cap) is skipped and counted, never fatal.
            fold.lock()
                .unwrap_or_else(|e| e.into_inner())
                .status
                .skipped_lines += 1;
            if line.len() > MAX_LINE {
                // The rest of the over-long line follows: drop it up to its newline.
                let _ = drain_line(&mut lines).await;
            }
            continue;
        };
        let mut fold = fold.lock().unwrap_or_else(|e| e.into_inner());
        for event in parser.parse(&value) {
            let turn = matches!(event, TaskEvent::Turn);
            if fold.apply(event) {
                session_known(&fold.status, &fold.transcript);
            }
            if turn {
                if let Some(progress) = &progress {
                    progress(
                        fold.status.turns,
                        max_turns,
                        format!("{} turn {}", launch.provider, fold.status.turns),
                    );
                }
                if let Some(limit) = max_turns
                    && fold.status.turns > limit
                {
                    stop = Some(Stop::TooManyTurns(limit));
                }
            }
        }
        if let (Some(budget), Some(cost)) = (launch.budget_usd, fold.cost())
            && cost > budget
            && stop.is_none()
        {
            stop = Some(Stop::OverBudget(budget));
        }
        if stop.is_some() {
            // Claude Code ends at its own --max-turns with a result; a provider the node
            // stops counts its turns past the limit.
            fold.status.turns = fold.status.turns.min(max_turns.unwrap_or(u32::MAX));
            break;
        }
    }
    if stop.is_some() {
        crate::exec::kill_group(pid);
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    // Whatever the provider started and left behind goes with it.
    crate::exec::kill_group(pid);
    let stderr = match stderr {
        Some(handle) => tokio::time::timeout(Duration::from_secs(2), handle)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => String::new(),
    };
    use std::os::unix::process::ExitStatusExt;
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_string(),
    };
    Ok(End {
        exit_ok: status.success(),
        exit,
        stop,
        stderr,
    })
}

/// Reads and drops bytes up to the next newline.
async fn drain_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// The program `name` on `path` (the node's `PATH` when none is given), if it is there and
/// executable.
pub fn find_program(name: &str, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path: OsString = match path {
        Some(path) => path.into(),
        None => std::env::var_os("PATH")?,
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests;
