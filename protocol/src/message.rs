//! The typed messages peers exchange inside the encrypted sessions (announcements and the RPC
//! envelope), encoded with postcard so byte payloads travel as raw bytes. Payloads larger than
//! one frame are split into parts flagged `more`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::session::MAX_PLAINTEXT;

/// Room left in a frame for the envelope around a payload part (tag, call id, lengths, flags).
const ENVELOPE_SLACK: usize = 64;
/// The largest payload part one envelope carries so that the sealed frame stays within the cap.
pub const MAX_PART: usize = MAX_PLAINTEXT - ENVELOPE_SLACK;

/// What a peer tells the others about itself. Travels only inside the encryption (handshake
/// payloads and `Envelope::Announce`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Announcement {
    pub name: String,
    pub tags: Vec<String>,
    pub facts: BTreeMap<String, String>,
    pub mode: String,
    pub accepts_commands: bool,
    /// The operator key this peer acts for, when it acts for one (fleetctl, an MCP node with an
    /// operator key). Nodes check it against the applied spec's operators.
    pub operator: Option<OperatorBinding>,
}

/// Proof that an operator key stands behind a peer: the operator's Ed25519 signature over
/// [`operator_binding_message`] of the peer's Noise static public key. The handshake proves the
/// peer holds that static key, so requests on the session come from the operator; a copied
/// binding is useless without the static private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorBinding {
    /// The Ed25519 public key (32 bytes).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The Ed25519 signature (64 bytes).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The bytes an operator signs to bind its key to a peer's static key.
pub fn operator_binding_message(static_public_key: &[u8; 32]) -> Vec<u8> {
    let mut message = b"remote-agents operator binding v1\0".to_vec();
    message.extend_from_slice(static_public_key);
    message
}

/// Why a call failed on the callee's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteFailure {
    /// The handler answered with an error (its message).
    #[error("handler error: {0}")]
    Handler(String),
    /// The deadline passed before the handler finished.
    #[error("deadline exceeded on the callee")]
    DeadlineExceeded,
    /// The callee has no handler (a send-only node).
    #[error("peer accepts no requests")]
    NoHandler,
    /// The request could not be read.
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// One encrypted message between two peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// The sender's current announcement (sent when it changes).
    Announce(Announcement),
    /// A part of a request. The first part's `deadline_ms` is the time left for the call when
    /// it was sent (relative, so peers need no synchronised clocks).
    Request {
        call: u64,
        deadline_ms: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        more: bool,
    },
    /// A part of one streamed chunk of a response.
    Chunk {
        call: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        more: bool,
    },
    /// A part of the final response.
    Response {
        call: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        more: bool,
    },
    /// The call failed on the callee.
    Failure { call: u64, failure: RemoteFailure },
    /// The caller gave up on the call.
    Cancel { call: u64 },
    /// A one-way message (broadcast or notification), possibly in parts.
    Notify {
        id: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        more: bool,
    },
    /// A request for a direct data channel (`direct::DirectOffer`, one part: an offer is far
    /// below the frame cap). It is answered like a request, with `Response` (the callee's
    /// offer) or `Failure`, but handled by the node's direct-path layer, not its request
    /// handler.
    Direct {
        call: u64,
        deadline_ms: u64,
        #[serde(with = "serde_bytes")]
        offer: Vec<u8>,
    },
}

/// The envelope a part of a call's answer travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPart {
    /// [`Envelope::Chunk`].
    Chunk,
    /// [`Envelope::Response`].
    Response,
}

/// A `Chunk` or `Response` envelope whose data is borrowed: it encodes to exactly the bytes of
/// the [`Envelope`] it stands for (same variant index and fields), so a large answer is encoded
/// from its own buffer part by part instead of each part being copied into an envelope first.
struct BorrowedPart<'a> {
    kind: AnswerPart,
    call: u64,
    data: &'a [u8],
    more: bool,
}

