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
//! - The node's own trust is a hard limit in every mode, `bypass` included: its data dir
//!   (identity, store, backups), its config file and the default `~/.config/remote-agents/`
//!   (where `fleetctl keygen` writes `operator.key`), its operator key file and its service files
//!   (systemd units `remote-agents*.service`, launchd `*remote-agents*` plists, and
//!   `/etc/remote-agents/` where `install --system` keeps its secrets) can be neither
//!   read nor written, and `/etc/shadow*`, `/etc/gshadow*`, `/etc/sudoers*` and `/boot` neither.
//!   Listings and searches leave out the names a read would refuse. Plan-mode commands cannot
//!   read them either: the sandbox hides `Policy::hard_limit_paths` (see `sandbox`).
//! - Checking and using are one step. The gate returns a symlink-free path beneath an open root
//!   descriptor; executors open it one name at a time with `O_NOFOLLOW` (`Resolved::open_*`), so
//!   a directory swapped for a symlink after the check makes the open fail instead of following
//!   it, and writes go through the very parent descriptor that was opened. What was opened is
//!   then judged by its identity (device, inode), not by the name checked a moment earlier.
//! - A deny rule covers a file whatever name reaches it: the (device, inode) pairs of the
//!   hard-limit files and of the existing files under deny globs are collected (refreshed at most
//!   every `IDENTITY_REFRESH`), and an opened file with one of them is refused, so a hard link to
//!   `~/.ssh/id_rsa` or to the identity key inside a root is refused like the file itself. Not
//!   guaranteed: globs with no literal absolute directory in front (`**/secret.txt`) cover names
//!   only, a walk of one glob's directory stops after `IDENTITY_WALK_LIMIT` entries, and a file
//!   created under a denied directory is covered from the next refresh on.
//! - Command allow/deny lists are a guard rail, not a security boundary: a program that is
//!   allowed can itself start any other program or write any file the node's user can write.
//!   They stop honest mistakes; the boundary is the mode (`plan` runs commands only inside a
//!   read-only Landlock sandbox, see `sandbox`, and refuses them where it cannot make one) and
//!   the operating-system user the node runs as.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use globset::{Glob, GlobSet, GlobSetBuilder};
// The built-in hard limits are the same lists the spec's policy tests judge with.
use remote_agents_spec::gate::{HARD_DENY_ANY, HARD_DENY_WRITE, PathVerdict};
use serde::{Deserialize, Serialize};

/// How much a node lets requests do: the spec's mode, one type for the spec, the node's
/// config and the gate. A node without a configured mode runs in
/// [`crate::config::DEFAULT_NODE_MODE`] (`edit`), while a spec host without one is `plan`.
pub use remote_agents_spec::Mode;

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

/// What a request wants to do, and whether a path is read or written: the spec crate's gate
/// types, shared with the fleet repo's policy tests.
pub use remote_agents_spec::gate::{Access, Intent};

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
    /// The policy and mode that approved this path: opening it judges what was opened by them.
    gate: Gate,
}

/// What a `Resolved` needs to judge what its opens reach: the policy (cheap to clone: its glob
/// sets and identity cache are shared) and the mode of the request.
#[derive(Debug, Clone)]
struct Gate {
    policy: Policy,
    mode: Mode,
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
    /// The node's own files and folders given by its caller (config file, operator key), kept
    /// for rebuilds.
    protected: Vec<PathBuf>,
    /// Identities of the files the hard limits and deny lists name, shared by clones.
    identities: Arc<IdentityCache>,
}

/// How long a computed set of denied identities is trusted before it is computed again.
pub const IDENTITY_REFRESH: Duration = Duration::from_secs(1);
/// Entries one glob's directory walk visits at most when collecting denied identities.
pub const IDENTITY_WALK_LIMIT: usize = 4096;

/// (device, inode): what a file is, whichever name reaches it.
pub type Identity = (u64, u64);

/// The identities of the files the hard limits (`hard`) and the deny lists (`listed`) name.
#[derive(Debug, Default)]
struct Identities {
    hard: HashSet<Identity>,
    listed: HashSet<Identity>,
}

/// The last computed `Identities` and when; a policy computes them on first use.
#[derive(Debug, Default)]
struct IdentityCache {
    computed: Mutex<Option<(Instant, Arc<Identities>)>>,
}

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

