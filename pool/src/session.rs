//! [`Session`]: what state a connection's server session is in, known without a round trip.
//!
//! # Implementation details
//! The pool owns each connection's socket ([`Tracked`] wraps it below tokio-postgres), and
//! reads the PostgreSQL protocol's framing as bytes pass: every message is a type byte and a
//! length. Two things are counted:
//! - requests sent that expect a `ReadyForQuery` answer: a simple `Query` ('Q') or a `Sync`
//!   ('S') from the client, plus the start-up, which ends with one;
//! - `ReadyForQuery` ('Z') messages from the server, whose one byte of body is the
//!   transaction status: `I` idle, `T` in a transaction block, `E` in a failed one.
//!
//! A session with more requests sent than answered has a request in flight (its future was
//! dropped: the server still runs it). Nothing is parsed beyond the framing, so a large row
//! costs one length check, and the counts are atomics the return path reads for free.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::*};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What a session is doing, as far as the pool can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Ready, outside any transaction: can be reused as it is.
    Idle,
    /// Inside a transaction block (`BEGIN` without `COMMIT` or `ROLLBACK`).
    InTransaction,
    /// Inside a failed transaction block: every statement fails until `ROLLBACK`.
    FailedTransaction,
    /// A request was sent and its answer has not arrived (its future was dropped).
    Busy,
}

/// Where a session's server is, for a cancel request on a connection of its own.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    Tcp(std::net::SocketAddr),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// The tracked state of one session, shared by its socket wrapper and the pool.
#[derive(Debug)]
pub struct Session {
    /// Where its server is (set by the connector that opened it).
    pub(crate) peer: std::sync::OnceLock<Peer>,
    /// The last `ReadyForQuery` status byte (`I` before the first).
    status: AtomicU8,
    /// Requests sent that expect a `ReadyForQuery`.
    sent: AtomicU64,
    /// `ReadyForQuery` messages received.
    ready: AtomicU64,
    /// Notified on every `ReadyForQuery`.
    readied: Notify,
    /// The server process's id, from `BackendKeyData` (0 until it arrives).
    pid: std::sync::atomic::AtomicU32,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            peer: std::sync::OnceLock::new(),
            status: AtomicU8::new(b'I'),
            // The start-up is a request: it ends with the first ReadyForQuery.
            sent: AtomicU64::new(1),
            ready: AtomicU64::new(0),
            readied: Notify::new(),
            pid: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

impl Session {
    /// The session's status now.
    pub fn status(&self) -> SessionStatus {
        let ready = self.ready.load(Acquire);
        if self.sent.load(Acquire) > ready {
            return SessionStatus::Busy;
        }
        match self.status.load(Acquire) {
            b'T' => SessionStatus::InTransaction,
            b'E' => SessionStatus::FailedTransaction,
            _ => SessionStatus::Idle,
        }
    }

    /// The server process serving this session, once the start-up told it.
    pub fn backend_pid(&self) -> Option<u32> {
        Some(self.pid.load(Acquire)).filter(|p| *p != 0)
    }

    /// Waits until no request is in flight (cancel safe; the caller bounds it).
    pub async fn drained(&self) {
        loop {
            let readied = self.readied.notified();
            tokio::pin!(readied);
            readied.as_mut().enable();
            if self.status() != SessionStatus::Busy {
                return;
            }
            readied.await;
        }
    }

    pub(crate) fn sent_request(&self) {
        self.sent.fetch_add(1, AcqRel);
    }

    pub(crate) fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Release);
    }

    pub(crate) fn got_ready(&self, status: u8) {
        self.status.store(status, Release);
        self.ready.fetch_add(1, AcqRel);
        self.readied.notify_waiters();
    }
}

/// Reads the framing of one direction of the protocol, byte chunk by byte chunk.
#[derive(Debug)]
struct Framing {
    /// The start-up message (client side) has no type byte.
    untyped_first: bool,
    /// Bytes of the current header read so far (type + 4 length bytes, or 4 when untyped).
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current message still to pass.
    body_left: usize,
    /// The current message's type.
    kind: u8,
    /// Whether the current message's first body byte was seen (for 'Z').
    body_started: bool,
    /// The first four body bytes of the current message, as far as seen (for 'K').
    lead: [u8; 4],
    lead_len: usize,
}

