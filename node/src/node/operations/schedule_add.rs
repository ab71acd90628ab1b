//! `schedule_add`: adds (or replaces) an imperative schedule, whose firings run as the caller
//! who added it. Gate: the schedule is valid, the mode allows writing (adding one changes the
//! node), and its command passes the policy now, since it installs future process execution
//! (each firing passes the gate again).

use std::sync::Arc;

use remote_agents_ops::operation::ScheduleAdd;
use remote_agents_ops::{Outcome, ScheduleAddArgs};

use super::{Call, Run, blocking, result};
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

impl Run for ScheduleAdd {
    type Checked = ScheduleAddArgs;

    fn check(node: &Node, mode: Mode, a: ScheduleAddArgs) -> Result<ScheduleAddArgs, Refusal> {
        let (argv, shell) =
            crate::schedule::validate_add(&a).map_err(|reason| Refusal { reason })?;
        Policy::check_mode(mode, Access::Write)?;
        node.policy().check_command(mode, &argv, shell)?;
        Ok(a)
    }

    async fn execute(node: Arc<Node>, call: Call, args: ScheduleAddArgs) -> Outcome {
        // The schedule's issuer is the caller that added it: each firing runs as them.
        blocking(move || result(node.schedules.add(args, &call.caller))).await
    }
}
