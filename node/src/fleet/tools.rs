//! The fleet operations as MCP tool arguments and results (`fleet_exec`, `fleet_read`,
//! `fleet_write`, `fleet_git`, `fleet_search`, `fleet_send`, `job_get`, `job_list`), run from a
//! node that has a
//! relay connection. Results are folded so a model reads 1,000 hosts as a few groups; the full
//! per-host records stay in the node's job history (`job_get`).

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::fanout::{Amount, FanoutOptions};
use super::fold::{Folded, fold};
use super::inventory::Inventory;
use super::jobs::{self, Job, JobSummary};
use crate::node::Node;
use remote_agents_ops::{
    Encoding, ExecArgs, FileSearchArgs, GitCommitArgs, GitRemoteArgs, GitRepoArgs, ReadFileArgs,
    Request, WriteFileArgs,
};

/// Options every fan-out tool takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FanoutArgs {
    /// Which hosts: `all`, a tag (`web`), `name:GLOB`, `os:linux`, `fact:K=V`; `,` union,
    /// `&` all-of, `!` exclude, e.g. `backend&!db`.
    pub target: String,
    /// Hosts per batch of a rolling run: "10" or "10%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Halt once more hosts than this ("5" or "5%") are not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fail: Option<String>,
    /// Per-host timeout in seconds; default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Deadline for the whole run in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetExecArgs {
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    /// Program and arguments, run without a shell on every targeted host.
    pub argv: Vec<String>,
    /// Per-OS-family argv replacing `argv` on hosts of that family, e.g.
    /// {"macos": ["sw_vers"], "linux": ["cat", "/etc/os-release"]}.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_os: BTreeMap<String, Vec<String>>,
    /// Run through `/bin/sh -c` (only where the host's policy grants a shell).
    #[serde(default)]
    pub shell: bool,
}

