//! The direct byte path: pulls over a QUIC connection on a hole-punched UDP socket
//! (`node::net::direct`), one bidirectional stream per pull. The destination opens the
//! connection on its first pull ([`DirectPath`]); the source answers every stream of every
//! connection peers opened to it ([`serve`]) with the same [`answer`] the relay path uses, as the
//! peer the connection's certificate is pinned to (the Noise-authenticated identity), so a
//! ticket serves only the destination it was bound to on this path too.
//!
//! A stream carries one request, [`PULL_MAGIC`] and the JSON of a [`Pull`] (then the client
//! finishes its side), and one answer: a status byte ([`OK`] then the chunk, digest or nothing;
//! [`REFUSED`] then the source's failure text). Each pull is a whole request and answer, so a
//! connection that dies leaves nothing half-applied: the engine continues on the next path from
//! its verified offset, and the chunks in flight on the dead path are dropped.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use remote_agents_ops::TransferPath;
use remote_agents_protocol::frame::PeerId;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::path::{Answer, BytePath, PULL_MAGIC, PathError, Pull, answer, decode_pull};
use super::{CHUNK, Transfers, WINDOW};
use crate::net::Net;
use crate::net::direct::{self, Connection, DirectConnection, DirectError};

/// Answer status: the bytes follow.
const OK: u8 = 0;
/// Answer status: the source refused; its reason (UTF-8) follows.
const REFUSED: u8 = 1;
/// The largest request a source reads from a stream (a pull's JSON is a few hundred bytes).
const MAX_REQUEST: usize = 64 * 1024;
/// The largest answer: a chunk, or a refusal's text, and the status byte.
const MAX_ANSWER: usize = CHUNK as usize + 64 * 1024;
/// How long one pull may take before the try counts as a path failure (as on the relay path).
const PULL_TIMEOUT: Duration = Duration::from_secs(60);
/// Streams one connection has answered at once at most: a destination keeps [`WINDOW`] in
/// flight per transfer; this bounds the chunks a source holds in memory per peer.
const STREAMS_PER_CONNECTION: usize = 2 * WINDOW;
/// QUIC application close code when the destination is done with the connection.
const CLOSE_DONE: u32 = 0;

/// Pulls from the source `peer` over a direct connection, opened once on first use. A failed
/// attempt (no punched path: symmetric NAT, UDP blocked, the peer serves no direct path) fails
/// every pull of this path at once, so the engine moves to the relay without waiting again.
pub struct DirectPath {
    shared: Arc<Shared>,
}

/// What the pulls in flight of one path share: the connection, opened once.
struct Shared {
    net: Net,
    peer: PeerId,
    connection: tokio::sync::OnceCell<Result<Connection, String>>,
}

/// The direct path to the source `peer`.
pub fn path(net: Net, peer: PeerId) -> Arc<dyn BytePath> {
    Arc::new(DirectPath {
        shared: Arc::new(Shared {
            net,
            peer,
            connection: tokio::sync::OnceCell::new(),
        }),
    })
}

