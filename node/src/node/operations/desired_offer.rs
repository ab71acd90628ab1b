//! `desired_offer`: verifies a signed desired-state bundle and applies it (answering `new`,
//! `current`, `outside-wave` or `refused` with the node's status), pruning imperative schedules if asked. Gate:
//! every mode takes desired state (a spec that disabled a host must be able to enable it again),
//! except under a local kill switch; the bundle carries its own operator signature.

use std::sync::Arc;

use remote_agents_ops::operation::DesiredOffer;
use remote_agents_ops::{DesiredOfferArgs, DesiredOfferResult, Outcome};

use super::{Call, Run, blocking};
use crate::desired::Accepted;
use crate::node::Node;
use crate::policy::{Mode, Refusal};

impl Run for DesiredOffer {
    type Checked = DesiredOfferArgs;

    fn check(node: &Node, _mode: Mode, a: DesiredOfferArgs) -> Result<DesiredOfferArgs, Refusal> {
        if node.settings.mode.value == Mode::Disabled {
            return Err(Refusal {
                reason: "this node is disabled by its local config; it applies no desired state"
                    .into(),
            });
        }
        Ok(a)
    }

    async fn execute(node: Arc<Node>, _call: Call, args: DesiredOfferArgs) -> Outcome {
        blocking(move || {
            let (decision, reason) = match node.offer_bundle_in_request(&args.bundle) {
                Ok(Accepted::New) => ("new", None),
                Ok(Accepted::Current) => ("current", None),
                Ok(Accepted::OutsideWave) => (
                    "outside-wave",
                    Some("a rollout wave that does not include this host".to_string()),
                ),
                Err(refusal) => ("refused", Some(refusal.to_string())),
            };
            if args.prune && matches!(decision, "new" | "current") {
                node.schedules.prune_imperative();
            }
            Outcome::ok(&DesiredOfferResult {
                decision: decision.into(),
                reason,
                status: node.status(),
            })
        })
        .await
    }
}
