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

use crate::config::{PoolConfig, SessionReset};
use crate::conn::Conn;
use crate::connector::Connector;
use crate::drivers::Drivers;
use crate::health::{HealthInputs, HealthReport};
use crate::hooks::Hooks;
use crate::outage::{OutageState, Transition};
use crate::session::SessionStatus;
use crate::slots::{End, SlotToken, Slots};
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
    /// Connection attempts and outage probes in flight; shutdown waits for them (each is
    /// bounded).
    pub connecting: AtomicUsize,
    /// What attempts and probes in flight share (see `connect`).
    pub attempts: crate::attempts::Attempts,
    pub shutdown_report: watch::Sender<Option<ShutdownReport>>,
    pub hooks: Hooks<C::Client>,
    /// Server sessions the pool gave up on because the network failed, which the server may
    /// still hold (its keepalive notices after hours): terminated once it answers again.
    pub orphans: Mutex<Vec<Orphan>>,
    /// Sessions lent to the shared path ([`Pool::query`](crate::Pool::query)).
    pub lender: crate::lent::Lender<C>,
}

/// A server session the pool gave up on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Orphan {
    pub pid: u32,
    pub opened_at: Instant,
    pub given_up_at: Instant,
}

/// Orphans remembered at most (the oldest go first).
const MAX_ORPHANS: usize = 1024;

/// Whether a session closed for `reason` may still be held by the server: its socket failed
/// or went silent, or it was given up on a path nobody vouched for (a user's discard, often
/// after a timeout; a restore that could not finish; an attempt cut short), so its
/// Terminate may never arrive. Sessions retired on a healthy path are left alone.
fn may_outlive_its_close(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::Broken
            | CloseReason::ValidationFailed
            | CloseReason::Outage
            | CloseReason::Cancelled
            | CloseReason::Discarded
            | CloseReason::SessionNotReset
    )
}

impl<C: Connector> Shared<C> {
    pub(crate) fn new(
        config: PoolConfig,
        connector: C,
        seed: u64,
        hooks: Hooks<C::Client>,
    ) -> Self {
        let now = Instant::now();
        Shared {
            target: connector.target(),
            slots: Slots::new(config.max_size),
            stats: Stats::for_pool(&config.application_name),
            outage: OutageState::new(
                config.reconnect_backoff_base,
                config.reconnect_backoff_max,
                config.outage_probe_interval.saturating_mul(2),
                config.connect_timeout,
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
            attempts: Default::default(),
            shutdown_report: watch::channel(None).0,
            hooks,
            orphans: Mutex::new(Vec::new()),
            lender: crate::lent::Lender::new(),
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

    /// Parks a connection that is counted as checked out on the idle stack (the one way onto
    /// it), or closes it when the pool has closed.
    pub(crate) fn push_idle(&self, mut conn: Conn<C::Client>, now: Instant, end: End) {
        conn.last_used = now;
        if let Err(conn) = self.slots.push_idle(conn, end) {
            self.close_conn(conn, CloseReason::Shutdown);
        }
    }

    /// Takes back a checked-out connection and then its slot (the guard's `Drop`). A session
    /// left inside a transaction or with a request in flight is first restored in a task of
    /// its own (cancel, drain, `ROLLBACK`, each bounded), holding its slot meanwhile, so the
    /// next user never gets it dirty; then it goes where a clean one goes.
    pub(crate) fn release(self: &Arc<Self>, conn: Conn<C::Client>, slot: SlotToken, now: Instant) {
        self.release_after(conn, slot, now, 0);
    }

    /// [`release`](Self::release) of a session on which the pool sent a cancel request
    /// (`cancels`, the shared path's): it is settled before reuse whatever its status, as a
    /// cancel that arrived late waits for the session's next statement.
    pub(crate) fn release_after(
        self: &Arc<Self>,
        conn: Conn<C::Client>,
        slot: SlotToken,
        now: Instant,
        cancels: u64,
    ) {
        self.stats.releases.fetch_add(1, Relaxed);
        conn.meta.checked_in();
        let dirty = self.dirty(&conn).or_else(|| {
            let usable = !self.is_closed() && !self.connector.is_closed(&conn.client);
            let status = conn.session.as_ref().map(|s| s.status());
            (cancels > 0 && usable).then(|| status.unwrap_or(SessionStatus::Idle))
        });
        if let Some(status) = dirty {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let shared = Arc::clone(self);
                    runtime.spawn(async move { shared.restore(conn, slot, status, cancels).await });
                }
                Err(_) => {
                    self.discard(conn, CloseReason::SessionNotReset);
                    self.slots.check_in(slot);
                }
            }
            return;
        }
        self.take_back(conn, now);
        self.slots.check_in(slot);
    }

    /// The session's status when it is not fit to hand on as it is (and worth restoring), or
    /// when every return is reset.
    fn dirty(&self, conn: &Conn<C::Client>) -> Option<SessionStatus> {
        let status = conn
            .session
            .as_ref()
            .map_or(SessionStatus::Idle, |s| s.status());
        let reset =
            self.config.session_reset != SessionReset::Off || self.hooks.after_release.is_some();
        ((status != SessionStatus::Idle || reset)
            && !self.is_closed()
            && !self.connector.is_closed(&conn.client))
        .then_some(status)
    }

    /// Takes back a checked-out connection whose session is clean: to the first acquire
    /// waiting for one, onto the idle stack, or closed when it cannot be reused.
    pub(crate) fn take_back(&self, conn: Conn<C::Client>, now: Instant) {
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

    /// A checked-out connection given up by its user ([`PooledConnection::discard`](crate::PooledConnection::discard)),
    /// then its slot.
    pub(crate) fn release_discarded(&self, conn: Conn<C::Client>, slot: SlotToken) {
        self.stats.releases.fetch_add(1, Relaxed);
        conn.meta.checked_in();
        self.discard(conn, CloseReason::Discarded);
        self.slots.check_in(slot);
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
        if may_outlive_its_close(reason)
            && let Some(pid) = conn.session.as_ref().and_then(|s| s.backend_pid())
        {
            let mut orphans = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
            if orphans.len() >= MAX_ORPHANS {
                orphans.remove(0);
            }
            orphans.push(Orphan {
                pid,
                opened_at: conn.opened_at,
                given_up_at: Instant::now(),
            });
        }
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
        let mut snapshot = self.stats.snapshot(
            (self.config.min_size, self.config.max_size),
            total,
            idle,
            self.drivers.live.load(Acquire),
        );
        let (sessions, in_flight) = self.lender.figures();
        snapshot.shared_sessions = sessions;
        snapshot.shared_in_flight = in_flight;
        snapshot.shared_statements = self.lender.statements.load(Relaxed);
        snapshot.shared_abandoned = self.lender.abandoned.load(Relaxed);
        snapshot
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
            hosts: self.connector.hosts(),
        }
    }

    pub(crate) fn health(&self) -> HealthReport {
        crate::health::assess(self.health_inputs(Instant::now()))
    }
}
