//! sqlx's `PgPool`, the most used Rust pool, as a peer: at its defaults (30 s acquire timeout,
//! a ping before each acquire, a ping on release) and with the recommended acquire timeout.
//!
//! Its handlers are written the way sqlx users write them: transactions through
//! `Connection::begin`, whose guard queues a `ROLLBACK` when dropped uncommitted, and
//! statements through `raw_sql` (the simple protocol, as the tokio-postgres peers'
//! `batch_execute`). sqlx has no connect timeout of its own: the acquire timeout bounds the
//! connects an acquire makes; nor TCP keepalive settings: a silent server is bounded by the
//! request's own timeout only.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::{Connection, Executor, Row};

use super::handlers::{
    ABANDON_AFTER, CHECK, CHECK_LIMIT, DROP_AFTER, Handler, MARK, READ_ONLY_SQLSTATE, SLOW_QUERY,
    session_ended, session_terminated,
    checked, classify, read_only_server,
};
use super::kind::{ACQUIRE_TIMEOUT, MAX_SIZE, OpenArgs, Peer, PoolKind, Setup};
use super::subject::{Answer, BoxFut, OpenError, Subject};
use crate::report::Outcome;

/// sqlx's `PgPool`.
pub const PEER: Peer = Peer {
    name: "sqlx",
    about: "sqlx's `PgPool`, at its defaults and with the recommended acquire timeout.",
    setups: &SETUPS,
};

/// Why sqlx's pool cannot fail over.
const SINGLE_HOST: &str = "sqlx's PgPool takes one host per URL (launchbadge/sqlx#3333 and #2290 are open): it cannot be given a standby to fail over to";

static SETUPS: [Setup; 2] = [
    Setup {
        name: "sqlx",
        about: "sqlx's `PgPool` at its defaults (30 s acquire timeout, ping before acquire)",
        ours: false,
        single_host: Some(SINGLE_HOST),
        open: |a| Box::pin(async move { open(a, false) }),
    },
    Setup {
        name: "sqlx+timeouts",
        about: "sqlx's `PgPool` with the suite's acquire timeout",
        ours: false,
        single_host: Some(SINGLE_HOST),
        open: |a| Box::pin(async move { open(a, true) }),
    },
];

fn open(a: OpenArgs<'_>, timeouts: bool) -> Result<Box<dyn Subject>, OpenError> {
    Ok(Box::new(Sqlx::new(a.url, MAX_SIZE, a.app, timeouts, ACQUIRE_TIMEOUT)?))
}

/// sqlx's `PgPool`, at its defaults or with the acquire timeout the suite recommends.
pub struct Sqlx {
    pool: sqlx::PgPool,
    /// Which of the two setups this is (at its defaults or with timeouts).
    kind: PoolKind,
}

impl Sqlx {
    /// Builds the pool lazily, as `connect_lazy_with` does: nothing is opened before the first
    /// acquire (sqlx's `min_connections` is 0 by default). `timeouts`: acquire bounded by
    /// `acquire_timeout` (connects included); otherwise sqlx's 30 s.
    pub fn new(
        url: &str,
        max_size: usize,
        app: &str,
        timeouts: bool,
        acquire_timeout: Duration,
    ) -> Result<Self, OpenError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| OpenError::Peer(format!("sqlx refused the URL: {e}")))?
            .application_name(app);
        let mut builder = PgPoolOptions::new().max_connections(max_size as u32);
        if timeouts {
            builder = builder.acquire_timeout(acquire_timeout);
        }
        Ok(Self {
            pool: builder.connect_lazy_with(options),
            kind: if timeouts {
                PoolKind::of(&SETUPS[1])
            } else {
                PoolKind::of(&SETUPS[0])
            },
        })
    }
}

/// What an acquire's error is called in reports, as for the other peers.
fn acquire_error(e: &sqlx::Error) -> Answer {
    let kind = match e {
        sqlx::Error::PoolTimedOut => "timeout",
        sqlx::Error::PoolClosed => "closed",
        _ => "connect",
    };
    (Outcome::Fail, Some(kind.into()))
}

/// A statement's error, classified as `query_error` does for tokio-postgres.
fn statement_error(e: &sqlx::Error) -> Answer {
    if matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(READ_ONLY_SQLSTATE)) {
        return read_only_server();
    }
    if matches!(e, sqlx::Error::Database(db) if db.code().as_deref().is_some_and(session_ended)) {
        return session_terminated();
    }
    classify(matches!(e, sqlx::Error::Database(_)))
}

