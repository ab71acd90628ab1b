//! File executors: `read_file`, `write_file`, `list_dir`, `file_stat`. Every call works on a
//! `policy::Resolved` (an open root descriptor plus a path inside it), so nothing here can reach
//! outside the root the gate chose. Paths are opened one name at a time without following
//! symlinks (`Resolved::open_*`), and what was opened is judged by its identity, so swapping a
//! folder for a symlink after the check, or a hard link to a protected file, reaches nothing.
//! Writes are atomic and go through the parent descriptor that was opened: temp file → fsync →
//! rename within that folder → fsync the folder.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use cap_std::fs::{Metadata, MetadataExt as _, OpenOptions};

use crate::policy::{OpenError, Resolved};
use remote_agents_ops::{
    DirEntry, Encoding, FileKind, FileStatResult, ListDirResult, ReadFileResult, WriteFileResult,
};

/// Largest read returned in one call.
pub const MAX_READ: u64 = 8 * 1024 * 1024;

/// Errors of the file executors; messages name the path and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is a directory; use list_dir")]
    IsDir(String),
    #[error("{0} is not a directory; use file_stat or read_file")]
    NotDir(String),
    #[error("content is not valid base64: {0}")]
    Base64(String),
    /// What was opened is a file the gate protects (e.g. a hard link to one).
    #[error("{0}")]
    Refused(String),
    /// The file is not what the caller expected (it changed since the caller looked).
    #[error("{0}")]
    Changed(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn opened(path: &Path) -> impl Fn(OpenError) -> FsError + '_ {
    move |e| match e {
        OpenError::Refused(refusal) => FsError::Refused(refusal.reason),
        OpenError::Io(source) => io(path)(source),
    }
}

fn kind_of(meta: &Metadata) -> FileKind {
    let ft = meta.file_type();
    if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

fn modified_ms(meta: &Metadata) -> Option<u64> {
    meta.modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
}

/// Reads up to `length` bytes from `offset`; UTF-8 text comes back as is, anything else as base64.
pub fn read_file(
    target: &Resolved,
    offset: u64,
    length: Option<u64>,
) -> Result<ReadFileResult, FsError> {
    let err = io(&target.absolute);
    let shown = target.absolute.display().to_string();
    let (mut file, meta) = target.open_read().map_err(opened(&target.absolute))?;
    if meta.is_dir() {
        return Err(FsError::IsDir(shown));
    }
    let size = meta.len();
    let want = length.unwrap_or(MAX_READ).min(MAX_READ);
    file.seek(SeekFrom::Start(offset)).map_err(&err)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(want)
        .read_to_end(&mut bytes)
        .map_err(&err)?;
    let (encoding, content) = match String::from_utf8(bytes) {
        Ok(text) => (Encoding::Utf8, text),
        Err(e) => (
            Encoding::Base64,
            base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
        ),
    };
    let length = match encoding {
        Encoding::Utf8 => content.len() as u64,
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(&content)
            .map(|b| b.len() as u64)
            .unwrap_or(0),
    };
    Ok(ReadFileResult {
        path: shown,
        size,
        offset,
        length,
        encoding,
        content,
        eof: offset + length >= size,
    })
}

/// Decodes write content.
pub fn decode(content: &str, encoding: Encoding) -> Result<Vec<u8>, FsError> {
    match encoding {
        Encoding::Utf8 => Ok(content.as_bytes().to_vec()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|e| FsError::Base64(e.to_string())),
    }
}

/// The previous content of a file that is about to be replaced, for a backup.
pub fn previous_content(target: &Resolved) -> Result<Option<Vec<u8>>, FsError> {
    let (mut file, meta) = match target.open_read() {
        Ok(opened) => opened,
        Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(opened(&target.absolute)(e)),
    };
    if meta.is_dir() {
        return Err(FsError::IsDir(target.absolute.display().to_string()));
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(&target.absolute))?;
    Ok(Some(bytes))
}

/// Replaces the file atomically: a reader sees the old or the new content, never a mix, and
/// after a crash the file is the old or the new one, never torn. The folder is the one the
/// gate's path reaches without symlinks, and a file already there that the gate protects (a
/// hard link to one) is refused rather than replaced.
pub fn write_atomic(target: &Resolved, bytes: &[u8]) -> Result<u64, FsError> {
    let err = io(&target.absolute);
    let (dir, name) = target.open_parent().map_err(&err)?;
    let previous = match dir.symlink_metadata(&name) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(e)),
    };
    if let Some(meta) = &previous {
        target
            .check_opened((meta.dev(), meta.ino()))
            .map_err(|r| FsError::Refused(r.reason))?;
    }
    let previous_permissions = previous.filter(|m| m.is_file()).map(|m| m.permissions());
    let temp = format!("{}{}", temp_prefix(&name), uuid::Uuid::new_v4().simple());
    let result = (|| {
        let mut file = dir
            .open_with(&temp, OpenOptions::new().write(true).create_new(true))
            .map_err(&err)?;
        file.write_all(bytes).map_err(&err)?;
        if let Some(perms) = previous_permissions {
            file.set_permissions(perms).map_err(&err)?;
        }
        file.sync_all().map_err(&err)?;
        drop(file);
        dir.rename(&temp, &dir, &name).map_err(&err)?;
        // The rename is durable only once the directory itself is synced.
        // cap-std holds directories as O_PATH descriptors, which cannot be synced; open the
        // directory itself for reading to get one that can.
        dir.open_with(".", OpenOptions::new().read(true))
            .map_err(&err)?
            .sync_all()
            .map_err(&err)?;
        Ok(bytes.len() as u64)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp);
    }
    result
}

