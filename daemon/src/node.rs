//! The node: wires settings, policy, store, facts and executors together and handles one
//! `ops::Envelope` at a time — journal (received → started → finished), policy gate, executor,
//! audit. Requests naming another `agent_id` are forwarded through `Peers` (the net RPC) and run
//! on that peer under its own policy; requests arriving from peers enter through
//! `handle_remote` and take exactly the same local path.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Component, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::AuditRecord;
use crate::config::Settings;
use crate::exec::{self, ExecSpec};
use crate::facts::Facts;
use crate::identity::Identity;
use crate::journal::{JournalEntry, Stage, Store, StoreError};
use crate::ops::{
    AgentSummary, BackupRecord, BackupsResult, Envelope, InfoResult, ListAgentsResult,
    ModeOverride, Outcome, Reply, Request, SetModeArgs, SetModeResult, now_ms,
};
use crate::policy::{Access, Intent, Mode, Policy, PolicyError, Refusal, Resolved};
use crate::search;

/// Progress callback: (progress, total, message).
pub type ProgressFn = Arc<dyn Fn(f64, Option<f64>, String) + Send + Sync>;

/// Per-call context from the caller: cancellation and an optional progress sink.
#[derive(Clone, Default)]
pub struct CallContext {
    pub cancel: CancellationToken,
    pub progress: Option<ProgressFn>,
}

/// The other nodes, as seen through the relay. Implemented over `daemon::net` when a relay is
/// configured; absent when the node is local-only.
pub trait Peers: Send + Sync {
    /// Sends an encoded `Envelope` to `agent_id` and returns its encoded `Reply`.
    fn call<'a>(
        &'a self,
        agent_id: &'a str,
        envelope: Vec<u8>,
        deadline: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
    /// The peers currently known, with what they advertised.
    fn list(&self) -> Vec<AgentSummary>;
}

/// Errors opening a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data directory {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}

const OVERRIDE_KEY: &str = "mode_override";
/// Default lifetime of a `set_mode` override.
const DEFAULT_OVERRIDE_TTL: Duration = Duration::from_secs(3600);
/// How long a forwarded request may take beyond its own timeout.
const FORWARD_SLACK: Duration = Duration::from_secs(30);

/// One node.
pub struct Node {
    identity: Identity,
    settings: Settings,
    policy: Policy,
    store: Arc<Store>,
    facts: Facts,
    agent_id: String,
    in_flight: Mutex<HashSet<String>>,
    peers: Mutex<Option<Arc<dyn Peers>>>,
    /// The relay connection, for fleet fan-outs issued from this node (MCP `fleet_*` tools).
    net: Mutex<Option<crate::net::Net>>,
}

/// What the gate approved, ready to run.
enum Prepared {
    Exec(ExecSpec),
    Read(Resolved, u64, Option<u64>),
    Write {
        target: WriteTarget,
        bytes: Vec<u8>,
        backup: bool,
    },
    ListDir(Resolved),
    Stat(Resolved, PathBuf),
    Search(Vec<PathBuf>, search::Query),
    GitStatus(PathBuf),
    GitPull(PathBuf, Option<String>, Option<String>),
    GitCommit(PathBuf, String, Option<Vec<String>>),
    GitPush(PathBuf, Option<String>, Option<String>),
    Info,
    ListAgents,
    SetMode(SetModeArgs),
    Backups(Option<PathBuf>),
}

enum WriteTarget {
    Existing(Resolved),
    /// Parent folders must be created first beneath `ancestor`.
    Create {
        ancestor: Resolved,
        missing: PathBuf,
        path: PathBuf,
    },
}

