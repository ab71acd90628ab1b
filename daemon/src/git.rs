//! Git executors with libgit2 (`git2`, vendored, no OpenSSL): status, pull (fetch then
//! fast-forward only), commit, push. Built without the `https`/`ssh` features, so remotes are
//! local paths or `file://` URLs; other transports fail with an error saying so.

use std::path::Path;

use git2::{BranchType, IndexAddOption, Repository, Signature, Status, StatusOptions};

use crate::ops::{GitActionResult, GitFileStatus, GitStatusResult};

/// Errors of the git executors.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0}")]
    Refused(String),
}

fn short(oid: git2::Oid) -> String {
    oid.to_string()[..10].to_string()
}

fn open(path: &Path) -> Result<Repository, GitError> {
    Repository::open(path).map_err(|e| {
        GitError::Refused(format!(
            "{} is not a git work tree ({}); pass the folder that contains .git",
            path.display(),
            e.message()
        ))
    })
}

fn current_branch(repo: &Repository) -> Option<String> {
    repo.head()
        .ok()
        .filter(|h| h.is_branch())
        .and_then(|h| h.shorthand().ok().map(str::to_string))
}

fn label(status: Status) -> (&'static str, bool) {
    if status.is_conflicted() {
        ("conflicted", false)
    } else if status.is_index_new() {
        ("new", true)
    } else if status.is_index_modified() {
        ("modified", true)
    } else if status.is_index_deleted() {
        ("deleted", true)
    } else if status.is_index_renamed() {
        ("renamed", true)
    } else if status.is_wt_new() {
        ("untracked", false)
    } else if status.is_wt_modified() {
        ("modified", false)
    } else if status.is_wt_deleted() {
        ("deleted", false)
    } else if status.is_wt_renamed() {
        ("renamed", false)
    } else {
        ("changed", false)
    }
}

/// `git status` of the work tree at `path`.
pub fn status(path: &Path) -> Result<GitStatusResult, GitError> {
    let repo = open(path)?;
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo.statuses(Some(&mut options))?;
    let files: Vec<GitFileStatus> = statuses
        .iter()
        .filter(|e| e.status() != Status::CURRENT && !e.status().is_ignored())
        .map(|e| {
            let (status, staged) = label(e.status());
            GitFileStatus {
                path: e.path().unwrap_or("").to_string(),
                status: status.into(),
                staged,
            }
        })
        .collect();
    let branch = current_branch(&repo);
    let head = repo.head().ok().and_then(|h| h.target()).map(short);
    let (mut upstream, mut ahead, mut behind) = (None, 0, 0);
    if let Some(name) = &branch
        && let Ok(local) = repo.find_branch(name, BranchType::Local)
        && let Ok(up) = local.upstream()
    {
        upstream = up.name().ok().flatten().map(str::to_string);
        if let (Some(l), Some(u)) = (local.get().target(), up.get().target()) {
            (ahead, behind) = repo.graph_ahead_behind(l, u)?;
        }
    }
    Ok(GitStatusResult {
        repo: path.display().to_string(),
        branch,
        head,
        upstream,
        ahead,
        behind,
        clean: files.is_empty(),
        files,
    })
}

/// Stages `paths` (or every change) and commits with the repository's configured identity.
pub fn commit(
    path: &Path,
    message: &str,
    paths: Option<&[String]>,
) -> Result<GitActionResult, GitError> {
    let repo = open(path)?;
    let mut index = repo.index()?;
    match paths {
        Some(paths) if !paths.is_empty() => {
            index.add_all(paths.iter(), IndexAddOption::DEFAULT, None)?;
            index.update_all(paths.iter(), None)?;
        }
        _ => {
            index.add_all(["*"].iter(), IndexAddOption::DEFAULT, None)?;
            index.update_all(["*"].iter(), None)?;
        }
    }
    index.write()?;
    let tree_id = index.write_tree()?;
    let tree = repo.find_tree(tree_id)?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    if let Some(parent) = &parent
        && parent.tree_id() == tree_id
    {
        return Err(GitError::Refused(
            "nothing to commit: the staged tree equals HEAD; check git_status".into(),
        ));
    }
    let signature = repo.signature().or_else(|_| {
        let host = sysinfo::System::host_name().unwrap_or_else(|_| "localhost".into());
        Signature::now("remote-agents", &format!("remote-agents@{host}"))
    })?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let oid = repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )?;
    Ok(GitActionResult {
        repo: path.display().to_string(),
        summary: format!("committed {}", short(oid)),
        head: Some(short(oid)),
    })
}

fn remote_and_branch(
    repo: &Repository,
    remote: Option<&str>,
    branch: Option<&str>,
) -> Result<(String, String), GitError> {
    let branch = match branch {
        Some(b) => b.to_string(),
        None => current_branch(repo)
            .ok_or_else(|| GitError::Refused("HEAD is detached; pass branch explicitly".into()))?,
    };
    Ok((remote.unwrap_or("origin").to_string(), branch))
}

