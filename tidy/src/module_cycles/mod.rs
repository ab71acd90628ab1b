//! The module-cycle check: in every crate of the workspace (each library, binary, test and build
//! script is a crate of its own), the references between top-level modules form no cycle.
//!
//! A crate's top-level modules are the `mod` items of its root file. Everything in a top-level
//! module's files (its submodules, inline ones too) that names another top-level module, through
//! `crate::`, enough `super::`s or a name the root re-exports from it, is a reference from the one
//! to the other. Items under `#[cfg(test)]` are left out: tests may reach anywhere.
//! A glob of the crate root (`use crate::*`) names no module in particular and is not followed.

mod references;

pub(crate) use references::is_test_only;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::metadata::{Package, Target, cargo_metadata};
use crate::{Finding, Reference, TidyError, relative};

use references::{CrateModules, FileReferences, use_paths};

/// Where a reference is first seen: the file relative to the workspace root, and the line.
type Location = (String, usize);

/// Every reference from a top-level module to another, keyed by (from, to), at its first location.
type Edges = BTreeMap<(String, String), Location>;

/// A finding for every cycle between the top-level modules of each crate in the workspace at
/// `workspace_root`, and for each module file that cannot be read.
///
/// A crate with many cycles could have a great many of them; the findings are, for every
/// reference that lies on a cycle, the shortest cycle through it, each reported once. So every
/// reference that needs to go is named, and the list stays as long as the references are many.
pub fn module_cycles(workspace_root: &Path) -> Result<Vec<Finding>, TidyError> {
    let metadata = cargo_metadata(workspace_root, false)?;
    let mut findings = Vec::new();
    for package in metadata.members() {
        for target in &package.targets {
            let edges = crate_edges(&target.src_path, &metadata.workspace_root, &mut findings)?;
            findings.extend(cycles(&crate_label(package, target), &edges));
        }
    }
    Ok(findings)
}

/// The package name for its library, `package kind name` for its other crates.
fn crate_label(package: &Package, target: &Target) -> String {
    let library_kinds = ["lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro"];
    match target.kind.first() {
        Some(kind) if !library_kinds.contains(&kind.as_str()) => {
            format!("{} {kind} {}", package.name, target.name)
        }
        _ => package.name.clone(),
    }
}

/// A module file still to read: where it is, how deep it sits below the crate root, and the
/// folder its own `mod x;` declarations are found in.
struct PendingFile {
    path: PathBuf,
    depth: usize,
    child_dir: PathBuf,
}

