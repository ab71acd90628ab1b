//! The task-start check: in the crates that run a node, tasks start only in the node library's
//! `runtime` module (`tokio::spawn` and its relatives appear nowhere else), so there is one place
//! that decides how a task starts and what it carries. Test code is left out.

use std::path::Path;

use syn::visit::Visit;

use crate::metadata::cargo_metadata;
use crate::module_cycles::is_test_only;
use crate::module_docs::rust_files;
use crate::{Finding, TidyError, relative};

/// The functions that start a task, by their last path segment under `tokio`.
const STARTERS: &[&str] = &["spawn", "spawn_blocking", "spawn_local"];

/// A finding for every path to a task-starting `tokio` function in the `src/` of `crates` (by
/// package name) outside `runtime_file` (relative to the workspace root).
pub fn task_starts(
    workspace_root: &Path,
    crates: &[&str],
    runtime_file: &str,
) -> Result<Vec<Finding>, TidyError> {
    let metadata = cargo_metadata(workspace_root, false)?;
    let mut files = Vec::new();
    for package in metadata.members() {
        if crates.contains(&package.name.as_str()) {
            let package_dir = package.manifest_path.parent().unwrap_or(Path::new("."));
            rust_files(&package_dir.join("src"), &mut files)?;
        }
    }
    files.sort();
    let mut findings = Vec::new();
    for file in files {
        let shown = relative(&metadata.workspace_root, &file);
        if shown == runtime_file {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|source| TidyError::Io {
            path: file.clone(),
            source,
        })?;
        let syntax = match syn::parse_file(&text) {
            Ok(syntax) => syntax,
            Err(error) => {
                findings.push(Finding::UnreadableModule {
                    file: shown,
                    reason: format!("does not parse: {error}"),
                });
                continue;
            }
        };
        let mut visitor = Starts::default();
        visitor.visit_file(&syntax);
        findings.extend(visitor.found.into_iter().map(|(line, what)| {
            Finding::TaskStartedOutsideRuntime {
                at: format!("{shown}:{line}"),
                what,
            }
        }));
    }
    Ok(findings)
}

#[derive(Default)]
struct Starts {
    /// (line, the path as written)
    found: Vec<(usize, String)>,
}

impl Starts {
    fn check(&mut self, segments: Vec<String>, line: usize) {
        if segments.first().is_some_and(|first| first == "tokio")
            && segments
                .last()
                .is_some_and(|last| STARTERS.contains(&last.as_str()))
        {
            self.found.push((line, segments.join("::")));
        }
    }
}

impl<'ast> Visit<'ast> for Starts {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attributes = match item {
            syn::Item::Fn(item) => &item.attrs,
            syn::Item::Mod(item) => &item.attrs,
            syn::Item::Impl(item) => &item.attrs,
            syn::Item::Use(item) => &item.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attributes) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = path
            .segments
            .first()
            .map_or(0, |segment| segment.ident.span().start().line);
        self.check(segments, line);
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut stack = vec![(Vec::<String>::new(), &item.tree)];
        while let Some((prefix, tree)) = stack.pop() {
            match tree {
                syn::UseTree::Path(path) => {
                    let mut next = prefix.clone();
                    next.push(path.ident.to_string());
                    stack.push((next, &path.tree));
                }
                syn::UseTree::Name(name) => {
                    let mut full = prefix.clone();
                    full.push(name.ident.to_string());
                    self.check(full, name.ident.span().start().line);
                }
                syn::UseTree::Rename(rename) => {
                    let mut full = prefix.clone();
                    full.push(rename.ident.to_string());
                    self.check(full, rename.ident.span().start().line);
                }
                syn::UseTree::Glob(_) => {}
                syn::UseTree::Group(group) => {
                    stack.extend(group.items.iter().map(|tree| (prefix.clone(), tree)));
                }
            }
        }
    }

    /// Macro bodies (`tokio::select!`, `tokio::join!`…) are tokens, not syntax: look for the
    /// paths in their text.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let text: String = mac
            .tokens
            .to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for starter in STARTERS {
            for path in [
                format!("tokio::{starter}("),
                format!("tokio::task::{starter}("),
            ] {
                if text.contains(&path) {
                    let line = mac
                        .path
                        .segments
                        .first()
                        .map_or(0, |segment| segment.ident.span().start().line);
                    self.found
                        .push((line, path.trim_end_matches('(').to_string()));
                }
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

#[cfg(test)]
mod tests {
    use super::task_starts;
    use crate::fixture::{Fixture, shown};

    #[test]
    fn tasks_started_outside_the_runtime_module_are_named() {
        let fixture = Fixture::workspace(&["node", "other"])
            .package("node", "")
            .package("other", "")
            .file(
                "node/src/lib.rs",
                "//! Root.\nmod runtime;\nmod work;\n",
            )
            .file(
                "node/src/runtime.rs",
                "//! The one place.\npub fn spawn() {\n    tokio::spawn(async {});\n}\n",
            )
            .file(
                "node/src/work.rs",
                "//! Work.\nuse tokio::task::{spawn_blocking, yield_now};\nfn f() {\n    tokio::spawn(async {});\n    tokio::select! {\n        _ = async {} => { tokio::task::spawn_blocking(|| ()); }\n    }\n    crate::runtime::spawn();\n}\n#[cfg(test)]\nmod tests {\n    fn g() {\n        tokio::spawn(async {});\n    }\n}\n",
            )
            // Not a crate the check covers.
            .file(
                "other/src/lib.rs",
                "//! Other.\nfn f() {\n    tokio::spawn(async {});\n}\n",
            );

        let findings =
            task_starts(fixture.root(), &["node"], "node/src/runtime.rs").expect("the check runs");
        assert_eq!(
            shown(&findings),
            [
                "node/src/work.rs:2: `tokio::task::spawn_blocking` starts a task outside the runtime module",
                "node/src/work.rs:4: `tokio::spawn` starts a task outside the runtime module",
                "node/src/work.rs:5: `tokio::task::spawn_blocking` starts a task outside the runtime module",
            ]
        );
    }
}
