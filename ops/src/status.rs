//! What a node reports about its desired state: the observed generation, sync state, health,
//! conditions with reasons, and drift (imperative overrides with their expiry). The shape
//! `fleetctl status` and the MCP `fleet_status` tool print.

use serde::{Deserialize, Serialize};

use remote_agents_spec::Mode;

/// Whether a host runs what the applied spec says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncState {
    /// Converged to the applied generation, no drift.
    Synced,
    /// Running something else than the applied generation says (drift, or a failed pass).
    OutOfSync,
    /// No desired state yet.
    Unknown,
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncState::Synced => "Synced",
            SyncState::OutOfSync => "OutOfSync",
            SyncState::Unknown => "Unknown",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Healthy,
    /// Working, but something needs attention (a refused bundle, a failed pass).
    Degraded,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "Healthy",
            Health::Degraded => "Degraded",
        })
    }
}

/// A Kubernetes-style condition: a named boolean with the reason it has that value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// An imperative change the spec does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// `mode`, `schedule`, ...
    pub kind: String,
    pub message: String,
    /// When it reverts by itself (ms since the epoch), if it does.
    pub expires_at_ms: Option<u64>,
}

/// One host's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedStatus {
    pub host: String,
    pub agent_id: String,
    /// The generation this host converged to (0: none).
    pub observed_generation: u64,
    pub revision: Option<String>,
    pub spec_hash: Option<String>,
    pub sync: SyncState,
    pub health: Health,
    /// The mode requests are judged by now, and the one the spec gives.
    pub mode: Mode,
    pub desired_mode: Mode,
    pub tags: Vec<String>,
    /// Names of the declared schedules and jobs that target this host.
    pub schedules: Vec<String>,
    pub jobs: Vec<String>,
    pub conditions: Vec<Condition>,
    pub drift: Vec<Drift>,
    /// How many settings the last pass changed (0 for an idempotent pass).
    pub last_changes: u64,
    pub reconciled_at_ms: u64,
    /// The newest runs of declared jobs (`trigger: on-apply` or `cron`) this host coordinated,
    /// newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_runs: Vec<DeclaredJobRun>,
}

/// A run of a declared `MapReduceJob` that a host coordinated (kept in its job history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredJobRun {
    pub op_id: String,
    /// The job's `metadata.name`.
    pub job: String,
    /// What started it, e.g. `on-apply gen 3` or `cron slot 2026-12-02T10:05:00+00:00`.
    pub trigger: String,
    pub started_ms: u64,
    pub duration_ms: u64,
    /// `running`, `complete: ...`, `incomplete: ...`, `failed: ...` or `skipped: ...`.
    pub result: String,
}
