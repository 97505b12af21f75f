//! One direction of one proxied connection: read, pass through the toxic chain, write.
//!
//! # Implementation details
//! A connection runs in one task; its two directions are two futures joined in it, sharing the
//! two sockets by reference (`TcpStream`'s readiness API takes `&self`). With no toxic in a
//! direction, bytes go from one socket to the other through a pipe with `splice(2)`, never
//! entering user space (Linux; see `splice`), or elsewhere straight from the read buffer to
//! the other socket: no copy into a queue, no channel. With toxics, each chunk is copied into
//! the [`Chain`] with its read time, and the link sleeps until the chain's next release. Reading continues while data waits in
//! the chain (up to [`MAX_BUFFERED`]), so a latency toxic delays a stream without capping its
//! throughput. The read buffer is allocated when data arrives and freed when the socket runs
//! dry, so idle connections cost almost nothing.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::ToxicSet;
use super::stage::{Chain, CloseKind, Item, StageKey};
use super::toxic::{Stream, ToxicKind};
use super::toxics::verdict;
use crate::rng::Rng;

/// Read buffer size (64 KiB: tokio's 8 KiB default halves bulk throughput).
const BUF: usize = 64 * 1024;
/// Bytes a chain may hold before the link stops reading (backpressure).
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;

/// Everything a link needs besides its sockets.
pub(crate) struct LinkCtx<'a> {
    pub stream: Stream,
    pub bytes: &'a AtomicU64,
    /// The proxy's count of bytes spliced (either direction).
    pub zero_copied: &'a AtomicU64,
    /// Upstream only: the client's first bytes are classified here ([`FirstBytes`]).
    pub first: Option<&'a FirstBytes>,
    pub stranded: &'a AtomicBool,
    pub rng: Rng,
}

/// What clients opened their connections with (the PostgreSQL protocol's first message):
/// a session (a startup message, or an SSL or GSS encryption request, which one follows), or
/// a cancel request. A connection whose client sent nothing (a TCP probe) is neither.
#[derive(Debug, Default)]
pub(crate) struct FirstBytes {
    pub sessions: AtomicU64,
    pub cancels: AtomicU64,
}

/// PostgreSQL's CancelRequest code, in the second four bytes of the client's first message.
const CANCEL_REQUEST_CODE: [u8; 4] = 80_877_102u32.to_be_bytes();

impl FirstBytes {
    fn count(&self, first: &[u8]) {
        if first.len() >= 8 && first[4..8] == CANCEL_REQUEST_CODE {
            self.cancels.fetch_add(1, Relaxed);
        } else {
            self.sessions.fetch_add(1, Relaxed);
        }
    }
}

/// How a link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The chain (or the peer) closed the connection this way.
    Close(CloseKind),
    /// Told to stop (the other direction ended, or the proxy closed the connection).
    Stopped,
}

