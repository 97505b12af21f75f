//! A fake database for deterministic tests of the pool under tokio's paused clock
//! (feature `test-util`). It is named as a fake on purpose: it runs the real pool logic
//! against scripted behaviour (gates that pass, fail, hang or delay), not a real server.
//!
//! # Examples
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use pool::testing::{FakeDb, Gate};
//! let db = FakeDb::new();
//! let pool = pool::Pool::connect_with(pool::PoolConfig::default().min_size(1), db.connector())
//!     .await
//!     .unwrap();
//! db.set_connect(Gate::Fail);
//! db.kill_all();
//! assert!(pool.acquire().await.is_err());
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

mod attempts;
mod client;
mod logs;
pub mod oracles;
mod session;
pub use client::{FakeClient, FakeConnector, FakeError};
pub use logs::LogCapture;
pub use session::{SessionCounts, Statement};

/// What a scripted step does.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use pool::testing::{FakeDb, Gate};
/// let db = FakeDb::new();
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
/// db.set_connect(Gate::Delay(std::time::Duration::from_millis(50)));
/// let conn = pool.acquire().await.unwrap(); // an idle one: no connect needed
/// # drop(conn);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Succeeds at once.
    Pass,
    /// Fails at once (a refused connect, a broken connection).
    Fail,
    /// Never completes (a blackhole).
    Hang,
    /// Succeeds after a delay.
    Delay(Duration),
}

impl Gate {
    async fn pass(self) -> Result<(), ()> {
        match self {
            Gate::Pass => Ok(()),
            Gate::Fail => Err(()),
            Gate::Hang => std::future::pending().await,
            Gate::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }
}

struct ConnState {
    closed: AtomicBool,
    stranded: AtomicBool,
    kill: Notify,
    /// Woken when the socket closes, so in-flight round trips fail as they would for real.
    socket_closed: Notify,
    /// The server's side of the session.
    server: session::ServerSession,
}

impl ConnState {
    /// Runs a round trip through `gate`, failing as soon as the socket closes.
    async fn round_trip(&self, gate: Gate) -> Result<(), ()> {
        let closed = self.socket_closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if self.closed.load(SeqCst) {
            return Err(());
        }
        tokio::select! {
            biased;
            r = async {
                if self.stranded.load(SeqCst) {
                    std::future::pending::<()>().await;
                }
                gate.pass().await
            } => r.and_then(|()| if self.closed.load(SeqCst) { Err(()) } else { Ok(()) }),
            _ = closed => Err(()),
        }
    }
}

struct Inner {
    connect: Gate,
    validate: Gate,
    query: Gate,
    /// The pool's rollback, settling statement and reset.
    restore: Gate,
    reachable: bool,
    conns: HashMap<u64, Arc<ConnState>>,
}

/// The fake server: scripts its behaviour and counts what the pool did to it.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use pool::testing::{FakeDb, Gate};
/// let db = FakeDb::new();
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
/// assert_eq!(db.opened(), 2); // min_size
/// # }
/// ```
pub struct FakeDb {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    connect_attempts: AtomicU64,
    /// Connection attempts whose future is alive (a socket being opened), and the most seen.
    connects_in_flight: AtomicU64,
    peak_connects_in_flight: AtomicU64,
    /// When each attempt started, in order.
    connect_starts: Mutex<Vec<tokio::time::Instant>>,
    /// Woken to close every connection attempt that hangs ([`FakeDb::close_hung_attempts`]).
    hung_cut: Notify,
    counters: Arc<session::Counters>,
    tracking: AtomicBool,
    keep_lost: AtomicBool,
    hold_drivers: AtomicBool,
}

impl std::fmt::Debug for FakeDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDb")
            .field("opened", &self.opened())
            .field("closed", &self.closed())
            .finish()
    }
}

impl FakeDb {
    /// A fake server where everything passes.
    ///
    /// # Examples
    /// ```
    /// let db = pool::testing::FakeDb::new();
    /// assert_eq!(db.opened(), 0);
    /// ```
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                connect: Gate::Pass,
                validate: Gate::Pass,
                query: Gate::Pass,
                restore: Gate::Pass,
                reachable: true,
                conns: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            connect_attempts: AtomicU64::new(0),
            connects_in_flight: AtomicU64::new(0),
            peak_connects_in_flight: AtomicU64::new(0),
            connect_starts: Mutex::new(Vec::new()),
            hung_cut: Notify::new(),
            counters: Arc::default(),
            tracking: AtomicBool::new(false),
            keep_lost: AtomicBool::new(false),
            hold_drivers: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connector for a pool.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// assert_eq!(pool.statistics().total_connections, 2);
    /// # }
    /// ```
    pub fn connector(self: &Arc<Self>) -> FakeConnector {
        FakeConnector {
            db: Arc::clone(self),
        }
    }

    /// How connection attempts behave.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.set_connect(Gate::Hang);
    /// db.kill_all();
    /// let err = pool.acquire_timeout(std::time::Duration::from_millis(100)).await.unwrap_err();
    /// assert_eq!(err.kind(), "timeout");
    /// # }
    /// ```
    pub fn set_connect(&self, gate: Gate) {
        self.lock().connect = gate;
    }
    /// How validation round trips behave.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.set_validate(Gate::Fail);
    /// tokio::time::sleep(std::time::Duration::from_secs(1)).await; // past the bypass window
    /// let conn = pool.acquire().await; // idle ones fail validation, a new one is opened
    /// assert!(conn.is_ok());
    /// # }
    /// ```
    pub fn set_validate(&self, gate: Gate) {
        self.lock().validate = gate;
    }
    /// How queries behave.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.set_query(Gate::Fail);
    /// let conn = pool.acquire().await.unwrap();
    /// assert!(conn.query().await.is_err());
    /// # }
    /// ```
    pub fn set_query(&self, gate: Gate) {
        self.lock().query = gate;
    }
    /// Whether the TCP probe reaches the server.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.set_reachable(false); // the TCP probe fails
    /// # }
    /// ```
    pub fn set_reachable(&self, reachable: bool) {
        self.lock().reachable = reachable;
    }

