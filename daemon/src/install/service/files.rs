//! The service's files on disk: atomic writes that have their final mode from the first byte
//! (a secret is never world-readable, even for a moment), the folders `install` creates, and
//! the manifest of what it wrote, which is all `uninstall` removes.

use std::fs::Permissions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::layout::{Layout, Platform, Scope};

/// The manifest's format version.
const MANIFEST_VERSION: u32 = 1;

/// What `install` wrote: `uninstall` removes these and nothing else (and only those of them
/// that are the layout's own paths, whatever the file says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub platform: Platform,
    pub scope: Scope,
    /// The files `install` wrote itself (the manifest included).
    pub files: Vec<PathBuf>,
    /// The link `systemctl enable` made, removed by `systemctl disable` (or by `uninstall` if
    /// it is still there after that).
    pub enable_link: Option<PathBuf>,
    /// The folders that did not exist before `install` (or `systemctl enable`) made them.
    pub created_folders: Vec<PathBuf>,
}

impl Manifest {
    /// A manifest for `layout`, keeping the folders an earlier install created.
    pub fn new(layout: &Layout, created_folders: Vec<PathBuf>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            platform: layout.platform,
            scope: layout.scope,
            files: layout
                .written_files()
                .iter()
                .map(|path| path.to_path_buf())
                .collect(),
            enable_link: layout.enable_link.clone(),
            created_folders,
        }
    }

    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("a manifest serializes");
        json.push('\n');
        json
    }
}

/// The manifest at `path`, or `None` when there is none.
pub fn read_manifest(path: &Path) -> anyhow::Result<Option<Manifest>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a manifest of `remote-agents install`",
            path.display()
        )
    })?;
    if manifest.version != MANIFEST_VERSION {
        bail!(
            "{}: manifest version {} is not {MANIFEST_VERSION}",
            path.display(),
            manifest.version
        );
    }
    Ok(Some(manifest))
}

/// Replaces `path` with `content` by a rename, so a reader sees the old file or the new one.
/// The temporary file is created 0600 and only then given `mode`.
pub fn write_atomically(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    let folder = path
        .parent()
        .with_context(|| format!("{} has no parent folder", path.display()))?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".remote-agents-install-")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(folder)
        .with_context(|| format!("cannot create a temporary file in {}", folder.display()))?;
    temporary
        .write_all(content)
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("cannot write {}", temporary.path().display()))?;
    if mode != 0o600 {
        temporary
            .as_file()
            .set_permissions(Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", temporary.path().display()))?;
    }
    temporary
        .persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The rename is durable once the folder is.
    std::fs::File::open(folder)
        .and_then(|folder| folder.sync_all())
        .with_context(|| format!("cannot sync {}", folder.display()))?;
    Ok(())
}

/// The layout's folders that hold `files` and do not exist yet, outermost first, each with the
/// mode it gets: the node's own folders (its config folder, the config home) are 0700.
pub fn missing_folders(layout: &Layout, files: &[&Path]) -> Vec<(PathBuf, u32)> {
    layout
        .folders
        .iter()
        .filter(|folder| {
            files.iter().any(|file| {
                file.parent()
                    .is_some_and(|parent| parent.starts_with(folder))
            }) && !folder.exists()
        })
        .map(|folder| {
            let private = folder
                .file_name()
                .is_some_and(|name| name == "remote-agents")
                || layout.folders.first() == Some(folder);
            (folder.clone(), if private { 0o700 } else { 0o755 })
        })
        .collect()
}

/// Creates the layout's missing folders that hold `files`, outermost first, and returns the
/// ones it created.
pub fn create_folders(layout: &Layout, files: &[&Path]) -> anyhow::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for (folder, mode) in missing_folders(layout, files) {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        created.push(folder);
    }
    Ok(created)
}

/// Removes `path` if it is there; `true` when it was.
pub fn remove_file(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Removes `folder` if it is there and empty; `true` when it was removed. A folder that holds
/// anything (a file the user put there) stays.
pub fn remove_empty_folder(folder: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_dir(folder) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(_)
            if folder
                .read_dir()
                .is_ok_and(|mut entries| entries.next().is_some()) =>
        {
            Ok(false)
        }
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", folder.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::install::service::layout::UserDirs;

    #[test]
    fn atomic_write_replaces_the_file_with_the_mode_asked() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("service.env");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        write_atomically(&path, b"unit", 0o644).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1);
    }

    #[test]
    fn folders_are_created_once_and_removed_only_when_empty() {
        let home = tempfile::tempdir().unwrap();
        let dirs = UserDirs {
            home: home.path().to_path_buf(),
            config_home: home.path().join(".config"),
        };
        let layout = Layout::user(Platform::Linux, &dirs);
        let created = create_folders(&layout, &layout.written_files()).unwrap();
        assert_eq!(
            created,
            [
                dirs.config_home.clone(),
                dirs.config_home.join("remote-agents"),
                dirs.config_home.join("systemd"),
                dirs.config_home.join("systemd/user"),
            ]
        );
        let node_folder = dirs.config_home.join("remote-agents");
        assert_eq!(
            std::fs::metadata(&node_folder).unwrap().mode() & 0o777,
            0o700
        );
        assert!(
            create_folders(&layout, &layout.written_files())
                .unwrap()
                .is_empty()
        );

        std::fs::write(node_folder.join("config.toml"), "").unwrap();
        assert!(!remove_empty_folder(&node_folder).unwrap());
        assert!(node_folder.join("config.toml").exists());
        std::fs::remove_file(node_folder.join("config.toml")).unwrap();
        assert!(remove_empty_folder(&node_folder).unwrap());
        assert!(!remove_empty_folder(&node_folder).unwrap());
    }

    #[test]
    fn manifest_round_trips_and_a_foreign_file_is_refused() {
        let folder = tempfile::tempdir().unwrap();
        let layout = Layout::system(Platform::Linux);
        let manifest = Manifest::new(&layout, vec![PathBuf::from("/etc/remote-agents")]);
        let path = folder.path().join("service-install.json");
        std::fs::write(&path, manifest.to_json()).unwrap();
        assert_eq!(read_manifest(&path).unwrap(), Some(manifest));
        assert_eq!(read_manifest(&folder.path().join("none")).unwrap(), None);
        std::fs::write(&path, "{}").unwrap();
        let error = format!("{:#}", read_manifest(&path).unwrap_err());
        assert!(error.contains("is not a manifest"), "{error}");
    }
}
