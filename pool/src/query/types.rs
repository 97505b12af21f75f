//! What the shared path takes and returns: [`SharedStatement`], [`PoolStatement`],
//! [`QueryError`].

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::Type;

use crate::error::PoolError;

/// Why a statement on the shared path failed.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// match pool.query_one("SELECT 1", &[]).await {
///     Ok(row) => { let _one: i32 = row.get(0); }
///     Err(pool::QueryError::Pool(e)) => eprintln!("no session: {e}"),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No session was had: the pool's own errors (timeout, database unavailable, closed).
    #[error("no session for the statement: {0}")]
    Pool(#[from] PoolError),
    /// The statement failed: the server's error, or the connection was lost while it ran
    /// (then whether it took effect is unknown).
    #[error("the statement failed: {0}")]
    Statement(#[from] tokio_postgres::Error),
    /// The statement did not finish within `query_timeout`. It was abandoned: the pool
    /// cancels it on the server before the session is used again.
    #[error(
        "the statement did not finish within {timeout:?} (query_timeout); it was abandoned and is cancelled on the server. Raise query_timeout or make the statement faster"
    )]
    Timeout {
        /// The deadline it had (`query_timeout`).
        timeout: Duration,
    },
    /// The statement changes the session (a transaction, a `SET`, a cursor, ...), which other
    /// callers of a shared session would inherit; it was not sent.
    #[error(
        "`{keyword}` cannot run on a shared session: {why}; run it on a connection of your own (pool.acquire())"
    )]
    NotShareable {
        /// The statement's first keyword, upper-cased.
        keyword: String,
        /// What it would leave on the session.
        why: &'static str,
    },
    /// Behind a transaction-pooling middlebox (`transaction_pooling`), statements are sent
    /// unnamed and counted by the pool: the statement gave another number of rows than the
    /// call takes (`query_one`, `query_opt`), or another number of parameters than it has.
    #[error("the statement gave {got} {what} where {expected} were expected")]
    RowCount {
        /// `rows` or `parameters`.
        what: &'static str,
        /// How many the call takes.
        expected: usize,
        /// How many there were.
        got: usize,
    },
    /// The server lost a statement the pool had prepared by name between two messages of one
    /// call (SQLSTATE 26000 or 42P05): a middlebox that pools by transaction is in the path
    /// and `transaction_pooling` is off.
    #[error(
        "the server lost a prepared statement between two messages of one call ({0}): a middlebox that pools by transaction (PgBouncer pool_mode = transaction) is between the pool and the server; set transaction_pooling = true (PoolConfig::transaction_pooling, POOL_TRANSACTION_POOLING) or run it in session mode"
    )]
    TransactionPooling(tokio_postgres::Error),
}

impl QueryError {
    /// The server's error, when the server answered with one.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) {
    /// if let Err(e) = pool.execute("INSERT INTO t VALUES (1)", &[]).await {
    ///     if e.as_db_error().is_some_and(|db| db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
    ///         // already there
    ///     }
    /// }
    /// # }
    /// ```
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            QueryError::Statement(e) | QueryError::TransactionPooling(e) => e.as_db_error(),
            _ => None,
        }
    }
}

/// What may be run on the shared path: SQL text (`&str`, `String`) or a [`PoolStatement`].
/// Sealed.
pub trait SharedStatement: sealed::Sealed + Sync {
    /// The statement's SQL.
    fn sql(&self) -> &str;
    /// Its parameters' types, when known without asking the server.
    fn param_types(&self) -> Option<&[Type]> {
        None
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for super::PoolStatement {}
}

impl SharedStatement for str {
    fn sql(&self) -> &str {
        self
    }
}

impl SharedStatement for String {
    fn sql(&self) -> &str {
        self
    }
}

/// A statement prepared for the shared path ([`Pool::prepare`]): checked by the server once,
/// then prepared on each session when first used there (the sessions' statement caches keep
/// it). Cheap to clone.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) -> Result<(), pool::QueryError> {
/// let by_id = pool.prepare("SELECT name FROM users WHERE id = $1").await?;
/// assert_eq!(by_id.params(), &[tokio_postgres::types::Type::INT4]);
/// let row = pool.query_one(&by_id, &[&42i32]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PoolStatement {
    sql: Arc<str>,
    params: Arc<[Type]>,
    columns: Arc<[String]>,
}

impl PoolStatement {
    pub(super) fn new(sql: &str, statement: &tokio_postgres::Statement) -> Self {
        Self {
            sql: sql.into(),
            params: statement.params().into(),
            columns: statement
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
        }
    }

    /// The parameters' types, as the server inferred them.
    pub fn params(&self) -> &[Type] {
        &self.params
    }

    /// The result columns' names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

impl SharedStatement for PoolStatement {
    fn sql(&self) -> &str {
        &self.sql
    }
    fn param_types(&self) -> Option<&[Type]> {
        Some(&self.params)
    }
}