impl Node {
    /// Opens the node's data directory, store and policy.
    pub fn open(settings: Settings) -> Result<Arc<Self>, NodeError> {
        let data_dir = settings.data_dir.value.clone();
        crate::config::ensure_data_dir(&data_dir).map_err(|source| NodeError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let store = Store::open(&data_dir)?;
        let policy = Policy::new(&settings.policy.value, &data_dir)?;
        // The agent id is the peer id: a hash of the node's persistent public key.
        let identity = Identity::load_or_create(&data_dir)?;
        let agent_id = identity.agent_id();
        Ok(Arc::new(Node {
            identity,
            settings,
            policy,
            store: Arc::new(store),
            facts: Facts::gather(),
            agent_id,
            in_flight: Mutex::new(HashSet::new()),
            peers: Mutex::new(None),
            net: Mutex::new(None),
        }))
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Attaches the peer RPC once the connection manager is up.
    pub fn set_peers(&self, peers: Arc<dyn Peers>) {
        *self.peers.lock().unwrap_or_else(|e| e.into_inner()) = Some(peers);
    }

    /// The relay connection, when the node has one.
    pub fn net(&self) -> Option<crate::net::Net> {
        self.net.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn peers(&self) -> Option<Arc<dyn Peers>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The live override, if it has not expired.
    pub fn mode_override(&self) -> Option<ModeOverride> {
        self.store
            .get_meta::<ModeOverride>(OVERRIDE_KEY)
            .ok()
            .flatten()
            .filter(|o| o.expires_at_ms > now_ms())
    }

    /// The mode requests are judged by right now.
    pub fn effective_mode(&self) -> Mode {
        let configured = self.settings.mode.value;
        if configured == Mode::Disabled {
            return Mode::Disabled;
        }
        self.mode_override().map(|o| o.mode).unwrap_or(configured)
    }

    fn is_local(&self, agent_id: &str) -> bool {
        agent_id == self.agent_id || agent_id == self.settings.name.value
    }

    /// Handles a request from the local MCP server or CLI: forwards it when it names a peer.
    pub async fn handle(self: &Arc<Self>, envelope: Envelope, ctx: CallContext) -> Outcome {
        if let Some(agent) = envelope.request.agent_id()
            && !self.is_local(agent)
        {
            return self.forward(agent.to_string(), envelope, ctx).await;
        }
        self.handle_local(envelope, ctx).await
    }

    /// Handles an encoded `Envelope` from an authenticated peer and returns the encoded `Reply`.
    /// `peer` is the peer's authenticated id; it replaces whatever caller the envelope claims.
    pub async fn handle_remote(
        self: &Arc<Self>,
        peer: &str,
        bytes: &[u8],
        cancel: CancellationToken,
    ) -> Vec<u8> {
        let reply = match serde_json::from_slice::<Envelope>(bytes) {
            Ok(mut envelope) => {
                envelope.caller = format!("peer:{peer}");
                envelope.request = envelope.request.without_agent_id();
                let id = envelope.id.clone();
                let outcome = if self.settings.no_agent.value {
                    Outcome::Refused {
                        reason: "this node runs with --no-agent and accepts no commands".into(),
                    }
                } else {
                    let ctx = CallContext {
                        cancel,
                        progress: None,
                    };
                    self.handle_local(envelope, ctx).await
                };
                Reply { id, outcome }
            }
            Err(e) => Reply {
                id: String::new(),
                outcome: Outcome::failed(format!("malformed request: {e}")),
            },
        };
        serde_json::to_vec(&reply).unwrap_or_default()
    }

    async fn forward(
        self: &Arc<Self>,
        agent: String,
        envelope: Envelope,
        ctx: CallContext,
    ) -> Outcome {
        let Some(peers) = self.peers() else {
            return Outcome::failed(format!(
                "no relay connection: agent `{agent}` cannot be reached because this node runs \
                 local-only (no --relay configured); omit agent_id to act on this node, or start \
                 it with --relay, --room and --token"
            ));
        };
        let timeout = match &envelope.request {
            Request::Exec(a) => a
                .timeout_secs
                .map(Duration::from_secs_f64)
                .unwrap_or(exec::DEFAULT_TIMEOUT),
            _ => Duration::from_secs(60),
        } + FORWARD_SLACK;
        let bytes = match serde_json::to_vec(&envelope) {
            Ok(b) => b,
            Err(e) => return Outcome::failed(format!("cannot encode request: {e}")),
        };
        let call = peers.call(&agent, bytes, timeout);
        let reply = tokio::select! {
            r = call => r,
            _ = ctx.cancel.cancelled() => return Outcome::failed(
                "cancelled before the peer answered; the peer may still finish the request"),
        };
        match reply {
            Ok(bytes) => match serde_json::from_slice::<Reply>(&bytes) {
                Ok(reply) => reply.outcome,
                Err(e) => Outcome::failed(format!("malformed reply from `{agent}`: {e}")),
            },
            Err(e) => Outcome::failed(format!("cannot reach agent `{agent}`: {e}")),
        }
    }

    fn audit(&self, entry: &JournalEntry, decision: String, outcome: &Outcome) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at_ms: now_ms(),
            request_id: entry.id.clone(),
            caller: entry.caller.clone(),
            op: entry.op.clone(),
            summary: entry.summary.clone(),
            decision,
            result: outcome.label().to_string(),
            detail: match outcome {
                Outcome::Failed { error } => Some(error.clone()),
                Outcome::OutcomeUnknown { reason } => Some(reason.clone()),
                Outcome::Ok { result } => result.get("exit_code").map(|c| format!("exit_code {c}")),
                Outcome::Refused { .. } => None,
            },
        }
    }

    /// Runs a request on this node: journal, gate, executor, audit.
    pub async fn handle_local(self: &Arc<Self>, envelope: Envelope, ctx: CallContext) -> Outcome {
        let Envelope {
            id,
            caller,
            request,
        } = envelope;
        match self.store.lookup(&id) {
            Ok(Some(entry)) => {
                return match entry.outcome {
                    Some(outcome) => outcome,
                    None => Outcome::failed(format!(
                        "request {id} is already running; wait for it instead of resending"
                    )),
                };
            }
            Ok(None) => {}
            Err(e) => return Outcome::failed(format!("journal unavailable: {e}")),
        }
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if !in_flight.insert(id.clone()) {
                return Outcome::failed(format!(
                    "request {id} is already running; wait for it instead of resending"
                ));
            }
        }
        let outcome = self.run_journaled(&id, caller, request, ctx).await;
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        outcome
    }

