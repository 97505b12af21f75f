//! The pool against a real PostgreSQL: the shared throwaway cluster for ordinary tests, a
//! private one for each test that stops or crashes its server.

use std::sync::Arc;
use std::time::Duration;

use chaos::postgres::{Cluster, StopMode};
use pool::{DatabaseStatus, HealthStatus, Pool, PoolConfig, PoolError};
use tokio::time::{Instant, sleep};

fn shared_url() -> String {
    chaos::postgres::shared().expect("shared database").url()
}

fn config(url: &str, app: &str) -> PoolConfig {
    PoolConfig::from_url(url)
        .unwrap()
        .application_name(app.to_string())
        .min_size(2)
        .max_size(10)
}

/// Server-side connections tagged with `app`, counted by a separate plain connection.
async fn server_connections(url: &str, app: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = driver.await;
    n
}

/// Waits (bounded) until the server shows `expected` connections for `app`.
async fn wait_server_connections(url: &str, app: &str, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = server_connections(url, app).await;
        if n == expected || Instant::now() > deadline {
            return n;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

async fn start_private_cluster() -> Arc<Cluster> {
    Arc::new(
        tokio::task::spawn_blocking(Cluster::start)
            .await
            .unwrap()
            .expect("start a private cluster"),
    )
}

#[tokio::test]
async fn initialises_with_min_size_healthy_and_tagged() {
    let url = shared_url();
    let app = "e2e-init";
    let pool = Pool::connect(config(&url, app)).await.unwrap();
    let s = pool.statistics();
    assert_eq!((s.total_connections, s.idle_connections), (2, 2));
    let health = pool.health_check().await;
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.database.status, DatabaseStatus::Connected);
    assert_eq!(server_connections(&url, app).await, 2);
    let conn = pool.acquire().await.unwrap();
    let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(conn);
    let report = pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.forced, 0);
    assert_eq!(
        wait_server_connections(&url, app, 0).await,
        0,
        "no connection left on the server"
    );
}

#[tokio::test]
async fn unreachable_database_fails_fast_naming_host_and_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/app");
    let started = Instant::now();
    let err = Pool::connect(PoolConfig::from_url(&url).unwrap())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hundred_concurrent_requests_on_ten_connections() {
    let url = shared_url();
    let app = "e2e-hundred";
    let pool = Pool::connect(config(&url, app).acquire_timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = pool.acquire().await?;
                conn.execute("SELECT pg_sleep(0.01)", &[]).await.unwrap();
                Ok::<_, PoolError>(i)
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap().unwrap());
    }
    done.sort();
    assert_eq!(done, (0..100).collect::<Vec<_>>());
    let s = pool.statistics();
    assert_eq!(s.total_acquisitions, 100);
    assert!(s.peak_active_connections <= 10, "{s:?}");
    assert_eq!(s.waiting_requests, 0);
    assert!(server_connections(&url, app).await <= 10);
    pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(wait_server_connections(&url, app, 0).await, 0);
}

#[tokio::test]
async fn graceful_shutdown_waits_for_an_active_query() {
    let url = shared_url();
    let app = "e2e-graceful";
    let pool = Pool::connect(config(&url, app)).await.unwrap();
    let p = pool.clone();
    let query = tokio::spawn(async move {
        let conn = p.acquire().await.unwrap();
        conn.execute("SELECT pg_sleep(0.5)", &[]).await.map(|_| ())
    });
    sleep(Duration::from_millis(100)).await;
    let report = pool.shutdown(Duration::from_secs(10)).await;
    assert!(query.await.unwrap().is_ok(), "the active query completed");
    assert_eq!((report.returned, report.forced), (1, 0));
    assert!(report.duration >= Duration::from_millis(300), "{report:?}");
    assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
    assert_eq!(wait_server_connections(&url, app, 0).await, 0);
}

