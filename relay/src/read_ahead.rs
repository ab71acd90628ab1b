//! A read-ahead buffer that exists only while a connection is busy.
//!
//! tungstenite reads the socket in chunks of its `read_buffer_size`, and that buffer is
//! allocated for the life of the connection. A small one keeps 10,000 idle connections cheap but
//! turns one 64 KiB frame into sixteen `read` calls; a big one costs its size on every idle
//! connection. This wrapper sits between the two: it reads up to [`CHUNK`] bytes per system
//! call into a buffer of its own and serves tungstenite's small reads from memory, and it gives
//! the buffer back as soon as the socket has nothing more (the read would block), so an idle
//! connection holds none of it. The buffer starts small ([`FIRST`]) and grows while reads fill
//! it, so a ping or a short frame costs a small allocation, not 64 KiB.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket per system call while data keeps coming.
pub(crate) const CHUNK: usize = 64 * 1024;
/// The read-ahead size after a quiet spell.
pub(crate) const FIRST: usize = 4 * 1024;

pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Read but not yet handed out; empty (no allocation) while the connection is idle.
    pending: BytesMut,
    /// How much the next socket read asks for: x4 after a read that filled it, back to
    /// [`FIRST`] when the socket runs dry after a read that used a quarter or less.
    size: usize,
    /// Bytes the last socket read returned.
    last_read: usize,
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            pending: BytesMut::new(),
            size: FIRST,
            last_read: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            if out.remaining() >= this.size {
                // A read as big as ours gains nothing from the extra copy.
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.pending.reserve(this.size);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.pending) {
                Poll::Ready(Ok(count)) => {
                    this.last_read = count;
                    if count >= this.size {
                        this.size = (this.size * 4).min(CHUNK);
                    }
                }
                Poll::Ready(Err(error)) => {
                    this.pending = BytesMut::new();
                    return Poll::Ready(Err(error));
                }
                Poll::Pending => {
                    // Nothing more for now: an idle connection keeps no read-ahead memory.
                    this.pending = BytesMut::new();
                    if this.last_read <= this.size / 4 {
                        this.size = FIRST;
                    }
                    return Poll::Pending;
                }
            }
            // Zero bytes read is the end of the stream: return without filling `out`.
        }
        let count = out.remaining().min(this.pending.len());
        out.put_slice(&this.pending[..count]);
        this.pending.advance(count);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_the_end() {
        let (mut writer, reader) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|index| (index % 251) as u8).collect();
        let sent = data.clone();
        let sending = tokio::spawn(async move {
            for piece in sent.chunks(70_001) {
                writer.write_all(piece).await.unwrap();
            }
        });
        let mut reader = ReadAhead::new(reader);
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let count = reader.read(&mut chunk).await.unwrap();
            if count == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..count]);
        }
        sending.await.unwrap();
        assert_eq!(received, data);
    }

    #[tokio::test]
    async fn reads_grow_while_they_fill_the_buffer() {
        let (mut writer, reader) = tokio::io::duplex(512 * 1024);
        writer.write_all(&[7u8; 300_000]).await.unwrap();
        drop(writer);
        let mut reader = ReadAhead::new(reader);
        let mut chunk = [0u8; 2048];
        let mut sizes = Vec::new();
        while reader.read(&mut chunk).await.unwrap() > 0 {
            sizes.push(reader.size);
        }
        assert_eq!(sizes.first(), Some(&(FIRST * 4)));
        assert_eq!(sizes.iter().max(), Some(&CHUNK));
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_read_ahead_buffer() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut reader = ReadAhead::new(reader);
        writer.write_all(b"hello").await.unwrap();
        let mut chunk = [0u8; 3];
        assert_eq!(reader.read(&mut chunk).await.unwrap(), 3);
        assert!(
            !reader.pending.is_empty(),
            "reads ahead while data is there"
        );
        assert!(
            reader.pending.capacity() < CHUNK,
            "a short read starts small"
        );
        assert_eq!(reader.read(&mut chunk).await.unwrap(), 2);
        // The next read finds nothing and would block: the buffer is given back.
        assert!(reader.read(&mut chunk).now_or_never().is_none());
        assert_eq!(reader.pending.capacity(), 0);
    }
}
