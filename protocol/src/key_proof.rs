//! Proof of key at the relay (schemas/frame.md "Proving the peer id"): the relay's `CHALLENGE`
//! (a fresh X25519 public key per connection) and the peer's `PROOF` (its static public key and
//! an HMAC keyed by the Diffie-Hellman of the two). A peer id is a hash of a static public key,
//! so only the holder of that key's private half can take the peer id; without this, anyone who
//! read a peer id from `WELCOME` could evict that peer for good.

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hmac;
use ring::rand::SystemRandom;

use crate::frame::{PeerId, RoomId, peer_id_from_public_key};
use crate::session::StaticKeypair;

pub use crate::frame::{MAC_LEN, PROOF_LEN, PUBLIC_KEY_LEN};

/// The domain label at the start of every proven message, so a tag made here can never be
/// mistaken for one made anywhere else with the same Diffie-Hellman secret.
const PROOF_LABEL: &[u8] = b"remote-agents key proof v1\0";

/// Why a proof was not accepted (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProofError {
    #[error("proof is {0} bytes, not the {PROOF_LEN} of a public key and a tag")]
    Length(usize),
    #[error("the public key in the proof does not hash to the claimed peer id")]
    WrongKey,
    #[error("the proof's tag does not verify")]
    BadMac,
    #[error("challenge is {0} bytes, not a {PUBLIC_KEY_LEN}-byte x25519 public key")]
    ChallengeLength(usize),
    #[error("x25519 failed (a low-order key or no randomness)")]
    KeyAgreement,
}

/// The relay's side: one fresh ephemeral key per connection, used once to check its proof.
pub struct Challenge {
    private: EphemeralPrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl Challenge {
    /// Draws a fresh ephemeral key from the operating system's random source.
    pub fn new() -> Result<Self, KeyProofError> {
        let random = SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&X25519, &random)
            .map_err(|_| KeyProofError::KeyAgreement)?;
        let public = private
            .compute_public_key()
            .map_err(|_| KeyProofError::KeyAgreement)?
            .as_ref()
            .try_into()
            .map_err(|_| KeyProofError::KeyAgreement)?;
        Ok(Challenge { private, public })
    }

    /// The `CHALLENGE` body.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public
    }

    /// Accepts `proof` (a `PROOF` body) only if its public key hashes to `peer` and its tag was
    /// made with that key's private half for this challenge, room and peer. Consumes the
    /// challenge: one proof per connection.
    pub fn verify(self, room: &RoomId, peer: &PeerId, proof: &[u8]) -> Result<(), KeyProofError> {
        if proof.len() != PROOF_LEN {
            return Err(KeyProofError::Length(proof.len()));
        }
        let (static_public, tag) = proof.split_at(PUBLIC_KEY_LEN);
        if peer_id_from_public_key(static_public) != *peer {
            return Err(KeyProofError::WrongKey);
        }
        let message = proven_message(room, peer, &self.public, static_public);
        // ring refuses an all-zero shared secret (a low-order public key), which anyone could
        // otherwise compute without a private key.
        agreement::agree_ephemeral(
            self.private,
            &UnparsedPublicKey::new(&X25519, static_public),
            |shared| {
                let key = hmac::Key::new(hmac::HMAC_SHA256, shared);
                hmac::verify(&key, &message, tag).map_err(|_| KeyProofError::BadMac)
            },
        )
        .map_err(|_| KeyProofError::KeyAgreement)?
    }
}

/// The peer's side: the `PROOF` body answering the `CHALLENGE` body `challenge` for this room.
pub fn prove(
    keypair: &StaticKeypair,
    room: &RoomId,
    challenge: &[u8],
) -> Result<[u8; PROOF_LEN], KeyProofError> {
    use snow::resolvers::CryptoResolver;
    let challenge: [u8; PUBLIC_KEY_LEN] = challenge
        .try_into()
        .map_err(|_| KeyProofError::ChallengeLength(challenge.len()))?;
    let mut dh = snow::resolvers::DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .ok_or(KeyProofError::KeyAgreement)?;
    dh.set(&keypair.private);
    let mut shared = [0u8; 32];
    dh.dh(&challenge, &mut shared)
        .map_err(|_| KeyProofError::KeyAgreement)?;
    // A low-order challenge gives a secret anyone knows; an honest relay never sends one.
    if shared == [0u8; 32] {
        return Err(KeyProofError::KeyAgreement);
    }
    let message = proven_message(room, &keypair.peer_id(), &challenge, &keypair.public);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &shared), &message);
    let mut proof = [0u8; PROOF_LEN];
    proof[..PUBLIC_KEY_LEN].copy_from_slice(&keypair.public);
    proof[PUBLIC_KEY_LEN..].copy_from_slice(tag.as_ref());
    Ok(proof)
}

