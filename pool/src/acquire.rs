//! The acquire path: a slot, then an idle connection fit to hand out (the fast path), or the
//! boxed slow path that validates, connects, or waits for a returned connection.
//!
//! # Implementation details
//! The fast path reads the clock once and moves only pointers: the acquire future every
//! caller builds stays small (a few hundred bytes), because everything that may await a
//! round trip runs in a boxed future entered only when the idle connection on top is not fit
//! to hand out as it is. Every step that holds a slot or a connection across an await is
//! covered: the slot by its [`Permit`], a connection taken for validation by an [`OnDrop`]
//! that closes it, so an acquire future may be dropped at any point without leaking either.

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Duration;

use tokio::time::{Instant, timeout_at};
use tracing::{debug, warn};

use crate::config::IdleOrder;
use crate::conn::Conn;
use crate::connect::Opened;
use crate::connector::Connector;
use crate::error::{PoolError, TimeoutPhase};
use crate::guard::PooledConnection;
use crate::on_drop::{OnDrop, on_drop};
use crate::shared::Shared;
use crate::slots::{End, NoPermit, Permit, SlotToken};
use crate::stats::CloseReason;

impl<C: Connector> Shared<C> {
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        location: &'static Location<'static>,
        timeout: Duration,
    ) -> Result<PooledConnection<C>, PoolError> {
        if self.is_closed() {
            return Err(PoolError::Closed);
        }
        // One clock read on the fast path: it is the start, the checkout time and the
        // reference for the validation bypass window.
        let start;
        let now;
        // Whether this acquire had to queue for a slot: the pool is saturated.
        let mut contended = false;
        let permit = match self.slots.try_permit() {
            Ok(permit) => {
                start = Instant::now();
                now = start;
                permit
            }
            Err(NoPermit::Closed) => return Err(PoolError::Closed),
            Err(NoPermit::Busy) => {
                start = Instant::now();
                // Sessions lent to the shared path give way to an exclusive user.
                self.reclaim_lent();
                let waiting = &self.stats.waiting;
                waiting.fetch_add(1, Relaxed);
                let _waiting = on_drop(|| {
                    waiting.fetch_sub(1, Relaxed);
                });
                let permit = match self.slots.permit_until(start + timeout).await {
                    Ok(permit) => permit,
                    Err(NoPermit::Closed) => return Err(PoolError::Closed),
                    Err(NoPermit::Busy) => return Err(self.timed_out(TimeoutPhase::Wait, start)),
                };
                now = Instant::now();
                contended = true;
                permit
            }
        };
        let deadline = start + timeout;
        // The fast path: an idle connection that is alive and needs no round trip. Everything
        // else (connecting, validating, waiting for a returned connection) is in a boxed
        // future, so the future every acquire builds and moves stays small.
        let first = match self.pop_idle(&permit, contended) {
            Some(conn) if self.ready(&conn, now) => {
                return Ok(self.hand_out(permit.into_checkout(), conn, location, start, now));
            }
            other => other.map(|conn| self.taken(conn)),
        };
        Box::pin(self.acquire_slow(location, start, now, deadline, contended, permit, first)).await
    }

    /// An idle connection fit to hand out as it is, now, or `None`: never waits, connects or
    /// validates (the shared path's choice between a free session and a busy one).
    pub(crate) fn try_acquire_now(
        self: &Arc<Self>,
        location: &'static Location<'static>,
        now: Instant,
    ) -> Option<PooledConnection<C>> {
        if self.is_closed() {
            return None;
        }
        let permit = self.slots.try_permit().ok()?;
        let conn = self.pop_idle(&permit, false)?;
        if self.ready(&conn, now) {
            return Some(self.hand_out(permit.into_checkout(), conn, location, now, now));
        }
        // Not fit as it is: back on top as it was (its last use unchanged), for an acquire
        // that checks it.
        if let Err(conn) = self.slots.push_idle(conn, End::Newest) {
            self.close_conn(conn, CloseReason::Shutdown);
        }
        None
    }

    /// A connection taken off the idle stack for checks: closed if the acquire is dropped.
    // The closure's type cannot be named on stable, so the guard's type is spelled out here.
    #[allow(clippy::type_complexity)]
    fn taken(
        &self,
        conn: Conn<C::Client>,
    ) -> OnDrop<Conn<C::Client>, impl FnOnce(Conn<C::Client>) + Send + '_> {
        OnDrop::new(conn, move |conn| self.discard(conn, CloseReason::Cancelled))
    }

    /// Takes an idle connection: the most recently returned under `IdleOrder::Lifo`, unless
    /// the acquire had to queue (`contended`): then, as under `Fifo`, the longest idle one,
    /// whose backend has finished whatever it did after its last answer.
    fn pop_idle(
        &self,
        permit: &Permit<'_, Conn<C::Client>>,
        contended: bool,
    ) -> Option<Conn<C::Client>> {
        let oldest = self.config.idle_order == IdleOrder::Fifo || contended;
        self.slots.pop_idle(permit, oldest)
    }

    /// Whether `conn` can be handed out as it is: its driver runs, it is not due for
    /// retirement, and it was used within the validation bypass window since the last suspect
    /// event.
    fn ready(&self, conn: &Conn<C::Client>, now: Instant) -> bool {
        !self.connector.is_closed(&conn.client)
            && self.retire_reason(conn, now).is_none()
            && conn.validated_epoch >= self.suspect_epoch.load(Acquire)
            && now.saturating_duration_since(conn.last_used) < self.config.validation_bypass
            && self.hooks.before_acquire.is_none()
    }

    /// The rest of an acquire that holds a slot: checks `first` (an idle connection taken by
    /// the fast path), then takes idle connections, connects, or waits for a returned one,
    /// until one is fit to hand out or the deadline passes.
    #[allow(clippy::too_many_arguments)]
    async fn acquire_slow<'a>(
        self: &'a Arc<Self>,
        location: &'static Location<'static>,
        start: Instant,
        mut now: Instant,
        deadline: Instant,
        contended: bool,
        permit: Permit<'a, Conn<C::Client>>,
        mut first: Option<OnDrop<Conn<C::Client>, impl FnOnce(Conn<C::Client>) + Send + 'a>>,
    ) -> Result<PooledConnection<C>, PoolError> {
        // `None` after a failed attempt took the slot: the next round queues for one again.
        let mut held = Some(permit);
        // Whether this acquire waited on attempts in flight (its timeout is then a connect's).
        let mut awaited_attempts = false;
        loop {
            let permit = match held.take() {
                Some(permit) => permit,
                None => match self.slots.permit_until(deadline).await {
                    Ok(permit) => permit,
                    Err(NoPermit::Closed) => return Err(PoolError::Closed),
                    Err(NoPermit::Busy) => return Err(self.timed_out(TimeoutPhase::Wait, start)),
                },
            };
            let (conn, permit) = match first.take() {
                Some(taken) => (taken.disarm(), permit),
                None => match self.pop_idle(&permit, contended) {
                    Some(conn) => (conn, permit),
                    None => match self.open(permit, deadline, start).await? {
                        Opened::Conn(conn, slot) => {
                            if self.is_closed() {
                                self.discard(conn, CloseReason::Shutdown);
                                self.slots.check_in(slot);
                                return Err(PoolError::Closed);
                            }
                            return Ok(self.hand_out(slot, conn, location, start, Instant::now()));
                        }
                        Opened::Again => {
                            now = Instant::now();
                            continue;
                        }
                        Opened::Wait(permit) => {
                            // No attempt may start now: wait, in arrival order, for one in
                            // flight to land a connection or for an open one to come back.
                            // Short waits, so a recovery (or a shutdown) is noticed on the
                            // next round.
                            awaited_attempts |= self.outage.fresh_attempts() > 0;
                            let conn = self.wait_for_return(&permit, deadline).await;
                            now = Instant::now();
                            match conn {
                                Some(conn) => (conn, permit),
                                None if self.is_closed() => return Err(PoolError::Closed),
                                None if now >= deadline => {
                                    let phase = if awaited_attempts {
                                        TimeoutPhase::Connect
                                    } else {
                                        TimeoutPhase::Wait
                                    };
                                    return Err(self.timed_out(phase, start));
                                }
                                None => {
                                    held = Some(permit);
                                    continue;
                                }
                            }
                        }
                    },
                },
            };
            let mut taken = self.taken(conn);
            if self.connector.is_closed(&taken.client) {
                self.discard(taken.disarm(), CloseReason::Broken);
                held = Some(permit);
                continue;
            }
            if let Some(reason) = self.retire_reason(&taken, now) {
                self.discard(taken.disarm(), reason);
                held = Some(permit);
                continue;
            }
            let epoch = self.suspect_epoch.load(Acquire);
            if taken.validated_epoch < epoch
                || now.saturating_duration_since(taken.last_used) >= self.config.validation_bypass
            {
                let limit = deadline.min(now + self.config.validation_timeout);
                match timeout_at(limit, self.connector.validate(&taken.client)).await {
                    Ok(Ok(())) => {
                        taken.validated_epoch = epoch;
                        self.outage.on_round_trip(now.elapsed());
                    }
                    Ok(Err(e)) => {
                        self.stats.validation_failures.fetch_add(1, Relaxed);
                        let conn = taken.disarm();
                        debug!(conn.id = conn.meta.id, error = %e, "connection failed validation; discarded, trying another");
                        self.discard(conn, CloseReason::ValidationFailed);
                        now = Instant::now();
                        held = Some(permit);
                        continue;
                    }
                    Err(_) => {
                        self.stats.validation_failures.fetch_add(1, Relaxed);
                        self.discard(taken.disarm(), CloseReason::ValidationFailed);
                        if limit == deadline {
                            return Err(self.timed_out(TimeoutPhase::Validate, start));
                        }
                        // A round trip that never came back: the path to the server is silent.
                        self.silent_path_detected("validation timed out");
                        now = Instant::now();
                        held = Some(permit);
                        continue;
                    }
                }
            }
            if let Some(hook) = &self.hooks.before_acquire {
                match timeout_at(deadline, hook(&taken.client)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        debug!(
                            conn.id = taken.meta.id,
                            "before_acquire hook said no; connection closed, trying another"
                        );
                        self.discard(taken.disarm(), CloseReason::HookRejected);
                        now = Instant::now();
                        held = Some(permit);
                        continue;
                    }
                    Err(_) => {
                        self.discard(taken.disarm(), CloseReason::HookRejected);
                        return Err(self.timed_out(TimeoutPhase::Validate, start));
                    }
                }
            }
            return Ok(self.hand_out(permit.into_checkout(), taken.disarm(), location, start, now));
        }
    }

    /// Turns the permit into the checked-out connection's slot and wraps it for the user.
    fn hand_out(
        self: &Arc<Self>,
        slot: SlotToken,
        mut conn: Conn<C::Client>,
        location: &'static Location<'static>,
        start: Instant,
        now: Instant,
    ) -> PooledConnection<C> {
        conn.uses += 1;
        conn.meta.checked_out(self.now_nanos(now), location);
        let (total, idle) = self.slots.counts();
        self.stats.acquired(
            now.saturating_duration_since(start),
            total.saturating_sub(idle),
        );
        PooledConnection::new(Arc::clone(self), conn, slot, now)
    }

    pub(crate) fn timed_out(&self, phase: TimeoutPhase, start: Instant) -> PoolError {
        self.stats.timeouts.fetch_add(1, Relaxed);
        let waited = start.elapsed();
        let statistics = Box::new(self.statistics());
        warn!(
            pool.target = %self.target,
            phase = ?phase,
            waited = ?waited,
            pool.active = statistics.active_connections,
            pool.max_size = statistics.max_size,
            pool.waiting = statistics.waiting_requests,
            "acquire timed out; raise max_size or acquire_timeout, or return connections sooner"
        );
        PoolError::Timeout {
            phase,
            waited,
            statistics,
        }
    }

    /// Waits (up to 100 ms, within `deadline`) for `release` to hand over a connection.
    /// Cancel-safe: a connection handed over to a waiter that is gone goes back to the pool.
    async fn wait_for_return(
        &self,
        permit: &Permit<'_, Conn<C::Client>>,
        deadline: Instant,
    ) -> Option<Conn<C::Client>> {
        let mut wait = OnDrop::new(self.slots.join_handoff(permit), |wait| {
            if let Some(conn) = wait.leave() {
                self.push_idle(conn, Instant::now(), End::Newest);
            }
        });
        // A connection may have been returned between `pop_idle` and joining the queue.
        if let Some(conn) = self.slots.pop_idle(permit, true) {
            return Some(conn);
        }
        // Also woken when an attempt ends (a failure may now fail this acquire fast) and when
        // the next attempt becomes due (a hedge beside hung ones), to start it on time.
        let changed = self.attempts.changed.notified();
        let now = Instant::now();
        let mut until = deadline.min(now + Duration::from_millis(100));
        if let Some(due) = self.outage.next_due().filter(|due| *due > now) {
            until = until.min(due);
        }
        tokio::select! {
            biased;
            conn = wait.recv_until(until) => conn,
            () = changed => None,
        }
    }
}
