//! The fake's client and connector: what the pool holds and how it connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use tokio::sync::{Notify, oneshot};

use super::session::{Statement, execute};
use super::{ConnState, FakeDb};
use crate::connector::{ConnectError, Connection, Connector};
use crate::error::{BoxError, ConnectFailure};
use crate::session::{Session, SessionStatus};

/// The client of a fake connection.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use pool::testing::{FakeDb, Gate};
/// let db = FakeDb::new();
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
/// let conn = pool.acquire().await.unwrap(); // derefs to FakeClient
/// assert!(conn.is_open());
/// # }
/// ```
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
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use pool::testing::{FakeDb, Gate};
/// let db = FakeDb::new();
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
/// db.set_query(Gate::Fail);
/// let conn = pool.acquire().await.unwrap();
/// let pool::testing::FakeError(id) = conn.query().await.unwrap_err();
/// assert_eq!(id, conn.id());
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("fake connection {0} is closed or failed")]
pub struct FakeError(pub u64);

impl FakeClient {
    /// The server-side id of this connection.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// assert!(db.open_ids().contains(&conn.id()));
    /// # }
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the server side of this connection is still open (not killed, not closed).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// db.kill(conn.id());
    /// assert!(!conn.is_open());
    /// # }
    /// ```
    pub fn is_open(&self) -> bool {
        !self.state.closed.load(SeqCst)
    }

    /// Runs a query through the current query gate.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// conn.query().await.unwrap();
    /// # }
    /// ```
    pub async fn query(&self) -> Result<(), FakeError> {
        self.execute(Statement::Query).await
    }

    /// Sends `stmt` through the current query gate. On a tracked session (see
    /// [`FakeDb::track_sessions`]) the statement runs on in the server if this future is
    /// dropped, as a real backend's does.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Statement};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// conn.execute(Statement::Begin).await.unwrap();
    /// assert!(conn.execute(Statement::Error).await.is_err());
    /// assert!(conn.query().await.is_err(), "current transaction is aborted");
    /// conn.execute(Statement::Rollback).await.unwrap();
    /// conn.query().await.unwrap();
    /// # }
    /// ```
    pub async fn execute(&self, stmt: Statement) -> Result<(), FakeError> {
        let gate = self.db.lock().query;
        if execute(&self.state, gate, stmt).await {
            Ok(())
        } else {
            Err(FakeError(self.id))
        }
    }

    /// The session's true state on the server (`Busy` while a statement runs), whatever the
    /// pool thinks.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Statement};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// assert_eq!(conn.server_status(), pool::SessionStatus::Idle);
    /// # }
    /// ```
    pub fn server_status(&self) -> SessionStatus {
        self.state.server.status()
    }

    /// Whether session state set by [`Statement::Set`] is still in force.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Statement};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// let conn = pool.acquire().await.unwrap();
    /// conn.execute(Statement::Set).await.unwrap();
    /// assert!(conn.has_session_state());
    /// # }
    /// ```
    pub fn has_session_state(&self) -> bool {
        self.state.server.state_set()
    }

    /// Runs one of the pool's restoring statements through the restore gate.
    async fn restore(&self, stmt: Statement) -> Result<(), BoxError> {
        let gate = self.db.lock().restore;
        if execute(&self.state, gate, stmt).await {
            Ok(())
        } else {
            Err(Box::new(FakeError(self.id)))
        }
    }
}

/// Connects to a [`FakeDb`].
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use pool::testing::{FakeDb, Gate};
/// let db = FakeDb::new();
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
/// let connector = db.connector();
/// assert!(std::sync::Arc::ptr_eq(connector.db(), &db));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FakeConnector {
    pub(super) db: Arc<FakeDb>,
}

impl FakeConnector {
    /// The fake server behind this connector.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// assert_eq!(db.connector().db().opened(), 2);
    /// # }
    /// ```
    pub fn db(&self) -> &Arc<FakeDb> {
        &self.db
    }
}

impl Connector for FakeConnector {
    type Client = FakeClient;

