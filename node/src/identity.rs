//! The node's persistent identity: a static X25519 keypair kept in the data dir (mode 0600,
//! created atomically) and the stable agent id derived from it (the peer id in hex).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use remote_agents_protocol::frame::{PeerId, peer_id_from_public_key};
use remote_agents_protocol::session::StaticKeypair;

/// File name of the private key inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "identity key {path} is accessible by group or others (mode {mode:o}); run chmod 600 on it"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("identity key {path} is not a 32-byte key")]
    Malformed { path: PathBuf },
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// The node's keypair and ids.
#[derive(Clone, Debug)]
pub struct Identity {
    keypair: StaticKeypair,
    peer_id: PeerId,
}

impl Identity {
    /// Loads the keypair from `data_dir/identity.key`, creating the dir and a new key on first
    /// run. The key file is written to a temporary file with mode 0600, synced, and linked into
    /// place without overwriting, so two nodes starting at once end up with one identity.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        match fs::read(&path) {
            Ok(bytes) => return Self::from_file_bytes(&path, &bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IdentityError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        }
        fs::create_dir_all(data_dir).map_err(|source| IdentityError::Io {
            action: "create directory",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let keypair = StaticKeypair::generate()
            .map_err(|error| IdentityError::Generate(error.to_string()))?;
        let temporary = data_dir.join(format!(".{IDENTITY_FILE}.{}.tmp", std::process::id()));
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io {
                action,
                path,
                source,
            }
        };
        {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(io("create", &temporary))?;
            file.write_all(&keypair.private)
                .and_then(|()| file.sync_all())
                .map_err(io("write", &temporary))?;
        }
        // hard_link fails if the target exists: a concurrent first start keeps the winner's key.
        let linked = fs::hard_link(&temporary, &path);
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => {
                if let Ok(directory) = fs::File::open(data_dir) {
                    let _ = directory.sync_all();
                }
                Ok(Self::from_keypair(keypair))
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = fs::read(&path).map_err(io("read", &path))?;
                Self::from_file_bytes(&path, &bytes)
            }
            Err(source) => Err(IdentityError::Io {
                action: "link",
                path,
                source,
            }),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, IdentityError> {
        let mode = fs::metadata(path)
            .map_err(|source| IdentityError::Io {
                action: "stat",
                path: path.to_path_buf(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let keypair = StaticKeypair::from_private(bytes).map_err(|_| IdentityError::Malformed {
            path: path.to_path_buf(),
        })?;
        Ok(Self::from_keypair(keypair))
    }

    /// An identity that lives only in memory (tests, benchmarks).
    pub fn ephemeral() -> Result<Self, IdentityError> {
        StaticKeypair::generate()
            .map(Self::from_keypair)
            .map_err(|error| IdentityError::Generate(error.to_string()))
    }

    fn from_keypair(keypair: StaticKeypair) -> Self {
        let peer_id = peer_id_from_public_key(&keypair.public);
        Self { keypair, peer_id }
    }

    pub fn keypair(&self) -> &StaticKeypair {
        &self.keypair
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.keypair.public
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The stable agent id: the peer id as 32 lowercase hex characters.
    pub fn agent_id(&self) -> String {
        self.peer_id.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_with_mode_0600_and_stays_stable() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = Identity::load_or_create(&data_dir).unwrap();
        let mode = fs::metadata(data_dir.join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Identity::load_or_create(&data_dir).unwrap();
        assert_eq!(first.agent_id(), second.agent_id());
        assert_eq!(first.public_key(), second.public_key());
        assert_eq!(first.agent_id().len(), 32);
        assert_eq!(
            first.peer_id(),
            peer_id_from_public_key(&second.public_key())
        );
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&data_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(IDENTITY_FILE)]);
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(error, IdentityError::Permissions { mode: 0o644, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_truncated_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        fs::write(&path, [1u8; 5]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
    }
}
