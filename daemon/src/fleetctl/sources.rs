//! Reading spec files for fleetctl: from paths on disk (files or folders), or from a folder of
//! a git repository at a revision (git2), as (display path, text) pairs for `spec::load`.

use anyhow::{Context, Result, bail};
use remote_agents_spec::Format;
use std::path::{Path, PathBuf};

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
                files.push(read_file(&file)?);
            }
        } else {
            files.push(read_file(path)?);
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

fn read_file(path: &Path) -> Result<(String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((path.display().to_string(), text))
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
                let blob = object.peel_to_blob()?;
                files.push((
                    label(&relative),
                    String::from_utf8_lossy(blob.content()).into_owned(),
                ));
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

pub(crate) fn collect_tree(
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
                let blob = entry.to_object(repository)?.peel_to_blob()?;
                out.push((
                    label(&path),
                    String::from_utf8_lossy(blob.content()).into_owned(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
