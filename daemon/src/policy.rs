//! The policy gate: modes, path and command allow/deny lists, built-in hard limits, and the
//! descriptor-based resolution of paths beneath allowed roots. Every executor asks this module
//! first; nothing touches the file system or spawns a process without a `Resolved` or an `Ok` here.
//!
//! `Mode` and `PolicyConfig` are defined locally because the `spec` crate does not expose policy
//! types yet; the lead will unify them with the spec model once it does.
//!
//! What this gate can and cannot promise:
//! - Paths are resolved by file descriptor beneath an allowed root with `cap-std`: `..` that
//!   leaves the root and symlinks that point out of it fail inside the kernel walk, never by
//!   comparing strings. Deny globs are matched against the symlink-resolved path inside the root,
//!   so a link inside the root that points at a denied file is refused too.
//! - Command allow/deny lists are a guard rail, not a security boundary: a program that is
//!   allowed can itself start any other program or write any file the node's user can write.
//!   They stop honest mistakes; the boundary is the mode (`plan` runs commands only inside a
//!   read-only Landlock sandbox, see `sandbox`, and refuses them where it cannot make one) and
//!   the operating-system user the node runs as.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// How much a node lets requests do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Read-only: reads, listings, searches, status; no writes and no process execution at all.
    Plan,
    /// Reads, writes (the previous version of a file is kept as a backup) and exec.
    #[default]
    Edit,
    /// Everything except the built-in hard limits; no backups.
    Bypass,
    /// Rejects every request.
    Disabled,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::Edit => "edit",
            Mode::Bypass => "bypass",
            Mode::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plan" => Ok(Mode::Plan),
            "edit" => Ok(Mode::Edit),
            "bypass" => Ok(Mode::Bypass),
            "disabled" => Ok(Mode::Disabled),
            other => Err(format!(
                "unknown mode `{other}`: expected plan, edit, bypass or disabled"
            )),
        }
    }
}

/// The policy as written in `config.toml` (`[policy]`) or, later, the applied spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directories beneath which paths may be touched. Empty means the home directory and the
    /// system temporary directory.
    pub roots: Vec<PathBuf>,
    /// When non-empty, a path must match one of these globs.
    pub allow_paths: Vec<String>,
    /// A path matching one of these globs is refused.
    pub deny_paths: Vec<String>,
    /// When non-empty, a command line (argv joined by spaces) must match one of these globs.
    pub allow_commands: Vec<String>,
    /// A command line or program name matching one of these globs is refused.
    pub deny_commands: Vec<String>,
    /// Whether `exec` may run its command through `/bin/sh -c` in `edit` mode (`bypass` always may).
    pub allow_shell: bool,
}

/// What a request wants to do, as far as the mode is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads files, lists, searches, reports status or facts.
    Read,
    /// Writes files or changes a repository.
    Write,
    /// Starts a process.
    Exec,
    /// Changes the node's own mode (`set_mode`).
    Admin,
}

/// Why the gate said no; the text is shown to the caller (often a model) and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub reason: String,
}

impl Refusal {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Errors building a policy from configuration.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid glob `{glob}` in policy")]
    Glob {
        glob: String,
        #[source]
        source: globset::Error,
    },
}

/// A path that passed the gate: an open descriptor on its root plus the path inside it,
/// symlinks already resolved without leaving the root.
#[derive(Debug)]
pub struct Resolved {
    pub root: Dir,
    pub root_path: PathBuf,
    /// Path relative to `root`, symlink-free up to (and including, when it exists) the last part.
    pub relative: PathBuf,
    /// `root_path` joined with `relative`: what deny globs and callers see.
    pub absolute: PathBuf,
}

/// Whether a path is about to be read or written; writes may name a file that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Read,
    Write,
}

