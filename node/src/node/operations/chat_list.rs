//! `chat_list`: the host's local AI chats (`crate::chat`), newest first, a page of them. Gate:
//! the mode lets reads through; each chat file then passes the path policy as it is read (a
//! refused one is skipped with its reason, or left out unnamed where the deny list covers it).

use std::sync::Arc;

use remote_agents_ops::operation::ChatList;
use remote_agents_ops::{ChatListArgs, Outcome};

use super::{Call, Run, blocking};
use crate::chat::ChatSources;
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

/// What the gate approved: the policy and mode every file is read through, and the request.
pub(in crate::node) struct Listing {
    policy: Arc<Policy>,
    mode: Mode,
    args: ChatListArgs,
}

impl Run for ChatList {
    type Checked = Listing;

    fn check(node: &Node, mode: Mode, args: ChatListArgs) -> Result<Listing, Refusal> {
        Policy::check_mode(mode, Access::Read)?;
        Ok(Listing {
            policy: node.policy(),
            mode,
            args,
        })
    }

    async fn execute(_node: Arc<Node>, _call: Call, listing: Listing) -> Outcome {
        blocking(move || {
            let sources = ChatSources::from_env(listing.policy.home());
            Outcome::ok(&crate::chat::list(
                &listing.policy,
                listing.mode,
                &sources,
                &listing.args,
            ))
        })
        .await
    }
}
