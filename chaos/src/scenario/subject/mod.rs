//! The pools under test, behind one trait: ours, deadpool-postgres, bb8-postgres and sqlx's
//! `PgPool`, each peer at its documented defaults and with recommended timeouts.

mod sqlx_pool;
pub use sqlx_pool::Sqlx;

use std::time::Duration;

use crate::report::Outcome;

/// The pools the suite can put under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Ours, through `acquire` (an exclusive checkout per request).
    Pool,
    /// Ours, through its shared path (`Pool::query`: statements pipelined on shared
    /// sessions, no checkout).
    PoolQuery,
    /// deadpool-postgres at its defaults (no timeouts).
    Deadpool,
    /// deadpool-postgres with wait, create and recycle timeouts.
    DeadpoolTimeouts,
    /// bb8-postgres at its defaults (30 s connection timeout).
    Bb8,
    /// bb8-postgres with a connection timeout and test on checkout.
    Bb8Timeouts,
    /// sqlx's `PgPool` at its defaults (30 s acquire timeout, ping before acquire).
    Sqlx,
    /// sqlx's `PgPool` with the suite's acquire timeout.
    SqlxTimeouts,
}

impl PoolKind {
    /// Every kind, in report order.
    pub const ALL: [PoolKind; 8] = [
        PoolKind::Pool,
        PoolKind::PoolQuery,
        PoolKind::Deadpool,
        PoolKind::DeadpoolTimeouts,
        PoolKind::Bb8,
        PoolKind::Bb8Timeouts,
        PoolKind::Sqlx,
        PoolKind::SqlxTimeouts,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Pool => "pool",
            PoolKind::PoolQuery => "pool+query",
            PoolKind::Deadpool => "deadpool",
            PoolKind::DeadpoolTimeouts => "deadpool+timeouts",
            PoolKind::Bb8 => "bb8",
            PoolKind::Bb8Timeouts => "bb8+timeouts",
            PoolKind::Sqlx => "sqlx",
            PoolKind::SqlxTimeouts => "sqlx+timeouts",
        }
    }

    /// The kind a report names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this is our pool, by either path (it has health and criteria of its own, and
    /// its failures fail the run).
    pub fn is_ours(self) -> bool {
        matches!(self, PoolKind::Pool | PoolKind::PoolQuery)
    }

    /// Whether the pool a report names is ours.
    pub fn is_ours_name(name: &str) -> bool {
        Self::from_name(name).is_some_and(Self::is_ours)
    }
}

impl std::fmt::Display for PoolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a pool under test could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Our pool's configuration was refused.
    #[error(transparent)]
    Config(#[from] pool::ConfigError),
    /// Our pool did not start.
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
    /// The URL does not parse for a peer's driver.
    #[error("the database URL does not parse: {0}")]
    Url(#[from] tokio_postgres::Error),
    /// A peer pool refused its settings.
    #[error("{0}")]
    Peer(String),
}

pub use crate::BoxFut;

/// What one request ended as, and the error kind when it did not succeed.
pub type Answer = (Outcome, Option<String>);

/// A pool the suite drives.
pub trait Subject: Send + Sync {
    /// The name in reports (`pool`, `deadpool`, `deadpool+timeouts`, ...).
    fn name(&self) -> String;
    /// Acquires a connection and runs `sql`; the query is bounded by `query_timeout`.
    fn request<'a>(&'a self, sql: &'a str, query_timeout: Duration) -> BoxFut<'a, Answer>;
    /// Health as our pool reports it (`None` for peers, which have no such thing).
    fn health(&self) -> Option<String>;
    /// Connections the pool holds (idle + in use).
    fn open_connections(&self) -> usize;
    /// Shuts down and drops every connection.
    fn shutdown(&self) -> BoxFut<'_, ()>;
    /// Acquires a connection, runs `handler` on it as an application would, and gives the
    /// connection back the ordinary way (dropped, never discarded): what the pool hands the
    /// next user is the pool's doing.
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer>;
}

/// What an application's request handler does with a connection: the ways handlers leave a
/// session dirty, and the check the next one makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `BEGIN`, marks the transaction, then returns early (an error path, a `?`).
    EarlyReturn,
    /// `BEGIN`, marks the transaction, then a statement fails.
    FailedTransaction,
    /// A 2 s query that a request timeout cuts after 50 ms.
    AbandonQuery,
    /// A whole handler (`BEGIN`, mark, a 2 s query, `COMMIT`) dropped by a deadline after
    /// 100 ms.
    DroppedHandler,
    /// The next request: fails as `dirty_session` when it starts inside a transaction a
    /// previous handler left (its mark is visible) or a failed one (SQLSTATE 25P02); its
    /// latency is the next user's wait.
    Check,
}