/// One message boundary the framing found.
enum Event {
    /// A message of this type began (its header is complete).
    Began(u8),
    /// The first body byte of the current message.
    FirstByte(u8, u8),
    /// The first four body bytes of the current message, as a big-endian number.
    FirstWord(u8, u32),
}

impl Framing {
    fn new(untyped_first: bool) -> Self {
        Self {
            untyped_first,
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            kind: 0,
            body_started: false,
            lead: [0; 4],
            lead_len: 0,
        }
    }

    /// Feeds `bytes`, calling `on` for each message start and first body byte.
    fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(Event)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                if !self.body_started {
                    self.body_started = true;
                    on(Event::FirstByte(self.kind, bytes[0]));
                }
                let n = self.body_left.min(bytes.len());
                if self.lead_len < 4 {
                    let take = (4 - self.lead_len).min(n);
                    self.lead[self.lead_len..self.lead_len + take].copy_from_slice(&bytes[..take]);
                    self.lead_len += take;
                    if self.lead_len == 4 {
                        on(Event::FirstWord(self.kind, u32::from_be_bytes(self.lead)));
                    }
                }
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let want = if self.untyped_first { 4 } else { 5 };
            let n = (want - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len < want {
                return;
            }
            let (kind, len) = if self.untyped_first {
                self.untyped_first = false;
                (
                    0,
                    u32::from_be_bytes(self.header[..4].try_into().expect("4 bytes")),
                )
            } else {
                (
                    self.header[0],
                    u32::from_be_bytes(self.header[1..5].try_into().expect("4 bytes")),
                )
            };
            self.header_len = 0;
            self.kind = kind;
            self.body_started = false;
            self.lead_len = 0;
            // The length counts itself.
            self.body_left = (len as usize).saturating_sub(4);
            if kind != 0 {
                on(Event::Began(kind));
            }
        }
    }
}

/// A socket whose PostgreSQL traffic updates a [`Session`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    session: Arc<Session>,
    /// Server to client.
    down: Framing,
    /// Client to server.
    up: Framing,
}

impl<S> Tracked<S> {
    /// Wraps a fresh connection's socket, before the start-up message is sent.
    pub fn new(inner: S, session: Arc<Session>) -> Self {
        Self {
            inner,
            session,
            down: Framing::new(false),
            up: Framing::new(true),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let session = &this.session;
            this.down
                .feed(&buf.filled()[before..], |event| match event {
                    Event::FirstByte(b'Z', status) => session.got_ready(status),
                    Event::FirstWord(b'K', pid) => session.set_pid(pid),
                    _ => {}
                });
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            let session = &this.session;
            this.up.feed(&buf[..n], |event| {
                if let Event::Began(b'Q' | b'S') = event {
                    session.sent_request();
                }
            });
        }
        result
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

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// Feeds both directions as a server and client would, in chunks of `chunk` bytes.
    fn run(up: &[u8], down: &[u8], chunk: usize) -> Arc<Session> {
        let session = Arc::new(Session::default());
        let mut t = Tracked::new((), Arc::clone(&session));
        for c in up.chunks(chunk) {
            let s = &t.session;
            t.up.feed(c, |e| {
                if let Event::Began(b'Q' | b'S') = e {
                    s.sent_request();
                }
            });
        }
        for c in down.chunks(chunk) {
            let s = &t.session;
            t.down.feed(c, |e| match e {
                Event::FirstByte(b'Z', st) => s.got_ready(st),
                Event::FirstWord(b'K', pid) => s.pid.store(pid, Release),
                _ => {}
            });
        }
        session
    }

    fn startup() -> Vec<u8> {
        let mut m = (8u32 + 9).to_be_bytes().to_vec();
        m.extend_from_slice(&196608u32.to_be_bytes());
        m.extend_from_slice(b"user\0app\0");
        m
    }

    #[test]
    fn follows_the_transaction_status_at_any_chunking() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            // Start-up, then BEGIN (simple query), answered with ReadyForQuery 'T'.
            let mut up = startup();
            up.extend(msg(b'Q', b"BEGIN\0"));
            let mut down = msg(b'R', &[0, 0, 0, 0]);
            down.extend(msg(b'S', b"a\0b\0"));
            down.extend(msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
            down.extend(msg(b'Z', b"I"));
            down.extend(msg(b'C', b"BEGIN\0"));
            down.extend(msg(b'Z', b"T"));
            let session = run(&up, &down, chunk);
            assert_eq!(session.status(), SessionStatus::InTransaction, "{chunk}");
            assert_eq!(session.backend_pid(), Some(12345), "{chunk}");
            // ... then a failing extended query: Parse/Bind/Execute/Sync, error, 'E'.
            let mut up2 = up.clone();
            up2.extend(msg(b'P', b"\0SELECT 1/0\0\0\0"));
            up2.extend(msg(b'E', b"\0\0\0\0\0"));
            up2.extend(msg(b'S', b""));
            let mut down2 = down.clone();
            down2.extend(msg(b'E', b"SERROR\0\0"));
            down2.extend(msg(b'Z', b"E"));
            assert_eq!(
                run(&up2, &down2, chunk).status(),
                SessionStatus::FailedTransaction
            );
            // A query sent and not answered: busy, whatever the last status said.
            let mut up3 = up.clone();
            up3.extend(msg(b'Q', b"SELECT pg_sleep(5)\0"));
            assert_eq!(run(&up3, &down, chunk).status(), SessionStatus::Busy);
            // Until the start-up has answered, the session is busy too.
            assert_eq!(run(&startup(), &[], chunk).status(), SessionStatus::Busy);
        }
    }

