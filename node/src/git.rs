//! Git executors with libgit2 (`git2`, vendored, no OpenSSL): status, pull (fetch then
//! fast-forward only), commit, push. Local and `file://` remotes are libgit2's; network remotes
//! (`https://`, `ssh://`, scp-style `user@host:path`, `git://`) are fetched from and pushed to by
//! the system `git` (`transport`, which says why), with the node user's own ssh and credential
//! setup. Either way libgit2 decides and writes the checkout.
//!
//! Every operation goes through the policy gate (`Gate`): the repository's folders, its local
//! remotes and every file a checkout writes or a commit reads must pass it, and the repository
//! is used with its own config file alone, which `guard_config` keeps from redirecting the work
//! tree or naming programs to run. A hostile repository config or tree is refused whole, before
//! anything is written.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use git2::{
    BranchType, Config, ConfigLevel, IndexAddOption, Repository, RepositoryOpenFlags, Signature,
    Status, StatusOptions, Tree, TreeWalkMode, TreeWalkResult,
};

use crate::policy::{Intent, Mode, Policy};
use remote_agents_ops::{GitActionResult, GitFileStatus, GitStatusResult};

pub mod transport;

/// Errors of the git executors.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0}")]
    Refused(String),
    /// A network transfer failed: the remote, the cause with what to fix, and git's last lines.
    #[error("{0}")]
    Remote(String),
}

/// What a git operation may touch: the node's policy gate and the mode its request runs in.
/// Every location git reads or writes (the git folder, the work tree, object alternates, local
/// remotes, each file a checkout writes or a commit reads) goes through it.
#[derive(Clone, Copy)]
pub struct Gate<'a> {
    pub policy: &'a Policy,
    pub mode: Mode,
}

fn short(oid: git2::Oid) -> String {
    oid.to_string()[..10].to_string()
}

/// A repository opened through the gate, with only its own config file loaded.
struct Opened {
    repo: Repository,
    /// The work tree, canonical; `None` for a bare repository.
    workdir: Option<PathBuf>,
    /// The committer identity from the user's full git config (name and email are plain
    /// values, so reading them from the global config is harmless; nothing else is taken).
    identity: Option<Signature<'static>>,
    /// The repository's own config (guarded) and its file, for the network guard.
    config: Config,
    config_file: PathBuf,
}

fn refused(message: String) -> GitError {
    GitError::Refused(message)
}

/// Canonicalizes `path` and resolves it through the gate; `what` names it in the refusal.
fn guard_location(
    gate: Gate,
    path: &Path,
    intent: Intent,
    what: &str,
) -> Result<PathBuf, GitError> {
    let canonical = std::fs::canonicalize(path).map_err(|e| {
        refused(format!(
            "git: cannot resolve {what} {}: {e}",
            path.display()
        ))
    })?;
    gate.policy
        .resolve(gate.mode, &canonical, intent)
        .map_err(|refusal| {
            refused(format!(
                "git: {what} is {}, which this node's policy refuses ({refusal}); a `.git` file, \
                 core.worktree, objects/info/alternates or a remote may not point outside the \
                 roots or at a protected path",
                canonical.display()
            ))
        })?;
    Ok(canonical)
}

/// Opens the repository at `path` without searching parent folders or reading `GIT_*`
/// environment variables, checks that its git folder, common folder, work tree and object
/// alternates all lie where the gate allows, and replaces its config with the repository's own
/// config file alone, guarded by `guard_config`: the node user's global, XDG and system configs
/// never reach an operation, and the repository's config cannot redirect the work tree or name a
/// program to run.
fn open_guarded(path: &Path, gate: Gate, intent: Intent) -> Result<Opened, GitError> {
    let repo = Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| {
        refused(format!(
            "{} is not a git work tree ({}); pass the folder that contains .git",
            path.display(),
            e.message()
        ))
    })?;
    let requested = std::fs::canonicalize(path)
        .map_err(|e| refused(format!("git: cannot resolve {}: {e}", path.display())))?;
    let git_dir = guard_location(gate, repo.path(), intent, "the git folder")?;
    let common_dir = guard_location(gate, repo.commondir(), intent, "the common git folder")?;
    let workdir = match repo.workdir() {
        Some(workdir) => Some(guard_location(gate, workdir, intent, "the work tree")?),
        None => None,
    };
    // The work tree must be the folder that was asked for (or the one holding the git folder
    // that was asked for): a global core.worktree could otherwise point a pull at another
    // folder inside the roots.
    if workdir.as_ref().is_some_and(|w| *w != requested) && git_dir != requested {
        return Err(refused(format!(
            "git: the work tree of {} is {}, not the folder itself; remove core.worktree from \
             the git config and retry",
            requested.display(),
            workdir
                .as_ref()
                .map(|w| w.display().to_string())
                .unwrap_or_default()
        )));
    }
    guard_alternates(gate, &common_dir)?;
    let identity = repo.signature().ok();
    let mut own = Config::new()?;
    let own_file = common_dir.join("config");
    if own_file.is_file() {
        own.add_file(&own_file, ConfigLevel::Local, false)?;
    }
    guard_config(&own, &own_file)?;
    repo.set_config(&own)?;
    Ok(Opened {
        repo,
        workdir,
        identity,
        config: own,
        config_file: own_file,
    })
}

