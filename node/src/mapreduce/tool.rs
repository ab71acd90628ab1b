//! The `mapreduce` MCP tool: the arguments (the `MapReduceJob` spec's fields, plus where to
//! reduce and per-attempt limits) and running the job from an MCP node over its relay
//! connection, with progress as partitions finish.

use std::sync::Arc;

use remote_agents_spec::{Input, MapReduceSpec, Reduce, Step};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{CallerSide, JobPlan, JobReport};
use crate::node::{Node, ProgressFn};

/// Arguments of the `mapreduce` tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapReduceArgs {
    /// Which hosts run the map: `all`, a tag, `name:GLOB`, `os:linux`, `fact:K=V`; `,` union,
    /// `&` all-of, `!` exclude.
    pub target: String,
    /// Exactly one of: `files` (globs each host expands itself; each file is fed to the map on
    /// its own host, which needs the host's shell grant), `command`/`shell` (run on this node;
    /// its output lines are split into partitions) or `items` (inline, one line each).
    pub input: Input,
    /// Partitions per host for command or item input; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// The map step: `command` (argv, no shell) or `shell` (a shell line); reads its partition
    /// on stdin.
    pub map: Step,
    /// `builtin` (sum: `KEY NUMBER` lines added per key; count: non-empty lines; concat), or a
    /// `command`/`shell` fed every map output on stdin in partition order.
    pub reduce: Reduce,
    /// Retries of a failed partition; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Run the reduce command on this host instead of on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_on: Option<String>,
    /// Seconds one map attempt may take; default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Map attempts in flight per host; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_host: Option<usize>,
    /// Map attempts in flight across all hosts; default: no cap beyond `per_host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
}

impl MapReduceArgs {
    /// The plan these arguments describe.
    pub fn plan(&self) -> Result<JobPlan, String> {
        let spec = MapReduceSpec {
            target: self.target.clone(),
            input: self.input.clone(),
            partitions: self.partitions,
            map: self.map.clone(),
            reduce: self.reduce.clone(),
            retries: self.retries,
            trigger: None,
            cron: None,
        };
        let mut plan = JobPlan::from_spec("mcp", &spec).map_err(|e| e.to_string())?;
        plan.reduce_on = self.reduce_on.clone();
        if let Some(secs) = self.timeout_secs {
            plan.attempt_timeout = remote_agents_ops::timeout_from_secs("timeout_secs", secs)?;
        }
        if let Some(per_host) = self.per_host {
            plan.slots_per_host = per_host.max(1);
        }
        plan.max_in_flight = self.max_in_flight;
        Ok(plan)
    }
}

/// Runs the job from `node` (the coordinator). Progress goes to the MCP client as
/// (partitions finished, total).
pub async fn run(
    node: &Arc<Node>,
    args: MapReduceArgs,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
) -> Result<JobReport, String> {
    let plan = args.plan()?;
    let net = node.net().ok_or_else(|| {
        "this node has no relay connection, so it has no fleet to run a job on".to_string()
    })?;
    let progress: Option<super::Progress> = progress.map(|sink| {
        Arc::new(move |done: usize, total: usize, message: String| {
            sink(done as f64, Some(total as f64), message)
        }) as super::Progress
    });
    super::run(
        &net,
        node.agent_id(),
        &CallerSide::Node(node.clone()),
        plan,
        progress,
        cancel,
    )
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_use_the_spec_shape_and_reject_unknown_fields() {
        let args: MapReduceArgs = serde_json::from_value(serde_json::json!({
            "target": "all",
            "input": {"items": ["a b", "b c"]},
            "map": {"command": ["wc", "-w"]},
            "reduce": {"builtin": "sum"},
            "reduce_on": "db-1"
        }))
        .unwrap();
        let plan = args.plan().unwrap();
        assert_eq!(plan.reduce_on.as_deref(), Some("db-1"));
        assert_eq!(plan.retries, 2);
        let err = serde_json::from_value::<MapReduceArgs>(serde_json::json!({
            "target": "all", "input": {"items": []}, "map": {"shell": "cat"},
            "reduce": {"builtin": "sum"}, "bogus": 1
        }))
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        // A map with both argv and a shell line is refused before anything runs.
        let both: MapReduceArgs = serde_json::from_value(serde_json::json!({
            "target": "all", "input": {"items": ["x"]},
            "map": {"command": ["cat"], "shell": "cat"}, "reduce": {"builtin": "concat"}
        }))
        .unwrap();
        assert!(both.plan().unwrap_err().contains("not both"));
    }

    /// `timeout_secs=1e300` panicked in `Duration::from_secs_f64`.
    #[test]
    fn an_absurd_timeout_is_an_error_naming_the_field() {
        let args: MapReduceArgs = serde_json::from_value(serde_json::json!({
            "target": "all", "input": {"items": ["x"]}, "map": {"command": ["cat"]},
            "reduce": {"builtin": "concat"}, "timeout_secs": 1e300
        }))
        .unwrap();
        assert!(args.plan().unwrap_err().contains("timeout_secs"));
    }
}
