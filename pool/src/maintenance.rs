//! The background task: replenish to `min_size`, retire idle and old connections, probe the
//! database, and warn about leaks. It holds only a `Weak` handle, so dropping the last `Pool`
//! ends it.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::time::{Instant, timeout};
use tracing::{debug, warn};

use crate::connector::Connector;
use crate::pool::Shared;
use crate::stats::CloseReason;

/// `first_tick_now`: a lazy pool connects at once; an eager one just did, and waits an interval.
pub(crate) async fn run<C: Connector>(
    weak: Weak<Shared<C>>,
    wake: Arc<Notify>,
    first_tick_now: bool,
) {
    if !first_tick_now {
        let interval = match weak.upgrade() {
            Some(shared) => shared.config.probe_interval,
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
    }
    loop {
        let interval = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if shared.closed.load(Acquire) {
                return;
            }
            shared.tick().await;
            if shared.link.in_outage() {
                shared.config.outage_probe_interval
            } else {
                shared.config.probe_interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
    }
}

impl<C: Connector> Shared<C> {
    async fn tick(&self) {
        let now = Instant::now();
        self.check_leaks(now);
        if self.link.in_outage() {
            let reachable = matches!(
                timeout(self.config.probe_timeout, self.connector.probe()).await,
                Ok(Ok(()))
            );
            self.link.on_probe(Instant::now(), reachable);
            if reachable {
                // The one trial attempt, if due, whatever the pool's size (its connections may
                // be the stranded ones): ends the outage without waiting for traffic, and then
                // the rest of min_size follows at once.
                self.trial().await;
                if !self.link.in_outage() {
                    self.replenish(usize::MAX).await;
                }
            }
            return;
        }
        self.retire_idle(now);
        self.replenish(usize::MAX).await;
        self.probe().await;
    }

    /// During an outage: one connection attempt under a free slot, if the link admits one.
    async fn trial(&self) {
        if self.closed.load(Acquire) {
            return;
        }
        let Ok(permit) = self.semaphore.try_acquire() else {
            return;
        };
        if let Err(e) = self
            .open_for_idle(Instant::now() + self.config.connect_timeout)
            .await
        {
            debug!(error = %e, "reconnection attempt failed; retrying after the backoff");
        }
        drop(permit);
    }

    /// Opens connections until `min_size` (at most `limit` of them), each under a free slot.
    async fn replenish(&self, limit: usize) {
        for _ in 0..limit {
            let (total, _) = self.counts.get();
            if total >= self.config.min_size || self.closed.load(Acquire) {
                return;
            }
            let Ok(permit) = self.semaphore.try_acquire() else {
                return;
            };
            let result = self
                .open_for_idle(Instant::now() + self.config.connect_timeout)
                .await;
            drop(permit);
            if let Err(e) = result {
                debug!(error = %e, "replenishing the pool failed; retrying later");
                return;
            }
        }
    }

    /// Closes idle connections past `idle_timeout` (above `min_size`) or past their lifetime.
    fn retire_idle(&self, now: Instant) {
        let mut retired = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let (mut total, _) = self.counts.get();
            // Oldest first: the bottom of the stack is the least recently used.
            let mut i = 0;
            while i < idle.len() {
                let conn = &idle[i];
                let reason = if let Some(reason) = self.retire_reason(conn, now) {
                    Some(reason)
                } else if total > self.config.min_size
                    && self
                        .config
                        .idle_timeout
                        .is_some_and(|t| now.saturating_duration_since(conn.last_used) >= t)
                {
                    Some(CloseReason::IdleTimeout)
                } else {
                    None
                };
                match reason {
                    Some(reason) => {
                        retired.push((idle.remove(i), reason));
                        total -= 1;
                    }
                    None => i += 1,
                }
            }
            self.counts_remove_idle(retired.len());
        }
        for (conn, reason) in retired {
            debug!(conn.id = conn.meta.id, reason = ?reason, "idle connection retired");
            self.close_removed(conn, reason);
        }
    }

    /// Validates the least recently used idle connection with a bounded round trip.
    async fn probe(&self) {
        let Ok(permit) = self.semaphore.try_acquire() else {
            return; // every slot is busy: traffic itself is the probe
        };
        let conn = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.is_empty() {
                return;
            }
            let conn = idle.remove(0);
            self.counts_checkout_idle();
            conn
        };
        let mut conn = ProbeGuard {
            shared: self,
            conn: Some(conn),
        };
        let started = Instant::now();
        let client = &conn.conn.as_ref().expect("present").client;
        let result = timeout(self.config.probe_timeout, self.connector.validate(client)).await;
        let now = Instant::now();
        let c = conn.conn.take().expect("present");
        match result {
            Ok(Ok(())) => {
                self.link
                    .on_round_trip(now.saturating_duration_since(started));
                let mut c = c;
                c.validated_epoch = self.suspect_epoch.load(Acquire);
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if self.closed.load(Acquire) {
                    // Shutdown drained the stack meanwhile: close it instead of parking it.
                    drop(idle);
                    self.discard(c, CloseReason::Shutdown);
                    self.returned.notify_waiters();
                } else {
                    idle.insert(0, c);
                    self.counts_return_idle();
                }
            }
            Ok(Err(e)) => {
                self.stats.validation_failures.fetch_add(1, Relaxed);
                debug!(conn.id = c.meta.id, error = %e, "probe found a dead idle connection; discarded");
                self.discard(c, CloseReason::ValidationFailed);
            }
            Err(_) => {
                self.stats.validation_failures.fetch_add(1, Relaxed);
                self.discard(c, CloseReason::ValidationFailed);
                self.silent_path_detected("probe timed out");
            }
        }
        drop(permit);
    }

    fn check_leaks(&self, now: Instant) {
        let Some(threshold) = self.config.leak_detection_threshold else {
            return;
        };
        let now_ns = self.now_nanos(now);
        let metas: Vec<_> = self.drivers.snapshot();
        for meta in metas {
            let at = meta.checked_out_at.load(Relaxed);
            if at == 0 || meta.leak_reported.load(Relaxed) {
                continue;
            }
            let held = std::time::Duration::from_nanos(now_ns.saturating_sub(at - 1));
            if held >= threshold && !meta.leak_reported.swap(true, Relaxed) {
                self.stats.leaks.fetch_add(1, Relaxed);
                warn!(
                    conn.id = meta.id,
                    held_for = ?held,
                    acquired_at = %meta.location().map(|l| l.to_string()).unwrap_or_else(|| "unknown".into()),
                    threshold = ?threshold,
                    "connection held longer than leak_detection_threshold; it may have leaked: drop the PooledConnection when done, or raise leak_detection_threshold for long work"
                );
            }
        }
    }
}

/// Puts a probed connection's accounting right if the probe is dropped mid-flight.
struct ProbeGuard<'a, C: Connector> {
    shared: &'a Shared<C>,
    conn: Option<crate::pool::Conn<C::Client>>,
}

impl<C: Connector> Drop for ProbeGuard<'_, C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.discard(conn, CloseReason::Cancelled);
        }
    }
}