/// Object alternates make a repository read objects from other folders; each must be readable
/// through the gate.
fn guard_alternates(gate: Gate, common_dir: &Path) -> Result<(), GitError> {
    let objects = common_dir.join("objects");
    let Ok(text) = std::fs::read_to_string(objects.join("info/alternates")) else {
        return Ok(());
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        guard_location(
            gate,
            &objects.join(line),
            Intent::Read,
            "an object alternate (objects/info/alternates)",
        )?;
    }
    Ok(())
}

/// Why a git config key is refused, or `None` when it is harmless. Keys are matched as git does:
/// section and key case-insensitively, the subsection (between them) as written.
fn dangerous_key(name: &str, value: Option<&str>) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let section = lower.split('.').next().unwrap_or_default();
    let key = lower.rsplit('.').next().unwrap_or_default();
    let subsection = name
        .split_once('.')
        .and_then(|(_, rest)| rest.rsplit_once('.'))
        .map(|(sub, _)| sub);
    let is_false = || {
        value.is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "no" | "off" | "0" | ""
            )
        })
    };
    match (section, subsection.is_some(), key) {
        ("core", false, "worktree") => Some("it moves the work tree out of the repository folder"),
        ("core", false, "hookspath" | "fsmonitor" | "sshcommand" | "gitproxy" | "askpass") => {
            Some("it names a program for git to run")
        }
        ("core", false, "protectntfs" | "protecthfs") if is_false() => {
            Some("it turns off the check that keeps checkouts out of the .git folder")
        }
        ("include" | "includeif", _, _) => Some("it loads config from another file"),
        ("filter", _, _) | ("credential", _, _) => Some("it names a program for git to run"),
        ("diff", _, "command" | "textconv" | "external") | ("merge", true, "driver") => {
            Some("it names a program for git to run")
        }
        ("gpg", _, "program") | ("remote", true, "uploadpack" | "receivepack") => {
            Some("it names a program for git to run")
        }
        ("uploadpack", false, "packobjectshook") => Some("it names a program for git to run"),
        ("protocol", _, "allow") if !value.is_some_and(|v| v.eq_ignore_ascii_case("never")) => {
            Some("it allows transports that run programs (ext::)")
        }
        ("url", true, "insteadof" | "pushinsteadof")
            if subsection.is_some_and(|s| s.contains("::")) =>
        {
            Some("it rewrites remotes to a transport that runs programs")
        }
        _ => None,
    }
}

/// The one guard every git operation's config passes, local or over the network (where
/// `transport::guard_network_config` adds the transfer settings only the system `git` reads):
/// refuses a config that could redirect the work tree, load other config files, or make git run
/// a program (hooks, fsmonitor, filters, ssh and proxy commands, credential helpers, diff and
/// merge drivers, `ext::` transports). libgit2 itself runs none of these today; refusing them
/// keeps it that way whatever a later libgit2 or a `git` started by hand in the same folder does.
pub fn guard_config(config: &Config, file: &Path) -> Result<(), GitError> {
    let mut entries = config.entries(None)?;
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let value = entry
            .has_value()
            .then(|| String::from_utf8_lossy(entry.value_bytes()).into_owned());
        if let Some(why) = dangerous_key(&name, value.as_deref()) {
            return Err(refused(format!(
                "git: config key `{name}` in {} is refused: {why}; remove it (git config --unset \
                 {name}) and retry",
                file.display()
            )));
        }
    }
    Ok(())
}

/// Checks a remote's URL before git reads from it (`Intent::Read`, fetch) or writes to it
/// (`Intent::Write`, push). A local path or `file://` URL must name a repository whose folders
/// pass the gate like the local one's; `ext::` and other program-running transports, and
/// relative paths (libgit2 would take them relative to the node's working folder) are refused.
/// Network URLs (https, ssh, git, scp-style) pass here; `transport` transfers with them after
/// the repository's config passed `guard_config` and `transport::guard_network_config`.
pub fn guard_remote_url(url: &str, gate: Gate, intent: Intent) -> Result<(), GitError> {
    let lower = url.to_ascii_lowercase();
    let local = if let Some(rest) = lower.strip_prefix("file://") {
        let rest = &url[url.len() - rest.len()..];
        match rest.strip_prefix("localhost") {
            Some(path) if path.starts_with('/') => Some(PathBuf::from(path)),
            _ if rest.starts_with('/') => Some(PathBuf::from(rest)),
            _ => {
                return Err(refused(format!(
                    "git: remote url `{url}` names another host in a file:// URL; use \
                     file:///absolute/path"
                )));
            }
        }
    } else if url.starts_with('/') {
        Some(PathBuf::from(url))
    } else if [
        "https://",
        "http://",
        "ssh://",
        "git://",
        "git+ssh://",
        "ssh+git://",
    ]
    .iter()
    .any(|scheme| lower.starts_with(scheme))
    {
        None
    } else if url.contains("::") {
        return Err(refused(format!(
            "git: remote url `{url}` uses a transport that runs programs; use a path, file://, \
             https:// or ssh:// URL"
        )));
    } else if let Some((host, _)) = url.split_once(':')
        && !host.is_empty()
        && !host.contains('/')
    {
        // scp-like `user@host:path`: ssh.
        None
    } else {
        return Err(refused(format!(
            "git: remote url `{url}` is a relative path; use an absolute path or a file:// URL \
             beneath the roots"
        )));
    };
    if let Some(path) = local {
        let remote = Repository::open_ext(
            &path,
            RepositoryOpenFlags::NO_SEARCH,
            std::iter::empty::<&std::ffi::OsStr>(),
        )
        .map_err(|e| {
            refused(format!(
                "git: remote {} is not a repository ({})",
                path.display(),
                e.message()
            ))
        })?;
        guard_location(gate, &path, intent, "the remote")?;
        guard_location(gate, remote.path(), intent, "the remote's git folder")?;
        let common_dir = guard_location(
            gate,
            remote.commondir(),
            intent,
            "the remote's common git folder",
        )?;
        guard_alternates(gate, &common_dir)?;
    }
    Ok(())
}

