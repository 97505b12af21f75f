//! One direction of one proxied connection: read, pass through the toxic chain, write.
//!
//! # Implementation details
//! A connection runs in one task; its two directions are two futures joined in it, each with
//! the read half of one socket and the write half of the other. A direction with no toxic runs
//! in `forward`'s loop, which keeps its waits armed between messages and moves bytes straight
//! from one socket to the other: copied through a buffer of the worker thread, or, once a read
//! shows a bulk transfer, through a pipe with `splice(2)`, never entering user space (Linux;
//! see `forward`). With toxics, each chunk is read into a fresh buffer and handed to the
//! [`Chain`] with its read time, and the link sleeps until the chain's next release. Reading
//! continues while data waits in the chain (up to [`MAX_BUFFERED`]), so a latency toxic
//! delays a stream without capping its throughput. No buffer or pipe is held while a
//! connection is idle, so idle connections cost almost nothing.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::ToxicSet;
use super::forward::{self, Handoff, Mover};
use super::stage::{Chain, CloseKind, Item, StageKey};
use super::toxic::ToxicKind;
use super::toxics::verdict;

pub(crate) use super::direction::{BUF, Ended, FirstBytes, LinkCtx};
pub use super::direction::{MAX_BUFFERED, set_zero_copy, zero_copy_enabled};

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
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    mut ctx: LinkCtx<'_>,
    mut toxics: watch::Receiver<Arc<ToxicSet>>,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let mut chain = Chain::default();
    let mut rolls: std::collections::HashMap<u64, bool> = Default::default();
    let mut out: Vec<Item> = Vec::new();
    let mut mover = Mover::default();
    // With toxics, chunks are read into fresh buffers and handed to the chain without a copy.
    let mut chunk = bytes::BytesMut::new();
    let mut eof = false;
    rebuild(
        &mut chain,
        &mut rolls,
        &toxics.borrow_and_update(),
        &mut ctx,
        &mut out,
    );
    loop {
        if *stop.borrow() || stop.has_changed().is_err() {
            return Ended::Stopped;
        }
        if ctx.stranded.load(Relaxed) {
            return stranded(src.as_ref(), &mut toxics, &mut stop).await;
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
                        r = write_all(dst.as_ref(), &bytes) => if r.is_err() { return Ended::Close(CloseKind::Fin) },
                        _ = stop.changed() => return Ended::Stopped,
                    }
                    ctx.bytes.fetch_add(bytes.len() as u64, Relaxed);
                }
                Item::Close(kind) => return Ended::Close(kind),
            }
        }
        if chain.is_empty() && !eof {
            match forward::forward(src, dst, &mut mover, &mut ctx, &mut toxics, &mut stop).await {
                Handoff::Ended(ended) => return ended,
                // The stop signal is read at the top of the loop. (The toxics' version may
                // already read as seen: `forward` may have seen the change itself.)
                Handoff::Control => {
                    if toxics.has_changed().is_err() {
                        return Ended::Stopped;
                    }
                    let set = Arc::clone(&toxics.borrow_and_update());
                    rebuild(&mut chain, &mut rolls, &set, &mut ctx, &mut out);
                }
            }
            continue;
        }
        // Without a chain, `forward` reads (above).
        let can_read = !eof && !chain.is_empty() && chain.buffered() < MAX_BUFFERED;
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
            ready = src.as_ref().readable(), if can_read => {
                if ready.is_err() {
                    return Ended::Close(CloseKind::Reset);
                }
                chunk.reserve(BUF);
                match src.as_ref().try_read_buf(&mut chunk) {
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
            }
        }
    }
}

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