/// Reads the crate rooted at `root_file` and returns the references between its top-level
/// modules. Unreadable module files become findings.
fn crate_edges(
    root_file: &Path,
    workspace_root: &Path,
    findings: &mut Vec<Finding>,
) -> Result<Edges, TidyError> {
    let mut edges = Edges::new();
    let shown_root = relative(workspace_root, root_file);
    let Some(root) = parse(root_file, &shown_root, findings)? else {
        return Ok(edges);
    };
    if is_test_only(&root.attrs) {
        return Ok(edges);
    }
    // A crate root looks for its modules beside itself, whatever its name (`main.rs`, `e2e.rs`).
    let root_dir = root_file.parent().unwrap_or(Path::new(".")).to_owned();

    let mut modules = CrateModules::default();
    for item in &root.items {
        if let syn::Item::Mod(module) = item
            && !is_test_only(&module.attrs)
        {
            modules.names.insert(module.ident.to_string());
        }
    }
    // Names the root brings in from a module (`pub use config::Config;`) lead to that module.
    for item in &root.items {
        if let syn::Item::Use(item_use) = item
            && !is_test_only(&item_use.attrs)
        {
            for path in use_paths(&item_use.tree) {
                let segments = match path.segments.first().map(String::as_str) {
                    Some("crate" | "self") => &path.segments[1..],
                    _ => &path.segments[..],
                };
                if let [module, _, ..] = segments
                    && modules.names.contains(module)
                    && path.visible != "*"
                {
                    modules.reexports.insert(path.visible, module.clone());
                }
            }
        }
    }

    for item in &root.items {
        let syn::Item::Mod(module) = item else {
            continue;
        };
        if is_test_only(&module.attrs) {
            continue;
        }
        let top = module.ident.to_string();
        let mut references =
            FileReferences::new(&modules, &top, 1, root_dir.clone(), root_dir.join(&top));
        let mut pending = Vec::new();
        match &module.content {
            Some((_, items)) => {
                for item in items {
                    syn::visit::Visit::visit_item(&mut references, item);
                }
                record(&mut edges, &top, &shown_root, &references);
            }
            None => match declared_file(&root_dir, &root_dir, module) {
                Ok(path) => pending.push(PendingFile {
                    path,
                    depth: 1,
                    child_dir: root_dir.join(&top),
                }),
                Err(reason) => findings.push(Finding::UnreadableModule {
                    file: shown_root.clone(),
                    reason,
                }),
            },
        }
        pending.extend(
            references
                .declared
                .drain(..)
                .filter_map(|declared| resolve_declared(declared, &shown_root, findings)),
        );

        let mut seen = BTreeSet::new();
        while let Some(file) = pending.pop() {
            if !seen.insert(file.path.clone()) {
                continue;
            }
            let shown = relative(workspace_root, &file.path);
            let Some(parsed) = parse(&file.path, &shown, findings)? else {
                continue;
            };
            if is_test_only(&parsed.attrs) {
                continue;
            }
            let file_dir = file.path.parent().unwrap_or(Path::new(".")).to_owned();
            let mut references =
                FileReferences::new(&modules, &top, file.depth, file_dir, file.child_dir);
            syn::visit::Visit::visit_file(&mut references, &parsed);
            record(&mut edges, &top, &shown, &references);
            pending.extend(
                references
                    .declared
                    .drain(..)
                    .filter_map(|declared| resolve_declared(declared, &shown, findings)),
            );
        }
    }
    Ok(edges)
}

/// Adds the references one file makes, keeping each edge's earliest location.
fn record(edges: &mut Edges, top: &str, shown: &str, references: &FileReferences<'_>) {
    for (to, line) in &references.found {
        let location = (shown.to_owned(), *line);
        edges
            .entry((top.to_owned(), to.clone()))
            .and_modify(|first| *first = first.clone().min(location.clone()))
            .or_insert(location);
    }
}

/// Turns a `mod x;` found in a file into the file to read next, or a finding.
fn resolve_declared(
    declared: references::DeclaredModule,
    shown: &str,
    findings: &mut Vec<Finding>,
) -> Option<PendingFile> {
    match declared.path {
        Ok(path) => {
            // `x/mod.rs` keeps its submodules beside it; `x.rs` keeps them in `x/`.
            let child_dir = if path.file_name().is_some_and(|name| name == "mod.rs") {
                path.parent().unwrap_or(Path::new(".")).to_owned()
            } else {
                path.with_extension("")
            };
            Some(PendingFile {
                path,
                depth: declared.depth,
                child_dir,
            })
        }
        Err(reason) => {
            findings.push(Finding::UnreadableModule {
                file: shown.to_owned(),
                reason,
            });
            None
        }
    }
}

/// The file of `mod x;` declared in a module whose submodules live in `child_dir`, by the
/// compiler's rules: `#[path]` relative to `file_dir`, else `x.rs`, else `x/mod.rs`.
fn declared_file(
    file_dir: &Path,
    child_dir: &Path,
    module: &syn::ItemMod,
) -> Result<PathBuf, String> {
    if let Some(path) = references::path_attribute(&module.attrs) {
        let path = file_dir.join(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "module `{}`: no file {}",
                module.ident,
                path.display()
            ))
        };
    }
    let name = module.ident.to_string();
    let flat = child_dir.join(format!("{name}.rs"));
    let nested = child_dir.join(&name).join("mod.rs");
    if flat.is_file() {
        Ok(flat)
    } else if nested.is_file() {
        Ok(nested)
    } else {
        Err(format!(
            "module `{name}`: neither {name}.rs nor {name}/mod.rs exists"
        ))
    }
}