/// The mark a dirty handler's transaction carries (`SET LOCAL`: gone with the transaction).
const MARK: &str = "SET LOCAL chaos.marker = 'dirty'";
/// The check request: reads the mark (empty outside a dirty transaction).
const CHECK: &str = "SELECT current_setting('chaos.marker', true)";
/// How long the check may take before it counts as `query_timeout`.
const CHECK_LIMIT: Duration = Duration::from_secs(4);
/// How long an abandoned query runs before its request timeout cuts it, and the query.
const ABANDON_AFTER: Duration = Duration::from_millis(50);
const SLOW_QUERY: &str = "SELECT pg_sleep(2)";
/// How long a dropped handler runs before its deadline drops it.
const DROP_AFTER: Duration = Duration::from_millis(100);

/// Runs `handler` on `client`.
pub async fn run_handler(client: &tokio_postgres::Client, handler: Handler) -> Answer {
    let ok = (Outcome::Ok, None);
    match handler {
        Handler::EarlyReturn => match client.batch_execute(&format!("BEGIN; {MARK}")).await {
            Ok(()) => ok,
            Err(e) => query_error(&e),
        },
        Handler::FailedTransaction => {
            let _ = client
                .batch_execute(&format!("BEGIN; {MARK}; SELECT 1/0"))
                .await;
            ok
        }
        Handler::AbandonQuery => {
            let _ = tokio::time::timeout(ABANDON_AFTER, client.batch_execute(SLOW_QUERY)).await;
            ok
        }
        Handler::DroppedHandler => {
            let _ = tokio::time::timeout(DROP_AFTER, async {
                client.batch_execute(&format!("BEGIN; {MARK}")).await?;
                client.batch_execute(SLOW_QUERY).await?;
                client.batch_execute("COMMIT").await
            })
            .await;
            ok
        }
        Handler::Check => {
            match tokio::time::timeout(CHECK_LIMIT, client.simple_query(CHECK)).await {
                Ok(Ok(messages)) => {
                    let dirty = messages.iter().any(|m| {
                        matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("dirty"))
                    });
                    checked(dirty)
                }
                // Inside a failed transaction a previous handler left: dirty too.
                Ok(Err(e))
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) =>
                {
                    checked(true)
                }
                Ok(Err(e)) => query_error(&e),
                Err(_) => (Outcome::Info, Some("query_timeout".into())),
            }
        }
    }
}

/// How a query error is classified: a failure before anything was sent is `fail`; once the
/// query was sent, the outcome is unknown (`info`).
fn query_error(e: &tokio_postgres::Error) -> Answer {
    classify(e.as_db_error().is_some())
}

/// An error the server answered with is the query's (`fail`); any other means the connection
/// went while the query was out, so its outcome is unknown (`info`).
fn classify(server_answered: bool) -> Answer {
    if server_answered {
        (Outcome::Fail, Some("query_error".into()))
    } else {
        (Outcome::Info, Some("connection_lost".into()))
    }
}

/// The check's verdict on what it read: a session that still carries the mark is dirty.
fn checked(dirty: bool) -> Answer {
    if dirty {
        (Outcome::Fail, Some("dirty_session".into()))
    } else {
        (Outcome::Ok, None)
    }
}

async fn run_query(client: &tokio_postgres::Client, sql: &str, limit: Duration) -> Answer {
    match tokio::time::timeout(limit, client.simple_query(sql)).await {
        Ok(Ok(_)) => (Outcome::Ok, None),
        Ok(Err(e)) => query_error(&e),
        Err(_) => (Outcome::Info, Some("query_timeout".into())),
    }
}