impl Shared {
    async fn connection(&self) -> Result<Connection, PathError> {
        let connection = self
            .connection
            .get_or_init(|| async {
                direct::connect(&self.net, self.peer)
                    .await
                    .map(|direct| direct.connection)
                    .map_err(|error| error.to_string())
            })
            .await;
        connection.clone().map_err(|error| {
            PathError::Unreachable(format!("direct path to {}: {error}", self.peer))
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The transfer is over: the source need not wait for the idle timeout.
        if let Some(Ok(connection)) = self.connection.get() {
            let stats = connection.stats();
            tracing::debug!(
                peer = %self.peer,
                rtt_us = stats.path.rtt.as_micros() as u64,
                cwnd = stats.path.cwnd,
                mtu = stats.path.current_mtu,
                sent_packets = stats.path.sent_packets,
                lost_packets = stats.path.lost_packets,
                congestion_events = stats.path.congestion_events,
                "direct path closed"
            );
            connection.close(CLOSE_DONE.into(), b"transfer done");
        }
    }
}

impl BytePath for DirectPath {
    fn kind(&self) -> TransferPath {
        TransferPath::Direct
    }

    fn pull(&self, pull: Pull) -> BoxFuture<'static, Result<Answer, PathError>> {
        let this = self.shared.clone();
        Box::pin(async move {
            let peer = this.peer;
            let mut request = PULL_MAGIC.to_vec();
            request.extend_from_slice(
                &serde_json::to_vec(&pull).map_err(|e| PathError::Source(e.to_string()))?,
            );
            let connection = this.connection().await?;
            let lost =
                |error: String| PathError::Unreachable(format!("direct path to {peer}: {error}"));
            let exchange = async {
                let (mut send, mut receive) = connection
                    .open_bi()
                    .await
                    .map_err(|e| lost(e.to_string()))?;
                send.write_all(&request)
                    .await
                    .map_err(|e| lost(e.to_string()))?;
                send.finish().map_err(|e| lost(e.to_string()))?;
                // The stream's frames as they arrived, up to the largest answer.
                let mut pieces = Vec::new();
                let mut total = 0;
                while let Some(piece) = receive
                    .read_chunk(MAX_ANSWER, true)
                    .await
                    .map_err(|e| lost(e.to_string()))?
                {
                    total += piece.bytes.len();
                    if total > MAX_ANSWER {
                        return Err(lost(format!("an answer over {MAX_ANSWER} bytes")));
                    }
                    pieces.push(piece.bytes);
                }
                Ok(pieces)
            };
            let mut pieces = tokio::time::timeout(PULL_TIMEOUT, exchange)
                .await
                .map_err(|_| lost(format!("no answer within {PULL_TIMEOUT:?}")))??;
            pieces.retain(|piece| !piece.is_empty());
            let status = pieces.first_mut().map(|first| {
                let status = first[0];
                *first = first.slice(1..);
                status
            });
            match status {
                Some(OK) => Ok(Answer(pieces)),
                Some(REFUSED) => Err(PathError::Source(
                    String::from_utf8_lossy(&Answer(pieces).concat()).into_owned(),
                )),
                _ => Err(lost("malformed answer".into())),
            }
        })
    }
}

/// Answers pulls on the direct connections peers open to this node until `shutdown` (or the
/// node's direct path cannot be set up, which the log says; destinations then use the relay).
pub async fn serve(net: Net, transfers: Arc<Transfers>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            accepted = direct::accept(&net) => accepted,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok(connection) => {
                crate::runtime::spawn(serve_connection(connection, transfers.clone()));
            }
            Err(DirectError::Shutdown) => return,
            Err(error) => {
                tracing::warn!(%error, "not serving transfers over direct paths");
                return;
            }
        }
    }
}

/// Answers each stream of one connection, a bounded number at once.
async fn serve_connection(direct: DirectConnection, transfers: Arc<Transfers>) {
    // The pinned identity is the puller: tickets bound to another agent read as unknown.
    let puller = direct.peer.to_hex();
    let streams = Arc::new(Semaphore::new(STREAMS_PER_CONNECTION));
    loop {
        let Ok(permit) = streams.clone().acquire_owned().await else {
            return;
        };
        let (mut send, mut receive) = match direct.connection.accept_bi().await {
            Ok(stream) => stream,
            Err(error) => {
                let stats = direct.connection.stats();
                tracing::debug!(peer = %direct.peer, remote = %direct.remote, %error,
                    rtt_us = stats.path.rtt.as_micros() as u64,
                    cwnd = stats.path.cwnd,
                    mtu = stats.path.current_mtu,
                    sent_packets = stats.path.sent_packets,
                    lost_packets = stats.path.lost_packets,
                    congestion_events = stats.path.congestion_events,
                    "direct transfer connection ended");
                return;
            }
        };
        let transfers = transfers.clone();
        let puller = puller.clone();
        let peer = direct.peer;
        crate::runtime::spawn(async move {
            let _permit = permit;
            let answered = match receive.read_to_end(MAX_REQUEST).await {
                Ok(request) => match decode_pull(&request) {
                    Some(Ok(pull)) => answer(&transfers, &puller, pull).await,
                    Some(Err(error)) => Err(error),
                    None => Err("this stream carries transfer pulls only".into()),
                },
                Err(error) => {
                    tracing::debug!(%peer, %error, "cannot read a direct transfer pull");
                    return;
                }
            };
            let (status, body) = match answered {
                Ok(bytes) => (OK, bytes),
                Err(text) => (REFUSED, text.into_bytes().into()),
            };
            let written = async {
                send.write_all(&[status]).await?;
                // Handed over as it is: quinn keeps it until acknowledged, with no copy.
                send.write_chunk(body).await?;
                send.finish()?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            if let Err(error) = written.await {
                tracing::debug!(%peer, %error, "cannot answer a direct transfer pull");
            }
        });
    }
}
