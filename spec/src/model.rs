//! The spec kinds as Rust types: what a fleet repo declares. Serde gives the JSON/YAML shape,
//! schemars the JSON Schema in `schemas/`; decoding from source (with positions) is in `decode`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only API version this crate reads.
pub const API_VERSION: &str = "remote-agents.dev/v1";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[default]
    #[serde(rename = "remote-agents.dev/v1")]
    V1,
}

/// What a host may do: `plan` is read-only, `edit` writes with backups, `bypass` is unrestricted
/// except the built-in hard limits, `disabled` rejects everything.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Plan,
    Edit,
    Bypass,
    Disabled,
}

impl Mode {
    pub const ALL: [(&'static str, Mode); 4] = [
        ("plan", Mode::Plan),
        ("edit", Mode::Edit),
        ("bypass", Mode::Bypass),
        ("disabled", Mode::Disabled),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::Edit => "edit",
            Mode::Bypass => "bypass",
            Mode::Disabled => "disabled",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plan" => Ok(Mode::Plan),
            "edit" => Ok(Mode::Edit),
            "bypass" => Ok(Mode::Bypass),
            "disabled" => Ok(Mode::Disabled),
            other => Err(format!(
                "unknown mode `{other}`: expected plan, edit, bypass or disabled"
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Name and labels of a document; `name` is unique per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Allow and deny patterns. Deny always wins over allow; an empty allow list allows everything
/// the mode permits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowDeny {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl AllowDeny {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Path globs (`~` is the user's home) and command globs (matched against the argv joined by
/// spaces). When layered, deny lists add up and a later allow list replaces an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "AllowDeny::is_empty")]
    pub paths: AllowDeny,
    #[serde(default, skip_serializing_if = "AllowDeny::is_empty")]
    pub commands: AllowDeny,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// A public key allowed to command and apply. Format: `ed25519:` followed by the standard
/// base64 of the 32-byte key. Once a fleet lists operators, nodes accept desired state and
/// commands only from them (deny by default), each limited to its `target` hosts and its
/// `allow`ed capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub name: String,
    pub key: String,
    /// The hosts this key may command (a target selector); all hosts when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What this key may do on those hosts; everything when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Capability>,
}

/// What an operator may do on a host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Read files, list, search, status and facts.
    Read,
    /// Write files.
    Write,
    /// Start processes (exec, MapReduce map steps).
    Exec,
    /// Git status, pull, commit, push.
    Git,
    /// Add and remove schedules by hand.
    Schedule,
    /// Change a node's mode by hand (`set_mode`).
    Admin,
    /// Sign desired state that nodes apply.
    Apply,
    /// Delegate a prompt to the host's AI CLI (`task_dispatch`): an `exec` in disguise, so
    /// granted on its own.
    Task,
}

impl Capability {
    pub const ALL: [Capability; 8] = [
        Capability::Read,
        Capability::Write,
        Capability::Exec,
        Capability::Git,
        Capability::Schedule,
        Capability::Admin,
        Capability::Apply,
        Capability::Task,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Write => "write",
            Capability::Exec => "exec",
            Capability::Git => "git",
            Capability::Schedule => "schedule",
            Capability::Admin => "admin",
            Capability::Apply => "apply",
            Capability::Task => "task",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Operator {
    /// Whether this operator may use `capability` (an empty `allow` list allows everything).
    pub fn allows(&self, capability: Capability) -> bool {
        self.allow.is_empty() || self.allow.contains(&capability)
    }
}

/// A host by exact name or by glob (`lab-*`); facts here override the host's live facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// Settings for the hosts a target selector picks; rules apply in order, later ones win.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Empty: any holder of the room token may apply and command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<Operator>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Assertions about the fleet's policy, checked by `fleetctl validate` and before every
    /// apply: a failing test makes the spec invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<PolicyTest>,
}

/// One policy test: what must hold on every declared host its `target` selects. Capability
/// assertions (`accept`, `deny`) are about `operator` (its name or its `ed25519:` key; a caller
/// with no key when absent) and the host's mode; path assertions (`writable`, `unwritable`,
/// `readable`, `unreadable`: paths or globs, `~` as written in the lists) are about the host's
/// gate whoever asks: its mode, the built-in hard limits and its path deny and allow lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The hosts the assertions are about (a target selector over the declared hosts).
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Capabilities the operator must be able to use on every selected host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<Capability>,
    /// Capabilities the operator must not be able to use on any selected host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Capability>,
    /// The mode every selected host must be in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unwritable: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readable: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// What to do when a run is due while the previous one still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    Allow,
    #[default]
    Forbid,
    Replace,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub target: String,
    /// Five-field crontab line (minute hour day-of-month month day-of-week) or `@daily` etc.
    pub cron: String,
    /// argv, run without a shell. Exactly one of `command` and `shell`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A shell line; needs a policy that grants the shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// A duration such as `30s` or `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
}

/// A command step: argv (`command`) or a shell line (`shell`), exactly one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
}

/// Where a job's input comes from: file globs, the lines a command prints, or inline items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
}

/// Built-in reducers, or a command that reads the map outputs on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reducer {
    Sum,
    Count,
    Concat,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reduce {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<Reducer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    #[default]
    Manual,
    OnApply,
    Cron,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapReduceSpec {
    pub target: String,
    pub input: Input,
    /// Partitions per host (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    pub map: Step,
    pub reduce: Reduce,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Required when `trigger` is `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

/// What a model (an AI agent speaking MCP) may use on the hosts a target selector picks: the
/// toolsets, and the most a request of a model may do there. Enforced by each of those hosts on
/// every request a model makes, whichever node's MCP server it was made through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpSurfaceSpec {
    pub target: String,
    /// The toolsets a model may use on these hosts (core, files, git, fleet, spec, schedule,
    /// mapreduce, transfer, tasks).
    pub toolsets: Vec<crate::Toolset>,
    /// The ceiling on what a model's request may do: `plan` (read-only: only operations that
    /// change nothing), `edit`, `bypass`, or `disabled` (nothing). No ceiling when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mode: Option<Mode>,
}

/// Whether a change window opens the hosts to changes or closes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowAction {
    /// Changes only inside this window (and the other allow windows of the host).
    Allow,
    /// No changes while this window is open.
    #[default]
    Deny,
}

impl WindowAction {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowAction::Allow => "allow",
            WindowAction::Deny => "deny",
        }
    }
}

/// When changes (applies, scheduled runs, writes, exec, git, transfers) may reach the targeted
/// hosts: a recurring window (`cron` start plus `duration`) or a one-off range (`start`, `end`),
/// in `timeZone` (IANA, default `UTC`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub target: String,
    pub action: WindowAction,
    /// Five-field crontab line: when each occurrence starts. Needs `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// How long each occurrence lasts, e.g. `2h` or `2d 12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Start of a one-off window: `2026-12-24T00:00` in `timeZone`, or RFC 3339 with an offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End of a one-off window (exclusive), spelled like `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// IANA time zone of `cron`, `start` and `end`, e.g. `Europe/Berlin`; `UTC` when absent.
    #[serde(default, rename = "timeZone", skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// One wave of a rollout: the hosts it adds to those the earlier waves took, chosen by a target
/// selector, a number of hosts or a share of the fleet (exactly one of `target`, `count`,
/// `percent`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutWave {
    /// Shown as the wave goes (`wave-N` when absent), e.g. `canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The hosts (not taken by an earlier wave) this selector picks, e.g. `tag:canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// This many more hosts, in name order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// This share of all the hosts (rounded up, at least one), in name order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
}

/// A health check run on every host of a wave once it reports the new generation Synced and
/// Healthy, through the host's normal exec path (its mode and policy apply): a non-zero exit
/// fails the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Program and arguments, run without a shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A shell line (only where the host's policy grants a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// How long the check may run, e.g. `30s` (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// How `fleetctl apply` moves a new generation through the fleet: wave after wave, each waited
/// for (Synced, Healthy, then the checks); at `failureThreshold` failed hosts the rollout halts
/// and the hosts that took the new generation are rolled back to the previous one. At most one
/// Rollout per fleet; hosts no wave takes form a last wave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    pub waves: Vec<RolloutWave>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<RolloutCheck>,
    /// How many failed hosts halt the rollout (default 1: the first failure halts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// How long a wave may take to report Synced and Healthy, e.g. `5m` (default: fleetctl
    /// apply's `--timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_timeout: Option<String>,
}

macro_rules! kind_document {
    ($doc:ident, $kind:ident, $spec:ty, $what:literal) => {
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
        )]
        pub enum $kind {
            #[default]
            $kind,
        }