/// label || room id || peer id || challenge key || static key: everything the proof binds.
fn proven_message(
    room: &RoomId,
    peer: &PeerId,
    challenge: &[u8; PUBLIC_KEY_LEN],
    static_public: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(PROOF_LABEL.len() + 32 + 16 + 2 * PUBLIC_KEY_LEN);
    message.extend_from_slice(PROOF_LABEL);
    message.extend_from_slice(&room.0);
    message.extend_from_slice(&peer.0);
    message.extend_from_slice(challenge);
    message.extend_from_slice(static_public);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::room_id_from_name;

    fn keypair() -> StaticKeypair {
        StaticKeypair::generate().unwrap()
    }

    #[test]
    fn a_proof_by_the_key_holder_verifies() {
        let keys = keypair();
        let room = room_id_from_name("ops");
        let challenge = Challenge::new().unwrap();
        let proof = prove(&keys, &room, &challenge.public_key()).unwrap();
        assert_eq!(challenge.verify(&room, &keys.peer_id(), &proof), Ok(()));
    }

    #[test]
    fn another_key_cannot_prove_a_peer_id_it_does_not_hash_to() {
        let victim = keypair();
        let attacker = keypair();
        let room = room_id_from_name("ops");
        let challenge = Challenge::new().unwrap();
        let proof = prove(&attacker, &room, &challenge.public_key()).unwrap();
        assert_eq!(
            challenge.verify(&room, &victim.peer_id(), &proof),
            Err(KeyProofError::WrongKey)
        );
    }

    #[test]
    fn the_victims_public_key_without_its_private_key_does_not_verify() {
        let victim = keypair();
        let attacker = keypair();
        let room = room_id_from_name("ops");
        let challenge = Challenge::new().unwrap();
        let mut proof = prove(&attacker, &room, &challenge.public_key()).unwrap();
        proof[..PUBLIC_KEY_LEN].copy_from_slice(&victim.public);
        assert_eq!(
            challenge.verify(&room, &victim.peer_id(), &proof),
            Err(KeyProofError::BadMac)
        );
    }

    #[test]
    fn a_proof_is_bound_to_its_challenge_and_room() {
        let keys = keypair();
        let room = room_id_from_name("ops");
        let first = Challenge::new().unwrap();
        let replayed = prove(&keys, &room, &first.public_key()).unwrap();
        let second = Challenge::new().unwrap();
        assert_eq!(
            second.verify(&room, &keys.peer_id(), &replayed),
            Err(KeyProofError::BadMac)
        );
        let other_room = Challenge::new().unwrap();
        let proof = prove(&keys, &room, &other_room.public_key()).unwrap();
        assert_eq!(
            other_room.verify(&room_id_from_name("dev"), &keys.peer_id(), &proof),
            Err(KeyProofError::BadMac)
        );
    }

    #[test]
    fn malformed_proofs_and_low_order_keys_are_refused() {
        let keys = keypair();
        let room = room_id_from_name("ops");
        assert_eq!(
            Challenge::new()
                .unwrap()
                .verify(&room, &keys.peer_id(), &[0; 10]),
            Err(KeyProofError::Length(10))
        );
        // The all-zero point has small order: the shared secret would be zero for any key.
        let low_order = [0u8; 32];
        assert_eq!(
            prove(&keys, &room, &low_order),
            Err(KeyProofError::KeyAgreement)
        );
        let proof = [0u8; PROOF_LEN];
        let low_order_peer = peer_id_from_public_key(&low_order);
        assert_eq!(
            Challenge::new()
                .unwrap()
                .verify(&room, &low_order_peer, &proof),
            Err(KeyProofError::KeyAgreement)
        );
        assert_eq!(
            prove(&keys, &room, &[1; 31]),
            Err(KeyProofError::ChallengeLength(31))
        );
    }
}
