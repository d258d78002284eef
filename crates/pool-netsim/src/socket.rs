//! The client side of every connection, as the checkers see it: each pool's connects dial through [`Sockets::dial`], whose stream records when it ended and when it was dropped.
//!
//! The invariants of the network simulation are measured here and at the
//! fake server, never from a pool's report of itself: a pool may say a
//! connection is fine, but its socket has already read the server's FIN, or
//! say it closed one whose socket it never dropped. The server sees the
//! client's address as the session's `peer`; that address is the key here.
//!
//! A failed dial still yields a stream: `tokio_postgres::Error` has no
//! public constructor, so a connect function that must return one (a bb8
//! manager, deadpool's `Connect`) hands `connect_raw` a stream that fails
//! on first use, and tokio-postgres reports the dial error as its own.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use turmoil::net::TcpStream;

/// What the client knows of one socket it dialled.
#[derive(Clone, Debug)]
pub struct SocketLife {
    /// The role (the pool) it was dialled for.
    pub role: String,
    /// When a read saw EOF or an error, a write failed, or the client shut
    /// it down or dropped it: from then on the client can know the
    /// connection is gone. Host-local time: compare it only with instants
    /// of the same host.
    pub ended_at: Option<Instant>,
    /// The client dropped it: from then on the server's session is closing,
    /// whether or not its FIN ever arrives.
    pub dropped: bool,
    /// Taken out of its pool for good (detach): no longer the pool's.
    pub detached: bool,
}

/// Every client socket dialled, by local address (the server's `peer`; a
/// port the host reuses replaces the old entry).
#[derive(Clone, Debug, Default)]
pub struct Sockets {
    held: Arc<Mutex<BTreeMap<SocketAddr, SocketLife>>>,
    /// `Some`: dial this real TCP address (tokio) instead of the turmoil
    /// host named in [`Sockets::dial`], for the runs against a real server.
    real: Option<SocketAddr>,
}