    #[test]
    fn a_large_row_is_skipped_by_its_length() {
        let mut up = startup();
        up.extend(msg(b'Q', b"SELECT repeat('x', 100000)\0"));
        let mut down = msg(b'Z', b"I");
        down.extend(msg(b'D', &vec![b'Z'; 100_000]));
        down.extend(msg(b'Z', b"I"));
        assert_eq!(run(&up, &down, 1000).status(), SessionStatus::Idle);
    }

    #[tokio::test]
    async fn drained_returns_once_the_answer_arrives() {
        let session = Arc::new(Session::default());
        assert_eq!(session.status(), SessionStatus::Busy);
        let s = Arc::clone(&session);
        let waiter = tokio::spawn(async move { s.drained().await });
        tokio::task::yield_now().await;
        session.got_ready(b'I');
        waiter.await.unwrap();
        assert_eq!(session.status(), SessionStatus::Idle);
    }

    /// The wrapper as tokio-postgres drives it: bytes pass unchanged both ways (written,
    /// flushed, shut down), and the session follows them.
    #[tokio::test]
    async fn the_wrapper_passes_every_byte_and_tracks_them() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
        let (ours, mut server) = tokio::io::duplex(1 << 16);
        let session = Arc::new(Session::default());
        // Buffered below the wrapper, so a flush that is not passed on loses the bytes.
        let mut client = Tracked::new(BufWriter::new(ours), Arc::clone(&session));
        let mut up = startup();
        up.extend(msg(b'Q', b"BEGIN\0"));
        client.write_all(&up).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; up.len()];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            server.read_exact(&mut got),
        )
        .await
        .expect("flushed through")
        .unwrap();
        assert_eq!(got, up);
        assert_eq!(session.status(), SessionStatus::Busy);
        let mut down = msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]);
        down.extend(msg(b'Z', b"I"));
        down.extend(msg(b'Z', b"T"));
        server.write_all(&down).await.unwrap();
        let mut read = vec![0u8; down.len()];
        client.read_exact(&mut read).await.unwrap();
        assert_eq!(read, down);
        assert_eq!(session.status(), SessionStatus::InTransaction);
        assert_eq!(session.backend_pid(), Some(12345));
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            server.read_to_end(&mut rest),
        )
        .await
        .expect("the shutdown reached the other end")
        .unwrap();
        assert!(rest.is_empty());
    }
}
