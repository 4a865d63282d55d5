//! The cap on open connections (`limits.max_connections`): an acceptor that runs before
//! the TLS handshake, so that handshakes in progress count too. A connection over the cap
//! is closed at once, before a byte is read from it; each connection gives its slot back
//! when it closes, however it closes.
//!
//! It also sets TCP_NODELAY on every accepted connection: without it a response written
//! in more than one piece (headers, then a body of a few KB) waits for the client's
//! delayed ACK, 40 ms on Linux, which was most of a folder page's time.

use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use bitmail_runtime::metrics::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub(crate) struct ConnectionCap {
    slots: Arc<Semaphore>,
    metrics: Registry,
}

impl ConnectionCap {
    pub fn new(max_connections: usize, metrics: Registry) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_connections)), metrics }
    }
}

impl<S> Accept<TcpStream, S> for ConnectionCap {
    type Stream = Capped<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Capped<TcpStream>, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        if let Err(e) = stream.set_nodelay(true) {
            return ready(Err(e));
        }
        ready(match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok((Capped { stream, _slot: slot }, service)),
            Err(_) => {
                crate::limits::shed(&self.metrics, "connections");
                // Dropping `stream` here closes it.
                Err(io::Error::other("at limits.max_connections: connection closed"))
            }
        })
    }
}

/// A connection that holds its slot.
pub(crate) struct Capped<I> {
    stream: I,
    _slot: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Capped<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Capped<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
