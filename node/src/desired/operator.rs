//! Operator key files: where fleetctl looks for one, reading one, and making one (mode 0600,
//! never overwriting). The key itself is `remote_agents_ops::operator::OperatorKey`.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use remote_agents_ops::operator::{OperatorKey, bound_operator, format_public, verify};

/// Errors reading or writing an operator key.
#[derive(Debug, thiserror::Error)]
pub enum OperatorKeyError {
    #[error("cannot read operator key {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write operator key {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite an operator key (pass another --out)")]
    Exists { path: String },
    #[error(
        "{path} is not an operator key: expected one line `ed25519-secret:<base64 of 32 bytes>`"
    )]
    Malformed { path: String },
    #[error(
        "no operator key: pass --operator-key PATH, set REMOTE_AGENTS_OPERATOR_KEY, or make one with `fleetctl keygen` (looked for {path})"
    )]
    Missing { path: String },
}

/// Where fleetctl looks for the operator key when no path is given.
pub fn default_key_path() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("remote-agents").join("operator.key")
}

/// Reads a key file written by [`create_key`].
pub fn load_key(path: &Path) -> Result<OperatorKey, OperatorKeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            OperatorKeyError::Missing {
                path: path.display().to_string(),
            }
        } else {
            OperatorKeyError::Read {
                path: path.display().to_string(),
                source,
            }
        }
    })?;
    OperatorKey::from_secret_line(&text).ok_or_else(|| OperatorKeyError::Malformed {
        path: path.display().to_string(),
    })
}

/// Makes a new key and writes it to `path` (mode 0600, parent folders created). Never
/// overwrites an existing file.
pub fn create_key(path: &Path) -> Result<OperatorKey, OperatorKeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let write_error = |source| OperatorKeyError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let (seed, line) = OperatorKey::generate_secret_line();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                OperatorKeyError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                write_error(source)
            }
        })?;
    file.write_all(line.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(OperatorKey::from_seed(&seed))
}

/// The operator key fleetctl signs with: --operator-key / REMOTE_AGENTS_OPERATOR_KEY / config,
/// else the default path when that file exists.
pub fn configured_key(
    settings: &crate::config::Settings,
) -> Result<Option<OperatorKey>, OperatorKeyError> {
    if let Some(path) = &settings.operator_key.value {
        return Ok(Some(load_key(path)?));
    }
    let default = default_key_path();
    if default.exists() {
        return Ok(Some(load_key(&default)?));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_file_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/operator.key");
        let key = create_key(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load_key(&path).unwrap();
        assert_eq!(key.public(), again.public());
        assert!(remote_agents_spec::parse_operator_key(&key.public()).is_ok());
        let signature = key.sign(b"hello");
        assert!(verify(&key.public_bytes(), b"hello", &signature));
        assert!(!verify(&key.public_bytes(), b"hellO", &signature));
        assert!(matches!(
            create_key(&path),
            Err(OperatorKeyError::Exists { .. })
        ));
    }

    #[test]
    fn malformed_and_missing_key_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load_key(&path),
            Err(OperatorKeyError::Malformed { .. })
        ));
        assert!(matches!(
            load_key(&dir.path().join("absent")),
            Err(OperatorKeyError::Missing { .. })
        ));
    }
}
