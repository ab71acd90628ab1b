//! The node: wires settings, policy, store, facts and executors together and handles one
//! `ops::Envelope` at a time — journal (received → started → finished), policy gate, executor,
//! audit. Requests naming another `agent_id` are forwarded through `Peers` (the net RPC) and run
//! on that peer under its own policy; requests arriving from peers enter through
//! `handle_remote` and take exactly the same local path.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::AuditRecord;
use crate::config::Settings;
use crate::desired::{Accepted, DesiredState, OperatorKey};
use crate::exec::{self, ExecSpec};
use crate::facts::Facts;
use crate::identity::Identity;
use crate::journal::now_ms;
use crate::journal::{JournalEntry, Stage, Store, StoreError};
use crate::policy::{Access, Intent, Mode, Policy, PolicyError, Refusal, Resolved};
use crate::search;
use remote_agents_ops::{
    AgentSummary, BackupRecord, BackupsResult, Caller, Envelope, InfoResult, ListAgentsResult,
    ModeOverride, Outcome, Reply, Request, SetModeArgs, SetModeResult,
};

/// Progress callback: (progress, total, message).
pub type ProgressFn = Arc<dyn Fn(f64, Option<f64>, String) + Send + Sync>;

/// One progress report of a forwarded request, streamed back to the caller as an RPC chunk
/// (JSON) before the final reply, so an MCP client sees a peer's long exec progress too.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct ProgressChunk {
    progress: f64,
    total: Option<f64>,
    message: String,
}

/// Per-call context from the caller: cancellation and an optional progress sink.
#[derive(Clone, Default)]
pub struct CallContext {
    pub cancel: CancellationToken,
    pub progress: Option<ProgressFn>,
}

/// The other nodes, as seen through the relay. Implemented over `daemon::net` when a relay is
/// configured; absent when the node is local-only.
pub trait Peers: Send + Sync {
    /// Sends an encoded `Envelope` to `agent_id` and returns its encoded `Reply`; the peer's
    /// progress reports, if any, go to `progress`.
    fn call<'a>(
        &'a self,
        agent_id: &'a str,
        envelope: Vec<u8>,
        deadline: Duration,
        progress: Option<ProgressFn>,
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
    #[error("{0}")]
    Desired(String),
    #[error(transparent)]
    OperatorKey(#[from] crate::desired::operator::OperatorKeyError),
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
    /// What the node runs now: from the applied spec once there is one, else local config.
    live: RwLock<Arc<Live>>,
    /// The applied desired-state bundle and who is trusted to sign and command.
    desired: DesiredState,
    /// The operator key this node acts for when it commands peers (MCP fleet tools).
    operator_key: Option<Arc<OperatorKey>>,
    /// The room key, for sealing the desired state left at the relay.
    psk: Mutex<Option<remote_agents_protocol::psk::Psk>>,
    /// Why the newest bundle this node was offered was refused, if it was.
    last_refusal: Mutex<Option<String>>,
    /// The state of the watched spec folder or repository (watch mode), reported in `status`.
    source_condition: Mutex<Option<crate::desired::Condition>>,
    /// Changes of mode or tags that peers have not been told about yet.
    announce: tokio::sync::Notify,
    last_changes: std::sync::atomic::AtomicU64,
    /// One reconcile pass at a time (a pass compares and swaps the live config).
    reconciling: Mutex<()>,
    /// Pokes the reconcile controller (`desired::controller`): something a pass reads changed,
    /// or an inline pass left a requeue or a retry.
    reconcile_trigger: tokio::sync::Notify,
    /// The expiry of the last mode override whose end peers were told about.
    expiry_announced_ms: std::sync::atomic::AtomicU64,
    store: Arc<Store>,
    facts: Facts,
    agent_id: String,
    in_flight: Mutex<HashSet<String>>,
    peers: Mutex<Option<Arc<dyn Peers>>>,
    /// The relay connection, for fleet fan-outs issued from this node (MCP `fleet_*` tools).
    net: Mutex<Option<crate::net::Net>>,
    /// Declared and imperative schedules; their runner starts with the node (`start`, `run`).
    schedules: crate::schedule::Schedules,
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
    ScheduleAdd(remote_agents_ops::ScheduleAddArgs),
    ScheduleRemove(String),
    ScheduleList(remote_agents_ops::ScheduleListArgs),
    DesiredOffer(remote_agents_ops::DesiredOfferArgs),
    DesiredStatus,
    DesiredGet(Option<String>),
    DesiredHistory,
}

/// The configuration the node runs under right now.
#[derive(Clone)]
struct Live {
    /// 0 before any bundle: the local config decides.
    generation: u64,
    mode: Mode,
    tags: Vec<String>,
    policy_config: crate::policy::PolicyConfig,
    policy: Arc<Policy>,
    schedules: Vec<String>,
    jobs: Vec<String>,
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
        let store = Arc::new(Store::open(&data_dir)?);
        let schedules = crate::schedule::Schedules::open(store.clone())?;
        let policy = Policy::for_node(
            &settings.policy.value,
            &data_dir,
            &node_own_files(&settings),
        )?;
        let desired = DesiredState::open(store.clone(), &settings.operators.value)
            .map_err(NodeError::Desired)?;
        let operator_key = match &settings.operator_key.value {
            Some(path) => Some(Arc::new(crate::desired::operator::load_key(path)?)),
            None => None,
        };
        let live = Live {
            generation: 0,
            mode: settings.mode.value,
            tags: settings.tags.value.clone(),
            policy_config: settings.policy.value.clone(),
            policy: Arc::new(policy),
            schedules: Vec::new(),
            jobs: Vec::new(),
        };
        // The agent id is the peer id: a hash of the node's persistent public key.
        let identity = Identity::load_or_create(&data_dir)?;
        let agent_id = identity.agent_id();
        // An override that expired while the node was down changed nothing peers were told.
        let expiry_announced_ms = store
            .get_meta::<ModeOverride>(OVERRIDE_KEY)
            .ok()
            .flatten()
            .map(|o| o.expires_at_ms)
            .filter(|&expires_at_ms| expires_at_ms <= now_ms())
            .unwrap_or(0);
        let node = Arc::new(Node {
            identity,
            settings,
            live: RwLock::new(Arc::new(live)),
            desired,
            operator_key,
            psk: Mutex::new(None),
            last_refusal: Mutex::new(None),
            source_condition: Mutex::new(None),
            announce: tokio::sync::Notify::new(),
            last_changes: std::sync::atomic::AtomicU64::new(0),
            reconciling: Mutex::new(()),
            reconcile_trigger: tokio::sync::Notify::new(),
            expiry_announced_ms: std::sync::atomic::AtomicU64::new(expiry_announced_ms),
            store,
            facts: crate::facts::gather(),
            agent_id,
            in_flight: Mutex::new(HashSet::new()),
            peers: Mutex::new(None),
            net: Mutex::new(None),
            schedules,
        });
        // Converge to the bundle kept from the last run before anything else is asked.
        node.reconcile_inline();
        node.remove_interrupted_temps();
        Ok(node)
    }

