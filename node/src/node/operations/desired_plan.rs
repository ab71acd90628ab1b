//! `desired_plan`: checks spec files as a node checks a bundle's (the spec crate's limits, every
//! diagnostic with its file, line and column) and plans them against the generation this node
//! applied, applying nothing. For callers without the spec parser: the browser panel shows this
//! plan before the operator signs and offers the files. Gate: none beyond `read`; it reads only
//! the node's applied bundle and the caller's text.

use std::sync::Arc;

use remote_agents_ops::operation::DesiredPlan;
use remote_agents_ops::{DesiredPlanArgs, DesiredPlanResult, Outcome};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for DesiredPlan {
    type Checked = DesiredPlanArgs;

    fn check(_node: &Node, _mode: Mode, args: DesiredPlanArgs) -> Result<DesiredPlanArgs, Refusal> {
        Ok(args)
    }

    async fn execute(node: Arc<Node>, _call: Call, args: DesiredPlanArgs) -> Outcome {
        blocking(move || plan(&node, &args.files)).await
    }
}

fn plan(node: &Node, files: &[remote_agents_ops::bundle::SpecFile]) -> Outcome {
    if files.is_empty() {
        return Outcome::failed(
            "no spec files to plan: pass at least one .yaml, .yml or .kdl file",
        );
    }
    let (model, warnings) = match remote_agents_ops::bundle::load_spec(files) {
        Ok(loaded) => loaded,
        Err(errors) => {
            return Outcome::failed(format!(
                "the spec has errors; nothing can be applied:\n{errors}"
            ));
        }
    };
    let applied = node.desired.current();
    let old = applied
        .as_ref()
        .map(|bundle| bundle.model.clone())
        .unwrap_or_default();
    let plan = remote_agents_spec::plan(&old, &model);
    let spec_hash = remote_agents_ops::bundle::spec_hash(files);
    Outcome::ok(&DesiredPlanResult {
        fleet: model
            .fleet()
            .map(|(_, fleet)| fleet.metadata.name.clone())
            .unwrap_or_default(),
        generation: applied.as_ref().map_or(0, |b| b.content.generation),
        revision: applied.as_ref().map(|b| b.content.revision.clone()),
        unchanged: applied.as_ref().is_some_and(|b| b.spec_hash == spec_hash),
        spec_hash,
        text: plan.to_text(),
        add: plan.summary.add,
        change: plan.summary.change,
        remove: plan.summary.remove,
        unknown: plan.summary.unknown,
        warnings: warnings.iter().map(|d| d.to_string()).collect(),
    })
}