        #[doc = $what]
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $doc {
            pub api_version: ApiVersion,
            pub kind: $kind,
            pub metadata: Metadata,
            pub spec: $spec,
        }
    };
}

kind_document!(
    FleetDocument,
    Fleet,
    FleetSpec,
    "A fleet: defaults, operators, hosts and ordered rules."
);
kind_document!(
    ScheduleDocument,
    Schedule,
    ScheduleSpec,
    "A command run on the targeted hosts on a crontab schedule."
);
kind_document!(
    MapReduceJobDocument,
    MapReduceJob,
    MapReduceSpec,
    "A map step on the targeted hosts' partitions of an input, then a reduce."
);

kind_document!(
    McpSurfaceDocument,
    McpSurface,
    McpSurfaceSpec,
    "The MCP tools a model may use on the targeted hosts, and the most it may do there."
);

kind_document!(
    RolloutDocument,
    Rollout,
    RolloutSpec,
    "How a new generation moves through the fleet: waves, health checks, halt and rollback."
);

kind_document!(
    WindowDocument,
    Window,
    WindowSpec,
    "A change window: when the targeted hosts take changes (allow) or refuse them (deny)."
);

/// One spec document of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Document {
    Fleet(FleetDocument),
    Schedule(ScheduleDocument),
    MapReduceJob(MapReduceJobDocument),
    McpSurface(McpSurfaceDocument),
    Window(WindowDocument),
    Rollout(RolloutDocument),
}

impl Document {
    pub fn kind(&self) -> &'static str {
        match self {
            Document::Fleet(_) => "Fleet",
            Document::Schedule(_) => "Schedule",
            Document::MapReduceJob(_) => "MapReduceJob",
            Document::McpSurface(_) => "McpSurface",
            Document::Window(_) => "Window",
            Document::Rollout(_) => "Rollout",
        }
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Document::Fleet(d) => &d.metadata,
            Document::Schedule(d) => &d.metadata,
            Document::MapReduceJob(d) => &d.metadata,
            Document::McpSurface(d) => &d.metadata,
            Document::Window(d) => &d.metadata,
            Document::Rollout(d) => &d.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