/// The compiled policy of one node.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The roots as configured and the data dir as given, before canonicalization: a rebuild
    /// with the same ones reuses `roots` and `data_dir` instead of resolving them again.
    configured: (Vec<PathBuf>, PathBuf),
    roots: Vec<PathBuf>,
    home: PathBuf,
    allow_paths: Option<Globs>,
    deny_paths: Globs,
    hard_deny_write: Globs,
    hard_deny_any: Globs,
    allow_commands: Option<Globs>,
    deny_commands: Globs,
    allow_shell: bool,
    data_dir: PathBuf,
}

/// Files no mode may write, whatever the configuration says.
const HARD_DENY_WRITE: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d/**",
    "/boot/**",
];

/// A compiled glob set and the globs it was built from, so that a policy rebuilt after an apply
/// reuses the sets whose globs did not change: compiling one builds regex and Aho-Corasick
/// automata, the larger part of taking a new policy.
#[derive(Debug, Clone)]
struct Globs {
    source: Vec<String>,
    set: Arc<GlobSet>,
}

impl Globs {
    fn build(source: Vec<String>, previous: Option<&Globs>) -> Result<Globs, PolicyError> {
        if let Some(previous) = previous
            && previous.source == source
        {
            return Ok(previous.clone());
        }
        Ok(Globs {
            set: Arc::new(build_set(&source)?),
            source,
        })
    }

    /// `None` for no globs (nothing to allow-list).
    fn optional(
        source: Vec<String>,
        previous: Option<&Option<Globs>>,
    ) -> Result<Option<Globs>, PolicyError> {
        if source.is_empty() {
            return Ok(None);
        }
        Globs::build(source, previous.and_then(Option::as_ref)).map(Some)
    }
}

impl std::ops::Deref for Globs {
    type Target = GlobSet;

    fn deref(&self) -> &GlobSet {
        &self.set
    }
}

fn build_set(globs: &[String]) -> Result<GlobSet, PolicyError> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        let compiled = Glob::new(glob).map_err(|source| PolicyError::Glob {
            glob: glob.clone(),
            source,
        })?;
        builder.add(compiled);
    }
    builder.build().map_err(|source| PolicyError::Glob {
        glob: globs.join(","),
        source,
    })
}

fn expand_home(path: &Path, home: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// The home directory of the user the node runs as.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

impl Policy {
    /// Compiles a policy. `data_dir` is the node's own state (keys, store, backups): no request
    /// may read its keys or write anything in it, in any mode.
    pub fn new(config: &PolicyConfig, data_dir: &Path) -> Result<Self, PolicyError> {
        Self::build(config, data_dir, None)
    }

    /// A policy for `config` that reuses this one's compiled glob sets where their globs are
    /// unchanged (an apply usually changes one list, if any).
    pub fn rebuild(&self, config: &PolicyConfig, data_dir: &Path) -> Result<Self, PolicyError> {
        Self::build(config, data_dir, Some(self))
    }

    fn build(
        config: &PolicyConfig,
        data_dir: &Path,
        previous: Option<&Policy>,
    ) -> Result<Self, PolicyError> {
        let home = home_dir();
        let configured: Vec<PathBuf> = if config.roots.is_empty() {
            vec![home.clone(), std::env::temp_dir()]
        } else {
            config.roots.iter().map(|r| expand_home(r, &home)).collect()
        };
        // Roots are canonicalized once so that a root that is itself a symlink (e.g. a temp dir
        // reached through a link) is compared in its real form; missing roots are kept as given
        // and simply fail to open later.
        let configured = (configured, data_dir.to_path_buf());
        let (roots, data_dir) = match previous.filter(|p| p.configured == configured) {
            Some(previous) => (previous.roots.clone(), previous.data_dir.clone()),
            None => {
                let mut roots: Vec<PathBuf> = configured
                    .0
                    .iter()
                    .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()))
                    .collect();
                roots.sort();
                roots.dedup();
                let data_dir =
                    std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
                (roots, data_dir)
            }
        };
        let data_glob = format!("{}/**", data_dir.display());
        let mut hard_write: Vec<String> = HARD_DENY_WRITE.iter().map(|s| s.to_string()).collect();
        hard_write.push(data_dir.display().to_string());
        hard_write.push(data_glob);
        let hard_any = vec![
            format!("{}/identity*", data_dir.display()),
            format!("{}/*.key", data_dir.display()),
            format!("{}/store.redb", data_dir.display()),
            "/etc/shadow".to_string(),
            "/etc/gshadow".to_string(),
        ];
        let expanded = |globs: &[String]| -> Vec<String> {
            globs
                .iter()
                .map(|g| expand_home(Path::new(g), &home).display().to_string())
                .collect()
        };
        Ok(Self {
            allow_paths: Globs::optional(
                expanded(&config.allow_paths),
                previous.map(|p| &p.allow_paths),
            )?,
            deny_paths: Globs::build(
                expanded(&config.deny_paths),
                previous.map(|p| &p.deny_paths),
            )?,
            hard_deny_write: Globs::build(hard_write, previous.map(|p| &p.hard_deny_write))?,
            hard_deny_any: Globs::build(hard_any, previous.map(|p| &p.hard_deny_any))?,
            allow_commands: Globs::optional(
                config.allow_commands.clone(),
                previous.map(|p| &p.allow_commands),
            )?,
            deny_commands: Globs::build(
                config.deny_commands.clone(),
                previous.map(|p| &p.deny_commands),
            )?,
            configured,
            roots,
            home,
            allow_shell: config.allow_shell,
            data_dir,
        })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Whether `mode` lets a request with this access through at all.
    pub fn check_mode(mode: Mode, access: Access) -> Result<(), Refusal> {
        match (mode, access) {
            (Mode::Disabled, _) => Err(Refusal::new(
                "the node is in disabled mode and rejects every request; its operator must change \
                 the mode in its configuration",
            )),
            (Mode::Plan, Access::Write) => Err(Refusal::new(
                "the node is in plan mode (read-only): writes are refused; ask its operator to \
                 switch to edit mode (set_mode) if this change is intended",
            )),
            // No command can be proven read-only, so plan mode lets one through only to be run
            // inside the read-only sandbox: the node's gate checks that it can make one
            // (`sandbox::check`) and the executor starts the process inside it.
            _ => Ok(()),
        }
    }

    /// Whether `argv` may run in `mode`; `shell` means the argv is handed to `/bin/sh -c`.
    pub fn check_command(&self, mode: Mode, argv: &[String], shell: bool) -> Result<(), Refusal> {
        Self::check_mode(mode, Access::Exec)?;
        let Some(program) = argv.first() else {
            return Err(Refusal::new("exec needs a non-empty argv"));
        };
        if shell && !(self.allow_shell || mode == Mode::Bypass) {
            return Err(Refusal::new(
                "running through a shell is not granted by this node's policy \
                 (policy.allow_shell); pass the program and its arguments as argv instead",
            ));
        }
        let line = argv.join(" ");
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if mode != Mode::Bypass {
            if self.deny_commands.is_match(&line)
                || self.deny_commands.is_match(program)
                || self.deny_commands.is_match(&name)
            {
                return Err(Refusal::new(format!(
                    "command `{line}` matches this node's command deny list"
                )));
            }
            if let Some(allow) = &self.allow_commands
                && !(allow.is_match(&line) || allow.is_match(program) || allow.is_match(&name))
            {
                return Err(Refusal::new(format!(
                    "command `{line}` is not on this node's command allow list"
                )));
            }
        }
        Ok(())
    }

    /// Turns a request path into an absolute one: `~` is the home directory and a relative path
    /// is taken relative to the home directory.
    pub fn absolute(&self, path: &Path) -> PathBuf {
        let expanded = expand_home(path, &self.home);
        if expanded.is_absolute() {
            expanded
        } else {
            self.home.join(expanded)
        }
    }

    fn root_for(&self, path: &Path) -> Option<(&PathBuf, PathBuf)> {
        // `strip_prefix` compares whole components; the longest root wins. This only picks
        // the descriptor to start from: containment itself is enforced by cap-std below.
        self.roots
            .iter()
            .filter_map(|root| path.strip_prefix(root).ok().map(|rel| (root, rel)))
            .max_by_key(|(root, _)| root.components().count())
            .map(|(root, rel)| (root, rel.to_path_buf()))
    }

    /// Resolves `path` beneath an allowed root for `intent` in `mode`, or says why not.
    pub fn resolve(&self, mode: Mode, path: &Path, intent: Intent) -> Result<Resolved, Refusal> {
        match self.resolve_once(mode, path, intent) {
            Ok(resolved) => Ok(resolved),
            Err(refusal) => {
                // cap-std treats every absolute symlink target as an escape, even one that points
                // back inside a root (common for dotfiles). Compute the real path once with the
                // ordinary resolver and resolve *that* by descriptor again: containment is still
                // enforced by cap-std, and a target outside every root is still refused.
                let requested = self.absolute(path);
                let real = std::fs::canonicalize(&requested).ok().or_else(|| {
                    let parent = std::fs::canonicalize(requested.parent()?).ok()?;
                    Some(parent.join(requested.file_name()?))
                });
                match real {
                    Some(real) if real != requested && self.root_for(&real).is_some() => {
                        let resolved = self.resolve_once(mode, &real, intent)?;
                        self.check_path_lists(mode, &requested, &resolved.absolute, intent)?;
                        Ok(resolved)
                    }
                    _ => Err(refusal),
                }
            }
        }
    }

    fn resolve_once(&self, mode: Mode, path: &Path, intent: Intent) -> Result<Resolved, Refusal> {
        Self::check_mode(
            mode,
            match intent {
                Intent::Read => Access::Read,
                Intent::Write => Access::Write,
            },
        )?;
        let requested = self.absolute(path);
        let Some((root_path, relative)) = self.root_for(&requested) else {
            return Err(Refusal::new(format!(
                "{} is outside the roots this node allows ({}); use a path beneath one of them",
                requested.display(),
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let root = Dir::open_ambient_dir(root_path, ambient_authority())
            .map_err(|e| Refusal::new(format!("cannot open root {}: {e}", root_path.display())))?;
        let escape = |e: std::io::Error| {
            Refusal::new(format!(
                "{} cannot be resolved beneath {} without leaving it (`..` or a symlink that \
                 points outside is refused): {e}",
                requested.display(),
                root_path.display()
            ))
        };
        let relative_in_root = if relative.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            relative
        };
        let canonical = match root.canonicalize(&relative_in_root) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && intent == Intent::Write => {
                // A file that does not exist yet: its parent must resolve inside the root and its
                // name must be a plain name (no `..`, no `.`).
                let name = match relative_in_root.components().next_back() {
                    Some(Component::Normal(n)) => n.to_os_string(),
                    _ => {
                        return Err(Refusal::new(format!(
                            "{} does not name a file",
                            requested.display()
                        )));
                    }
                };
                let parent = relative_in_root
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                root.canonicalize(parent).map_err(escape)?.join(name)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Distinguish "not there" from "escapes": a missing file whose parent escapes is
                // still an escape.
                if let Some(parent) = relative_in_root.parent()
                    && !parent.as_os_str().is_empty()
                    && let Err(pe) = root.canonicalize(parent)
                    && pe.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(escape(pe));
                }
                return Err(Refusal::new(format!(
                    "{} does not exist",
                    requested.display()
                )));
            }
            Err(e) => return Err(escape(e)),
        };
        let canonical: PathBuf = canonical
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        let canonical = if canonical.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            canonical
        };
        let absolute = if canonical == Path::new(".") {
            root_path.clone()
        } else {
            root_path.join(&canonical)
        };
        self.check_path_lists(mode, &requested, &absolute, intent)?;
        Ok(Resolved {
            root,
            root_path: root_path.clone(),
            relative: canonical,
            absolute,
        })
    }

    /// Applies hard limits and the allow/deny path globs to both the requested spelling and the
    /// resolved path, so neither an alias nor a link gets around them.
    fn check_path_lists(
        &self,
        mode: Mode,
        requested: &Path,
        resolved: &Path,
        intent: Intent,
    ) -> Result<(), Refusal> {
        for candidate in [requested, resolved] {
            if self.hard_deny_any.is_match(candidate)
                || (intent == Intent::Write && self.hard_deny_write.is_match(candidate))
            {
                return Err(Refusal::new(format!(
                    "{} is protected by a built-in hard limit (system credentials or this node's \
                     own state) and cannot be {} in any mode",
                    candidate.display(),
                    if intent == Intent::Write {
                        "written"
                    } else {
                        "read"
                    }
                )));
            }
        }
        if mode == Mode::Bypass {
            return Ok(());
        }
        for candidate in [requested, resolved] {
            if self.deny_paths.is_match(candidate) {
                return Err(Refusal::new(format!(
                    "{} matches this node's path deny list",
                    candidate.display()
                )));
            }
        }
        if let Some(allow) = &self.allow_paths
            && !allow.is_match(resolved)
        {
            return Err(Refusal::new(format!(
                "{} is not on this node's path allow list",
                resolved.display()
            )));
        }
        Ok(())
    }

    /// Applies the mode, the roots, the hard limits and the path lists to `path` as spelled,
    /// without touching the file system. For paths that do not exist yet, whose existing parent
    /// the caller resolved by descriptor: a git checkout checks every file it is about to write
    /// this way before writing any.
    pub fn check_spelled(&self, mode: Mode, path: &Path, intent: Intent) -> Result<(), Refusal> {
        Self::check_mode(
            mode,
            match intent {
                Intent::Read => Access::Read,
                Intent::Write => Access::Write,
            },
        )?;
        if self.root_for(path).is_none() {
            return Err(Refusal::new(format!(
                "{} is outside the roots this node allows; use a path beneath one of them",
                path.display()
            )));
        }
        self.check_path_lists(mode, path, path, intent)
    }

    /// Whether a path found by a walk (already beneath a root, not followed through links) passes
    /// the lists; used to filter search results.
    pub fn path_visible(&self, mode: Mode, path: &Path) -> bool {
        self.roots.iter().any(|r| path.starts_with(r))
            && self
                .check_path_lists(mode, path, path, Intent::Read)
                .is_ok()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        data: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        let data = root.join("data");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(root.join("sub/file.txt"), "inside").unwrap();
        std::fs::write(outside.join("secret.txt"), "outside").unwrap();
        std::fs::write(data.join("identity.key"), "key").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link-out")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("file-link-out")).unwrap();
        std::fs::write(root.join("sub/denied.txt"), "no").unwrap();
        std::os::unix::fs::symlink(root.join("sub/denied.txt"), root.join("alias")).unwrap();
        std::os::unix::fs::symlink("sub/denied.txt", root.join("relative-alias")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/file.txt"), root.join("absolute-ok")).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            outside,
            data,
        }
    }

    fn policy(f: &Fixture, extra: impl FnOnce(&mut PolicyConfig)) -> Policy {
        let mut config = PolicyConfig {
            roots: vec![f.root.clone()],
            deny_paths: vec!["**/denied.txt".into()],
            deny_commands: vec!["rm *".into(), "shutdown".into()],
            ..Default::default()
        };
        extra(&mut config);
        Policy::new(&config, &f.data).unwrap()
    }

    const ALL_MODES: [Mode; 4] = [Mode::Plan, Mode::Edit, Mode::Bypass, Mode::Disabled];

    #[test]
    fn a_rebuilt_policy_reuses_unchanged_sets_and_obeys_the_changed_ones() {
        let f = fixture();
        let before = policy(&f, |_| {});
        let mut config = PolicyConfig {
            roots: vec![f.root.clone()],
            deny_paths: vec!["**/file.txt".into()],
            deny_commands: vec!["rm *".into(), "shutdown".into()],
            ..Default::default()
        };
        let after = before.rebuild(&config, &f.data).unwrap();
        assert!(Arc::ptr_eq(
            &before.deny_commands.set,
            &after.deny_commands.set
        ));
        assert!(Arc::ptr_eq(
            &before.hard_deny_any.set,
            &after.hard_deny_any.set
        ));
        assert!(!Arc::ptr_eq(&before.deny_paths.set, &after.deny_paths.set));
        let file = f.root.join("sub/file.txt");
        let denied = f.root.join("sub/denied.txt");
        assert!(before.resolve(Mode::Edit, &file, Intent::Read).is_ok());
        assert!(after.resolve(Mode::Edit, &file, Intent::Read).is_err());
        assert!(after.resolve(Mode::Edit, &denied, Intent::Read).is_ok());
        assert!(
            after
                .check_command(Mode::Edit, &["shutdown".into()], false)
                .is_err()
        );
        // An allow-list that appears is built; one that goes away is gone.
        config.allow_commands = vec!["true".into()];
        let allowing = after.rebuild(&config, &f.data).unwrap();
        assert!(
            allowing
                .check_command(Mode::Edit, &["echo".into()], false)
                .is_err()
        );
        config.allow_commands.clear();
        let open = allowing.rebuild(&config, &f.data).unwrap();
        assert!(
            open.check_command(Mode::Edit, &["echo".into()], false)
                .is_ok()
        );
    }

    #[test]
    fn writes_are_refused_in_plan_mode() {
        let f = fixture();
        let p = policy(&f, |_| {});
        let err = p
            .resolve(Mode::Plan, &f.root.join("sub/new.txt"), Intent::Write)
            .unwrap_err();
        assert!(err.reason.contains("plan mode"), "{err}");
        assert!(
            p.resolve(Mode::Plan, &f.root.join("sub/file.txt"), Intent::Read)
                .is_ok()
        );
        assert!(
            p.resolve(Mode::Edit, &f.root.join("sub/new.txt"), Intent::Write)
                .is_ok()
        );
    }

    #[test]
    fn plan_mode_passes_commands_to_the_sandbox_under_the_same_command_rules() {
        let f = fixture();
        let p = policy(&f, |_| {});
        for argv in [
            vec!["ls".to_string()],
            vec!["cat".into(), "/etc/hostname".into()],
        ] {
            assert!(p.check_command(Mode::Plan, &argv, false).is_ok());
        }
        // The shell grant and the deny list hold in plan mode as in edit mode.
        let line = vec!["echo x > ~/f".to_string()];
        let err = p.check_command(Mode::Plan, &line, true).unwrap_err();
        assert!(err.reason.contains("allow_shell"), "{err}");
        assert!(
            p.check_command(Mode::Plan, &["shutdown".into()], false)
                .is_err()
        );
        // Writes stay refused.
        assert!(Policy::check_mode(Mode::Plan, Access::Write).is_err());
    }

    #[test]
    fn dotdot_escapes_are_refused_in_every_mode() {
        let f = fixture();
        let p = policy(&f, |_| {});
        let escaping = f.root.join("sub/../../outside/secret.txt");
        for mode in ALL_MODES {
            for intent in [Intent::Read, Intent::Write] {
                assert!(
                    p.resolve(mode, &escaping, intent).is_err(),
                    "{mode} {intent:?} let .. escape"
                );
            }
        }
    }

    #[test]
    fn symlink_escapes_are_refused_in_every_mode() {
        let f = fixture();
        let p = policy(&f, |_| {});
        for mode in ALL_MODES {
            for path in [
                f.root.join("link-out/secret.txt"),
                f.root.join("file-link-out"),
                f.root.join("link-out/new.txt"),
            ] {
                for intent in [Intent::Read, Intent::Write] {
                    assert!(
                        p.resolve(mode, &path, intent).is_err(),
                        "{mode} {intent:?} followed a link out: {}",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn paths_outside_every_root_are_refused() {
        let f = fixture();
        let p = policy(&f, |_| {});
        let err = p
            .resolve(Mode::Bypass, &f.outside.join("secret.txt"), Intent::Read)
            .unwrap_err();
        assert!(err.reason.contains("outside the roots"), "{err}");
    }

    #[test]
    fn deny_lists_apply_to_the_resolved_path_too() {
        let f = fixture();
        let p = policy(&f, |_| {});
        assert!(
            p.resolve(Mode::Edit, &f.root.join("sub/denied.txt"), Intent::Read)
                .is_err()
        );
        // A link inside the root whose target is denied is refused as well, whether the link
        // is relative or absolute.
        for link in ["alias", "relative-alias"] {
            let err = p
                .resolve(Mode::Edit, &f.root.join(link), Intent::Read)
                .unwrap_err();
            assert!(err.reason.contains("deny list"), "{link}: {err}");
        }
        // An absolute link that stays inside the root resolves to its target.
        let ok = p
            .resolve(Mode::Edit, &f.root.join("absolute-ok"), Intent::Read)
            .unwrap();
        assert_eq!(ok.absolute, f.root.join("sub/file.txt"));
        let err = p
            .check_command(Mode::Edit, &["rm".into(), "-rf".into(), "/".into()], false)
            .unwrap_err();
        assert!(err.reason.contains("deny list"), "{err}");
        assert!(
            p.check_command(Mode::Edit, &["/sbin/shutdown".into()], false)
                .is_err()
        );
    }

    #[test]
    fn allow_lists_restrict_to_their_entries() {
        let f = fixture();
        let p = policy(&f, |c| {
            c.allow_commands = vec!["echo *".into(), "true".into()];
            c.allow_paths = vec![format!("{}/sub/**", f.root.display())];
        });
        assert!(p.check_command(Mode::Edit, &["true".into()], false).is_ok());
        assert!(
            p.check_command(Mode::Edit, &["echo".into(), "hi".into()], false)
                .is_ok()
        );
        assert!(
            p.check_command(Mode::Edit, &["curl".into()], false)
                .is_err()
        );
        assert!(
            p.resolve(Mode::Edit, &f.root.join("sub/file.txt"), Intent::Read)
                .is_ok()
        );
        assert!(
            p.resolve(Mode::Edit, &f.root.join("other.txt"), Intent::Write)
                .is_err()
        );
    }

    #[test]
    fn shell_needs_a_grant_except_in_bypass() {
        let f = fixture();
        let p = policy(&f, |_| {});
        let argv = vec!["echo hi | wc -c".to_string()];
        assert!(p.check_command(Mode::Edit, &argv, true).is_err());
        assert!(p.check_command(Mode::Bypass, &argv, true).is_ok());
        let granted = policy(&f, |c| c.allow_shell = true);
        assert!(granted.check_command(Mode::Edit, &argv, true).is_ok());
    }

    #[test]
    fn disabled_refuses_everything() {
        let f = fixture();
        let p = policy(&f, |_| {});
        for access in [Access::Read, Access::Write, Access::Exec, Access::Admin] {
            assert!(Policy::check_mode(Mode::Disabled, access).is_err());
        }
        assert!(
            p.resolve(Mode::Disabled, &f.root.join("sub/file.txt"), Intent::Read)
                .is_err()
        );
        assert!(
            p.check_command(Mode::Disabled, &["true".into()], false)
                .is_err()
        );
    }

    #[test]
    fn hard_limits_hold_in_bypass() {
        let f = fixture();
        let p = policy(&f, |_| {});
        let err = p
            .resolve(Mode::Bypass, &f.data.join("identity.key"), Intent::Read)
            .unwrap_err();
        assert!(err.reason.contains("hard limit"), "{err}");
        assert!(
            p.resolve(Mode::Bypass, &f.data.join("anything.txt"), Intent::Write)
                .is_err()
        );
        let etc = Policy::new(
            &PolicyConfig {
                roots: vec!["/etc".into()],
                ..Default::default()
            },
            &f.data,
        )
        .unwrap();
        assert!(
            etc.resolve(Mode::Bypass, Path::new("/etc/shadow"), Intent::Write)
                .is_err()
        );
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in ALL_MODES {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }
        assert!("root".parse::<Mode>().is_err());
    }
}