    /// Removes the temp files of writes a crash interrupted: `write_atomic` keeps its temp file
    /// beside the target until the rename, and the journal kept the targets of writes that
    /// started and never finished. Nothing writes yet at this point, so every temp file of
    /// `write_atomic`'s naming beside those targets is debris.
    fn remove_interrupted_temps(&self) {
        let targets = match self.store.take_interrupted_writes() {
            Ok(targets) => targets,
            Err(e) => {
                tracing::warn!("cannot read which writes a crash interrupted: {e}");
                return;
            }
        };
        for target in targets {
            // Resolved beneath its root by the gate, as the write was; in edit mode whatever
            // the node's mode, since removing its own leftovers is housekeeping, not a request.
            let removed = self
                .policy()
                .resolve(Mode::Edit, std::path::Path::new(&target), Intent::Write)
                .map_err(|refusal| refusal.reason)
                .and_then(|resolved| {
                    crate::fs::remove_interrupted_temps(&resolved).map_err(|e| e.to_string())
                });
            match removed {
                Ok(0) => {}
                Ok(count) => tracing::info!(
                    target,
                    count,
                    "removed the temp files of a write a crash interrupted"
                ),
                Err(e) => tracing::warn!(
                    target,
                    "cannot remove the temp files of a write a crash interrupted: {e}"
                ),
            }
        }
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

    pub fn schedules(&self) -> &crate::schedule::Schedules {
        &self.schedules
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
        // A locally configured `disabled` is a kill switch no spec or request lifts.
        if self.settings.mode.value == Mode::Disabled {
            return Mode::Disabled;
        }
        let configured = self.configured_mode();
        self.mode_override().map(|o| o.mode).unwrap_or(configured)
    }

    fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The mode the applied spec (or, before any, the local config) gives this host.
    pub fn configured_mode(&self) -> Mode {
        self.live().mode
    }

    /// The tags this host has now (its own plus the spec's).
    pub fn tags(&self) -> Vec<String> {
        self.live().tags.clone()
    }

    fn policy(&self) -> Arc<Policy> {
        self.live().policy.clone()
    }

    /// The applied desired state.
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// This host as the spec's selectors see it: name, own tags, live facts.
    pub fn host_facts(&self) -> remote_agents_spec::HostFacts {
        remote_agents_spec::HostFacts {
            name: self.settings.name.value.clone(),
            tags: self.settings.tags.value.iter().cloned().collect(),
            facts: self.facts.to_map(),
        }
    }

    /// Verifies and applies a bundle from `source` (relay, peer, fleetctl, watch), then
    /// converges. A refusal is remembered for `status`.
    pub fn offer_bundle(
        &self,
        bundle: &crate::desired::SignedBundle,
        source: &str,
    ) -> Result<Accepted, crate::desired::Refusal> {
        let result = self.desired.offer(bundle, &self.host_facts());
        self.after_offer(result, source)
    }

    /// `offer_bundle` inside a request, whose audit commit makes the stored bundle
    /// durable before the answer goes out (one durable commit per apply instead of two).
    fn offer_bundle_in_request(
        &self,
        bundle: &crate::desired::SignedBundle,
    ) -> Result<Accepted, crate::desired::Refusal> {
        let result = self.desired.offer_before_commit(bundle, &self.host_facts());
        self.after_offer(result, "request")
    }

    fn after_offer(
        &self,
        result: Result<Accepted, crate::desired::Refusal>,
        source: &str,
    ) -> Result<Accepted, crate::desired::Refusal> {
        match &result {
            Ok(Accepted::New) => self.converge_to_new(source),
            // Another path (the relay's copy, a peer) may have just accepted this generation and
            // still be converging to it: an answer of `current` must describe it in force.
            Ok(Accepted::Current) => {
                if self.live().generation < self.desired.generation() {
                    self.reconcile_inline();
                }
            }
            Err(refusal) => {
                tracing::warn!(%refusal, source, "refused desired state");
                *self.last_refusal.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("from {source}: {refusal}"));
            }
        }
        result
    }

    /// After a new generation was accepted: drop imperative drift and converge.
    fn converge_to_new(&self, source: &str) {
        // The next apply reverts imperative drift.
        if let Err(e) = self.store.set_meta::<ModeOverride>(OVERRIDE_KEY, None) {
            tracing::error!("cannot clear the mode override: {e}");
        }
        *self.last_refusal.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(
            generation = self.desired.generation(),
            source,
            "applied desired state"
        );
        self.reconcile_inline();
    }

    /// Applies spec files from a local authority (watch mode's folder or repository, the MCP
    /// spec tools), without the operator check, then converges. Signed with the node's
    /// operator key when it has one (so the same bundle can be published to the room), else
    /// with a node-local key kept in the data dir. Same content as applied: no new generation.
    pub fn apply_local(
        &self,
        files: Vec<crate::desired::SpecFile>,
        revision: String,
        source: &str,
    ) -> Result<(Arc<crate::desired::VerifiedBundle>, Accepted), crate::desired::Refusal> {
        let signer = match &self.operator_key {
            Some(key) => key.clone(),
            None => Arc::new(self.local_signer().map_err(|e| {
                crate::desired::Refusal::Store(format!("node-local signing key: {e}"))
            })?),
        };
        let result = self.desired.apply_local(files, revision, &signer);
        if let Ok((_, Accepted::New)) = &result {
            self.converge_to_new(source);
        }
        result
    }

    /// The node-local key that signs bundles from local sources (0600 in the data dir).
    fn local_signer(&self) -> Result<OperatorKey, crate::desired::operator::OperatorKeyError> {
        let path = self.settings.data_dir.value.join("local-operator.key");
        match crate::desired::operator::load_key(&path) {
            Err(crate::desired::operator::OperatorKeyError::Missing { .. }) => {
                crate::desired::operator::create_key(&path)
            }
            other => other,
        }
    }

    /// Whether `bundle` was signed with this node's local key (a watched folder or repository
    /// applied without an operator key): it is this node's own business and is not passed on
    /// to the relay or to peers, where it would compete with the fleet's operators.
    pub fn is_local_only(&self, bundle: &crate::desired::VerifiedBundle) -> bool {
        let path = self.settings.data_dir.value.join("local-operator.key");
        crate::desired::operator::load_key(&path)
            .is_ok_and(|key| key.public() == bundle.content.issuer)
    }

    /// The operator key this node acts for, if any.
    pub fn operator_key(&self) -> Option<Arc<OperatorKey>> {
        self.operator_key.clone()
    }

