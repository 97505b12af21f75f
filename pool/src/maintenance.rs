//! The background task: replenish to `min_size`, retire idle and old connections, probe the
//! database, and warn about leaks. It holds only a `Weak` handle, so dropping the last `Pool`
//! ends it.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

use crate::connector::Connector;
use crate::on_drop::{OnDrop, on_drop};
use crate::shared::Shared;
use crate::slots::End;
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
            biased;
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
    }
    loop {
        let interval = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if shared.is_closed() {
                return;
            }
            shared.tick().await;
            #[cfg(feature = "metrics")]
            shared.publish_metrics();
            let now = Instant::now();
            if shared.outage.in_outage() {
                // Or sooner, when the next attempt is due (a hedge beside hung ones).
                let next = now + shared.config.outage_probe_interval;
                (shared.outage.next_due())
                    .filter(|due| *due > now)
                    .map_or(next, |due| due.min(next))
            } else {
                now + shared.config.probe_interval
            }
        };
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(interval) => {}
            _ = wake.notified() => {}
        }
    }
}

impl<C: Connector> Shared<C> {
    /// Why `conn` must be retired now, if it must.
    pub(crate) fn retire_reason(
        &self,
        conn: &crate::conn::Conn<C::Client>,
        now: Instant,
    ) -> Option<CloseReason> {
        if self.config.max_uses.is_some_and(|max| conn.uses >= max) {
            return Some(CloseReason::MaxUses);
        }
        if conn.expires_at.is_some_and(|at| now >= at) {
            return Some(CloseReason::MaxLifetime);
        }
        if (conn.session.as_ref()).is_some_and(|s| self.connector.wrong_role(s)) {
            warn!(
                conn.id = conn.meta.id,
                pool.target = %self.target,
                "a write was refused as read-only: the server is no longer the primary; closing the connection, and checking every server's role before reuse"
            );
            return Some(CloseReason::WrongRole);
        }
        None
    }

    /// The statistics and health to the `metrics` recorder (see [`crate::metrics`]).
    #[cfg(feature = "metrics")]
    pub(crate) fn publish_metrics(&self) {
        crate::metrics::publish(
            &self.config.application_name,
            &self.statistics(),
            &self.health(),
        );
    }