/// Whether a statement failed because the session is inside a failed transaction.
fn in_failed_transaction(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("25P02"))
}

/// Runs `sql` (one or more statements, the simple protocol) on `conn`, through the executor's
/// boxed future: `RawSql::execute` is an `async fn` over a higher-ranked executor bound, which
/// the compiler cannot prove `Send` inside the trait's boxed futures.
fn execute<'c>(
    conn: &'c mut PgConnection,
    sql: &'c str,
) -> BoxFut<'c, Result<PgQueryResult, sqlx::Error>> {
    Executor::execute(conn, sqlx::raw_sql(sql))
}

/// Runs `sql` on `conn` and collects its rows; as `execute`.
fn fetch_all<'c>(
    conn: &'c mut PgConnection,
    sql: &'c str,
) -> BoxFut<'c, Result<Vec<PgRow>, sqlx::Error>> {
    Executor::fetch_all(conn, sqlx::raw_sql(sql))
}

/// Runs `handler` on `conn` the way a sqlx application would.
pub async fn run_handler(conn: &mut PgConnection, handler: Handler) -> Answer {
    let ok = (Outcome::Ok, None);
    match handler {
        Handler::EarlyReturn => {
            let mut tx = match conn.begin().await {
                Ok(tx) => tx,
                Err(e) => return statement_error(&e),
            };
            match execute(&mut tx, MARK).await {
                // Returns with the transaction open: the guard's drop is all that ends it.
                Ok(_) => ok,
                Err(e) => statement_error(&e),
            }
        }
        Handler::FailedTransaction => {
            if let Ok(mut tx) = conn.begin().await {
                let _ = execute(&mut tx, &format!("{MARK}; SELECT 1/0")).await;
            }
            ok
        }
        Handler::AbandonQuery => {
            let _ = tokio::time::timeout(ABANDON_AFTER, execute(conn, SLOW_QUERY)).await;
            ok
        }
        Handler::DroppedHandler => {
            let _ = tokio::time::timeout(DROP_AFTER, async {
                let mut tx = conn.begin().await?;
                execute(&mut tx, MARK).await?;
                execute(&mut tx, SLOW_QUERY).await?;
                tx.commit().await
            })
            .await;
            ok
        }
        Handler::Check => {
            match tokio::time::timeout(CHECK_LIMIT, fetch_all(conn, CHECK)).await {
                Ok(Ok(rows)) => checked(rows.iter().any(|row| {
                    row.try_get::<Option<String>, _>(0)
                        .ok()
                        .flatten()
                        .as_deref()
                        == Some("dirty")
                })),
                // Inside a failed transaction a previous handler left: dirty too.
                Ok(Err(e)) if in_failed_transaction(&e) => checked(true),
                Ok(Err(e)) => statement_error(&e),
                Err(_) => (Outcome::Info, Some("query_timeout".into())),
            }
        }
    }
}

impl Subject for Sqlx {
    fn name(&self) -> String {
        self.kind.name().into()
    }
    fn request<'a>(&'a self, sql: &'a str, limit: Duration) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            let mut conn = match self.pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => return acquire_error(&e),
            };
            let answer = match tokio::time::timeout(limit, execute(&mut conn, sql)).await {
                Ok(Ok(_)) => (Outcome::Ok, None),
                Ok(Err(e)) => statement_error(&e),
                Err(_) => (Outcome::Info, Some("query_timeout".into())),
            };
            if answer.0 != Outcome::Ok {
                // The server may still be busy with it: do not give it to the next user.
                conn.close_on_drop();
            }
            answer
        })
    }
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer> {
        Box::pin(async move {
            match self.pool.acquire().await {
                Ok(mut conn) => run_handler(&mut conn, handler).await,
                Err(_) => (Outcome::Fail, Some("acquire".into())),
            }
        })
    }
    fn health(&self) -> Option<String> {
        None
    }
    fn open_connections(&self) -> usize {
        self.pool.size() as usize
    }
    fn shutdown(&self) -> BoxFut<'_, ()> {
        // `close` waits for every connection to come back: bounded as our pool's shutdown is.
        Box::pin(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.pool.close()).await;
        })
    }
}