/// Whether a path component could name the git folder on some file system: `.git` in any case,
/// with the trailing dots or spaces Windows drops, or its 8.3 short name.
fn names_git_folder(component: &str) -> bool {
    let trimmed = component.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    trimmed == ".git" || trimmed == "git~1"
}

const SYMLINK_MODE: i32 = 0o120000;

/// Refuses a tree a checkout could not write safely: an entry whose path passes through a
/// symbolic link the same tree creates (a crafted tree holding `evil -> /etc` and `evil/x`
/// would write `/etc/x`; compared without case, as a case-insensitive file system would), or a
/// component naming the git folder.
fn guard_tree_shape(tree: &Tree) -> Result<(), GitError> {
    let mut symlinks: HashSet<String> = HashSet::new();
    let mut paths: Vec<String> = Vec::new();
    let mut bad_name: Option<String> = None;
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let path = format!("{dir}{name}");
        if names_git_folder(&name) {
            bad_name = Some(path);
            return TreeWalkResult::Abort;
        }
        if entry.filemode() == SYMLINK_MODE {
            symlinks.insert(path.to_lowercase());
        }
        paths.push(path);
        TreeWalkResult::Ok
    })
    .or_else(|e| if bad_name.is_some() { Ok(()) } else { Err(e) })?;
    if let Some(path) = bad_name {
        return Err(refused(format!(
            "git: the incoming tree has an entry `{path}` that names the git folder; refusing to \
             check it out"
        )));
    }
    for path in &paths {
        let lower = path.to_lowercase();
        let mut prefix = String::new();
        for part in lower
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p)
            .unwrap_or(&[])
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if symlinks.contains(&prefix) {
                return Err(refused(format!(
                    "git: the incoming tree writes `{path}` through the symbolic link `{prefix}` \
                     it also creates, which would write outside the work tree; refusing the \
                     whole checkout"
                )));
            }
        }
    }
    Ok(())
}

/// Checks one path a checkout writes or removes: the path as spelled passes the gate (hard
/// limits, deny and allow lists), and its deepest existing parent resolves by descriptor to
/// itself, so no symbolic link on the disk redirects the write.
fn guard_checkout_path(
    gate: Gate,
    workdir: &Path,
    relative: &Path,
    checked_parents: &mut HashSet<PathBuf>,
) -> Result<(), GitError> {
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(n) if !names_git_folder(&n.to_string_lossy())))
    {
        return Err(refused(format!(
            "git: the incoming tree has a path `{}` that is not a plain path beneath the work \
             tree; refusing the whole checkout",
            relative.display()
        )));
    }
    let path = workdir.join(relative);
    gate.policy
        .check_spelled(gate.mode, &path, Intent::Write)
        .map_err(|refusal| {
            refused(format!(
                "git: the checkout would write {}, which this node's policy refuses ({refusal}); \
                 nothing was checked out",
                path.display()
            ))
        })?;
    let Some(parent) = path
        .parent()
        .into_iter()
        .flat_map(Path::ancestors)
        .take_while(|p| p.starts_with(workdir))
        .find(|p| std::fs::symlink_metadata(p).is_ok())
    else {
        return Ok(());
    };
    if !checked_parents.insert(parent.to_path_buf()) {
        return Ok(());
    }
    let resolved = gate
        .policy
        .resolve(gate.mode, parent, Intent::Write)
        .map_err(|refusal| {
            refused(format!(
                "git: the checkout would write {} inside {}, which this node's policy refuses \
                 ({refusal}); nothing was checked out",
                path.display(),
                parent.display()
            ))
        })?;
    if resolved.absolute != parent {
        return Err(refused(format!(
            "git: the checkout would write {} through the symbolic link {} (it leads to {}); \
             remove the link and retry; nothing was checked out",
            path.display(),
            parent.display(),
            resolved.absolute.display()
        )));
    }
    Ok(())
}