/// Parses one file; a file that does not parse is a finding and `None`.
fn parse(
    path: &Path,
    shown: &str,
    findings: &mut Vec<Finding>,
) -> Result<Option<syn::File>, TidyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TidyError::Io {
        path: path.to_owned(),
        source,
    })?;
    match syn::parse_file(&text) {
        Ok(file) => Ok(Some(file)),
        Err(error) => {
            let start = error.span().start();
            findings.push(Finding::UnreadableModule {
                file: format!("{shown}:{}", start.line),
                reason: format!("does not parse: {error}"),
            });
            Ok(None)
        }
    }
}

/// For every edge on a cycle, the shortest cycle through it, each cycle once, starting from its
/// alphabetically first module.
fn cycles(krate: &str, edges: &Edges) -> Vec<Finding> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        if from != to {
            next.entry(from).or_default().push(to);
        }
    }
    let mut found: BTreeSet<Vec<&str>> = BTreeSet::new();
    for (from, to) in edges.keys() {
        if from == to {
            continue;
        }
        let Some(back) = shortest_path(&next, to, from) else {
            continue;
        };
        // from -> to -> ... -> from, without repeating `from` at the end.
        let mut cycle: Vec<&str> = vec![from.as_str()];
        cycle.extend(&back[..back.len() - 1]);
        let first = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, name)| **name)
            .map_or(0, |(index, _)| index);
        cycle.rotate_left(first);
        found.insert(cycle);
    }
    found
        .into_iter()
        .map(|cycle| Finding::ModuleCycle {
            krate: krate.to_owned(),
            steps: (0..cycle.len())
                .map(|index| {
                    let from = cycle[index];
                    let to = cycle[(index + 1) % cycle.len()];
                    let (file, line) = &edges[&(from.to_owned(), to.to_owned())];
                    Reference {
                        from: from.to_owned(),
                        to: to.to_owned(),
                        at: format!("{file}:{line}"),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The shortest path `start -> ... -> end` (both included), breadth first over sorted neighbours.
fn shortest_path<'a>(
    next: &BTreeMap<&'a str, Vec<&'a str>>,
    start: &'a str,
    end: &'a str,
) -> Option<Vec<&'a str>> {
    let mut reached_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(module) = queue.pop_front() {
        if module == end {
            let mut path = vec![end];
            while let Some(previous) = reached_from.get(path[path.len() - 1]) {
                path.push(previous);
            }
            path.reverse();
            return Some(path);
        }
        for &neighbour in next.get(module).into_iter().flatten() {
            if neighbour != start && !reached_from.contains_key(neighbour) {
                reached_from.insert(neighbour, module);
                queue.push_back(neighbour);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::module_cycles;
    use crate::fixture::{Fixture, shown};

    #[test]
    fn cycles_are_named_with_where_each_reference_is() {
        let fixture = Fixture::workspace(&["cyclic"])
            .package("cyclic", "")
            .file(
                "cyclic/src/lib.rs",
                "//! Root.\nmod a;\nmod b;\nmod c;\nmod d;\npub use c::Thing;\n#[cfg(test)]\nmod tests;\n",
            )
            // A nested use tree: a -> b and a -> c.
            .file(
                "cyclic/src/a.rs",
                "//! A.\nuse crate::{b::helper, c};\npub fn f() {\n    helper();\n    c::g();\n}\n",
            )
            // b reaches a from a submodule file, two `super`s up; its test-only code reaching c
            // does not count.
            .file(
                "cyclic/src/b.rs",
                "//! B.\nmod inner;\npub use inner::helper;\n#[cfg(test)]\nfn only_in_tests() {\n    crate::c::g();\n}\n",
            )
            .file(
                "cyclic/src/b/inner.rs",
                "//! Inner.\npub fn helper() {\n    super::super::a::f()\n}\n",
            )
            // c reaches d only inside a macro; its test module and an all(test, ..) import reach
            // a and b, which does not count.
            .file(
                "cyclic/src/c.rs",
                "//! C.\npub struct Thing;\npub fn g() {\n    println!(\"{}\", crate::d::name());\n}\n#[cfg(all(test, unix))]\nuse crate::b;\n#[cfg(test)]\nmod tests {\n    use crate::a::f;\n}\n",
            )
            // d reaches c through the name the root re-exports from it.
            .file(
                "cyclic/src/d.rs",
                "//! D.\npub fn name() -> &'static str {\n    let _: Option<crate::Thing> = None;\n    \"d\"\n}\n",
            )
            .file("cyclic/src/tests.rs", "//! Tests.\nuse crate::a;\nuse crate::d;\n")
            // A binary is a crate of its own, with a cycle of its own.
            .file(
                "cyclic/src/main.rs",
                "//! Binary.\nmod cli;\nmod run {\n    pub fn go() {\n        super::cli::parse();\n    }\n}\nfn main() {}\n",
            )
            .file("cyclic/src/cli.rs", "//! Cli.\npub fn parse() {}\npub fn start() {\n    crate::run::go()\n}\n");

        let findings = module_cycles(fixture.root()).expect("the check runs");
        assert_eq!(
            shown(&findings),
            [
                "cyclic: a -> b -> a (a -> b at cyclic/src/a.rs:2; b -> a at cyclic/src/b/inner.rs:3)",
                "cyclic: c -> d -> c (c -> d at cyclic/src/c.rs:4; d -> c at cyclic/src/d.rs:3)",
                "cyclic bin cyclic: cli -> run -> cli (cli -> run at cyclic/src/cli.rs:4; run -> cli at cyclic/src/main.rs:5)",
            ]
        );
    }

    #[test]
    fn every_reference_on_a_cycle_is_named_once() {
        // a -> b -> c -> a and a -> c -> a share the reference c -> a: two cycles, each once.
        let fixture = Fixture::workspace(&["triangle"])
            .package("triangle", "")
            .file("triangle/src/lib.rs", "//! Root.\nmod a;\nmod b;\nmod c;\n")
            .file(
                "triangle/src/a.rs",
                "//! A.\nuse crate::b;\nuse crate::c;\n",
            )
            .file("triangle/src/b.rs", "//! B.\nuse crate::c;\n")
            .file("triangle/src/c.rs", "//! C.\nuse crate::a;\n");

        let findings = module_cycles(fixture.root()).expect("the check runs");
        assert_eq!(
            shown(&findings),
            [
                "triangle: a -> b -> c -> a (a -> b at triangle/src/a.rs:2; b -> c at triangle/src/b.rs:2; c -> a at triangle/src/c.rs:2)",
                "triangle: a -> c -> a (a -> c at triangle/src/a.rs:3; c -> a at triangle/src/c.rs:2)",
            ]
        );
    }

    #[test]
    fn a_missing_or_unparsable_module_is_reported() {
        let fixture = Fixture::workspace(&["broken"])
            .package("broken", "")
            .file("broken/src/lib.rs", "//! Root.\nmod gone;\nmod bad;\n")
            .file("broken/src/bad.rs", "//! Bad.\nfn () {}\n");

        let findings = module_cycles(fixture.root()).expect("the check runs");
        assert_eq!(
            shown(&findings),
            [
                "broken/src/lib.rs: module `gone`: neither gone.rs nor gone/mod.rs exists",
                "broken/src/bad.rs:2: does not parse: expected identifier",
            ]
        );
    }
}