    /// The room key, once the node is connected to a relay.
    pub fn psk(&self) -> Option<remote_agents_protocol::psk::Psk> {
        self.psk.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the state of the watched spec source (`None`: no source watched).
    pub fn set_source_condition(&self, condition: Option<crate::desired::Condition>) {
        *self
            .source_condition
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = condition;
    }

    /// One reconcile pass (`desired::reconcile::reconcile`): computes what the applied bundle
    /// says this host runs, swaps in the difference, and says when to look again. Idempotent:
    /// with the same input the second pass changes nothing. One pass at a time.
    pub fn reconcile(
        &self,
    ) -> Result<crate::desired::reconcile::Action, crate::desired::reconcile::ReconcileError> {
        let _one_pass = self.reconciling.lock().unwrap_or_else(|e| e.into_inner());
        let target = self.desired.current().map(|bundle| {
            crate::desired::reconcile::target(
                &bundle,
                &self.host_facts(),
                &self.settings.policy.value,
            )
        });
        crate::desired::reconcile::reconcile(target.as_ref(), self)
    }

    /// After the mode override was set or cleared: tells peers, and the reconcile controller,
    /// which requeues at the new expiry.
    pub(crate) fn mode_override_changed(&self) {
        self.announce.notify_one();
        self.reconcile_trigger.notify_one();
    }

    /// One pass inline, for callers whose answer must describe its result; what the pass leaves
    /// for later (a requeue, a retry after a transient error) is the controller's to schedule.
    fn reconcile_inline(&self) {
        let later = match self.reconcile() {
            Ok(action) => action != crate::desired::reconcile::Action::AwaitChange,
            Err(error) => error.is_transient(),
        };
        if later {
            self.reconcile_trigger.notify_one();
        }
    }

    /// What this host reports about its desired state.
    pub fn status(&self) -> crate::desired::ObservedStatus {
        use crate::desired::{Condition, Drift, Health, ObservedStatus, SyncState};
        let live = self.live();
        let bundle = self.desired.current();
        let mut drift = Vec::new();
        if let Some(o) = self.mode_override() {
            drift.push(Drift {
                kind: "mode".into(),
                message: format!(
                    "mode set to {} by hand (spec says {}){}",
                    o.mode,
                    live.mode,
                    o.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                expires_at_ms: Some(o.expires_at_ms),
            });
        }
        for message in self.schedules.drift() {
            drift.push(Drift {
                kind: "schedule".into(),
                message,
                expires_at_ms: None,
            });
        }
        let refusal = self
            .last_refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut conditions = Vec::new();
        let converged = bundle
            .as_ref()
            .is_some_and(|b| b.content.generation == live.generation);
        conditions.push(Condition {
            kind: "Reconciled".into(),
            status: converged,
            reason: if bundle.is_none() {
                "NoDesiredState".into()
            } else if converged {
                "Converged".into()
            } else {
                "Pending".into()
            },
            message: match &bundle {
                Some(b) => format!(
                    "generation {} (revision {})",
                    b.content.generation, b.content.revision
                ),
                None => "no bundle applied yet; running from local config".into(),
            },
        });
        conditions.push(Condition {
            kind: "Drifted".into(),
            status: !drift.is_empty(),
            reason: if drift.is_empty() {
                "NoDrift".into()
            } else {
                "ImperativeOverride".into()
            },
            message: drift
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        });
        if let Some(refusal) = &refusal {
            conditions.push(Condition {
                kind: "BundleRefused".into(),
                status: true,
                reason: "Refused".into(),
                message: refusal.clone(),
            });
        }
        let source_condition = self
            .source_condition
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let source_invalid = source_condition.as_ref().is_some_and(|c| !c.status);
        conditions.extend(source_condition);
        let sync = match &bundle {
            None => SyncState::Unknown,
            Some(_) if converged && drift.is_empty() => SyncState::Synced,
            Some(_) => SyncState::OutOfSync,
        };
        ObservedStatus {
            host: self.settings.name.value.clone(),
            agent_id: self.agent_id.clone(),
            observed_generation: live.generation,
            revision: bundle.as_ref().map(|b| b.content.revision.clone()),
            spec_hash: bundle.as_ref().map(|b| b.spec_hash.clone()),
            sync,
            health: if refusal.is_some() || source_invalid {
                Health::Degraded
            } else {
                Health::Healthy
            },
            mode: self.effective_mode(),
            desired_mode: live.mode,
            tags: live.tags.clone(),
            schedules: live.schedules.clone(),
            jobs: live.jobs.clone(),
            conditions,
            drift,
            last_changes: self.last_changes.load(std::sync::atomic::Ordering::Relaxed),
            reconciled_at_ms: now_ms(),
        }
    }

    /// Whether `caller` may run `request` here. Local callers (this machine's MCP client, the
    /// CLI, the spec's own schedules) are trusted; a peer needs an operator key the applied
    /// spec allows for this host and capability, once the fleet lists operators; any other
    /// caller is refused. Every kind of caller is named: a new one must be decided here.
    fn authorize(&self, caller: &Caller, request: &Request) -> Result<(), String> {
        let Some(capability) = request.capability() else {
            return Ok(());
        };
        match caller {
            Caller::McpLocal | Caller::Cli | Caller::Spec { .. } => Ok(()),
            Caller::Peer { operator, .. } => {
                let operator = operator
                    .as_deref()
                    .and_then(|key| remote_agents_spec::parse_operator_key(key).ok());
                self.desired
                    .authorize(operator.as_ref(), capability, &self.host_facts())
            }
            Caller::Fleet { .. }
            | Caller::MapReduce { .. }
            | Caller::Unstated
            | Caller::Unknown(_) => Err(format!(
                "a request whose caller is not authenticated (`{caller}`) runs nowhere"
            )),
        }
    }

    /// The announcement peers see: name, tags, facts, mode, and the operator binding.
    fn announcement(&self) -> remote_agents_protocol::message::Announcement {
        remote_agents_protocol::message::Announcement {
            name: self.settings.name.value.clone(),
            tags: self.tags(),
            facts: self.facts.to_map(),
            mode: self.effective_mode().to_string(),
            accepts_commands: !self.settings.no_agent.value,
            operator: self
                .operator_key
                .as_ref()
                .map(|key| key.bind(&self.identity.public_key())),
        }
    }

    /// Whether `agent_id` names this node (its id or its name) rather than a peer.
    pub fn is_local(&self, agent_id: &str) -> bool {
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
    /// `operator` is the operator key the peer proved (its announcement's binding verified
    /// against its handshake key), if any.
    pub async fn handle_remote(
        self: &Arc<Self>,
        peer: &str,
        operator: Option<[u8; 32]>,
        bytes: &[u8],
        cancel: CancellationToken,
        progress: Option<ProgressFn>,
    ) -> Vec<u8> {
        let reply = match serde_json::from_slice::<Envelope>(bytes) {
            Ok(mut envelope) => {
                envelope.caller = Caller::peer(
                    peer,
                    operator.map(|key| crate::desired::operator::format_public(&key)),
                );
                envelope.request = envelope.request.without_agent_id();
                let id = envelope.id.clone();
                let outcome = if self.settings.no_agent.value {
                    Outcome::Refused {
                        reason: "this node runs with --no-agent and accepts no commands".into(),
                    }
                } else {
                    let ctx = CallContext { cancel, progress };
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
        // A bad timeout is the peer's to refuse (it names the field); here it only must not
        // panic while the wait for the answer is computed.
        let timeout = match &envelope.request {
            Request::Exec(a) => a.timeout().unwrap_or(exec::DEFAULT_TIMEOUT),
            _ => Duration::from_secs(60),
        } + FORWARD_SLACK;
        let bytes = match serde_json::to_vec(&envelope) {
            Ok(b) => b,
            Err(e) => return Outcome::failed(format!("cannot encode request: {e}")),
        };
        let call = peers.call(&agent, bytes, timeout, ctx.progress.clone());
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
        caller: Caller,
        request: Request,
        ctx: CallContext,
    ) -> Outcome {
        let mut entry = JournalEntry {
            id: id.to_string(),
            caller: caller.to_string(),
            op: request.name().to_string(),
            summary: request.summary(),
            stage: Stage::Received,
            received_at_ms: now_ms(),
            outcome: None,
            write_target: match &request {
                Request::WriteFile(a) => Some(a.path.clone()),
                _ => None,
            },
        };
        // Every request is audited when it finishes; idempotent ones are not journaled, and only
        // those whose interruption must read `outcome_unknown` also get a durable `started`
        // record first (`needs_started_record`).
        // Nothing awaits between receiving a request and starting it (the gate below is
        // synchronous), so no `received` record is written: a crash in between leaves no
        // entry, and a retry with the same id then runs, which is right since nothing ran.
        let journal_stages = request.needs_started_record();
        let audit_only = request.is_idempotent();
        let mode = self.effective_mode();
        let prepared = match self.authorize(&caller, &request) {
            Ok(()) => self.prepare(mode, request),
            Err(reason) => Err(Refusal {
                reason: format!("not authorized: {reason}"),
            }),
        };
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
        let outcome = self.execute(id, &entry.caller, prepared, ctx).await;
        entry.stage = Stage::Finished;
        let audit = self.audit(&entry, decision, &outcome);
        // The entry holds the only copy while it is journaled (an exec's output can be
        // megabytes), and gives it back after.
        entry.outcome = Some(outcome);
        let finished = if audit_only {
            self.store.finish_audit_only(audit)
        } else {
            self.store.finish(&entry, audit)
        };
        if let Err(e) = finished {
            tracing::error!("cannot journal a finished request: {e}");
        }
        entry
            .outcome
            .take()
            .unwrap_or_else(|| Outcome::failed("the request's outcome was lost"))
    }

    /// The gate a git executor checks every location and file against: git reads and writes
    /// more than the folder the request named (the git folder, remotes, each file checked out).
    fn git_gate<'a>(&self, policy: &'a Policy) -> crate::git::Gate<'a> {
        crate::git::Gate {
            policy,
            mode: self.effective_mode(),
        }
    }

    fn resolve_dir_for_git(
        &self,
        mode: Mode,
        repo: &str,
        intent: Intent,
    ) -> Result<PathBuf, Refusal> {
        Ok(self
            .policy()
            .resolve(mode, std::path::Path::new(repo), intent)?
            .absolute)
    }

    /// The policy gate: decides and resolves everything the executor needs, touching nothing.
    fn prepare(&self, mode: Mode, request: Request) -> Result<Prepared, Refusal> {
        let refuse = |reason: String| Refusal { reason };
        Ok(match request {
            Request::Exec(a) => {
                self.policy().check_command(mode, &a.argv, a.shell)?;
                let cwd = match &a.cwd {
                    Some(cwd) => {
                        let resolved =
                            self.policy()
                                .resolve(mode, std::path::Path::new(cwd), Intent::Read)?;
                        resolved.absolute
                    }
                    None => self.policy().home().to_path_buf(),
                };
                let timeout = a.timeout().map_err(refuse)?;
                let max_output = a.max_output().map_err(refuse)?;
                // Plan mode runs commands only inside the read-only sandbox; where none can be
                // made the request is refused here, before anything starts.
                let sandboxed = mode == Mode::Plan;
                if sandboxed {
                    crate::sandbox::check().map_err(|e| refuse(e.to_string()))?;
                }
                Prepared::Exec(ExecSpec {
                    argv: a.argv,
                    shell: a.shell,
                    cwd,
                    env: a.env,
                    stdin: a.stdin,
                    timeout,
                    max_output,
                    sandboxed,
                    // Plan-mode commands cannot read what the file tools may not either.
                    hidden: if sandboxed {
                        self.policy().hard_limit_paths()
                    } else {
                        Vec::new()
                    },
                })
            }
            Request::ReadFile(a) => Prepared::Read(
                self.policy()
                    .resolve(mode, std::path::Path::new(&a.path), Intent::Read)?,
                a.offset.unwrap_or(0),
                a.length,
            ),
            Request::WriteFile(a) => {
                let bytes =
                    crate::fs::decode(&a.content, a.encoding).map_err(|e| refuse(e.to_string()))?;
                let path = std::path::Path::new(&a.path);
                let target = match self.policy().resolve(mode, path, Intent::Write) {
                    Ok(r) => WriteTarget::Existing(r),
                    Err(_) if a.create_dirs => self.prepare_create(mode, path)?,
                    Err(e) => return Err(e),
                };
                Prepared::Write {
                    target,
                    bytes,
                    backup: mode == Mode::Edit,
                }
            }
            Request::ListDir(a) => Prepared::ListDir(self.policy().resolve(
                mode,
                std::path::Path::new(&a.path),
                Intent::Read,
            )?),
            Request::FileStat(a) => {
                let requested = self.policy().absolute(std::path::Path::new(&a.path));
                Prepared::Stat(
                    self.policy().resolve(mode, &requested, Intent::Read)?,
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
                            self.policy()
                                .resolve(mode, std::path::Path::new(r), Intent::Read)
                                .map(|r| r.absolute)
                        })
                        .collect::<Result<_, _>>()?,
                    None => search::default_roots(self.policy().home())
                        .into_iter()
                        .filter_map(|r| self.policy().resolve(mode, &r, Intent::Read).ok())
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
                        .map(|p| self.policy().absolute(std::path::Path::new(&p))),
                )
            }
            Request::ScheduleAdd(a) => {
                // Adding a schedule changes the node (refused in plan mode) and installs future
                // process execution, so it needs exec rights now; each firing passes the gate
                // again.
                let (argv, shell) = crate::schedule::validate_add(&a).map_err(refuse)?;
                Policy::check_mode(mode, Access::Write)?;
                self.policy().check_command(mode, &argv, shell)?;
                Prepared::ScheduleAdd(a)
            }
            Request::ScheduleRemove(a) => {
                Policy::check_mode(mode, Access::Write)?;
                Prepared::ScheduleRemove(a.name)
            }
            Request::DesiredOffer(a) => {
                // Desired state arrives in every mode (a spec that disabled a host must be able
                // to enable it again), except under a local kill switch.
                if self.settings.mode.value == Mode::Disabled {
                    return Err(refuse(
                        "this node is disabled by its local config; it applies no desired state"
                            .into(),
                    ));
                }
                Prepared::DesiredOffer(a)
            }
            // Status and the kept bundles are metadata about the node, answered in every mode.
            Request::DesiredStatus(_) => Prepared::DesiredStatus,
            Request::DesiredGet(a) => Prepared::DesiredGet(a.revision),
            Request::DesiredHistory(_) => Prepared::DesiredHistory,
            Request::ScheduleList(a) => {
                Policy::check_mode(mode, Access::Read)?;
                Prepared::ScheduleList(a)
            }
            Request::SetMode(a) => {
                // A configured `disabled` is a kill switch no request can lift; an override to
                // `disabled` can be lifted by another set_mode.
                Policy::check_mode(self.settings.mode.value, Access::Admin)?;
                if let Some(ttl) = a.ttl_secs {
                    remote_agents_ops::ttl_from_secs("ttl_secs", ttl).map_err(refuse)?;
                }
                Prepared::SetMode(a)
            }
        })
    }

    /// For `create_dirs`: the nearest existing ancestor beneath a root, plus the folders to make;
    /// the gate decides on the file and every folder before any is made.
    fn prepare_create(&self, mode: Mode, path: &std::path::Path) -> Result<WriteTarget, Refusal> {
        let (ancestor, missing) = self.policy().resolve_create(mode, path)?;
        Ok(WriteTarget::Create {
            ancestor,
            missing,
            path: self.policy().absolute(path),
        })
    }

    async fn execute(
        self: &Arc<Self>,
        request_id: &str,
        caller: &str,
        prepared: Prepared,
        ctx: CallContext,
    ) -> Outcome {
        match prepared {
            // The schedule's issuer is the caller that added it: each firing runs as them.
            Prepared::ScheduleAdd(args) => {
                let node = self.clone();
                let issuer = caller.to_string();
                crate::runtime::spawn_blocking(move || result(node.schedules.add(args, &issuer)))
                    .await
                    .unwrap_or_else(|e| Outcome::failed(format!("executor panicked: {e}")))
            }
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
                    Ok(r) => exec::outcome(r),
                    Err(e) => Outcome::failed(error_chain(&e)),
                }
            }
            other => {
                let node = self.clone();
                let request_id = request_id.to_string();
                match crate::runtime::spawn_blocking(move || {
                    node.execute_blocking(&request_id, other)
                })
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
                fs_result(crate::fs::read_file(&target, offset, length))
            }
            Prepared::Write {
                target,
                bytes,
                backup,
            } => self.write(request_id, target, &bytes, backup),
            Prepared::ListDir(target) => fs_result(crate::fs::list_dir(&target)),
            Prepared::Stat(target, requested) => {
                fs_result(crate::fs::file_stat(&target, &requested))
            }
            Prepared::Search(roots, query) => Outcome::ok(&search::search(
                &self.policy(),
                self.effective_mode(),
                &roots,
                &query,
            )),
            Prepared::GitStatus(repo) => {
                let policy = self.policy();
                result(crate::git::status(&repo, self.git_gate(&policy)))
            }
            Prepared::GitPull(repo, remote, branch) => {
                let policy = self.policy();
                result(crate::git::pull(
                    &repo,
                    remote.as_deref(),
                    branch.as_deref(),
                    self.git_gate(&policy),
                ))
            }
            Prepared::GitCommit(repo, message, paths) => {
                let policy = self.policy();
                result(crate::git::commit(
                    &repo,
                    &message,
                    paths.as_deref(),
                    self.git_gate(&policy),
                ))
            }
            Prepared::GitPush(repo, remote, branch) => {
                let policy = self.policy();
                result(crate::git::push(
                    &repo,
                    remote.as_deref(),
                    branch.as_deref(),
                    self.git_gate(&policy),
                ))
            }
            Prepared::Info => Outcome::ok(&self.info()),
            Prepared::ListAgents => Outcome::ok(&self.list_agents()),
            Prepared::SetMode(args) => self.set_mode(request_id, args),
            Prepared::ScheduleAdd(_) => Outcome::failed("schedule_add runs asynchronously"),
            Prepared::ScheduleRemove(name) => result(self.schedules.remove(&name)),
            Prepared::ScheduleList(args) => result(self.schedules.list(&args)),
            Prepared::DesiredOffer(args) => {
                let (decision, reason) = match self.offer_bundle_in_request(&args.bundle) {
                    Ok(Accepted::New) => ("new", None),
                    Ok(Accepted::Current) => ("current", None),
                    Err(refusal) => ("refused", Some(refusal.to_string())),
                };
                if args.prune && reason.is_none() {
                    self.schedules.prune_imperative();
                }
                Outcome::ok(&remote_agents_ops::DesiredOfferResult {
                    decision: decision.into(),
                    reason,
                    status: self.status(),
                })
            }
            Prepared::DesiredStatus => Outcome::ok(&self.status()),
            Prepared::DesiredGet(revision) => match revision {
                None => match self.desired.current() {
                    Some(bundle) if self.is_local_only(&bundle) => Outcome::failed(
                        "this node runs a spec from its own watched source, which it does not share",
                    ),
                    Some(bundle) => Outcome::ok(&bundle.signed),
                    None => Outcome::failed("this node has no desired state yet"),
                },
                Some(wanted) => match self.desired.find(&wanted) {
                    Ok(Some(bundle)) => Outcome::ok(&bundle),
                    Ok(None) => Outcome::failed(format!(
                        "this node keeps no bundle for `{wanted}` (see fleetctl history)"
                    )),
                    Err(e) => Outcome::failed(e),
                },
            },
            Prepared::DesiredHistory => result(self.desired.history()),
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
                if let Err(e) = crate::fs::create_dirs(&ancestor, &missing) {
                    return Outcome::failed(format!("cannot create folders: {e}"));
                }
                match self.policy().resolve(mode, &path, Intent::Write) {
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
                Err(e) => return fs_result::<()>(Err(e)),
            }
        }
        fs_result(
            crate::fs::write_atomic(&target, bytes)
                .map(|n| crate::fs::write_result(&target, n, backup_path)),
        )
    }

