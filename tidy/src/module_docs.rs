//! The module-doc check: every `.rs` file under a member's `src/` and `tests/` starts with `//!`.

use std::path::{Path, PathBuf};

use crate::metadata::cargo_metadata;
use crate::{Finding, TidyError, relative};

/// A finding for every `.rs` file under a workspace member's `src/` or `tests/` folder whose first
/// line does not start with `//!`.
pub fn module_docs(workspace_root: &Path) -> Result<Vec<Finding>, TidyError> {
    let metadata = cargo_metadata(workspace_root, false)?;
    let mut files = Vec::new();
    for package in metadata.members() {
        let package_dir = package.manifest_path.parent().unwrap_or(Path::new("."));
        for folder in ["src", "tests"] {
            rust_files(&package_dir.join(folder), &mut files)?;
        }
    }
    files.sort();
    files.dedup();
    let mut findings = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| TidyError::Io {
            path: file.clone(),
            source,
        })?;
        if !text
            .lines()
            .next()
            .is_some_and(|line| line.starts_with("//!"))
        {
            findings.push(Finding::MissingModuleDoc {
                file: relative(&metadata.workspace_root, &file),
            });
        }
    }
    Ok(findings)
}

/// Every `.rs` file beneath `folder`, which may not exist.
pub(crate) fn rust_files(folder: &Path, files: &mut Vec<PathBuf>) -> Result<(), TidyError> {
    let io_error = |source| TidyError::Io {
        path: folder.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(error)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error)?;
        let path = entry.path();
        if entry.file_type().map_err(io_error)?.is_dir() {
            rust_files(&path, files)?;
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::module_docs;
    use crate::fixture::{Fixture, shown};

    #[test]
    fn modules_without_a_doc_line_first_are_named() {
        let fixture = Fixture::workspace(&["documented"])
            .package("documented", "")
            .file(
                "documented/src/plain.rs",
                "// A comment, not a module doc.\nfn f() {}\n",
            )
            .file(
                "documented/src/late.rs",
                "#![allow(dead_code)]\n//! Too late.\n",
            )
            .file("documented/src/deep/inner.rs", "//! Fine.\n")
            .file("documented/tests/it.rs", "//! Fine.\n")
            .file("documented/tests/support/empty.rs", "")
            // Outside src/ and tests/: not a module of the crate.
            .file("documented/scratch/notes.rs", "fn f() {}\n");

        let findings = module_docs(fixture.root()).expect("the check runs");
        assert_eq!(
            shown(&findings),
            [
                "documented/src/late.rs: the first line is not a `//!` comment saying what the module owns",
                "documented/src/plain.rs: the first line is not a `//!` comment saying what the module owns",
                "documented/tests/support/empty.rs: the first line is not a `//!` comment saying what the module owns",
            ]
        );
    }
}
