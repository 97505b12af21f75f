//! The path of a direction with no toxic: bytes from one socket to the other, as fast as the
//! sockets take them, until the toxics or the connection's stop signal change.
//!
//! # Implementation details
//! The link's general loop (`link::run`) waits in a `select!` on its stop and toxic signals,
//! its next release time and its source socket. Each pass of that loop makes new `changed()`
//! futures, and each registers with its channel and removes itself again, under a lock, and
//! the toxic channel is one all the proxy's connections share. A stream of small messages (a
//! database client's) paid that on every message, where a plain copy loop waits on its
//! sockets alone.
//!
//! Here the two `changed()` futures are polled once, which leaves the task's waker with both
//! channels, and are polled again only when the waker changes. Each pass reads the channels'
//! versions (one atomic load each): a change wakes the task, the version says it changed, and
//! the loop hands back to `link::run`, which rebuilds the chain as before.
//!
//! How bytes move is chosen per read, as HAProxy's `splice-auto` does: a read that fills the
//! 64 KiB copy buffer is a bulk transfer, and the reads after it go through a pipe with
//! `splice(2)` (Linux), with no copy in user space; a splice that moves less than
//! [`SMALL`] goes back to copying. A small message costs a pipe more than its copy (the
//! pipe's page references, and one more system call: a copy that reads less than it asked
//! for knows the socket is drained, through tokio's readiness, where a splice has to be
//! answered `EAGAIN`). The copy reads into a buffer of the worker thread and writes from it
//! at once; only what the destination does not take is kept, so an idle connection holds no
//! buffer and no pipe. The mover is empty whenever the loop hands back for a toxic change,
//! so no byte is held here while later ones go through the chain.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::config::ToxicSet;
use super::direction::{BUF, Ended, LinkCtx, zero_copy_enabled};
use super::stage::CloseKind;

/// A splice that moves less than this goes back to copying.
pub(crate) const SMALL: usize = 16 * 1024;

/// Why the loop handed back to the link.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handoff {
    /// The direction ended.
    Ended(Ended),
    /// The toxics or the stop signal changed (or a strand was set): the link looks at them.
    Control,
}

thread_local! {
    /// The copy buffer of this worker thread: read into, then written from at once.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; BUF].into_boxed_slice());
}

/// Whether a direction may splice, and its pipe (made with its first bulk read).
#[derive(Debug)]
pub(crate) enum ZeroCopy {
    /// On; no pipe yet.
    Unused,
    #[cfg(target_os = "linux")]
    On(super::splice::Pipe),
    /// Turned off for this process (`CHAOS_ZERO_COPY=off`), or for this link: no pipe could
    /// be made, or the sockets refused splice. Always off on other systems.
    Off,
}

impl Default for ZeroCopy {
    fn default() -> Self {
        if zero_copy_enabled() {
            ZeroCopy::Unused
        } else {
            ZeroCopy::Off
        }
    }
}

impl ZeroCopy {
    /// The pipe, made now if it is the first use; `None` when off or when it cannot be made.
    #[cfg(target_os = "linux")]
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

    fn held(&self) -> usize {
        match self {
            #[cfg(target_os = "linux")]
            ZeroCopy::On(pipe) => pipe.held(),
            _ => 0,
        }
    }
}

/// How one direction moves bytes now, and what it holds.
#[derive(Debug, Default)]
pub(crate) struct Mover {
    zero_copy: ZeroCopy,
    /// Copied bytes the destination has not taken yet.
    rest: Vec<u8>,
    /// Splicing (the last reads were bulk) rather than copying.
    splicing: bool,
}

/// How a read-and-forward step failed.
enum Failed {
    /// Reading the source (a reset).
    Read,
    /// Writing the destination.
    Write,
}

impl Mover {
    fn held(&self) -> usize {
        self.rest.len() + self.zero_copy.held()
    }

