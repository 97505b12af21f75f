//! [`PooledConnection`]: a checked-out connection that goes back to the pool when dropped.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::conn::Conn;
use crate::connector::{Connector, PgConnector};
use crate::shared::Shared;
use crate::slots::SlotToken;

/// A connection checked out of a [`Pool`](crate::Pool). Dereferences to the client
/// (`tokio_postgres::Client` for the default connector) and returns to the pool when dropped.
///
/// Helpers are associated functions (`PooledConnection::discard(conn)`), so they never shadow
/// a method of the client.
///
/// # Cancel safety and session state
/// Drop it whenever you like, even with a query in flight or inside a transaction (an early
/// `?`, a request timeout dropping the handler). The pool knows the session's state without a
/// round trip (it reads the protocol on the socket it owns) and, before anyone else gets the
/// connection:
/// - a request still in flight (its future was dropped) is cancelled on the server with a
///   CancelRequest, and its answer drained, so the next user never waits behind it (the
///   server drops a CancelRequest that lands before it has read the request, so another is
///   sent every 100 ms while the request runs on, three at most);
/// - a transaction left open or failed is rolled back;
/// - a clean session goes straight back, with no round trip.
///
/// Each step is bounded (`connect_timeout` for the cancel, `validation_timeout` for the drain
/// and the `ROLLBACK`); a session that cannot be restored is closed. The counts are in
/// [`PoolStatistics`](crate::PoolStatistics) (`sessions_rolled_back`, `requests_cancelled`,
/// `connections_closed.session_not_reset`). Other session state (`SET` without `LOCAL`,
/// temporary tables, `LISTEN`, advisory locks) stays with the session: when the next user
/// must not see it, close the connection with [`PooledConnection::discard`].
///
/// This needs a connector that tracks sessions: [`PgConnector`] does on plain connections; on
/// TLS connections (feature `rustls`) and with connectors of your own that do not, a dropped
/// query keeps its session busy for the next user, so `discard` after giving up on one.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// let conn = pool.acquire().await?;       // derefs to tokio_postgres::Client
/// let one: i32 = conn.query_one("SELECT 1", &[]).await?.get(0);
/// drop(conn);                              // back to the pool
/// # Ok(()) }
/// ```
#[must_use = "a connection is returned to the pool as soon as it is dropped"]
pub struct PooledConnection<C: Connector = PgConnector> {
    shared: Arc<Shared<C>>,
    /// The connection and the slot it holds, until it goes back.
    conn: Option<(Conn<C::Client>, SlotToken)>,
    acquired_at: Instant,
}

impl<C: Connector> PooledConnection<C> {
    pub(crate) fn new(
        shared: Arc<Shared<C>>,
        conn: Conn<C::Client>,
        slot: SlotToken,
        acquired_at: Instant,
    ) -> Self {
        Self {
            shared,
            conn: Some((conn, slot)),
            acquired_at,
        }
    }

    /// The connection and its slot, taken out of the guard: the caller now owns the return
    /// (`Shared::release`), as a lent session does.
    pub(crate) fn into_parts(mut this: Self) -> (Conn<C::Client>, SlotToken) {
        this.conn.take().expect("present until drop")
    }

    fn conn(&self) -> &Conn<C::Client> {
        &self.conn.as_ref().expect("present until drop").0
    }

    /// Closes the connection instead of returning it (after a cancelled query, or when the
    /// session state was changed in a way the next user must not see).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.acquire().await?;
    /// conn.batch_execute("SET search_path = tenant_42").await?;
    /// pool::PooledConnection::discard(conn); // the next user must not inherit the session state
    /// # Ok(()) }
    /// ```
    pub fn discard(mut this: Self) {
        if let Some((conn, slot)) = this.conn.take() {
            this.shared.release_discarded(conn, slot);
        }
    }

    /// The pool's id of this connection (as in logs and leak warnings).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::PoolError> {
    /// let conn = pool.acquire().await?;
    /// tracing::info!(conn.id = pool::PooledConnection::id(&conn), "using");
    /// # Ok(()) }
    /// ```
    pub fn id(this: &Self) -> u64 {
        this.conn().meta.id
    }

    /// How long this connection has been checked out.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::PoolError> {
    /// let conn = pool.acquire().await?;
    /// assert!(pool::PooledConnection::held_for(&conn) < std::time::Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub fn held_for(this: &Self) -> Duration {
        this.acquired_at.elapsed()
    }

    /// How many times this connection has been checked out, this time included.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::PoolError> {
    /// let conn = pool.acquire().await?;
    /// assert!(pool::PooledConnection::uses(&conn) >= 1);
    /// # Ok(()) }
    /// ```
    pub fn uses(this: &Self) -> u64 {
        this.conn().uses
    }
}

impl PooledConnection<PgConnector> {
    /// Prepares `query` once per connection and reuses the statement on later checkouts.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.acquire().await?;
    /// let stmt = conn.prepare_cached("SELECT $1::int4 + 1").await?;
    /// let two: i32 = conn.query_one(&stmt, &[&1i32]).await?.get(0);
    /// # Ok(()) }
    /// ```
    pub async fn prepare_cached(
        &self,
        query: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        // Behind a transaction-pooling middlebox a named statement lasts one transaction:
        // nothing is cached (use it inside a transaction, or `query_typed`).
        if self.shared.config.transaction_pooling {
            return self.conn().client.prepare(query).await;
        }
        crate::conn::prepare_cached(
            self.conn(),
            query,
            self.shared.config.statement_cache_capacity,
        )
        .await
    }

    /// How many statements this connection has cached.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.acquire().await?;
    /// conn.prepare_cached("SELECT 1").await?;
    /// assert!(pool::PooledConnection::statement_cache_len(&conn) >= 1);
    /// # Ok(()) }
    /// ```
    pub fn statement_cache_len(this: &Self) -> usize {
        this.conn()
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl<C: Connector> Deref for PooledConnection<C> {
    type Target = C::Client;
    fn deref(&self) -> &C::Client {
        &self.conn().client
    }
}

impl<C: Connector> DerefMut for PooledConnection<C> {
    fn deref_mut(&mut self) -> &mut C::Client {
        &mut self.conn.as_mut().expect("present until drop").0.client
    }
}

impl<C: Connector> Drop for PooledConnection<C> {
    fn drop(&mut self) {
        if let Some((conn, slot)) = self.conn.take() {
            // The connection goes back before its slot, so `idle + active <= max_size`.
            self.shared.release(conn, slot, Instant::now());
        }
    }
}

impl<C: Connector> std::fmt::Debug for PooledConnection<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("id", &self.conn.as_ref().map(|c| c.0.meta.id))
            .field("held_for", &self.acquired_at.elapsed())
            .finish()
    }
}
