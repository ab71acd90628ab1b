//! `exec`: runs a program on the async runtime, reporting its progress. Gate: the command
//! passes the policy for the mode, its cwd resolves for reading beneath a root, the numbers are
//! in range, and plan mode has a read-only sandbox to run it in.

use std::sync::Arc;

use remote_agents_ops::operation::Exec;
use remote_agents_ops::{ExecArgs, Outcome};

use super::{Call, Run, error_chain};
use crate::exec::{self, ExecSpec};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal};

impl Run for Exec {
    type Checked = ExecSpec;

    fn check(node: &Node, mode: Mode, a: ExecArgs) -> Result<ExecSpec, Refusal> {
        let refuse = |reason: String| Refusal { reason };
        node.policy().check_command(mode, &a.argv, a.shell)?;
        let cwd = match &a.cwd {
            Some(cwd) => {
                let resolved =
                    node.policy()
                        .resolve(mode, std::path::Path::new(cwd), Intent::Read)?;
                resolved.absolute
            }
            None => node.policy().home().to_path_buf(),
        };
        let timeout = a.timeout().map_err(refuse)?;
        let max_output = a.max_output().map_err(refuse)?;
        // Plan mode runs commands only inside the read-only sandbox; where none can be made the
        // request is refused here, before anything starts.
        let sandboxed = mode == Mode::Plan;
        if sandboxed {
            crate::sandbox::check().map_err(|e| refuse(e.to_string()))?;
        }
        Ok(ExecSpec {
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
                node.policy().hard_limit_paths()
            } else {
                Vec::new()
            },
        })
    }

    async fn execute(_node: Arc<Node>, call: Call, spec: ExecSpec) -> Outcome {
        let progress = call.ctx.progress.clone();
        let result = exec::run(spec, call.ctx.cancel.clone(), move |p| {
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
}