/// A path as a glob that matches it literally (a `[` or `*` in a folder name stays itself).
fn glob_escape(path: &Path) -> String {
    globset::escape(&path.display().to_string())
}

/// Globs for a file or folder and everything beneath it.
fn folder_globs(path: &Path) -> [String; 2] {
    let escaped = glob_escape(path);
    [format!("{escaped}/**"), escaped]
}

/// The literal folder in front of a glob's first wildcard (`/home/u/.ssh` for
/// `/home/u/.ssh/**`), when it is absolute and not `/` itself: where its files can be found.
fn literal_prefix(glob: &str) -> Option<PathBuf> {
    let mut prefix = PathBuf::new();
    for part in glob.split('/') {
        if part.contains(['*', '?', '[', ']', '{', '}', '\\']) {
            break;
        }
        if part.is_empty() {
            if prefix.as_os_str().is_empty() {
                prefix.push("/");
            }
            continue;
        }
        prefix.push(part);
    }
    (prefix.is_absolute() && prefix != Path::new("/")).then_some(prefix)
}

/// The identities of the existing files `globs` match, found by walking each glob's literal
/// folder (without following symlinked folders, at most `IDENTITY_WALK_LIMIT` entries each).
/// A symlink contributes its target's identity too.
fn collect_identities(globs: &Globs) -> HashSet<Identity> {
    let mut found = HashSet::new();
    let mut walked = HashSet::new();
    for glob in &globs.source {
        let Some(prefix) = literal_prefix(glob) else {
            continue;
        };
        if !walked.insert(prefix.clone()) {
            continue;
        }
        let mut budget = IDENTITY_WALK_LIMIT;
        let mut pending = vec![prefix];
        while let Some(path) = pending.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                let Ok(entries) = std::fs::read_dir(&path) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if budget == 0 {
                        break;
                    }
                    budget -= 1;
                    pending.push(entry.path());
                }
            } else if globs.is_match(&path) {
                found.insert((meta.dev(), meta.ino()));
                if meta.file_type().is_symlink()
                    && let Ok(target) = std::fs::metadata(&path)
                {
                    found.insert((target.dev(), target.ino()));
                }
            }
        }
    }
    found
}

/// Opens the directory `name` in `dir` without following a symlink there.
pub fn open_dir_nofollow(dir: &Dir, name: &OsStr) -> std::io::Result<Dir> {
    use rustix::fs::{Mode as FileMode, OFlags, openat};
    let fd = openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        FileMode::empty(),
    )?;
    Ok(Dir::from_std_file(std::fs::File::from(fd)))
}

/// The names of a symlink-free relative path; `.` has none.
fn names(relative: &Path) -> std::io::Result<Vec<&OsStr>> {
    relative
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a plain path beneath the root",
            )),
        })
        .collect()
}

