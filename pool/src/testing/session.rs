//! The fake's server sessions: a transaction status, statements that go on running on the
//! server when the future that sent them is dropped, cancel, rollback and reset, and sessions
//! the server keeps after their client vanished (orphans).
//!
//! With [`FakeDb::track_sessions`](super::FakeDb::track_sessions) each connection hands the
//! pool a [`Session`] that this module updates exactly where the real connector's tracker
//! would read the protocol: a request counted when it is sent, a `ReadyForQuery` with the
//! transaction status when the server answers. Without it the pool cannot see the sessions (as
//! over a connection it does not track) and gets them back as they are.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::SeqCst};

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::{ConnState, Gate};
use crate::session::{Session, SessionStatus};

/// A statement a fake client sends.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use pool::testing::{FakeDb, Statement};
/// use pool::SessionStatus;
/// let db = FakeDb::new();
/// db.track_sessions();
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default().min_size(1).max_size(1), db.connector())
///     .await
///     .unwrap();
/// let conn = pool.acquire().await.unwrap();
/// conn.execute(Statement::Begin).await.unwrap();
/// assert_eq!(conn.server_status(), SessionStatus::InTransaction);
/// drop(conn); // returned inside the transaction: the pool rolls it back
/// let conn = pool.acquire().await.unwrap();
/// assert_eq!(conn.server_status(), SessionStatus::Idle);
/// assert_eq!(db.session_counts().rollbacks, 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// A query; fails inside a failed transaction block.
    Query,
    /// `BEGIN`.
    Begin,
    /// `COMMIT` (of a failed block: a rollback, as PostgreSQL does).
    Commit,
    /// `ROLLBACK`.
    Rollback,
    /// A statement that fails (`SELECT 1/0`): inside a transaction block, the block fails.
    Error,
    /// A change of session state (`SET`, a temporary table, `LISTEN`) that lasts until reset.
    Set,
    /// The pool's reset of session state (`DISCARD ALL`); fails inside a transaction block.
    Reset,
    /// A query that runs this long on the server (`pg_sleep`), after the query gate.
    Sleep(std::time::Duration),
}

/// What the fake server was asked to do to its sessions, counted.
///
/// # Examples
/// ```
/// let counts = pool::testing::FakeDb::new().session_counts();
/// assert_eq!(counts, pool::testing::SessionCounts::default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Cancel requests received (each on a connection of its own).
    pub cancels: u64,
    /// Statements cancelled while they ran.
    pub cancelled: u64,
    /// `ROLLBACK`s the pool sent.
    pub rollbacks: u64,
    /// Settling statements the pool sent after a cancel.
    pub settles: u64,
    /// Session resets the pool sent.
    pub resets: u64,
    /// Sessions terminated on the pool's request.
    pub terminated: u64,
    /// Requests to terminate sessions (one per list the pool sent).
    pub terminate_requests: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) cancels: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) rollbacks: AtomicU64,
    pub(super) settles: AtomicU64,
    pub(super) resets: AtomicU64,
    pub(super) terminated: AtomicU64,
    pub(super) terminate_requests: AtomicU64,
    /// Cancel requests still to be lost ([`FakeDb::lose_cancels`](super::FakeDb::lose_cancels)).
    pub(super) to_lose: AtomicU64,
}

impl Counters {
    /// Whether the cancel request arriving now is lost (and one fewer is still to be).
    pub(super) fn lose_one(&self) -> bool {
        self.to_lose
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(super) fn snapshot(&self) -> SessionCounts {
        SessionCounts {
            cancels: self.cancels.load(SeqCst),
            cancelled: self.cancelled.load(SeqCst),
            rollbacks: self.rollbacks.load(SeqCst),
            settles: self.settles.load(SeqCst),
            resets: self.resets.load(SeqCst),
            terminated: self.terminated.load(SeqCst),
            terminate_requests: self.terminate_requests.load(SeqCst),
        }
    }
}

/// The server's side of one session.
pub(super) struct ServerSession {
    /// What the pool sees, as the real tracker would read it; `None` when untracked.
    pub(super) tracker: Option<Arc<Session>>,
    /// The transaction status byte: `I`, `T` or `E`.
    status: AtomicU8,
    running: AtomicBool,
    state_set: AtomicBool,
    cancel: Notify,
    /// A backend runs one statement at a time: the next waits behind the one running.
    turn: tokio::sync::Mutex<()>,
    pub(super) opened_at: Instant,
    /// The client vanished without a word and the server still holds the session.
    pub(super) orphaned: AtomicBool,
    counters: Arc<Counters>,
}

/// How a statement ended on the server.
enum Outcome {
    Done,
    /// Failed with an error, answered with `ReadyForQuery`.
    Failed,
    /// No answer: the connection closed or went silent.
    Lost,
}

impl ServerSession {
    pub(super) fn new(id: u64, tracked: bool, counters: Arc<Counters>) -> Self {
        let tracker = tracked.then(|| {
            let s = Arc::new(Session::default());
            s.set_pid(id as u32);
            s.got_ready(b'I'); // the start-up's answer
            s
        });
        Self {
            tracker,
            status: AtomicU8::new(b'I'),
            running: AtomicBool::new(false),
            state_set: AtomicBool::new(false),
            cancel: Notify::new(),
            turn: tokio::sync::Mutex::new(()),
            opened_at: Instant::now(),
            orphaned: AtomicBool::new(false),
            counters,
        }
    }

