//! Reading spec files for fleetctl: from paths on disk (files or folders), or from a folder of
//! a git repository at a revision (git2), as (display path, text) pairs for `spec::load`.
//! Watch mode and the MCP spec tools read through here too. Every reader stops at the spec
//! crate's size limits before reading further: a file over the limit is refused after reading
//! at most one byte past it, a git blob on its size alone.

use anyhow::{Context, Result, bail};
use remote_agents_spec::Format;
use remote_agents_spec::limits::{MAX_FILE_BYTES, MAX_TOTAL_BYTES};
use std::io::Read;
use std::path::{Path, PathBuf};

const MIB: usize = 1024 * 1024;

/// Refuses a spec file of `size` bytes, or one that brings the files read before it
/// (`read_before` bytes) over the limit for a whole fleet, before its content is read.
fn check_size(what: &dyn std::fmt::Display, size: usize, read_before: usize) -> Result<()> {
    if size > MAX_FILE_BYTES {
        bail!(
            "{what}: larger than the {} MiB a spec file may have; split it into several files",
            MAX_FILE_BYTES / MIB
        );
    }
    if read_before.saturating_add(size) > MAX_TOTAL_BYTES {
        bail!(
            "{what}: with this file the spec files pass the {} MiB a fleet may have; remove \
             files that are not part of the fleet, or shrink the large ones",
            MAX_TOTAL_BYTES / MIB
        );
    }
    Ok(())
}

fn total_bytes(files: &[(String, String)]) -> usize {
    files.iter().map(|(_, text)| text.len()).sum()
}

fn is_spec_file(path: &Path) -> bool {
    Format::from_path(&path.to_string_lossy()).is_some()
}

/// Spec files under `paths`, in a stable order: each folder is walked recursively and sorted.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, &mut found)?;
            found.sort();
            if found.is_empty() {
                bail!("no .yaml, .yml or .kdl files in {}", path.display());
            }
            for file in found {
                let read_before = total_bytes(&files);
                files.push(read_file(&file, read_before)?);
            }
        } else {
            let read_before = total_bytes(&files);
            files.push(read_file(path, read_before)?);
        }
    }
    Ok(files)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_dir(&path, out)?;
        } else if is_spec_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads one spec file, at most one byte more than a spec file may have, so a huge file is
/// refused without being read whole.
fn read_file(path: &Path, read_before: usize) -> Result<(String, String)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    check_size(&path.display(), bytes.len(), read_before)?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// Reads a git blob after checking its size in the object database's header, so a huge blob is
/// refused without being loaded.
fn read_blob(
    repository: &git2::Repository,
    id: git2::Oid,
    what: &dyn std::fmt::Display,
    read_before: usize,
) -> Result<String> {
    let (size, _) = repository
        .odb()?
        .read_header(id)
        .with_context(|| format!("cannot read {what}"))?;
    check_size(what, size, read_before)?;
    let blob = repository
        .find_blob(id)
        .with_context(|| format!("cannot read {what}"))?;
    Ok(String::from_utf8_lossy(blob.content()).into_owned())
}

/// The spec files at `path` (file or folder) as they were at git revision `revision` of the
/// repository that contains `path`. Display paths read `REVISION:relative/path`.
pub fn read_at_revision(path: &Path, revision: &str) -> Result<Vec<(String, String)>> {
    let repository = git2::Repository::discover(path)
        .with_context(|| format!("{} is not inside a git repository", path.display()))?;
    let workdir = repository
        .workdir()
        .context("the git repository has no work tree")?
        .canonicalize()?;
    let absolute = path
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let relative = absolute
        .strip_prefix(&workdir)
        .context("the path is outside the repository's work tree")?
        .to_path_buf();
    let object = repository
        .revparse_single(revision)
        .with_context(|| format!("unknown git revision `{revision}`"))?;
    let tree = object
        .peel_to_tree()
        .with_context(|| format!("`{revision}` does not name a commit or tree"))?;
    let mut files = Vec::new();
    let label = |p: &Path| format!("{revision}:{}", p.display());
    if relative.as_os_str().is_empty() {
        collect_tree(&repository, &tree, Path::new(""), &mut files, &label)?;
    } else {
        let entry = tree
            .get_path(&relative)
            .with_context(|| format!("{} does not exist at {revision}", relative.display()))?;
        let object = entry.to_object(&repository)?;
        match object.kind() {
            Some(git2::ObjectType::Tree) => {
                let subtree = object.peel_to_tree()?;
                collect_tree(&repository, &subtree, &relative, &mut files, &label)?;
            }
            Some(git2::ObjectType::Blob) => {
                let display = label(&relative);
                let text = read_blob(&repository, object.id(), &display, 0)?;
                files.push((display, text));
            }
            _ => bail!(
                "{} at {revision} is neither a file nor a folder",
                relative.display()
            ),
        }
    }
    files.sort();
    Ok(files)
}

