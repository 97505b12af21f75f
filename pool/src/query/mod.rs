//! The shared path: [`Pool::query`] and its siblings run one statement on a session the pool
//! shares between callers, pipelined with theirs, without an exclusive checkout.
//!
//! # Implementation details
//! A call gets a session from [`Shared::lend`](crate::lend) (an unused lent session, else a
//! free idle connection, else the least loaded lent session), prepares its statement through
//! that session's statement cache, and sends it; tokio-postgres pipelines the requests of
//! every caller on one client. A [`Call`] guard covers the statement in flight: a call that
//! is dropped, or runs past its deadline, drains its session (no new statement joins it) and
//! the ordinary return path then cancels what is still running before anyone reuses it.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use tokio::time::{Instant, timeout_at};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use tracing::warn;

use crate::connector::PgConnector;
use crate::lent::Lent;
use crate::pool::Pool;
use crate::session::SessionStatus;
use crate::shared::Shared;

mod keywords;
mod types;
mod unnamed;
use keywords::unshareable;
pub use types::{PoolStatement, QueryError, SharedStatement};

/// Parameters of a statement.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One kind of call: what it sends with the prepared statement.
#[derive(Clone, Copy)]
enum Op<'p> {
    Rows(Params<'p>),
    One(Params<'p>),
    Opt(Params<'p>),
    Count(Params<'p>),
    Describe,
}

/// What a call got back, of the kind its [`Op`] asked for.
enum Out {
    Rows(Vec<Row>),
    One(Row),
    Opt(Option<Row>),
    Count(u64),
    Describe(Statement),
}

impl Op<'_> {
    async fn send(
        self,
        client: &Client,
        statement: &Statement,
    ) -> Result<Out, tokio_postgres::Error> {
        Ok(match self {
            Op::Rows(params) => Out::Rows(client.query(statement, params).await?),
            Op::One(params) => Out::One(client.query_one(statement, params).await?),
            Op::Opt(params) => Out::Opt(client.query_opt(statement, params).await?),
            Op::Count(params) => Out::Count(client.execute(statement, params).await?),
            Op::Describe => Out::Describe(statement.clone()),
        })
    }
}

/// The answer to a call whose [`Op`] was of the kind `$variant`.
macro_rules! expect {
    ($out:expr, $variant:ident) => {
        match $out {
            Out::$variant(v) => v,
            _ => unreachable!("shared_call answers with the kind of its Op"),
        }
    };
}

/// A statement in flight on a lent session. Dropped before [`Call::finish`] (the caller gave
/// up, or the deadline passed), it drains the session: the server may still be running the
/// statement, and the return path cancels it once the session's other statements end.
struct Call<'a> {
    shared: &'a Arc<Shared<PgConnector>>,
    lent: Arc<Lent<PgConnector>>,
    finished: bool,
}

impl Call<'_> {
    fn finish(mut self, failed: Option<&tokio_postgres::Error>) {
        self.finished = true;
        self.shared.statement_ended(&self.lent, false);
        let conn = self.lent.conn();
        if failed.is_some_and(|e| e.is_closed()) || conn.client.is_closed() {
            self.shared.lender.drain(&self.lent);
            return;
        }
        // A statement that left a transaction open would take the session's other users into
        // it: the keyword check refuses the usual ways, this catches the rest (when no other
        // statement is in flight to hide the status).
        let status = conn.session.as_ref().map(|s| s.status());
        if matches!(
            status,
            Some(SessionStatus::InTransaction | SessionStatus::FailedTransaction)
        ) {
            warn!(
                conn.id = conn.meta.id,
                "a statement on the shared path left a transaction open; the session is taken out of sharing and rolled back: run transactions on pool.acquire()"
            );
            self.shared.lender.drain(&self.lent);
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.statement_ended(&self.lent, true);
        }
    }
}