/// Our pool.
pub struct OurPool(pub pool::Pool);

impl Subject for OurPool {
    fn name(&self) -> String {
        "pool".into()
    }
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.0.acquire().await {
                Ok(conn) => run_handler(&conn, handler).await,
                Err(e) => (Outcome::Fail, Some(e.kind().to_string())),
            }
        })
    }
    fn request<'a>(&'a self, sql: &'a str, limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.0.acquire().await {
                Ok(conn) => {
                    let answer = run_query(&conn, sql, limit).await;
                    if answer.0 != Outcome::Ok {
                        // The server may still be busy with it: do not give it to the next user.
                        pool::PooledConnection::discard(conn);
                    }
                    answer
                }
                Err(e) => (Outcome::Fail, Some(e.kind().to_string())),
            }
        })
    }
    fn health(&self) -> Option<String> {
        let status = self.0.health().status;
        Some(serde_json::to_value(status).ok()?.as_str()?.to_string())
    }
    fn open_connections(&self) -> usize {
        self.0.statistics().total_connections
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.0.shutdown(Duration::from_secs(5)).await;
        })
    }
}

/// Our pool through its shared path: each request is one `Pool::query` call, bounded by the
/// pool's own `query_timeout`; handlers that need a session of their own (transactions) use
/// `acquire`, while the abandoned query and the check after each dirty handler use the
/// shared path, so a dirty or busy session reaching the shared path would show.
pub struct OurPoolShared(pub pool::Pool);

/// What a shared-path error is called in reports, as `acquire`'s are.
fn shared_error(e: &pool::QueryError) -> Answer {
    match e {
        pool::QueryError::Pool(e) => (Outcome::Fail, Some(e.kind().to_string())),
        pool::QueryError::Statement(e) => query_error(e),
        pool::QueryError::Timeout { .. } => (Outcome::Info, Some("query_timeout".into())),
        _ => (Outcome::Fail, Some("refused".into())),
    }
}

impl Subject for OurPoolShared {
    fn name(&self) -> String {
        PoolKind::PoolQuery.name().into()
    }
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match handler {
                Handler::AbandonQuery => {
                    let _ =
                        tokio::time::timeout(ABANDON_AFTER, self.0.query(SLOW_QUERY, &[])).await;
                    (Outcome::Ok, None)
                }
                Handler::Check => {
                    match tokio::time::timeout(CHECK_LIMIT, self.0.query_opt(CHECK, &[])).await {
                        Ok(Ok(row)) => checked(
                            row.and_then(|r| r.get::<_, Option<String>>(0)).as_deref()
                                == Some("dirty"),
                        ),
                        Ok(Err(e))
                            if e.as_db_error().is_some_and(|db| {
                                db.code()
                                    == &tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION
                            }) =>
                        {
                            checked(true)
                        }
                        Ok(Err(e)) => shared_error(&e),
                        Err(_) => (Outcome::Info, Some("query_timeout".into())),
                    }
                }
                _ => match self.0.acquire().await {
                    Ok(conn) => run_handler(&conn, handler).await,
                    Err(e) => (Outcome::Fail, Some(e.kind().to_string())),
                },
            }
        })
    }
    fn request<'a>(&'a self, sql: &'a str, _limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.0.query(sql, &[]).await {
                Ok(_) => (Outcome::Ok, None),
                Err(e) => shared_error(&e),
            }
        })
    }
    fn health(&self) -> Option<String> {
        OurPool(self.0.clone()).health()
    }
    fn open_connections(&self) -> usize {
        self.0.statistics().total_connections
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.0.shutdown(Duration::from_secs(5)).await;
        })
    }
}

/// deadpool-postgres, with or without timeouts.
pub struct Deadpool {
    pool: deadpool_postgres::Pool,
    /// Which of the two setups this is (at its defaults or with timeouts).
    kind: PoolKind,
}

