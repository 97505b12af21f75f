//! Several hosts behind one pool, against a real primary and its streaming standby
//! (`chaos::postgres`, `pg_basebackup -R`): libpq's six `target_session_attrs` chosen by role,
//! not by position in the URL; per-host health; a failover (the primary crashes, the standby
//! is promoted) followed by the pool; and a write refused as read-only retiring its session.

use std::sync::Arc;
use std::time::Duration;

use chaos::postgres::{Cluster, ClusterOptions, StopMode};
use pool::{HostRole, HostStatus, Pool, PoolConfig, SessionAttrs};
use tokio::time::Instant;

/// A bound for what takes milliseconds, with room for a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(15);

async fn pair() -> (Arc<Cluster>, Arc<Cluster>) {
    tokio::task::spawn_blocking(|| {
        let primary = Cluster::start_with(ClusterOptions::replicated())
            .expect("a throwaway PostgreSQL (server binaries needed)");
        let standby = primary
            .start_standby()
            .expect("a streaming standby (pg_basebackup)");
        (Arc::new(primary), Arc::new(standby))
    })
    .await
    .unwrap()
}

fn config(url: &str, app: &str) -> PoolConfig {
    PoolConfig::from_url(url)
        .unwrap()
        .application_name(app.to_string())
        .min_size(1)
        .max_size(3)
        .acquire_timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(2))
}

async fn server_port(pool: &Pool) -> Result<i32, String> {
    let conn = pool.acquire().await.map_err(|e| e.to_string())?;
    let row = conn
        .query_one("SELECT inet_server_port()", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_go_by_role_not_by_position_and_follow_a_failover() {
    let (primary, standby) = pair().await;
    let (p, s) = (primary.port() as i32, standby.port() as i32);
    // The standby first: a pool that trusted the list's order would write to it.
    let url = |attrs: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{s},127.0.0.1:{p}/postgres?target_session_attrs={attrs}"
        )
    };
    for (attrs, want) in [
        ("any", s),
        ("read-write", p),
        ("primary", p),
        ("read-only", s),
        ("standby", s),
        ("prefer-standby", s),
    ] {
        let pool = Pool::connect(config(&url(attrs), "failover-modes"))
            .await
            .unwrap();
        assert_eq!(
            server_port(&pool).await,
            Ok(want),
            "target_session_attrs={attrs}"
        );
        pool.shutdown(BOUND).await;
    }
    // prefer-standby with no standby in the list takes the primary.
    let only_primary =
        format!("postgres://postgres@127.0.0.1:{p}/postgres?target_session_attrs=prefer-standby");
    let pool = Pool::connect(config(&only_primary, "failover-modes"))
        .await
        .unwrap();
    assert_eq!(server_port(&pool).await, Ok(p));
    pool.shutdown(BOUND).await;
    // standby with no standby in the list: a clear error.
    let err = Pool::connect(config(
        &format!("postgres://postgres@127.0.0.1:{p}/postgres?target_session_attrs=standby"),
        "failover-modes",
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "the server is a primary (read-write), and target_session_attrs asks for standby"
        ),
        "{err}"
    );

    // For the failover, the usual order: the primary first.
    let pool = Pool::connect(
        config(
            &format!("postgres://postgres@127.0.0.1:{p},127.0.0.1:{s}/postgres?target_session_attrs=read-write"),
            "failover-writes",
        )
        .outage_probe_interval(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    assert_eq!(
        pool.config().session_attrs().unwrap(),
        SessionAttrs::ReadWrite
    );
    let hosts = pool.health().hosts;
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(
        (hosts[0].port as i32, hosts[0].role),
        (p, HostRole::Primary),
        "{hosts:?}"
    );
    assert_eq!(hosts[0].status, HostStatus::Up, "{hosts:?}");
    // The standby was never tried: the primary answered first.
    assert_eq!(hosts[1].status, HostStatus::Unknown, "{hosts:?}");
    pool.acquire()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE failover_writes (at timestamptz)")
        .await
        .unwrap();

    // The table has reached the standby (replication is asynchronous).
    let (standby_client, driver) = tokio_postgres::connect(&standby.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(driver);
    let deadline = Instant::now() + BOUND;
    while !standby_client
        .query_one("SELECT to_regclass('failover_writes') IS NOT NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            Instant::now() < deadline,
            "the standby never replayed the table"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(standby_client);

    // The primary crashes; the standby is promoted.
    let crashed = Arc::clone(&primary);
    tokio::task::spawn_blocking(move || crashed.stop(StopMode::Immediate))
        .await
        .unwrap()
        .unwrap();
    let promoted = Arc::clone(&standby);
    tokio::task::spawn_blocking(move || promoted.promote())
        .await
        .unwrap()
        .unwrap();
    let promoted_at = Instant::now();
    let deadline = promoted_at + BOUND;
    let mut failed = 0;
    loop {
        let write = async {
            let conn = pool.acquire().await.map_err(|e| e.to_string())?;
            conn.execute("INSERT INTO failover_writes VALUES (now())", &[])
                .await
                .map_err(|e| format!("{e}: {:?}", e.as_db_error().map(|d| d.message())))
        };
        match write.await {
            Ok(_) => break,
            Err(e) => {
                failed += 1;
                assert!(
                    Instant::now() < deadline,
                    "no write within {BOUND:?} of the promotion: {e}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let took = promoted_at.elapsed();
    println!("first write {took:?} after the promotion ({failed} failed before)");
    assert_eq!(
        server_port(&pool).await,
        Ok(s),
        "writes go to the promoted standby"
    );
    let hosts = pool.health().hosts;
    assert_eq!(hosts[0].status, HostStatus::Down, "{hosts:?}");
    assert!(hosts[0].last_error.is_some(), "{hosts:?}");
    assert_eq!(
        (hosts[1].status, hosts[1].role),
        (HostStatus::Up, HostRole::Primary),
        "{hosts:?}"
    );
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_as_read_only_retires_its_session() {
    let primary = tokio::task::spawn_blocking(|| Cluster::start_with(ClusterOptions::default()))
        .await
        .unwrap()
        .expect("a throwaway PostgreSQL (server binaries needed)");
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port()
    );
    let pool = Pool::connect(config(&url, "failover-read-only"))
        .await
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    conn.batch_execute("CREATE TABLE ro (x int)").await.unwrap();
    // The server turns read-only under the pool (as a primary being fenced does).
    conn.batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .await
        .unwrap();
    conn.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let deadline = Instant::now() + BOUND;
    let err = loop {
        match conn.execute("INSERT INTO ro VALUES (1)", &[]).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(Instant::now() < deadline, "the reload never took effect");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );
    drop(conn);
    // The return may wait for the session's ReadyForQuery (the error came first), so poll.
    let deadline = Instant::now() + BOUND;
    while pool.statistics().connections_closed.wrong_role == 0 {
        assert!(Instant::now() < deadline, "{:?}", pool.statistics());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pool.statistics().connections_closed.wrong_role, 1);
    // New sessions are refused by role, with a message that says so.
    let err = pool.acquire().await.unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    // Back to read-write: the pool serves again.
    let admin = tokio_postgres::connect(&primary.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(admin.1);
    admin
        .0
        .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
        .await
        .unwrap();
    admin
        .0
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        match pool.acquire().await {
            Ok(conn) if conn.execute("INSERT INTO ro VALUES (2)", &[]).await.is_ok() => break,
            _ => assert!(
                Instant::now() < deadline,
                "the pool did not serve writes again"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.shutdown(BOUND).await;
}
