//! [`Shared`]: the state every handle of one pool shares, and the paths every connection
//! takes back: return, park, close.
//!
//! The counts, the idle stack and the slots belong to [`Slots`]; the outage state machine to
//! [`OutageState`]; the driver tasks to [`Drivers`]. This file only decides what happens to a
//! connection that comes back (park it, hand it to a waiter, retire it, close it) and
//! assembles the figures that [`Pool::statistics`](crate::Pool::statistics) and
//! [`Pool::health`](crate::Pool::health) report, from memory.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::PoolConfig;
use crate::conn::Conn;
use crate::connector::Connector;
use crate::drivers::Drivers;
use crate::health::{HealthInputs, HealthReport};
use crate::outage::{OutageState, Transition};
use crate::slots::{End, Slots};
use crate::stats::{CloseReason, PoolStatistics, ShutdownReport, Stats};

pub(crate) struct Shared<C: Connector> {
    pub connector: C,
    pub config: PoolConfig,
    pub target: String,
    pub slots: Slots<Conn<C::Client>>,
    pub stats: Stats,
    pub outage: OutageState,
    pub drivers: Arc<Drivers>,
    pub maintenance_wake: Arc<Notify>,
    /// Bumped when the path to the server may have gone bad: connections validated before
    /// the bump are validated again before they are handed out.
    pub suspect_epoch: AtomicU64,
    pub started_at: Instant,
    pub next_id: AtomicU64,
    pub rng: Mutex<u64>,
    /// An outage ended and the pool has not been back at `min_size` since.
    pub recovering: AtomicBool,
    /// Connection attempts in flight; shutdown waits for them (each is bounded).
    pub connecting: AtomicUsize,
    pub shutdown_report: watch::Sender<Option<ShutdownReport>>,
}

impl<C: Connector> Shared<C> {
    pub(crate) fn new(config: PoolConfig, connector: C, seed: u64) -> Self {
        let now = Instant::now();
        Shared {
            target: connector.target(),
            slots: Slots::new(config.max_size),
            stats: Stats::new(),
            outage: OutageState::new(
                config.reconnect_backoff_base,
                config.reconnect_backoff_max,
                seed,
                now,
            ),
            drivers: Drivers::new(),
            maintenance_wake: Arc::new(Notify::new()),
            suspect_epoch: AtomicU64::new(0),
            started_at: now,
            next_id: AtomicU64::new(1),
            rng: Mutex::new(seed.rotate_left(17) | 1),
            recovering: AtomicBool::new(false),
            connecting: AtomicUsize::new(0),
            shutdown_report: watch::channel(None).0,
            connector,
            config,
        }
    }

