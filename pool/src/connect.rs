//! Opening connections: admission by the outage rules, one bounded attempt, adoption into
//! the pool.
//!
//! # Implementation details
//! Every attempt holds a slot for as long as its socket is open, so connections open and
//! opening never exceed `max_size`. An attempt an acquire asks for runs in a task of its own
//! ([`Shared::spawn_attempt`]) holding that acquire's slot, bounded by `connect_timeout`
//! alone: the acquire waits for it within its own deadline, and when the acquire is gone (it
//! timed out or was dropped) the connection goes to the next waiter, or onto the idle stack.
//! An acquire never cuts an attempt short, so a slow server is not handed one abandoned
//! attempt per waiter (the storm of connection attempts HikariCP's pool-sizing notes warn
//! of), and an attempt that outlives a burst of short deadlines still lands a connection.
//! During an outage the outage rules admit attempts one at a time (see `outage`); an acquire
//! that may not start one waits for those in flight instead of failing fast. The one
//! exception to "an attempt ends at its own `connect_timeout`": when an attempt succeeds,
//! those that had gone `hang_after` without an answer before it even started are abandoned
//! (their packets were lost in a blackhole that has since healed), so their slots serve the
//! waiters at once instead of after `connect_timeout`.

use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use crate::conn::{Conn, PoolConn};
use crate::connector::Connector;
use crate::error::{ConnectFailure, PoolError, TimeoutPhase};
use crate::on_drop::{OnDrop, on_drop};
use crate::outage::{Paced, Refusal, Ticket, Transition};
use crate::shared::Shared;
use crate::slots::{End, Permit, SlotToken};
use crate::stats::CloseReason;

/// What `open` gives an acquire.
pub(crate) enum Opened<'a, T> {
    /// A new connection, counted as checked out under the slot its attempt held.
    Conn(T, SlotToken),
    /// No attempt may start now, but one is in flight or open connections answer: wait, with
    /// the permit, for a connection to arrive or come back.
    Wait(Permit<'a, T>),
    /// The attempt failed, but open connections answer: get a slot again and wait for one.
    Again,
}

/// What an attempt hands the acquire that asked for it.
type Delivery<T> = Result<(T, SlotToken), PoolError>;

/// The acquire's end of its attempt. Dropped (the acquire timed out or was cancelled), a
/// connection that arrived meanwhile goes back to the pool instead of being lost.
struct Arrival<'a, C: Connector> {
    shared: &'a Arc<Shared<C>>,
    rx: oneshot::Receiver<Delivery<Conn<C::Client>>>,
}

impl<C: Connector> Drop for Arrival<'_, C> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok((conn, slot))) = self.rx.try_recv() {
            self.shared.spare(conn, slot);
        }
    }
}

