//! Graceful shutdown: refuse new work, close what is idle, wait for what is checked out up to
//! the timeout, force-close the rest, and wait until no driver task or attempt is left.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Duration;

use tokio::time::{Instant, timeout_at};
use tracing::{info, warn};

use crate::connector::Connector;
use crate::shared::Shared;
use crate::stats::{CloseReason, ShutdownReport};

impl<C: Connector> Shared<C> {
    pub(crate) async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let mut report_rx = self.shutdown_report.subscribe();
        let started = Instant::now();
        let Some(drained) = self.slots.close() else {
            // Someone else runs the shutdown: wait for its report.
            return loop {
                if let Some(report) = report_rx.borrow_and_update().clone() {
                    break report;
                }
                if report_rx.changed().await.is_err() {
                    break ShutdownReport::default();
                }
            };
        };
        self.maintenance_wake.notify_one();
        // Lent sessions take no new statement; each goes back (and is closed) when the
        // statements in flight on it end, which the wait below covers.
        self.lender.close();
        let closed_idle = drained.len();
        // Server sessions given up on when the network failed are terminated while a
        // connection can still do it (bounded by validation_timeout), or the server keeps
        // them after the pool is gone.
        match drained.first() {
            Some(conn) => self.reap_orphans_on(&conn.client).await,
            // Soon after a heal no connection may be idle, and the pool may not have noticed
            // the heal yet: one connection of its own, uncounted, tried once.
            None => self.reap_orphans_on_fresh().await,
        }
        for conn in drained {
            self.close_conn(conn, CloseReason::Shutdown);
        }
        let (out_at_start, _) = self.slots.counts();
        info!(
            pool.target = %self.target,
            closed_idle,
            checked_out = out_at_start,
            timeout = ?timeout,
            "pool shutting down; waiting for checked-out connections"
        );
        self.slots.wait_empty(started + timeout).await;
        let (still_out, _) = self.slots.counts();
        let forced = if still_out > 0 { self.force_close() } else { 0 };
        self.wait_for_drivers().await;
        let report = ShutdownReport {
            closed_idle,
            returned: out_at_start.saturating_sub(still_out),
            forced,
            duration: started.elapsed(),
        };
        if forced > 0 {
            warn!(
                pool.target = %self.target,
                returned = report.returned,
                forced,
                duration = ?report.duration,
                "pool shut down; some connections were force-closed: return connections before the timeout, or raise it"
            );
        } else {
            info!(
                pool.target = %self.target,
                closed_idle,
                returned = report.returned,
                duration = ?report.duration,
                "pool shut down cleanly"
            );
        }
        self.shutdown_report.send_replace(Some(report.clone()));
        report
    }

    /// Aborts the driver of every connection still checked out; returns how many.
    fn force_close(&self) -> usize {
        let mut forced = 0;
        for meta in self.drivers.snapshot() {
            if meta.checked_out_at.load(Relaxed) != 0 {
                meta.forced.store(true, Relaxed);
                meta.driver.abort();
                forced += 1;
                warn!(
                    conn.id = meta.id,
                    acquired_at = %meta.location().map(|l| l.to_string()).unwrap_or_default(),
                    "connection still checked out at the shutdown timeout; force-closed, its query fails"
                );
            }
        }
        forced
    }

    /// Attempts in flight finish (each is bounded by connect_timeout) and their connections
    /// are closed on arrival; idle connections were dropped politely. Gives the drivers a
    /// moment to send Terminate, then aborts whatever still runs, and waits for the aborted
    /// tasks to wind down, so no task outlives the shutdown.
    async fn wait_for_drivers(&self) {
        let attempts_done =
            Instant::now() + self.config.connect_timeout + Duration::from_millis(100);
        let grace =
            Instant::now().max(attempts_done.min(Instant::now() + Duration::from_millis(500)));
        let mut aborted = false;
        loop {
            let ended = self.drivers.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let connecting = self.connecting.load(Acquire);
            if self.drivers.live.load(Acquire) == 0 && connecting == 0 {
                return;
            }
            let wait_until = if connecting > 0 {
                attempts_done
            } else if aborted {
                Instant::now() + Duration::from_millis(200)
            } else {
                grace
            };
            if timeout_at(wait_until, ended).await.is_err() {
                // Past the attempts' bound or the grace, and after an abort too: done waiting
                // (an aborted task ends at its next poll, so this wait is short).
                if aborted {
                    return;
                }
                for meta in self.drivers.snapshot() {
                    meta.driver.abort();
                }
                aborted = true;
            }
        }
    }
}