    /// The session's true state on the server.
    pub(super) fn status(&self) -> SessionStatus {
        if self.running.load(SeqCst) {
            return SessionStatus::Busy;
        }
        match self.status.load(SeqCst) {
            b'T' => SessionStatus::InTransaction,
            b'E' => SessionStatus::FailedTransaction,
            _ => SessionStatus::Idle,
        }
    }

    pub(super) fn state_set(&self) -> bool {
        self.state_set.load(SeqCst)
    }

    /// A cancel request for whatever runs now (nothing happens when nothing runs).
    pub(super) fn cancel(&self) {
        self.cancel.notify_waiters();
    }

    /// The status after `stmt` ended (`ok`: it ran to completion), and whether it failed.
    fn apply(&self, stmt: Statement, ok: bool) -> bool {
        let before = self.status.load(SeqCst);
        let (after, failed) = match (stmt, before) {
            (Statement::Rollback | Statement::Commit, _) if ok => (b'I', false),
            _ if !ok => (if before == b'I' { b'I' } else { b'E' }, true),
            (_, b'E') => (b'E', true),
            (Statement::Begin, _) => (b'T', false),
            (Statement::Error, s) => (if s == b'T' { b'E' } else { b'I' }, true),
            (Statement::Reset, b'T') => (b'E', true),
            (Statement::Set, s) => {
                self.state_set.store(true, SeqCst);
                (s, false)
            }
            (Statement::Reset, s) => {
                self.state_set.store(false, SeqCst);
                (s, false)
            }
            (_, s) => (s, false),
        };
        self.status.store(after, SeqCst);
        failed
    }
}

/// Runs `stmt` through `gate` as the server would. A tracked session's statement runs in a
/// task of its own, so dropping the caller's future leaves it running on the server, as a real
/// backend goes on with a query whose client stopped waiting. Returns whether it succeeded.
pub(super) async fn execute(state: &Arc<ConnState>, gate: Gate, stmt: Statement) -> bool {
    let Some(tracker) = state.server.tracker.clone() else {
        return matches!(run(state, gate, stmt).await, Outcome::Done);
    };
    tracker.sent_request();
    let (done, answer) = oneshot::channel();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let outcome = run(&state, gate, stmt).await;
        if !matches!(outcome, Outcome::Lost) {
            tracker.got_ready(state.server.status.load(SeqCst));
        }
        let _ = done.send(matches!(outcome, Outcome::Done));
    });
    answer.await.unwrap_or(false)
}

async fn run(state: &ConnState, gate: Gate, stmt: Statement) -> Outcome {
    let server = &state.server;
    let _turn = server.turn.lock().await;
    let cancelled = server.cancel.notified();
    tokio::pin!(cancelled);
    cancelled.as_mut().enable();
    server.running.store(true, SeqCst);
    let ok = tokio::select! {
        biased;
        r = async {
            let r = state.round_trip(gate).await;
            if let (Ok(()), Statement::Sleep(d)) = (r, stmt) {
                tokio::time::sleep(d).await;
            }
            r
        } => r.is_ok(),
        _ = cancelled => {
            server.counters.cancelled.fetch_add(1, SeqCst);
            false
        }
    };
    server.running.store(false, SeqCst);
    // A closed or silent connection answers nothing; a failed statement answers an error.
    if state.closed.load(SeqCst) || state.stranded.load(SeqCst) {
        return Outcome::Lost;
    }
    if server.apply(stmt, ok) {
        Outcome::Failed
    } else {
        Outcome::Done
    }
}