impl Serialize for BorrowedPart<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant as _;
        // The variant indices of `Envelope` (declaration order), checked by a test.
        let (index, name) = match self.kind {
            AnswerPart::Chunk => (2, "Chunk"),
            AnswerPart::Response => (3, "Response"),
        };
        let mut variant = serializer.serialize_struct_variant("Envelope", index, name, 3)?;
        variant.serialize_field("call", &self.call)?;
        variant.serialize_field("data", serde_bytes::Bytes::new(self.data))?;
        variant.serialize_field("more", &self.more)?;
        variant.end()
    }
}

/// Encodes one part of a call's answer (`kind`) straight from the answer's buffer: the same
/// bytes as `Envelope::Chunk`/`Response { call, data: data.to_vec(), more }.encode()`.
pub fn encode_answer_part(kind: AnswerPart, call: u64, data: &[u8], more: bool) -> Vec<u8> {
    let part = BorrowedPart {
        kind,
        call,
        data,
        more,
    };
    // Room for the variant, call id and length varints and the flag.
    postcard::to_extend(&part, Vec::with_capacity(data.len() + 24))
        .expect("postcard encodes every envelope")
}

/// Decoding error of an envelope or announcement.
#[derive(Debug, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct MessageError(#[from] postcard::Error);

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard encodes every envelope")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

impl Announcement {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard encodes every announcement")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

/// Splits `data` into parts of at most `MAX_PART` bytes, each with its `more` flag. Empty data
/// is one empty final part.
pub fn parts(data: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let count = data.len().div_ceil(MAX_PART).max(1);
    (0..count).map(move |index| {
        let start = index * MAX_PART;
        let end = (start + MAX_PART).min(data.len());
        (&data[start..end], index + 1 < count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_payloads_are_not_bloated() {
        let envelope = Envelope::Response {
            call: 7,
            data: vec![0xab; 1000],
            more: false,
        };
        let encoded = envelope.encode();
        assert!(encoded.len() <= 1000 + 8, "{} bytes", encoded.len());
        assert_eq!(Envelope::decode(&encoded).unwrap(), envelope);
    }

    #[test]
    fn borrowed_answer_parts_encode_as_their_envelopes() {
        for (call, data, more) in [
            (0, vec![], false),
            (7, vec![0xab; 1000], true),
            (u64::MAX, vec![1; MAX_PART], false),
        ] {
            let chunk = Envelope::Chunk {
                call,
                data: data.clone(),
                more,
            };
            let response = Envelope::Response {
                call,
                data: data.clone(),
                more,
            };
            assert_eq!(
                encode_answer_part(AnswerPart::Chunk, call, &data, more),
                chunk.encode()
            );
            assert_eq!(
                encode_answer_part(AnswerPart::Response, call, &data, more),
                response.encode()
            );
        }
    }

    #[test]
    fn largest_part_fits_in_one_frame() {
        let envelope = Envelope::Request {
            call: u64::MAX,
            deadline_ms: u64::MAX,
            data: vec![1; MAX_PART],
            more: true,
        };
        assert!(envelope.encode().len() <= MAX_PLAINTEXT);
    }

    #[test]
    fn parts_cover_the_data_in_order() {
        let data: Vec<u8> = (0..(MAX_PART * 2 + 10)).map(|i| i as u8).collect();
        let collected: Vec<(usize, bool)> = parts(&data).map(|(p, more)| (p.len(), more)).collect();
        assert_eq!(
            collected,
            vec![(MAX_PART, true), (MAX_PART, true), (10, false)]
        );
        let joined: Vec<u8> = parts(&data).flat_map(|(p, _)| p.to_vec()).collect();
        assert_eq!(joined, data);
        assert_eq!(parts(&[]).collect::<Vec<_>>(), vec![(&[][..], false)]);
    }

    #[test]
    fn garbage_does_not_decode_as_an_envelope() {
        assert!(Envelope::decode(&[0xff, 0xff, 0xff]).is_err());
        let announcement = Announcement {
            name: "web-1".into(),
            tags: vec!["web".into()],
            facts: BTreeMap::from([("os".into(), "linux".into())]),
            mode: "plan".into(),
            accepts_commands: true,
            operator: Some(OperatorBinding {
                key: vec![1; 32],
                signature: vec![2; 64],
            }),
        };
        assert_eq!(
            Announcement::decode(&announcement.encode()).unwrap(),
            announcement
        );
    }
}