/// Decides a checkout from `from` (the current HEAD tree, `None` when unborn) to `to` before
/// it writes anything: the incoming tree's shape, then every path it adds, changes or removes
/// through the gate. One refused path refuses the whole checkout, so nothing is half written.
fn guard_checkout(
    repo: &Repository,
    workdir: &Path,
    from: Option<&Tree>,
    to: &Tree,
    gate: Gate,
) -> Result<(), GitError> {
    guard_tree_shape(to)?;
    let diff = repo.diff_tree_to_tree(from, Some(to), None)?;
    let mut checked_parents = HashSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path()
                && !file.id().is_zero()
            {
                guard_checkout_path(gate, workdir, path, &mut checked_parents)?;
            }
        }
    }
    Ok(())
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

/// `git status` of the work tree at `path`; files the gate would not let the caller read (a
/// denied glob, the node's own state) are left out of the listing.
pub fn status(path: &Path, gate: Gate) -> Result<GitStatusResult, GitError> {
    let Opened { repo, workdir, .. } = open_guarded(path, gate, Intent::Read)?;
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let statuses = repo.statuses(Some(&mut options))?;
    let files: Vec<GitFileStatus> = statuses
        .iter()
        .filter(|e| e.status() != Status::CURRENT && !e.status().is_ignored())
        .filter(|e| match (&workdir, e.path().ok()) {
            (Some(workdir), Some(file)) => gate.policy.path_visible(gate.mode, &workdir.join(file)),
            _ => true,
        })
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

fn need_workdir(workdir: Option<PathBuf>, path: &Path) -> Result<PathBuf, GitError> {
    workdir.ok_or_else(|| {
        refused(format!(
            "{} is a bare repository; pass a folder with a work tree",
            path.display()
        ))
    })
}

/// Stages `paths` (or every change) and commits with the repository's configured identity.
/// Every file staged is one the gate lets the caller read: a commit (and a later push) must not
/// carry out a file the node would refuse to show.
pub fn commit(
    path: &Path,
    message: &str,
    paths: Option<&[String]>,
    gate: Gate,
) -> Result<GitActionResult, GitError> {
    let Opened {
        repo,
        workdir,
        identity,
        ..
    } = open_guarded(path, gate, Intent::Write)?;
    let workdir = need_workdir(workdir, path)?;
    let mut index = repo.index()?;
    let mut refusal: Option<String> = None;
    let mut check = |file: &Path, _: &[u8]| -> i32 {
        let full = workdir.join(file);
        match gate.policy.check_spelled(gate.mode, &full, Intent::Read) {
            Ok(()) => 0,
            Err(reason) => {
                refusal = Some(format!(
                    "git: {} cannot be committed: {reason}; leave it out (paths) and retry; \
                     nothing was committed",
                    full.display()
                ));
                -1
            }
        }
    };
    let pathspecs: Vec<String> = match paths {
        Some(paths) if !paths.is_empty() => paths.to_vec(),
        _ => vec!["*".to_string()],
    };
    let staged = index
        .add_all(pathspecs.iter(), IndexAddOption::DEFAULT, Some(&mut check))
        .and_then(|()| index.update_all(pathspecs.iter(), Some(&mut check)));
    if let Some(reason) = refusal {
        return Err(refused(reason));
    }
    staged?;
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
    let signature = match identity {
        Some(signature) => signature,
        None => {
            let host = sysinfo::System::host_name().unwrap_or_else(|_| "localhost".into());
            Signature::now("remote-agents", &format!("remote-agents@{host}"))?
        }
    };
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
    // Checked here because the name becomes part of a refspec on git's command line.
    if !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        return Err(refused(format!(
            "git: `{branch}` is not a valid branch name; pass the branch's short name (e.g. main)"
        )));
    }
    Ok((remote.unwrap_or("origin").to_string(), branch))
}

