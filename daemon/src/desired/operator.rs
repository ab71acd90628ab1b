//! Operator keys: the Ed25519 keys that sign desired-state bundles and stand behind the peers
//! (fleetctl, MCP nodes) that command a fleet once its spec lists operators. The private key is
//! a 32-byte seed kept in a 0600 file; the public key is written `ed25519:<base64>`, the format
//! the spec's `operators[].key` uses.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use remote_agents_protocol::message::{OperatorBinding, operator_binding_message};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

const SECRET_PREFIX: &str = "ed25519-secret:";

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

/// An operator's signing key.
pub struct OperatorKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorKey({})", self.public())
    }
}

/// Where fleetctl looks for the operator key when no path is given.
pub fn default_key_path() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("remote-agents").join("operator.key")
}

impl OperatorKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom_seed(&mut seed);
        Self::from_seed(&seed)
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        OperatorKey {
            pair: Ed25519KeyPair::from_seed_unchecked(seed)
                .expect("any 32 bytes are an Ed25519 seed"),
        }
    }

    /// Reads a key file written by [`OperatorKey::create`].
    pub fn load(path: &Path) -> Result<Self, OperatorKeyError> {
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
        let malformed = || OperatorKeyError::Malformed {
            path: path.display().to_string(),
        };
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(malformed)?;
        let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(malformed)?;
        Ok(Self::from_seed(&seed))
    }

    /// Makes a new key and writes it to `path` (mode 0600, parent folders created). Never
    /// overwrites an existing file.
    pub fn create(path: &Path) -> Result<Self, OperatorKeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let write_error = |source| OperatorKeyError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let mut seed = [0u8; 32];
        getrandom_seed(&mut seed);
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
        let line = format!(
            "{SECRET_PREFIX}{}\n",
            base64::engine::general_purpose::STANDARD.encode(seed)
        );
        file.write_all(line.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        Ok(Self::from_seed(&seed))
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("Ed25519 public keys are 32 bytes")
    }

    /// The public key as the spec writes it: `ed25519:<base64>`.
    pub fn public(&self) -> String {
        format_public(&self.public_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The proof that this operator stands behind the peer with Noise static key `static_key`.
    pub fn bind(&self, static_key: &[u8; 32]) -> OperatorBinding {
        OperatorBinding {
            key: self.public_bytes().to_vec(),
            signature: self.sign(&operator_binding_message(static_key)),
        }
    }
}

fn getrandom_seed(seed: &mut [u8; 32]) {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(seed)
        .expect("the operating system's random source works");
}

/// `ed25519:<base64>` of a public key.
pub fn format_public(key: &[u8; 32]) -> String {
    format!(
        "ed25519:{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Whether `signature` is `key`'s Ed25519 signature of `message`.
pub fn verify(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message, signature)
        .is_ok()
}

/// The operator key a peer proved it acts for, if its binding verifies against its
/// authenticated static key.
pub fn bound_operator(static_key: &[u8; 32], binding: &OperatorBinding) -> Option<[u8; 32]> {
    let key: [u8; 32] = binding.key.as_slice().try_into().ok()?;
    verify(
        &key,
        &operator_binding_message(static_key),
        &binding.signature,
    )
    .then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_file_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/operator.key");
        let key = OperatorKey::create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = OperatorKey::load(&path).unwrap();
        assert_eq!(key.public(), again.public());
        assert!(remote_agents_spec::parse_operator_key(&key.public()).is_ok());
        let signature = key.sign(b"hello");
        assert!(verify(&key.public_bytes(), b"hello", &signature));
        assert!(!verify(&key.public_bytes(), b"hellO", &signature));
        assert!(matches!(
            OperatorKey::create(&path),
            Err(OperatorKeyError::Exists { .. })
        ));
    }

    #[test]
    fn a_binding_holds_only_for_the_static_key_it_names() {
        let key = OperatorKey::generate();
        let binding = key.bind(&[7; 32]);
        assert_eq!(bound_operator(&[7; 32], &binding), Some(key.public_bytes()));
        assert_eq!(bound_operator(&[8; 32], &binding), None);
        let forged = OperatorBinding {
            key: OperatorKey::generate().public_bytes().to_vec(),
            signature: binding.signature.clone(),
        };
        assert_eq!(bound_operator(&[7; 32], &forged), None);
    }

    #[test]
    fn malformed_and_missing_key_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            OperatorKey::load(&path),
            Err(OperatorKeyError::Malformed { .. })
        ));
        assert!(matches!(
            OperatorKey::load(&dir.path().join("absent")),
            Err(OperatorKeyError::Missing { .. })
        ));
    }
}
