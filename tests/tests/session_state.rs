//! Sessions are what the pool thinks they are: the four ways a handler leaves a session dirty
//! (issue 13), each on a real PostgreSQL with `max_size(1)`, so the next user gets the very
//! session the handler left.

use std::time::Duration;

use pool::{Pool, PoolConfig, PooledConnection};
use tokio::time::Instant;

fn shared_url() -> String {
    chaos::postgres::shared().expect("shared database").url()
}

async fn one_connection_pool(app: &str) -> Pool {
    let config = PoolConfig::from_url(&shared_url())
        .unwrap()
        .application_name(app.to_string())
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10));
    Pool::connect(config).await.unwrap()
}

/// The marker a handler's transaction sets with `SET LOCAL`: visible only inside it.
async fn application_name(conn: &PooledConnection) -> String {
    conn.query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0)
}

/// `pg_sleep` calls still running on the server for `app`, by another session.
async fn sleeps_running(app: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(&shared_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'active' AND query LIKE '%pg_sleep%'",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = driver.await;
    n
}

#[tokio::test]
async fn an_early_return_inside_a_transaction_is_rolled_back() {
    let pool = one_connection_pool("session-early-return").await;
    {
        let conn = pool.acquire().await.unwrap();
        conn.batch_execute("BEGIN; SET LOCAL application_name = 'inside-the-handler'")
            .await
            .unwrap();
        // An error path returns here, without COMMIT or ROLLBACK.
    }
    let conn = pool.acquire().await.unwrap();
    assert_eq!(application_name(&conn).await, "session-early-return");
    drop(conn);
    let s = pool.statistics();
    assert_eq!(s.sessions_rolled_back, 1, "{s:?}");
    assert_eq!(
        s.connections_created, 1,
        "the session was reused, not replaced: {s:?}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_failed_transaction_does_not_fail_the_next_user() {
    let pool = one_connection_pool("session-failed-tx").await;
    {
        let conn = pool.acquire().await.unwrap();
        conn.batch_execute("BEGIN").await.unwrap();
        assert!(conn.batch_execute("SELECT 1/0").await.is_err());
    }
    let conn = pool.acquire().await.unwrap();
    let one: i32 = conn
        .query_one("SELECT 1", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}; {:?}", pool.statistics()))
        .get(0);
    assert_eq!(one, 1);
    drop(conn);
    assert_eq!(pool.statistics().sessions_rolled_back, 1);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_abandoned_query_is_cancelled_and_the_next_user_does_not_wait_behind_it() {
    let app = "session-abandoned-query";
    let pool = one_connection_pool(app).await;
    {
        let conn = pool.acquire().await.unwrap();
        // A request timeout drops the query after 100 ms; the server would run it for 5 s.
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            conn.batch_execute("SELECT pg_sleep(5)"),
        )
        .await;
        assert!(cut.is_err(), "the query was cut");
    }
    let started = Instant::now();
    let conn = pool.acquire().await.unwrap();
    let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    let waited = started.elapsed();
    assert_eq!(one, 1);
    // Behind the abandoned query it would be 4.9 s; cancelled, it is a round trip or two.
    assert!(
        waited < Duration::from_millis(2500),
        "the next user waited {waited:?}"
    );
    drop(conn);
    assert_eq!(
        sleeps_running(app).await,
        0,
        "the server still runs the abandoned query"
    );
    assert_eq!(pool.statistics().requests_cancelled, 1);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_handler_dropped_mid_transaction_leaves_no_transaction_behind() {
    let pool = one_connection_pool("session-dropped-handler").await;
    let p = pool.clone();
    let handler = async move {
        let conn = p.acquire().await.unwrap();
        conn.batch_execute("BEGIN; SET LOCAL application_name = 'inside-the-handler'")
            .await
            .unwrap();
        conn.batch_execute("SELECT pg_sleep(2)").await.unwrap();
        conn.batch_execute("COMMIT").await.unwrap();
    };
    // A request deadline drops the whole handler future mid-transaction.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), handler)
            .await
            .is_err()
    );
    let started = Instant::now();
    let conn = pool.acquire().await.unwrap();
    assert_eq!(application_name(&conn).await, "session-dropped-handler");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the next user waited {:?}",
        started.elapsed()
    );
    drop(conn);
    let s = pool.statistics();
    assert_eq!(
        (s.requests_cancelled, s.sessions_rolled_back),
        (1, 1),
        "{s:?}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_clean_return_costs_no_round_trip_and_keeps_the_session() {
    let pool = one_connection_pool("session-clean").await;
    for _ in 0..50 {
        let conn = pool.acquire().await.unwrap();
        conn.batch_execute("BEGIN; COMMIT").await.unwrap();
    }
    let s = pool.statistics();
    assert_eq!(s.connections_created, 1, "{s:?}");
    assert_eq!(
        (s.sessions_rolled_back, s.requests_cancelled),
        (0, 0),
        "{s:?}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

async fn reset_pool(app: &str, how: pool::SessionReset) -> Pool {
    let config = PoolConfig::from_url(&shared_url())
        .unwrap()
        .application_name(app.to_string())
        .min_size(1)
        .max_size(1)
        .session_reset(how);
    Pool::connect(config).await.unwrap()
}

/// A handler that changes session state that outlives its transactions.
async fn leave_session_state(pool: &Pool) {
    let conn = pool.acquire().await.unwrap();
    conn.batch_execute(
        "SET search_path = tenant_42, public; CREATE TEMP TABLE scratch (x int); LISTEN tenant_42",
    )
    .await
    .unwrap();
    let stmt = conn.prepare_cached("SELECT 41 + 1").await.unwrap();
    let v: i32 = conn.query_one(&stmt, &[]).await.unwrap().get(0);
    assert_eq!(v, 42);
}

async fn search_path_and_scratch(conn: &PooledConnection) -> (String, bool) {
    let row = conn
        .query_one(
            "SELECT current_setting('search_path'), to_regclass('pg_temp.scratch') IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn by_default_session_state_stays_with_the_session() {
    let pool = reset_pool("session-reset-off", pool::SessionReset::Off).await;
    leave_session_state(&pool).await;
    let conn = pool.acquire().await.unwrap();
    let (path, scratch) = search_path_and_scratch(&conn).await;
    assert_eq!((path.as_str(), scratch), ("tenant_42, public", true));
    drop(conn);
    assert_eq!(pool.statistics().sessions_reset, 0);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_clean_reset_clears_session_state_and_keeps_prepared_statements() {
    let pool = reset_pool("session-reset-clean", pool::SessionReset::Clean).await;
    leave_session_state(&pool).await;
    let conn = pool.acquire().await.unwrap();
    let (path, scratch) = search_path_and_scratch(&conn).await;
    assert_eq!((path.as_str(), scratch), ("\"$user\", public", false));
    assert_eq!(PooledConnection::statement_cache_len(&conn), 1);
    let stmt = conn.prepare_cached("SELECT 41 + 1").await.unwrap();
    let v: i32 = conn.query_one(&stmt, &[]).await.unwrap().get(0);
    assert_eq!(v, 42, "the cached statement still exists on the server");
    drop(conn);
    let s = pool.statistics();
    assert!(s.sessions_reset >= 1, "{s:?}");
    assert_eq!(s.connections_created, 1, "{s:?}");
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_discard_reset_also_empties_the_statement_cache_coherently() {
    let pool = reset_pool("session-reset-discard", pool::SessionReset::Discard).await;
    leave_session_state(&pool).await;
    let conn = pool.acquire().await.unwrap();
    let (path, scratch) = search_path_and_scratch(&conn).await;
    assert_eq!((path.as_str(), scratch), ("\"$user\", public", false));
    assert_eq!(PooledConnection::statement_cache_len(&conn), 0);
    // Re-prepared, not a stale handle to a deallocated statement.
    let stmt = conn.prepare_cached("SELECT 41 + 1").await.unwrap();
    let v: i32 = conn.query_one(&stmt, &[]).await.unwrap().get(0);
    assert_eq!(v, 42);
    drop(conn);
    assert_eq!(pool.statistics().connections_created, 1);
    pool.shutdown(Duration::from_secs(5)).await;
}

/// Drops the wrapped future after `polls` polls, as a deadline does at whatever await point
/// the handler has reached (tokio-postgres's `Cancellable` test helper, the same idea).
struct DropAfter<F: std::future::Future> {
    fut: std::pin::Pin<Box<F>>,
    polls: usize,
}

impl<F: std::future::Future> std::future::Future for DropAfter<F> {
    type Output = Option<F::Output>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if self.polls == 0 {
            return std::task::Poll::Ready(None);
        }
        self.polls -= 1;
        self.fut.as_mut().poll(cx).map(Some)
    }
}

#[tokio::test]
async fn a_handler_dropped_at_every_await_point_leaves_the_next_user_a_clean_session() {
    let app = "session-every-poll";
    let pool = one_connection_pool(app).await;
    let mut completed = false;
    let mut polls = 0;
    while !completed {
        let p = pool.clone();
        let handler = async move {
            let conn = p.acquire().await.unwrap();
            conn.batch_execute("BEGIN").await.unwrap();
            conn.batch_execute("SET LOCAL application_name = 'inside-the-handler'")
                .await
                .unwrap();
            conn.batch_execute("SELECT pg_sleep(0.05)").await.unwrap();
            conn.batch_execute("COMMIT").await.unwrap();
        };
        completed = DropAfter {
            fut: Box::pin(handler),
            polls,
        }
        .await
        .is_some();
        let conn = tokio::time::timeout(Duration::from_secs(5), pool.acquire())
            .await
            .unwrap_or_else(|_| panic!("after a drop at poll {polls}: the next acquire hung"))
            .unwrap();
        assert_eq!(
            application_name(&conn).await,
            app,
            "after a drop at poll {polls}: the next user is inside the old transaction"
        );
        drop(conn);
        polls += 1;
        assert!(polls < 200, "the handler never completed");
    }
    assert_eq!(sleeps_running(app).await, 0);
    let s = pool.statistics();
    assert_eq!(
        s.connections_created - s.connections_closed.total(),
        s.total_connections as u64,
        "{s:?}"
    );
    // A drop after N polls happens at the handler's next wake-up, when an answer arrived:
    // these drops leave transactions open (rolled back); queries cut mid-flight by a timer
    // (the cancel path) are the tests above.
    assert!(
        s.sessions_rolled_back >= 1,
        "the drops reached the transaction: {s:?}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}