    pub(crate) fn now_nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started_at).as_nanos() as u64
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.slots.is_closed()
    }

    /// Why `conn` must be retired now, if it must.
    pub(crate) fn retire_reason(
        &self,
        conn: &Conn<C::Client>,
        now: Instant,
    ) -> Option<CloseReason> {
        if self.config.max_uses.is_some_and(|max| conn.uses >= max) {
            return Some(CloseReason::MaxUses);
        }
        if conn.expires_at.is_some_and(|at| now >= at) {
            return Some(CloseReason::MaxLifetime);
        }
        None
    }

    /// Parks a connection that is counted as checked out on the idle stack (the one way onto
    /// it), or closes it when the pool has closed.
    pub(crate) fn push_idle(&self, mut conn: Conn<C::Client>, now: Instant, end: End) {
        conn.last_used = now;
        if let Err(conn) = self.slots.push_idle(conn, end) {
            self.close_conn(conn, CloseReason::Shutdown);
        }
    }

    /// Takes back a checked-out connection (the guard's `Drop`, before its slot): to the
    /// first acquire waiting for one, onto the idle stack, or closed when it cannot be reused.
    pub(crate) fn release(&self, conn: Conn<C::Client>, now: Instant) {
        self.stats.releases.fetch_add(1, Relaxed);
        conn.meta.checked_in();
        if self.is_closed() {
            let reason = if conn.meta.forced.load(Relaxed) {
                CloseReason::Forced
            } else {
                CloseReason::Shutdown
            };
            self.discard(conn, reason);
            return;
        }
        if self.connector.is_closed(&conn.client) {
            debug!(
                conn.id = conn.meta.id,
                "returned connection is closed; discarded"
            );
            self.discard(conn, CloseReason::Broken);
            return;
        }
        if let Some(reason) = self.retire_reason(&conn, now) {
            debug!(conn.id = conn.meta.id, reason = ?reason, "connection recycled");
            self.discard(conn, reason);
            self.maintenance_wake.notify_one();
            return;
        }
        let conn = if self.slots.has_handoff_waiters() {
            let mut conn = conn;
            conn.last_used = now;
            match self.slots.hand_over(conn) {
                Some(conn) => conn,
                None => return,
            }
        } else {
            conn
        };
        self.push_idle(conn, now, End::Newest);
    }

    /// A checked-out connection given up by its user ([`PooledConnection::discard`](crate::PooledConnection::discard)).
    pub(crate) fn release_discarded(&self, conn: Conn<C::Client>) {
        self.stats.releases.fetch_add(1, Relaxed);
        conn.meta.checked_in();
        self.discard(conn, CloseReason::Discarded);
    }

    /// Closes a connection that is counted as checked out.
    pub(crate) fn discard(&self, conn: Conn<C::Client>, reason: CloseReason) {
        self.slots.remove_checked_out();
        self.close_conn(conn, reason);
    }

    /// Closes a connection that no longer counts. Broken or suspect connections get their
    /// driver aborted (the socket is useless); healthy ones are dropped so the driver sends a
    /// polite Terminate and ends by itself.
    pub(crate) fn close_conn(&self, conn: Conn<C::Client>, reason: CloseReason) {
        self.stats.closed(reason);
        match reason {
            CloseReason::Broken
            | CloseReason::ValidationFailed
            | CloseReason::Outage
            | CloseReason::Forced
            | CloseReason::Cancelled => conn.meta.driver.abort(),
            _ => {}
        }
        drop(conn);
    }

    /// Closes every idle connection; returns how many.
    pub(crate) fn close_all_idle(&self, reason: CloseReason) -> usize {
        let drained = self.slots.drain_idle();
        let n = drained.len();
        for conn in drained {
            self.close_conn(conn, reason);
        }
        n
    }

    /// A round trip went unanswered: the network path to the server is silent (a blackhole, a
    /// lost peer). Every idle connection shares that path, so all of them are dropped, and
    /// those checked out now must be validated before they are handed out again.
    pub(crate) fn silent_path_detected(&self, what: &str) {
        self.suspect_epoch.fetch_add(1, AcqRel);
        let dropped = self.close_all_idle(CloseReason::Outage);
        let now = Instant::now();
        if self
            .outage
            .on_silent(now, format!("{what}: no answer from {}", self.target))
            == Transition::OutageBegan
        {
            warn!(
                pool.target = %self.target,
                dropped_idle = dropped,
                "database stopped answering ({what}); dropped idle connections, failing fast until it answers again; check the network path to the database"
            );
        }
        self.maintenance_wake.notify_one();
    }

    pub(crate) fn statistics(&self) -> PoolStatistics {
        let (total, idle) = self.slots.counts();
        self.stats.snapshot(
            (self.config.min_size, self.config.max_size),
            total,
            idle,
            self.drivers.live.load(Acquire),
        )
    }

    /// What health is computed from, read from memory without a lock shared with acquire.
    pub(crate) fn health_inputs(&self, now: Instant) -> HealthInputs {
        let (total, idle) = self.slots.counts();
        HealthInputs {
            outage: self.outage.snapshot(now),
            terminated: self.shutdown_report.borrow().is_some(),
            closed: self.is_closed(),
            recovering: self.recovering.load(Relaxed),
            total,
            idle,
            waiting: self.stats.waiting.load(Relaxed),
            min_size: self.config.min_size,
            max_size: self.config.max_size,
            target: self.target.clone(),
            uptime: now.saturating_duration_since(self.started_at),
        }
    }

    pub(crate) fn health(&self) -> HealthReport {
        crate::health::assess(self.health_inputs(Instant::now()))
    }
}
