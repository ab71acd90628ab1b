//! Operator keys: the Ed25519 keys that sign desired-state bundles and stand behind the peers
//! (fleetctl, MCP nodes) that command a fleet once its spec lists operators. The private key is
//! a 32-byte seed, written in a key file as one line `ed25519-secret:<base64>` (the node reads
//! and writes those files); the public key is written `ed25519:<base64>`, the format the spec's
//! `operators[].key` uses.

use base64::Engine;
use remote_agents_protocol::message::{OperatorBinding, operator_binding_message};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

const SECRET_PREFIX: &str = "ed25519-secret:";

/// An operator's signing key.
pub struct OperatorKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorKey({})", self.public())
    }
}

impl OperatorKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom_seed(&mut seed);
        Self::from_seed(&seed)
    }

    /// The key of a 32-byte seed (what a key file holds).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        OperatorKey {
            pair: Ed25519KeyPair::from_seed_unchecked(seed)
                .expect("any 32 bytes are an Ed25519 seed"),
        }
    }

    /// The key a key file's text holds, if it is one line `ed25519-secret:<base64 of 32 bytes>`.
    pub fn from_secret_line(text: &str) -> Option<Self> {
        let encoded = text.trim().strip_prefix(SECRET_PREFIX)?;
        let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?
            .try_into()
            .ok()?;
        Some(Self::from_seed(&seed))
    }

    /// A fresh random seed and the key file line that holds it.
    pub fn generate_secret_line() -> ([u8; 32], String) {
        let mut seed = [0u8; 32];
        getrandom_seed(&mut seed);
        let line = format!(
            "{SECRET_PREFIX}{}\n",
            base64::engine::general_purpose::STANDARD.encode(seed)
        );
        (seed, line)
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
}
