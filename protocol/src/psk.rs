//! The room's pre-shared key: Argon2id of the room token salted by the room name, or an explicit
//! 32-byte `encryption_key`. Mixed into every Noise handshake (`psk2`), never sent anywhere.

use sha2::{Digest, Sha256};

/// Length of the pre-shared key in bytes.
pub const PSK_LEN: usize = 32;

/// A 32-byte pre-shared key. `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; PSK_LEN]);

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    #[error("room token is empty")]
    EmptyToken,
    #[error("encryption key must be 32 bytes, got {0}")]
    WrongKeyLength(usize),
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

impl Psk {
    /// Stretches a room token into a key with Argon2id (m = 19 MiB, t = 2, p = 1, the OWASP
    /// baseline the `argon2` crate defaults to). The salt is SHA-256 of a domain label and the
    /// room name: the name is not secret, but a per-room salt stops one precomputed table from
    /// serving every room. Nothing derived from the token ever leaves the node.
    pub fn from_room_token(room_token: &str, room_name: &str) -> Result<Self, PskError> {
        if room_token.is_empty() {
            return Err(PskError::EmptyToken);
        }
        let salt = Sha256::new()
            .chain_update(b"remote-agents psk salt v1\0")
            .chain_update(room_name.as_bytes())
            .finalize();
        let mut key = [0u8; PSK_LEN];
        argon2::Argon2::default()
            .hash_password_into(room_token.as_bytes(), &salt, &mut key)
            .map_err(|error| PskError::Argon2(error.to_string()))?;
        Ok(Self(key))
    }

    /// Uses an explicit 32-byte key (the `encryption_key` setting) as is.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PskError> {
        let key: [u8; PSK_LEN] = bytes
            .try_into()
            .map_err(|_| PskError::WrongKeyLength(bytes.len()))?;
        Ok(Self(key))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Psk(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_derivation_is_deterministic_and_salted_by_room() {
        let a = Psk::from_room_token("hunter2", "lab").unwrap();
        let b = Psk::from_room_token("hunter2", "lab").unwrap();
        let other_room = Psk::from_room_token("hunter2", "prod").unwrap();
        let other_token = Psk::from_room_token("hunter3", "lab").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, other_room);
        assert_ne!(a, other_token);
        assert_eq!(format!("{a:?}"), "Psk(..)");
    }

    #[test]
    fn explicit_key_must_be_32_bytes() {
        assert!(Psk::from_bytes(&[7u8; 32]).is_ok());
        assert!(matches!(
            Psk::from_bytes(&[7u8; 31]),
            Err(PskError::WrongKeyLength(31))
        ));
        assert!(matches!(
            Psk::from_room_token("", "lab"),
            Err(PskError::EmptyToken)
        ));
    }
}
