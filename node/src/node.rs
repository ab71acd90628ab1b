//! The node: wires settings, policy, store, facts and executors together and handles one
//! `ops::Envelope` at a time — journal (received → started → finished), policy gate, executor,
//! audit. Requests naming another `agent_id` are forwarded through `Peers` (the net RPC) and run
//! on that peer under its own policy; requests arriving from peers enter through
//! `handle_remote` and take exactly the same local path.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::AuditRecord;
use crate::config::Settings;
use crate::desired::{Accepted, DesiredState, OperatorKey};
use crate::exec;
use crate::facts::Facts;
use crate::identity::Identity;
use crate::journal::now_ms;
use crate::journal::{JournalEntry, Stage, Store, StoreError};
use crate::policy::{Intent, Mode, Policy, PolicyError, Refusal};
use remote_agents_ops::{AgentSummary, Caller, Envelope, ModeOverride, Outcome, Reply, Request};

// Each operation's gate check and execution, in a module of its own.
pub(crate) mod operations;

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

/// The other nodes, as seen through the relay. Implemented over `net` when a relay is
/// configured; absent when the node is local-only.
pub trait Peers: Send + Sync {
    /// Sends `envelope` as it is to `agent_id` and returns the peer's outcome; the peer's
    /// progress reports, if any, go to `progress`.
    fn call<'a>(
        &'a self,
        agent_id: &'a str,
        envelope: &'a Envelope,
        deadline: Duration,
        progress: Option<ProgressFn>,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, crate::client::CallError>> + Send + 'a>>;
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
    #[error(transparent)]
    Tasks(#[from] crate::task::TaskStoreError),
}

const OVERRIDE_KEY: &str = "mode_override";
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
    /// The last change-window override this node let through (its audit note), for status.
    last_window_override: Mutex<Option<String>>,
    /// The newest rollout wave offered that left this host out, until it takes a generation.
    outside_wave: Mutex<Option<String>>,
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
    /// The files this node serves to transfers and the transfers it coordinates.
    transfers: Arc<crate::transfer::Transfers>,
    /// The autonomous tasks this host runs and ran.
    tasks: Arc<crate::task::Tasks>,
    /// The newest generation accepted, and whether it came by catching up (from the relay's
    /// copy or a peer) rather than by an apply: declared `on-apply` jobs run for applies only.
    last_acceptance: Mutex<(u64, bool)>,
    /// Wakes the declared jobs' trigger runner once a new generation is in force.
    /// Shared so a task can wake the trigger runner later (when this node's presence table is
    /// read, for a declared job's coordinator rule).
    declared_jobs_changed: Arc<tokio::sync::Notify>,
    /// The newest runs of declared jobs this node coordinated, for `status` (the trigger
    /// runner keeps it current from the job history).
    declared_runs: Mutex<Vec<remote_agents_ops::status::DeclaredJobRun>>,
}

