//! `file_search`: finds files by name glob, content regex and/or images only. Gate: the mode
//! allows reading, the patterns compile, and the given roots resolve for reading (of the default
//! roots, those that do not are left out).

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::FileSearch;
use remote_agents_ops::{FileSearchArgs, Outcome};

use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Access, Intent, Mode, Policy, Refusal};
use crate::search;

impl Run for FileSearch {
    /// The roots to search and the query.
    type Checked = (Vec<PathBuf>, search::Query);

    fn check(
        node: &Node,
        mode: Mode,
        a: FileSearchArgs,
    ) -> Result<(Vec<PathBuf>, search::Query), Refusal> {
        Policy::check_mode(mode, Access::Read)?;
        let query = search::Query::new(
            a.name.as_deref(),
            a.content.as_deref(),
            a.images_only,
            a.include_hidden,
            a.max_results,
        )
        .map_err(|e| Refusal {
            reason: e.to_string(),
        })?;
        let roots: Vec<PathBuf> = match &a.roots {
            Some(roots) => roots
                .iter()
                .map(|r| {
                    node.policy()
                        .resolve(mode, std::path::Path::new(r), Intent::Read)
                        .map(|r| r.absolute)
                })
                .collect::<Result<_, _>>()?,
            None => search::default_roots(node.policy().home())
                .into_iter()
                .filter_map(|r| node.policy().resolve(mode, &r, Intent::Read).ok())
                .map(|r| r.absolute)
                .collect(),
        };
        Ok((roots, query))
    }

    async fn execute(
        node: Arc<Node>,
        _call: Call,
        (roots, query): (Vec<PathBuf>, search::Query),
    ) -> Outcome {
        blocking(move || {
            Outcome::ok(&search::search(
                &node.policy(),
                node.effective_mode(),
                &roots,
                &query,
            ))
        })
        .await
    }
}
