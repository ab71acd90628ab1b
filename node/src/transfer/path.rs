//! The byte paths a destination pulls a source's chunks over, behind one trait so the engine
//! does not care which carries them: `relay` (an RPC per chunk through the relay's sealed
//! sessions, the net RPC's own streaming and cancellation), `local` (both ends on one host), and
//! `direct` (`super::direct`: a QUIC connection on a hole-punched UDP socket,
//! `node::net::direct`), which the destination puts ahead of the relay in the list it hands
//! `receive`.
//!
//! On the relay path a pull is a net request that starts with [`PULL_MAGIC`] followed by the JSON
//! of a [`Pull`]; the node's request handler serves it (`serve`) before it would read a request
//! envelope, so chunks cost no journal or audit record (the `transfer_source` request that
//! opened the file was audited). The answer is the chunk's raw bytes, the JSON of a
//! `source::Digest`, or nothing (close); a refusal is the call's failure text.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use remote_agents_ops::TransferPath;
use remote_agents_protocol::message::RemoteFailure;

use super::Transfers;
use crate::net::{CallError, Net, Responder};
use remote_agents_protocol::frame::PeerId;

/// What starts a pull on the wire (a request envelope starts with `{`).
pub const PULL_MAGIC: &[u8] = b"ra-transfer-pull/1\n";
/// How long one chunk may take on the relay path before the try counts as a path failure.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// One request of a destination to its source.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pull {
    pub ticket: String,
    pub what: PullWhat,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullWhat {
    Chunk { offset: u64, length: u64 },
    Digest,
    Close,
}

/// Why a pull failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path could not carry it (connection lost, deadline): another try, or another path,
    /// may.
    #[error("{0}")]
    Unreachable(String),
    /// The source refused or failed (changed, vanished, unknown ticket): final.
    #[error("{0}")]
    Source(String),
}

/// An answer as it arrived, in pieces (the direct path's stream frames), so the destination
/// writes and hashes them where they lie instead of first copying them into one buffer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer(pub Vec<bytes::Bytes>);

impl Answer {
    pub fn len(&self) -> usize {
        self.0.iter().map(bytes::Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(bytes::Bytes::is_empty)
    }

    /// The answer in one buffer (a digest's JSON).
    pub fn concat(&self) -> Vec<u8> {
        self.0.concat()
    }
}

impl From<Vec<u8>> for Answer {
    fn from(bytes: Vec<u8>) -> Self {
        Answer(vec![bytes.into()])
    }
}

/// Carries pulls from a destination to its source.
pub trait BytePath: Send + Sync {
    /// What `transfer_get` reports while this path carries the chunks.
    fn kind(&self) -> TransferPath;
    fn pull(&self, pull: Pull) -> BoxFuture<'static, Result<Answer, PathError>>;
}

/// Pulls through the relay: one net call per pull to the source peer.
pub struct RelayPath {
    net: Net,
    peer: PeerId,
}

/// The relay path to the source `peer`.
pub fn relay(net: Net, peer: PeerId) -> Arc<dyn BytePath> {
    Arc::new(RelayPath { net, peer })
}

impl BytePath for RelayPath {
    fn kind(&self) -> TransferPath {
        TransferPath::Relay
    }

    fn pull(&self, pull: Pull) -> BoxFuture<'static, Result<Answer, PathError>> {
        let net = self.net.clone();
        let peer = self.peer;
        Box::pin(async move {
            let mut request = PULL_MAGIC.to_vec();
            request.extend_from_slice(
                &serde_json::to_vec(&pull).map_err(|e| PathError::Source(e.to_string()))?,
            );
            let answer = async {
                let mut stream = net.call(peer, request, PULL_TIMEOUT).await?;
                stream.collect().await
            }
            .await;
            match answer {
                Ok((_, response)) => Ok(response.into()),
                Err(CallError::Remote(RemoteFailure::Handler(text))) => {
                    Err(PathError::Source(text))
                }
                Err(CallError::Remote(RemoteFailure::NoHandler)) => Err(PathError::Source(
                    "the source host accepts no requests".into(),
                )),
                Err(e) => Err(PathError::Unreachable(format!("relay path: {e}"))),
            }
        })
    }
}

/// Both ends on one host: pulls go straight to this node's sources.
pub struct LocalPath {
    transfers: Arc<Transfers>,
    puller: String,
}

/// The path to this host's own sources, pulling as `puller` (this host's agent id).
pub fn local(transfers: Arc<Transfers>, puller: impl Into<String>) -> Arc<dyn BytePath> {
    Arc::new(LocalPath {
        transfers,
        puller: puller.into(),
    })
}

impl BytePath for LocalPath {
    fn kind(&self) -> TransferPath {
        TransferPath::Local
    }

    fn pull(&self, pull: Pull) -> BoxFuture<'static, Result<Answer, PathError>> {
        let transfers = self.transfers.clone();
        let puller = self.puller.clone();
        Box::pin(async move {
            answer(&transfers, &puller, pull)
                .await
                .map(|bytes| Answer(vec![bytes]))
                .map_err(PathError::Source)
        })
    }
}

/// The pull in a net request, if it is one.
pub fn decode_pull(request: &[u8]) -> Option<Result<Pull, String>> {
    let body = request.strip_prefix(PULL_MAGIC)?;
    Some(serde_json::from_slice(body).map_err(|e| format!("malformed transfer pull: {e}")))
}

/// Answers one pull from `puller` (an authenticated peer's agent id); file reads run on a
/// blocking thread, and a forwarded source waits for the bytes it has not received yet.
pub async fn answer(
    transfers: &Transfers,
    puller: &str,
    pull: Pull,
) -> Result<bytes::Bytes, String> {
    match pull.what {
        PullWhat::Close => {
            transfers.close_source(&pull.ticket, puller);
            Ok(bytes::Bytes::new())
        }
        PullWhat::Chunk { offset, length } => {
            let chunk = transfers
                .source_for(&pull.ticket, puller)?
                .chunk(offset, length)
                .await?;
            transfers.count_served(chunk.len());
            Ok(chunk)
        }
        PullWhat::Digest => {
            let digest = transfers.source_for(&pull.ticket, puller)?.digest().await?;
            serde_json::to_vec(&digest)
                .map(bytes::Bytes::from)
                .map_err(|e| e.to_string())
        }
    }
}

/// Serves a pull that arrived over the relay from `puller`, on a blocking thread.
pub async fn serve(
    transfers: Arc<Transfers>,
    puller: String,
    pull: Result<Pull, String>,
    responder: Responder,
) {
    let answer = match pull {
        Ok(pull) => answer(&transfers, &puller, pull).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(bytes) => responder.respond(&bytes).await,
        Err(text) => responder.fail(text).await,
    }
}

/// The request handler of a send-only peer that serves files to transfers and nothing else
/// (fleetctl's `cp LOCAL HOST:PATH`: the destination pulls from fleetctl).
pub struct PullHandler {
    pub transfers: Arc<Transfers>,
}

impl crate::net::Handler for PullHandler {
    fn handle(
        &self,
        from: crate::net::PeerInfo,
        request: Vec<u8>,
        responder: Responder,
        _cancel: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let transfers = self.transfers.clone();
        Box::pin(async move {
            match decode_pull(&request) {
                Some(pull) => serve(transfers, from.agent_id, pull, responder).await,
                None => responder.fail("this peer serves file transfers only").await,
            }
        })
    }
}