    /// The server is down: connects are refused, live connections are killed.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.down();
    /// assert!(pool.acquire().await.is_err());
    /// # }
    /// ```
    pub fn down(&self) {
        self.set_connect(Gate::Fail);
        self.set_reachable(false);
        self.kill_all();
    }
    /// Connects are accepted and reset before the server says anything (as a proxy or load
    /// balancer with no server behind it does: `ConnectFailure::Closed`); live connections
    /// keep working.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.refuse();
    /// let conn = pool.acquire().await.unwrap(); // open connections still work
    /// conn.query().await.unwrap();
    /// # }
    /// ```
    pub fn refuse(&self) {
        self.set_connect(Gate::Fail);
    }
    /// Every round trip and connect hangs; sockets stay open (a blackhole).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.blackhole();
    /// let conn = pool.acquire().await.unwrap(); // recently used: no validation
    /// let r = tokio::time::timeout(std::time::Duration::from_secs(1), conn.query()).await;
    /// assert!(r.is_err(), "never answered");
    /// # pool::PooledConnection::discard(conn);
    /// # }
    /// ```
    pub fn blackhole(&self) {
        let mut inner = self.lock();
        inner.connect = Gate::Hang;
        inner.validate = Gate::Hang;
        inner.query = Gate::Hang;
        inner.restore = Gate::Hang;
    }
    /// Live connections go silent forever; new ones work (a lost peer).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.peer_lost();
    /// let conn = pool.acquire().await.unwrap();
    /// assert!(tokio::time::timeout(std::time::Duration::from_secs(1), conn.query()).await.is_err());
    /// # pool::PooledConnection::discard(conn);
    /// # }
    /// ```
    pub fn peer_lost(&self) {
        for conn in self.lock().conns.values() {
            conn.stranded.store(true, SeqCst);
        }
    }
    /// Round trips take `latency`.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.latency(std::time::Duration::from_millis(100));
    /// let conn = pool.acquire().await.unwrap();
    /// let t = tokio::time::Instant::now();
    /// conn.query().await.unwrap();
    /// assert!(t.elapsed() >= std::time::Duration::from_millis(100));
    /// # }
    /// ```
    pub fn latency(&self, latency: Duration) {
        let mut inner = self.lock();
        inner.validate = Gate::Delay(latency);
        inner.query = Gate::Delay(latency);
        inner.restore = Gate::Delay(latency);
    }
    /// Everything passes again (stranded connections stay stranded, as they would).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.down();
    /// db.heal();
    /// tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    /// assert!(pool.acquire().await.is_ok());
    /// # }
    /// ```
    pub fn heal(&self) {
        let mut inner = self.lock();
        inner.connect = Gate::Pass;
        inner.validate = Gate::Pass;
        inner.query = Gate::Pass;
        inner.restore = Gate::Pass;
        inner.reachable = true;
    }

    /// Whether a connection's driver goes on running after its client is dropped, until it is
    /// killed or aborted (a driver stuck writing to a peer that stopped reading).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let db = pool::testing::FakeDb::new();
    /// db.hold_drivers(true);
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let report = pool.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert!(report.duration >= std::time::Duration::from_millis(500), "the drivers' grace");
    /// assert_eq!(pool.statistics().live_connection_tasks, 0, "then aborted");
    /// # }
    /// ```
    pub fn hold_drivers(&self, hold: bool) {
        self.hold_drivers.store(hold, SeqCst);
    }

    /// Kills one server connection (like `pg_terminate_backend`); `false` if it was not open.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let id = db.open_ids()[0];
    /// assert!(db.kill(id));
    /// tokio::time::sleep(std::time::Duration::from_millis(10)).await; // the driver ends
    /// assert!(!db.open_ids().contains(&id));
    /// # }
    /// ```
    pub fn kill(&self, id: u64) -> bool {
        match self.lock().conns.get(&id) {
            Some(conn) => {
                conn.closed.store(true, SeqCst);
                conn.kill.notify_one();
                true
            }
            None => false,
        }
    }
    /// Kills every server connection.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// db.kill_all();
    /// tokio::time::sleep(std::time::Duration::from_millis(10)).await; // the drivers end
    /// assert!(db.open_ids().is_empty());
    /// # }
    /// ```
    pub fn kill_all(&self) {
        for conn in self.lock().conns.values() {
            conn.closed.store(true, SeqCst);
            conn.kill.notify_one();
        }
    }

    /// Ids of the server connections that are open.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// assert_eq!(db.open_ids().len(), 2);
    /// # }
    /// ```
    pub fn open_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.lock().conns.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
    /// Connections opened so far.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// assert_eq!(db.opened(), 2);
    /// # }
    /// ```
    pub fn opened(&self) -> u64 {
        self.opened.load(SeqCst)
    }
    /// Connections whose socket has closed.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// pool.shutdown(std::time::Duration::from_secs(1)).await;
    /// tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// assert_eq!(db.closed(), db.opened());
    /// # }
    /// ```
    pub fn closed(&self) -> u64 {
        self.closed.load(SeqCst)
    }
    /// Connection attempts so far (successful or not).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// assert_eq!(db.connect_attempts(), 2);
    /// # }
    /// ```
    pub fn connect_attempts(&self) -> u64 {
        self.connect_attempts.load(SeqCst)
    }
}
