//! What both paths of a direction share (`link`'s toxic path and `forward`'s path without
//! toxics): what a link needs besides its sockets, how it ends, what the client's first bytes
//! said, and whether directions without toxics may splice.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};

use super::stage::CloseKind;
use super::toxic::Stream;
use crate::rng::Rng;

/// Read buffer size (64 KiB: tokio's 8 KiB default halves bulk throughput).
pub(crate) const BUF: usize = 64 * 1024;
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
    pub(crate) fn count(&self, first: &[u8]) {
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

/// Whether links opened from now on forward bulk transfers with `splice(2)` when they have
/// no toxic: on Linux, unless `CHAOS_ZERO_COPY=off` (read at the first use) or
/// [`set_zero_copy`] says otherwise; never on other systems, which have no splice.
pub fn zero_copy_enabled() -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
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
/// paths in one run; the links open now keep theirs). Elsewhere than on Linux it stays off.
pub fn set_zero_copy(on: bool) {
    ZERO_COPY.store(if on { ON } else { OFF }, Relaxed);
}

static ZERO_COPY: AtomicU8 = AtomicU8::new(UNREAD);
const UNREAD: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
