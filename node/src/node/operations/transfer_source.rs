//! `transfer_source`: a step of `send_file`, asked by the transfer's coordinator. Opens a file
//! through the gate (by descriptor) and keeps it for the one destination host named, which pulls
//! its chunks with the ticket this answers. Gate: the path resolves for reading beneath a root.

use std::sync::Arc;

use remote_agents_ops::operation::TransferSource;
use remote_agents_ops::{Outcome, TransferSourceArgs, TransferSourceResult};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};
use crate::transfer::Source;

/// The file the gate approved and who may pull it.
pub(in crate::node) struct Opened {
    target: Resolved,
    to_agent_id: String,
}

impl Run for TransferSource {
    type Checked = Opened;

    fn check(node: &Node, mode: Mode, a: TransferSourceArgs) -> Result<Opened, Refusal> {
        Ok(Opened {
            target: node
                .policy()
                .resolve(mode, std::path::Path::new(&a.path), Intent::Read)?,
            to_agent_id: a.to_agent_id,
        })
    }

    async fn execute(node: Arc<Node>, _call: Call, opened: Opened) -> Outcome {
        blocking(
            move || match Source::open(&opened.target, &opened.to_agent_id) {
                Ok(source) => {
                    let result = TransferSourceResult {
                        agent_id: node.agent_id().to_string(),
                        path: source.path().to_string(),
                        size: source.size(),
                        modified_ms: source.modified_ms(),
                        ticket: String::new(),
                    };
                    match node.transfers().add_source(source) {
                        Ok(ticket) => Outcome::ok(&TransferSourceResult { ticket, ..result }),
                        Err(error) => Outcome::failed(error),
                    }
                }
                Err(error) => Outcome::failed(error),
            },
        )
        .await
    }
}