    async fn run_journaled(
        self: &Arc<Self>,
        id: &str,
        caller: String,
        request: Request,
        ctx: CallContext,
    ) -> Outcome {
        let mut entry = JournalEntry {
            id: id.to_string(),
            caller,
            op: request.name().to_string(),
            summary: request.summary(),
            stage: Stage::Received,
            received_at_ms: now_ms(),
            outcome: None,
        };
        // Reads are audited when they finish but need no durable received/started records: a
        // crash mid-read leaves nothing to report as `outcome_unknown`, and rerunning is
        // harmless. This saves two fsync'd commits per read.
        let journal_stages = !request.is_read_only();
        if journal_stages && let Err(e) = self.store.record(&entry) {
            return Outcome::failed(format!("journal unavailable, nothing ran: {e}"));
        }
        let mode = self.effective_mode();
        let prepared = self.prepare(mode, request);
        let (decision, prepared) = match prepared {
            Ok(p) => (format!("allowed (mode {mode})"), p),
            Err(refusal) => {
                let outcome = Outcome::Refused {
                    reason: refusal.reason.clone(),
                };
                entry.stage = Stage::Finished;
                entry.outcome = Some(outcome.clone());
                let audit = self.audit(&entry, format!("refused: {}", refusal.reason), &outcome);
                if let Err(e) = self.store.finish(&entry, audit) {
                    tracing::error!("cannot journal a refusal: {e}");
                }
                return outcome;
            }
        };
        entry.stage = Stage::Started;
        if journal_stages && let Err(e) = self.store.record(&entry) {
            return Outcome::failed(format!("journal unavailable, nothing ran: {e}"));
        }
        let outcome = self.execute(id, prepared, ctx).await;
        entry.stage = Stage::Finished;
        entry.outcome = Some(outcome.clone());
        let audit = self.audit(&entry, decision, &outcome);
        if let Err(e) = self.store.finish(&entry, audit) {
            tracing::error!("cannot journal a finished request: {e}");
        }
        outcome
    }

