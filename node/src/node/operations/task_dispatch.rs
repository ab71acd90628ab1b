//! `task_dispatch`: hands a prompt to this host's own AI CLI (`crate::task`). Gate: as for
//! `exec` — the mode lets commands run (`disabled` refuses), the provider's program passes the
//! command lists, the cwd resolves for reading beneath a root — then the numbers within the
//! host's `[tasks]` limits. The host's mode and deny lists travel into the provider's own
//! permission flags (`task::Launch`). Answers at once with the task's record, or with `wait`
//! once it ends, reporting progress per turn; cancelling a waiting call stops the task.

use std::sync::Arc;

use remote_agents_ops::operation::TaskDispatch;
use remote_agents_ops::{Outcome, TaskDispatchArgs, timeout_from_secs};
use tokio_util::sync::CancellationToken;

use super::{Call, Run};
use crate::node::Node;
use crate::policy::{Intent, Mode, Policy, Refusal};
use crate::task::{Launch, TaskProgress};

/// The commands and paths a provider is told to refuse on a host in `mode`: the host's deny
/// lists bind it as they bind exec (not in bypass mode), and the node's own files in every mode.
pub(super) fn provider_denials(policy: &Policy, mode: Mode) -> (Vec<String>, Vec<String>) {
    let (deny_commands, mut deny_paths) = if mode == Mode::Bypass {
        (Vec::new(), Vec::new())
    } else {
        (
            policy.deny_command_globs().to_vec(),
            policy.deny_path_globs().to_vec(),
        )
    };
    for own in policy.hard_limit_paths() {
        let own = own.display().to_string();
        deny_paths.push(if std::path::Path::new(&own).is_dir() {
            format!("{}/**", own.trim_end_matches('/'))
        } else {
            own
        });
    }
    (deny_commands, deny_paths)
}

/// What the gate approved, and whether the caller waits.
pub(in crate::node) struct Dispatch {
    launch: Launch,
    wait: bool,
    transcript: bool,
}

impl Run for TaskDispatch {
    type Checked = Dispatch;

    fn check(node: &Node, mode: Mode, a: TaskDispatchArgs) -> Result<Dispatch, Refusal> {
        let refuse = |reason: String| Refusal { reason };
        let policy = node.policy();
        // The provider is a program this host runs for the caller: the command gate judges it
        // (the mode, and the allow and deny lists by the program's name).
        policy
            .check_command(mode, &[a.provider.program().to_string()], false)
            .map_err(|r| refuse(format!("task refused: {}", r.reason)))?;
        if a.prompt.trim().is_empty() {
            return Err(refuse("prompt is empty".into()));
        }
        let cwd = match &a.cwd {
            Some(cwd) => {
                policy
                    .resolve(mode, std::path::Path::new(cwd), Intent::Read)?
                    .absolute
            }
            None => policy.home().to_path_buf(),
        };
        let limits = node.tasks().limits();
        let wall = std::time::Duration::from_secs(limits.max_wall_secs);
        let timeout = match a.timeout_secs {
            Some(secs) => timeout_from_secs("timeout_secs", secs).map_err(refuse)?,
            None => {
                std::time::Duration::from_secs_f64(remote_agents_ops::DEFAULT_TASK_TIMEOUT_SECS)
            }
        }
        .min(wall);
        let max_turns = match (a.max_turns, limits.max_turns) {
            (Some(0), _) => return Err(refuse("max_turns must be at least 1".into())),
            (Some(asked), Some(limit)) => Some(asked.min(limit)),
            (asked, limit) => asked.or(limit),
        };
        let budget_usd = match (a.budget_usd, limits.max_budget_usd) {
            (Some(b), _) if !(b.is_finite() && b > 0.0) => {
                return Err(refuse(format!(
                    "budget_usd must be a positive number of dollars, got {b}"
                )));
            }
            (Some(asked), Some(limit)) => Some(asked.min(limit)),
            (asked, limit) => asked.or(limit),
        };
        if a.provider != remote_agents_ops::TaskProvider::Claude
            && !(a.allowed_tools.is_empty() && a.disallowed_tools.is_empty())
        {
            return Err(refuse(format!(
                "allowed_tools and disallowed_tools are Claude Code's rules; {} has no such \
                 list",
                a.provider
            )));
        }
        let (deny_commands, deny_paths) = provider_denials(&policy, mode);
        Ok(Dispatch {
            launch: Launch {
                provider: a.provider,
                prompt: a.prompt,
                cwd,
                model: a.model,
                max_turns,
                budget_usd,
                timeout,
                resume: a.resume,
                mode,
                allowed_tools: a.allowed_tools,
                disallowed_tools: a.disallowed_tools,
                deny_commands,
                deny_paths,
            },
            wait: a.wait,
            transcript: a.transcript,
        })
    }

    async fn execute(node: Arc<Node>, call: Call, d: Dispatch) -> Outcome {
        let tasks = node.tasks().clone();
        let (cancel, progress) = if d.wait {
            let progress = call.ctx.progress.clone().map(|p| {
                let sink: TaskProgress = Arc::new(move |turns, max, message| {
                    p(f64::from(turns), max.map(f64::from), message)
                });
                sink
            });
            // Cancelling the waiting call stops the task.
            (call.ctx.cancel.child_token(), progress)
        } else {
            // The task outlives this call: it ends by itself or by task_cancel.
            (CancellationToken::new(), None)
        };
        let started = match tasks.start(node.agent_id(), d.launch, cancel, progress) {
            Ok(status) => status,
            Err(error) => return Outcome::failed(error),
        };
        if !d.wait {
            return Outcome::ok(&started);
        }
        let wait = std::time::Duration::from_secs(tasks.limits().max_wall_secs + 60);
        match tasks
            .wait(
                &started.task_id,
                wait,
                d.transcript,
                &CancellationToken::new(),
            )
            .await
        {
            // A failed task is still a record the caller reads (its error says why), not a
            // failure of the operation.
            Ok(Some(status)) => Outcome::ok(&status),
            Ok(None) => Outcome::failed("the task's record was lost"),
            Err(e) => Outcome::failed(e),
        }
    }
}
