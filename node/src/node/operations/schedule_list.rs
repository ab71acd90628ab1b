//! `schedule_list`: the node's schedules (from the spec or imperative), their next and recent
//! runs, and the drift. Gate: the mode allows reading.

use std::sync::Arc;

use remote_agents_ops::operation::ScheduleList;
use remote_agents_ops::{Outcome, ScheduleListArgs};

use super::{Call, Run, blocking, result};
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

impl Run for ScheduleList {
    type Checked = ScheduleListArgs;

    fn check(_node: &Node, mode: Mode, a: ScheduleListArgs) -> Result<ScheduleListArgs, Refusal> {
        Policy::check_mode(mode, Access::Read)?;
        Ok(a)
    }

    async fn execute(node: Arc<Node>, _call: Call, args: ScheduleListArgs) -> Outcome {
        blocking(move || result(node.schedules.list(&args))).await
    }
}