    fn resolve_dir_for_git(
        &self,
        mode: Mode,
        repo: &str,
        intent: Intent,
    ) -> Result<PathBuf, Refusal> {
        Ok(self
            .policy
            .resolve(mode, std::path::Path::new(repo), intent)?
            .absolute)
    }

    /// The policy gate: decides and resolves everything the executor needs, touching nothing.
    fn prepare(&self, mode: Mode, request: Request) -> Result<Prepared, Refusal> {
        let refuse = |reason: String| Refusal { reason };
        Ok(match request {
            Request::Exec(a) => {
                self.policy.check_command(mode, &a.argv, a.shell)?;
                let cwd = match &a.cwd {
                    Some(cwd) => {
                        let resolved =
                            self.policy
                                .resolve(mode, std::path::Path::new(cwd), Intent::Read)?;
                        resolved.absolute
                    }
                    None => self.policy.home().to_path_buf(),
                };
                let timeout = a
                    .timeout_secs
                    .filter(|t| t.is_finite() && *t > 0.0)
                    .map(Duration::from_secs_f64)
                    .unwrap_or(exec::DEFAULT_TIMEOUT);
                Prepared::Exec(ExecSpec {
                    argv: a.argv,
                    shell: a.shell,
                    cwd,
                    env: a.env,
                    stdin: a.stdin,
                    timeout,
                    max_output: a.max_output_bytes.unwrap_or(exec::DEFAULT_MAX_OUTPUT),
                })
            }
            Request::ReadFile(a) => Prepared::Read(
                self.policy
                    .resolve(mode, std::path::Path::new(&a.path), Intent::Read)?,
                a.offset.unwrap_or(0),
                a.length,
            ),
            Request::WriteFile(a) => {
                let bytes =
                    crate::fs::decode(&a.content, a.encoding).map_err(|e| refuse(e.to_string()))?;
                let path = std::path::Path::new(&a.path);
                let target = match self.policy.resolve(mode, path, Intent::Write) {
                    Ok(r) => WriteTarget::Existing(r),
                    Err(first) if a.create_dirs => self.prepare_create(mode, path).ok_or(first)?,
                    Err(e) => return Err(e),
                };
                Prepared::Write {
                    target,
                    bytes,
                    backup: mode == Mode::Edit,
                }
            }
            Request::ListDir(a) => Prepared::ListDir(self.policy.resolve(
                mode,
                std::path::Path::new(&a.path),
                Intent::Read,
            )?),
            Request::FileStat(a) => {
                let requested = self.policy.absolute(std::path::Path::new(&a.path));
                Prepared::Stat(
                    self.policy.resolve(mode, &requested, Intent::Read)?,
                    requested,
                )
            }
            Request::FileSearch(a) => {
                Policy::check_mode(mode, Access::Read)?;
                let query = search::Query::new(
                    a.name.as_deref(),
                    a.content.as_deref(),
                    a.images_only,
                    a.include_hidden,
                    a.max_results,
                )
                .map_err(|e| refuse(e.to_string()))?;
                let roots: Vec<PathBuf> = match &a.roots {
                    Some(roots) => roots
                        .iter()
                        .map(|r| {
                            self.policy
                                .resolve(mode, std::path::Path::new(r), Intent::Read)
                                .map(|r| r.absolute)
                        })
                        .collect::<Result<_, _>>()?,
                    None => search::default_roots(self.policy.home())
                        .into_iter()
                        .filter_map(|r| self.policy.resolve(mode, &r, Intent::Read).ok())
                        .map(|r| r.absolute)
                        .collect(),
                };
                Prepared::Search(roots, query)
            }
            Request::GitStatus(a) => {
                Prepared::GitStatus(self.resolve_dir_for_git(mode, &a.repo, Intent::Read)?)
            }
            Request::GitPull(a) => Prepared::GitPull(
                self.resolve_dir_for_git(mode, &a.repo, Intent::Write)?,
                a.remote,
                a.branch,
            ),
            Request::GitCommit(a) => Prepared::GitCommit(
                self.resolve_dir_for_git(mode, &a.repo, Intent::Write)?,
                a.message,
                a.paths,
            ),
            Request::GitPush(a) => Prepared::GitPush(
                self.resolve_dir_for_git(mode, &a.repo, Intent::Write)?,
                a.remote,
                a.branch,
            ),
            Request::GetInfo(_) => {
                Policy::check_mode(mode, Access::Read)?;
                Prepared::Info
            }
            Request::ListAgents(_) => {
                Policy::check_mode(mode, Access::Read)?;
                Prepared::ListAgents
            }
            Request::Backups(a) => {
                Policy::check_mode(mode, Access::Read)?;
                Prepared::Backups(
                    a.path
                        .map(|p| self.policy.absolute(std::path::Path::new(&p))),
                )
            }
            Request::SetMode(a) => {
                // A configured `disabled` is a kill switch no request can lift; an override to
                // `disabled` can be lifted by another set_mode.
                Policy::check_mode(self.settings.mode.value, Access::Admin)?;
                Prepared::SetMode(a)
            }
        })
    }

