//! The baseline of `first_write_after_promotion`: the same figure for a client with no pool.
//!
//! On a loaded machine the first login to a server just promoted can take a hundred
//! milliseconds and more (the new leader forks its backend among Patroni's own work, the
//! harness's pollers and whatever else the machine runs), and a login begun during the
//! promotion itself waits longest. No pool can write sooner than a login allows, so the pool's
//! time is judged against a bare client's in the same window, the fastest a client could
//! have been: from the first sign of a new leader on, it starts a new connection every few
//! milliseconds by the same route (the same URL, `target_session_attrs=read-write` included),
//! without waiting for the ones in flight, and writes on each (`SELECT txid_current()`, which
//! a standby refuses); the first write to succeed ends it. A miss no larger than its time
//! after the promotion is `unknown`, not `FAIL` (see [`crate::report::LAG_RULE`]): the machine
//! was that slow, not the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// Between the starts of the bare client's attempts.
const PACE: Duration = Duration::from_millis(5);
/// Each step of an attempt (connect, write) gets this long.
const STEP: Duration = Duration::from_secs(1);
/// At most this many attempts in flight (`STEP` bounds each, so a silent route costs no more).
const IN_FLIGHT: usize = 40;

/// What the bare client's baseline is called in reports.
pub(crate) const WHAT: &str = "a client with no pool, starting a new connection every 5 ms by the same route from the first sign of a new leader, and writing on each";

/// When (ms since `origin`) a bare client first wrote on a new leader: it starts once
/// `new_leader_seen` says another node was reported primary, and gives up when `stopped`.
/// Its attempts in flight are dropped (their connections closed) when the first succeeds.
pub(crate) async fn first_write(
    url: String,
    new_leader_seen: impl Fn() -> bool,
    stopped: Arc<AtomicBool>,
    origin: Instant,
) -> Option<f64> {
    while !stopped.load(Relaxed) && !new_leader_seen() {
        tokio::time::sleep(PACE).await;
    }
    let at = |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    tracing::debug!(at_ms = at(Instant::now()), "bare client: a new leader is in sight; writing");
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = tokio::time::interval(PACE);
    while !stopped.load(Relaxed) {
        tokio::select! {
            _ = next.tick(), if attempts.len() < IN_FLIGHT => {
                let url = url.clone();
                attempts.spawn(async move { (Instant::now(), write_once(&url).await) });
            }
            Some(done) = attempts.join_next() => {
                let Ok((began, result)) = done else { continue };
                let now = Instant::now();
                tracing::debug!(began_ms = at(began), took = ?now - began, ?result, "bare client: attempt ended");
                if result.is_ok() {
                    return Some(at(now));
                }
            }
        }
    }
    None
}

/// One new connection and one write on it; the connection is closed however it ends.
async fn write_once(url: &str) -> Result<(), String> {
    let (client, driver) =
        tokio::time::timeout(STEP, tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .map_err(|_| "connect: timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
    let driver = tokio::spawn(driver);
    let wrote = tokio::time::timeout(STEP, client.simple_query("SELECT txid_current()")).await;
    drop(client);
    driver.abort();
    match wrote {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("write: timed out".into()),
    }
}