/// Fetches `branch` from `remote` and fast-forwards the local branch; refuses to merge. The
/// checkout is decided path by path through the gate before any file is written.
pub fn pull(
    path: &Path,
    remote: Option<&str>,
    branch: Option<&str>,
    gate: Gate,
) -> Result<GitActionResult, GitError> {
    let Opened {
        repo,
        workdir,
        config,
        config_file,
        ..
    } = open_guarded(path, gate, Intent::Write)?;
    let workdir = need_workdir(workdir, path)?;
    let (remote_name, branch) = remote_and_branch(&repo, remote, branch)?;
    let mut remote = repo.find_remote(&remote_name)?;
    let url = String::from_utf8_lossy(remote.url_bytes()).into_owned();
    guard_remote_url(&url, gate, Intent::Read)?;
    if transport::is_network(&url) {
        // The system git updates refs and objects only; the fast-forward below stays libgit2's
        // and passes the same checkout guard as a local pull.
        transport::guard_network_config(&config, &config_file)?;
        transport::fetch(
            repo.path(),
            &url,
            &[format!(
                "+refs/heads/{branch}:refs/remotes/{remote_name}/{branch}"
            )],
        )?;
    } else {
        remote.fetch(&[branch.as_str()], None, None)?;
    }
    let fetch_head = repo.find_reference("FETCH_HEAD")?;
    let incoming = repo.reference_to_annotated_commit(&fetch_head)?;
    let (analysis, _) = repo.merge_analysis(&[&incoming])?;
    let summary = if analysis.is_up_to_date() {
        "already up to date".to_string()
    } else if analysis.is_fast_forward() || analysis.is_unborn() {
        let refname = format!("refs/heads/{branch}");
        let target = repo.find_commit(incoming.id())?;
        let current = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
        guard_checkout(&repo, &workdir, current.as_ref(), &target.tree()?, gate)?;
        // Update the work tree first (safe: refuses to overwrite local changes), then move the
        // branch, so a refused checkout leaves the branch where it was.
        repo.checkout_tree(
            target.as_object(),
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

/// Pushes `branch` to `remote`; a rejected update is an error, not a silent success. A local
/// remote must be writable through the gate.
pub fn push(
    path: &Path,
    remote: Option<&str>,
    branch: Option<&str>,
    gate: Gate,
) -> Result<GitActionResult, GitError> {
    let Opened {
        repo,
        config,
        config_file,
        ..
    } = open_guarded(path, gate, Intent::Write)?;
    let (remote_name, branch) = remote_and_branch(&repo, remote, branch)?;
    let mut remote = repo.find_remote(&remote_name)?;
    let url = String::from_utf8_lossy(remote.pushurl_bytes().unwrap_or_else(|| remote.url_bytes()))
        .into_owned();
    guard_remote_url(&url, gate, Intent::Write)?;
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    let mut rejected: Option<String> = None;
    if transport::is_network(&url) {
        transport::guard_network_config(&config, &config_file)?;
        transport::push(repo.path(), &url, &[spec])?;
        // git updates no remote-tracking ref when pushing to a URL; libgit2 does for a named
        // remote, so do the same and keep git_status's ahead/behind right.
        let pushed = repo.refname_to_id(&format!("refs/heads/{branch}"))?;
        repo.reference(
            &format!("refs/remotes/{remote_name}/{branch}"),
            pushed,
            true,
            "remote-agents: push",
        )?;
    } else {
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.push_update_reference(|refname, status| {
            if let Some(message) = status {
                rejected = Some(format!("{refname}: {message}"));
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
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
    use crate::policy::PolicyConfig;

    fn configure(repo: &Repository) {
        let mut config = repo.config().unwrap();
        config.set_str("user.name", "Test").unwrap();
        config
            .set_str("user.email", "test@example.invalid")
            .unwrap();
    }

    /// A root the policy allows, a folder beside it that it does not, and the policy.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        policy: Policy,
    }

    impl Fixture {
        fn new(deny_paths: &[&str], data_dir: Option<&str>) -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let base = std::fs::canonicalize(tmp.path()).unwrap();
            let root = base.join("root");
            let outside = base.join("outside");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::create_dir_all(&outside).unwrap();
            // A data dir inside the roots is left for the test to create (or a pull to try to).
            let data = match data_dir {
                Some(relative) => root.join(relative),
                None => {
                    std::fs::create_dir_all(base.join("data")).unwrap();
                    base.join("data")
                }
            };
            let config = PolicyConfig {
                roots: vec![root.clone()],
                deny_paths: deny_paths.iter().map(|g| g.to_string()).collect(),
                ..Default::default()
            };
            let policy = Policy::new(&config, &data).unwrap();
            Fixture {
                _tmp: tmp,
                root,
                outside,
                policy,
            }
        }

        fn gate(&self) -> Gate<'_> {
            Gate {
                policy: &self.policy,
                mode: Mode::Edit,
            }
        }

        /// A bare remote, an upstream clone that commits to it with plain libgit2 (no gate,
        /// like an attacker's own machine), and `down`, the clone the node pulls into.
        fn repos(&self) -> Repos {
            let remote = self.root.join("remote.git");
            Repository::init_bare(&remote).unwrap();
            let up = self.root.join("up");
            let up_repo = Repository::init(&up).unwrap();
            configure(&up_repo);
            up_repo.remote("origin", remote.to_str().unwrap()).unwrap();
            std::fs::write(up.join("README"), "one\n").unwrap();
            raw_commit(&up_repo, "first");
            let branch = current_branch(&up_repo).unwrap();
            raw_push(&up_repo, &branch);
            let down = self.root.join("down");
            let down_repo = Repository::clone(remote.to_str().unwrap(), &down).unwrap();
            configure(&down_repo);
            Repos {
                remote,
                up,
                up_repo,
                down,
                down_repo,
                branch,
            }
        }

        fn outside_is_empty(&self) -> bool {
            std::fs::read_dir(&self.outside).unwrap().next().is_none()
        }
    }

    struct Repos {
        remote: PathBuf,
        up: PathBuf,
        up_repo: Repository,
        down: PathBuf,
        down_repo: Repository,
        branch: String,
    }

    impl Repos {
        /// Commits every file in `up` and pushes it, with plain libgit2.
        fn publish(&self, message: &str) {
            raw_commit(&self.up_repo, message);
            raw_push(&self.up_repo, &self.branch);
        }

        fn down_head(&self) -> git2::Oid {
            self.down_repo.head().unwrap().target().unwrap()
        }
    }

    fn raw_commit(repo: &Repository, message: &str) -> git2::Oid {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"].iter(), IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"].iter(), None).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let signature = repo.signature().unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(
            Some("HEAD"),
            &signature,
            &signature,
            message,
            &tree,
            &parents,
        )
        .unwrap()
    }

    fn raw_push(repo: &Repository, branch: &str) {
        let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
        repo.find_remote("origin")
            .unwrap()
            .push(&[spec.as_str()], None)
            .unwrap();
    }

    fn refused_with(result: Result<GitActionResult, GitError>, needle: &str) -> String {
        match result {
            Err(GitError::Refused(reason)) => {
                assert!(
                    reason.to_lowercase().contains(&needle.to_lowercase()),
                    "{reason}"
                );
                reason
            }
            other => panic!("expected a refusal mentioning `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn commit_push_and_pull_through_a_local_bare_remote() {
        let f = Fixture::new(&[], None);
        let gate = f.gate();
        let bare = f.root.join("remote.git");
        Repository::init_bare(&bare).unwrap();
        let a = f.root.join("a");
        let repo_a = Repository::init(&a).unwrap();
        configure(&repo_a);
        repo_a.remote("origin", bare.to_str().unwrap()).unwrap();

        std::fs::write(a.join("README"), "one\n").unwrap();
        let st = status(&a, gate).unwrap();
        assert!(!st.clean);
        assert_eq!(st.files[0].status, "untracked");
        let committed = commit(&a, "first", None, gate).unwrap();
        assert!(committed.summary.starts_with("committed"));
        assert!(status(&a, gate).unwrap().clean);
        assert!(matches!(
            commit(&a, "empty", None, gate),
            Err(GitError::Refused(_))
        ));
        let branch = current_branch(&repo_a).unwrap();
        push(&a, None, None, gate).unwrap();
        // The identity comes from the user's config even though operations see only the
        // repository's own file.
        let head = repo_a.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(head.author().name().ok(), Some("Test"));

        // A second clone pulls the next commit by fast-forward.
        let b = f.root.join("b");
        let repo_b = Repository::clone(bare.to_str().unwrap(), &b).unwrap();
        configure(&repo_b);
        std::fs::write(a.join("README"), "two\n").unwrap();
        commit(&a, "second", Some(&["README".to_string()]), gate).unwrap();
        push(&a, None, Some(&branch), gate).unwrap();
        let pulled = pull(&b, None, Some(&branch), gate).unwrap();
        assert!(
            pulled.summary.starts_with("fast-forwarded"),
            "{}",
            pulled.summary
        );
        assert_eq!(std::fs::read_to_string(b.join("README")).unwrap(), "two\n");
        assert_eq!(
            pull(&b, None, Some(&branch), gate).unwrap().summary,
            "already up to date"
        );
    }

    #[test]
    fn a_folder_that_is_not_a_repository_is_an_actionable_error() {
        let f = Fixture::new(&[], None);
        let err = status(&f.root, f.gate()).unwrap_err();
        assert!(err.to_string().contains("not a git work tree"), "{err}");
    }

    #[test]
    fn core_worktree_pointing_outside_the_roots_refuses_the_pull_and_writes_nothing_there() {
        let f = Fixture::new(&[], None);
        let r = f.repos();
        std::fs::write(r.up.join("planted"), "x\n").unwrap();
        r.publish("second");
        r.down_repo
            .config()
            .unwrap()
            .set_str("core.worktree", f.outside.to_str().unwrap())
            .unwrap();
        let before = r.down_head();
        refused_with(pull(&r.down, None, None, f.gate()), "work tree");
        assert!(f.outside_is_empty(), "the pull wrote outside the roots");
        assert_eq!(r.down_head(), before);
    }

    #[test]
    fn a_dot_git_file_pointing_outside_the_roots_is_refused() {
        let f = Fixture::new(&[], None);
        let elsewhere = f.outside.join("real");
        let real = Repository::init(&elsewhere).unwrap();
        configure(&real);
        std::fs::write(elsewhere.join("secret"), "s\n").unwrap();
        raw_commit(&real, "outside");
        let proj = f.root.join("proj");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::write(
            proj.join(".git"),
            format!("gitdir: {}\n", elsewhere.join(".git").display()),
        )
        .unwrap();
        let err = status(&proj, f.gate()).unwrap_err();
        assert!(err.to_string().contains("git folder"), "{err}");
        refused_with(pull(&proj, None, None, f.gate()), "git folder");
        refused_with(commit(&proj, "m", None, f.gate()), "git folder");
    }

    #[test]
    fn config_keys_that_redirect_or_run_programs_refuse_every_operation() {
        let f = Fixture::new(&[], None);
        let r = f.repos();
        let marker = f.outside.join("ran");
        let script = f.root.join("script.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ntouch {}\ncat\n", marker.display()),
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&script, permissions).unwrap();
        let hooks = f.root.join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        for hook in ["post-checkout", "post-merge", "pre-commit", "post-commit"] {
            std::fs::copy(&script, hooks.join(hook)).unwrap();
        }
        std::fs::write(r.up.join(".gitattributes"), "* filter=evil\n").unwrap();
        std::fs::write(r.up.join("second"), "2\n").unwrap();
        r.publish("second");
        let included = f.outside.join("included");
        std::fs::write(&included, "[user]\n\tname = included\n").unwrap();
        let script = script.to_str().unwrap();
        let keys = [
            ("core.worktree", f.root.join("up").display().to_string()),
            ("core.hooksPath", hooks.display().to_string()),
            ("core.fsmonitor", script.to_string()),
            ("core.sshCommand", script.to_string()),
            ("core.gitProxy", script.to_string()),
            ("core.askPass", script.to_string()),
            ("core.protectNTFS", "false".to_string()),
            ("filter.evil.smudge", script.to_string()),
            ("filter.evil.clean", script.to_string()),
            ("filter.evil.process", script.to_string()),
            ("include.path", included.display().to_string()),
            ("includeIf.gitdir:/.path", included.display().to_string()),
            ("credential.helper", script.to_string()),
            ("diff.evil.textconv", script.to_string()),
            ("merge.evil.driver", script.to_string()),
            ("remote.origin.uploadpack", script.to_string()),
            ("gpg.program", script.to_string()),
            ("protocol.ext.allow", "always".to_string()),
            ("protocol.allow", "always".to_string()),
            (
                "url.ext::sh -c touch% /tmp/x.insteadOf",
                "evil:".to_string(),
            ),
        ];
        let before = r.down_head();
        for (key, value) in &keys {
            let mut config = r.down_repo.config().unwrap();
            config.set_str(key, value).unwrap();
            let needle = key.to_string();
            refused_with(pull(&r.down, None, None, f.gate()), &needle);
            refused_with(commit(&r.down, "m", None, f.gate()), &needle);
            refused_with(push(&r.down, None, None, f.gate()), &needle);
            let err = status(&r.down, f.gate()).unwrap_err().to_string();
            assert!(err.to_lowercase().contains(&needle.to_lowercase()), "{err}");
            config.remove(key).unwrap();
        }
        assert_eq!(r.down_head(), before);
        assert!(!marker.exists(), "a configured program ran");
        // Harmless settings still pass.
        let mut config = r.down_repo.config().unwrap();
        config.set_str("protocol.version", "2").unwrap();
        config.set_str("protocol.ext.allow", "never").unwrap();
        config.set_str("core.protectNTFS", "true").unwrap();
        pull(&r.down, None, None, f.gate()).unwrap();
        assert!(!marker.exists(), "a configured program ran");
    }

    #[test]
    fn hooks_in_the_git_folder_never_run() {
        let f = Fixture::new(&[], None);
        let r = f.repos();
        let marker = f.outside.join("ran");
        let hooks = r.down.join(".git/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        for hook in [
            "post-checkout",
            "post-merge",
            "pre-commit",
            "commit-msg",
            "post-commit",
            "pre-push",
            "reference-transaction",
            "fsmonitor-watchman",
        ] {
            let path = hooks.join(hook);
            std::fs::write(&path, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
            let mut permissions = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
            std::fs::set_permissions(&path, permissions).unwrap();
        }
        std::fs::write(r.up.join("second"), "2\n").unwrap();
        r.publish("second");
        pull(&r.down, None, None, f.gate()).unwrap();
        std::fs::write(r.down.join("third"), "3\n").unwrap();
        status(&r.down, f.gate()).unwrap();
        commit(&r.down, "third", None, f.gate()).unwrap();
        push(&r.down, None, None, f.gate()).unwrap();
        assert!(!marker.exists(), "a hook ran");
    }

    #[test]
    fn a_pull_with_a_path_the_policy_refuses_is_refused_whole_and_writes_nothing() {
        let f = Fixture::new(&["**/*.secret"], None);
        let r = f.repos();
        std::fs::write(r.up.join("fine.txt"), "ok\n").unwrap();
        std::fs::write(r.up.join("README"), "changed\n").unwrap();
        std::fs::create_dir_all(r.up.join("deep/er")).unwrap();
        std::fs::write(r.up.join("deep/er/x.secret"), "no\n").unwrap();
        r.publish("second");
        let before = r.down_head();
        refused_with(pull(&r.down, None, None, f.gate()), "x.secret");
        assert_eq!(r.down_head(), before);
        assert!(!r.down.join("fine.txt").exists());
        assert!(!r.down.join("deep").exists());
        assert_eq!(
            std::fs::read_to_string(r.down.join("README")).unwrap(),
            "one\n"
        );
    }

    #[test]
    fn a_pull_into_the_node_data_dir_is_refused_in_bypass_mode_too() {
        let f = Fixture::new(&[], Some("down/state"));
        let r = f.repos();
        std::fs::create_dir_all(r.up.join("state")).unwrap();
        std::fs::write(r.up.join("state/identity.key"), "planted\n").unwrap();
        r.publish("second");
        let bypass = Gate {
            policy: &f.policy,
            mode: Mode::Bypass,
        };
        refused_with(pull(&r.down, None, None, bypass), "hard limit");
        assert!(!r.down.join("state/identity.key").exists());
    }

    /// Writes a tree holding both `evil`, a symbolic link to `target`, and a folder `evil`
    /// with a file `x`: no git command makes one, but nothing stops a hostile remote from
    /// serving it.
    fn link_then_file_tree(repo: &Repository, target: &Path) -> git2::Oid {
        let odb = repo.odb().unwrap();
        let link = repo.blob(target.to_str().unwrap().as_bytes()).unwrap();
        let file = repo.blob(b"escaped\n").unwrap();
        let mut inner = Vec::new();
        inner.extend_from_slice(b"100644 x\0");
        inner.extend_from_slice(file.as_bytes());
        let inner = odb.write(git2::ObjectType::Tree, &inner).unwrap();
        let mut outer = Vec::new();
        outer.extend_from_slice(b"120000 evil\0");
        outer.extend_from_slice(link.as_bytes());
        outer.extend_from_slice(b"40000 evil\0");
        outer.extend_from_slice(inner.as_bytes());
        odb.write(git2::ObjectType::Tree, &outer).unwrap()
    }

    #[test]
    fn a_tree_that_writes_through_its_own_symlink_is_refused() {
        let f = Fixture::new(&[], None);
        let r = f.repos();
        let remote = Repository::open_bare(&r.remote).unwrap();
        let tree = remote
            .find_tree(link_then_file_tree(&remote, &f.outside))
            .unwrap();
        let parent = remote
            .find_reference(&format!("refs/heads/{}", r.branch))
            .unwrap()
            .peel_to_commit()
            .unwrap();
        let signature = Signature::now("Test", "test@example.invalid").unwrap();
        remote
            .commit(
                Some(&format!("refs/heads/{}", r.branch)),
                &signature,
                &signature,
                "link then file",
                &tree,
                &[&parent],
            )
            .unwrap();
        let before = r.down_head();
        refused_with(pull(&r.down, None, None, f.gate()), "symbolic link");
        assert!(f.outside_is_empty(), "the checkout wrote through the link");
        assert_eq!(r.down_head(), before);
    }

    #[test]
    fn a_pull_through_a_symlink_already_in_the_work_tree_is_refused() {
        let f = Fixture::new(&[], None);
        let r = f.repos();
        std::os::unix::fs::symlink(&f.outside, r.down.join("evil")).unwrap();
        std::fs::create_dir_all(r.up.join("evil")).unwrap();
        std::fs::write(r.up.join("evil/x"), "escaped\n").unwrap();
        r.publish("second");
        let result = pull(&r.down, None, None, f.gate());
        assert!(f.outside_is_empty(), "the checkout wrote through the link");
        refused_with(result, "down/evil");
    }

    #[test]
    fn a_commit_of_a_file_the_policy_refuses_is_refused_whole() {
        let f = Fixture::new(&["**/*.secret"], None);
        let r = f.repos();
        std::fs::write(r.down.join("fine.txt"), "ok\n").unwrap();
        std::fs::write(r.down.join("id.secret"), "no\n").unwrap();
        let before = r.down_head();
        refused_with(commit(&r.down, "m", None, f.gate()), "id.secret");
        assert_eq!(r.down_head(), before);
        assert!(
            r.down_repo
                .index()
                .unwrap()
                .get_path(Path::new("fine.txt"), 0)
                .is_none()
        );
        // The listing leaves the refused name out.
        let listed = status(&r.down, f.gate()).unwrap();
        assert!(listed.files.iter().all(|file| file.path != "id.secret"));
        assert!(listed.files.iter().any(|file| file.path == "fine.txt"));
    }

    #[test]
    fn a_remote_outside_the_roots_or_running_programs_is_refused() {
        let f = Fixture::new(&[], None);
        let r = f.repos();
        let secret = f.outside.join("secret.git");
        let secret_repo = Repository::init_bare(&secret).unwrap();
        drop(secret_repo);
        // Push first so the remote outside would have something to fetch.
        r.down_repo
            .remote_set_url("origin", secret.to_str().unwrap())
            .unwrap();
        refused_with(push(&r.down, None, None, f.gate()), "the remote");
        assert!(
            Repository::open_bare(&secret).unwrap().is_empty().unwrap(),
            "the push wrote outside the roots"
        );
        refused_with(pull(&r.down, None, None, f.gate()), "the remote");
        for url in [
            format!("file://{}", secret.display()),
            "ext::sh -c touch% /tmp/pwned".to_string(),
            "remote.git".to_string(),
        ] {
            r.down_repo.remote_set_url("origin", &url).unwrap();
            refused_with(pull(&r.down, None, None, f.gate()), "remote");
        }
        // A remote inside the roots whose `.git` file points outside is refused too.
        let wrapper = f.root.join("wrapper");
        std::fs::create_dir_all(&wrapper).unwrap();
        std::fs::write(
            wrapper.join(".git"),
            format!("gitdir: {}\n", secret.display()),
        )
        .unwrap();
        r.down_repo
            .remote_set_url("origin", wrapper.to_str().unwrap())
            .unwrap();
        refused_with(pull(&r.down, None, None, f.gate()), "git folder");
        r.down_repo
            .remote_set_url("origin", &format!("file://{}", r.remote.display()))
            .unwrap();
        pull(&r.down, None, None, f.gate()).unwrap();
    }
}
