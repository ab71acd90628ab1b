//! `cargo metadata`: running it offline and the parts of its JSON the checks read.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::TidyError;

#[derive(Debug, Deserialize)]
pub(crate) struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_members: Vec<String>,
    pub workspace_root: PathBuf,
    /// Present unless `--no-deps`.
    pub resolve: Option<Resolve>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Package {
    pub id: String,
    pub name: String,
    pub manifest_path: PathBuf,
    pub targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Target {
    pub name: String,
    pub kind: Vec<String>,
    pub src_path: PathBuf,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Resolve {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Node {
    pub id: String,
    pub deps: Vec<NodeDep>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NodeDep {
    pub pkg: String,
    pub dep_kinds: Vec<DepKind>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DepKind {
    /// `None` for a normal dependency, `"dev"` or `"build"` otherwise.
    pub kind: Option<String>,
}

impl Metadata {
    /// The workspace's member packages, sorted by name so findings come in a stable order.
    pub fn members(&self) -> Vec<&Package> {
        let mut members: Vec<&Package> = self
            .packages
            .iter()
            .filter(|package| self.workspace_members.contains(&package.id))
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members
    }
}

/// Runs `cargo metadata` on the workspace at `root`, offline (the checks must not need a network)
/// and, when the workspace has a lock file, `--locked`: a check never rewrites the lock file it is
/// checking.
pub(crate) fn cargo_metadata(root: &Path, with_dependencies: bool) -> Result<Metadata, TidyError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("metadata")
        .args(["--format-version", "1", "--offline", "--manifest-path"])
        .arg(root.join("Cargo.toml"));
    if with_dependencies {
        // Only the host's dependencies: the others' sources are not downloaded here, and offline
        // `cargo metadata` cannot read their manifests. The pure crates' dependencies are the
        // same on every platform we build for.
        command.args(["--filter-platform", &host_triple()?]);
    } else {
        command.arg("--no-deps");
    }
    if root.join("Cargo.lock").exists() {
        command.arg("--locked");
    }
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| TidyError::CargoSpawn {
        command: shown.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(TidyError::CargoFailed {
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| TidyError::CargoOutput {
        command: shown,
        source,
    })
}

/// The target triple `rustc` builds for by default, from `rustc -vV`.
fn host_triple() -> Result<String, TidyError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut command = Command::new(rustc);
    command.arg("-vV");
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| TidyError::CargoSpawn {
        command: shown.clone(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().find_map(|line| line.strip_prefix("host: ")) {
        Some(host) if output.status.success() => Ok(host.trim().to_owned()),
        _ => Err(TidyError::CargoFailed {
            command: shown,
            stderr: format!(
                "no `host:` line in its output: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
    }
}
