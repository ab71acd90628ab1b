//! `desired_get`: a kept bundle — the applied one, or one by generation or revision — for peers
//! that missed it and for `rollback`; a bundle from the node's own watched source is not shared.
//! Gate: none; the bundles are signed and any member of the room may pass them on, in every
//! mode.

use std::sync::Arc;

use remote_agents_ops::operation::DesiredGet;
use remote_agents_ops::{DesiredGetArgs, Outcome};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for DesiredGet {
    /// The generation or revision wanted; `None`: the applied bundle.
    type Checked = Option<String>;

    fn check(_node: &Node, _mode: Mode, a: DesiredGetArgs) -> Result<Option<String>, Refusal> {
        Ok(a.revision)
    }

    async fn execute(node: Arc<Node>, _call: Call, revision: Option<String>) -> Outcome {
        blocking(move || match revision {
            None => match node.desired.current() {
                Some(bundle) if node.is_local_only(&bundle) => Outcome::failed(
                    "this node runs a spec from its own watched source, which it does not share",
                ),
                Some(bundle) => Outcome::ok(&bundle.signed),
                None => Outcome::failed("this node has no desired state yet"),
            },
            Some(wanted) => match node.desired.find(&wanted) {
                Ok(Some(bundle)) => Outcome::ok(&bundle),
                Ok(None) => Outcome::failed(format!(
                    "this node keeps no bundle for `{wanted}` (see fleetctl history)"
                )),
                Err(e) => Outcome::failed(e),
            },
        })
        .await
    }
}