    async fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        self.sweep_lent(now);
        self.check_leaks(now);
        self.check_overdue(now);
        if self.outage.in_outage() {
            // Probes overlap (each is bounded by probe_timeout), so one lost in a blackhole
            // does not hold up noticing the server's return; the attempt due, if any, starts
            // at once, whatever the pool's size (its connections may be the stranded ones).
            self.spawn_probe();
            // A hedge beside hung attempts, or the attempt the backoff allows, while the probe
            // reaches the server (out of reach, the probe's return starts one).
            if self.outage.reachable() {
                self.spawn_spare_attempt();
            }
            return;
        }
        self.retire_idle(now);
        self.replenish();
        self.probe().await;
        self.reap_orphans().await;
    }

    /// During an outage: one TCP probe in a task of its own; its success makes the next
    /// attempt due and starts it.
    pub(crate) fn spawn_probe(self: &Arc<Self>) {
        /// Probes in flight at most (each lasts probe_timeout at most).
        const MAX_PROBES: usize = 16;
        if self.attempts.probes.fetch_add(1, AcqRel) >= MAX_PROBES {
            self.attempts.probes.fetch_sub(1, AcqRel);
            return;
        }
        self.connecting.fetch_add(1, AcqRel);
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let _counted = on_drop(|| {
                shared.attempts.probes.fetch_sub(1, AcqRel);
                shared.connecting.fetch_sub(1, AcqRel);
                shared.drivers.ended.notify_waiters();
            });
            let started = Instant::now();
            let reachable = matches!(
                timeout(shared.config.probe_timeout, shared.connector.probe()).await,
                Ok(Ok(()))
            );
            shared.outage.on_probe(started, Instant::now(), reachable);
            if reachable && !shared.is_closed() {
                shared.spawn_spare_attempt();
            }
        });
    }

    /// The database answers again: terminates the server sessions the pool gave up on, on one
    /// of its idle connections, so a flapping network does not use up `max_connections`.
    pub(crate) async fn reap_orphans(&self) {
        let Some(orphans) = self.orphan_list() else {
            return;
        };
        let idle = self
            .slots
            .try_permit()
            .ok()
            .and_then(|permit| Some((self.slots.pop_idle(&permit, false)?, permit)));
        let result = match idle {
            Some((conn, permit)) => {
                let conn = OnDrop::new(conn, |conn| self.discard(conn, CloseReason::Cancelled));
                let result = self.terminate_orphans(&conn.client, &orphans).await;
                let conn = conn.disarm();
                // A termination that failed or ran out of time may still run on the server
                // (a lost peer answers nothing): the session is not handed on as idle.
                let idle = conn
                    .session
                    .as_ref()
                    .is_none_or(|s| s.status() == crate::session::SessionStatus::Idle);
                if matches!(result, Ok(Ok(_))) && idle {
                    let last_used = conn.last_used;
                    self.push_idle(conn, last_used, End::Newest);
                } else {
                    debug!(
                        conn.id = conn.meta.id,
                        "the connection that terminated orphaned sessions did not come back idle; closed"
                    );
                    self.discard(conn, CloseReason::SessionNotReset);
                }
                drop(permit);
                result
            }
            // Every connection is lent to the shared path (or checked out): the termination
            // is one more statement on the least loaded lent session.
            None => {
                let Some(lent) = self.lender.least_loaded() else {
                    return;
                };
                self.terminate_orphans(&lent.conn().client, &orphans).await
            }
        };
        self.orphans_reaped(&orphans, result);
    }

    /// At shutdown, on a connection drained from the idle stack: the same, once.
    pub(crate) async fn reap_orphans_on(&self, client: &C::Client) {
        if let Some(orphans) = self.orphan_list() {
            let result = self.terminate_orphans(client, &orphans).await;
            self.orphans_reaped(&orphans, result);
        }
    }

    /// At shutdown with no idle connection: the same on a connection opened for it (bounded
    /// by `connect_timeout`, never counted, closed at once), when there are orphans.
    pub(crate) async fn reap_orphans_on_fresh(&self) {
        if self.orphan_list().is_none() {
            return;
        }
        let Ok(Ok(connection)) =
            timeout(self.config.connect_timeout, self.connector.connect()).await
        else {
            debug!("could not connect to terminate orphaned server sessions at shutdown");
            return;
        };
        let driver = tokio::spawn(connection.driver);
        self.reap_orphans_on(&connection.client).await;
        drop(connection.client);
        // The driver sends Terminate and ends; it does not outlive the shutdown.
        let abort = driver.abort_handle();
        if timeout(std::time::Duration::from_millis(500), driver)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    fn orphan_list(&self) -> Option<Vec<crate::shared::Orphan>> {
        let orphans = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
        (!orphans.is_empty()).then(|| orphans.clone())
    }

    /// Terminates `orphans` on `client`, bounded by validation_timeout.
    async fn terminate_orphans(
        &self,
        client: &C::Client,
        orphans: &[crate::shared::Orphan],
    ) -> Result<Result<u64, crate::BoxError>, tokio::time::error::Elapsed> {
        let now = Instant::now();
        // Each session is at least as old as the time since the pool opened it.
        let list: Vec<(u32, f64)> = orphans
            .iter()
            .map(|o| {
                (
                    o.pid,
                    now.saturating_duration_since(o.opened_at).as_secs_f64(),
                )
            })
            .collect();
        timeout(
            self.config.validation_timeout,
            self.connector.terminate(client, &list),
        )
        .await
    }

    fn orphans_reaped(
        &self,
        orphans: &[crate::shared::Orphan],
        result: Result<Result<u64, crate::BoxError>, tokio::time::error::Elapsed>,
    ) {
        match result {
            Ok(Ok(terminated)) => {
                self.orphans
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|o| {
                        !orphans
                            .iter()
                            .any(|r| r.pid == o.pid && r.given_up_at == o.given_up_at)
                    });
                self.stats.orphans.fetch_add(terminated, Relaxed);
                if terminated > 0 {
                    info!(
                        pool.target = %self.target,
                        terminated,
                        checked = orphans.len(),
                        "terminated server sessions the pool had closed while they might still run (a lost network, or a request that outlived its cancel); nothing to do"
                    );
                }
            }
            Ok(Err(e)) => {
                debug!(error = %e, "could not terminate orphaned server sessions; retrying later")
            }
            Err(_) => debug!("terminating orphaned server sessions timed out; retrying later"),
        }
    }

    /// Starts attempts (each in a task of its own, under a free slot) until the connections
    /// open and opening reach `min_size`.
    fn replenish(self: &Arc<Self>) {
        loop {
            let (total, _) = self.slots.counts();
            if total + self.outage.attempts_in_flight() >= self.config.min_size {
                return;
            }
            if !self.spawn_spare_attempt() {
                return;
            }
        }
    }

    /// Closes idle connections that are dead, past `idle_timeout` (above `min_size`) or past
    /// their lifetime.
    fn retire_idle(&self, now: Instant) {
        let retired = self.slots.retire_idle(|conn, total| {
            // A connection whose driver has ended first: the refill that follows counts on
            // the live ones only.
            if self.connector.is_closed(&conn.client) {
                return Some(CloseReason::Broken);
            }
            self.retire_reason(conn, now).or_else(|| {
                (total > self.config.min_size
                    && self
                        .config
                        .idle_timeout
                        .is_some_and(|t| now.saturating_duration_since(conn.last_used) >= t))
                .then_some(CloseReason::IdleTimeout)
            })
        });
        for (conn, reason) in retired {
            debug!(conn.id = conn.meta.id, reason = ?reason, "idle connection retired");
            self.close_conn(conn, reason);
        }
    }

    /// Validates the least recently used idle connection with a bounded round trip.
    async fn probe(&self) {
        let Ok(permit) = self.slots.try_permit() else {
            return; // every slot is busy: traffic itself is the probe
        };
        let Some(conn) = self.slots.pop_idle(&permit, true) else {
            return;
        };
        let conn = OnDrop::new(conn, |conn| self.discard(conn, CloseReason::Cancelled));
        let started = Instant::now();
        let result = timeout(
            self.config.probe_timeout,
            self.connector.validate(&conn.client),
        )
        .await;
        let now = Instant::now();
        let mut conn = conn.disarm();
        match result {
            Ok(Ok(())) => {
                self.outage
                    .on_round_trip(now.saturating_duration_since(started));
                conn.validated_epoch = self.suspect_epoch.load(Acquire);
                // Back at the bottom: it keeps its place as the least recently used.
                let last_used = conn.last_used;
                self.push_idle(conn, last_used, End::Oldest);
            }
            Ok(Err(e)) => {
                self.stats.validation_failures.fetch_add(1, Relaxed);
                debug!(conn.id = conn.meta.id, error = %e, "probe found a dead idle connection; discarded");
                self.discard(conn, CloseReason::ValidationFailed);
            }
            Err(_) => {
                self.stats.validation_failures.fetch_add(1, Relaxed);
                self.discard(conn, CloseReason::ValidationFailed);
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
