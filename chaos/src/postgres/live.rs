//! How many throwaway clusters this process has, counted from the moment one starts being
//! made (its directory created) until its `Drop` has stopped it and removed its directory.
//!
//! A signal can end a run while a cluster is still being made on a blocking thread (`initdb`
//! or `pg_basebackup` under way, no server and no watchdog yet). The process must not exit
//! then, or the half-made directory stays behind: `chaos` waits for the count to reach zero
//! ([`wait_for_clusters`]), within a bound, before it exits.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

static LIVE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One cluster being made or running; the count goes down when it is dropped. Declared as
/// the last field of [`super::Cluster`], so it is dropped after the cluster's own `Drop`.
#[derive(Debug)]
pub(crate) struct Live(());

impl Live {
    pub(crate) fn new() -> Self {
        *LIVE.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Live(())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut n = LIVE.0.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        LIVE.1.notify_all();
    }
}

/// Waits, at most `within`, until every throwaway cluster of this process is stopped and its
/// directory removed; gives how many are left (0: none). A blocking call: for the end of
/// `main`, after the runtime's work has been dropped.
pub fn wait_for_clusters(within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut n = LIVE.0.lock().unwrap_or_else(|e| e.into_inner());
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        n = LIVE
            .1
            .wait_timeout(n, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    *n
}