#[tokio::test]
async fn forced_shutdown_fails_the_query_promptly() {
    let url = shared_url();
    let app = "e2e-forced";
    let pool = Pool::connect(config(&url, app)).await.unwrap();
    let p = pool.clone();
    let query = tokio::spawn(async move {
        let conn = p.acquire().await.unwrap();
        let started = Instant::now();
        let r = conn.execute("SELECT pg_sleep(30)", &[]).await;
        (r.is_err(), started.elapsed())
    });
    sleep(Duration::from_millis(100)).await;
    let report = pool.shutdown(Duration::from_millis(300)).await;
    assert_eq!(report.forced, 1);
    let (failed, after) = query.await.unwrap();
    assert!(failed, "the forced query must fail");
    assert!(
        after < Duration::from_secs(5),
        "it failed promptly ({after:?})"
    );
    assert_eq!(pool.statistics().live_connection_tasks, 0);
    // The server notices the closed socket when pg_sleep ends or it next writes; it must not
    // stay attributed to a live pool connection forever. Terminate it to keep the shared
    // cluster clean.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn terminated_backends_are_dropped_not_reused() {
    let url = shared_url();
    let app = "e2e-terminate";
    let pool = Pool::connect(config(&url, app).min_size(4)).await.unwrap();
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 4);
    sleep(Duration::from_millis(100)).await;
    for _ in 0..20 {
        let conn = pool.acquire().await.expect("a live connection");
        let one: i32 = conn
            .query_one("SELECT 1", &[])
            .await
            .expect("no dead connection handed out")
            .get(0);
        assert_eq!(one, 1);
    }
    let s = pool.statistics();
    assert_eq!(
        s.connections_closed.broken + s.connections_closed.validation_failed,
        4,
        "{s:?}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn survives_an_immediate_stop_and_recovers_after_restart() {
    let cluster = start_private_cluster().await;
    let url = cluster.url();
    let app = "e2e-restart";
    let pool = Pool::connect(config(&url, app)).await.unwrap();
    drop(pool.acquire().await.unwrap());

    let c = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || c.stop(StopMode::Immediate))
        .await
        .unwrap()
        .unwrap();

    // During the outage: errors, never hangs, and health says so.
    let mut failures = 0;
    for _ in 0..5 {
        let started = Instant::now();
        match pool.acquire().await {
            Ok(conn) => assert!(conn.query_one("SELECT 1", &[]).await.is_err()),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                failures += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        sleep(Duration::from_millis(50)).await;
    }
    assert!(failures >= 4);
    let health = pool.health_check().await;
    assert_eq!(health.status, HealthStatus::Unhealthy, "{health:?}");

    let c = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || c.restart())
        .await
        .unwrap()
        .unwrap();
    let back = Instant::now();
    let conn = loop {
        match pool.acquire().await {
            Ok(conn) => break conn,
            Err(_) if back.elapsed() < Duration::from_secs(10) => {
                sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("no recovery within 10 s: {e}"),
        }
    };
    let recovery = back.elapsed();
    let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(conn);
    eprintln!("recovered {recovery:?} after the server was ready again");
    sleep(Duration::from_millis(700)).await;
    assert_eq!(pool.health_check().await.status, HealthStatus::Healthy);
    pool.shutdown(Duration::from_secs(5)).await;
    assert_eq!(wait_server_connections(&url, app, 0).await, 0);
}

#[tokio::test]
async fn statement_cache_survives_checkouts() {
    let url = shared_url();
    let pool = Pool::connect(config(&url, "e2e-cache").min_size(1).max_size(1))
        .await
        .unwrap();
    for i in 0..5i32 {
        let conn = pool.acquire().await.unwrap();
        let stmt = conn.prepare_cached("SELECT $1::int4 + 1").await.unwrap();
        let v: i32 = conn.query_one(&stmt, &[&i]).await.unwrap().get(0);
        assert_eq!(v, i + 1);
        assert_eq!(pool::PooledConnection::statement_cache_len(&conn), 1);
    }
    pool.shutdown(Duration::from_secs(5)).await;
}

/// A full cache closes its least recently used statement, on the server too.
#[tokio::test]
async fn a_full_statement_cache_closes_the_least_recently_used() {
    let url = shared_url();
    let pool = Pool::connect(
        config(&url, "e2e-cache-lru")
            .min_size(1)
            .max_size(1)
            .statement_cache_capacity(2),
    )
    .await
    .unwrap();
    let conn = pool.acquire().await.unwrap();
    let a = conn.prepare_cached("SELECT 1 AS a").await.unwrap();
    conn.prepare_cached("SELECT 2 AS b").await.unwrap();
    // Using `a` again makes `b` the least recently used.
    let again = conn.prepare_cached("SELECT 1 AS a").await.unwrap();
    assert_eq!(pool::PooledConnection::statement_cache_len(&conn), 2);
    drop((a, again));
    conn.prepare_cached("SELECT 3 AS c").await.unwrap();
    assert_eq!(pool::PooledConnection::statement_cache_len(&conn), 2);
    // The server closes a statement when the Close message of its last drop arrives; the
    // query below is sent after it on the same connection.
    let rows = conn
        .query(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT _ AS _' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let on_server: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(on_server, ["SELECT 1 AS a", "SELECT 3 AS c"]);
    drop(conn);
    pool.shutdown(Duration::from_secs(5)).await;
}