/// Resolves when an attempt started at `started` is to be abandoned: a newer one succeeded
/// while it had already gone `hang_after` without an answer.
async fn abandoned(cutoff: &mut watch::Receiver<Option<Instant>>, started: Instant) {
    loop {
        if cutoff.borrow_and_update().is_some_and(|cut| started < cut) {
            return;
        }
        if cutoff.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

impl<C: Connector> Shared<C> {
    /// The outage rules' admission, after noting an attempt that hangs.
    pub(crate) fn admit(&self, now: Instant) -> Result<Ticket, Refusal> {
        self.check_overdue(now);
        self.outage.admit(now)
    }

    /// Begins an outage when an attempt in flight has had no answer for too long.
    pub(crate) fn check_overdue(&self, now: Instant) {
        if self.outage.overdue(now, &self.target) {
            self.suspect_epoch.fetch_add(1, AcqRel);
            warn!(
                pool.target = %self.target,
                hang_after = ?self.outage.hang_after(),
                attempts_in_flight = self.outage.attempts_in_flight(),
                "connection attempts get no answer (a blackhole or an overloaded server); opening one at a time until one succeeds; check the network path to the database"
            );
            self.maintenance_wake.notify_one();
        }
    }

    /// Opens a connection for an acquire, within its deadline and the outage rules. The
    /// permit goes to the attempt, which outlives the acquire if it must.
    pub(crate) async fn open<'a>(
        self: &'a Arc<Self>,
        permit: Permit<'a, Conn<C::Client>>,
        deadline: Instant,
        start: Instant,
    ) -> Result<Opened<'a, Conn<C::Client>>, PoolError> {
        let mut probed = false;
        let ticket = loop {
            let now = Instant::now();
            let refusal = match self.admit(now) {
                Ok(ticket) => break ticket,
                Err(refusal) => refusal,
            };
            // Fail fast only when nothing is trying: no attempt in flight, none due before
            // this acquire's deadline, no open connection that answers.
            if refusal.attempts_in_flight > 0
                || refusal.due.is_some_and(|due| due < deadline)
                || (refusal.sessions_answer && self.slots.counts().0 > 0)
            {
                return Ok(Opened::Wait(permit));
            }
            // Before failing, one acquire in a while asks the server's port itself, so that
            // requests arriving at its return are served instead of failed.
            if !probed && self.probe_on_demand(now, deadline).await {
                probed = true;
                continue;
            }
            if crate::planted::planted(crate::planted::Bug::FailFast) {
                return Ok(Opened::Wait(permit));
            }
            self.stats.unavailable.fetch_add(1, Relaxed);
            return Err(self.unavailable(refusal));
        };
        let (tx, rx) = oneshot::channel();
        self.spawn_attempt(ticket, permit.into_checkout(), Some(tx));
        let mut arrival = Arrival { shared: self, rx };
        match timeout_at(deadline, &mut arrival.rx).await {
            Ok(Ok(Ok((conn, slot)))) => Ok(Opened::Conn(conn, slot)),
            Ok(Ok(Err(_))) if self.outage.sessions_answer() && self.slots.counts().0 > 0 => {
                Ok(Opened::Again)
            }
            Ok(Ok(Err(e))) => Err(e),
            // The task ended without a word: its runtime is shutting down.
            Ok(Err(_)) => Err(PoolError::Closed),
            Err(_) => Err(self.timed_out(TimeoutPhase::Connect, start)),
        }
    }

    /// An acquire is about to fail fast while the server is out of reach. With requests
    /// waiting to be served, the server's return is worth noticing sooner than the next
    /// outage probe: at most once per tenth of `outage_probe_interval`, this acquire runs a
    /// TCP probe itself (nothing but a connect: on a port with nothing behind it the kernel
    /// refuses in microseconds), bounded by that tenth and its own deadline. True when the
    /// probe reached the server (the next attempt is then due at once).
    async fn probe_on_demand(&self, now: Instant, deadline: Instant) -> bool {
        let gap = self.config.outage_probe_interval / 10;
        let at = self.now_nanos(now).max(1);
        let last = self.attempts.demand_probe_at.load(Relaxed);
        if last != 0 && at.saturating_sub(last) < gap.as_nanos() as u64 {
            return false;
        }
        if self
            .attempts
            .demand_probe_at
            .compare_exchange(last, at, AcqRel, Relaxed)
            .is_err()
        {
            return false;
        }
        match timeout_at(deadline.min(now + gap), self.connector.probe()).await {
            Ok(Ok(())) => {
                self.outage.on_probe(now, Instant::now(), true);
                true
            }
            Ok(Err(_)) => {
                self.outage.on_probe(now, Instant::now(), false);
                false
            }
            // No answer this soon says nothing: the outage probe, with its own timeout, tells.
            Err(_) => false,
        }
    }

    /// Starts an attempt in a task of its own, holding `slot` until its socket is open as a
    /// connection or closed. Its connection goes to `requester` if it still waits, else to
    /// the next waiter or the idle stack.
    pub(crate) fn spawn_attempt(
        self: &Arc<Self>,
        ticket: Ticket,
        slot: SlotToken,
        requester: Option<oneshot::Sender<Delivery<Conn<C::Client>>>>,
    ) {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            // The slot goes back however the task ends (finished, or dropped with its runtime).
            let slot = OnDrop::new(slot, |slot| shared.slots.check_in(slot));
            let limit = ticket.started + shared.config.connect_timeout;
            let mut cutoff = shared.attempts.hung_cutoff.subscribe();
            let result = tokio::select! {
                biased;
                result = shared.connect_once(ticket, limit) => result,
                () = abandoned(&mut cutoff, ticket.started) => {
                    debug!(
                        pool.target = %shared.target,
                        "a connection attempt that hung since before a newer one succeeded was abandoned; its slot is free"
                    );
                    drop(slot);
                    shared.attempts.changed.notify_waiters();
                    return;
                }
            };
            match result {
                Ok(conn) => {
                    let slot = slot.disarm();
                    shared.slots.opened_under(&slot);
                    shared.counted();
                    match requester {
                        Some(tx) => {
                            if let Err(Ok((conn, slot))) = tx.send(Ok((conn, slot))) {
                                shared.spare(conn, slot);
                            }
                        }
                        None => shared.spare(conn, slot),
                    }
                }
                Err(e) => {
                    drop(slot);
                    if let Some(tx) = requester {
                        let _ = tx.send(Err(e));
                    }
                }
            }
            shared.attempts.changed.notify_waiters();
        });
    }

    /// A new connection nobody waits for any more (its requester gave up): to the first
    /// acquire waiting for one, or onto the idle stack; then its slot.
    pub(crate) fn spare(&self, conn: Conn<C::Client>, slot: SlotToken) {
        if self.is_closed() {
            self.discard(conn, CloseReason::Shutdown);
        } else {
            self.take_back(conn, Instant::now());
        }
        self.slots.check_in(slot);
    }

    /// The error for an attempt the outage rules do not allow now.
    pub(crate) fn unavailable(&self, refusal: Refusal) -> PoolError {
        PoolError::Unavailable {
            target: self.target.clone(),
            down_for: refusal.down_for,
            retry_in: refusal.retry_in,
            last_error: refusal.last_error,
        }
    }

    /// Opens a connection straight onto the idle stack, waiting for it (start-up).
    pub(crate) async fn open_for_idle(
        &self,
        permit: &Permit<'_, Conn<C::Client>>,
        limit: Instant,
    ) -> Result<(), PoolError> {
        let ticket = self
            .admit(Instant::now())
            .map_err(|r| self.unavailable(r))?;
        let conn = self.connect_once(ticket, limit).await?;
        self.slots.opened(permit);
        self.counted();
        self.push_idle(conn, Instant::now(), End::Newest);
        Ok(())
    }

    /// During an outage or to reach `min_size`: one attempt under a free slot, if the outage
    /// rules admit one, in a task of its own. True when one started.
    pub(crate) fn spawn_spare_attempt(self: &Arc<Self>) -> bool {
        let Ok(permit) = self.slots.try_permit() else {
            return false;
        };
        let Ok(ticket) = self.admit(Instant::now()) else {
            return false;
        };
        // Idle connections hold no slot: open plus opening (this one included) must stay
        // within max_size for the connection to have a place when it comes.
        if self.slots.counts().0 + self.outage.attempts_in_flight() > self.config.max_size {
            self.outage.release(ticket);
            return false;
        }
        self.spawn_attempt(ticket, permit.into_checkout(), None);
        true
    }

    /// A new connection was counted: the pool is back at `min_size` once it has that many.
    fn counted(&self) {
        if self.slots.counts().0 >= self.config.min_size {
            self.recovering.store(false, Relaxed);
        }
    }

    /// One attempt, bounded by `limit`; the new connection is not counted yet.
    async fn connect_once(
        &self,
        ticket: Ticket,
        limit: Instant,
    ) -> Result<Conn<C::Client>, PoolError> {
        // Dropped mid-attempt (a shutdown's runtime going away): the attempt is no longer in
        // flight, and says nothing of the server.
        let ticket = OnDrop::new(ticket, |ticket| self.outage.release(ticket));
        self.connecting.fetch_add(1, AcqRel);
        let _connecting = on_drop(|| {
            self.connecting.fetch_sub(1, AcqRel);
            self.drivers.ended.notify_waiters();
        });
        let result = timeout_at(limit, self.connector.connect()).await;
        let now = Instant::now();
        let ticket = ticket.disarm();
        let (kind, source) = match result {
            Ok(Ok(connection)) => {
                let transition = self.outage.on_success(ticket, now);
                if let Transition::Recovered(outage) = transition {
                    self.recovering.store(true, Relaxed);
                    self.maintenance_wake.notify_one();
                    info!(
                        pool.target = %self.target,
                        outage = ?outage,
                        elapsed = ?now.saturating_duration_since(ticket.started),
                        "database connection recovered; serving again"
                    );
                }
                // Attempts that have gone without an answer for hang_after longer than this
                // one took lost their packets (a blackhole that has healed): their slots are
                // worth more to the next waiters.
                if let Some(cut) = ticket.started.checked_sub(self.outage.hang_after()) {
                    self.attempts.hung_cutoff.send_if_modified(|at| {
                        let newer = at.is_none_or(|at| cut > at);
                        if newer {
                            *at = Some(cut);
                        }
                        newer
                    });
                }
                let conn = self.adopt(connection, now);
                return self.after_connect(conn, limit).await;
            }
            Ok(Err(e)) => (e.kind, e.source),
            Err(_) => (
                ConnectFailure::TimedOut(limit.saturating_duration_since(ticket.started)),
                None,
            ),
        };
        self.stats.connect_errors.fetch_add(1, Relaxed);
        let message = crate::redact::redact_url(&kind.to_string());
        // A server that is starting up or recovering (SQLSTATE 57P03) accepts TCP before it
        // accepts logins: count it as not there yet, so the TCP probe's next success makes
        // the next attempt due at once instead of after the whole backoff. An attempt that
        // got no answer within connect_timeout is not: where packets are lost the probe
        // fails too and says so itself, and where the port answers (a proxy whose server's
        // answers vanish) its success is no news, and would only start one more attempt
        // into the silence; the hedges and a hung attempt's close find that heal.
        let unreachable = match &kind {
            ConnectFailure::Refused | ConnectFailure::Closed => true,
            ConnectFailure::Server(message) => message.contains("(57P03)"),
            _ => false,
        };
        // Accepted and closed before PostgreSQL spoke, with no session of the pool's left:
        // a proxy whose servers are all gone (HAProxy while Patroni promotes a standby), and
        // every request fails until a connect succeeds. While open sessions still serve (a
        // proxy or server turning new connections away), there is no such hurry: the probe
        // paces attempts, as for a refusal.
        let nothing_serves = matches!(kind, ConnectFailure::Closed) && self.slots.counts().0 == 0;
        let transition = if matches!(kind, ConnectFailure::TimedOut(_)) {
            self.outage.on_timeout(ticket, now, message.clone())
        } else if matches!(kind, ConnectFailure::Role(_)) || nothing_serves {
            // Servers up, none in the role asked for (a standby is about to be promoted), or
            // a proxy with no server behind it yet: the next answer is close, and asking
            // costs the database nothing.
            let pace = self.config.outage_probe_interval / 4;
            let why = if nothing_serves {
                Paced::NoServer
            } else {
                Paced::Misfit
            };
            self.outage
                .on_paced(ticket, now, message.clone(), pace, why)
        } else {
            self.outage
                .on_failure(ticket, now, message.clone(), unreachable)
        };
        let hung = now.saturating_duration_since(ticket.started) >= self.outage.hang_after();
        if hung && !matches!(kind, ConnectFailure::TimedOut(_)) {
            self.outage.on_hung_closed(now);
        }
        if transition == Transition::OutageBegan {
            self.suspect_epoch.fetch_add(1, AcqRel);
            warn!(
                pool.target = %self.target,
                error = %message,
                "database unreachable; failing acquires fast and retrying with backoff; check that PostgreSQL is up and reachable"
            );
            self.maintenance_wake.notify_one();
        } else {
            debug!(
                pool.target = %self.target,
                error = %message,
                elapsed = ?now.saturating_duration_since(ticket.started),
                "connection attempt failed"
            );
        }
        Err(PoolError::Connect {
            target: self.target.clone(),
            kind,
            source,
        })
    }

    /// Runs the `after_connect` hook on a new connection (not yet counted), within `limit`;
    /// closes the connection when the hook fails, runs out of time or is dropped.
    async fn after_connect(
        &self,
        conn: Conn<C::Client>,
        limit: Instant,
    ) -> Result<Conn<C::Client>, PoolError> {
        let Some(hook) = &self.hooks.after_connect else {
            return Ok(conn);
        };
        let conn = OnDrop::new(conn, |conn| self.close_conn(conn, CloseReason::Cancelled));
        let message = match timeout_at(limit, hook(&conn.client)).await {
            Ok(Ok(())) => return Ok(conn.disarm()),
            Ok(Err(e)) => crate::redact::redact_url(&e.to_string()),
            Err(_) => "it did not finish within the connection attempt's deadline".to_string(),
        };
        let conn = conn.disarm();
        debug!(conn.id = conn.meta.id, error = %message, "after_connect hook failed; connection closed");
        self.close_conn(conn, CloseReason::HookRejected);
        self.stats.connect_errors.fetch_add(1, Relaxed);
        Err(PoolError::Connect {
            target: self.target.clone(),
            kind: ConnectFailure::Hook(message),
            source: None,
        })
    }

    /// Spawns the driver of a new connection and wraps it for the pool.
    fn adopt(
        &self,
        connection: crate::connector::Connection<C::Client>,
        now: Instant,
    ) -> Conn<C::Client> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let meta = self.drivers.spawn(id, connection.driver);
        self.stats.created.fetch_add(1, Relaxed);
        let expires_at = self.config.max_lifetime.map(|life| {
            let jitter = {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                crate::outage::next_f64(&mut rng)
            };
            now + life.mul_f64(1.0 - 0.025 * jitter)
        });
        debug!(conn.id = id, pool.target = %self.target, "connection opened");
        Box::new(PoolConn {
            client: connection.client,
            meta,
            uses: 0,
            last_used: now,
            opened_at: now,
            validated_epoch: self.suspect_epoch.load(Acquire),
            expires_at,
            statements: Default::default(),
            session: connection.session,
        })
    }
}