impl Sockets {
    /// A table whose dials go to `addr` over real TCP (tokio), whatever
    /// host and port the caller names: the pools under test, unchanged,
    /// against a real PostgreSQL.
    pub fn real(addr: SocketAddr) -> Sockets {
        Sockets {
            held: Arc::default(),
            real: Some(addr),
        }
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, SocketLife>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Dial `host:port` for `role`. A failed dial gives a stream whose every
    /// read and write fails with the dial's error.
    pub async fn dial(&self, role: &str, host: &str, port: u16) -> WatchedStream {
        let dialled = match self.real {
            Some(addr) => tokio::net::TcpStream::connect(addr).await.map(Stream::Real),
            None => TcpStream::connect((host, port)).await.map(Stream::Sim),
        };
        match dialled {
            Ok(stream) => {
                let local = stream.local_addr().ok();
                if let Some(addr) = local {
                    self.table().insert(
                        addr,
                        SocketLife {
                            role: role.to_owned(),
                            ended_at: None,
                            dropped: false,
                            detached: false,
                        },
                    );
                }
                WatchedStream {
                    state: Dialled::Connected { stream, local },
                    sockets: self.clone(),
                }
            }
            Err(e) => WatchedStream {
                state: Dialled::Failed(e.kind(), e.to_string()),
                sockets: self.clone(),
            },
        }
    }

    /// The socket at `addr`, if one was dialled.
    pub fn life(&self, addr: SocketAddr) -> Option<SocketLife> {
        self.table().get(&addr).cloned()
    }

    /// Whether the client still holds the socket at `addr`.
    pub fn is_held(&self, addr: SocketAddr) -> bool {
        self.table().get(&addr).is_some_and(|life| !life.dropped)
    }

    /// Whether the client holds the socket at `addr` for its pool (held,
    /// and not detached).
    pub fn is_pooled(&self, addr: SocketAddr) -> bool {
        self.table()
            .get(&addr)
            .is_some_and(|life| !life.dropped && !life.detached)
    }

    /// The connection on `addr` left its pool for good.
    pub fn mark_detached(&self, addr: SocketAddr) {
        if let Some(life) = self.table().get_mut(&addr) {
            life.detached = true;
        }
    }

    /// Whether the socket at `addr` has ended or been dropped.
    pub fn has_ended(&self, addr: SocketAddr) -> bool {
        self.life(addr).is_none_or(|life| life.ended_at.is_some())
    }

    fn ended(&self, addr: SocketAddr) {
        if let Some(life) = self.table().get_mut(&addr) {
            life.ended_at.get_or_insert_with(Instant::now);
        }
    }

    fn dropped(&self, addr: SocketAddr) {
        if let Some(life) = self.table().get_mut(&addr) {
            life.ended_at.get_or_insert_with(Instant::now);
            life.dropped = true;
        }
    }
}

/// A turmoil stream in a simulation, a tokio one against a real server.
enum Stream {
    Sim(TcpStream),
    Real(tokio::net::TcpStream),
}

impl Stream {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Sim(s) => s.local_addr(),
            Stream::Real(s) => s.local_addr(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Sim(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Real(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Sim(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Real(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Sim(s) => Pin::new(s).poll_flush(cx),
            Stream::Real(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Sim(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Real(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

enum Dialled {
    Connected {
        stream: Stream,
        local: Option<SocketAddr>,
    },
    Failed(io::ErrorKind, String),
}

/// A TCP stream (turmoil's, or tokio's against a real server) that tells [`Sockets`] when it ends and when it is
/// dropped.
pub struct WatchedStream {
    state: Dialled,
    sockets: Sockets,
}

impl std::fmt::Debug for WatchedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            Dialled::Connected { local, .. } => write!(f, "WatchedStream({local:?})"),
            Dialled::Failed(_, e) => write!(f, "WatchedStream(failed: {e})"),
        }
    }
}

impl WatchedStream {
    /// The client's address (the server's `peer`); `None` if the dial
    /// failed.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.state {
            Dialled::Connected { local, .. } => *local,
            Dialled::Failed(..) => None,
        }
    }

    /// The dial's error, as an IO error, if it failed.
    pub fn dial_error(&self) -> Option<io::Error> {
        match &self.state {
            Dialled::Failed(kind, e) => Some(io::Error::new(*kind, e.clone())),
            Dialled::Connected { .. } => None,
        }
    }

    fn note<T>(&self, result: &Poll<io::Result<T>>) {
        if let (Poll::Ready(Err(_)), Some(addr)) = (result, self.local_addr()) {
            self.sockets.ended(addr);
        }
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = match &mut this.state {
            Dialled::Connected { stream, .. } => Pin::new(stream).poll_read(cx, buf),
            Dialled::Failed(kind, e) => Poll::Ready(Err(io::Error::new(*kind, e.clone()))),
        };
        this.note(&result);
        let eof = matches!(result, Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0;
        if let (true, Some(addr)) = (eof, this.local_addr()) {
            this.sockets.ended(addr);
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.state {
            Dialled::Connected { stream, .. } => Pin::new(stream).poll_write(cx, buf),
            Dialled::Failed(kind, e) => Poll::Ready(Err(io::Error::new(*kind, e.clone()))),
        };
        this.note(&result);
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match &mut this.state {
            Dialled::Connected { stream, .. } => Pin::new(stream).poll_flush(cx),
            Dialled::Failed(kind, e) => Poll::Ready(Err(io::Error::new(*kind, e.clone()))),
        };
        this.note(&result);
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match &mut this.state {
            Dialled::Connected { stream, .. } => Pin::new(stream).poll_shutdown(cx),
            Dialled::Failed(..) => Poll::Ready(Ok(())),
        };
        if let Some(addr) = this.local_addr() {
            // The client closes its side: it knows the connection is over.
            this.sockets.ended(addr);
        }
        result
    }
}

impl Drop for WatchedStream {
    fn drop(&mut self) {
        if let Some(addr) = self.local_addr() {
            self.sockets.dropped(addr);
        }
    }
}
