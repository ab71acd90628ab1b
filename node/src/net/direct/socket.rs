//! The one UDP socket QUIC and punching share: quinn reads through this wrapper, which takes out
//! our plain datagrams (reflector answers, probes; `protocol::direct`) before QUIC sees them, so
//! probes leave from — and open NAT mappings for — exactly the port QUIC then uses.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use remote_agents_protocol::direct::is_plain_datagram;
use tokio::sync::mpsc;

/// Plain datagrams waiting for the dispatcher; beyond this many they are dropped, as the
/// network itself may drop them (probes repeat; a flood only loses its own datagrams).
pub(crate) const PLAIN_QUEUE: usize = 256;

pub(crate) struct DemuxSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    plain: mpsc::Sender<(Vec<u8>, SocketAddr)>,
}

impl fmt::Debug for DemuxSocket {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("DemuxSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl DemuxSocket {
    pub(crate) fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        plain: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    ) -> Self {
        DemuxSocket { inner, plain }
    }

    /// Sends one plain datagram; a full socket buffer drops it (the callers repeat).
    pub(crate) fn send_plain(&self, destination: SocketAddr, datagram: &[u8]) {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip: None,
        };
        if let Err(error) = self.inner.try_send(&transmit) {
            tracing::debug!(%destination, %error, "plain datagram not sent");
        }
    }
}

impl AsyncUdpSocket for DemuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // quinn batches up to ten segments of the path's MTU into one GSO send, but the kernel
        // takes at most one IP packet's worth (64 KiB) per send and answers more with EMSGSIZE,
        // which quinn-udp drops silently: with a large path MTU (loopback, jumbo frames) the
        // batch goes out in pieces of as many whole segments as fit.
        let limit = match transmit.destination {
            SocketAddr::V4(_) => 65_507,
            SocketAddr::V6(_) => usize::from(super::MAX_UDP_PAYLOAD),
        };
        let segment = match transmit.segment_size {
            Some(segment) if transmit.contents.len() > limit && segment > 0 => segment,
            _ => return self.inner.try_send(transmit),
        };
        let per_send = (limit / segment).max(1) * segment;
        for piece in transmit.contents.chunks(per_send) {
            // A full socket buffer after the first piece: quinn sends the whole batch again once
            // writable, and the receiver drops the pieces it already has as duplicates.
            self.inner.try_send(&Transmit {
                contents: piece,
                segment_size: (piece.len() > segment).then_some(segment),
                ..*transmit
            })?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // One buffer per read, so a plain datagram is taken out without shifting a batch
        // (GRO still coalesces QUIC's datagrams into that one buffer).
        let (Some(buf), Some(meta)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            match self
                .inner
                .poll_recv(cx, std::slice::from_mut(buf), std::slice::from_mut(meta))
            {
                Poll::Ready(Ok(count)) if count > 0 => {
                    let datagram = &buf[..meta.len];
                    if meta.len == meta.stride && is_plain_datagram(datagram) {
                        let _ = self.plain.try_send((datagram.to_vec(), meta.addr));
                        continue;
                    }
                    return Poll::Ready(Ok(count));
                }
                other => return other,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
