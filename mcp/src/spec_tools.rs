//! The MCP desired-state tools: `spec_get` (effective config or raw documents), `spec_plan`
//! (a plan id and hash for the spec source's current content against the applied state),
//! `spec_apply` (only with a fresh plan), `spec_edit` (a structured change committed to the
//! spec repository with git2, optionally on a branch) and `fleet_status` (every host's
//! observed status). The spec source is the MCP node's `--spec` folder or `--spec-repo`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use remote_agents_spec::{Document, HostFacts, Selector};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use remote_agents_node::desired::SpecFile;
use remote_agents_node::fleet::connection::Connection;
use remote_agents_node::node::Node;
use remote_agents_node::sync::watch::{self, SourceContent, SpecSource};

/// How many plans are kept for `spec_apply`; older ones are forgotten (and refused).
const KEEP_PLANS: usize = 32;

/// Where spec_get reads from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpecFrom {
    /// The bundle this node applied.
    #[default]
    Applied,
    /// The spec source (`--spec` folder or `--spec-repo`) as it is now.
    Source,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecGetArgs {
    /// A host name: return its effective config (each setting with where it came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `Fleet`, `Schedule`, `MapReduceJob` or `McpSurface`: return the raw documents of that kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `applied` (default) or `source`.
    #[serde(default)]
    pub from: SpecFrom,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SpecGetResult {
    /// What was read, e.g. `applied generation 3 (revision abc)`.
    pub source: String,
    pub generation: Option<u64>,
    pub revision: Option<String>,
    /// The documents (of `kind`, or all) as JSON.
    pub documents: Vec<serde_json::Value>,
    /// The host's effective config, when `host` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecPlanArgs {}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SpecPlanResult {
    /// Pass to spec_apply (with plan_hash) to apply exactly this plan.
    pub plan_id: String,
    /// SHA-256 of what the plan says; spec_apply refuses a plan whose hash differs.
    pub plan_hash: String,
    /// The generation the plan was made against, and the one applying it makes.
    pub base_generation: u64,
    pub next_generation: u64,
    pub revision: String,
    /// Terraform-style text: `+ ~ -` lines and "Plan: X to add, Y to change, Z to remove."
    pub text: String,
    /// The structured plan.
    pub plan: serde_json::Value,
    /// True when the source says what is applied already (spec_apply only re-offers it).
    pub no_changes: bool,
    /// Every host of the live fleet (other than this node) → its generation and sync state.
    pub live_hosts: BTreeMap<String, String>,
    /// Hosts of the live fleet that do not run the applied generation (host → why).
    pub out_of_sync: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecApplyArgs {
    /// The plan_id spec_plan returned.
    pub plan_id: String,
    /// The plan_hash spec_plan returned; refused when it differs.
    pub plan_hash: String,
    /// Wait up to this many seconds for every host to report the new generation (default 30;
    /// 0 returns as soon as the bundle is offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SpecApplyResult {
    pub generation: u64,
    pub revision: String,
    /// Per host: result (`applied`, `current`, `refused`, `unreachable`, `timeout`),
    /// generation, sync, detail; this node first.
    pub hosts: Vec<serde_json::Value>,
    /// Every host reports the new generation.
    pub converged: bool,
}

/// One structured change to the spec.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum SpecChange {
    /// Set a host's mode (adds a host entry when the host has none).
    SetMode {
        host: String,
        mode: remote_agents_spec::Mode,
    },
    /// Add a tag to a host's entry (adds the entry when the host has none).
    AddTag { host: String, tag: String },
    /// Add a Schedule document, as a new file `schedules/NAME.yaml`.
    AddSchedule {
        name: String,
        /// Target selector, e.g. `web` or `name:db-*`.
        target: String,
        /// Crontab line (5 fields), e.g. `*/5 * * * *`.
        cron: String,
        /// Program and arguments (no shell).
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecEditArgs {
    pub change: SpecChange,
    /// Commit on this branch (created from the checked-out one when missing) instead of the
    /// checked-out branch; the work tree is then left as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Commit message (default: a description of the change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SpecEditResult {
    pub commit: String,
    pub branch: String,
    /// Spec files written, relative to the spec folder.
    pub files: Vec<String>,
    /// Unified diff of the change.
    pub diff: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetStatusArgs {
    /// Only hosts this selector picks (default `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FleetStatusResult {
    /// e.g. `5 hosts: 4 Synced, 1 OutOfSync; newest generation 3`.
    pub summary: String,
    /// Every reachable host's observed status (generation, sync, health, mode, drift, ...).
    pub hosts: Vec<serde_json::Value>,
    /// Hosts that gave no status, and why.
    pub unreachable: BTreeMap<String, String>,
}

/// A plan kept for `spec_apply`.
#[derive(Debug, Clone)]
struct StoredPlan {
    hash: String,
    base_generation: u64,
    spec_hash: String,
    revision: String,
}

/// The desired-state tools' memory: recent plans.
#[derive(Default)]
pub struct SpecTools {
    plans: Mutex<Vec<(String, StoredPlan)>>,
}

type ToolResult<T> = Result<T, String>;

/// The desired-state tools with their annotations: reads are read-only; spec_edit writes a
/// commit (not destructive: it is reviewable and revertible); spec_apply changes the fleet.
pub(super) fn tools() -> Vec<rmcp::model::Tool> {
    use super::{Hints, READ, tool};
    const FLEET_READ: Hints = Hints {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: true,
    };
    vec![
        tool::<SpecGetArgs, SpecGetResult>(
            "spec_get",
            "Read the desired state",
            "The desired state as this node applied it (from=applied, default) or as the spec \
             source says now (from=source): with host, that host's effective config with the \
             origin of every setting; with kind (Fleet, Schedule, MapReduceJob, McpSurface), the raw \
             documents of that kind.",
            READ,
        ),
        tool::<SpecPlanArgs, SpecPlanResult>(
            "spec_plan",
            "Plan the spec source",
            "Plan the spec source's current content (the --spec folder, or the newest commit of \
             the --spec-repo branch) against the applied generation and the live fleet: \
             `+ ~ -` changes, hosts out of sync, and a plan_id + plan_hash for spec_apply.",
            FLEET_READ,
        ),
        tool::<SpecApplyArgs, SpecApplyResult>(
            "spec_apply",
            "Apply a plan",
            "Apply exactly what spec_plan showed: signs a new generation, applies it here and \
             publishes it to every host, then waits for them (wait_secs). Refused when the \
             plan id is unknown, its hash differs, or the source content or the applied \
             generation changed since planning.",
            Hints {
                read_only: false,
                destructive: true,
                idempotent: false,
                open_world: true,
            },
        ),
        tool::<SpecEditArgs, SpecEditResult>(
            "spec_edit",
            "Edit the spec (git commit)",
            "Make one structured change to the spec and commit it with git, so it is \
             reviewable and revertible: set_mode {host, mode}, add_tag {host, tag}, \
             add_schedule {name, target, cron, command}. With branch, the commit goes on that \
             branch and the work tree is left alone. Host changes rewrite the file holding the \
             Fleet document from its parsed form (comments in that file are dropped); a \
             schedule is a new file schedules/NAME.yaml. Nothing is applied: follow with \
             spec_plan and spec_apply.",
            Hints {
                read_only: false,
                destructive: false,
                idempotent: false,
                open_world: false,
            },
        ),
        tool::<FleetStatusArgs, FleetStatusResult>(
            "fleet_status",
            "Desired-state status of the fleet",
            "Every host's observed desired state: generation, sync (Synced / OutOfSync / \
             Unknown), health, mode, tags, conditions and drift; target narrows the hosts.",
            FLEET_READ,
        ),
    ]
}

/// Whether `name` is one of these tools.
pub(super) fn is_spec_tool(name: &str) -> bool {
    matches!(
        name,
        "spec_get" | "spec_plan" | "spec_apply" | "spec_edit" | "fleet_status"
    )
}

fn parse<T: serde::de::DeserializeOwned>(
    name: &str,
    arguments: Option<rmcp::model::JsonObject>,
) -> ToolResult<T> {
    serde_json::from_value(serde_json::Value::Object(arguments.unwrap_or_default()))
        .map_err(|e| format!("invalid arguments for {name}: {e}; see the tool's input schema"))
}

fn structured<T: Serialize>(
    summary: String,
    result: ToolResult<T>,
) -> ToolResult<(String, serde_json::Value)> {
    let value = serde_json::to_value(result?).map_err(|e| e.to_string())?;
    Ok((summary, value))
}

impl SpecTools {
    /// Runs one of the tools; the result is the tool's structured content, or an error text.
    pub(super) async fn call(
        &self,
        node: &Node,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> rmcp::model::CallToolResult {
        use rmcp::model::{CallToolResult, ContentBlock};
        let outcome = match name {
            "spec_get" => match parse(name, arguments) {
                Ok(args) => {
                    let r = self.spec_get(node, args).await;
                    let summary = r.as_ref().map(|r| r.source.clone()).unwrap_or_default();
                    structured(summary, r)
                }
                Err(e) => Err(e),
            },
            "spec_plan" => match parse(name, arguments) {
                Ok(args) => {
                    let r = self.spec_plan(node, args).await;
                    let summary = r.as_ref().map(|r| r.text.clone()).unwrap_or_default();
                    structured(summary, r)
                }
                Err(e) => Err(e),
            },
            "spec_apply" => match parse(name, arguments) {
                Ok(args) => {
                    let r = self.spec_apply(node, args).await;
                    let summary = r
                        .as_ref()
                        .map(|r| {
                            format!(
                                "generation {} (revision {}): {}",
                                r.generation,
                                r.revision,
                                if r.converged {
                                    "every host converged"
                                } else {
                                    "not every host converged"
                                }
                            )
                        })
                        .unwrap_or_default();
                    structured(summary, r)
                }
                Err(e) => Err(e),
            },
            "spec_edit" => match parse(name, arguments) {
                Ok(args) => {
                    let r = self.spec_edit(node, args).await;
                    let summary = r
                        .as_ref()
                        .map(|r| format!("committed {} on {}", r.commit, r.branch))
                        .unwrap_or_default();
                    structured(summary, r)
                }
                Err(e) => Err(e),
            },
            "fleet_status" => match parse(name, arguments) {
                Ok(args) => {
                    let r = self.fleet_status(node, args).await;
                    let summary = r.as_ref().map(|r| r.summary.clone()).unwrap_or_default();
                    structured(summary, r)
                }
                Err(e) => Err(e),
            },
            other => Err(format!("{other} is not a desired-state tool")),
        };
        match outcome {
            Ok((summary, value)) => {
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                let mut result = CallToolResult::success(vec![
                    ContentBlock::text(summary),
                    ContentBlock::text(text),
                ]);
                result.structured_content = Some(value);
                result
            }
            Err(error) => {
                CallToolResult::error(vec![ContentBlock::text(format!("{name} failed: {error}"))])
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The spec source the tools work on.
fn source_of(node: &Node) -> ToolResult<SpecSource> {
    SpecSource::from_settings(node.settings()).ok_or_else(|| {
        "this node has no spec source: start it with --spec DIR or --spec-repo PATH".to_string()
    })
}

/// A local git repository's followed branch (the given one, or the checked-out one).
fn followed_branch(repo: &git2::Repository, branch: Option<&str>) -> ToolResult<String> {
    if let Some(branch) = branch {
        return Ok(branch.to_string());
    }
    let head = repo.head().map_err(|e| e.message().to_string())?;
    if !head.is_branch() {
        return Err("HEAD is not on a branch".into());
    }
    head.shorthand()
        .map(str::to_string)
        .map_err(|_| "the checked-out branch's name is not UTF-8".to_string())
}

/// The source's current content (a local repository: its followed branch's newest commit).
fn read_source(node: &Node, source: &SpecSource) -> ToolResult<SourceContent> {
    match source {
        SpecSource::Folder(path) => watch::read_folder(path).map_err(|e| e.to_string()),
        SpecSource::Repo { url, branch } => match git2::Repository::open(url) {
            Ok(repo) => {
                let branch = followed_branch(&repo, branch.as_deref())?;
                let commit = repo
                    .find_branch(&branch, git2::BranchType::Local)
                    .and_then(|b| b.get().peel_to_commit())
                    .map_err(|e| format!("branch `{branch}`: {}", e.message()))?;
                let files = watch::files_at_commit(&repo, &commit).map_err(|e| e.to_string())?;
                watch::validate(files, commit.id().to_string()).map_err(|e| e.to_string())
            }
            Err(_) => watch::Mirror::open(&node.settings().data_dir.value, url, branch.clone())
                .and_then(|mirror| mirror.fetch())
                .map_err(|e| e.to_string()),
        },
    }
}

/// The live fleet (other nodes), when this node is connected.
async fn live_snapshot(
    node: &Node,
    expected: &[HostFacts],
) -> Option<remote_agents_node::sync::publish::Snapshot> {
    let (net, psk) = (node.net()?, node.psk()?);
    let connection = Connection::of_node(net, node.agent_id().to_string(), psk);
    remote_agents_node::sync::publish::snapshot(&connection, expected)
        .await
        .ok()
}

/// Brings this node up to the newest generation the fleet runs, so a new generation made here
/// is newer than every host's. Returns the applied generation.
fn catch_up_with(node: &Node, live: Option<&remote_agents_node::sync::publish::Snapshot>) -> u64 {
    if let Some(newest) = live.and_then(|l| l.newest.as_ref())
        && newest.content.generation > node.desired().generation()
        && let Err(refusal) = node.offer_bundle(&newest.signed, "peer")
    {
        tracing::debug!(%refusal, "the fleet's newest bundle was not applied here");
    }
    node.desired().generation()
}

impl SpecTools {
    pub async fn spec_get(&self, node: &Node, args: SpecGetArgs) -> ToolResult<SpecGetResult> {
        let (model, source, generation, revision) = match args.from {
            SpecFrom::Applied => {
                let bundle = node.desired().current().ok_or(
                    "this node has applied no desired state yet; use from=source to read the \
                     spec source",
                )?;
                (
                    bundle.model.clone(),
                    format!(
                        "applied generation {} (revision {})",
                        bundle.content.generation, bundle.content.revision
                    ),
                    Some(bundle.content.generation),
                    Some(bundle.content.revision.clone()),
                )
            }
            SpecFrom::Source => {
                let source = source_of(node)?;
                let content = read_source(node, &source)?;
                (
                    content.model,
                    format!("{source:?} at revision {}", content.revision),
                    None,
                    Some(content.revision),
                )
            }
        };
        let documents = model
            .documents
            .iter()
            .filter(|d| {
                args.kind
                    .as_deref()
                    .is_none_or(|k| d.kind().eq_ignore_ascii_case(k))
            })
            .map(Document::to_json)
            .collect();
        let effective = match &args.host {
            Some(host) => {
                // The host as the fleet sees it: its live tags and facts when it is connected.
                let facts = if host == &node.settings().name.value {
                    node.host_facts()
                } else {
                    node.net()
                        .and_then(|net| {
                            net.peers()
                                .into_iter()
                                .find(|p| &p.announcement.name == host)
                        })
                        .map(|p| HostFacts {
                            name: host.clone(),
                            tags: p.announcement.tags.iter().cloned().collect(),
                            facts: p.announcement.facts.clone(),
                        })
                        .unwrap_or_else(|| HostFacts::new(host.clone()))
                };
                Some(
                    serde_json::to_value(model.effective_config(&facts))
                        .map_err(|e| e.to_string())?,
                )
            }
            None => None,
        };
        Ok(SpecGetResult {
            source,
            generation,
            revision,
            documents,
            effective,
        })
    }

    pub async fn spec_plan(&self, node: &Node, _args: SpecPlanArgs) -> ToolResult<SpecPlanResult> {
        let source = source_of(node)?;
        let content = read_source(node, &source)?;
        let expected = remote_agents_node::sync::publish::expected_hosts(&content.model);
        let live = live_snapshot(node, &expected).await;
        let base_generation = catch_up_with(node, live.as_ref());
        let applied = node.desired().current();
        let old = applied
            .as_ref()
            .map(|b| b.model.clone())
            .unwrap_or_default();
        let plan = remote_agents_spec::plan(&old, &content.model);
        let spec_hash = remote_agents_ops::bundle::spec_hash(&content.files);
        let no_changes = applied.as_ref().is_some_and(|b| b.spec_hash == spec_hash);
        let plan_json = serde_json::to_value(&plan).map_err(|e| e.to_string())?;
        let mut out_of_sync = BTreeMap::new();
        let mut live_hosts = BTreeMap::new();
        for (host, status) in live.iter().flat_map(|l| l.hosts.iter()) {
            live_hosts.insert(
                host.clone(),
                match status {
                    Ok(s) => format!("generation {}, {}", s.observed_generation, s.sync),
                    Err(reason) => format!("unknown: {reason}"),
                },
            );
            match status {
                Ok(s) if s.observed_generation == base_generation && s.drift.is_empty() => {}
                Ok(s) => {
                    out_of_sync.insert(
                        host.clone(),
                        format!("generation {}, {}", s.observed_generation, s.sync),
                    );
                }
                Err(reason) => {
                    out_of_sync.insert(host.clone(), reason.clone());
                }
            }
        }
        let plan_hash = sha256_hex(
            serde_json::json!({
                "base_generation": base_generation,
                "spec_hash": spec_hash,
                "revision": content.revision,
                "plan": plan_json,
            })
            .to_string()
            .as_bytes(),
        );
        let plan_id = uuid::Uuid::new_v4().to_string();
        {
            let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
            plans.push((
                plan_id.clone(),
                StoredPlan {
                    hash: plan_hash.clone(),
                    base_generation,
                    spec_hash,
                    revision: content.revision.clone(),
                },
            ));
            let excess = plans.len().saturating_sub(KEEP_PLANS);
            plans.drain(..excess);
        }
        Ok(SpecPlanResult {
            plan_id,
            plan_hash,
            base_generation,
            next_generation: if no_changes {
                base_generation
            } else {
                base_generation + 1
            },
            revision: content.revision,
            text: plan.to_text(),
            plan: plan_json,
            no_changes,
            live_hosts,
            out_of_sync,
        })
    }

    pub async fn spec_apply(
        &self,
        node: &Node,
        args: SpecApplyArgs,
    ) -> ToolResult<SpecApplyResult> {
        let stored = {
            let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
            plans
                .iter()
                .find(|(id, _)| id == &args.plan_id)
                .map(|(_, plan)| plan.clone())
        }
        .ok_or_else(|| {
            format!(
                "unknown plan id {:?} (plans are kept in memory for the last {KEEP_PLANS} \
                 spec_plan calls); call spec_plan again",
                args.plan_id
            )
        })?;
        if stored.hash != args.plan_hash {
            return Err(
                "plan_hash does not match the plan spec_plan made under this id; the plan was \
                 altered: call spec_plan again"
                    .into(),
            );
        }
        let source = source_of(node)?;
        let content = read_source(node, &source)?;
        let spec_hash = remote_agents_ops::bundle::spec_hash(&content.files);
        if spec_hash != stored.spec_hash || content.revision != stored.revision {
            return Err(format!(
                "stale plan: the spec source changed since planning (planned revision {}, now \
                 {}); call spec_plan again",
                stored.revision, content.revision
            ));
        }
        let expected = remote_agents_node::sync::publish::expected_hosts(&content.model);
        let live = live_snapshot(node, &expected).await;
        let generation_now = catch_up_with(node, live.as_ref());
        if generation_now != stored.base_generation {
            return Err(format!(
                "stale plan: the applied generation moved from {} to {generation_now} since \
                 planning; call spec_plan again",
                stored.base_generation
            ));
        }
        // A declared Rollout moves a generation through waves, which fleetctl apply drives
        // with an operator key; publishing it to every host at once would skip the waves.
        if let Some(rollout) = content.model.rollout() {
            return Err(format!(
                "not applied: the spec declares Rollout `{}`, whose waves spec_apply does not \
                 drive (it publishes to every host at once); apply it with `fleetctl apply`, \
                 which moves it through its waves",
                rollout.metadata.name
            ));
        }
        // One use per plan.
        self.plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| id != &args.plan_id);
        let (bundle, _) = node
            .apply_local(content.files, content.revision.clone(), "mcp spec_apply")
            .map_err(|refusal| format!("not applied: {refusal}"))?;
        let generation = bundle.content.generation;
        let own = node.status();
        let mut hosts = vec![serde_json::json!({
            "host": own.host,
            "result": "applied",
            "generation": own.observed_generation,
            "sync": own.sync,
        })];
        let mut converged = own.observed_generation >= generation;
        if let (Some(net), Some(psk)) = (node.net(), node.psk()) {
            let connection = Connection::of_node(net, node.agent_id().to_string(), psk);
            let wait = Duration::from_secs_f64(args.wait_secs.unwrap_or(30.0).clamp(0.0, 600.0));
            let results = remote_agents_node::sync::publish::publish_signed(
                &connection,
                &bundle.signed,
                generation,
                &expected,
                false,
                (!wait.is_zero()).then_some(wait),
            )
            .await
            .map_err(|e| {
                format!("applied here as generation {generation}, but publishing failed: {e:#}")
            })?;
            for result in results {
                converged &= result.generation >= generation && result.result != "refused";
                hosts.push(serde_json::to_value(&result).map_err(|e| e.to_string())?);
            }
        }
        Ok(SpecApplyResult {
            generation,
            revision: bundle.content.revision.clone(),
            hosts,
            converged,
        })
    }

    pub async fn spec_edit(&self, node: &Node, args: SpecEditArgs) -> ToolResult<SpecEditResult> {
        // A commit writes to this machine's disk, which plan mode (read-only) and disabled mode
        // forbid; spec_plan and spec_get still read the spec.
        let mode = node.effective_mode();
        if matches!(
            mode,
            remote_agents_spec::Mode::Plan | remote_agents_spec::Mode::Disabled
        ) {
            return Err(format!(
                "refused by policy: this node is in {mode} mode, and spec_edit commits to the \
                 spec repository on its disk; edit the spec from a node in edit mode (or \
                 set_mode edit here)"
            ));
        }
        let source = source_of(node)?;
        let folder = match &source {
            SpecSource::Folder(path) => path.clone(),
            SpecSource::Repo { url, .. } if Path::new(url).is_dir() => PathBuf::from(url),
            SpecSource::Repo { url, .. } => {
                return Err(format!(
                    "spec_edit needs a local spec repository; {url} is remote (clone it and \
                     start the node with --spec-repo PATH)"
                ));
            }
        };
        let followed = match &source {
            SpecSource::Repo { branch, .. } => branch.clone(),
            SpecSource::Folder(_) => None,
        };
        let task = EditTask {
            folder,
            followed,
            branch: args.branch,
            change: args.change,
            message: args.message,
        };
        remote_agents_node::runtime::spawn_blocking(move || task.run())
            .await
            .map_err(|e| e.to_string())?
    }

    pub async fn fleet_status(
        &self,
        node: &Node,
        args: FleetStatusArgs,
    ) -> ToolResult<FleetStatusResult> {
        let selector = Selector::parse(args.target.as_deref().unwrap_or("all"))
            .map_err(|e| format!("target: {e}"))?;
        let own = node.status();
        let mut statuses = Vec::new();
        if selector.matches(&node.host_facts()) {
            statuses.push(own);
        }
        let mut unreachable = BTreeMap::new();
        if let Some(live) = live_snapshot(node, &[]).await {
            let facts: HashMap<String, HostFacts> = node
                .net()
                .map(|net| {
                    net.peers()
                        .into_iter()
                        .map(|p| {
                            (
                                p.announcement.name.clone(),
                                HostFacts {
                                    name: p.announcement.name.clone(),
                                    tags: p.announcement.tags.iter().cloned().collect(),
                                    facts: p.announcement.facts.clone(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (host, status) in live.hosts {
                let picked = facts.get(&host).is_none_or(|f| selector.matches(f));
                if !picked {
                    continue;
                }
                match status {
                    Ok(status) => statuses.push(status),
                    Err(reason) => {
                        unreachable.insert(host, reason);
                    }
                }
            }
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for status in &statuses {
            *counts.entry(status.sync.to_string()).or_default() += 1;
        }
        let newest = statuses
            .iter()
            .map(|s| s.observed_generation)
            .max()
            .unwrap_or(0);
        let summary = format!(
            "{} hosts: {}{}; newest generation {newest}",
            statuses.len() + unreachable.len(),
            counts
                .iter()
                .map(|(sync, n)| format!("{n} {sync}"))
                .collect::<Vec<_>>()
                .join(", "),
            if unreachable.is_empty() {
                String::new()
            } else {
                format!(", {} unreachable", unreachable.len())
            }
        );
        Ok(FleetStatusResult {
            summary,
            hosts: statuses
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?,
            unreachable,
        })
    }
}

/// The desired state the node applied, as an MCP resource.
pub(super) const DESIRED_URI: &str = "fleet://desired";
/// One host's observed status (by host name or agent id), as an MCP resource template.
pub(super) const OBSERVED_PREFIX: &str = "fleet://observed/hosts/";

pub(super) fn resources() -> Vec<rmcp::model::Resource> {
    vec![
        rmcp::model::Resource::new(DESIRED_URI, "desired")
            .with_title("Applied desired state")
            .with_description(
                "The bundle this node applied: generation, revision, issuer and every spec \
                 document as JSON.",
            )
            .with_mime_type("application/json"),
    ]
}

pub(super) fn resource_templates() -> Vec<rmcp::model::ResourceTemplate> {
    vec![
        rmcp::model::ResourceTemplate::new(format!("{OBSERVED_PREFIX}{{id}}"), "observed-host")
            .with_title("Observed status of a host")
            .with_description(
                "What a host reports (id = host name or agent id): generation, sync, health, \
                 mode, conditions and drift.",
            )
            .with_mime_type("application/json"),
    ]
}

impl SpecTools {
    /// Reads `fleet://desired` or `fleet://observed/hosts/{id}` as JSON text.
    pub(super) async fn read_resource(&self, node: &Node, uri: &str) -> ToolResult<String> {
        let value = if uri == DESIRED_URI {
            let bundle = node
                .desired()
                .current()
                .ok_or("this node has applied no desired state yet")?;
            serde_json::json!({
                "generation": bundle.content.generation,
                "revision": bundle.content.revision,
                "issuer": bundle.content.issuer,
                "issued_at_ms": bundle.content.issued_at_ms,
                "spec_hash": bundle.spec_hash,
                "documents": bundle.model.to_json(),
            })
        } else if let Some(id) = uri.strip_prefix(OBSERVED_PREFIX) {
            let own = node.status();
            if id == own.host || id == own.agent_id {
                serde_json::to_value(own).map_err(|e| e.to_string())?
            } else {
                let live = live_snapshot(node, &[])
                    .await
                    .ok_or("this node has no relay connection: only its own status is known")?;
                let status = live
                    .hosts
                    .into_iter()
                    .find_map(|(host, status)| match status {
                        Ok(s) if host == id || s.agent_id == id => Some(Ok(s)),
                        Err(reason) if host == id => Some(Err(reason)),
                        _ => None,
                    })
                    .ok_or_else(|| format!("no host {id:?} in the fleet"))?
                    .map_err(|reason| format!("{id} gave no status: {reason}"))?;
                serde_json::to_value(status).map_err(|e| e.to_string())?
            }
        } else {
            return Err(format!(
                "unknown resource {uri:?}; this server has {DESIRED_URI} and \
                 {OBSERVED_PREFIX}{{id}}"
            ));
        };
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
    }
}

/// One spec_edit, run on a blocking thread (git2 and file I/O).
struct EditTask {
    folder: PathBuf,
    /// The branch a `--spec-repo` node follows, if named.
    followed: Option<String>,
    branch: Option<String>,
    change: SpecChange,
    message: Option<String>,
}

impl EditTask {
    fn run(self) -> ToolResult<SpecEditResult> {
        let git = |e: git2::Error| e.message().to_string();
        let repo = git2::Repository::discover(&self.folder).map_err(|_| {
            format!(
                "{} is not in a git repository; spec_edit commits its changes",
                self.folder.display()
            )
        })?;
        let workdir = repo
            .workdir()
            .ok_or("the spec repository has no work tree")?
            .canonicalize()
            .map_err(|e| e.to_string())?;
        let folder = self.folder.canonicalize().map_err(|e| e.to_string())?;
        let prefix = folder
            .strip_prefix(&workdir)
            .map_err(|_| "the spec folder is outside its repository's work tree")?
            .to_path_buf();
        let checked_out = followed_branch(&repo, None).ok();
        let branch = self
            .branch
            .clone()
            .or_else(|| self.followed.clone())
            .or_else(|| checked_out.clone())
            .ok_or("HEAD is not on a branch; pass branch")?;
        let in_work_tree = checked_out.as_deref() == Some(branch.as_str());
        // The base: the branch's tip, or for a new branch the checked-out commit.
        let parent = match repo.find_branch(&branch, git2::BranchType::Local) {
            Ok(b) => b.get().peel_to_commit().map_err(git)?,
            Err(_) => repo.head().and_then(|h| h.peel_to_commit()).map_err(git)?,
        };
        let base = if in_work_tree {
            watch::read_folder_files(&folder).map_err(|e| e.to_string())?
        } else {
            let tree = parent.tree().map_err(git)?;
            let subtree = if prefix.as_os_str().is_empty() {
                tree
            } else {
                tree.get_path(&prefix)
                    .and_then(|e| e.to_object(&repo))
                    .and_then(|o| o.peel_to_tree())
                    .map_err(git)?
            };
            let mut files = Vec::new();
            remote_agents_node::sources::collect_tree(
                &repo,
                &subtree,
                Path::new(""),
                &mut files,
                &|p| p.display().to_string(),
            )
            .map_err(|e| format!("{e:#}"))?;
            files
                .into_iter()
                .map(|(path, text)| SpecFile { path, text })
                .collect()
        };
        let changed = edit(&base, &self.change)?;
        // Refuse an edit that leaves the spec invalid: it would only be refused at apply.
        let mut after: BTreeMap<String, String> = base
            .iter()
            .map(|f| (f.path.clone(), f.text.clone()))
            .collect();
        for file in &changed {
            after.insert(file.path.clone(), file.text.clone());
        }
        watch::validate(
            after
                .into_iter()
                .map(|(path, text)| SpecFile { path, text })
                .collect(),
            "edit".into(),
        )
        .map_err(|e| format!("the edit would make the spec invalid: {e}"))?;
        let mut diff = String::new();
        for file in &changed {
            let old = base
                .iter()
                .find(|f| f.path == file.path)
                .map_or("", |f| f.text.as_str());
            diff.push_str(
                &similar::TextDiff::from_lines(old, &file.text)
                    .unified_diff()
                    .header(&format!("a/{}", file.path), &format!("b/{}", file.path))
                    .to_string(),
            );
        }
        let message = self
            .message
            .clone()
            .unwrap_or_else(|| describe(&self.change));
        let signature = repo
            .signature()
            .or_else(|_| git2::Signature::now("remote-agents", "remote-agents@localhost"))
            .map_err(git)?;
        let commit = if in_work_tree {
            // The checked-out branch: write the files and commit them, so the work tree, the
            // index and the branch agree.
            let mut index = repo.index().map_err(git)?;
            for file in &changed {
                let path = folder.join(&file.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, &file.text).map_err(|e| e.to_string())?;
                index.add_path(&prefix.join(&file.path)).map_err(git)?;
            }
            index.write().map_err(git)?;
            let tree = repo
                .find_tree(index.write_tree().map_err(git)?)
                .map_err(git)?;
            repo.commit(
                Some("HEAD"),
                &signature,
                &signature,
                &message,
                &tree,
                &[&parent],
            )
            .map_err(git)?
        } else {
            // Another branch: build the new tree in memory; the work tree is untouched.
            let mut update = git2::build::TreeUpdateBuilder::new();
            for file in &changed {
                let blob = repo.blob(file.text.as_bytes()).map_err(git)?;
                update.upsert(prefix.join(&file.path), blob, git2::FileMode::Blob);
            }
            let baseline = parent.tree().map_err(git)?;
            let tree = repo
                .find_tree(update.create_updated(&repo, &baseline).map_err(git)?)
                .map_err(git)?;
            repo.commit(
                Some(&format!("refs/heads/{branch}")),
                &signature,
                &signature,
                &message,
                &tree,
                &[&parent],
            )
            .map_err(git)?
        };
        Ok(SpecEditResult {
            commit: commit.to_string(),
            branch,
            files: changed.into_iter().map(|f| f.path).collect(),
            diff,
        })
    }
}

fn describe(change: &SpecChange) -> String {
    match change {
        SpecChange::SetMode { host, mode } => format!("spec: set {host} to {mode} mode"),
        SpecChange::AddTag { host, tag } => format!("spec: tag {host} with {tag}"),
        SpecChange::AddSchedule { name, target, .. } => {
            format!("spec: add schedule {name} on {target}")
        }
    }
}

/// The files a change writes. A host change rewrites the file holding the Fleet document from
/// its parsed model (comments in that file are not kept); a schedule is a new file.
fn edit(base: &[SpecFile], change: &SpecChange) -> ToolResult<Vec<SpecFile>> {
    match change {
        SpecChange::AddSchedule {
            name,
            target,
            cron,
            command,
        } => {
            let path = format!("schedules/{name}.yaml");
            if base.iter().any(|f| f.path == path) {
                return Err(format!("{path} exists already"));
            }
            let document = Document::Schedule(remote_agents_spec::ScheduleDocument {
                metadata: remote_agents_spec::Metadata {
                    name: name.clone(),
                    ..Default::default()
                },
                spec: remote_agents_spec::ScheduleSpec {
                    target: target.clone(),
                    cron: cron.clone(),
                    command: command.clone(),
                    ..Default::default()
                },
                ..Default::default()
            });
            Ok(vec![SpecFile {
                path,
                text: remote_agents_spec::documents_to_yaml(&[document]),
            }])
        }
        SpecChange::SetMode { host, .. } | SpecChange::AddTag { host, .. } => {
            let pairs: Vec<(&str, &str)> = base
                .iter()
                .map(|f| (f.path.as_str(), f.text.as_str()))
                .collect();
            let (model, _) = remote_agents_spec::load(&pairs);
            let (index, _) = model.fleet().ok_or("the spec has no Fleet document")?;
            let path = model
                .file_of(index)
                .ok_or("cannot tell which file holds the Fleet document")?
                .to_string();
            let text = &base
                .iter()
                .find(|f| f.path == path)
                .ok_or("the Fleet document's file is gone")?
                .text;
            let (mut file_model, _) = remote_agents_spec::load_one(&path, text);
            let fleet = file_model
                .documents
                .iter_mut()
                .find_map(|d| match d {
                    Document::Fleet(f) => Some(f),
                    _ => None,
                })
                .ok_or("the Fleet document's file has no Fleet document")?;
            let hosts = &mut fleet.spec.hosts;
            let entry = match hosts.iter().position(|h| &h.name == host) {
                Some(i) => &mut hosts[i],
                None => {
                    hosts.push(remote_agents_spec::HostEntry {
                        name: host.clone(),
                        ..Default::default()
                    });
                    hosts.last_mut().expect("just pushed")
                }
            };
            match change {
                SpecChange::SetMode { mode, .. } => entry.mode = Some(*mode),
                SpecChange::AddTag { tag, .. } => {
                    if entry.tags.contains(tag) {
                        return Err(format!("{host} already has tag {tag}"));
                    }
                    entry.tags.push(tag.clone());
                }
                SpecChange::AddSchedule { .. } => unreachable!("handled above"),
            }
            let text = if path.ends_with(".kdl") {
                remote_agents_spec::documents_to_kdl(&file_model.documents)
            } else {
                remote_agents_spec::documents_to_yaml(&file_model.documents)
            };
            Ok(vec![SpecFile { path, text }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = "# the fleet\napiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: t}\nspec:\n  hosts:\n    - {name: web-1, tags: [web], mode: plan}\n";

    fn base() -> Vec<SpecFile> {
        vec![SpecFile {
            path: "fleet.yaml".into(),
            text: FLEET.into(),
        }]
    }

    fn reload(files: &[SpecFile]) -> remote_agents_spec::FleetModel {
        let content = watch::validate(files.to_vec(), "t".into()).unwrap();
        content.model
    }

    /// A node in plan mode (read-only) committed spec edits to its repository.
    #[tokio::test]
    async fn spec_edit_is_refused_in_plan_and_disabled_mode_and_commits_nothing() {
        for mode in ["plan", "disabled"] {
            let dir = tempfile::tempdir().unwrap();
            let repo_path = dir.path().join("fleet-repo");
            let repo = git2::Repository::init(&repo_path).unwrap();
            std::fs::write(repo_path.join("fleet.yaml"), FLEET).unwrap();
            let mut index = repo.index().unwrap();
            index.add_path(Path::new("fleet.yaml")).unwrap();
            let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
            let who = git2::Signature::now("test", "test@example.invalid").unwrap();
            let first = repo
                .commit(Some("HEAD"), &who, &who, "fleet", &tree, &[])
                .unwrap();
            let flags = remote_agents_node::config::NodeFlags {
                name: Some("ctl".into()),
                data_dir: Some(dir.path().join("data")),
                mode: Some(mode.into()),
                watch: remote_agents_node::config::WatchFlags {
                    spec_repo: Some(repo_path.display().to_string()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let env = BTreeMap::<String, String>::new();
            let node =
                Node::open(remote_agents_node::config::Settings::resolve(&flags, &env).unwrap())
                    .unwrap();
            let args = SpecEditArgs {
                change: SpecChange::SetMode {
                    host: "web-1".into(),
                    mode: remote_agents_spec::Mode::Edit,
                },
                branch: None,
                message: None,
            };
            let error = SpecTools::default()
                .spec_edit(&node, args)
                .await
                .unwrap_err();
            assert!(error.contains(&format!("{mode} mode")), "{error}");
            let head = repo.head().unwrap().peel_to_commit().unwrap().id();
            assert_eq!(head, first, "{mode}: spec_edit committed");
            let on_disk = std::fs::read_to_string(repo_path.join("fleet.yaml")).unwrap();
            assert_eq!(on_disk, FLEET, "{mode}: spec_edit wrote the work tree");
        }
    }

    #[test]
    fn host_changes_rewrite_the_fleet_file_and_schedules_get_their_own() {
        let set = edit(
            &base(),
            &SpecChange::SetMode {
                host: "web-1".into(),
                mode: remote_agents_spec::Mode::Edit,
            },
        )
        .unwrap();
        let model = reload(&set);
        let (_, fleet) = model.fleet().unwrap();
        assert_eq!(
            fleet.spec.hosts[0].mode,
            Some(remote_agents_spec::Mode::Edit)
        );
        assert_eq!(fleet.spec.hosts[0].tags, vec!["web".to_string()]);

        let tagged = edit(
            &base(),
            &SpecChange::AddTag {
                host: "db-1".into(),
                tag: "db".into(),
            },
        )
        .unwrap();
        let model = reload(&tagged);
        let (_, fleet) = model.fleet().unwrap();
        assert_eq!(fleet.spec.hosts[1].name, "db-1");
        assert_eq!(fleet.spec.hosts[1].tags, vec!["db".to_string()]);
        assert!(
            edit(
                &base(),
                &SpecChange::AddTag {
                    host: "web-1".into(),
                    tag: "web".into()
                }
            )
            .is_err()
        );

        let schedule = edit(
            &base(),
            &SpecChange::AddSchedule {
                name: "beat".into(),
                target: "web".into(),
                cron: "*/5 * * * *".into(),
                command: vec!["uptime".into()],
            },
        )
        .unwrap();
        assert_eq!(schedule[0].path, "schedules/beat.yaml");
        let mut all = base();
        all.extend(schedule);
        let model = reload(&all);
        assert_eq!(model.schedules().count(), 1);
    }
}