    async fn connect(&self) -> Result<Connection<FakeClient>, ConnectError> {
        let _in_flight = self.db.attempt_started();
        let gate = self.db.lock().connect;
        let cut = self.db.hung_cut();
        let passed = tokio::select! {
            biased;
            r = gate.pass() => r,
            () = cut => Err(()),
        };
        if passed.is_err() {
            // As the pool's socket code says it: refused when nothing listens (down); closed
            // when a listener accepts the connection and resets it before the server says
            // anything (refuse: a proxy with no server behind it).
            let (failure, kind) = if self.db.lock().reachable {
                (ConnectFailure::Closed, std::io::ErrorKind::ConnectionReset)
            } else {
                (
                    ConnectFailure::Refused,
                    std::io::ErrorKind::ConnectionRefused,
                )
            };
            return Err(ConnectError {
                kind: failure,
                source: Some(Box::new(std::io::Error::from(kind))),
            });
        }
        let id = self.db.next_id.fetch_add(1, SeqCst);
        let state = Arc::new(ConnState {
            closed: AtomicBool::new(false),
            stranded: AtomicBool::new(false),
            kill: Notify::new(),
            socket_closed: Notify::new(),
            server: self.db.new_session(id),
        });
        let session = state.server.tracker.clone();
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
                biased;
                _ = async {
                    let _ = dropped.await;
                    if closed.db.hold_drivers.load(SeqCst) {
                        std::future::pending::<()>().await;
                    }
                } => {}
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
            session,
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

    /// On a connection of its own: the connect gate applies.
    async fn cancel(&self, client: &FakeClient, _session: &Session) -> Result<(), BoxError> {
        self.db.counters().cancels.fetch_add(1, SeqCst);
        let gate = self.db.lock().connect;
        if gate.pass().await.is_err() || !self.db.lock().reachable {
            return Err("the cancel request's connection was refused".into());
        }
        if !self.db.counters().lose_one() {
            client.state.server.cancel();
        }
        Ok(())
    }

    async fn rollback(&self, client: &FakeClient) -> Result<(), BoxError> {
        self.db.counters().rollbacks.fetch_add(1, SeqCst);
        client.restore(Statement::Rollback).await
    }

    async fn settle(&self, client: &FakeClient) -> Result<(), BoxError> {
        self.db.counters().settles.fetch_add(1, SeqCst);
        client.restore(Statement::Query).await
    }

    async fn reset(&self, client: &FakeClient, _how: crate::SessionReset) -> Result<(), BoxError> {
        self.db.counters().resets.fetch_add(1, SeqCst);
        client.restore(Statement::Reset).await
    }

    /// Terminates each listed session still there and at least as old as said.
    async fn terminate(
        &self,
        client: &FakeClient,
        orphans: &[(u32, f64)],
    ) -> Result<u64, BoxError> {
        self.db.counters().terminate_requests.fetch_add(1, SeqCst);
        client.query().await?;
        let mut terminated = 0;
        for &(pid, age) in orphans {
            let conn = self.db.lock().conns.get(&u64::from(pid)).cloned();
            let Some(conn) = conn else { continue };
            // A process younger than the orphan is another session that got its id.
            if conn.server.opened_at.elapsed().as_secs_f64() + 1e-3 < age {
                continue;
            }
            conn.closed.store(true, SeqCst);
            conn.kill.notify_one();
            if conn.server.orphaned.load(SeqCst)
                && self.db.lock().conns.remove(&u64::from(pid)).is_some()
            {
                self.db.closed.fetch_add(1, SeqCst);
            }
            terminated += 1;
        }
        self.db.counters().terminated.fetch_add(terminated, SeqCst);
        Ok(terminated)
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
        if self.state.stranded.load(SeqCst) && self.db.keeps_lost() {
            // Nothing reached the server: it holds the session until it is terminated.
            self.state.server.orphaned.store(true, SeqCst);
            return;
        }
        if self.db.lock().conns.remove(&self.id).is_some() {
            self.db.closed.fetch_add(1, SeqCst);
        }
    }
}
