//! The pure-crate check: no normal dependency chain leads from a pure crate to an I/O or runtime
//! crate.
//!
//! It reads `cargo metadata`'s resolved graph, which unifies features across the whole
//! workspace: an optional dependency that another member switches on counts here too. That errs
//! towards a finding, never towards a miss.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use crate::metadata::cargo_metadata;
use crate::{Finding, TidyError};

/// For each crate in `pure` (package names): a finding with the shortest chain of normal
/// dependencies (not dev, not build) to each crate in `forbidden` it reaches, or a finding that
/// it is not a workspace member.
pub fn forbidden_dependencies(
    workspace_root: &Path,
    pure: &[&str],
    forbidden: &[&str],
) -> Result<Vec<Finding>, TidyError> {
    let metadata = cargo_metadata(workspace_root, true)?;
    let names: BTreeMap<&str, &str> = metadata
        .packages
        .iter()
        .map(|package| (package.id.as_str(), package.name.as_str()))
        .collect();
    let mut normal_dependencies: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata.resolve.iter().flat_map(|resolve| &resolve.nodes) {
        let mut dependencies: Vec<&str> = node
            .deps
            .iter()
            .filter(|dep| dep.dep_kinds.iter().any(|kind| kind.kind.is_none()))
            .map(|dep| dep.pkg.as_str())
            .collect();
        // By name, so the shortest chain chosen among equals is the same on every run.
        dependencies.sort_by_key(|id| names.get(id).copied().unwrap_or(id));
        normal_dependencies.insert(node.id.as_str(), dependencies);
    }
    let members = metadata.members();

    let mut findings = Vec::new();
    for &pure_name in pure {
        let Some(start) = members.iter().find(|package| package.name == pure_name) else {
            findings.push(Finding::PureCrateMissing {
                name: pure_name.to_owned(),
            });
            continue;
        };
        // Breadth first, so the first time a crate is reached is by a shortest chain.
        let mut reached_from: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        reached_from.insert(start.id.as_str(), None);
        let mut queue = VecDeque::from([start.id.as_str()]);
        let mut reached_forbidden: Vec<&str> = Vec::new();
        while let Some(id) = queue.pop_front() {
            let name = names.get(id).copied().unwrap_or(id);
            if id != start.id && forbidden.contains(&name) {
                // A forbidden crate's own dependencies are its business: one finding for it.
                reached_forbidden.push(id);
                continue;
            }
            for &dependency in normal_dependencies.get(id).into_iter().flatten() {
                if !reached_from.contains_key(dependency) {
                    reached_from.insert(dependency, Some(id));
                    queue.push_back(dependency);
                }
            }
        }
        for end in reached_forbidden {
            let mut chain = vec![end];
            while let Some(Some(previous)) = reached_from.get(chain[chain.len() - 1]) {
                chain.push(previous);
            }
            chain.reverse();
            findings.push(Finding::ForbiddenDependency {
                chain: chain
                    .iter()
                    .map(|id| names.get(id).copied().unwrap_or(id).to_owned())
                    .collect(),
            });
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::forbidden_dependencies;
    use crate::fixture::{Fixture, shown};

    #[test]
    fn a_pure_crate_reaching_tokio_is_named_with_its_chain() {
        // `pure` reaches `tokio` through `middle`; its dev- and build-dependencies reach it too,
        // which does not count; `clean` reaches nothing forbidden; `missing` is not a member.
        let fixture = Fixture::workspace(&["pure", "middle", "tokio", "builder", "clean"])
            .package(
                "pure",
                "[dependencies]\nmiddle = { path = \"../middle\" }\n\
                 [dev-dependencies]\ntokio = { path = \"../tokio\" }\n\
                 [build-dependencies]\nbuilder = { path = \"../builder\" }\n",
            )
            .file("pure/build.rs", "//! Build.\nfn main() {}\n")
            .package(
                "middle",
                "[dependencies]\ntokio = { path = \"../tokio\" }\n",
            )
            .package("tokio", "")
            .package(
                "builder",
                "[dependencies]\ntokio = { path = \"../tokio\" }\n",
            )
            .package(
                "clean",
                "[dependencies]\nbuilder = { path = \"../builder\", optional = true }\n",
            );

        let findings =
            forbidden_dependencies(fixture.root(), &["pure", "clean", "missing"], &["tokio"])
                .expect("the check runs");
        assert_eq!(
            shown(&findings),
            [
                "pure crate reaches an I/O or runtime crate: pure -> middle -> tokio",
                "pure crate missing is not a member of the workspace",
            ]
        );
    }
}
