//! The baseline of `first_write_after_promotion`: the same figure for a client with no pool.
//!
//! On a loaded machine the first login to a server just promoted can take a hundred
//! milliseconds and more (the new leader forks its backend among Patroni's own work, the
//! harness's pollers and whatever else the machine runs). No pool can write sooner than a
//! login allows, so the pool's time is judged against a bare client's in the same window:
//! from the first sign of a new leader on, it opens a new connection every few milliseconds
//! by the same route (the same URL, `target_session_attrs=read-write` included) and writes
//! (`SELECT txid_current()`, which a standby refuses) until one write succeeds. A miss no
//! larger than its time after the promotion is `unknown`, not `FAIL` (see
//! [`crate::report::LAG_RULE`]): the machine was that slow, not the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// Between the bare client's attempts.
const PACE: Duration = Duration::from_millis(5);
/// Each step of an attempt (connect, write) gets this long.
const STEP: Duration = Duration::from_secs(1);

/// What the bare client's baseline is called in reports.
pub(crate) const WHAT: &str = "a client with no pool, writing on a new connection every 5 ms by the same route from the first sign of a new leader";

/// When (ms since `origin`) a bare client first wrote on a new leader: it starts once
/// `new_leader_seen` says another node was reported primary, and gives up when `stopped`.
pub(crate) async fn first_write(
    url: String,
    new_leader_seen: impl Fn() -> bool,
    stopped: Arc<AtomicBool>,
    origin: Instant,
) -> Option<f64> {
    while !stopped.load(Relaxed) && !new_leader_seen() {
        tokio::time::sleep(PACE).await;
    }
    while !stopped.load(Relaxed) {
        if write_once(&url).await {
            return Some(Instant::now().saturating_duration_since(origin).as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(PACE).await;
    }
    None
}

/// One new connection and one write on it; the connection is closed however it ends.
async fn write_once(url: &str) -> bool {
    let Ok(Ok((client, driver))) =
        tokio::time::timeout(STEP, tokio_postgres::connect(url, tokio_postgres::NoTls)).await
    else {
        return false;
    };
    let driver = tokio::spawn(driver);
    let wrote = matches!(
        tokio::time::timeout(STEP, client.simple_query("SELECT txid_current()")).await,
        Ok(Ok(_))
    );
    drop(client);
    driver.abort();
    wrote
}
