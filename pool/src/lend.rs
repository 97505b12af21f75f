//! The shared path's policy, on the pool ([`Shared`]): which session a statement gets
//! ([`Shared::lend`]), and when a lent session is drained (taken out of sharing, to go back
//! once its statements end). The set itself is [`Lender`](crate::lent::Lender).
//!
//! A statement gets a lent session with nothing in flight; else a free idle connection, lent
//! now; else the least loaded lent session (its statement pipelined behind the others there);
//! with nothing lent, it waits for a slot like an acquire, or for another call's session.
//!
//! A session is drained when a statement on it was abandoned (its caller dropped the call or
//! its deadline passed: the server may still run it; statements pipelined behind it are freed
//! by a cancel request), when its connection failed, when it has been lent for
//! [`ROTATE_AFTER`] (so lifetime, use limits, validation and leak detection see it like any
//! checkout), when an outage begins, when an exclusive acquire finds no slot free
//! ([`Shared::reclaim_lent`]) or its last statement ends while one waits (exclusive users are
//! never starved by shared ones), and at shutdown.

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::Conn;
use crate::connector::Connector;
use crate::error::PoolError;
use crate::guard::PooledConnection;
use crate::lent::{GiveBack, Lent, load};
use crate::shared::Shared;
use crate::slots::SlotToken;

/// How long a session stays lent before it is drained and taken again: short beside the
/// leak threshold and the lifetime, long beside a statement.
pub(crate) const ROTATE_AFTER: Duration = Duration::from_secs(1);

/// A new session is lent rather than another statement pipelined once the least loaded one
/// has this many in flight and a slot is free.
const SPREAD_AT: usize = 2;

/// What the set offers a statement.
enum Offer<C: Connector> {
    /// Run on this session.
    Join(Arc<Lent<C>>),
    /// Lend another session first (`fallback`: join this one if none is free at once).
    Lend(Option<Arc<Lent<C>>>),
}

impl<C: Connector> Shared<C> {
    /// A session for one statement on the shared path, by `deadline`.
    pub(crate) async fn lend(
        self: &Arc<Self>,
        location: &'static Location<'static>,
        now: Instant,
        deadline: Instant,
    ) -> Result<Arc<Lent<C>>, PoolError> {
        // The fast path moves only pointers; waiting (and the acquire future it holds) is in
        // a boxed future, so the future every call builds stays small.
        if !self.outage.in_outage() {
            match self.offer(now)? {
                Offer::Join(lent) => return Ok(lent),
                // Only a session that is free now beats pipelining on a busy one.
                Offer::Lend(Some(busy)) => {
                    return Ok(self.try_lend_now(location, now).unwrap_or(busy));
                }
                Offer::Lend(None) => {}
            }
        }
        Box::pin(self.lend_slow(location, deadline)).await
    }

    /// [`lend`](Self::lend) when nothing lent could be joined at once.
    async fn lend_slow(
        self: &Arc<Self>,
        location: &'static Location<'static>,
        deadline: Instant,
    ) -> Result<Arc<Lent<C>>, PoolError> {
        loop {
            let now = Instant::now();
            if self.outage.in_outage() {
                // Its sessions may be on the silent path: everything goes through acquire,
                // which fails fast while the database is known to be down.
                self.lender.drain_where(|_| true);
            }
            match self.offer(now)? {
                Offer::Join(lent) => return Ok(lent),
                Offer::Lend(Some(busy)) => {
                    // Only a session that is free now beats pipelining on a busy one.
                    return Ok(self.try_lend_now(location, now).unwrap_or(busy));
                }
                Offer::Lend(None) => {
                    // Nothing lent: wait for a slot like an acquire, or for another call to
                    // lend a session meanwhile, and join that one.
                    let lent_out = self.lender.lent_out.notified();
                    tokio::pin!(lent_out);
                    lent_out.as_mut().enable();
                    if !self.lender.is_empty() {
                        continue;
                    }
                    let waiting = &self.lender.waiting;
                    waiting.fetch_add(1, Relaxed);
                    let _waiting = crate::on_drop::on_drop(|| {
                        waiting.fetch_sub(1, Relaxed);
                    });
                    let wait = deadline.saturating_duration_since(now);
                    tokio::select! {
                        biased;
                        conn = self.acquire(location, wait) => {
                            if let Some(lent) = self.lend_out(conn?, Instant::now()) {
                                return Ok(lent);
                            }
                            // Refused: the pool closed meanwhile (the loop says so).
                        }
                        () = &mut lent_out => {}
                    }
                }
            }
        }
    }

