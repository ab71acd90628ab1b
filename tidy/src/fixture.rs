//! Small workspaces written into a temporary folder, for the checks' own tests.

use std::path::Path;

use tempfile::TempDir;

/// A workspace being written; it is deleted when dropped.
pub(crate) struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// A workspace whose root manifest lists `members`.
    pub fn workspace(members: &[&str]) -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().expect("create a temporary folder"),
        };
        let members: Vec<String> = members.iter().map(|member| format!("{member:?}")).collect();
        fixture.file(
            "Cargo.toml",
            &format!(
                "[workspace]\nresolver = \"3\"\nmembers = [{}]\n",
                members.join(", ")
            ),
        )
    }

    /// A package `name` in the folder of the same name, with `extra` appended to its manifest
    /// (dependency tables) and an empty documented `src/lib.rs`.
    pub fn package(self, name: &str, extra: &str) -> Fixture {
        self.file(
            &format!("{name}/Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n{extra}"
            ),
        )
        .file(&format!("{name}/src/lib.rs"), "//! A fixture crate.\n")
    }

    /// Writes `text` to `path` beneath the root, creating folders as needed.
    pub fn file(self, path: &str, text: &str) -> Fixture {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a file has a folder"))
            .expect("create a fixture folder");
        std::fs::write(&path, text).expect("write a fixture file");
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// The findings as the lines a person would read.
pub(crate) fn shown(findings: &[crate::Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}
