//! `chat_get`: one of the host's local AI chats (`crate::chat`), a page of its messages capped in
//! bytes. Gate: the mode lets reads through; the chat's file then passes the path policy as it is
//! read.

use std::sync::Arc;

use remote_agents_ops::operation::ChatGet;
use remote_agents_ops::{ChatGetArgs, Outcome};

use super::{Call, Run, blocking};
use crate::chat::ChatSources;
use crate::node::Node;
use crate::policy::{Access, Mode, Policy, Refusal};

/// What the gate approved: the policy and mode the chat is read through, and the request.
pub(in crate::node) struct Reading {
    policy: Arc<Policy>,
    mode: Mode,
    args: ChatGetArgs,
}

impl Run for ChatGet {
    type Checked = Reading;

    fn check(node: &Node, mode: Mode, args: ChatGetArgs) -> Result<Reading, Refusal> {
        Policy::check_mode(mode, Access::Read)?;
        Ok(Reading {
            policy: node.policy(),
            mode,
            args,
        })
    }

    async fn execute(_node: Arc<Node>, _call: Call, reading: Reading) -> Outcome {
        blocking(move || {
            let sources = ChatSources::from_env(reading.policy.home());
            match crate::chat::get(&reading.policy, reading.mode, &sources, &reading.args) {
                Ok(chat) => Outcome::ok(&chat),
                Err(error) => Outcome::failed(error),
            }
        })
        .await
    }
}