/// Why opening an approved path failed: the file turned out to be one the gate refuses, or the
/// file system said no (including a symlink met where the check saw none).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Resolved {
    /// The mode the path was approved for.
    pub fn mode(&self) -> Mode {
        self.gate.mode
    }

    /// The policy that approved the path.
    pub fn policy(&self) -> &Policy {
        &self.gate.policy
    }

    /// Opens `names` as folders from the root, one at a time, following no symlink.
    fn walk(&self, names: &[&OsStr]) -> std::io::Result<Dir> {
        // The root is held as a path-only descriptor; a readable one can be listed and synced.
        let mut dir = open_dir_nofollow(&self.root, OsStr::new("."))?;
        for name in names {
            dir = open_dir_nofollow(&dir, name)?;
        }
        Ok(dir)
    }

    /// The approved path as an open folder, reached without following any symlink.
    pub fn open_dir(&self) -> std::io::Result<Dir> {
        self.walk(&names(&self.relative)?)
    }

    /// The folder holding the approved path, reached without following any symlink, and the
    /// path's last name in it: writes create, rename and sync through this descriptor.
    pub fn open_parent(&self) -> std::io::Result<(Dir, OsString)> {
        let names = names(&self.relative)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the root itself has no parent beneath the root",
            ));
        };
        Ok((self.walk(parents)?, last.to_os_string()))
    }

    /// Opens the approved path for reading without following any symlink, and refuses it when
    /// the file opened is, under whatever name, one the gate protects.
    pub fn open_read(&self) -> Result<(std::fs::File, std::fs::Metadata), OpenError> {
        use rustix::fs::{Mode as FileMode, OFlags, openat};
        let names = names(&self.relative)?;
        let file = match names.split_last() {
            None => self.walk(&[])?.into_std_file(),
            Some((last, parents)) => {
                let dir = self.walk(parents)?;
                // NONBLOCK: opening a FIFO must not hang the executor; reads of regular files
                // ignore it.
                std::fs::File::from(
                    openat(
                        &dir,
                        *last,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                        FileMode::empty(),
                    )
                    .map_err(std::io::Error::from)?,
                )
            }
        };
        let metadata = file.metadata()?;
        self.check_opened((metadata.dev(), metadata.ino()))?;
        Ok((file, metadata))
    }

    /// Refuses what was opened when its identity is one the gate protects.
    pub fn check_opened(&self, identity: Identity) -> Result<(), Refusal> {
        self.gate
            .policy
            .check_identity(self.gate.mode, &self.absolute, identity)
    }
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
        Self::build(config, data_dir, &[], home_dir(), None)
    }

    /// A node's policy: like `new`, and `protected` (the node's config file, its operator key
    /// file: files or folders) can be neither read nor written in any mode either.
    pub fn for_node(
        config: &PolicyConfig,
        data_dir: &Path,
        protected: &[PathBuf],
    ) -> Result<Self, PolicyError> {
        Self::build(config, data_dir, protected, home_dir(), None)
    }

    /// A policy for `config` that reuses this one's compiled glob sets where their globs are
    /// unchanged (an apply usually changes one list, if any). It protects the same files.
    pub fn rebuild(&self, config: &PolicyConfig, data_dir: &Path) -> Result<Self, PolicyError> {
        Self::build(
            config,
            data_dir,
            &self.protected.clone(),
            self.home.clone(),
            Some(self),
        )
    }

    /// The node's own files beneath `home` that no mode may read or write: the default config
    /// folder (config file, `operator.key`) and its service files.
    fn own_files_globs(home: &Path) -> Vec<String> {
        let mut config_homes = vec![home.join(".config")];
        if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
            config_homes.push(PathBuf::from(xdg));
        }
        let mut globs = Vec::new();
        for config_home in config_homes {
            globs.extend(folder_globs(&config_home.join("remote-agents")));
            globs.push(format!(
                "{}/remote-agents*.service",
                glob_escape(&config_home.join("systemd/user"))
            ));
        }
        globs.push(format!(
            "{}/*remote-agents*",
            glob_escape(&home.join("Library/LaunchAgents"))
        ));
        globs
    }

    fn build(
        config: &PolicyConfig,
        data_dir: &Path,
        protected: &[PathBuf],
        home: PathBuf,
        previous: Option<&Policy>,
    ) -> Result<Self, PolicyError> {
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
        let hard_write: Vec<String> = HARD_DENY_WRITE.iter().map(|s| s.to_string()).collect();
        // The whole data dir (identity, store, backups) and the node's own files are neither
        // readable nor writable, each under the spelling it was given and its real path.
        let mut hard_any: Vec<String> = HARD_DENY_ANY.iter().map(|s| s.to_string()).collect();
        hard_any.extend(folder_globs(&data_dir));
        for path in protected {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let real = std::fs::canonicalize(&absolute).unwrap_or_else(|_| absolute.clone());
            hard_any.extend(folder_globs(&absolute));
            if real != absolute {
                hard_any.extend(folder_globs(&real));
            }
        }
        hard_any.extend(Self::own_files_globs(&home));
        if let Ok(real_home) = std::fs::canonicalize(&home)
            && real_home != home
        {
            hard_any.extend(Self::own_files_globs(&real_home));
        }
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
            protected: protected.to_vec(),
            identities: Arc::default(),
        })
    }

    /// The command deny list's globs as configured (an AI CLI's task gets them as its own
    /// disallowed commands where the provider has such a list).
    pub fn deny_command_globs(&self) -> &[String] {
        &self.deny_commands.source
    }

    /// The path deny list's globs as configured.
    pub fn deny_path_globs(&self) -> &[String] {
        &self.deny_paths.source
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Whether `mode` lets a request with this access through at all.
    pub fn check_mode(mode: Mode, access: Access) -> Result<(), Refusal> {
        match remote_agents_spec::gate::mode_refusal(mode, access) {
            Some(reason) => Err(Refusal::new(reason)),
            None => Ok(()),
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
            gate: Gate {
                policy: self.clone(),
                mode,
            },
        })
    }

    /// For `write_file` with `create_dirs`: the nearest existing ancestor of `path` beneath a
    /// root, and the folders to make beneath it. Everything is decided here, before any folder
    /// exists: the file and every folder to make must pass the hard limits and the deny list
    /// (the file the allow list too), so a refused write leaves nothing behind.
    pub fn resolve_create(&self, mode: Mode, path: &Path) -> Result<(Resolved, PathBuf), Refusal> {
        Self::check_mode(mode, Access::Write)?;
        let requested = self.absolute(path);
        let first = match self.resolve(mode, &requested, Intent::Write) {
            Ok(_) => {
                return Err(Refusal::new(format!(
                    "{} needs no folders made",
                    requested.display()
                )));
            }
            Err(refusal) => refusal,
        };
        if requested
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(first);
        }
        let (Some(parent), Some(name)) = (requested.parent(), requested.file_name()) else {
            return Err(first);
        };
        for ancestor in parent.ancestors() {
            // A write may name a file that does not exist yet; the ancestor must be a folder
            // that does.
            let Ok(resolved) = self.resolve(mode, ancestor, Intent::Write) else {
                continue;
            };
            if resolved.open_dir().is_err() {
                continue;
            }
            let Ok(missing) = parent.strip_prefix(ancestor) else {
                return Err(first);
            };
            let mut planned = resolved.absolute.clone();
            let mut spelled = ancestor.to_path_buf();
            for folder in missing.components() {
                planned.push(folder);
                spelled.push(folder);
                self.check_path_lists_except_allow(mode, &spelled, &planned)?;
            }
            planned.push(name);
            self.check_path_lists(mode, &requested, &planned, Intent::Write)?;
            return Ok((resolved, missing.to_path_buf()));
        }
        Err(first)
    }

    /// The hard limits and the deny list for a folder about to be made on the way to a file;
    /// the allow list names files and is checked on the file.
    fn check_path_lists_except_allow(
        &self,
        mode: Mode,
        requested: &Path,
        planned: &Path,
    ) -> Result<(), Refusal> {
        for candidate in [requested, planned] {
            if self.hard_deny_any.is_match(candidate) || self.hard_deny_write.is_match(candidate) {
                return Err(Refusal::new(format!(
                    "{} is protected by a built-in hard limit (system credentials or this node's \
                     own state): no folder is made there in any mode",
                    candidate.display()
                )));
            }
            if mode != Mode::Bypass && self.deny_paths.is_match(candidate) {
                return Err(Refusal::new(format!(
                    "{} matches this node's path deny list: no folder is made there",
                    candidate.display()
                )));
            }
        }
        Ok(())
    }

    /// Whether a name in a listing of an approved folder is left out: the hard limits (in every
    /// mode) and the deny list (except in bypass) hide names as they refuse reads, so listing
    /// `~/.ssh` under `~/.ssh/**` shows nothing of what it holds. The allow list is not applied
    /// here: the folder itself passed it.
    pub fn entry_hidden(&self, mode: Mode, path: &Path, identity: Option<Identity>) -> bool {
        self.hard_deny_any.is_match(path)
            || (mode != Mode::Bypass && self.deny_paths.is_match(path))
            || identity.is_some_and(|id| self.identity_refusal(mode, id).is_some())
    }

    /// Why a file with this identity may not be opened in `mode`, if it may not.
    fn identity_refusal(&self, mode: Mode, identity: Identity) -> Option<&'static str> {
        let identities = self.identities();
        if identities.hard.contains(&identity) {
            Some("a built-in hard limit (system credentials or this node's own state)")
        } else if mode != Mode::Bypass && identities.listed.contains(&identity) {
            Some("this node's path deny list")
        } else {
            None
        }
    }

    /// Refuses an opened file that is, under whatever name, a file the hard limits or the deny
    /// list name.
    pub fn check_identity(
        &self,
        mode: Mode,
        shown: &Path,
        identity: Identity,
    ) -> Result<(), Refusal> {
        match self.identity_refusal(mode, identity) {
            Some(why) => Err(Refusal::new(format!(
                "{} is another name (a hard link) for a file protected by {why}, and is refused \
                 like the file itself",
                shown.display()
            ))),
            None => Ok(()),
        }
    }

    /// The denied identities, computed again when older than `IDENTITY_REFRESH`.
    fn identities(&self) -> Arc<Identities> {
        let mut computed = self
            .identities
            .computed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((at, identities)) = computed.as_ref()
            && at.elapsed() < IDENTITY_REFRESH
        {
            return identities.clone();
        }
        let identities = Arc::new(Identities {
            hard: collect_identities(&self.hard_deny_any),
            listed: collect_identities(&self.deny_paths),
        });
        *computed = Some((Instant::now(), identities.clone()));
        identities
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
        let lists = remote_agents_spec::gate::PathLists {
            hard_deny_any: &self.hard_deny_any,
            hard_deny_write: &self.hard_deny_write,
            deny: &self.deny_paths,
            allow: self.allow_paths.as_deref(),
        };
        match lists.judge(mode, requested, resolved, intent) {
            PathVerdict::Allowed => Ok(()),
            PathVerdict::HardLimit { path } => Err(Refusal::new(format!(
                "{} is protected by a built-in hard limit (system credentials or this node's \
                 own state) and cannot be {} in any mode",
                path.display(),
                if intent == Intent::Write {
                    "written"
                } else {
                    "read"
                }
            ))),
            PathVerdict::Denied { path, .. } => Err(Refusal::new(format!(
                "{} matches this node's path deny list",
                path.display()
            ))),
            PathVerdict::NotAllowed => Err(Refusal::new(format!(
                "{} is not on this node's path allow list",
                resolved.display()
            ))),
        }
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

    /// The existing files and folders the read hard limits name, in their real (canonical)
    /// form: the data dir, the node's config and operator key files, the default config
    /// folders, the node's service files and the system credentials. The plan-mode sandbox
    /// hides them from commands. A glob with a wildcard counts by the entries of its literal
    /// folder it matches (one listing each, e.g. `/etc/systemd/system`); `folder/**` globs
    /// are covered by their folder.
    pub fn hard_limit_paths(&self) -> Vec<PathBuf> {
        let mut candidates: Vec<PathBuf> = vec![self.data_dir.clone()];
        candidates.extend(self.protected.iter().cloned());
        for glob in &self.hard_deny_any.source {
            if glob.ends_with("/**") {
                continue;
            }
            let Some(prefix) = literal_prefix(glob) else {
                continue;
            };
            if !glob.contains(['*', '?', '[', ']', '{', '}', '\\']) {
                candidates.push(prefix);
            } else if let Ok(entries) = std::fs::read_dir(&prefix) {
                candidates.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| self.hard_deny_any.is_match(p)),
                );
            }
        }
        let mut real: Vec<PathBuf> = candidates
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        real.sort();
        real.dedup();
        real
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

    /// The node's own files beneath a fake home and elsewhere, for the trust tests.
    struct OwnFiles {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        home: PathBuf,
        data: PathBuf,
        config: PathBuf,
        operator_key: PathBuf,
    }

    fn own_files() -> OwnFiles {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let home = root.join("home");
        let data = home.join(".local/share/remote-agents");
        let config = root.join("etc/remote-agents/node.toml");
        let operator_key = root.join("keys/ops.key");
        for (path, text) in [
            (&data.join("identity.key"), "identity"),
            (&config, "mode = \"edit\""),
            (&operator_key, "operator"),
            (&home.join(".config/remote-agents/config.toml"), "x"),
            (&home.join(".config/remote-agents/operator.key"), "key"),
            (
                &home.join(".config/systemd/user/remote-agents.service"),
                "[Unit]",
            ),
            (
                &home.join("Library/LaunchAgents/dev.remote-agents.node.plist"),
                "<plist/>",
            ),
            (&home.join(".ssh/id_rsa"), "SECRET"),
            (&home.join("proj/readme.txt"), "hello"),
        ] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        OwnFiles {
            _tmp: tmp,
            root,
            home,
            data,
            config,
            operator_key,
        }
    }

    fn node_policy(f: &OwnFiles) -> Policy {
        Policy::build(
            &PolicyConfig {
                roots: vec![f.root.clone()],
                deny_paths: vec!["~/.ssh/**".into()],
                ..Default::default()
            },
            &f.data,
            &[f.config.clone(), f.operator_key.clone()],
            f.home.clone(),
            None,
        )
        .unwrap()
    }

    /// The plan-mode sandbox hides what `hard_limit_paths` names: every existing file or folder
    /// of the node's own (config, operator key, data dir, config folder, service files).
    #[test]
    fn hard_limit_paths_name_the_nodes_own_existing_files() {
        let f = own_files();
        let paths = node_policy(&f).hard_limit_paths();
        for own in [
            f.data.clone(),
            f.config.clone(),
            f.operator_key.clone(),
            f.home.join(".config/remote-agents"),
            f.home.join(".config/systemd/user/remote-agents.service"),
            f.home
                .join("Library/LaunchAgents/dev.remote-agents.node.plist"),
        ] {
            assert!(
                paths.contains(&own),
                "{} missing from {paths:?}",
                own.display()
            );
        }
        assert!(!paths.contains(&f.home.join("proj")), "{paths:?}");
        assert!(paths.iter().all(|p| p.exists() && p.is_absolute()));
    }

    /// A write-only operator rewrote the node's config.toml (`mode = "bypass"`, itself as
    /// operator) and a read-only one read `~/.config/remote-agents/operator.key`: the node's
    /// config (as loaded and the default folder), data dir, operator keys and service files are
    /// now refused for reading and writing in every mode, bypass included.
    #[test]
    fn the_nodes_own_files_are_neither_readable_nor_writable_in_any_mode() {
        let f = own_files();
        let p = node_policy(&f);
        let own = [
            f.config.clone(),
            f.operator_key.clone(),
            f.data.clone(),
            f.data.join("identity.key"),
            f.home.join(".config/remote-agents/config.toml"),
            f.home.join(".config/remote-agents/operator.key"),
            f.home.join(".config/systemd/user/remote-agents.service"),
            f.home
                .join("Library/LaunchAgents/dev.remote-agents.node.plist"),
        ];
        for mode in [Mode::Plan, Mode::Edit, Mode::Bypass] {
            for path in &own {
                for intent in [Intent::Read, Intent::Write] {
                    let refused = p.resolve(mode, path, intent);
                    assert!(
                        matches!(&refused, Err(r) if r.reason.contains("hard limit")
                            || (mode == Mode::Plan && intent == Intent::Write)),
                        "{mode} {intent:?} {}: {refused:?}",
                        path.display()
                    );
                }
            }
        }
        // New files in the protected folders cannot be made either.
        for path in [
            f.data.join("new.txt"),
            f.home.join(".config/remote-agents/new.toml"),
        ] {
            let refused = p.resolve(Mode::Bypass, &path, Intent::Write);
            assert!(
                matches!(&refused, Err(r) if r.reason.contains("hard limit")),
                "{}: {refused:?}",
                path.display()
            );
        }
        // A rebuilt policy (after an apply) protects the same files.
        let rebuilt = p
            .rebuild(
                &PolicyConfig {
                    roots: vec![f.root.clone()],
                    ..Default::default()
                },
                &f.data,
            )
            .unwrap();
        assert!(
            rebuilt
                .resolve(Mode::Bypass, &f.config, Intent::Write)
                .is_err()
        );
        // Other files in the same folders stay reachable.
        assert!(
            p.resolve(Mode::Edit, &f.home.join("proj/readme.txt"), Intent::Read)
                .is_ok()
        );
    }

    /// In bypass mode `/etc/shadow-`, `/etc/gshadow` and `/etc/gshadow-` were readable, and
    /// reads and listings of `/etc/sudoers`, `/boot` and the data dir passed.
    #[test]
    fn hard_limits_cover_shadow_backups_sudoers_boot_and_the_data_dir() {
        let f = fixture();
        let p = policy(&f, |c| c.roots = vec!["/etc".into(), "/boot".into()]);
        for path in [
            "/etc/shadow",
            "/etc/shadow-",
            "/etc/gshadow",
            "/etc/gshadow-",
            "/etc/sudoers",
            "/etc/sudoers.d",
            "/etc/sudoers.d/90-admins",
            "/boot",
            "/boot/vmlinuz",
            "/etc/remote-agents",
            "/etc/remote-agents/service.env",
        ] {
            let path = Path::new(path);
            let refused = p.check_path_lists(Mode::Bypass, path, path, Intent::Read);
            assert!(
                matches!(&refused, Err(r) if r.reason.contains("hard limit")),
                "{}: {refused:?}",
                path.display()
            );
            // Where the file exists here, the whole gate refuses it too.
            if path.exists() {
                assert!(p.resolve(Mode::Bypass, path, Intent::Read).is_err());
            }
        }
        let data = policy(&f, |_| {});
        for path in [f.data.clone(), f.data.join("identity.key")] {
            let refused = data.resolve(Mode::Bypass, &path, Intent::Read);
            assert!(
                matches!(&refused, Err(r) if r.reason.contains("hard limit")),
                "{}: {refused:?}",
                path.display()
            );
        }
    }

    /// A refused `write_file` with `create_dirs` still created the folders (in
    /// `/etc/sudoers.d`, `/boot`, `~/.ssh`): the gate now decides on every folder and the file
    /// before anything is made.
    #[test]
    fn create_dirs_is_decided_on_the_file_and_every_folder_first() {
        let f = own_files();
        let p = node_policy(&f);
        for (mode, path) in [
            (Mode::Edit, f.home.join(".ssh/new/authorized_keys")),
            (Mode::Edit, f.home.join(".ssh/authorized_keys")),
            (Mode::Bypass, f.data.join("new/file")),
            (
                Mode::Bypass,
                f.home.join(".config/remote-agents/sub/config.toml"),
            ),
        ] {
            let refused = p.resolve_create(mode, &path);
            assert!(refused.is_err(), "{mode} {}", path.display());
        }
        let etc = Policy::new(
            &PolicyConfig {
                roots: vec!["/etc".into(), "/".into()],
                ..Default::default()
            },
            &f.data,
        )
        .unwrap();
        for path in ["/etc/sudoers.d/new/x", "/boot/new/x"] {
            assert!(
                etc.resolve_create(Mode::Bypass, Path::new(path)).is_err(),
                "{path}"
            );
        }
        let (ancestor, missing) = p
            .resolve_create(Mode::Edit, &f.home.join("proj/a/b/c.txt"))
            .unwrap();
        assert_eq!(ancestor.absolute, f.home.join("proj"));
        assert_eq!(missing, Path::new("a/b"));
    }

    /// Hard links to `~/.ssh/id_rsa` and to the identity key were read in plan and edit mode:
    /// a deny rule now covers a file whatever name reaches it.
    #[test]
    fn a_hard_link_to_a_denied_file_is_refused_whatever_its_name() {
        let f = own_files();
        let links = f.home.join("proj/links");
        std::fs::create_dir_all(&links).unwrap();
        std::fs::hard_link(f.home.join(".ssh/id_rsa"), links.join("notes.txt")).unwrap();
        std::fs::hard_link(f.data.join("identity.key"), links.join("id.txt")).unwrap();
        std::fs::hard_link(&f.config, links.join("cfg.txt")).unwrap();
        let p = node_policy(&f);
        for mode in [Mode::Plan, Mode::Edit, Mode::Bypass] {
            for (name, hard) in [("notes.txt", false), ("id.txt", true), ("cfg.txt", true)] {
                let resolved = p.resolve(mode, &links.join(name), Intent::Read).unwrap();
                let opened = resolved.open_read();
                if hard || mode != Mode::Bypass {
                    assert!(
                        matches!(&opened, Err(OpenError::Refused(_))),
                        "{mode} {name}: {opened:?}"
                    );
                } else {
                    // The deny list does not apply in bypass; the hard limits do.
                    assert!(opened.is_ok(), "{mode} {name}: {opened:?}");
                }
            }
        }
        // An ordinary file next to them opens.
        let readme = p
            .resolve(Mode::Plan, &f.home.join("proj/readme.txt"), Intent::Read)
            .unwrap();
        assert!(readme.open_read().is_ok());
    }

    /// Listings of `~/.ssh` (under a deny glob) and of a folder holding the data dir showed
    /// the names they hold; hidden names are now left out.
    #[test]
    fn listings_hide_what_a_read_would_refuse() {
        let f = own_files();
        let p = node_policy(&f);
        let ssh = f.home.join(".ssh");
        assert!(p.entry_hidden(Mode::Edit, &ssh.join("id_rsa"), None));
        assert!(!p.entry_hidden(Mode::Bypass, &ssh.join("id_rsa"), None));
        assert!(p.entry_hidden(Mode::Bypass, &f.data, None));
        assert!(p.entry_hidden(Mode::Bypass, &f.home.join(".config/remote-agents"), None));
        assert!(!p.entry_hidden(Mode::Edit, &f.home.join("proj"), None));
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in ALL_MODES {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }
        assert!("root".parse::<Mode>().is_err());
    }
}