impl Pool<PgConnector> {
    /// Runs `statement` on a shared session and returns its rows.
    ///
    /// The statement runs outside any transaction, pipelined with other callers' statements
    /// on a session the pool shares; no connection is checked out for it. Statements that
    /// change the session (`BEGIN`, `SET`, `LISTEN`, cursors, `COPY`, ...) are refused
    /// ([`QueryError::NotShareable`]): run those on [`acquire`](Self::acquire).
    ///
    /// # When to use which
    /// - `query` and its siblings: independent statements (reads, single-statement writes)
    ///   from many tasks. No checkout, so many more tasks than connections proceed at once,
    ///   as with raw tokio-postgres clients shared by every task.
    /// - [`acquire`](Self::acquire): transactions, several statements that must see each
    ///   other's session, session settings, `COPY`, `LISTEN`, and statements you may abandon
    ///   mid-flight: on a shared session, a long statement that is abandoned delays the
    ///   statements pipelined behind it until the pool cancels it.
    ///
    /// # Deadline
    /// One deadline, `query_timeout` (30 s) from the call: a session is had within it (and
    /// within `acquire_timeout`), and the statement finishes within it or is abandoned
    /// ([`QueryError::Timeout`]) and cancelled on the server.
    ///
    /// # Errors
    /// [`QueryError::Pool`] when no session was had (a timeout, the database known to be
    /// down, the pool closed); [`QueryError::Statement`] for the statement's own failure;
    /// [`QueryError::Timeout`]; [`QueryError::NotShareable`].
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped call holds nothing. Its session takes no new statement and goes
    /// back, the dropped statement cancelled on the server, once the statements in flight on
    /// it end; the other callers on it are unaffected.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::QueryError> {
    /// let rows = pool.query("SELECT id FROM users WHERE active = $1", &[&true]).await?;
    /// let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn query<'a, S: SharedStatement + ?Sized>(
        &'a self,
        statement: &'a S,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Vec<Row>, QueryError>> + Send + 'a {
        let location = Location::caller();
        async move {
            let out = self
                .shared_call(
                    location,
                    statement.sql(),
                    statement.param_types(),
                    Op::Rows(params),
                )
                .await?;
            Ok(expect!(out, Rows))
        }
    }

    /// Runs `statement` on a shared session and returns its one row; an error when it returns
    /// none or several. As [`query`](Self::query) otherwise.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::QueryError> {
    /// let n: i64 = pool.query_one("SELECT count(*) FROM users", &[]).await?.get(0);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn query_one<'a, S: SharedStatement + ?Sized>(
        &'a self,
        statement: &'a S,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Row, QueryError>> + Send + 'a {
        let location = Location::caller();
        async move {
            let out = self
                .shared_call(
                    location,
                    statement.sql(),
                    statement.param_types(),
                    Op::One(params),
                )
                .await?;
            Ok(expect!(out, One))
        }
    }

    /// Runs `statement` on a shared session and returns its row, if any; an error when it
    /// returns several. As [`query`](Self::query) otherwise.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::QueryError> {
    /// let name: Option<String> = pool
    ///     .query_opt("SELECT name FROM users WHERE id = $1", &[&7i32])
    ///     .await?
    ///     .map(|r| r.get(0));
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn query_opt<'a, S: SharedStatement + ?Sized>(
        &'a self,
        statement: &'a S,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Option<Row>, QueryError>> + Send + 'a {
        let location = Location::caller();
        async move {
            let out = self
                .shared_call(
                    location,
                    statement.sql(),
                    statement.param_types(),
                    Op::Opt(params),
                )
                .await?;
            Ok(expect!(out, Opt))
        }
    }

