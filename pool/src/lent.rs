//! [`Lender`]: the sessions lent to the shared path, and [`Lent`], one of them. The policy
//! (which session a statement gets, when one is drained) is the pool's, in `lend`; this file
//! only keeps the set, the counts, and the one way back for a lent session.
//!
//! # Implementation details
//! The set holds one `Arc` of each lent session; every statement in flight holds another, so
//! a session's load is its `Arc`'s count, read without a lock, and taking a session out of
//! the set (*draining* it) is all it takes to return it: no new statement joins, and the last
//! one in flight drops the last reference, whose `Drop` gives the connection back through
//! [`GiveBack`]. The lock is held only to pick or remove entries; returns happen outside it.
//!
//! The set holds the connection and its slot rather than a `PooledConnection`, and a `Weak`
//! handle to the pool: a guard would hold the pool alive from inside its own state.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::conn::Conn;
use crate::connector::Connector;
use crate::slots::SlotToken;

/// Where a lent session goes back to: the pool, which checks the session's state as on any
/// return (`cancels`: the cancel requests the pool sent on it, so it is settled first).
pub(crate) trait GiveBack<C: Connector>: Send + Sync {
    fn give_back(self: Arc<Self>, conn: Conn<C::Client>, slot: SlotToken, cancels: u64);
}

/// One session lent to the shared path.
pub(crate) struct Lent<C: Connector> {
    pool: Weak<dyn GiveBack<C>>,
    parts: Option<(Conn<C::Client>, SlotToken)>,
    /// When it was lent (it is drained and lent again after a while).
    pub lent_at: Instant,
    /// Cancel requests the pool sent on this session for abandoned statements.
    cancels: AtomicU64,
    /// A task is sending cancel requests on it (one at a time per session).
    cancelling: std::sync::atomic::AtomicBool,
    /// The session's requests the server must have answered before its abandoned
    /// statements are known to have ended (the most of any abandoned so far).
    cancel_target: AtomicU64,
}

impl<C: Connector> Lent<C> {
    pub(crate) fn new(
        pool: Weak<dyn GiveBack<C>>,
        parts: (Conn<C::Client>, SlotToken),
        now: Instant,
    ) -> Self {
        Self {
            pool,
            parts: Some(parts),
            lent_at: now,
            cancels: AtomicU64::new(0),
            cancelling: std::sync::atomic::AtomicBool::new(false),
            cancel_target: AtomicU64::new(0),
        }
    }

    /// The pooled connection behind it.
    pub(crate) fn conn(&self) -> &Conn<C::Client> {
        &self.parts.as_ref().expect("present until drop").0
    }

    /// Cancel requests sent on it so far: a statement that fails as cancelled while this
    /// grew was cancelled by the pool, not by its caller, and is run again elsewhere.
    pub(crate) fn cancels(&self) -> u64 {
        self.cancels.load(Relaxed)
    }

    /// Counts a cancel request the pool sends on it.
    pub(crate) fn cancel_sent(&self) {
        self.cancels.fetch_add(1, Relaxed);
    }

    /// Takes the session's one place for a task sending cancel requests; false when taken.
    /// Sequentially consistent with [`cancel_target`](Self::cancel_target): a target raised
    /// before a failed take is seen by the task that holds the place once it lets go.
    pub(crate) fn start_cancel(&self) -> bool {
        !self.cancelling.swap(true, SeqCst)
    }

    /// The task sending cancel requests let go of its place.
    pub(crate) fn cancel_ended(&self) {
        self.cancelling.store(false, SeqCst);
    }

    /// Raises the cancel target to `answered`: the requests the server must have answered
    /// before a statement abandoned now is known to have ended.
    pub(crate) fn raise_cancel_target(&self, answered: u64) {
        self.cancel_target.fetch_max(answered, SeqCst);
    }

    /// The cancel target: see [`raise_cancel_target`](Self::raise_cancel_target).
    pub(crate) fn cancel_target(&self) -> u64 {
        self.cancel_target.load(SeqCst)
    }
}

impl<C: Connector> Drop for Lent<C> {
    fn drop(&mut self) {
        if let Some((conn, slot)) = self.parts.take() {
            let cancels = self.cancels();
            match self.pool.upgrade() {
                Some(pool) => pool.give_back(conn, slot, cancels),
                // The pool is gone: its connections close with it.
                None => drop((conn, slot)),
            }
        }
    }
}

/// Statements in flight on a lent session, given the set's reference (the set's own is not
/// one).
pub(crate) fn load<C: Connector>(lent: &Arc<Lent<C>>) -> usize {
    Arc::strong_count(lent).saturating_sub(1)
}

/// The lent sessions of one pool.
pub(crate) struct Lender<C: Connector> {
    set: Mutex<LentSet<C>>,
    /// Statements run on the shared path (finished, whatever their outcome).
    pub statements: AtomicU64,
    /// Statements abandoned on the shared path (dropped or past their deadline).
    pub abandoned: AtomicU64,
    /// Notified when a session is lent: shared calls waiting for a slot join it instead.
    pub lent_out: Notify,
    /// Shared calls waiting for a slot (part of the pool's waiting count; the rest are
    /// exclusive acquires).
    pub waiting: AtomicUsize,
    /// Sessions in the set, published by every change of it, so statistics read it without
    /// the set's lock (which the shared path and a waiting acquire take).
    lent_now: AtomicUsize,
    /// Statements started on the shared path; less `statements` (ended), those in flight.
    started: AtomicU64,
    /// Behind a transaction-pooling middlebox: the parameter types of each SQL text, learned
    /// once, since statements are sent unnamed (see `PoolConfig::transaction_pooling`).
    pub param_types: Mutex<std::collections::HashMap<String, Arc<[tokio_postgres::types::Type]>>>,
}