/// Fetches `branch` from `remote` and fast-forwards the local branch; refuses to merge.
pub fn pull(
    path: &Path,
    remote: Option<&str>,
    branch: Option<&str>,
) -> Result<GitActionResult, GitError> {
    let repo = open(path)?;
    let (remote_name, branch) = remote_and_branch(&repo, remote, branch)?;
    let mut remote = repo.find_remote(&remote_name)?;
    remote.fetch(&[branch.as_str()], None, None)?;
    let fetch_head = repo.find_reference("FETCH_HEAD")?;
    let incoming = repo.reference_to_annotated_commit(&fetch_head)?;
    let (analysis, _) = repo.merge_analysis(&[&incoming])?;
    let summary = if analysis.is_up_to_date() {
        "already up to date".to_string()
    } else if analysis.is_fast_forward() || analysis.is_unborn() {
        let refname = format!("refs/heads/{branch}");
        // Update the work tree first (safe: refuses to overwrite local changes), then move the
        // branch, so a refused checkout leaves the branch where it was.
        let target = repo.find_object(incoming.id(), None)?;
        repo.checkout_tree(
            &target,
            Some(git2::build::CheckoutBuilder::default().safe()),
        )?;
        match repo.find_reference(&refname) {
            Ok(mut reference) => {
                reference.set_target(incoming.id(), "remote-agents: fast-forward")?;
            }
            Err(_) => {
                repo.reference(&refname, incoming.id(), true, "remote-agents: pull")?;
            }
        }
        repo.set_head(&refname)?;
        format!("fast-forwarded {branch} to {}", short(incoming.id()))
    } else {
        return Err(GitError::Refused(format!(
            "{branch} has diverged from {remote_name}/{branch}: only fast-forward pulls are done \
             here; merge or rebase by hand (exec git) and retry"
        )));
    };
    Ok(GitActionResult {
        repo: path.display().to_string(),
        summary,
        head: repo.head().ok().and_then(|h| h.target()).map(short),
    })
}

/// Pushes `branch` to `remote`; a rejected update is an error, not a silent success.
pub fn push(
    path: &Path,
    remote: Option<&str>,
    branch: Option<&str>,
) -> Result<GitActionResult, GitError> {
    let repo = open(path)?;
    let (remote_name, branch) = remote_and_branch(&repo, remote, branch)?;
    let mut remote = repo.find_remote(&remote_name)?;
    let mut rejected: Option<String> = None;
    {
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.push_update_reference(|refname, status| {
            if let Some(message) = status {
                rejected = Some(format!("{refname}: {message}"));
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
        remote.push(&[spec.as_str()], Some(&mut options))?;
    }
    if let Some(reason) = rejected {
        return Err(GitError::Refused(format!(
            "the remote rejected the push ({reason}); pull first"
        )));
    }
    Ok(GitActionResult {
        repo: path.display().to_string(),
        summary: format!("pushed {branch} to {remote_name}"),
        head: repo.head().ok().and_then(|h| h.target()).map(short),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(repo: &Repository) {
        let mut config = repo.config().unwrap();
        config.set_str("user.name", "Test").unwrap();
        config
            .set_str("user.email", "test@example.invalid")
            .unwrap();
    }

    #[test]
    fn commit_push_and_pull_through_a_local_bare_remote() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("remote.git");
        Repository::init_bare(&bare).unwrap();
        let a = tmp.path().join("a");
        let repo_a = Repository::init(&a).unwrap();
        configure(&repo_a);
        repo_a.remote("origin", bare.to_str().unwrap()).unwrap();

        std::fs::write(a.join("README"), "one\n").unwrap();
        let st = status(&a).unwrap();
        assert!(!st.clean);
        assert_eq!(st.files[0].status, "untracked");
        let committed = commit(&a, "first", None).unwrap();
        assert!(committed.summary.starts_with("committed"));
        assert!(status(&a).unwrap().clean);
        assert!(matches!(
            commit(&a, "empty", None),
            Err(GitError::Refused(_))
        ));
        let branch = current_branch(&repo_a).unwrap();
        push(&a, None, None).unwrap();

        // A second clone pulls the next commit by fast-forward.
        let b = tmp.path().join("b");
        let repo_b = Repository::clone(bare.to_str().unwrap(), &b).unwrap();
        configure(&repo_b);
        std::fs::write(a.join("README"), "two\n").unwrap();
        commit(&a, "second", Some(&["README".to_string()])).unwrap();
        push(&a, None, Some(&branch)).unwrap();
        let pulled = pull(&b, None, Some(&branch)).unwrap();
        assert!(
            pulled.summary.starts_with("fast-forwarded"),
            "{}",
            pulled.summary
        );
        assert_eq!(std::fs::read_to_string(b.join("README")).unwrap(), "two\n");
        assert_eq!(
            pull(&b, None, Some(&branch)).unwrap().summary,
            "already up to date"
        );
    }

    #[test]
    fn a_folder_that_is_not_a_repository_is_an_actionable_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = status(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("not a git work tree"), "{err}");
    }
}