    /// For `create_dirs`: the nearest existing ancestor beneath a root, plus the folders to make.
    fn prepare_create(&self, mode: Mode, path: &std::path::Path) -> Option<WriteTarget> {
        let absolute = self.policy.absolute(path);
        if absolute
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return None;
        }
        let parent = absolute.parent()?;
        for ancestor in parent.ancestors() {
            if let Ok(resolved) = self.policy.resolve(mode, ancestor, Intent::Write) {
                let missing = parent.strip_prefix(ancestor).ok()?.to_path_buf();
                return Some(WriteTarget::Create {
                    ancestor: resolved,
                    missing,
                    path: absolute.clone(),
                });
            }
        }
        None
    }

    async fn execute(
        self: &Arc<Self>,
        request_id: &str,
        prepared: Prepared,
        ctx: CallContext,
    ) -> Outcome {
        match prepared {
            Prepared::Exec(spec) => {
                let progress = ctx.progress.clone();
                let result = exec::run(spec, ctx.cancel.clone(), move |p| {
                    if let Some(progress) = &progress {
                        progress(
                            p.elapsed.as_secs_f64(),
                            None,
                            format!(
                                "running for {:.0}s, {} bytes of output",
                                p.elapsed.as_secs_f64(),
                                p.output_bytes
                            ),
                        );
                    }
                })
                .await;
                match result {
                    Ok(r) => Outcome::ok(&r),
                    Err(e) => Outcome::failed(error_chain(&e)),
                }
            }
            other => {
                let node = self.clone();
                let request_id = request_id.to_string();
                match tokio::task::spawn_blocking(move || node.execute_blocking(&request_id, other))
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(e) => Outcome::failed(format!("executor panicked: {e}")),
                }
            }
        }
    }

    fn execute_blocking(&self, request_id: &str, prepared: Prepared) -> Outcome {
        match prepared {
            Prepared::Exec(_) => Outcome::failed("exec runs asynchronously"),
            Prepared::Read(target, offset, length) => {
                result(crate::fs::read_file(&target, offset, length))
            }
            Prepared::Write {
                target,
                bytes,
                backup,
            } => self.write(request_id, target, &bytes, backup),
            Prepared::ListDir(target) => result(crate::fs::list_dir(&target)),
            Prepared::Stat(target, requested) => result(crate::fs::file_stat(&target, &requested)),
            Prepared::Search(roots, query) => Outcome::ok(&search::search(
                &self.policy,
                self.effective_mode(),
                &roots,
                &query,
            )),
            Prepared::GitStatus(repo) => result(crate::git::status(&repo)),
            Prepared::GitPull(repo, remote, branch) => result(crate::git::pull(
                &repo,
                remote.as_deref(),
                branch.as_deref(),
            )),
            Prepared::GitCommit(repo, message, paths) => {
                result(crate::git::commit(&repo, &message, paths.as_deref()))
            }
            Prepared::GitPush(repo, remote, branch) => result(crate::git::push(
                &repo,
                remote.as_deref(),
                branch.as_deref(),
            )),
            Prepared::Info => Outcome::ok(&self.info()),
            Prepared::ListAgents => Outcome::ok(&self.list_agents()),
            Prepared::SetMode(args) => self.set_mode(request_id, args),
            Prepared::Backups(path) => match self.store.backups() {
                Ok(all) => Outcome::ok(&BackupsResult {
                    backups: all
                        .into_iter()
                        .filter(|b| {
                            path.as_ref()
                                .is_none_or(|p| std::path::Path::new(&b.path) == p)
                        })
                        .collect(),
                }),
                Err(e) => Outcome::failed(e),
            },
        }
    }

    fn write(&self, request_id: &str, target: WriteTarget, bytes: &[u8], backup: bool) -> Outcome {
        let mode = self.effective_mode();
        let target = match target {
            WriteTarget::Existing(r) => r,
            WriteTarget::Create {
                ancestor,
                missing,
                path,
            } => {
                let dirs = ancestor.relative.join(&missing);
                if let Err(e) = ancestor.root.create_dir_all(&dirs) {
                    return Outcome::failed(format!(
                        "cannot create {}: {e}",
                        ancestor.absolute.join(&missing).display()
                    ));
                }
                match self.policy.resolve(mode, &path, Intent::Write) {
                    Ok(r) => r,
                    Err(refusal) => {
                        return Outcome::Refused {
                            reason: refusal.reason,
                        };
                    }
                }
            }
        };
        let mut backup_path = None;
        if backup {
            match crate::fs::previous_content(&target) {
                Ok(Some(old)) => {
                    let dir = self.settings.data_dir.value.join("backups");
                    match crate::fs::write_backup(&dir, &target.absolute, &old) {
                        Ok(path) => {
                            let record = BackupRecord {
                                seq: 0,
                                at_ms: now_ms(),
                                path: target.absolute.display().to_string(),
                                backup_path: path.display().to_string(),
                                size: old.len() as u64,
                                request_id: request_id.to_string(),
                            };
                            if let Err(e) = self.store.add_backup(record) {
                                return Outcome::failed(format!(
                                    "backup index unavailable, file not written: {e}"
                                ));
                            }
                            backup_path = Some(path);
                        }
                        Err(e) => {
                            return Outcome::failed(format!(
                                "cannot keep a backup, file not written: {e}"
                            ));
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => return Outcome::failed(e),
            }
        }
        match crate::fs::write_atomic(&target, bytes) {
            Ok(n) => Outcome::ok(&crate::fs::write_result(&target, n, backup_path)),
            Err(e) => Outcome::failed(e),
        }
    }

    fn set_mode(&self, request_id: &str, args: SetModeArgs) -> Outcome {
        let ttl = args
            .ttl_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_OVERRIDE_TTL);
        let now = now_ms();
        let record = ModeOverride {
            mode: args.mode,
            set_by: request_id.to_string(),
            reason: args.reason,
            set_at_ms: now,
            expires_at_ms: now + ttl.as_millis() as u64,
        };
        // Setting the configured mode clears the override rather than recording a no-op drift.
        let stored = (args.mode != self.settings.mode.value).then_some(&record);
        if let Err(e) = self.store.set_meta(OVERRIDE_KEY, stored) {
            return Outcome::failed(e);
        }
        Outcome::ok(&SetModeResult {
            configured_mode: self.settings.mode.value,
            effective_mode: self.effective_mode(),
            expires_at_ms: if stored.is_some() {
                record.expires_at_ms
            } else {
                0
            },
        })
    }

    /// What `get_info` reports.
    pub fn info(&self) -> InfoResult {
        let mode_override = self.mode_override();
        let mut drift = Vec::new();
        if let Some(o) = &mode_override {
            drift.push(format!(
                "mode overridden to {} (configured {}) until {} ms since epoch{}",
                o.mode,
                self.settings.mode.value,
                o.expires_at_ms,
                o.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        InfoResult {
            agent_id: self.agent_id.clone(),
            name: self.settings.name.value.clone(),
            tags: self.settings.tags.value.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            facts: self.facts.clone(),
            configured_mode: self.settings.mode.value,
            effective_mode: self.effective_mode(),
            mode_override,
            drift,
            accepts_commands: !self.settings.no_agent.value,
            roots: self
                .policy
                .roots()
                .iter()
                .map(|r| r.display().to_string())
                .collect(),
            relay: self.settings.relay.value.clone(),
        }
    }

    /// This node plus every known peer.
    pub fn list_agents(&self) -> ListAgentsResult {
        let mut agents = vec![AgentSummary {
            agent_id: self.agent_id.clone(),
            name: self.settings.name.value.clone(),
            tags: self.settings.tags.value.clone(),
            facts: self.facts.to_map(),
            mode: self.effective_mode(),
            accepts_commands: !self.settings.no_agent.value,
            local: true,
        }];
        let note = match self.peers() {
            Some(peers) => {
                agents.extend(peers.list());
                None
            }
            None => Some("local-only: no relay configured, so no peers are known".to_string()),
        };
        ListAgentsResult { agents, note }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn result<T: serde::Serialize, E: std::error::Error>(r: Result<T, E>) -> Outcome {
    match r {
        Ok(v) => Outcome::ok(&v),
        Err(e) => Outcome::failed(error_chain(&e)),
    }
}

/// The node as the net RPC's request handler: a peer's request runs through the same journal,
/// gate and executors as a local one, under this node's policy.
struct NodeHandler {
    node: Arc<Node>,
}

impl crate::net::Handler for NodeHandler {
    fn handle(
        &self,
        from: crate::net::PeerInfo,
        request: Vec<u8>,
        responder: crate::net::Responder,
        cancel: CancellationToken,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        let node = self.node.clone();
        Box::pin(async move {
            let reply = node.handle_remote(&from.agent_id, &request, cancel).await;
            responder.respond(&reply).await;
        })
    }
}

/// `Peers` over the connection manager.
struct NetPeers {
    net: crate::net::Net,
}

impl Peers for NetPeers {
    fn call<'a>(
        &'a self,
        agent_id: &'a str,
        envelope: Vec<u8>,
        deadline: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move {
            let peers = self.net.peers();
            // An agent id, or failing that a unique announced name, picks the peer.
            let by_id = peers.iter().find(|p| p.agent_id == agent_id);
            let by_name: Vec<_> = peers
                .iter()
                .filter(|p| p.announcement.name == agent_id)
                .collect();
            let peer = match (by_id, by_name.as_slice()) {
                (Some(p), _) => p,
                (None, [p]) => *p,
                (None, []) => {
                    return Err(format!(
                        "no connected peer has agent id or name `{agent_id}`; call list_agents"
                    ));
                }
                (None, _) => {
                    return Err(format!(
                        "several peers are named `{agent_id}`; use the agent_id from list_agents"
                    ));
                }
            };
            if !peer.announcement.accepts_commands {
                return Err(format!(
                    "agent `{agent_id}` runs with --no-agent and accepts no commands"
                ));
            }
            let mut call = self
                .net
                .call(peer.peer_id, envelope, deadline)
                .await
                .map_err(|e| e.to_string())?;
            let (_chunks, response) = call.collect().await.map_err(|e| e.to_string())?;
            Ok(response)
        })
    }

    fn list(&self) -> Vec<AgentSummary> {
        self.net
            .peers()
            .into_iter()
            .map(|p| AgentSummary {
                agent_id: p.agent_id.clone(),
                name: p.announcement.name.clone(),
                tags: p.announcement.tags.clone(),
                facts: p.announcement.facts.clone(),
                mode: p.announcement.mode.parse().unwrap_or(Mode::Disabled),
                accepts_commands: p.announcement.accepts_commands,
                local: false,
            })
            .collect()
    }
}

/// Decodes an explicit end-to-end key given as 64 hex characters or base64 of 32 bytes.
fn decode_key(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let text = text.trim();
    if let Ok(bytes) = hex::decode(text) {
        return Ok(bytes);
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| anyhow::anyhow!("encryption key is neither hex nor base64"))
}

/// The relay connection settings of a node or of fleetctl: `None` when no relay is configured
/// (local-only). The end-to-end key is the explicit `encryption_key`, or else derived from the
/// room token with Argon2id.
pub fn net_config(
    settings: &Settings,
    announcement: remote_agents_protocol::message::Announcement,
) -> anyhow::Result<Option<crate::net::NetConfig>> {
    use remote_agents_protocol::psk::Psk;
    let Some(relay) = settings.relay.value.clone() else {
        return Ok(None);
    };
    let room = settings.room.value.clone().ok_or_else(|| {
        anyhow::anyhow!("a relay is configured but no room: pass --room or REMOTE_AGENTS_ROOM")
    })?;
    let psk = match (&settings.encryption_key.value, &settings.token.value) {
        (Some(key), _) => Psk::from_bytes(&decode_key(key)?)?,
        (None, Some(token)) => Psk::from_room_token(token, &room)?,
        (None, None) => anyhow::bail!(
            "a relay is configured but no room token: pass --token (or --encryption-key)"
        ),
    };
    let mut config = crate::net::NetConfig::new(relay, room, psk);
    config.relay_key = settings.relay_key.value.clone();
    config.announcement = announcement;
    Ok(Some(config))
}

/// Connects the node to its relay, when one is configured. `eager`: handshake with every peer
/// present (an MCP node lists and fans out to the room); otherwise only answer handshakes and
/// start them on first use, so large rooms of headless nodes do not pay for a full mesh.
fn start_net(node: &Arc<Node>, shutdown: CancellationToken, eager: bool) -> anyhow::Result<()> {
    let settings = &node.settings;
    let announcement = remote_agents_protocol::message::Announcement {
        name: settings.name.value.clone(),
        tags: settings.tags.value.clone(),
        facts: node.facts.to_map(),
        mode: node.effective_mode().to_string(),
        accepts_commands: !settings.no_agent.value,
    };
    let Some(mut config) = net_config(settings, announcement)? else {
        tracing::info!(agent_id = %node.agent_id, "local-only: no relay configured");
        return Ok(());
    };
    config.session.eager_handshakes = eager;
    let handler: Option<Arc<dyn crate::net::Handler>> = if settings.no_agent.value {
        None
    } else {
        Some(Arc::new(NodeHandler { node: node.clone() }))
    };
    let net = crate::net::Net::start(&node.identity, config, handler, shutdown);
    tracing::info!(agent_id = %node.agent_id, "connecting to the relay");
    *node.net.lock().unwrap_or_else(|e| e.into_inner()) = Some(net.clone());
    node.set_peers(Arc::new(NetPeers { net }));
    Ok(())
}

/// Opens a node and connects it to its relay inside this process (the demo and simulations of
/// many nodes use this); it stays connected until `shutdown` fires.
pub fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Arc<Node>> {
    let node = Node::open(settings)?;
    start_net(&node, shutdown, false)?;
    Ok(node)
}

/// Runs a node until it is told to stop: with `mcp`, until the MCP client closes stdin;
/// otherwise until SIGINT or SIGTERM.
pub async fn run(settings: Settings, mcp: bool) -> anyhow::Result<()> {
    let node = Node::open(settings)?;
    let shutdown = CancellationToken::new();
    let _stop_net = shutdown.clone().drop_guard();
    start_net(&node, shutdown.clone(), mcp)?;
    if mcp {
        crate::mcp::McpServer::new(node).serve_stdio().await
    } else {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    }
}

/// The audit log as text or JSON lines; needs the node stopped (the store is single-process).
pub fn audit_report(settings: &Settings, limit: usize, json: bool) -> Result<String, StoreError> {
    let store = Store::open(&settings.data_dir.value)?;
    let records = store.audit(limit)?;
    if json {
        let mut out = String::new();
        for r in &records {
            out.push_str(&serde_json::to_string(r)?);
            out.push('\n');
        }
        Ok(out)
    } else {
        Ok(crate::audit::table(&records))
    }
}
