//! `read_file`: reads a file, or a byte range of it. Gate: the path resolves for reading beneath
//! a root.

use std::sync::Arc;

use remote_agents_ops::operation::ReadFile;
use remote_agents_ops::{Outcome, ReadFileArgs};

use super::{Call, Run, blocking, fs_result};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};

/// The file and the range of it to read.
pub(in crate::node) struct Range {
    target: Resolved,
    offset: u64,
    length: Option<u64>,
}

impl Run for ReadFile {
    type Checked = Range;

    fn check(node: &Node, mode: Mode, a: ReadFileArgs) -> Result<Range, Refusal> {
        Ok(Range {
            target: node
                .policy()
                .resolve(mode, std::path::Path::new(&a.path), Intent::Read)?,
            offset: a.offset.unwrap_or(0),
            length: a.length,
        })
    }

    async fn execute(_node: Arc<Node>, _call: Call, range: Range) -> Outcome {
        blocking(move || {
            fs_result(crate::fs::read_file(
                &range.target,
                range.offset,
                range.length,
            ))
        })
        .await
    }
}