impl super::FakeDb {
    /// From now on, connections hand the pool their session's state, as the real connector
    /// does on connections it tracks: a connection returned inside a transaction or with a
    /// statement running is then restored before anyone else gets it.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Statement};
    /// let db = FakeDb::new();
    /// db.track_sessions();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default().min_size(1).max_size(1), db.connector())
    ///     .await
    ///     .unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// db.set_query(pool::testing::Gate::Hang);
    /// let _ = tokio::time::timeout(std::time::Duration::from_millis(100), conn.query()).await;
    /// drop(conn); // the query still runs on the server: the pool cancels it
    /// let conn = pool.acquire().await.unwrap();
    /// assert_eq!(db.session_counts().cancels, 1);
    /// assert_eq!(conn.server_status(), pool::SessionStatus::Idle);
    /// # }
    /// ```
    pub fn track_sessions(&self) {
        self.tracking.store(true, SeqCst);
    }

    /// Whether the server keeps a session whose client vanished without a word (the pool
    /// closed it while the peer was lost) until it is terminated, as PostgreSQL does until its
    /// TCP keepalive gives up, hours later. Such sessions stay in [`open_ids`](Self::open_ids).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let db = pool::testing::FakeDb::new();
    /// db.keep_lost_sessions(true);
    /// # }
    /// ```
    pub fn keep_lost_sessions(&self, keep: bool) {
        self.keep_lost.store(keep, SeqCst);
    }

    /// How the pool's restoring statements behave: its `ROLLBACK`, the settling statement
    /// after a cancel, and the session reset.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate, Statement};
    /// let db = FakeDb::new();
    /// db.track_sessions();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default().min_size(1).max_size(1), db.connector())
    ///     .await
    ///     .unwrap();
    /// db.set_restore(Gate::Fail);
    /// let conn = pool.acquire().await.unwrap();
    /// conn.execute(Statement::Begin).await.unwrap();
    /// drop(conn); // the rollback fails: the session is closed, not handed on
    /// tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// assert_eq!(pool.statistics().connections_closed.session_not_reset, 1);
    /// # }
    /// ```
    pub fn set_restore(&self, gate: Gate) {
        self.lock().restore = gate;
    }

    /// The next `n` cancel requests reach the server and are lost there, as PostgreSQL loses
    /// one that lands while the backend is still reading the statement it was meant for (a
    /// busy machine), so the statement runs on.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// db.track_sessions();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default().min_size(1).max_size(1), db.connector())
    ///     .await
    ///     .unwrap();
    /// db.lose_cancels(1);
    /// let conn = pool.acquire().await.unwrap();
    /// db.set_query(Gate::Hang);
    /// let _ = tokio::time::timeout(std::time::Duration::from_millis(100), conn.query()).await;
    /// drop(conn); // the first cancel is lost: the pool sends another
    /// let conn = pool.acquire().await.unwrap();
    /// assert_eq!(db.session_counts().cancels, 2);
    /// # }
    /// ```
    pub fn lose_cancels(&self, n: u64) {
        self.counters.to_lose.store(n, SeqCst);
    }

    /// One connection goes silent forever (its peer was lost); the others are not touched.
    /// `false` if it was not open.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let db = pool::testing::FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// assert!(db.strand(conn.id()));
    /// let silent = tokio::time::timeout(std::time::Duration::from_secs(1), conn.query()).await;
    /// assert!(silent.is_err());
    /// # pool::PooledConnection::discard(conn);
    /// # }
    /// ```
    pub fn strand(&self, id: u64) -> bool {
        match self.lock().conns.get(&id) {
            Some(conn) => {
                conn.stranded.store(true, SeqCst);
                true
            }
            None => false,
        }
    }

    /// What the pool asked of the server's sessions so far.
    ///
    /// # Examples
    /// ```
    /// let db = pool::testing::FakeDb::new();
    /// assert_eq!(db.session_counts().rollbacks, 0);
    /// ```
    pub fn session_counts(&self) -> SessionCounts {
        self.counters.snapshot()
    }

    pub(super) fn new_session(&self, id: u64) -> ServerSession {
        ServerSession::new(id, self.tracking.load(SeqCst), Arc::clone(&self.counters))
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(super) fn keeps_lost(&self) -> bool {
        self.keep_lost.load(SeqCst)
    }
}