    /// Writes everything held to `dst`, counting the bytes moved.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut WriteHalf<'_>,
        ctx: &LinkCtx<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.rest.is_empty() {
            let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.rest.drain(..n);
            ctx.bytes.fetch_add(n as u64, Relaxed);
        }
        if self.rest.capacity() > 0 {
            self.rest = Vec::new();
        }
        #[cfg(target_os = "linux")]
        if let ZeroCopy::On(pipe) = &mut self.zero_copy
            && pipe.held() > 0
        {
            let before = pipe.held();
            let r = pipe.poll_drain(cx, dst.as_ref());
            let n = (before - pipe.held()) as u64;
            ctx.bytes.fetch_add(n, Relaxed);
            ctx.zero_copied.fetch_add(n, Relaxed);
            return r;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what `src` has (nothing may be held) and passes it on: a copy is written at
    /// once, as far as `dst` takes it; a splice leaves the bytes in the pipe for
    /// [`Mover::poll_drain`]. `Ok(0)` is the end of the stream.
    fn poll_forward(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut ReadHalf<'_>,
        dst: &mut WriteHalf<'_>,
        ctx: &mut LinkCtx<'_>,
    ) -> Poll<Result<usize, Failed>> {
        debug_assert_eq!(self.held(), 0, "the mover is drained before it reads");
        #[cfg(target_os = "linux")]
        if self.splicing
            && let Some(pipe) = self.zero_copy.pipe()
        {
            loop {
                ready!(src.as_ref().poll_read_ready(cx)).map_err(|_| Failed::Read)?;
                match pipe.fill(src.as_ref()) {
                    Ok(n) => {
                        if n < SMALL {
                            self.splicing = false;
                        }
                        return Poll::Ready(Ok(n));
                    }
                    // Readiness is cleared: the next poll waits for more.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The sockets do not take splice (nothing moved): copy from now on.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::debug!("the sockets refused splice; copying through user space");
                        self.zero_copy = ZeroCopy::Off;
                        self.splicing = false;
                        break;
                    }
                    Err(_) => return Poll::Ready(Err(Failed::Read)),
                }
            }
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(&mut *src).poll_read(cx, &mut buf)).map_err(|_| Failed::Read)?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            if let Some(first) = ctx.first.take() {
                first.count(&scratch[..n]);
            }
            // A full buffer: more is waiting, a bulk transfer, spliced from the next read on.
            self.splicing = n == scratch.len() && !matches!(self.zero_copy, ZeroCopy::Off);
            let mut sent = 0;
            while sent < n {
                match Pin::new(&mut *dst).poll_write(cx, &scratch[sent..n]) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Err(Failed::Write)),
                    Poll::Ready(Ok(k)) => sent += k,
                    Poll::Pending => break,
                }
            }
            ctx.bytes.fetch_add(sent as u64, Relaxed);
            self.rest.extend_from_slice(&scratch[sent..n]);
            Poll::Ready(Ok(n))
        })
    }
}

/// Forwards from `src` to `dst` until the direction ends or its signals change. On
/// [`Handoff::Control`] the mover may still hold bytes whose write the stop signal cut short;
/// on a toxic change it is empty.
pub(crate) async fn forward(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    mover: &mut Mover,
    ctx: &mut LinkCtx<'_>,
    toxics: &mut watch::Receiver<Arc<ToxicSet>>,
    stop: &mut watch::Receiver<bool>,
) -> Handoff {
    // Probes read the channels' versions without a lock; the `changed()` futures hold the
    // task's waker with the channels.
    let (toxics_seen, stop_seen) = (toxics.clone(), stop.clone());
    let mut toxics_changed = pin!(toxics.changed());
    let mut stop_changed = pin!(stop.changed());
    let mut waker: Option<Waker> = None;
    let mut toxics_fired = false;
    poll_fn(|cx| {
        if stop_seen.has_changed().unwrap_or(true) {
            return Poll::Ready(Handoff::Control);
        }
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if stop_changed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Handoff::Control);
            }
            toxics_fired = toxics_fired || toxics_changed.as_mut().poll(cx).is_ready();
            waker = Some(cx.waker().clone());
        }
        if toxics_fired {
            // Finish what the mover holds first (the stop signal still cuts it short).
            return match ready!(mover.poll_drain(cx, dst, ctx)) {
                Ok(()) => Poll::Ready(Handoff::Control),
                Err(_) => Poll::Ready(Handoff::Ended(Ended::Close(CloseKind::Fin))),
            };
        }
        poll_move(cx, src, dst, mover, ctx, &toxics_seen)
    })
    .await
}

/// Moves bytes until a socket is not ready, the toxics changed, or the direction ended.
fn poll_move(
    cx: &mut Context<'_>,
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    mover: &mut Mover,
    ctx: &mut LinkCtx<'_>,
    toxics_seen: &watch::Receiver<Arc<ToxicSet>>,
) -> Poll<Handoff> {
    loop {
        if mover.held() > 0 && ready!(mover.poll_drain(cx, dst, ctx)).is_err() {
            return Poll::Ready(Handoff::Ended(Ended::Close(CloseKind::Fin)));
        }
        if toxics_seen.has_changed().unwrap_or(true) || ctx.stranded.load(Relaxed) {
            return Poll::Ready(Handoff::Control);
        }
        match ready!(mover.poll_forward(cx, src, dst, ctx)) {
            Ok(0) => return Poll::Ready(Handoff::Ended(Ended::Close(CloseKind::Fin))),
            Ok(_) => {}
            Err(Failed::Read) => {
                return Poll::Ready(Handoff::Ended(Ended::Close(CloseKind::Reset)));
            }
            Err(Failed::Write) => return Poll::Ready(Handoff::Ended(Ended::Close(CloseKind::Fin))),
        }
    }
}