    /// Runs `statement` on a shared session and returns the number of rows it changed. As
    /// [`query`](Self::query) otherwise.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::QueryError> {
    /// let changed = pool.execute("UPDATE users SET seen = now() WHERE id = $1", &[&7i32]).await?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn execute<'a, S: SharedStatement + ?Sized>(
        &'a self,
        statement: &'a S,
        params: Params<'a>,
    ) -> impl Future<Output = Result<u64, QueryError>> + Send + 'a {
        let location = Location::caller();
        async move {
            let out = self
                .shared_call(
                    location,
                    statement.sql(),
                    statement.param_types(),
                    Op::Count(params),
                )
                .await?;
            Ok(expect!(out, Count))
        }
    }

    /// Checks `sql` with the server once (on a shared session, whose statement cache keeps
    /// it) and returns a [`PoolStatement`] for the shared path: its parameter types are known
    /// and errors in the SQL surface here rather than at first use.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::QueryError> {
    /// let stmt = pool.prepare("SELECT $1::int4 + 1").await?;
    /// let two: i32 = pool.query_one(&stmt, &[&1i32]).await?.get(0);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn prepare<'a>(
        &'a self,
        sql: &'a str,
    ) -> impl Future<Output = Result<PoolStatement, QueryError>> + Send + 'a {
        let location = Location::caller();
        async move {
            if self.shared.config.transaction_pooling {
                if let Some((keyword, why)) = unshareable(sql) {
                    return Err(QueryError::NotShareable { keyword, why });
                }
                let timeout = self.shared.config.query_timeout;
                return timeout_at(Instant::now() + timeout, self.prepare_pinned(sql))
                    .await
                    .unwrap_or(Err(QueryError::Timeout { timeout }));
            }
            let statement = expect!(
                self.shared_call(location, sql, None, Op::Describe).await?,
                Describe
            );
            Ok(PoolStatement::new(sql, &statement))
        }
    }

    /// The shared path of every call: the keyword check, a session, the statement through
    /// the session's cache, all within one deadline.
    async fn shared_call(
        &self,
        location: &'static Location<'static>,
        sql: &str,
        types: Option<&[tokio_postgres::types::Type]>,
        op: Op<'_>,
    ) -> Result<Out, QueryError> {
        if let Some((keyword, why)) = unshareable(sql) {
            return Err(QueryError::NotShareable { keyword, why });
        }
        let shared = &self.shared;
        let start = Instant::now();
        let timeout = shared.config.query_timeout;
        let deadline = start + timeout;
        // Learning the types is part of the call, within its one deadline.
        let unnamed = match shared.config.transaction_pooling {
            true => match timeout_at(deadline, self.param_types(sql, types)).await {
                Ok(types) => Some(types?),
                Err(_) => return Err(QueryError::Timeout { timeout }),
            },
            false => None,
        };
        // A statement the pool cancelled to free the statements behind an abandoned one
        // took no effect: it runs again, on another session (twice at most).
        let mut reruns = 0;
        loop {
            let now = if reruns == 0 { start } else { Instant::now() };
            let lent = shared
                .lend(
                    location,
                    now,
                    deadline.min(start + shared.config.acquire_timeout),
                )
                .await?;
            let cancels = lent.cancels();
            shared.lender.started();
            let call = Call {
                shared,
                lent,
                finished: false,
            };
            let conn = call.lent.conn();
            let capacity = shared.config.statement_cache_capacity;
            let outcome = timeout_at(deadline, async {
                if let Some(types) = &unnamed {
                    return op.send_unnamed(&conn.client, sql, types).await;
                }
                let statement = crate::conn::prepare_cached(conn, sql, capacity).await?;
                Ok(op.send(&conn.client, &statement).await?)
            })
            .await;
            match outcome {
                Ok(Ok(out)) => {
                    call.finish(None);
                    return Ok(out);
                }
                Ok(Err(QueryError::Statement(e)))
                    if reruns < 2
                        && e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
                        && call.lent.cancels() > cancels =>
                {
                    call.finish(Some(&e));
                    reruns += 1;
                }
                Ok(Err(QueryError::Statement(e))) => {
                    let e = lost_statement(e, conn);
                    let (QueryError::Statement(failed) | QueryError::TransactionPooling(failed)) =
                        &e
                    else {
                        unreachable!("lost_statement keeps the server's error")
                    };
                    call.finish(Some(failed));
                    return Err(e);
                }
                Ok(Err(e)) => {
                    call.finish(None);
                    return Err(e);
                }
                // `call` drops unfinished: the session is drained, the statement cancelled.
                Err(_) => return Err(QueryError::Timeout { timeout }),
            }
        }
    }
}

/// A statement prepared by name that the server no longer has (or has twice): a middlebox
/// that pools by transaction is in the path. The session's cached statements are as lost;
/// they are dropped, and the error says which switch to set.
fn lost_statement(e: tokio_postgres::Error, conn: &crate::conn::PoolConn<Client>) -> QueryError {
    use tokio_postgres::error::SqlState;
    if !matches!(
        e.code(),
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME | &SqlState::DUPLICATE_PSTATEMENT)
    ) {
        return QueryError::Statement(e);
    }
    conn.statements
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    QueryError::TransactionPooling(e)
}
