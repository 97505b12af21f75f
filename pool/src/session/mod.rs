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
//!
//! With TLS the socket carries ciphertext, so the wrapper goes twice: once on the socket,
//! where it sees the `SSLRequest` and the server's one-byte answer and, after an `S`, lets
//! the encrypted bytes pass unread; and once on the TLS stream
//! (`tls::TrackedTls` wraps whatever the TLS connector returns), where the start-up
//! and everything after it are plain again. After an `N` (`sslmode=prefer` against a server
//! without TLS) the socket's wrapper goes on reading the plain start-up itself.

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
    /// The address, and the host name TLS checks.
    Tcp(std::net::SocketAddr, String),
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
    /// Notified on a `ReadyForQuery` when someone waits for one (`waiting`).
    readied: Notify,
    /// Tasks in [`drained`](Session::drained) or [`answered_up_to`](Session::answered_up_to):
    /// with none, a `ReadyForQuery` costs no notification (whose lock every query would take).
    waiting: std::sync::atomic::AtomicUsize,
    /// The server process's id, from `BackendKeyData` (0 until it arrives).
    pid: std::sync::atomic::AtomicU32,
    /// Errors with SQLSTATE 25006 (a write refused in a read-only transaction) received.
    read_only_refusals: std::sync::atomic::AtomicU32,
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
            waiting: std::sync::atomic::AtomicUsize::new(0),
            pid: std::sync::atomic::AtomicU32::new(0),
            read_only_refusals: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

