//! File executors: `read_file`, `write_file`, `list_dir`, `file_stat`. Every call works on a
//! `policy::Resolved` (an open root descriptor plus a path inside it), so nothing here can reach
//! outside the root the gate chose. Writes are atomic: temp file → fsync → rename → fsync dir.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use cap_std::fs::{Dir, Metadata, OpenOptions};

use crate::ops::{
    DirEntry, Encoding, FileKind, FileStatResult, ListDirResult, ReadFileResult, WriteFileResult,
};
use crate::policy::Resolved;

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
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.display().to_string(),
        source,
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
    let meta = target.root.metadata(&target.relative).map_err(&err)?;
    if meta.is_dir() {
        return Err(FsError::IsDir(shown));
    }
    let mut file = target.root.open(&target.relative).map_err(&err)?;
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
    match target.root.metadata(&target.relative) {
        Ok(meta) if meta.is_file() => target
            .root
            .read(&target.relative)
            .map(Some)
            .map_err(io(&target.absolute)),
        Ok(meta) if meta.is_dir() => Err(FsError::IsDir(target.absolute.display().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&target.absolute)(e)),
    }
}

fn split(target: &Resolved) -> (PathBuf, std::ffi::OsString) {
    let parent = target
        .relative
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = target
        .relative
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    (parent, name)
}

/// Replaces the file atomically: a reader sees the old or the new content, never a mix, and
/// after a crash the file is the old or the new one, never torn.
pub fn write_atomic(target: &Resolved, bytes: &[u8]) -> Result<u64, FsError> {
    let err = io(&target.absolute);
    let (parent, name) = split(target);
    let dir: Dir = target.root.open_dir(&parent).map_err(&err)?;
    let previous_permissions = dir.metadata(&name).ok().map(|m| m.permissions());
    let temp = format!(
        ".{}.ra-tmp-{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    );
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

/// Writes a backup copy (durably) into `backups_dir`, which is the node's own data directory.
pub fn write_backup(backups_dir: &Path, original: &Path, bytes: &[u8]) -> Result<PathBuf, FsError> {
    let err = io(backups_dir);
    std::fs::create_dir_all(backups_dir).map_err(&err)?;
    let name = original
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let path = backups_dir.join(format!(
        "{}-{}-{}",
        crate::ops::now_ms(),
        uuid::Uuid::new_v4().simple(),
        name
    ));
    let mut file = std::fs::File::create(&path).map_err(&err)?;
    file.write_all(bytes).map_err(&err)?;
    file.sync_all().map_err(&err)?;
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

/// Lists a directory, sorted by name; symlinks are reported as such, not followed.
pub fn list_dir(target: &Resolved) -> Result<ListDirResult, FsError> {
    let err = io(&target.absolute);
    let meta = target.root.metadata(&target.relative).map_err(&err)?;
    if !meta.is_dir() {
        return Err(FsError::NotDir(target.absolute.display().to_string()));
    }
    let mut entries = Vec::new();
    for entry in target.root.read_dir(&target.relative).map_err(&err)? {
        let entry = entry.map_err(&err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata().map_err(&err)?;
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
    let meta = target.root.metadata(&target.relative).map_err(&err)?;
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
mod tests {
    use super::*;
    use crate::policy::{Intent, Mode, Policy, PolicyConfig};

    fn setup() -> (tempfile::TempDir, PathBuf, Policy) {
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

    #[test]
    fn backups_are_written_durably_into_the_backup_folder() {
        let (_t, root, _p) = setup();
        let backups = root.join(".data/backups");
        let path = write_backup(&backups, Path::new("/x/config.toml"), b"old").unwrap();
        assert!(path.starts_with(&backups));
        assert!(path.to_string_lossy().ends_with("config.toml"));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