/// Writes all of `bytes`, or fails.
async fn write_all(dst: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        dst.writable().await?;
        match dst.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs one direction until it closes or is stopped.
pub(crate) async fn run(
    src: &TcpStream,
    dst: &TcpStream,
    mut ctx: LinkCtx<'_>,
    mut toxics: watch::Receiver<Arc<ToxicSet>>,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let mut chain = Chain::default();
    let mut rolls: std::collections::HashMap<u64, bool> = Default::default();
    let mut out: Vec<Item> = Vec::new();
    let mut buf: Option<Vec<u8>> = None;
    // With toxics, chunks are read into fresh buffers and handed to the chain without a copy.
    let mut chunk = bytes::BytesMut::new();
    let mut eof = false;
    #[cfg(target_os = "linux")]
    let mut zero_copy = ZeroCopy::default();
    rebuild(
        &mut chain,
        &mut rolls,
        &toxics.borrow_and_update(),
        &mut ctx,
        &mut out,
    );
    loop {
        if *stop.borrow() {
            return Ended::Stopped;
        }
        if ctx.stranded.load(Relaxed) {
            return stranded(src, &mut toxics, &mut stop).await;
        }
        let now = Instant::now();
        let wake = if chain.is_empty() {
            None
        } else {
            chain.step(now, &mut ctx.rng, &mut out)
        };
        for item in out.drain(..) {
            match item {
                Item::Data(bytes, _) => {
                    tokio::select! {
                        r = write_all(dst, &bytes) => if r.is_err() { return Ended::Close(CloseKind::Fin) },
                        _ = stop.changed() => return Ended::Stopped,
                    }
                    ctx.bytes.fetch_add(bytes.len() as u64, Relaxed);
                }
                Item::Close(kind) => return Ended::Close(kind),
            }
        }
        let can_read = !eof && chain.buffered() < MAX_BUFFERED;
        tokio::select! {
            biased;
            _ = stop.changed() => return Ended::Stopped,
            changed = toxics.changed() => {
                if changed.is_err() {
                    return Ended::Stopped;
                }
                let set = Arc::clone(&toxics.borrow_and_update());
                rebuild(&mut chain, &mut rolls, &set, &mut ctx, &mut out);
            }
            _ = sleep_until(wake) => {}
            ready = src.readable(), if can_read => {
                if ready.is_err() {
                    return Ended::Close(CloseKind::Reset);
                }
                if !chain.is_empty() {
                    chunk.reserve(BUF);
                    match src.try_read_buf(&mut chunk) {
                        Ok(0) => {
                            eof = true;
                            chain.push(Item::Close(CloseKind::Fin), Instant::now(), &mut ctx.rng);
                        }
                        Ok(_) => {
                            if let Some(first) = ctx.first.take() {
                                first.count(&chunk);
                            }
                            let now = Instant::now();
                            chain.push(Item::Data(chunk.split().freeze(), now), now, &mut ctx.rng);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Ended::Close(CloseKind::Reset),
                    }
                    continue;
                }
                #[cfg(target_os = "linux")]
                if ctx.first.is_none()
                    && let Some(pipe) = zero_copy.pipe()
                {
                    // The buffer of the first bytes (read in user space) is not needed again.
                    buf = None;
                    match pipe.fill(src) {
                        Ok(0) => return Ended::Close(CloseKind::Fin),
                        Ok(n) => {
                            tokio::select! {
                                r = pipe.drain(dst) => if r.is_err() { return Ended::Close(CloseKind::Fin) },
                                _ = stop.changed() => return Ended::Stopped,
                            }
                            ctx.bytes.fetch_add(n as u64, Relaxed);
                            ctx.zero_copied.fetch_add(n as u64, Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        // The sockets do not take splice: nothing moved, copy instead.
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => zero_copy.refused(),
                        Err(_) => return Ended::Close(CloseKind::Reset),
                    }
                    continue;
                }
                let b = buf.get_or_insert_with(|| vec![0; BUF]);
                match src.try_read(b) {
                    Ok(0) => return Ended::Close(CloseKind::Fin),
                    Ok(n) => {
                        if let Some(first) = ctx.first.take() {
                            first.count(&b[..n]);
                        }
                        tokio::select! {
                            r = write_all(dst, &b[..n]) => if r.is_err() { return Ended::Close(CloseKind::Fin) },
                            _ = stop.changed() => return Ended::Stopped,
                        }
                        ctx.bytes.fetch_add(n as u64, Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf = None,
                    Err(_) => return Ended::Close(CloseKind::Reset),
                }
            }
        }
    }
}

/// Whether a direction forwards with `splice(2)` when it has no toxic, and its pipe (made
/// when the first bytes arrive).
#[cfg(target_os = "linux")]
#[derive(Debug)]
enum ZeroCopy {
    /// On; no bytes have passed yet.
    Unused,
    On(super::splice::Pipe),
    /// Turned off for this process (`CHAOS_ZERO_COPY=off`), or for this link: no pipe could
    /// be made, or the sockets refused splice.
    Off,
}

#[cfg(target_os = "linux")]
impl Default for ZeroCopy {
    fn default() -> Self {
        if zero_copy_enabled() {
            ZeroCopy::Unused
        } else {
            ZeroCopy::Off
        }
    }
}

#[cfg(target_os = "linux")]
impl ZeroCopy {
    /// The pipe, made now if it is the first use; `None` when off or when it cannot be made.
    fn pipe(&mut self) -> Option<&mut super::splice::Pipe> {
        if matches!(self, ZeroCopy::Unused) {
            *self = match super::splice::Pipe::new() {
                Ok(pipe) => ZeroCopy::On(pipe),
                Err(e) => {
                    tracing::debug!(error = %e, "no pipe for zero-copy forwarding; copying through user space");
                    ZeroCopy::Off
                }
            };
        }
        match self {
            ZeroCopy::On(pipe) => Some(pipe),
            _ => None,
        }
    }

    fn refused(&mut self) {
        tracing::debug!("the sockets refused splice; copying through user space");
        *self = ZeroCopy::Off;
    }
}

/// Whether links opened from now on forward with `splice(2)` when they have no toxic: on,
/// unless `CHAOS_ZERO_COPY=off` (read at the first use) or [`set_zero_copy`] says otherwise.
#[cfg(target_os = "linux")]
pub fn zero_copy_enabled() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match ZERO_COPY.load(Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var("CHAOS_ZERO_COPY")
                .map_or(true, |v| !matches!(v.trim(), "off" | "0" | "false"));
            // A `set_zero_copy` that came first wins.
            let _ = ZERO_COPY.compare_exchange(UNREAD, if on { ON } else { OFF }, Relaxed, Relaxed);
            ZERO_COPY.load(Relaxed) == ON
        }
    }
}

/// Turns zero-copy forwarding on or off for links opened from now on (for comparing the two
/// paths in one run; the links open now keep theirs).
#[cfg(target_os = "linux")]
pub fn set_zero_copy(on: bool) {
    ZERO_COPY.store(
        if on { ON } else { OFF },
        std::sync::atomic::Ordering::Relaxed,
    );
}

#[cfg(target_os = "linux")]
static ZERO_COPY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(UNREAD);
#[cfg(target_os = "linux")]
const UNREAD: u8 = 0;
#[cfg(target_os = "linux")]
const ON: u8 = 1;
#[cfg(target_os = "linux")]
const OFF: u8 = 2;

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A stranded connection (see [`Verdict::Strand`]): silent until no toxic strands it, then
/// reset.
async fn stranded(
    src: &TcpStream,
    toxics: &mut watch::Receiver<Arc<ToxicSet>>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    match verdict::strand(src, toxics, stop).await {
        verdict::Stranded::Released => Ended::Close(CloseKind::Reset),
        verdict::Stranded::Stopped => Ended::Stopped,
    }
}

/// Brings the chain in line with the toxic set: the toxics of this direction, each included
/// if its toxicity roll (made once per toxic and direction) says so.
fn rebuild(
    chain: &mut Chain,
    rolls: &mut std::collections::HashMap<u64, bool>,
    set: &ToxicSet,
    ctx: &mut LinkCtx<'_>,
    out: &mut Vec<Item>,
) {
    let mut wanted = Vec::new();
    let mut kinds: std::collections::HashMap<StageKey, ToxicKind> = Default::default();
    for entry in &set.toxics {
        if entry.toxic.stream != ctx.stream || entry.toxic.kind.stage_free() {
            continue;
        }
        let toxicity = entry.toxic.toxicity as f64;
        let on = *rolls
            .entry(entry.id)
            .or_insert_with(|| toxicity >= 1.0 || ctx.rng.next_f64() < toxicity);
        if on {
            let key = StageKey {
                id: entry.id,
                version: entry.version,
            };
            wanted.push(key);
            kinds.insert(key, entry.toxic.kind.clone());
        }
    }
    rolls.retain(|id, _| set.toxics.iter().any(|e| e.id == *id));
    chain.rebuild(
        &wanted,
        |key| kinds[&key].stage().expect("stage toxics only"),
        Instant::now(),
        &mut ctx.rng,
        out,
    );
}
