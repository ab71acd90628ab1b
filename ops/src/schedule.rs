//! The schedule operations: add, remove and list a node's schedules, and their run history.

use remote_agents_spec::Concurrency;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;

/// Where a schedule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleSource {
    /// Declared in the applied spec.
    Spec,
    /// Added with `schedule_add` (drift unless the spec holds it).
    Imperative,
}

/// Adds (or replaces) an imperative schedule on this node (or on agent_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleAddArgs {
    /// Add it on this peer instead of the local node (see list_agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Letters, digits, `.`, `_` and `-`; adding an existing imperative name replaces it.
    pub name: String,
    /// Crontab line in the node's local time zone: 5 fields (minute hour day-of-month month
    /// day-of-week), an optional leading seconds field, or @hourly/@daily/@weekly/@monthly.
    pub cron: String,
    /// Program and arguments, run without a shell. Exactly one of command and shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A shell line for `/bin/sh -c` (only where the node's policy grants a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Seconds before a run is killed; default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// What to do when a slot comes due while the previous run still runs; default forbid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Seconds until the schedule expires and is removed; default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleAddResult {
    pub name: String,
    /// True when an imperative schedule of this name existed and was replaced.
    pub replaced: bool,
    /// The next slot, milliseconds since the Unix epoch.
    pub next_run_ms: Option<u64>,
    pub expires_at_ms: Option<u64>,
    /// The time zone the cron line is read in.
    pub time_zone: String,
}

/// Removes an imperative schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRemoveArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleRemoveResult {
    pub name: String,
    /// False when no imperative schedule had this name (nothing changed).
    pub removed: bool,
}

/// Lists the schedules of this node with their recent runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Recent runs to include per schedule, newest first; default 5, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
}

/// How a run ended (or that it is still going).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    /// Exit code 0.
    Ok,
    /// Non-zero exit, or an error before or while running.
    Failed,
    Timeout,
    /// Cancelled (concurrency `replace`, or the node stopping).
    Cancelled,
    /// The node's policy gate (or the issuer's authorisation) refused it; nothing ran.
    Refused,
    /// The node stopped while it ran; it may or may not have taken effect and is not rerun.
    OutcomeUnknown,
    /// Not run: missed while the node was down, or the previous run still ran (forbid).
    Skipped,
}

/// One slot of a schedule in the run history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleRun {
    pub schedule: String,
    /// The slot, Unix seconds (UTC).
    pub slot: u64,
    pub source: ScheduleSource,
    /// The caller the run was made as.
    pub issuer: String,
    /// The journal id of the run (`schedule/<name>/<slot>`); none for skipped slots.
    pub request_id: Option<String>,
    pub outcome: RunOutcome,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub exit_code: Option<i32>,
    /// The end of stdout (at most 2048 bytes).
    pub stdout_tail: String,
    /// The end of stderr (at most 2048 bytes).
    pub stderr_tail: String,
    /// True when the output was longer than what is kept.
    pub truncated: bool,
    /// Why it failed, was refused or skipped.
    pub detail: Option<String>,
    /// For a skipped entry: how many slots it stands for.
    pub skipped_slots: Option<u64>,
}

impl ScheduleRun {
    pub fn skipped(
        name: &str,
        source: ScheduleSource,
        issuer: &str,
        slot: u64,
        count: u64,
        detail: impl Into<String>,
    ) -> Self {
        ScheduleRun {
            schedule: name.to_string(),
            slot,
            source,
            issuer: issuer.to_string(),
            request_id: None,
            outcome: RunOutcome::Skipped,
            started_ms: None,
            finished_ms: None,
            exit_code: None,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            truncated: false,
            detail: Some(detail.into()),
            skipped_slots: Some(count),
        }
    }
}

/// One schedule as `schedule_list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleInfo {
    pub name: String,
    pub source: ScheduleSource,
    pub cron: String,
    pub command: Vec<String>,
    pub shell: Option<String>,
    pub timeout_secs: Option<f64>,
    pub concurrency: Concurrency,
    pub issuer: String,
    /// For spec schedules, the generation that declared it.
    pub generation: Option<u64>,
    pub added_at_ms: Option<u64>,
    pub expires_at_ms: Option<u64>,
    /// False when it does not fire (superseded by a spec schedule of the same name, or invalid).
    pub active: bool,
    pub note: Option<String>,
    pub next_run_ms: Option<u64>,
    pub recent_runs: Vec<ScheduleRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleListResult {
    /// The time zone cron lines are read in.
    pub time_zone: String,
    pub schedules: Vec<ScheduleInfo>,
    /// Imperative schedules the spec does not hold, in words.
    pub drift: Vec<String>,
}

impl Summary for ScheduleAddArgs {
    fn summary(&self, op: &str) -> String {
        format!(
            "{op} {} `{}`: {}",
            self.name,
            self.cron,
            self.shell.clone().unwrap_or_else(|| self.command.join(" "))
        )
    }
}

impl Summary for ScheduleRemoveArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.name)
    }
}

impl Summary for ScheduleListArgs {
    fn summary(&self, op: &str) -> String {
        op.to_string()
    }
}
