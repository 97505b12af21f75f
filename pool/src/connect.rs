//! Opening connections: admission by the outage rules, one bounded attempt, adoption into
//! the pool.
//!
//! Every attempt is made by the holder of a slot ([`Permit`]), and a new connection is
//! counted through that permit ([`Slots::opened`](crate::slots::Slots::opened)), so opening
//! can never take the pool past `max_size`. During an outage the attempt is the single-flight
//! trial the outage rules admit; a guard gives the trial back if the attempt is dropped.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use crate::conn::{Conn, PoolConn};
use crate::connector::Connector;
use crate::error::{ConnectFailure, PoolError, TimeoutPhase};
use crate::on_drop::{OnDrop, on_drop};
use crate::outage::{Admission, Refusal, Transition};
use crate::shared::Shared;
use crate::slots::{End, Permit};
use crate::stats::CloseReason;

/// What `open` gives an acquire.
pub(crate) enum Opened<T> {
    /// A new connection, counted as checked out.
    Conn(T),
    /// No attempt is allowed now, but open connections answer: wait for one to be returned.
    WaitForReturn,
}

impl<C: Connector> Shared<C> {
    /// Opens a connection for an acquire, within the deadline and the outage rules.
    pub(crate) async fn open(
        &self,
        permit: &Permit<'_, Conn<C::Client>>,
        deadline: Instant,
        start: Instant,
    ) -> Result<Opened<Conn<C::Client>>, PoolError> {
        let now = Instant::now();
        let admission = match self.outage.admit(now) {
            Ok(a) => a,
            Err(refusal) => {
                if refusal.sessions_answer && self.slots.counts().0 > 0 {
                    return Ok(Opened::WaitForReturn);
                }
                self.stats.unavailable.fetch_add(1, Relaxed);
                return Err(self.unavailable(refusal));
            }
        };
        let limit = deadline.min(now + self.config.connect_timeout);
        match self.connect_once(permit, admission, limit).await {
            Ok(conn) => Ok(Opened::Conn(conn)),
            Err(None) => Err(self.timed_out(TimeoutPhase::Connect, start)),
            Err(Some(_)) if self.outage.sessions_answer() && self.slots.counts().0 > 0 => {
                Ok(Opened::WaitForReturn)
            }
            Err(Some(e)) => Err(e),
        }
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

    /// Opens a connection straight onto the idle stack (start-up, maintenance).
    pub(crate) async fn open_for_idle(
        &self,
        permit: &Permit<'_, Conn<C::Client>>,
        limit: Instant,
    ) -> Result<(), PoolError> {
        let admission = self
            .outage
            .admit(Instant::now())
            .map_err(|r| self.unavailable(r))?;
        match self.connect_once(permit, admission, limit).await {
            Ok(conn) => {
                self.push_idle(conn, Instant::now(), End::Newest);
                Ok(())
            }
            Err(Some(e)) => Err(e),
            Err(None) => Err(PoolError::Connect {
                target: self.target.clone(),
                kind: ConnectFailure::TimedOut(self.config.connect_timeout),
                source: None,
            }),
        }
    }

    /// One bounded connection attempt; a new connection is counted through `permit`.
    /// `Err(None)`: `limit` passed before `connect_timeout` did (the caller's deadline, not the
    /// server's fault).
    async fn connect_once(
        &self,
        permit: &Permit<'_, Conn<C::Client>>,
        admission: Admission,
        limit: Instant,
    ) -> Result<Conn<C::Client>, Option<PoolError>> {
        let trial = OnDrop::new(admission == Admission::Trial, |armed| {
            if armed {
                self.outage.release_trial();
            }
        });
        let started = Instant::now();
        let full = started + self.config.connect_timeout;
        self.connecting.fetch_add(1, AcqRel);
        let _connecting = on_drop(|| {
            self.connecting.fetch_sub(1, AcqRel);
            self.drivers.ended.notify_waiters();
        });
        let result = timeout_at(limit, self.connector.connect()).await;
        let now = Instant::now();
        trial.disarm();
        let (kind, source) = match result {
            Ok(Ok(connection)) => {
                let transition = self.outage.on_success(now, None);
                if let Transition::Recovered(outage) = transition {
                    self.recovering.store(true, Relaxed);
                    info!(
                        pool.target = %self.target,
                        outage = ?outage,
                        "database connection recovered; serving again"
                    );
                }
                let conn = self.adopt(connection, now);
                let conn = match self.after_connect(conn, limit).await {
                    Ok(conn) => conn,
                    Err(e) => return Err(Some(e)),
                };
                self.slots.opened(permit);
                if self.slots.counts().0 >= self.config.min_size {
                    self.recovering.store(false, Relaxed);
                }
                return Ok(conn);
            }
            Ok(Err(e)) => (e.kind, e.source),
            Err(_) if limit < full => {
                if admission == Admission::Trial {
                    self.outage.release_trial();
                }
                return Err(None);
            }
            Err(_) => (ConnectFailure::TimedOut(self.config.connect_timeout), None),
        };
        self.stats.connect_errors.fetch_add(1, Relaxed);
        let message = crate::redact::redact_url(&kind.to_string());
        // A server that is starting up or recovering (SQLSTATE 57P03) accepts TCP before it
        // accepts logins: count it as not there yet, so the TCP probe's next success makes
        // the next attempt due at once instead of after the whole backoff. So is an attempt
        // that got no answer at all within connect_timeout (packets lost on the way: the
        // probe tells when they pass again); each such attempt took connect_timeout, which
        // paces them without the backoff.
        let unreachable = match &kind {
            // A standby not yet promoted is as good as not there: the probe's next success
            // makes the next attempt due, so a promotion is noticed within a probe interval.
            ConnectFailure::Refused | ConnectFailure::TimedOut(_) | ConnectFailure::Role(_) => true,
            ConnectFailure::Server(message) => message.contains("(57P03)"),
            _ => false,
        };
        if self.outage.on_failure(now, message.clone(), unreachable) == Transition::OutageBegan {
            self.suspect_epoch.fetch_add(1, AcqRel);
            warn!(
                pool.target = %self.target,
                error = %message,
                "database unreachable; failing acquires fast and retrying with backoff; check that PostgreSQL is up and reachable"
            );
            self.maintenance_wake.notify_one();
        } else {
            debug!(pool.target = %self.target, error = %message, "connection attempt failed");
        }
        Err(Some(PoolError::Connect {
            target: self.target.clone(),
            kind,
            source,
        }))
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
