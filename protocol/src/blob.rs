//! Sealed blobs for the relay's retained store: whatever peers leave at the relay for late
//! joiners (the desired-state bundle) is encrypted to the room so the relay keeps only
//! ciphertext. There is no session to give counter nonces here, so every blob gets its own key:
//! HKDF-SHA256 of the room PSK with a fresh random 32-byte salt, then AES-256-GCM with a fixed
//! nonce. A key is used for exactly one message, which is what makes the fixed nonce sound (no
//! random-nonce GCM under a long-lived key). The retained key name is the associated data, so a
//! blob cannot be replayed under another key.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};

use crate::psk::Psk;

/// Length of the random salt in front of every sealed blob.
pub const SALT_LEN: usize = 32;
/// Bytes a sealed blob adds to its plaintext (salt + tag).
pub const OVERHEAD: usize = SALT_LEN + 16;

const INFO: &[u8] = b"remote-agents retained blob v1";

/// Why a blob did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("sealed blob is {0} bytes, shorter than its salt and tag")]
    TooShort(usize),
    #[error(
        "sealed blob does not authenticate (another room key, another retained key, or tampered)"
    )]
    Unauthentic,
}

struct AesKeyLen;

impl KeyType for AesKeyLen {
    fn len(&self) -> usize {
        AES_256_GCM.key_len()
    }
}

fn blob_key(psk: &Psk, salt: &[u8]) -> LessSafeKey {
    let prk = Salt::new(HKDF_SHA256, salt).extract(psk.as_bytes());
    let mut key = [0u8; 32];
    prk.expand(&[INFO], AesKeyLen)
        .and_then(|okm| okm.fill(&mut key))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("AES-256 key length"))
}

/// Seals `plaintext` for the retained key `label` with a caller-supplied random `salt` (the
/// crate does no I/O, randomness included). Never reuse a salt.
pub fn seal(psk: &Psk, label: &[u8], salt: [u8; SALT_LEN], plaintext: &[u8]) -> Vec<u8> {
    let key = blob_key(psk, &salt);
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&salt);
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
        Aad::from(label),
        &mut body,
    )
    .expect("a retained blob is far below the AES-GCM length limit");
    out.extend_from_slice(&body);
    out
}

/// Opens a blob sealed with [`seal`] under the same PSK and label.
pub fn open(psk: &Psk, label: &[u8], sealed: &[u8]) -> Result<Vec<u8>, BlobError> {
    if sealed.len() < OVERHEAD {
        return Err(BlobError::TooShort(sealed.len()));
    }
    let (salt, body) = sealed.split_at(SALT_LEN);
    let key = blob_key(psk, salt);
    let mut body = body.to_vec();
    let plaintext = key
        .open_in_place(
            Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
            Aad::from(label),
            &mut body,
        )
        .map_err(|_| BlobError::Unauthentic)?;
    Ok(plaintext.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn psk(byte: u8) -> Psk {
        Psk::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_sealed_blob_opens_only_with_its_room_and_label() {
        let sealed = seal(&psk(1), b"desired", [7; SALT_LEN], b"generation 3");
        assert_eq!(sealed.len(), 12 + OVERHEAD);
        assert_eq!(open(&psk(1), b"desired", &sealed).unwrap(), b"generation 3");
        assert_eq!(
            open(&psk(2), b"desired", &sealed),
            Err(BlobError::Unauthentic)
        );
        assert_eq!(
            open(&psk(1), b"other", &sealed),
            Err(BlobError::Unauthentic)
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            open(&psk(1), b"desired", &tampered),
            Err(BlobError::Unauthentic)
        );
        assert_eq!(
            open(&psk(1), b"desired", &sealed[..10]),
            Err(BlobError::TooShort(10))
        );
    }

    #[test]
    fn different_salts_give_unrelated_ciphertexts() {
        let a = seal(&psk(1), b"k", [1; SALT_LEN], b"same text");
        let b = seal(&psk(1), b"k", [2; SALT_LEN], b"same text");
        assert_ne!(a[SALT_LEN..], b[SALT_LEN..]);
    }
}
