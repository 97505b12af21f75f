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

use tokio::sync::{Notify, oneshot};

use crate::connector::{ConnectError, Connection, Connector};
use crate::error::{BoxError, ConnectFailure};

/// What a scripted step does.
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
    reachable: bool,
    conns: HashMap<u64, Arc<ConnState>>,
}

/// The fake server: scripts its behaviour and counts what the pool did to it.
pub struct FakeDb {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    connect_attempts: AtomicU64,
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
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                connect: Gate::Pass,
                validate: Gate::Pass,
                query: Gate::Pass,
                reachable: true,
                conns: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            connect_attempts: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connector for a pool.
    pub fn connector(self: &Arc<Self>) -> FakeConnector {
        FakeConnector {
            db: Arc::clone(self),
        }
    }

    /// How connection attempts behave.
    pub fn set_connect(&self, gate: Gate) {
        self.lock().connect = gate;
    }
    /// How validation round trips behave.
    pub fn set_validate(&self, gate: Gate) {
        self.lock().validate = gate;
    }
    /// How queries behave.
    pub fn set_query(&self, gate: Gate) {
        self.lock().query = gate;
    }
    /// Whether the TCP probe reaches the server.
    pub fn set_reachable(&self, reachable: bool) {
        self.lock().reachable = reachable;
    }

    /// The server is down: connects are refused, live connections are killed.
    pub fn down(&self) {
        self.set_connect(Gate::Fail);
        self.set_reachable(false);
        self.kill_all();
    }
    /// Connects are refused; live connections keep working.
    pub fn refuse(&self) {
        self.set_connect(Gate::Fail);
    }
    /// Every round trip and connect hangs; sockets stay open (a blackhole).
    pub fn blackhole(&self) {
        let mut inner = self.lock();
        inner.connect = Gate::Hang;
        inner.validate = Gate::Hang;
        inner.query = Gate::Hang;
    }
    /// Live connections go silent forever; new ones work (a lost peer).
    pub fn peer_lost(&self) {
        for conn in self.lock().conns.values() {
            conn.stranded.store(true, SeqCst);
        }
    }
    /// Round trips take `latency`.
    pub fn latency(&self, latency: Duration) {
        let mut inner = self.lock();
        inner.validate = Gate::Delay(latency);
        inner.query = Gate::Delay(latency);
    }
    /// Everything passes again (stranded connections stay stranded, as they would).
    pub fn heal(&self) {
        let mut inner = self.lock();
        inner.connect = Gate::Pass;
        inner.validate = Gate::Pass;
        inner.query = Gate::Pass;
        inner.reachable = true;
    }

    /// Kills one server connection (like `pg_terminate_backend`); `false` if it was not open.
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
    pub fn kill_all(&self) {
        for conn in self.lock().conns.values() {
            conn.closed.store(true, SeqCst);
            conn.kill.notify_one();
        }
    }

    /// Ids of the server connections that are open.
    pub fn open_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.lock().conns.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(SeqCst)
    }
    /// Connections whose socket has closed.
    pub fn closed(&self) -> u64 {
        self.closed.load(SeqCst)
    }
    /// Connection attempts so far (successful or not).
    pub fn connect_attempts(&self) -> u64 {
        self.connect_attempts.load(SeqCst)
    }
}

/// The client of a fake connection.
pub struct FakeClient {
    id: u64,
    state: Arc<ConnState>,
    db: Arc<FakeDb>,
    _alive: oneshot::Sender<()>,
}

impl std::fmt::Debug for FakeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeClient").field("id", &self.id).finish()
    }
}

/// A fake query failed.
#[derive(Debug, thiserror::Error)]
#[error("fake connection {0} is closed or failed")]
pub struct FakeError(pub u64);

impl FakeClient {
    /// The server-side id of this connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the server side of this connection is still open (not killed, not closed).
    pub fn is_open(&self) -> bool {
        !self.state.closed.load(SeqCst)
    }

    /// Runs a query through the current query gate.
    pub async fn query(&self) -> Result<(), FakeError> {
        let gate = self.db.lock().query;
        self.state
            .round_trip(gate)
            .await
            .map_err(|()| FakeError(self.id))
    }
}

/// Connects to a [`FakeDb`].
#[derive(Debug, Clone)]
pub struct FakeConnector {
    db: Arc<FakeDb>,
}

impl FakeConnector {
    /// The fake server behind this connector.
    pub fn db(&self) -> &Arc<FakeDb> {
        &self.db
    }
}

impl Connector for FakeConnector {
    type Client = FakeClient;

    async fn connect(&self) -> Result<Connection<FakeClient>, ConnectError> {
        self.db.connect_attempts.fetch_add(1, SeqCst);
        let gate = self.db.lock().connect;
        if gate.pass().await.is_err() {
            // As the kernel says it: refused when nothing listens (down), reset when a
            // listener turns the connection away (refuse).
            let kind = if self.db.lock().reachable {
                std::io::ErrorKind::ConnectionReset
            } else {
                std::io::ErrorKind::ConnectionRefused
            };
            return Err(ConnectError {
                kind: ConnectFailure::Refused,
                source: Some(Box::new(std::io::Error::from(kind))),
            });
        }
        let id = self.db.next_id.fetch_add(1, SeqCst);
        let state = Arc::new(ConnState {
            closed: AtomicBool::new(false),
            stranded: AtomicBool::new(false),
            kill: Notify::new(),
            socket_closed: Notify::new(),
        });
        self.db.lock().conns.insert(id, Arc::clone(&state));
        self.db.opened.fetch_add(1, SeqCst);
        let (alive, dropped) = oneshot::channel::<()>();
        // Made before the future, so the server sees the socket close however the driver
        // ends: finished, aborted, or dropped before it ever ran (as a real socket would).
        let closed = SocketClosed {
            db: Arc::clone(&self.db),
            id,
            state: Arc::clone(&state),
        };
        let driver = async move {
            let closed = closed;
            tokio::select! {
                _ = dropped => {}
                _ = closed.state.kill.notified() => {}
            }
        };
        Ok(Connection {
            client: FakeClient {
                id,
                state,
                db: Arc::clone(&self.db),
                _alive: alive,
            },
            driver: Box::pin(driver),
        })
    }

    fn is_closed(&self, client: &FakeClient) -> bool {
        client.state.closed.load(SeqCst)
    }

    async fn validate(&self, client: &FakeClient) -> Result<(), BoxError> {
        let gate = self.db.lock().validate;
        client
            .state
            .round_trip(gate)
            .await
            .map_err(|()| Box::new(FakeError(client.id)) as BoxError)
    }

    async fn probe(&self) -> Result<(), BoxError> {
        if self.db.lock().reachable {
            Ok(())
        } else {
            Err("connection refused".into())
        }
    }

    fn target(&self) -> String {
        "fake:5432".to_string()
    }
}

struct SocketClosed {
    db: Arc<FakeDb>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for SocketClosed {
    fn drop(&mut self) {
        self.state.closed.store(true, SeqCst);
        self.state.socket_closed.notify_waiters();
        if self.db.lock().conns.remove(&self.id).is_some() {
            self.db.closed.fetch_add(1, SeqCst);
        }
    }
}