impl Deadpool {
    /// `timeouts`: wait, create and recycle bounded by `acquire_timeout` (recommended);
    /// otherwise its defaults (no timeouts, fast recycling).
    pub fn new(
        url: &str,
        max_size: usize,
        app: &str,
        timeouts: bool,
        acquire_timeout: Duration,
    ) -> Result<Self, OpenError> {
        let mut pg: tokio_postgres::Config = url.parse()?;
        pg.application_name(app);
        let manager = deadpool_postgres::Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let mut builder = deadpool_postgres::Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_postgres::Runtime::Tokio1);
        if timeouts {
            builder = builder
                .wait_timeout(Some(acquire_timeout))
                .create_timeout(Some(acquire_timeout))
                .recycle_timeout(Some(acquire_timeout));
        }
        Ok(Self {
            pool: builder
                .build()
                .map_err(|e| OpenError::Peer(e.to_string()))?,
            kind: if timeouts {
                PoolKind::DeadpoolTimeouts
            } else {
                PoolKind::Deadpool
            },
        })
    }
}

impl Subject for Deadpool {
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.pool.get().await {
                Ok(conn) => run_handler(&conn, handler).await,
                Err(_) => (Outcome::Fail, Some("acquire".into())),
            }
        })
    }
    fn name(&self) -> String {
        self.kind.name().into()
    }
    fn request<'a>(&'a self, sql: &'a str, limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.pool.get().await {
                Ok(conn) => {
                    let answer = run_query(&conn, sql, limit).await;
                    if answer.0 != Outcome::Ok {
                        let _ = deadpool_postgres::Object::take(conn);
                    }
                    answer
                }
                Err(e) => {
                    let kind = match e {
                        deadpool_postgres::PoolError::Timeout(_) => "timeout",
                        deadpool_postgres::PoolError::Backend(_) => "connect",
                        deadpool_postgres::PoolError::Closed => "closed",
                        _ => "other",
                    };
                    (Outcome::Fail, Some(kind.into()))
                }
            }
        })
    }
    fn health(&self) -> Option<String> {
        None
    }
    fn open_connections(&self) -> usize {
        self.pool.status().size
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.pool.close();
        })
    }
}

/// bb8-postgres, at its defaults (30 s connection timeout) or with recommended timeouts.
pub struct Bb8 {
    pool: bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>,
    /// Which of the two setups this is (at its defaults or with timeouts).
    kind: PoolKind,
}

impl Bb8 {
    /// Builds the pool lazily (bb8 would otherwise block start-up on the database).
    pub fn new(
        url: &str,
        max_size: usize,
        app: &str,
        timeouts: bool,
        acquire_timeout: Duration,
    ) -> Result<Self, OpenError> {
        let mut pg: tokio_postgres::Config = url.parse()?;
        pg.application_name(app);
        if timeouts {
            pg.connect_timeout(acquire_timeout);
        }
        let manager = bb8_postgres::PostgresConnectionManager::new(pg, tokio_postgres::NoTls);
        let mut builder = bb8::Pool::builder().max_size(max_size as u32);
        if timeouts {
            builder = builder
                .connection_timeout(acquire_timeout)
                .test_on_check_out(true);
        }
        Ok(Self {
            pool: builder.build_unchecked(manager),
            kind: if timeouts {
                PoolKind::Bb8Timeouts
            } else {
                PoolKind::Bb8
            },
        })
    }
}

impl Subject for Bb8 {
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.pool.get().await {
                Ok(conn) => run_handler(&conn, handler).await,
                Err(_) => (Outcome::Fail, Some("acquire".into())),
            }
        })
    }
    fn name(&self) -> String {
        self.kind.name().into()
    }
    fn request<'a>(&'a self, sql: &'a str, limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.pool.get().await {
                Ok(conn) => run_query(&conn, sql, limit).await,
                Err(bb8::RunError::TimedOut) => (Outcome::Fail, Some("timeout".into())),
                Err(bb8::RunError::User(_)) => (Outcome::Fail, Some("connect".into())),
            }
        })
    }
    fn health(&self) -> Option<String> {
        None
    }
    fn open_connections(&self) -> usize {
        self.pool.state().connections as usize
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}