    fn set_mode(&self, request_id: &str, args: SetModeArgs) -> Outcome {
        // The gate checked ttl_secs against its cap; the sum saturates all the same, so no
        // ttl can wrap around to "expires now".
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
            expires_at_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        // Setting the configured mode clears the override rather than recording a no-op drift.
        let stored = (args.mode != self.configured_mode()).then_some(&record);
        if let Err(e) = self.store.set_meta(OVERRIDE_KEY, stored) {
            return Outcome::failed(e);
        }
        self.mode_override_changed();
        Outcome::ok(&SetModeResult {
            configured_mode: self.configured_mode(),
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
                self.configured_mode(),
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
            tags: self.tags(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            facts: self.facts.clone(),
            configured_mode: self.configured_mode(),
            effective_mode: self.effective_mode(),
            mode_override,
            drift,
            accepts_commands: !self.settings.no_agent.value,
            roots: self
                .policy()
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
            tags: self.tags(),
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

/// The node's own files beyond its data dir, which no request may read or write: the config
/// file it was loaded from and its operator key file.
fn node_own_files(settings: &Settings) -> Vec<PathBuf> {
    settings
        .config_file
        .value
        .iter()
        .chain(settings.operator_key.value.iter())
        .cloned()
        .collect()
}

/// A file executor's result: what it refused on what it opened (a hard link to a protected
/// file) is a refusal, like the gate's own.
fn fs_result<T: serde::Serialize>(r: Result<T, crate::fs::FsError>) -> Outcome {
    match r {
        Err(crate::fs::FsError::Refused(reason)) => Outcome::Refused { reason },
        other => result(other),
    }
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
            let operator = from.announcement.operator.as_ref().and_then(|binding| {
                crate::desired::operator::bound_operator(&from.public_key, binding)
            });
            // Progress reports become chunks of this call while the request runs.
            let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
            let progress: ProgressFn = Arc::new(move |progress, total, message| {
                let _ = progress_tx.send(ProgressChunk {
                    progress,
                    total,
                    message,
                });
            });
            let mut responder = responder;
            let work =
                node.handle_remote(&from.agent_id, operator, &request, cancel, Some(progress));
            tokio::pin!(work);
            let reply = loop {
                tokio::select! {
                    reply = &mut work => break reply,
                    Some(chunk) = progress_rx.recv() => {
                        if let Ok(bytes) = serde_json::to_vec(&chunk) {
                            // A caller that went away is noticed by `cancel`; nothing to do here.
                            let _ = responder.chunk(&bytes).await;
                        }
                    }
                }
            };
            // Progress reported just before the end still goes out ahead of the reply.
            while let Ok(chunk) = progress_rx.try_recv() {
                if let Ok(bytes) = serde_json::to_vec(&chunk) {
                    let _ = responder.chunk(&bytes).await;
                }
            }
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
        progress: Option<ProgressFn>,
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
            while let Some(event) = call.next().await {
                match event.map_err(|e| e.to_string())? {
                    crate::net::CallEvent::Response(response) => return Ok(response),
                    crate::net::CallEvent::Chunk(chunk) => {
                        // Chunks of other shapes (a newer peer's) are skipped, not fatal.
                        if let (Some(progress), Ok(report)) =
                            (&progress, serde_json::from_slice::<ProgressChunk>(&chunk))
                        {
                            progress(report.progress, report.total, report.message);
                        }
                    }
                }
            }
            Err(crate::net::CallError::Shutdown.to_string())
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

impl Node {
    /// Connects the node to its relay, when one is configured, and returns the connection with the
    /// room key. `eager`: handshake with every peer present (an MCP node lists and fans out to the
    /// room); otherwise only answer handshakes and start them on first use, so large rooms of
    /// headless nodes do not pay for a full mesh.
    pub fn connect(
        self: &Arc<Self>,
        shutdown: CancellationToken,
        eager: bool,
    ) -> anyhow::Result<Option<(crate::net::Net, remote_agents_protocol::psk::Psk)>> {
        let settings = &self.settings;
        let Some(mut config) = net_config(settings, self.announcement())? else {
            tracing::info!(agent_id = %self.agent_id, "local-only: no relay configured");
            return Ok(None);
        };
        config.session.eager_handshakes = eager;
        let handler: Option<Arc<dyn crate::net::Handler>> = if settings.no_agent.value {
            None
        } else {
            Some(Arc::new(NodeHandler { node: self.clone() }))
        };
        let psk = config.psk.clone();
        *self.psk.lock().unwrap_or_else(|e| e.into_inner()) = Some(psk.clone());
        let net = crate::net::Net::start(&self.identity, config, handler, shutdown);
        tracing::info!(agent_id = %self.agent_id, "connecting to the relay");
        *self.net.lock().unwrap_or_else(|e| e.into_inner()) = Some(net.clone());
        self.set_peers(Arc::new(NetPeers { net: net.clone() }));
        Ok(Some((net, psk)))
    }

    /// Tells peers when this node's mode or tags change: after a reconcile pass, a `set_mode`, or
    /// when a mode override expires (the reconcile controller's pass at the expiry says so), and
    /// otherwise once an hour.
    pub async fn keep_announced(
        self: Arc<Self>,
        net: crate::net::Net,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.announce.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
            net.announce(self.announcement()).await;
        }
    }
}

impl crate::desired::reconcile::Context for Node {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn mode_override_expires_at_ms(&self) -> Option<u64> {
        self.store
            .get_meta::<ModeOverride>(OVERRIDE_KEY)
            .ok()
            .flatten()
            .map(|o| o.expires_at_ms)
    }

    fn mode_override_expired(&self, expires_at_ms: u64) {
        let announced = self
            .expiry_announced_ms
            .swap(expires_at_ms, std::sync::atomic::Ordering::Relaxed);
        if announced != expires_at_ms {
            self.announce.notify_one();
        }
    }

    /// Compares `target` with what the node runs and swaps in the difference. A policy that
    /// does not compile leaves the previous one in force beside the rest of the target and is
    /// reported as refused; a schedule set that cannot be stored is retried by the controller.
    fn converge(
        &self,
        target: &crate::desired::reconcile::Target,
    ) -> Result<(), crate::desired::reconcile::ReconcileError> {
        use crate::desired::reconcile::ReconcileError;
        let live = self.live();
        let mut changes = 0;
        changes += u64::from(live.mode != target.mode);
        changes += u64::from(live.tags != target.tags);
        changes += u64::from(live.policy_config != target.policy);
        changes += u64::from(
            live.schedules
                != target
                    .schedules
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<_>>(),
        );
        changes += u64::from(live.jobs != target.jobs);
        let policy = if live.policy_config == target.policy {
            Ok(live.policy.clone())
        } else {
            live.policy
                .rebuild(&target.policy, &self.settings.data_dir.value)
                .map(Arc::new)
        };
        let mut policy_error = None;
        let policy = match policy {
            Ok(policy) => policy,
            Err(source) => {
                let error = ReconcileError::Policy {
                    generation: target.generation,
                    source,
                };
                *self.last_refusal.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(error.to_string());
                policy_error = Some(error);
                live.policy.clone()
            }
        };
        let schedules = self.schedules.set_declared(
            target
                .schedules
                .iter()
                .map(|(name, spec)| crate::schedule::DeclaredSchedule {
                    name: name.clone(),
                    spec: spec.clone(),
                    generation: target.generation,
                })
                .collect(),
        );
        if changes > 0 || live.generation != target.generation {
            let announce = live.mode != target.mode || live.tags != target.tags;
            *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Live {
                generation: target.generation,
                mode: target.mode,
                tags: target.tags.clone(),
                policy_config: target.policy.clone(),
                policy,
                schedules: target.schedules.iter().map(|(n, _)| n.clone()).collect(),
                jobs: target.jobs.clone(),
            });
            if announce {
                self.announce.notify_one();
            }
            // What converging to this generation changed; an idempotent pass keeps the figure.
            self.last_changes
                .store(changes, std::sync::atomic::Ordering::Relaxed);
        }
        schedules.map_err(ReconcileError::Schedules)?;
        policy_error.map_or(Ok(()), Err)
    }
}

impl crate::desired::controller::Reconciler for Node {
    fn reconcile(
        &self,
    ) -> Result<crate::desired::reconcile::Action, crate::desired::reconcile::ReconcileError> {
        Node::reconcile(self)
    }

    fn trigger(&self) -> &tokio::sync::Notify {
        &self.reconcile_trigger
    }
}

impl crate::schedule::runner::Host for Node {
    fn schedules(&self) -> &crate::schedule::Schedules {
        &self.schedules
    }

    fn run_local(
        self: Arc<Self>,
        envelope: Envelope,
        cancel: CancellationToken,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>> {
        Box::pin(async move {
            let ctx = CallContext {
                cancel,
                progress: None,
            };
            self.handle_local(envelope, ctx).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::NodeFlags;
    use crate::desired::{BundleContent, SignedBundle, SpecFile};

    /// An offer that finds its generation already accepted by another path (the relay's copy
    /// read at the same moment) answers `current`, and its status shows that generation in
    /// force rather than the one before it.
    #[test]
    fn an_offer_of_a_generation_accepted_elsewhere_reports_it_converged() {
        let dir = tempfile::tempdir().unwrap();
        let flags = NodeFlags {
            name: Some("web-1".into()),
            data_dir: Some(dir.path().to_path_buf()),
            mode: Some("plan".into()),
            ..NodeFlags::default()
        };
        let node =
            Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap())
                .unwrap();
        let key = OperatorKey::generate();
        let content = BundleContent {
            fleet: "lab".into(),
            generation: 1,
            revision: "r1".into(),
            issued_at_ms: 1,
            issuer: key.public(),
            files: vec![SpecFile {
                path: "fleet.yaml".into(),
                text: "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: lab}\n\
                       spec:\n  defaults: {mode: edit}\n"
                    .into(),
            }],
        };
        let signed = SignedBundle::sign(&content, &key);
        // The other path has accepted generation 1 and not converged yet.
        node.desired().offer(&signed, &node.host_facts()).unwrap();
        assert_eq!(node.status().observed_generation, 0);

        let answer = node.offer_bundle_in_request(&signed).unwrap();
        assert!(matches!(answer, Accepted::Current));
        let status = node.status();
        assert_eq!(status.observed_generation, 1, "{status:?}");
        assert_eq!(node.effective_mode(), Mode::Edit);
    }

    fn edit_node(dir: &std::path::Path) -> Arc<Node> {
        let flags = NodeFlags {
            name: Some("numbers".into()),
            data_dir: Some(dir.to_path_buf()),
            mode: Some("edit".into()),
            ..NodeFlags::default()
        };
        Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap()).unwrap()
    }

    async fn call(node: &Arc<Node>, request: Request) -> Outcome {
        let envelope = Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            caller: Caller::McpLocal,
            request,
        };
        node.handle_local(envelope, CallContext::default()).await
    }

    /// Authorization names every kind of caller: the local ones run, and a caller that is not
    /// authenticated (a fan-out's own label, none, or text no kind spells) runs nothing, even
    /// on a node whose fleet lists no operators.
    #[tokio::test]
    async fn a_caller_that_is_not_authenticated_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let node = edit_node(dir.path());
        let work = tempfile::tempdir().unwrap();
        let marker = work.path().join("marker");
        let write = |content: &str| {
            Request::WriteFile(remote_agents_ops::WriteFileArgs {
                agent_id: None,
                path: marker.display().to_string(),
                content: content.into(),
                encoding: Default::default(),
                create_dirs: false,
            })
        };
        for caller in [
            Caller::Fleet { caller: "x".into() },
            Caller::MapReduce { caller: "x".into() },
            Caller::Unstated,
            Caller::from("root"),
        ] {
            let envelope = Envelope {
                id: uuid::Uuid::new_v4().to_string(),
                caller: caller.clone(),
                request: write("x"),
            };
            let outcome = node.handle_local(envelope, CallContext::default()).await;
            assert!(
                matches!(&outcome, Outcome::Refused { reason } if reason.contains("not authenticated")),
                "{caller}: {outcome:?}"
            );
            assert!(!marker.exists(), "{caller} wrote the file");
        }
        for caller in [
            Caller::McpLocal,
            Caller::Cli,
            Caller::Spec { generation: 1 },
        ] {
            let envelope = Envelope {
                id: uuid::Uuid::new_v4().to_string(),
                caller: caller.clone(),
                request: write("ok"),
            };
            let outcome = node.handle_local(envelope, CallContext::default()).await;
            assert!(
                matches!(outcome, Outcome::Ok { .. }),
                "{caller}: {outcome:?}"
            );
        }
    }

    /// `exec timeout_secs=1e300` panicked in the gate (`Duration::from_secs_f64`); NaN and
    /// negative timeouts were silently replaced by the default, and max_output_bytes had no
    /// ceiling. Each is now refused, naming the field.
    #[tokio::test]
    async fn exec_numbers_out_of_range_are_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let node = edit_node(dir.path());
        let exec = |timeout_secs: Option<f64>, max_output_bytes: Option<usize>| {
            Request::Exec(remote_agents_ops::ExecArgs {
                agent_id: None,
                argv: vec!["true".into()],
                shell: false,
                cwd: None,
                env: BTreeMap::new(),
                stdin: None,
                timeout_secs,
                max_output_bytes,
            })
        };
        for timeout in [1e300, f64::NAN, -1.0] {
            let outcome = call(&node, exec(Some(timeout), None)).await;
            assert!(
                matches!(&outcome, Outcome::Refused { reason } if reason.contains("timeout_secs")),
                "{timeout}: {outcome:?}"
            );
        }
        let outcome = call(&node, exec(None, Some(1 << 40))).await;
        assert!(
            matches!(&outcome, Outcome::Refused { reason } if reason.contains("max_output_bytes")),
            "{outcome:?}"
        );
        let outcome = call(&node, exec(Some(5.0), None)).await;
        assert!(matches!(outcome, Outcome::Ok { .. }), "{outcome:?}");
    }

    /// `set_mode ttl_secs=2^64-1` wrapped the expiry around to "expires now" (and overflowed in
    /// a debug build). It is refused now, and the mode stays as it was.
    #[tokio::test]
    async fn set_mode_with_a_ttl_beyond_a_year_is_refused_not_expired_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let node = edit_node(dir.path());
        let set_mode = |ttl_secs: u64| {
            Request::SetMode(SetModeArgs {
                agent_id: None,
                mode: Mode::Plan,
                ttl_secs: Some(ttl_secs),
                reason: None,
            })
        };
        let outcome = call(&node, set_mode(u64::MAX)).await;
        assert!(
            matches!(&outcome, Outcome::Refused { reason } if reason.contains("ttl_secs")),
            "{outcome:?}"
        );
        assert_eq!(node.effective_mode(), Mode::Edit);
        // The longest allowed ttl holds for (almost) a year, not for no time at all.
        let outcome = call(&node, set_mode(remote_agents_ops::MAX_TTL_SECS)).await;
        assert!(matches!(outcome, Outcome::Ok { .. }), "{outcome:?}");
        assert_eq!(node.effective_mode(), Mode::Plan);
        let expires = node.mode_override().unwrap().expires_at_ms;
        assert!(expires > now_ms() + 365 * 24 * 3600 * 1000, "{expires}");
    }

    /// A crash during a write left its temp file beside the target forever; the next start
    /// removes it (and only it), found through the journal's interrupted write.
    #[test]
    fn a_write_interrupted_by_a_crash_has_its_temp_file_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("files");
        std::fs::create_dir_all(&root).unwrap();
        let flags = NodeFlags {
            name: Some("web-1".into()),
            data_dir: Some(dir.path().join("data")),
            mode: Some("edit".into()),
            ..NodeFlags::default()
        };
        let settings = Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap();
        let target = root.join("config.toml");
        let suffix = "0123456789abcdef0123456789abcdef";
        let leftover = root.join(format!(".config.toml.ra-tmp-{suffix}"));
        let others = [
            root.join(format!(".other.toml.ra-tmp-{suffix}")),
            root.join(".config.toml.ra-tmp-not-one-of-ours"),
            target.clone(),
        ];
        {
            let node = Node::open(settings.clone()).unwrap();
            // What a node killed between its temp file and the rename leaves behind.
            node.store
                .record(&JournalEntry {
                    id: "w1".into(),
                    caller: "mcp:local".into(),
                    op: "write_file".into(),
                    summary: format!("write_file {} (3 chars)", target.display()),
                    stage: Stage::Started,
                    received_at_ms: now_ms(),
                    outcome: None,
                    write_target: Some(target.display().to_string()),
                })
                .unwrap();
            std::fs::write(&leftover, "new").unwrap();
            for other in &others {
                std::fs::write(other, "keep").unwrap();
            }
        }
        let node = Node::open(settings).unwrap();
        assert!(
            !leftover.exists(),
            "the interrupted write's temp file is still there"
        );
        for other in &others {
            assert!(other.exists(), "{} was removed", other.display());
        }
        let entry = node.store.lookup("w1").unwrap().unwrap();
        assert!(matches!(
            entry.outcome,
            Some(Outcome::OutcomeUnknown { .. })
        ));
    }

    fn node_with_config(dir: &std::path::Path, mode: &str) -> (Arc<Node>, PathBuf) {
        let base = std::fs::canonicalize(dir).unwrap();
        let config = base.join("cfg/node.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, "").unwrap();
        let flags = NodeFlags {
            name: Some("trust".into()),
            data_dir: Some(base.join("data")),
            config: Some(config.clone()),
            mode: Some(mode.into()),
            ..NodeFlags::default()
        };
        let node =
            Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap())
                .unwrap();
        (node, base)
    }

    fn write_request(path: &std::path::Path, content: &str, create_dirs: bool) -> Request {
        Request::WriteFile(remote_agents_ops::WriteFileArgs {
            agent_id: None,
            path: path.display().to_string(),
            content: content.into(),
            encoding: remote_agents_ops::Encoding::Utf8,
            create_dirs,
        })
    }

    /// A `write`-only operator rewrote the node's config file (`mode = "bypass"`, itself as
    /// operator) and had exec after a restart; a read-only one read it. The file the node was
    /// loaded from is refused for both, in bypass mode too.
    #[tokio::test]
    async fn the_config_file_the_node_loaded_is_neither_readable_nor_writable_in_bypass() {
        let dir = tempfile::tempdir().unwrap();
        let (node, base) = node_with_config(dir.path(), "bypass");
        let config = base.join("cfg/node.toml");
        let read = call(
            &node,
            Request::ReadFile(remote_agents_ops::ReadFileArgs {
                agent_id: None,
                path: config.display().to_string(),
                offset: None,
                length: None,
            }),
        )
        .await;
        assert!(
            matches!(&read, Outcome::Refused { reason } if reason.contains("hard limit")),
            "{read:?}"
        );
        let written = call(&node, write_request(&config, "mode = \"bypass\"", false)).await;
        assert!(
            matches!(&written, Outcome::Refused { reason } if reason.contains("hard limit")),
            "{written:?}"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "");
    }

    /// A refused `write_file` with `create_dirs` still created the folders on the way: the
    /// gate decides on the file and every folder before one is made.
    #[tokio::test]
    async fn a_refused_write_with_create_dirs_leaves_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (node, base) = node_with_config(dir.path(), "bypass");
        let path = base.join("data/new/sub/file");
        let outcome = call(&node, write_request(&path, "x", true)).await;
        assert!(matches!(&outcome, Outcome::Refused { .. }), "{outcome:?}");
        assert!(!base.join("data/new").exists(), "a folder was made");
        // Allowed folders are still made.
        let path = base.join("work/a/b.txt");
        let outcome = call(&node, write_request(&path, "x", true)).await;
        assert!(matches!(&outcome, Outcome::Ok { .. }), "{outcome:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
    }

    /// Whether `notify` holds a notification nobody took yet (taking it).
    fn take_notification(notify: &tokio::sync::Notify) -> bool {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.enable()
    }

    /// A mode override makes a pass requeue at its expiry; the first pass after the expiry tells
    /// peers the mode changed back, and later passes do not tell them again.
    #[test]
    fn a_pass_requeues_at_the_mode_override_expiry_and_announces_its_end_once() {
        use crate::desired::reconcile::Action;
        let dir = tempfile::tempdir().unwrap();
        let node = edit_node(dir.path());
        assert_eq!(node.reconcile().unwrap(), Action::AwaitChange);
        let set_override = |expires_at_ms: u64| {
            let record = ModeOverride {
                mode: Mode::Plan,
                set_by: "test".into(),
                reason: None,
                set_at_ms: 0,
                expires_at_ms,
            };
            node.store.set_meta(OVERRIDE_KEY, Some(&record)).unwrap();
        };
        set_override(now_ms() + 60_000);
        match node.reconcile().unwrap() {
            Action::Requeue(delay) => assert!(
                delay <= Duration::from_secs(60) && delay > Duration::from_secs(50),
                "{delay:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(!take_notification(&node.announce));
        set_override(now_ms() - 1);
        assert_eq!(node.reconcile().unwrap(), Action::AwaitChange);
        assert!(take_notification(&node.announce), "the end is announced");
        assert_eq!(node.reconcile().unwrap(), Action::AwaitChange);
        assert!(!take_notification(&node.announce), "and only once");
    }
}