/// The set, and whether it was closed (shutdown).
pub(crate) struct LentSet<C: Connector> {
    pub sessions: Vec<Arc<Lent<C>>>,
    pub closed: bool,
}

/// The set under its lock; publishes the set's size when released.
struct Locked<'a, C: Connector> {
    set: std::sync::MutexGuard<'a, LentSet<C>>,
    lent_now: &'a AtomicUsize,
}

impl<C: Connector> std::ops::Deref for Locked<'_, C> {
    type Target = LentSet<C>;
    fn deref(&self) -> &LentSet<C> {
        &self.set
    }
}

impl<C: Connector> std::ops::DerefMut for Locked<'_, C> {
    fn deref_mut(&mut self) -> &mut LentSet<C> {
        &mut self.set
    }
}

impl<C: Connector> Drop for Locked<'_, C> {
    fn drop(&mut self) {
        self.lent_now.store(self.set.sessions.len(), Relaxed);
    }
}

impl<C: Connector> Lender<C> {
    pub(crate) fn new() -> Self {
        Self {
            set: Mutex::new(LentSet {
                sessions: Vec::new(),
                closed: false,
            }),
            statements: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            lent_out: Notify::new(),
            waiting: AtomicUsize::new(0),
            lent_now: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            param_types: Mutex::default(),
        }
    }

    fn locked(&self) -> Locked<'_, C> {
        Locked {
            set: self.set.lock().unwrap_or_else(|e| e.into_inner()),
            lent_now: &self.lent_now,
        }
    }

    /// A call's statement starts; its end is counted in `statements`, once.
    pub(crate) fn started(&self) {
        self.started.fetch_add(1, Relaxed);
    }

    /// Runs `f` on the set under its lock. `f` must not drop a session it removes (a return
    /// takes other locks): it hands removed ones back, to be dropped after the lock.
    pub(crate) fn with_set<R>(&self, f: impl FnOnce(&mut LentSet<C>) -> R) -> R {
        f(&mut self.locked())
    }

    /// `(sessions lent, statements in flight on them)`, without the set's lock.
    pub(crate) fn figures(&self) -> (usize, usize) {
        // Ended first: a statement that ends between the two reads counts as in flight.
        let ended = self.statements.load(Relaxed);
        let started = self.started.load(Relaxed);
        (
            self.lent_now.load(Relaxed),
            started.saturating_sub(ended) as usize,
        )
    }

    /// Whether no session is lent.
    pub(crate) fn is_empty(&self) -> bool {
        self.locked().sessions.is_empty()
    }

    /// Adds a session just lent; gives it back (`Err`) when the set is closed.
    pub(crate) fn add(&self, lent: Arc<Lent<C>>) -> Result<Arc<Lent<C>>, Arc<Lent<C>>> {
        {
            let mut set = self.locked();
            if set.closed {
                return Err(lent);
            }
            set.sessions.push(Arc::clone(&lent));
        }
        self.lent_out.notify_waiters();
        Ok(lent)
    }

    /// Takes `lent` out of the set: no new statement joins it, and it goes back once the
    /// statements in flight on it end.
    pub(crate) fn drain(&self, lent: &Arc<Lent<C>>) {
        let removed = {
            let mut set = self.locked();
            let at = set.sessions.iter().position(|s| Arc::ptr_eq(s, lent));
            at.map(|i| set.sessions.swap_remove(i))
        };
        drop(removed);
    }

    /// Drains the sessions `pick` chooses.
    pub(crate) fn drain_where(&self, mut pick: impl FnMut(&Arc<Lent<C>>) -> bool) {
        let removed: Vec<_> = {
            let mut set = self.locked();
            let (out, keep) = std::mem::take(&mut set.sessions)
                .into_iter()
                .partition(|s| pick(s));
            set.sessions = keep;
            out
        };
        drop(removed);
    }

    /// The least loaded session, for one more statement of the pool's own.
    pub(crate) fn least_loaded(&self) -> Option<Arc<Lent<C>>> {
        let set = self.locked();
        set.sessions.iter().min_by_key(|s| load(s)).cloned()
    }

    /// Drains the least loaded session, if any.
    pub(crate) fn drain_least_loaded(&self) {
        let victim = {
            let mut set = self.locked();
            let at = set
                .sessions
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| load(s))
                .map(|(i, _)| i);
            at.map(|i| set.sessions.swap_remove(i))
        };
        drop(victim);
    }

    /// Drains every session and refuses new ones (shutdown).
    pub(crate) fn close(&self) {
        let removed = {
            let mut set = self.locked();
            set.closed = true;
            std::mem::take(&mut set.sessions)
        };
        drop(removed);
    }
}