pub fn collect_tree(
    repository: &git2::Repository,
    tree: &git2::Tree,
    prefix: &Path,
    out: &mut Vec<(String, String)>,
    label: &dyn Fn(&Path) -> String,
) -> Result<()> {
    for entry in tree.iter() {
        let name = entry.name().unwrap_or_default();
        let path = prefix.join(name);
        match entry.kind() {
            Some(git2::ObjectType::Tree) if !name.starts_with('.') => {
                let subtree = entry.to_object(repository)?.peel_to_tree()?;
                collect_tree(repository, &subtree, &path, out, label)?;
            }
            Some(git2::ObjectType::Blob) if is_spec_file(&path) => {
                let display = label(&path);
                let text = read_blob(repository, entry.id(), &display, total_bytes(out))?;
                out.push((display, text));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_all(repository: &git2::Repository) {
        let mut index = repository.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repository.find_tree(index.write_tree().unwrap()).unwrap();
        let signature = git2::Signature::now("test", "test@example.com").unwrap();
        let parent = repository.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repository
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                "specs",
                &tree,
                &parents,
            )
            .unwrap();
    }

    /// Issue 12: `fleetctl validate` read any file whole (a 100 MB spec took gigabytes to
    /// parse). Files over the limit are refused by name, from disk and from git.
    #[test]
    fn a_spec_file_or_fleet_over_the_size_limit_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let repository = git2::Repository::init(dir.path()).unwrap();
        let fleet = dir.path().join("fleet");
        std::fs::create_dir_all(&fleet).unwrap();
        std::fs::write(fleet.join("big.yaml"), "#".repeat(MAX_FILE_BYTES + 1)).unwrap();
        commit_all(&repository);
        // (On success the panic would print megabytes of file text: say only what happened.)
        let refused = |read: Result<Vec<(String, String)>>| match read {
            Ok(_) => panic!("a spec file over the limit was read"),
            Err(error) => format!("{error:#}"),
        };
        let on_disk = refused(read_paths(std::slice::from_ref(&fleet)));
        assert!(
            on_disk.contains("big.yaml: larger than the 4 MiB a spec file may have"),
            "{on_disk}"
        );
        let in_git = refused(read_at_revision(&fleet, "HEAD"));
        assert!(
            in_git.contains("HEAD:fleet/big.yaml: larger than the 4 MiB"),
            "{in_git}"
        );

        // Files under the limit each, over it together.
        std::fs::remove_file(fleet.join("big.yaml")).unwrap();
        let file = "#".repeat(MAX_FILE_BYTES);
        for i in 0..=MAX_TOTAL_BYTES / MAX_FILE_BYTES {
            std::fs::write(fleet.join(format!("f{i}.yaml")), &file).unwrap();
        }
        commit_all(&repository);
        let last = format!("f{}.yaml", MAX_TOTAL_BYTES / MAX_FILE_BYTES);
        for refusal in [
            refused(read_paths(std::slice::from_ref(&fleet))),
            refused(read_at_revision(&fleet, "HEAD")),
        ] {
            assert!(
                refusal.contains(&last) && refusal.contains("16 MiB a fleet may have"),
                "{refusal}"
            );
        }
    }
}
