//! `schedule_remove`: stops and deletes an imperative schedule (its run history is kept). Gate:
//! the mode allows writing.

use std::sync::Arc;

use remote_agents_ops::operation::ScheduleRemove;
use remote_agents_ops::{Outcome, ScheduleRemoveArgs};

use super::{Call, Run, blocking, result};
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

impl Run for ScheduleRemove {
    /// The schedule's name.
    type Checked = String;

    fn check(_node: &Node, mode: Mode, a: ScheduleRemoveArgs) -> Result<String, Refusal> {
        Policy::check_mode(mode, Access::Write)?;
        Ok(a.name)
    }

    async fn execute(node: Arc<Node>, _call: Call, name: String) -> Outcome {
        blocking(move || result(node.schedules.remove(&name))).await
    }
}