/// One prompt run by every targeted host's own AI CLI (`task_dispatch` with `wait`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetTaskArgs {
    /// `timeout_secs` is each task's wall time here (default 600).
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    /// claude, opencode or codex.
    pub provider: remote_agents_ops::TaskProvider,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetReadArgs {
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    /// Path on the hosts (absolute, or relative to their home).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetWriteArgs {
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GitAction {
    Status,
    Pull,
    Commit,
    Push,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetGitArgs {
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    /// The repository's work tree on the hosts.
    pub repo: String,
    pub action: GitAction,
    /// Commit message (commit only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSearchArgs {
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
    /// If nothing is found, ask the host's AI CLI (read-only; needs `task`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ai_fallback: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSendArgs {
    #[serde(flatten)]
    pub fanout: FanoutArgs,
    /// The host holding the file (agent id or name); default this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_agent_id: Option<String>,
    pub from_path: String,
    /// Where the file lands on every targeted host (its folder must exist).
    pub to_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobGetArgs {
    /// An op id from a fleet_* result or job_list (a unique prefix is enough).
    pub op_id: String,
    /// Only these hosts' full records; default all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobListArgs {
    /// Newest first; default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A fan-out's result as a model sees it: the op id, whether it halted, and the folded groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetResult {
    pub op_id: String,
    pub halted: bool,
    #[serde(flatten)]
    pub folded: Folded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobGetResult {
    pub job: Job,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobListResult {
    pub jobs: Vec<JobSummary>,
}

/// One fleet tool call, parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum FleetRequest {
    FleetExec(FleetExecArgs),
    FleetRead(FleetReadArgs),
    FleetWrite(FleetWriteArgs),
    FleetGit(FleetGitArgs),
    FleetSearch(FleetSearchArgs),
    FleetSend(FleetSendArgs),
    FleetTask(FleetTaskArgs),
    JobGet(JobGetArgs),
    JobList(JobListArgs),
}

/// Errors a model can act on; they become `isError` results.
pub type ToolError = String;

fn options(args: &FanoutArgs) -> Result<FanoutOptions, ToolError> {
    let amount = |field: &str, text: &Option<String>| -> Result<Option<Amount>, ToolError> {
        text.as_deref()
            .map(|t| t.parse::<Amount>().map_err(|e| format!("{field}: {e}")))
            .transpose()
    };
    let seconds =
        |field: &str, value: Option<f64>| -> Result<Option<std::time::Duration>, ToolError> {
            value
                .map(|s| remote_agents_ops::duration_from_secs(field, s))
                .transpose()
        };
    Ok(FanoutOptions {
        per_host_timeout: seconds("timeout_secs", args.timeout_secs)?
            .unwrap_or(std::time::Duration::from_secs(60)),
        deadline: seconds("deadline_secs", args.deadline_secs)?,
        batch: amount("batch", &args.batch)?,
        max_fail: amount("max_fail", &args.max_fail)?,
        ..FanoutOptions::default()
    })
}

fn exec_request(argv: Vec<String>, shell: bool, timeout: Option<f64>) -> Request {
    Request::Exec(ExecArgs {
        agent_id: None,
        argv,
        shell,
        cwd: None,
        env: BTreeMap::new(),
        stdin: None,
        timeout_secs: timeout,
        max_output_bytes: None,
    })
}

/// Runs one fleet tool on `node` and returns its structured result. `inventory` is the fleet's
/// declared hosts (`sync::publish::node_inventory`): those that match the target but are not
/// connected are reported `unreachable`, and connected hosts it does not declare are marked.
pub async fn run(
    node: &Arc<Node>,
    request: FleetRequest,
    inventory: Option<&Inventory>,
) -> Result<serde_json::Value, ToolError> {
    let (fanout, request, per_os, summary) = match request {
        FleetRequest::FleetSend(args) => return send(node, args, inventory).await,
        FleetRequest::JobGet(args) => {
            let mut job = jobs::get(node.store(), &args.op_id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no job with op id {:?}; call job_list", args.op_id))?;
            if !args.hosts.is_empty() {
                job.report.records.retain(|r| args.hosts.contains(&r.host));
            }
            return serde_json::to_value(JobGetResult { job }).map_err(|e| e.to_string());
        }
        FleetRequest::JobList(args) => {
            let jobs =
                jobs::list(node.store(), args.limit.unwrap_or(20)).map_err(|e| e.to_string())?;
            return serde_json::to_value(JobListResult { jobs }).map_err(|e| e.to_string());
        }
        FleetRequest::FleetExec(args) => {
            let timeout = args.fanout.timeout_secs;
            let per_os = args
                .per_os
                .into_iter()
                .map(|(os, argv)| (os, exec_request(argv, args.shell, timeout)))
                .collect();
            let summary = format!("exec {}", args.argv.join(" "));
            (
                args.fanout,
                exec_request(args.argv, args.shell, timeout),
                per_os,
                summary,
            )
        }
        FleetRequest::FleetRead(args) => {
            let summary = format!("read {}", args.path);
            let request = Request::ReadFile(ReadFileArgs {
                agent_id: None,
                path: args.path,
                offset: args.offset,
                length: args.length,
            });
            (args.fanout, request, BTreeMap::new(), summary)
        }
        FleetRequest::FleetWrite(args) => {
            let summary = format!("write {}", args.path);
            let request = Request::WriteFile(WriteFileArgs {
                agent_id: None,
                path: args.path,
                content: args.content,
                encoding: args.encoding,
                create_dirs: false,
            });
            (args.fanout, request, BTreeMap::new(), summary)
        }
        FleetRequest::FleetGit(args) => {
            let summary = format!("git {:?} {}", args.action, args.repo).to_lowercase();
            let request = match args.action {
                GitAction::Status => Request::GitStatus(GitRepoArgs {
                    agent_id: None,
                    repo: args.repo,
                }),
                GitAction::Pull => Request::GitPull(GitRemoteArgs {
                    agent_id: None,
                    repo: args.repo,
                    remote: args.remote,
                    branch: args.branch,
                }),
                GitAction::Push => Request::GitPush(GitRemoteArgs {
                    agent_id: None,
                    repo: args.repo,
                    remote: args.remote,
                    branch: args.branch,
                }),
                GitAction::Commit => Request::GitCommit(GitCommitArgs {
                    agent_id: None,
                    repo: args.repo,
                    message: args.message.ok_or("commit needs a message")?,
                    paths: None,
                }),
            };
            (args.fanout, request, BTreeMap::new(), summary)
        }
        FleetRequest::FleetTask(mut args) => {
            let wall = args.fanout.timeout_secs.unwrap_or(600.0);
            let summary = format!(
                "task {}: {}",
                args.provider,
                remote_agents_ops::prompt_summary(&args.prompt, 60)
            );
            let request = Request::TaskDispatch(remote_agents_ops::TaskDispatchArgs {
                agent_id: None,
                provider: args.provider,
                prompt: args.prompt,
                cwd: args.cwd,
                model: args.model,
                max_turns: args.max_turns,
                timeout_secs: Some(wall),
                budget_usd: args.budget_usd,
                resume: None,
                allowed_tools: Vec::new(),
                disallowed_tools: Vec::new(),
                wait: true,
                transcript: false,
            });
            // The host stops the task at its wall time; its answer comes after that.
            args.fanout.timeout_secs = Some(wall + 30.0);
            (args.fanout, request, BTreeMap::new(), summary)
        }
        FleetRequest::FleetSearch(mut args) => {
            let summary = format!("search name={}", args.name.as_deref().unwrap_or("*"));
            let request = Request::FileSearch(FileSearchArgs {
                agent_id: None,
                roots: args.roots,
                name: args.name,
                content: args.content,
                images_only: false,
                include_hidden: false,
                max_results: None,
                ai_fallback: args.ai_fallback,
                // Each host asks the first AI CLI it has (`fleetctl search --ai-provider`
                // picks one).
                ai_provider: None,
            });
            if args.ai_fallback && args.fanout.timeout_secs.is_none() {
                // A host that asks its AI answers after the task, which the host bounds.
                args.fanout.timeout_secs = Some(remote_agents_ops::AI_SEARCH_TIMEOUT_SECS + 30.0);
            }
            (args.fanout, request, BTreeMap::new(), summary)
        }
    };
    let net = node.net().ok_or(
        "this node has no relay connection (local-only): start it with --relay, --room and \
         --token to act on the fleet",
    )?;
    let selector = remote_agents_spec::Selector::parse(&fanout.target)
        .map_err(|e| format!("target {:?}: {e}", fanout.target))?;
    let options = options(&fanout)?;
    let mut job = super::connection::fan_out(
        &net,
        node.agent_id(),
        super::connection::FanoutPlan {
            selector: &selector,
            expected: inventory.map_or(&[], |i| i.hosts.as_slice()),
            request,
            per_os,
            options: &options,
            summary,
            // The fleet tools are the MCP server's: a model asked.
            on_behalf_of_model: true,
            window_override: None,
        },
    )
    .await;
    if let Some(inventory) = inventory {
        inventory.mark_undeclared(&mut job.report.records);
    }
    if job.report.records.is_empty() {
        return Err(format!(
            "no host matched target {:?} ({} peers connected; see list_agents)",
            fanout.target,
            net.peers().len()
        ));
    }
    jobs::save(node.store(), &job).map_err(|e| e.to_string())?;
    let result = FleetResult {
        op_id: job.op_id.clone(),
        halted: job.report.halted,
        folded: fold(&job.report.records),
    };
    serde_json::to_value(result).map_err(|e| e.to_string())
}

/// `fleet_send`: one file to every targeted host, the hosts forwarding it to each other
/// (`transfer::swarm`), each step authorized on its host against this node's MCP caller.
async fn send(
    node: &Arc<Node>,
    args: FleetSendArgs,
    inventory: Option<&Inventory>,
) -> Result<serde_json::Value, ToolError> {
    let net = node.net().ok_or(
        "this node has no relay connection (local-only): start it with --relay, --room and \
         --token to act on the fleet",
    )?;
    let selector = remote_agents_spec::Selector::parse(&args.fanout.target)
        .map_err(|e| format!("target {:?}: {e}", args.fanout.target))?;
    let targets = super::remote::resolve_targets(
        &selector,
        &net.peers(),
        inventory.map_or(&[], |i| i.hosts.as_slice()),
    );
    if targets.is_empty() {
        return Err(format!(
            "no host matched target {:?} ({} peers connected; see list_agents)",
            args.fanout.target,
            net.peers().len()
        ));
    }
    let hosts = crate::node::operations::send_file::NodeHosts::new(
        node.clone(),
        remote_agents_ops::Caller::McpLocal,
    );
    let started_ms = crate::journal::now_ms();
    let job = super::send::SwarmJob {
        from_host: args
            .from_agent_id
            .unwrap_or_else(|| node.agent_id().to_string()),
        from_path: args.from_path.clone(),
        targets,
        to_path: args.to_path.clone(),
    };
    let mut report = super::send::run(
        &hosts,
        job,
        Arc::new(|_, _| {}),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    if let Some(inventory) = inventory {
        inventory.mark_undeclared(&mut report.records);
    }
    let job = Job {
        op_id: jobs::new_op_id(),
        summary: format!("send {} -> {}", args.from_path, args.to_path),
        target: args.fanout.target,
        started_ms,
        finished_ms: crate::journal::now_ms(),
        report,
        trigger: None,
        outcome: None,
    };
    jobs::save(node.store(), &job).map_err(|e| e.to_string())?;
    let result = FleetResult {
        op_id: job.op_id.clone(),
        halted: job.report.halted,
        folded: fold(&job.report.records),
    };
    serde_json::to_value(result).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(op: &str, args: serde_json::Value) -> Result<FleetRequest, String> {
        serde_json::from_value(serde_json::json!({"op": op, "args": args}))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn fleet_arguments_parse_and_unknown_fields_are_rejected() {
        let request = parse(
            "fleet_exec",
            serde_json::json!({"target": "web", "argv": ["uptime"], "batch": "10%", "per_os": {"macos": ["sw_vers"]}}),
        )
        .unwrap();
        let FleetRequest::FleetExec(args) = request else {
            panic!("not fleet_exec")
        };
        assert_eq!(args.fanout.target, "web");
        assert_eq!(args.fanout.batch.as_deref(), Some("10%"));
        assert_eq!(args.per_os["macos"], vec!["sw_vers"]);
        let error = parse(
            "fleet_read",
            serde_json::json!({"target": "all", "path": "x", "bogus": 1}),
        )
        .unwrap_err();
        assert!(error.contains("bogus"), "{error}");
        assert!(
            parse("fleet_read", serde_json::json!({"path": "x"}))
                .unwrap_err()
                .contains("target")
        );
    }

    #[test]
    fn fleet_schemas_are_strict_objects_with_the_target() {
        let schema = serde_json::to_value(schemars::schema_for!(FleetExecArgs)).unwrap();
        assert_eq!(
            schema["additionalProperties"],
            serde_json::json!(false),
            "{schema}"
        );
        assert!(schema["properties"].get("target").is_some(), "{schema}");
        assert!(schema["properties"].get("argv").is_some(), "{schema}");
    }

    #[test]
    fn bad_amounts_and_durations_are_reported_by_field() {
        let args = FanoutArgs {
            target: "all".into(),
            max_fail: Some("lots".into()),
            ..FanoutArgs::default()
        };
        assert!(options(&args).unwrap_err().starts_with("max_fail:"));
        let args = FanoutArgs {
            target: "all".into(),
            timeout_secs: Some(-1.0),
            ..FanoutArgs::default()
        };
        assert!(options(&args).unwrap_err().starts_with("timeout_secs"));
        // A deadline of 1e18 seconds passed `try_from_secs_f64` and then panicked where it was
        // added to the clock.
        let args = FanoutArgs {
            target: "all".into(),
            deadline_secs: Some(1e18),
            ..FanoutArgs::default()
        };
        assert!(options(&args).unwrap_err().starts_with("deadline_secs"));
    }
}