impl Session {
    /// The session's status now.
    pub fn status(&self) -> SessionStatus {
        // Sequentially consistent with `got_ready`'s count and look at `waiting` (see there).
        let ready = self.ready.load(SeqCst);
        if self.sent.load(SeqCst) > ready {
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
        let _waiting = self.wait();
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

    /// Counts a waiter for `ReadyForQuery` until the guard drops (cancel safe).
    fn wait(&self) -> impl Sized + '_ {
        self.waiting.fetch_add(1, SeqCst);
        crate::on_drop::on_drop(|| {
            self.waiting.fetch_sub(1, SeqCst);
        })
    }

    /// Requests sent so far that expect a `ReadyForQuery` (the start-up is the first).
    pub(crate) fn requests_sent(&self) -> u64 {
        self.sent.load(Acquire)
    }

    /// Requests the server has answered so far (its `ReadyForQuery` messages).
    pub(crate) fn requests_answered(&self) -> u64 {
        self.ready.load(SeqCst)
    }

    /// Waits until the server has answered `n` requests: the `n`th and every one before it
    /// ended (cancel safe; the caller bounds it).
    pub(crate) async fn answered_up_to(&self, n: u64) {
        let _waiting = self.wait();
        loop {
            let readied = self.readied.notified();
            tokio::pin!(readied);
            readied.as_mut().enable();
            if self.requests_answered() >= n {
                return;
            }
            readied.await;
        }
    }

    /// Whether the server refused a write on this session as read-only (SQLSTATE 25006): a
    /// standby, or a primary whose sessions became read-only.
    pub fn refused_write(&self) -> bool {
        self.read_only_refusals.load(Acquire) > 0
    }

    /// An `ErrorResponse` began with these fields (as far as the tracker keeps them).
    fn got_error(&self, fields: &[u8]) {
        const CODE: &[u8] = b"C25006\0";
        let refused = fields.starts_with(CODE)
            || fields
                .windows(CODE.len() + 1)
                .any(|w| w[0] == 0 && &w[1..] == CODE);
        if refused {
            self.read_only_refusals.fetch_add(1, AcqRel);
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
        // A waiter counts itself, then reads `ready`; this counts `ready`, then reads the
        // waiters, all sequentially consistent: either it sees the new count, or this sees it
        // (and it enabled its notification before it looked).
        self.ready.fetch_add(1, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            self.readied.notify_waiters();
        }
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
    /// Whether the current message's body is passed unread (no event needs it).
    skip_body: bool,
    /// The first four body bytes of the current message, as far as seen (for 'K').
    lead: [u8; 4],
    lead_len: usize,
    /// Whether to keep the first bytes of `ErrorResponse`s (the server's side only: the
    /// client's 'E' is `Execute`).
    errors: bool,
    /// The first bytes of the current `ErrorResponse`: its severity and SQLSTATE fields.
    error: [u8; ERROR_KEPT],
    error_len: usize,
}

/// Enough of an `ErrorResponse` for its first three fields (`S`, `V`, `C`) with room for a
/// translated severity.
const ERROR_KEPT: usize = 48;

/// The first word of an `SSLRequest` and of a `GSSENCRequest`: untyped messages after which
/// the server answers one unframed byte, and the start-up (untyped again) follows.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

/// One message boundary the framing found.
enum Event<'a> {
    /// A message of this type began (its header is complete).
    Began(u8),
    /// The first body byte of the current message.
    FirstByte(u8, u8),
    /// The first four body bytes of the current message, as a big-endian number.
    FirstWord(u8, u32),
    /// The first bytes of an `ErrorResponse`, once they are in (or the message ended).
    Error(&'a [u8]),
}

impl Framing {
    fn new(untyped_first: bool) -> Self {
        Self {
            errors: false,
            error: [0; ERROR_KEPT],
            error_len: 0,
            untyped_first,
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            kind: 0,
            body_started: false,
            skip_body: false,
            lead: [0; 4],
            lead_len: 0,
        }
    }

    /// Feeds `bytes`, calling `on` for each message start and first body byte.
    ///
    /// The common case costs a length check per message: a message whose header is whole in
    /// `bytes` is read in place, and one nobody reads the body of (every type but `K`, the
    /// untyped start-up and, on the server's side, `E`) is stepped over by its length; a
    /// `ReadyForQuery` gives its status byte there too. Only a header or a body split across
    /// reads, and the few bodies that are read, take the general path.
    fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(Event<'_>)) {
        while !bytes.is_empty() {
            if self.body_left == 0 && self.header_len == 0 && !self.untyped_first {
                bytes = self.whole_messages(bytes, &mut on);
                if bytes.is_empty() {
                    return;
                }
            }
            if self.body_left > 0 {
                if self.skip_body {
                    let n = self.body_left.min(bytes.len());
                    self.body_left -= n;
                    bytes = &bytes[n..];
                } else {
                    bytes = self.body(bytes, &mut on);
                }
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
            self.header_len = 0;
            let h = self.header;
            let (kind, len) = if self.untyped_first {
                self.untyped_first = false;
                (0, u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
            } else {
                (h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]]))
            };
            self.begin(kind, len, &mut on);
        }
    }

    /// Steps over the typed messages that begin at the start of `bytes` and whose bodies are
    /// not read (a `ReadyForQuery`'s one byte is read here), up to the first that is split
    /// or has a body to read, whose header it then takes; returns the rest.
    #[inline]
    fn whole_messages<'b>(
        &mut self,
        mut bytes: &'b [u8],
        on: &mut impl FnMut(Event<'_>),
    ) -> &'b [u8] {
        while bytes.len() >= 5 {
            let kind = bytes[0];
            let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            // A length below 4 (malformed) still spans its header, as on the general path.
            let whole = len.max(4) + 1;
            if kind == b'Z' && len == 5 && bytes.len() >= 6 {
                on(Event::Began(kind));
                on(Event::FirstByte(kind, bytes[5]));
            } else if bytes.len() >= whole && !self.reads_body(kind) {
                on(Event::Began(kind));
            } else {
                self.begin(kind, len as u32, on);
                return &bytes[5..];
            }
            bytes = &bytes[whole..];
        }
        bytes
    }

    /// Whether the body of a message of `kind` is read (see [`Framing::feed`]).
    #[inline]
    fn reads_body(&self, kind: u8) -> bool {
        matches!(kind, b'Z' | b'K') || (self.errors && kind == b'E')
    }

    /// A message of `kind` and length `len` (which counts itself) begins.
    fn begin(&mut self, kind: u8, len: u32, on: &mut impl FnMut(Event<'_>)) {
        self.kind = kind;
        self.body_started = false;
        self.lead_len = 0;
        self.error_len = 0;
        self.skip_body = kind != 0 && !self.reads_body(kind);
        self.body_left = (len as usize).saturating_sub(4);
        if kind != 0 {
            on(Event::Began(kind));
        }
    }

    /// Passes body bytes of a message whose first bytes are read; returns the rest.
    fn body<'b>(&mut self, bytes: &'b [u8], on: &mut impl FnMut(Event<'_>)) -> &'b [u8] {
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
                let word = u32::from_be_bytes(self.lead);
                if self.kind == 0 && ENCRYPTION_REQUESTS.contains(&word) {
                    self.untyped_first = true;
                }
                on(Event::FirstWord(self.kind, word));
            }
        }
        if self.errors && self.kind == b'E' && self.error_len < ERROR_KEPT {
            let take = (ERROR_KEPT - self.error_len).min(n);
            self.error[self.error_len..self.error_len + take].copy_from_slice(&bytes[..take]);
            self.error_len += take;
            if self.error_len == ERROR_KEPT || self.body_left == n {
                on(Event::Error(&self.error[..self.error_len]));
                // Seen: nothing more is kept of this message.
                self.error_len = ERROR_KEPT;
            }
        }
        self.body_left -= n;
        &bytes[n..]
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
    /// Where an encryption request stands on this stream.
    encryption: Encryption,
}

/// An `SSLRequest` (or `GSSENCRequest`) seen on the socket, and what came of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encryption {
    /// None sent, or the server said no: the bytes are plain PostgreSQL messages.
    Plain,
    /// Sent; the server's next byte says yes (`S`/`G`) or no (`N`), outside any framing.
    Asked,
    /// Accepted: the bytes are ciphertext from here on, tracked above the TLS stream.
    Encrypted,
}

impl<S> Tracked<S> {
    /// Wraps a fresh connection's socket, before the start-up message is sent.
    pub fn new(inner: S, session: Arc<Session>) -> Self {
        Self {
            inner,
            session,
            down: Framing {
                errors: true,
                ..Framing::new(false)
            },
            up: Framing::new(true),
            encryption: Encryption::Plain,
        }
    }

    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    /// Wraps a socket whose bytes are all ciphertext (`sslnegotiation=direct`): nothing on it
    /// is read; the TLS stream above it is tracked instead.
    pub(crate) fn encrypted(inner: S, session: Arc<Session>) -> Self {
        Self {
            encryption: Encryption::Encrypted,
            ..Self::new(inner, session)
        }
    }

    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    /// The stream inside.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
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
            let mut new = &buf.filled()[before..];
            if this.encryption == Encryption::Asked
                && let Some((&answer, rest)) = new.split_first()
            {
                this.encryption = match answer {
                    b'S' | b'G' => Encryption::Encrypted,
                    _ => Encryption::Plain,
                };
                new = rest;
            }
            if this.encryption == Encryption::Encrypted {
                return result;
            }
            let session = &this.session;
            this.down.feed(new, |event| match event {
                Event::FirstByte(b'Z', status) => session.got_ready(status),
                Event::FirstWord(b'K', pid) => session.set_pid(pid),
                Event::Error(fields) => session.got_error(fields),
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
        if let Poll::Ready(Ok(n)) = result
            && this.encryption != Encryption::Encrypted
        {
            let session = &this.session;
            let mut asked = false;
            this.up.feed(&buf[..n], |event| match event {
                Event::Began(b'Q' | b'S') => session.sent_request(),
                Event::FirstWord(0, word) => asked |= ENCRYPTION_REQUESTS.contains(&word),
                _ => {}
            });
            if asked {
                this.encryption = Encryption::Asked;
            }
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
mod tests;
