//! Checks that keep the layers (ARCHITECTURE.md): no import cycle between a crate's top-level
//! modules, no I/O or runtime crate reachable from the pure crates, a `//!` line atop every module,
//! and tasks started only in the node library's runtime module.
//!
//! Each check takes a workspace root and returns every finding rather than stopping at the first,
//! so one run names everything to fix. The tests in `tests/layers.rs` run them on this workspace;
//! the unit tests run them on small fixture workspaces and assert the exact findings.

mod metadata;
mod module_cycles;
mod module_docs;
mod pure_crates;
mod task_starts;

#[cfg(test)]
mod fixture;

use std::fmt;
use std::path::{Path, PathBuf};

pub use module_cycles::module_cycles;
pub use module_docs::module_docs;
pub use pure_crates::forbidden_dependencies;
pub use task_starts::task_starts;

/// The crates that take values and return values: they do no I/O and start no runtime. A listed
/// crate missing from the workspace is a finding, so renaming one cannot silently drop its check.
pub const PURE_CRATES: &[&str] = &[
    "remote-agents-spec",
    "remote-agents-protocol",
    "remote-agents-ops",
];

/// Crates that do I/O or run an async runtime, by package name. None may be a normal dependency,
/// direct or transitive, of a pure crate.
pub const FORBIDDEN_IN_PURE_CRATES: &[&str] = &[
    // The node's own I/O: the runtime, the journal, git, paths beneath a root, MCP.
    "tokio", "redb", "git2", "cap-std", "rmcp",
    // `mio` is tokio's reactor: reaching it means sockets even without tokio's name.
    "mio", // HTTP stacks, server and client, which open sockets.
    "hyper", "axum", "reqwest",
    // File watching (the node's watch mode), which spawns a thread reading kernel events.
    "notify", // Host facts, read from /proc and system calls.
    "sysinfo",
];

/// The crates that run a node, where tasks start only in the node library's runtime module.
pub const TASK_CRATES: &[&str] = &["remote-agents-node", "remote-agents-mcp"];
/// That module's file, relative to the workspace root.
pub const RUNTIME_FILE: &str = "node/src/runtime.rs";

/// One thing a check found wrong. Its `Display` is the line a person reads in a failing test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Top-level modules of one crate that reach one another: `steps` goes round the cycle, each
    /// step naming where the first such reference is.
    ModuleCycle {
        krate: String,
        steps: Vec<Reference>,
    },
    /// A pure crate reaches a forbidden crate through normal dependencies: `chain` starts at the
    /// pure crate and ends at the forbidden one (the shortest such chain).
    ForbiddenDependency { chain: Vec<String> },
    /// A crate listed as pure is not a member of the workspace.
    PureCrateMissing { name: String },
    /// A `.rs` file whose first line is not a `//!` comment.
    MissingModuleDoc { file: String },
    /// A module the cycle check could not read: a `mod x;` without a file, or a file that does
    /// not parse. Its references are unknown, so it is reported rather than passed over.
    UnreadableModule { file: String, reason: String },
    /// A task started somewhere other than the runtime module: `at` is `path:line`, `what` the
    /// path as written (`tokio::spawn`).
    TaskStartedOutsideRuntime { at: String, what: String },
}

/// A reference from one top-level module to another, located at its first occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub from: String,
    pub to: String,
    /// `path:line`, the path relative to the workspace root.
    pub at: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ModuleCycle { krate, steps } => {
                write!(f, "{krate}: ")?;
                for step in steps {
                    write!(f, "{} -> ", step.from)?;
                }
                if let Some(first) = steps.first() {
                    write!(f, "{}", first.from)?;
                }
                let located: Vec<String> = steps
                    .iter()
                    .map(|step| format!("{} -> {} at {}", step.from, step.to, step.at))
                    .collect();
                write!(f, " ({})", located.join("; "))
            }
            Finding::ForbiddenDependency { chain } => {
                write!(
                    f,
                    "pure crate reaches an I/O or runtime crate: {}",
                    chain.join(" -> ")
                )
            }
            Finding::PureCrateMissing { name } => {
                write!(f, "pure crate {name} is not a member of the workspace")
            }
            Finding::MissingModuleDoc { file } => {
                write!(
                    f,
                    "{file}: the first line is not a `//!` comment saying what the module owns"
                )
            }
            Finding::UnreadableModule { file, reason } => write!(f, "{file}: {reason}"),
            Finding::TaskStartedOutsideRuntime { at, what } => {
                write!(f, "{at}: `{what}` starts a task outside the runtime module")
            }
        }
    }
}

/// Why a check could not run at all (as opposed to what it found).
#[derive(Debug, thiserror::Error)]
pub enum TidyError {
    #[error("cannot run `{command}`")]
    CargoSpawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    CargoFailed { command: String, stderr: String },
    #[error("cannot parse the output of `{command}`")]
    CargoOutput {
        command: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Every check with this workspace's settings, findings in check order.
pub fn check_workspace(workspace_root: &Path) -> Result<Vec<Finding>, TidyError> {
    let mut findings = module_cycles(workspace_root)?;
    findings.extend(forbidden_dependencies(
        workspace_root,
        PURE_CRATES,
        FORBIDDEN_IN_PURE_CRATES,
    )?);
    findings.extend(module_docs(workspace_root)?);
    findings.extend(task_starts(workspace_root, TASK_CRATES, RUNTIME_FILE)?);
    Ok(findings)
}

/// `path` relative to `root` with `/` separators, as findings show paths.
fn relative(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use crate::fixture::{Fixture, shown};
    use crate::{check_workspace, forbidden_dependencies, module_cycles, module_docs};

    #[test]
    fn a_clean_workspace_has_no_findings() {
        // Layered modules (z uses y uses x, never back), a pure crate with pure dependencies
        // only, and a doc line atop every file.
        let fixture = Fixture::workspace(&["clean", "helper"])
            .package("clean", "[dependencies]\nhelper = { path = \"../helper\" }\n")
            .package("helper", "")
            .file(
                "clean/src/lib.rs",
                "//! Root.\nmod x;\nmod y;\nmod z {\n    //! Inline.\n    use super::y;\n}\npub use x::Thing;\n",
            )
            .file("clean/src/x.rs", "//! X.\npub struct Thing;\n")
            .file("clean/src/y.rs", "//! Y.\nmod deeper;\npub fn f() -> crate::Thing {\n    crate::x::Thing\n}\n")
            .file("clean/src/y/deeper.rs", "//! Deeper.\nuse super::super::x::Thing;\n")
            .file("clean/tests/it.rs", "//! Test.\nmod common;\n")
            .file("clean/tests/common/mod.rs", "//! Shared.\n");

        assert_eq!(
            shown(&module_cycles(fixture.root()).expect("runs")),
            Vec::<String>::new()
        );
        assert_eq!(
            shown(&forbidden_dependencies(fixture.root(), &["clean"], &["tokio"]).expect("runs")),
            Vec::<String>::new()
        );
        assert_eq!(
            shown(&module_docs(fixture.root()).expect("runs")),
            Vec::<String>::new()
        );
        // The workspace's own settings name pure crates this fixture does not have.
        assert_eq!(
            shown(&check_workspace(fixture.root()).expect("runs")),
            [
                "pure crate remote-agents-spec is not a member of the workspace",
                "pure crate remote-agents-protocol is not a member of the workspace",
                "pure crate remote-agents-ops is not a member of the workspace",
            ]
        );
    }
}