/// The configuration the node runs under right now.
#[derive(Clone)]
struct Live {
    /// 0 before any bundle: the local config decides.
    generation: u64,
    mode: Mode,
    tags: Vec<String>,
    /// The facts announced: the live ones, with those the applied spec declares over them.
    facts: BTreeMap<String, String>,
    policy_config: crate::policy::PolicyConfig,
    policy: Arc<Policy>,
    schedules: Vec<String>,
    jobs: Vec<String>,
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
        let transfers = crate::transfer::Transfers::with_store(store.clone())?;
        let tasks = crate::task::Tasks::open(store.clone(), settings.tasks.value.clone())?;
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
        let facts = crate::facts::gather();
        let live = Live {
            generation: 0,
            mode: settings.mode.value,
            tags: settings.tags.value.clone(),
            facts: facts.to_map(),
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
            last_window_override: Mutex::new(None),
            outside_wave: Mutex::new(None),
            source_condition: Mutex::new(None),
            announce: tokio::sync::Notify::new(),
            last_changes: std::sync::atomic::AtomicU64::new(0),
            reconciling: Mutex::new(()),
            reconcile_trigger: tokio::sync::Notify::new(),
            expiry_announced_ms: std::sync::atomic::AtomicU64::new(expiry_announced_ms),
            store,
            facts,
            agent_id,
            in_flight: Mutex::new(HashSet::new()),
            peers: Mutex::new(None),
            net: Mutex::new(None),
            schedules,
            transfers,
            tasks,
            last_acceptance: Mutex::new((0, false)),
            declared_jobs_changed: Arc::new(tokio::sync::Notify::new()),
            declared_runs: Mutex::new(Vec::new()),
        });
        // Converge to the bundle kept from the last run before anything else is asked.
        node.reconcile_inline();
        *node
            .last_acceptance
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (node.desired.generation(), false);
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

    /// The files this node serves to transfers and the transfers it coordinates.
    pub fn transfers(&self) -> &Arc<crate::transfer::Transfers> {
        &self.transfers
    }

    /// The autonomous tasks this host runs and ran.
    pub fn tasks(&self) -> &Arc<crate::task::Tasks> {
        &self.tasks
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
        self.after_offer(bundle, result, source)
    }

    /// `offer_bundle` inside a request, whose audit commit makes the stored bundle
    /// durable before the answer goes out (one durable commit per apply instead of two).
    fn offer_bundle_in_request(
        &self,
        bundle: &crate::desired::SignedBundle,
    ) -> Result<Accepted, crate::desired::Refusal> {
        let result = self.desired.offer_before_commit(bundle, &self.host_facts());
        self.after_offer(bundle, result, "request")
    }

    fn after_offer(
        &self,
        bundle: &crate::desired::SignedBundle,
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
            // Not a refusal: the node is healthy at its generation, waiting for its wave.
            Ok(Accepted::OutsideWave) => {
                tracing::debug!(source, "a rollout wave that does not include this host");
                // Authenticated by the offer; what it claims is only shown in status.
                if let Some(content) = bundle.peek()
                    && let Some(scope) = &content.rollout
                {
                    let what = if scope.rollback {
                        format!("the rollback of rollout {}", scope.rollout)
                    } else {
                        format!(
                            "rollout {}, wave {} {}/{}",
                            scope.rollout, scope.wave, scope.index, scope.waves
                        )
                    };
                    *self.outside_wave.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                        "generation {} ({what}) is for {} other host(s); this host stays at \
                         generation {}",
                        content.generation,
                        scope.hosts.len(),
                        self.desired.generation()
                    ));
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
        *self.outside_wave.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(
            generation = self.desired.generation(),
            source,
            "applied desired state"
        );
        self.reconcile_inline();
        // Catching up (the relay's copy, a peer's) is not an apply: the fleet applied it while
        // this node was away, and the node that coordinated its `on-apply` jobs then ran them.
        let caught_up = matches!(source, "relay" | "peer");
        *self
            .last_acceptance
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (self.desired.generation(), caught_up);
        self.declared_jobs_changed.notify_one();
    }

    /// The newest generation accepted, and whether it came by catching up rather than by an
    /// apply.
    pub fn last_acceptance(&self) -> (u64, bool) {
        *self
            .last_acceptance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the newest runs of declared jobs that `status` reports.
    pub fn set_declared_runs(&self, runs: Vec<remote_agents_ops::status::DeclaredJobRun>) {
        *self.declared_runs.lock().unwrap_or_else(|e| e.into_inner()) = runs;
    }

    /// Notified once a newly accepted generation is in force (the declared jobs' trigger
    /// runner waits on it).
    pub fn declared_jobs_changed(&self) -> &tokio::sync::Notify {
        &self.declared_jobs_changed
    }

    /// A handle on [`Node::declared_jobs_changed`] that outlives a borrow of the node.
    pub(crate) fn declared_jobs_waker(&self) -> Arc<tokio::sync::Notify> {
        self.declared_jobs_changed.clone()
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
        if let Some(bundle) = &bundle
            && bundle.model.windows().next().is_some()
        {
            let host = remote_agents_spec::HostFacts {
                name: self.settings.name.value.clone(),
                tags: live.tags.iter().cloned().collect(),
                facts: self.facts.to_map(),
            };
            let closed = bundle.model.change_window_closed(&host, chrono::Utc::now());
            conditions.push(Condition {
                kind: "ChangeWindow".into(),
                status: closed.is_some(),
                reason: if closed.is_some() { "Closed" } else { "Open" }.into(),
                message: closed.map(|c| c.to_string()).unwrap_or_default(),
            });
        }
        if let Some(note) = self
            .outside_wave
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            conditions.push(Condition {
                kind: "RolloutWave".into(),
                status: true,
                reason: "OutsideWave".into(),
                message: note,
            });
        }
        if let Some(note) = self
            .last_window_override
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            conditions.push(Condition {
                kind: "WindowOverridden".into(),
                status: true,
                reason: "Override".into(),
                message: note,
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
            job_runs: self
                .declared_runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
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
        self.authorize_capability(caller, capability)?;
        match request.also_needs() {
            Some((also, _, asked_by)) => self
                .authorize_capability(caller, also)
                .map_err(|e| format!("{asked_by}: {e}")),
            None => Ok(()),
        }
    }

    /// Whether `caller` may use `capability` here (see `authorize`).
    fn authorize_capability(
        &self,
        caller: &Caller,
        capability: remote_agents_spec::Capability,
    ) -> Result<(), String> {
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

    /// What a model may use on this host: the applied spec's `McpSurface`s that select it.
    pub fn mcp_surface(&self) -> Option<remote_agents_spec::effective::EffectiveMcpSurface> {
        let bundle = self.desired.current()?;
        bundle
            .model
            .effective_config(&self.host_facts())
            .mcp_surface
    }

    /// The McpSurface's judgement of a model's `request` on this host: refused when its
    /// operation's toolset is not on the surface or it would change the host under a read-only
    /// (`plan`) or `disabled` ceiling; otherwise the mode ceiling the gate then applies (the
    /// lower of it and the node's mode). Without a surface, models are governed as any caller.
    fn surface_ceiling(&self, request: &Request) -> Result<Option<Mode>, Refusal> {
        let Some(surface) = self.mcp_surface() else {
            return Ok(None);
        };
        let host = &self.settings.name.value;
        let (op, toolset) = match request.also_needs() {
            Some((_, also, asked_by)) if surface.allows(request.toolset()) => (asked_by, also),
            _ => (request.name(), request.toolset()),
        };
        if !surface.allows(toolset) {
            let allowed: Vec<&str> = surface.toolsets.iter().map(|t| t.as_str()).collect();
            return Err(Refusal {
                reason: format!(
                    "{op} is in the `{toolset}` toolset, which {} withholds from models on host \
                     {host} (it allows {})",
                    surface.describe(),
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            });
        }
        match surface.max_mode {
            Some(Mode::Disabled) => Err(Refusal {
                reason: format!(
                    "{} sets maxMode disabled for models on host {host}: no request of a model \
                     runs there",
                    surface.describe()
                ),
            }),
            Some(Mode::Plan) if !request.is_read_only() => Err(Refusal {
                reason: format!(
                    "{op} changes the host, and {} makes host {host} read-only for models \
                     (maxMode plan)",
                    surface.describe()
                ),
            }),
            ceiling => Ok(ceiling),
        }
    }

    /// Whether the applied spec's change windows let `request` change this host now. Reads,
    /// status and set_mode (the way out of a bad state) are never held; writes, exec, git,
    /// schedules and transfers are, from every caller (the spec's own scheduled runs too),
    /// unless the request carries an override with a reason, which the audit records (the
    /// returned note). Applies are judged where bundles are taken (`desired::state`).
    fn change_window(
        &self,
        request: &Request,
        override_reason: Option<&str>,
    ) -> Result<Option<String>, Refusal> {
        use remote_agents_spec::Capability;
        let offered = match request {
            Request::DesiredOffer(args) => Some(&args.bundle),
            _ => None,
        };
        if offered.is_none()
            && !matches!(
                request.capability(),
                Some(
                    Capability::Write
                        | Capability::Exec
                        | Capability::Git
                        | Capability::Schedule
                        | Capability::Task
                )
            )
        {
            return Ok(None);
        }
        let Some(closed) = self.change_window_closed() else {
            return Ok(None);
        };
        if let Some(offered) = offered {
            // The desired state judges the offer (every path a bundle takes meets the same
            // window); here only a newer generation's signed override is noted for the audit.
            let note = offered.authenticate().ok().and_then(|b| {
                let reason = crate::desired::state::window_override_reason(&b.content)?;
                (b.content.generation > self.desired.generation()).then(|| {
                    format!(
                        "change window `{}` overridden by the bundle's signer: {reason}",
                        closed.window
                    )
                })
            });
            return Ok(note);
        }
        match override_reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(reason) => Ok(Some(format!(
                "change window `{}` overridden: {reason}",
                closed.window
            ))),
            None => Err(Refusal {
                reason: format!(
                    "{closed}; to change anyway, give an override with a reason \
                     (fleetctl --override-window REASON, or the MCP tool's `override_window`)"
                ),
            }),
        }
    }

    /// The change window of the applied spec that closes this host now, if one does.
    pub fn change_window_closed(&self) -> Option<remote_agents_spec::window::Closed> {
        let bundle = self.desired.current()?;
        let host = remote_agents_spec::HostFacts {
            name: self.settings.name.value.clone(),
            tags: self.tags().into_iter().collect(),
            facts: self.facts.to_map(),
        };
        bundle.model.change_window_closed(&host, chrono::Utc::now())
    }

    /// The announcement peers see: name, tags, facts, mode, and the operator binding.
    fn announcement(&self) -> remote_agents_protocol::message::Announcement {
        remote_agents_protocol::message::Announcement {
            name: self.settings.name.value.clone(),
            tags: self.tags(),
            facts: self.live().facts.clone(),
            mode: self.effective_mode().to_string(),
            accepts_commands: !self.settings.no_agent.value,
            operator: self
                .operator_key
                .as_ref()
                .map(|key| key.bind(&self.identity.public_key())),
        }
    }

    /// This node as its peers' selectors see it, from what it announces: its name, the tags in
    /// force and its facts.
    pub fn announced_host(&self) -> remote_agents_spec::HostFacts {
        let announcement = self.announcement();
        let mut facts = announcement.facts;
        // As `fleet::remote::host_facts` reads a peer: selectors spell the OS family `os:`.
        if let Some(family) = facts.get("os_family").cloned() {
            facts.entry("os".to_string()).or_insert(family);
        }
        remote_agents_spec::HostFacts {
            name: announcement.name,
            tags: announcement.tags.into_iter().collect(),
            facts,
        }
    }

    /// Whether `agent_id` names this node (its id or its name) rather than a peer.
    pub fn is_local(&self, agent_id: &str) -> bool {
        agent_id == self.agent_id || agent_id == self.settings.name.value
    }

    /// Handles a request from the local MCP server or CLI: forwards it when it names a peer.
    pub async fn handle(self: &Arc<Self>, mut envelope: Envelope, ctx: CallContext) -> Outcome {
        // This machine's MCP client is a model: what it asks of a peer is marked so, and the
        // peer applies its own McpSurface.
        if envelope.caller == Caller::McpLocal {
            envelope.on_behalf_of_model = true;
        }
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
            // A receive lasts as long as its file takes; cancelling the call stops it.
            Request::TransferReceive(_) => crate::transfer::RECEIVE_DEADLINE,
            _ => Duration::from_secs(60),
        } + FORWARD_SLACK;
        let call = peers.call(&agent, &envelope, timeout, ctx.progress.clone());
        let answer = tokio::select! {
            r = call => r,
            _ = ctx.cancel.cancelled() => return Outcome::failed(
                "cancelled before the peer answered; the peer may still finish the request"),
        };
        // The peer's own outcome passes through; a failed call reads as the RPC client words
        // it everywhere, naming the agent.
        answer.unwrap_or_else(|error| {
            Outcome::failed(format!("cannot reach agent `{agent}`: {error}"))
        })
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
            on_behalf_of_model,
            window_override,
        } = envelope;
        // This machine's MCP client is a model whether or not it said so.
        let model = on_behalf_of_model || caller == Caller::McpLocal;
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
        let outcome = self
            .run_journaled(&id, caller, model, request, window_override, ctx)
            .await;
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
        model: bool,
        request: Request,
        window_override: Option<String>,
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
        let mut mode = self.effective_mode();
        let mut overridden = None;
        let prepared = match self.authorize(&caller, &request) {
            Ok(()) => match self.change_window(&request, window_override.as_deref()) {
                Err(refusal) => Err(refusal),
                Ok(note) => {
                    overridden = note;
                    match model.then(|| self.surface_ceiling(&request)) {
                        Some(Err(refusal)) => Err(refusal),
                        Some(Ok(ceiling)) => {
                            // A disabled node stays disabled; otherwise the lower of the two.
                            if let Some(ceiling) = ceiling
                                && mode != Mode::Disabled
                            {
                                mode = mode.min(ceiling);
                            }
                            operations::check(self, mode, request)
                        }
                        None => operations::check(self, mode, request),
                    }
                }
            },
            Err(reason) => Err(Refusal {
                reason: format!("not authorized: {reason}"),
            }),
        };
        let (decision, prepared) = match prepared {
            Ok(p) => match overridden {
                Some(note) => {
                    *self
                        .last_window_override
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(note.clone());
                    (format!("allowed (mode {mode}; {note})"), p)
                }
                None => (format!("allowed (mode {mode})"), p),
            },
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
        let call = operations::Call {
            request_id: id.to_string(),
            caller: entry.caller.clone(),
            ctx,
        };
        let outcome = prepared.execute(self.clone(), call).await;
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
            // A transfer's chunk pull: authorized by its ticket, which names this peer.
            if let Some(pull) = crate::transfer::path::decode_pull(&request) {
                let transfers = node.transfers.clone();
                crate::transfer::path::serve(transfers, from.agent_id, pull, responder).await;
                return;
            }
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
        envelope: &'a Envelope,
        deadline: Duration,
        progress: Option<ProgressFn>,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, crate::client::CallError>> + Send + 'a>> {
        use crate::client::{CallError, Client};
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
                    return Err(CallError::NotConnected(format!(
                        "no connected peer has agent id or name `{agent_id}`; call list_agents"
                    )));
                }
                (None, _) => {
                    return Err(CallError::NotConnected(format!(
                        "several peers are named `{agent_id}`; use the agent_id from list_agents"
                    )));
                }
            };
            if !peer.announcement.accepts_commands {
                return Err(CallError::NotConnected(format!(
                    "agent `{agent_id}` runs with --no-agent and accepts no commands"
                )));
            }
            let on_chunk = |chunk: &[u8]| {
                // Chunks of other shapes (a newer peer's) are skipped, not fatal.
                if let (Some(progress), Ok(report)) =
                    (&progress, serde_json::from_slice::<ProgressChunk>(chunk))
                {
                    progress(report.progress, report.total, report.message);
                }
            };
            Client::new(self.net.clone(), envelope.caller.clone())
                .send(peer.peer_id, envelope, deadline, Some(&on_chunk))
                .await
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
    config.direct.enabled = settings.direct.value;
    config.direct.reflector = settings.udp_reflector.value.clone();
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
        // A node that addresses the room (MCP) follows its presence from the start. A headless
        // node does not: it answers whoever reaches out, and a room of thousands of them
        // reconnecting would otherwise cost the relay a frame per pair. Its duties that read
        // the room start following when they need to (a declared job's coordinator rule:
        // `mapreduce::trigger`; publishing in watch mode: `meet_present`).
        config.subscribe_presence = eager;
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
        changes += u64::from(live.facts != target.facts);
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
            let announce =
                live.mode != target.mode || live.tags != target.tags || live.facts != target.facts;
            *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Live {
                generation: target.generation,
                mode: target.mode,
                tags: target.tags.clone(),
                facts: target.facts.clone(),
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

    use remote_agents_ops::SetModeArgs;

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
        let content = lab_generation_1(
            &key,
            "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: lab}\n\
                       spec:\n  defaults: {mode: edit}\n",
        );
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

    /// Generation 1 of fleet `lab`: one `fleet.yaml` holding `text`, issued by `key`.
    fn lab_generation_1(key: &OperatorKey, text: &str) -> BundleContent {
        BundleContent {
            fleet: "lab".into(),
            generation: 1,
            revision: "r1".into(),
            issued_at_ms: 1,
            issuer: key.public(),
            files: vec![SpecFile {
                path: "fleet.yaml".into(),
                text: text.into(),
            }],
            window_override: None,
            rollout: None,
        }
    }

    /// `hosts[].facts` in the spec override the host's live facts for the spec's own selectors
    /// and, since they are announced, for its peers' (fan-outs, MapReduce targets, the
    /// coordinator of a declared job): accepted and enforced alike.
    #[test]
    fn facts_the_spec_declares_for_a_host_are_announced() {
        let dir = tempfile::tempdir().unwrap();
        let flags = NodeFlags {
            name: Some("web-1".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..NodeFlags::default()
        };
        let node =
            Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap())
                .unwrap();
        assert!(!node.announced_host().facts.contains_key("rack"));
        let key = OperatorKey::generate();
        let content = lab_generation_1(
            &key,
            "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: lab}\n\
                       spec:\n  hosts:\n    - {name: web-1, facts: {rack: r7}}\n",
        );
        node.offer_bundle(&SignedBundle::sign(&content, &key), "test")
            .unwrap();
        let announced = node.announced_host();
        assert_eq!(announced.facts.get("rack").map(String::as_str), Some("r7"));
        // The live facts are still there beside the declared one.
        assert!(announced.facts.contains_key("os_family"), "{announced:?}");
        assert!(
            remote_agents_spec::Selector::parse("fact:rack=r7")
                .unwrap()
                .matches(&announced)
        );
    }

    /// `desired_plan` checks spec files as a bundle's would be and plans them against the
    /// applied generation, applying nothing: a new rule is `+`, the applied files are
    /// `unchanged`, and a bad field is refused with its file, line and column.
    #[tokio::test]
    async fn desired_plan_plans_spec_files_against_the_applied_generation() {
        use remote_agents_ops::{DesiredPlanArgs, DesiredPlanResult};
        let dir = tempfile::tempdir().unwrap();
        let node = edit_node(dir.path());
        let fleet = "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: lab}\n\
                     spec:\n  hosts:\n    - {name: numbers, tags: [web]}\n";
        let plan = |text: &str| {
            Request::DesiredPlan(DesiredPlanArgs {
                files: vec![SpecFile {
                    path: "fleet.yaml".into(),
                    text: text.into(),
                }],
                agent_id: None,
            })
        };
        let decode = |outcome: Outcome| match outcome {
            Outcome::Ok { result } => serde_json::from_value::<DesiredPlanResult>(result).unwrap(),
            other => panic!("{other:?}"),
        };

        // Nothing applied: everything is new.
        let first = decode(call(&node, plan(fleet)).await);
        assert_eq!((first.fleet.as_str(), first.generation), ("lab", 0));
        assert!(!first.unchanged);
        assert!(first.add >= 1, "{first:?}");
        assert!(first.text.contains("Plan: "), "{}", first.text);
        assert_eq!(
            node.status().observed_generation,
            0,
            "a plan applies nothing"
        );

        let key = OperatorKey::generate();
        node.offer_bundle(
            &SignedBundle::sign(&lab_generation_1(&key, fleet), &key),
            "test",
        )
        .unwrap();
        let same = decode(call(&node, plan(fleet)).await);
        assert_eq!((same.generation, same.revision.as_deref()), (1, Some("r1")));
        assert!(same.unchanged, "{same:?}");
        assert_eq!(same.text, "No changes. The desired state matches.\n");

        let with_rule = format!("{fleet}  rules:\n    - {{target: web, mode: plan}}\n");
        let changed = decode(call(&node, plan(&with_rule)).await);
        assert!(!changed.unchanged);
        assert!(changed.text.contains("+ "), "{}", changed.text);

        let bad = fleet.replace("tags: [web]", "tags: [web], mode: sideways");
        match call(&node, plan(&bad)).await {
            Outcome::Failed { error } => {
                assert!(error.starts_with("the spec has errors"), "{error}");
                assert!(
                    error.contains("fleet.yaml:6:42: error[unknown-mode]: unknown mode `sideways`"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(node.status().observed_generation, 1);
    }

    /// `file_remove` (a move's second half): removes a regular file only while it has the
    /// size and modification time the caller copied, keeps it as a backup in edit mode (listed
    /// by `backups`), and refuses folders, and everything in plan mode.
    #[tokio::test]
    async fn file_remove_removes_only_the_file_as_copied_keeping_a_backup_in_edit_mode() {
        use remote_agents_ops::{FileRemoveArgs, FileRemoveResult};
        let dir = tempfile::tempdir().unwrap();
        let node = edit_node(dir.path());
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("report.csv");
        std::fs::write(&file, b"a,b\n1,2\n").unwrap();
        let modified = std::fs::metadata(&file)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let remove = |path: &std::path::Path, size: Option<u64>, modified_ms: Option<u64>| {
            Request::FileRemove(FileRemoveArgs {
                agent_id: None,
                path: path.display().to_string(),
                expect_size: size,
                expect_modified_ms: modified_ms,
            })
        };

        match call(&node, remove(&file, Some(3), Some(modified))).await {
            Outcome::Failed { error } => {
                assert!(error.contains("is 8 bytes, not the 3 expected"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        match call(&node, remove(&file, Some(8), Some(modified + 1))).await {
            Outcome::Failed { error } => assert!(error.contains("it changed"), "{error}"),
            other => panic!("{other:?}"),
        }
        match call(&node, remove(work.path(), None, None)).await {
            Outcome::Refused { reason } => assert!(reason.contains("is a directory"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(
            file.exists(),
            "nothing is removed while it is not as expected"
        );

        let removed = match call(&node, remove(&file, Some(8), Some(modified))).await {
            Outcome::Ok { result } => serde_json::from_value::<FileRemoveResult>(result).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(!file.exists());
        assert_eq!(removed.size, 8);
        let backup = removed.backup.expect("edit mode keeps a backup");
        assert_eq!(std::fs::read(&backup).unwrap(), b"a,b\n1,2\n");
        let backups = call(
            &node,
            Request::Backups(remote_agents_ops::BackupsArgs {
                agent_id: None,
                path: None,
            }),
        )
        .await;
        assert!(
            matches!(&backups, Outcome::Ok { result } if result.to_string().contains(&backup)),
            "{backups:?}"
        );
        match call(&node, remove(&file, None, None)).await {
            Outcome::Failed { error } => assert!(error.contains("No such file"), "{error}"),
            other => panic!("{other:?}"),
        }

        let plan_dir = tempfile::tempdir().unwrap();
        let flags = NodeFlags {
            name: Some("planned".into()),
            data_dir: Some(plan_dir.path().to_path_buf()),
            mode: Some("plan".into()),
            ..NodeFlags::default()
        };
        let planned =
            Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap())
                .unwrap();
        std::fs::write(&file, b"kept").unwrap();
        match call(&planned, remove(&file, None, None)).await {
            Outcome::Refused { reason } => assert!(reason.contains("plan mode"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(file.exists());
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
            on_behalf_of_model: false,
            window_override: None,
        };
        node.handle_local(envelope, CallContext::default()).await
    }

    /// A host's McpSurface governs models only: a model (the local MCP client, or a peer's
    /// request marked on behalf of one) is refused a toolset the surface withholds, and runs
    /// under the surface's ceiling (here edit on a bypass host, so the spec's deny list, which
    /// bypass skips, applies to it); the command line and unmarked peers are not governed.
    #[tokio::test]
    async fn a_surface_governs_the_requests_of_models_only() {
        let dir = tempfile::tempdir().unwrap();
        let flags = NodeFlags {
            name: Some("db-1".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..NodeFlags::default()
        };
        let node =
            Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap())
                .unwrap();
        let work = tempfile::tempdir().unwrap();
        let denied = work.path().join("denied.txt");
        let spec = format!(
            "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {{name: lab}}\nspec:\n  \
             hosts:\n    - name: db-1\n      tags: [db]\n      mode: bypass\n      policy:\n        \
             paths: {{deny: [\"{}\"]}}\n---\napiVersion: remote-agents.dev/v1\nkind: McpSurface\n\
             metadata: {{name: db-models}}\nspec:\n  target: tag:db\n  toolsets: [core, files]\n  \
             maxMode: edit\n",
            denied.display()
        );
        node.apply_local(
            vec![SpecFile {
                path: "fleet.yaml".into(),
                text: spec,
            }],
            "r1".into(),
            "test",
        )
        .unwrap();
        assert_eq!(node.effective_mode(), Mode::Bypass);
        let surface = node.mcp_surface().expect("db-1 has a surface");
        assert_eq!(surface.max_mode, Some(Mode::Edit));

        let run = |caller: Caller, model: bool, request: Request| {
            let node = node.clone();
            async move {
                let envelope = Envelope {
                    id: uuid::Uuid::new_v4().to_string(),
                    caller,
                    request,
                    on_behalf_of_model: model,
                    window_override: None,
                };
                node.handle_local(envelope, CallContext::default()).await
            }
        };
        let write = Request::WriteFile(remote_agents_ops::WriteFileArgs {
            agent_id: None,
            path: denied.display().to_string(),
            content: "x".into(),
            encoding: Default::default(),
            create_dirs: false,
        });
        let git = Request::GitStatus(remote_agents_ops::GitRepoArgs {
            agent_id: None,
            repo: work.path().display().to_string(),
        });

        // The local MCP client is a model whether or not its envelope says so.
        let refused = run(Caller::McpLocal, false, write.clone()).await;
        assert!(
            matches!(&refused, Outcome::Refused { reason } if reason.contains("denied")),
            "{refused:?}"
        );
        assert!(!denied.exists());
        let refused = run(Caller::McpLocal, false, git.clone()).await;
        assert!(
            matches!(&refused, Outcome::Refused { reason }
                if reason.contains("`git` toolset") && reason.contains("McpSurface db-models")
                    && reason.contains("host db-1")),
            "{refused:?}"
        );
        let marked_peer = run(Caller::peer("peer-a", None), true, git.clone()).await;
        assert!(
            matches!(&marked_peer, Outcome::Refused { reason } if reason.contains("McpSurface")),
            "{marked_peer:?}"
        );
        // Not a model: the host's own mode (bypass) and no surface.
        let unmarked_peer = run(Caller::peer("peer-a", None), false, git).await;
        assert!(
            !matches!(&unmarked_peer, Outcome::Refused { reason } if reason.contains("McpSurface")),
            "{unmarked_peer:?}"
        );
        let written = run(Caller::Cli, false, write).await;
        assert!(matches!(written, Outcome::Ok { .. }), "{written:?}");
        assert!(denied.exists());
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
                on_behalf_of_model: false,
                window_override: None,
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
                on_behalf_of_model: false,
                window_override: None,
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