/// Removes the regular file `target`, only while it has the `expect`ed size and modification
/// time (milliseconds), first streaming it into `backups_dir` when given (edit mode). The name
/// removed is checked to be the file opened and judged (same device and inode), so a file
/// swapped in between is not removed instead. Returns its size and the backup's path.
pub fn remove_file(
    target: &Resolved,
    expect_size: Option<u64>,
    expect_modified_ms: Option<u64>,
    backups_dir: Option<&Path>,
) -> Result<(u64, Option<PathBuf>), FsError> {
    use std::os::unix::fs::MetadataExt as _;
    let err = io(&target.absolute);
    let shown = target.absolute.display().to_string();
    let (mut file, meta) = target.open_read().map_err(opened(&target.absolute))?;
    if meta.is_dir() {
        return Err(FsError::Refused(format!(
            "{shown} is a directory; file_remove removes files only"
        )));
    }
    if !meta.is_file() {
        return Err(FsError::Refused(format!("{shown} is not a regular file")));
    }
    if let Some(size) = expect_size.filter(|&size| size != meta.len()) {
        return Err(FsError::Changed(format!(
            "{shown} is {} bytes, not the {size} expected: it changed, so it was not removed",
            meta.len()
        )));
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    if let Some(expected) = expect_modified_ms.filter(|&ms| Some(ms) != modified) {
        return Err(FsError::Changed(format!(
            "{shown} was modified at {} ms, not {expected} ms as expected: it changed, so it was \
             not removed",
            modified.map_or_else(|| "an unknown time".to_string(), |ms| ms.to_string())
        )));
    }
    let backup = match backups_dir {
        Some(dir) => Some(write_backup(dir, &target.absolute, &mut file)?),
        None => None,
    };
    let (dir, name) = target.open_parent().map_err(&err)?;
    let present = dir.symlink_metadata(&name).map_err(&err)?;
    if (present.dev(), present.ino()) != (meta.dev(), meta.ino()) {
        return Err(FsError::Changed(format!(
            "{shown} was replaced while it was being removed; nothing was removed"
        )));
    }
    dir.remove_file(&name).map_err(&err)?;
    // The removal is durable only once the directory itself is synced (see write_atomic).
    dir.open_with(".", OpenOptions::new().read(true))
        .map_err(&err)?
        .sync_all()
        .map_err(&err)?;
    Ok((meta.len(), backup))
}

/// The start of the name of `write_atomic`'s temp file for `name`; a random 32-hex suffix follows.
fn temp_prefix(name: &std::ffi::OsStr) -> String {
    format!(".{}.ra-tmp-", name.to_string_lossy())
}

/// Removes the temp files `write_atomic` left beside `target` when the node stopped mid-write
/// (the node calls it at start for the writes its journal says were interrupted); returns how
/// many it removed. Only regular files named exactly as `write_atomic` names them go.
pub fn remove_interrupted_temps(target: &Resolved) -> Result<usize, FsError> {
    let err = io(&target.absolute);
    let (dir, name) = target.open_parent().map_err(&err)?;
    let prefix = temp_prefix(&name);
    let mut removed = 0;
    for entry in dir.entries().map_err(&err)? {
        let entry = entry.map_err(&err)?;
        let file_name = entry.file_name();
        let is_temp = file_name
            .to_string_lossy()
            .strip_prefix(&prefix)
            .is_some_and(|suffix| {
                suffix.len() == 32 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
            });
        if is_temp && entry.file_type().map_err(&err)?.is_file() {
            dir.remove_file(&file_name).map_err(&err)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes a backup copy (durably) into `backups_dir`, which is the node's own data directory.
pub fn write_backup(
    backups_dir: &Path,
    original: &Path,
    source: &mut dyn Read,
) -> Result<PathBuf, FsError> {
    let err = io(backups_dir);
    std::fs::create_dir_all(backups_dir).map_err(&err)?;
    let name = original
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let path = backups_dir.join(format!(
        "{}-{}-{}",
        crate::journal::now_ms(),
        uuid::Uuid::new_v4().simple(),
        name
    ));
    let mut file = std::fs::File::create(&path).map_err(&err)?;
    // Streamed: a file removed in edit mode may be far larger than memory.
    if let Err(error) = std::io::copy(source, &mut file).and_then(|_| file.sync_all()) {
        let _ = std::fs::remove_file(&path);
        return Err(err(error));
    }
    std::fs::File::open(backups_dir)
        .and_then(|d| d.sync_all())
        .map_err(&err)?;
    Ok(path)
}

/// The result of a write.
pub fn write_result(target: &Resolved, written: u64, backup: Option<PathBuf>) -> WriteFileResult {
    WriteFileResult {
        path: target.absolute.display().to_string(),
        bytes_written: written,
        backup: backup.map(|p| p.display().to_string()),
    }
}

/// Creates `missing` folder by folder beneath the approved `ancestor`, each one opened without
/// following symlinks before the next is made in it.
pub fn create_dirs(ancestor: &Resolved, missing: &Path) -> Result<(), FsError> {
    let shown = ancestor.absolute.join(missing);
    let err = io(&shown);
    let mut dir = ancestor.open_dir().map_err(&err)?;
    for part in missing.components() {
        let std::path::Component::Normal(name) = part else {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "folders to make must be plain names",
            )));
        };
        match dir.create_dir(name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        dir = crate::policy::open_dir_nofollow(&dir, name).map_err(&err)?;
    }
    Ok(())
}

/// Lists a directory, sorted by name; symlinks are reported as such, not followed. Names the
/// gate would refuse to read (hard limits, the deny list, hard links to protected files) are
/// left out.
pub fn list_dir(target: &Resolved) -> Result<ListDirResult, FsError> {
    let err = io(&target.absolute);
    let dir = match target.open_dir() {
        Ok(dir) => dir,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            return Err(FsError::NotDir(target.absolute.display().to_string()));
        }
        Err(e) => return Err(err(e)),
    };
    let policy = target.policy();
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(&err)? {
        let entry = entry.map_err(&err)?;
        let meta = entry.metadata().map_err(&err)?;
        let identity = (!meta.is_dir()).then(|| (meta.dev(), meta.ino()));
        if policy.entry_hidden(
            target.mode(),
            &target.absolute.join(entry.file_name()),
            identity,
        ) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = if entry.file_type().map_err(&err)?.is_symlink() {
            FileKind::Symlink
        } else {
            kind_of(&meta)
        };
        entries.push(DirEntry {
            name,
            kind,
            size: meta.len(),
            modified_ms: modified_ms(&meta),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ListDirResult {
        path: target.absolute.display().to_string(),
        entries,
    })
}

/// Stats a path; `requested` is the caller's spelling, reported as a link when it differs from
/// the resolved path.
pub fn file_stat(target: &Resolved, requested: &Path) -> Result<FileStatResult, FsError> {
    use cap_std::fs::PermissionsExt;
    let err = io(&target.absolute);
    let meta = if target.relative == Path::new(".") {
        target
            .open_dir()
            .map_err(&err)?
            .dir_metadata()
            .map_err(&err)?
    } else {
        let (dir, name) = target.open_parent().map_err(&err)?;
        dir.symlink_metadata(&name).map_err(&err)?
    };
    if !meta.is_dir() {
        target
            .check_opened((meta.dev(), meta.ino()))
            .map_err(|r| FsError::Refused(r.reason))?;
    }
    Ok(FileStatResult {
        path: requested.display().to_string(),
        kind: kind_of(&meta),
        size: meta.len(),
        mode: format!("{:o}", meta.permissions().mode() & 0o7777),
        modified_ms: modified_ms(&meta),
        symlink_target: (requested != target.absolute)
            .then(|| target.absolute.display().to_string()),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::{Intent, Mode, Policy, PolicyConfig};

    /// A temp root the policy allows, with the node's data dir inside it.
    pub(crate) fn setup() -> (tempfile::TempDir, PathBuf, Policy) {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let data = root.join(".data");
        std::fs::create_dir_all(&data).unwrap();
        let policy = Policy::new(
            &PolicyConfig {
                roots: vec![root.clone()],
                ..Default::default()
            },
            &data,
        )
        .unwrap();
        (tmp, root, policy)
    }

    #[test]
    fn write_then_read_round_trips_text_and_binary() {
        let (_t, root, p) = setup();
        let path = root.join("a.txt");
        let target = p.resolve(Mode::Edit, &path, Intent::Write).unwrap();
        write_atomic(&target, b"hello").unwrap();
        let target = p.resolve(Mode::Plan, &path, Intent::Read).unwrap();
        let read = read_file(&target, 0, None).unwrap();
        assert_eq!(read.content, "hello");
        assert_eq!(read.encoding, Encoding::Utf8);
        assert!(read.eof);
        let part = read_file(&target, 1, Some(3)).unwrap();
        assert_eq!(part.content, "ell");
        assert!(!part.eof);

        let bin = root.join("b.bin");
        let target = p.resolve(Mode::Edit, &bin, Intent::Write).unwrap();
        write_atomic(&target, &[0, 159, 146, 150, 255]).unwrap();
        let read = read_file(&p.resolve(Mode::Edit, &bin, Intent::Read).unwrap(), 0, None).unwrap();
        assert_eq!(read.encoding, Encoding::Base64);
        assert_eq!(
            decode(&read.content, Encoding::Base64).unwrap(),
            vec![0, 159, 146, 150, 255]
        );
        assert_eq!(read.length, 5);
    }

    #[test]
    fn atomic_write_keeps_permissions_and_leaves_no_temp_files() {
        use std::os::unix::fs::PermissionsExt;
        let (_t, root, p) = setup();
        let path = root.join("script.sh");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
        let target = p.resolve(Mode::Edit, &path, Intent::Write).unwrap();
        assert_eq!(previous_content(&target).unwrap().unwrap(), b"old");
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o750
        );
        let leftovers: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("ra-tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn list_and_stat_report_kinds_without_following_links() {
        let (_t, root, p) = setup();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("f", root.join("d/l")).unwrap();
        let listing = list_dir(
            &p.resolve(Mode::Plan, &root.join("d"), Intent::Read)
                .unwrap(),
        )
        .unwrap();
        let kinds: Vec<_> = listing
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind.clone()))
            .collect();
        assert_eq!(kinds, vec![("f", FileKind::File), ("l", FileKind::Symlink)]);
        let link = root.join("d/l");
        let stat = file_stat(&p.resolve(Mode::Plan, &link, Intent::Read).unwrap(), &link).unwrap();
        assert_eq!(stat.kind, FileKind::File);
        assert_eq!(
            stat.symlink_target.as_deref(),
            Some(root.join("d/f").to_str().unwrap())
        );
        assert!(
            list_dir(
                &p.resolve(Mode::Plan, &root.join("d/f"), Intent::Read)
                    .unwrap()
            )
            .is_err()
        );
    }

    /// A tree with a secret under a denied folder and a folder `proj/x` that a thread keeps
    /// exchanging with `proj/link-x`, a symlink to that denied folder.
    struct Swapping {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        policy: Policy,
    }

    fn swapping() -> Swapping {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join(".ssh")).unwrap();
        std::fs::write(root.join(".ssh/id_rsa"), "SECRET").unwrap();
        std::fs::write(root.join(".ssh/authorized_keys"), "ORIGINAL").unwrap();
        std::fs::create_dir_all(root.join("proj/x")).unwrap();
        std::fs::write(root.join("proj/x/id_rsa"), "public").unwrap();
        std::fs::write(root.join("proj/x/authorized_keys"), "public").unwrap();
        std::os::unix::fs::symlink("../.ssh", root.join("proj/link-x")).unwrap();
        let data = root.join(".data");
        std::fs::create_dir_all(&data).unwrap();
        let policy = Policy::new(
            &PolicyConfig {
                roots: vec![root.clone()],
                deny_paths: vec![format!("{}/.ssh/**", root.display())],
                ..Default::default()
            },
            &data,
        )
        .unwrap();
        Swapping {
            _tmp: tmp,
            root,
            policy,
        }
    }

    /// Swaps two names atomically, so both always exist (`renameat2(RENAME_EXCHANGE)`).
    pub(crate) fn exchange(a: &Path, b: &Path) {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).unwrap();
    }

    /// Runs `attempt` `times` times while a thread swaps `proj/x` between the real folder and
    /// the symlink to `.ssh`; returns how many attempts reported `true`.
    fn while_swapping(s: &Swapping, times: usize, mut attempt: impl FnMut(&Path) -> bool) -> usize {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let proj = s.root.join("proj");
        let swapper = {
            let stop = stop.clone();
            let proj = proj.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    exchange(&proj.join("x"), &proj.join("link-x"));
                }
            })
        };
        let hits = (0..times).filter(|_| attempt(&proj.join("x"))).count();
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        hits
    }

    /// Exchanging a folder and a symlink between the policy check and the open read
    /// `~/.ssh/id_rsa` 195 times in 1,000: the open now walks the checked path by descriptor
    /// without following symlinks.
    #[test]
    fn swapping_a_folder_for_a_symlink_after_the_check_never_reads_the_secret() {
        let s = swapping();
        let mut passed_the_gate = 0;
        let leaked = while_swapping(&s, 2000, |x| {
            let Ok(target) = s
                .policy
                .resolve(Mode::Edit, &x.join("id_rsa"), Intent::Read)
            else {
                return false;
            };
            passed_the_gate += 1;
            read_file(&target, 0, None).is_ok_and(|r| r.content.contains("SECRET"))
        });
        assert_eq!(leaked, 0, "the secret was read {leaked} times");
        assert!(passed_the_gate > 0, "the race was never run");
    }

    /// The race above, made deterministic: the folder is swapped for the symlink right after
    /// the check and before the read and the write.
    #[test]
    fn a_folder_swapped_for_a_symlink_between_check_and_use_reaches_nothing() {
        let s = swapping();
        let x = s.root.join("proj/x");
        let read = s
            .policy
            .resolve(Mode::Edit, &x.join("id_rsa"), Intent::Read)
            .unwrap();
        let write = s
            .policy
            .resolve(Mode::Edit, &x.join("authorized_keys"), Intent::Write)
            .unwrap();
        exchange(&x, &s.root.join("proj/link-x"));
        let outcome = read_file(&read, 0, None);
        assert!(
            !outcome.as_ref().is_ok_and(|r| r.content.contains("SECRET")),
            "{outcome:?}"
        );
        let _ = write_atomic(&write, b"ATTACKER");
        assert_eq!(
            std::fs::read_to_string(s.root.join(".ssh/authorized_keys")).unwrap(),
            "ORIGINAL"
        );
    }

    /// The same swap overwrote `authorized_keys` 107 times in 500: writes go through the
    /// parent descriptor that was opened without following symlinks.
    #[test]
    fn swapping_a_folder_for_a_symlink_after_the_check_never_overwrites_outside() {
        let s = swapping();
        let written = while_swapping(&s, 1000, |x| {
            let Ok(target) =
                s.policy
                    .resolve(Mode::Edit, &x.join("authorized_keys"), Intent::Write)
            else {
                return false;
            };
            let _ = write_atomic(&target, b"ATTACKER");
            std::fs::read_to_string(s.root.join(".ssh/authorized_keys")).unwrap() != "ORIGINAL"
        });
        assert_eq!(written, 0, "authorized_keys was overwritten");
    }

    /// Writing through a hard link to a protected file read it into a backup and replaced
    /// the link: the existing file's identity is judged first.
    #[test]
    fn a_hard_link_to_the_identity_key_is_neither_read_nor_written() {
        let (_t, root, _p) = setup();
        std::fs::write(root.join(".data/identity.key"), "IDENTITY").unwrap();
        std::fs::hard_link(root.join(".data/identity.key"), root.join("copy.txt")).unwrap();
        let p = Policy::new(
            &PolicyConfig {
                roots: vec![root.clone()],
                ..Default::default()
            },
            &root.join(".data"),
        )
        .unwrap();
        let path = root.join("copy.txt");
        for mode in [Mode::Plan, Mode::Edit, Mode::Bypass] {
            let target = p.resolve(mode, &path, Intent::Read).unwrap();
            assert!(
                matches!(read_file(&target, 0, None), Err(FsError::Refused(_))),
                "{mode}"
            );
            assert!(matches!(
                file_stat(&target, &path),
                Err(FsError::Refused(_))
            ));
        }
        let target = p.resolve(Mode::Edit, &path, Intent::Write).unwrap();
        assert!(matches!(
            previous_content(&target),
            Err(FsError::Refused(_))
        ));
        assert!(matches!(
            write_atomic(&target, b"x"),
            Err(FsError::Refused(_))
        ));
        let listing = list_dir(&p.resolve(Mode::Edit, &root, Intent::Read).unwrap()).unwrap();
        let names: Vec<_> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert!(!names.contains(&"copy.txt"), "{names:?}");
        assert!(!names.contains(&".data"), "{names:?}");
    }

    #[test]
    fn create_dirs_makes_the_folders_beneath_the_ancestor() {
        let (_t, root, p) = setup();
        let (ancestor, missing) = p
            .resolve_create(Mode::Edit, &root.join("a/b/c.txt"))
            .unwrap();
        create_dirs(&ancestor, &missing).unwrap();
        assert!(root.join("a/b").is_dir());
        let target = p
            .resolve(Mode::Edit, &root.join("a/b/c.txt"), Intent::Write)
            .unwrap();
        write_atomic(&target, b"made").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("a/b/c.txt")).unwrap(),
            "made"
        );
    }

    #[test]
    fn backups_are_written_durably_into_the_backup_folder() {
        let (_t, root, _p) = setup();
        let backups = root.join(".data/backups");
        let path = write_backup(&backups, Path::new("/x/config.toml"), &mut &b"old"[..]).unwrap();
        assert!(path.starts_with(&backups));
        assert!(path.to_string_lossy().ends_with("config.toml"));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