    /// Picks from the set: a session with nothing in flight, else the least loaded one unless
    /// a new one should be lent. Drops what must go (rotated, broken) outside the lock.
    fn offer(&self, now: Instant) -> Result<Offer<C>, PoolError> {
        let rotate = self.rotate_after();
        let mut gone = Vec::new();
        let offer = self.lender.with_set(|set| {
            if set.closed {
                return Err(PoolError::Closed);
            }
            let mut i = 0;
            while i < set.sessions.len() {
                let s = &set.sessions[i];
                if self.connector.is_closed(&s.conn().client)
                    || now.saturating_duration_since(s.lent_at) >= rotate
                {
                    gone.push(set.sessions.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            let best = set.sessions.iter().min_by_key(|s| load(s)).cloned();
            Ok(match best {
                Some(s) if load(&s) <= 1 => Offer::Join(s), // 1: the clone just made
                Some(s) => {
                    let (total, idle) = self.slots.counts();
                    if idle > 0 || (total < self.config.max_size && load(&s) > SPREAD_AT) {
                        Offer::Lend(Some(s))
                    } else {
                        Offer::Join(s)
                    }
                }
                None => Offer::Lend(None),
            })
        });
        drop(gone);
        offer
    }

    fn rotate_after(&self) -> Duration {
        match self.config.leak_detection_threshold {
            Some(t) => ROTATE_AFTER.min(t / 2),
            None => ROTATE_AFTER,
        }
    }

    /// A session lent now from an idle connection, when one is there and fit to hand out
    /// without a round trip; `None` rather than waiting.
    fn try_lend_now(
        self: &Arc<Self>,
        location: &'static Location<'static>,
        now: Instant,
    ) -> Option<Arc<Lent<C>>> {
        let conn = self.try_acquire_now(location, now)?;
        self.lend_out(conn, now)
    }

    /// Puts a checked-out connection in the set; `None` (and the connection back) when the
    /// set is closed.
    fn lend_out(self: &Arc<Self>, conn: PooledConnection<C>, now: Instant) -> Option<Arc<Lent<C>>> {
        let pool: Arc<dyn GiveBack<C>> = Arc::clone(self) as _;
        let lent = Lent::new(
            Arc::downgrade(&pool),
            PooledConnection::into_parts(conn),
            now,
        );
        // Refused (the pool closed): dropped, so it goes back and is closed.
        self.lender.add(Arc::new(lent)).ok()
    }

    /// An exclusive acquire found every slot taken: drains one lent session (an unused one
    /// first) so it comes back for the waiter once its statements end.
    pub(crate) fn reclaim_lent(&self) {
        // Read without the set's lock: with the shared path unused (the common case for an
        // exclusive user), a saturated pool's acquires take no lock of it. A session lent as
        // this reads is still given back: its last statement drains it while one waits.
        if self.lender.figures().0 > 0 {
            self.lender.drain_least_loaded();
        }
    }

    /// The maintenance pass: drains sessions lent for too long with nothing in flight, and
    /// broken ones.
    pub(crate) fn sweep_lent(&self, now: Instant) {
        let rotate = self.rotate_after();
        self.lender.drain_where(|s| {
            self.connector.is_closed(&s.conn().client)
                || (load(s) == 0 && now.saturating_duration_since(s.lent_at) >= rotate)
        });
    }

    /// A statement on `lent` ended (`abandoned`: its call was dropped or ran out of time).
    /// The last statement on a session gives it back when an exclusive acquire waits for a
    /// slot, so shared load never starves one.
    pub(crate) fn statement_ended(self: &Arc<Self>, lent: &Arc<Lent<C>>, abandoned: bool) {
        self.lender.statements.fetch_add(1, Relaxed);
        if abandoned {
            self.lender.abandoned.fetch_add(1, Relaxed);
            self.lender.drain(lent);
            // The caller's reference and others: statements pipelined behind this one.
            if Arc::strong_count(lent) > 1 {
                self.cancel_for_followers(Arc::clone(lent));
            }
            return;
        }
        // The set's reference and the caller's: nothing else in flight.
        let last = Arc::strong_count(lent) <= 2;
        let exclusive_waiting =
            self.stats.waiting.load(Relaxed) > self.lender.waiting.load(Relaxed);
        if last && exclusive_waiting {
            self.lender.drain(lent);
        }
    }

    /// A statement on `lent` was abandoned while others are pipelined behind it: they would
    /// wait for it to end by itself. After a short grace (an answer may be on the wire), cancel
    /// requests stop what the server is running, until the server has answered every request
    /// sent on the session when the statement was abandoned (the abandoned one among them),
    /// as [`cancel_through`](Shared::cancel_through) does: one is lost when it lands before
    /// the server reads the statement, and one that lands while a statement ahead of it runs
    /// cancels that one instead. A live statement a cancel hits (one ahead of the abandoned
    /// one, one pipelined behind it before it was abandoned, or the next one when a cancel
    /// arrives late: PostgreSQL holds it for the session's next statement) fails as
    /// cancelled and is run again on another session by its call; a cancelled statement took
    /// no effect, so that is safe for writes too. The session's return settles it (a
    /// statement that takes a cancel still held) before anyone else gets it.
    fn cancel_for_followers(self: &Arc<Self>, lent: Arc<Lent<C>>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::clone(self);
        runtime.spawn(async move {
            let conn = lent.conn();
            let Some(session) = conn.session.as_ref() else {
                return;
            };
            let target = session.requests_sent();
            let grace = shared
                .config
                .validation_timeout
                .min(crate::restore::CANCEL_GRACE);
            if tokio::time::timeout(grace, session.answered_up_to(target))
                .await
                .is_ok()
            {
                return;
            }
            lent.raise_cancel_target(target);
            // One task sends cancel requests per session, for every abandoned statement there
            // (it reads the target again after each wait); none while the database does not
            // answer: each opens a connection to the server, and a blackhole would turn every
            // abandoned statement into one (issue 27). The return path cancels what is still
            // running, or closes the session.
            if shared.outage.in_outage() {
                return;
            }
            shared.stats.cancels.fetch_add(1, Relaxed);
            loop {
                if !lent.start_cancel() {
                    return;
                }
                let deadline = Instant::now() + shared.config.validation_timeout;
                let ended = shared
                    .cancel_through(
                        conn,
                        session,
                        || lent.cancel_target(),
                        deadline,
                        || lent.cancel_sent(),
                    )
                    .await;
                lent.cancel_ended();
                // A target raised while this task held the place, after its last look.
                if ended != Ok(true) || session.requests_answered() >= lent.cancel_target() {
                    return;
                }
            }
        });
    }
}

impl<C: Connector> GiveBack<C> for Shared<C> {
    fn give_back(self: Arc<Self>, conn: Conn<C::Client>, slot: SlotToken, cancels: u64) {
        self.release_after(conn, slot, Instant::now(), cancels);
    }
}
