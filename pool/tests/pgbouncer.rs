//! The pool through a real PgBouncer (Debian's 1.18: no prepared statements in transaction
//! mode), started by the harness in front of a throwaway cluster, in session and in
//! transaction pooling: the statement cache, the `transaction_pooling` switch and the error
//! that names it, and the faults PgBouncer makes (a restart, `PAUSE`/`RESUME`, `RECONNECT`,
//! `KILL`), each followed by the time to the first success after the heal.
//!
//! Without `pgbouncer` on the machine every test here says so and fails: CI installs it
//! (`.ci/run`); set `CHAOS_ALLOW_MISSING_PGBOUNCER=1` to have them report it and pass.

use std::sync::Arc;
use std::time::Duration;

use chaos::postgres::{Bouncer, Cluster, PoolMode};
use pool::{Pool, PoolConfig, QueryError};
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(15);

/// The cluster and a bouncer in `mode`, or `None` (reported) when pgbouncer is missing and
/// that is allowed.
async fn setup(mode: PoolMode) -> Option<(Arc<Cluster>, Arc<Bouncer>)> {
    if let Err(e) = chaos::postgres::pgbouncer_binary() {
        if std::env::var_os("CHAOS_ALLOW_MISSING_PGBOUNCER").is_some() {
            eprintln!("UNAVAILABLE: {e}");
            return None;
        }
        panic!("{e} (set CHAOS_ALLOW_MISSING_PGBOUNCER=1 to skip these tests, reported)");
    }
    tokio::task::spawn_blocking(move || {
        let cluster = Cluster::start().expect("a throwaway PostgreSQL (server binaries needed)");
        let bouncer = Bouncer::start(&cluster, mode).expect("pgbouncer starts");
        Some((Arc::new(cluster), Arc::new(bouncer)))
    })
    .await
    .unwrap()
}

fn config(url: &str, app: &str, transaction_pooling: bool) -> PoolConfig {
    PoolConfig::from_url(url)
        .unwrap()
        .application_name(app.to_string())
        .min_size(2)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(2))
        .query_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .transaction_pooling(transaction_pooling)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_keeps_the_statement_cache() {
    let Some((_cluster, bouncer)) = setup(PoolMode::Session).await else {
        return;
    };
    let pool = Pool::connect(config(&bouncer.url(), "bouncer-session", false))
        .await
        .unwrap();
    for i in 0..20i32 {
        let row = pool.query_one("SELECT $1::int4 + 1", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
    let conn = pool.acquire().await.unwrap();
    let stmt = conn.prepare_cached("SELECT 2").await.unwrap();
    assert_eq!(
        conn.query_one(&stmt, &[]).await.unwrap().get::<_, i32>(0),
        2
    );
    assert!(pool::PooledConnection::statement_cache_len(&conn) >= 1);
    drop(conn);
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_needs_its_switch_and_works_with_it() {
    let Some((_cluster, bouncer)) = setup(PoolMode::Transaction).await else {
        return;
    };
    // Misconfigured: a statement cached on one server connection is gone when the next call
    // lands on another. PgBouncer hands out the server connection released last, so another
    // client that holds it in a transaction sends ours elsewhere.
    let pool = Pool::connect(
        config(&bouncer.url(), "bouncer-tx-off", false)
            .min_size(1)
            .max_size(1),
    )
    .await
    .unwrap();
    pool.query_one("SELECT $1::int4", &[&1i32]).await.unwrap();
    let (other, driver) = tokio_postgres::connect(&bouncer.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(driver);
    other.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let err = pool
        .query_one("SELECT $1::int4", &[&2i32])
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::TransactionPooling(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("set transaction_pooling = true"),
        "{message}"
    );
    other.batch_execute("COMMIT").await.unwrap();
    drop(other);
    pool.shutdown(BOUND).await;

    // With the switch: unnamed statements, parameters typed once per text.
    let pool = Pool::connect(config(&bouncer.url(), "bouncer-tx-on", true))
        .await
        .unwrap();
    let calls: Vec<_> = (0..64i32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let one: i32 = pool.query_one("SELECT $1::int4 + 1", &[&i]).await?.get(0);
                let none = pool.query_opt("SELECT 1 WHERE $1::int4 < 0", &[&i]).await?;
                let rows = pool
                    .query("SELECT generate_series(1, $1::int4)", &[&3i32])
                    .await?;
                Ok::<_, QueryError>((one == i + 1, none.is_none(), rows.len()))
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), (true, true, 3));
    }
    let stmt = pool.prepare("SELECT $1::text || 'x'").await.unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::TEXT]);
    let row = pool.query_one(&stmt, &[&"a"]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "ax");
    pool.execute("CREATE TABLE IF NOT EXISTS bounced (x int)", &[])
        .await
        .unwrap();
    assert_eq!(
        pool.execute("INSERT INTO bounced SELECT generate_series(1, 3)", &[])
            .await
            .unwrap(),
        3
    );
    // query_one counts rows itself here.
    assert!(matches!(
        pool.query_one("SELECT 1 UNION ALL SELECT 2", &[]).await,
        Err(QueryError::RowCount {
            expected: 1,
            got: 2,
            ..
        })
    ));
    // The exclusive path: statements inside a transaction are on one server connection.
    let conn = pool.acquire().await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    let stmt = conn.prepare_cached("SELECT $1::int4 * 2").await.unwrap();
    assert_eq!(
        conn.query_one(&stmt, &[&21i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );
    conn.batch_execute("COMMIT").await.unwrap();
    assert_eq!(pool::PooledConnection::statement_cache_len(&conn), 0);
    drop(conn);
    pool.shutdown(BOUND).await;
}

/// A fault PgBouncer makes, held for a while, then healed.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Restart,
    Pause,
    Reconnect,
    Kill,
}

async fn inject(bouncer: &Arc<Bouncer>, fault: Fault) {
    match fault {
        Fault::Restart => {
            let b = Arc::clone(bouncer);
            tokio::task::spawn_blocking(move || b.stop()).await.unwrap();
        }
        Fault::Pause => {
            // PAUSE returns once every server connection is released; in session mode that
            // waits for the clients, so it is not awaited.
            let b = Arc::clone(bouncer);
            tokio::spawn(async move { b.admin("PAUSE").await });
        }
        Fault::Reconnect => {
            bouncer.admin("RECONNECT").await.unwrap();
        }
        Fault::Kill => {
            bouncer.admin("KILL postgres").await.unwrap();
        }
    }
}

async fn heal(bouncer: &Arc<Bouncer>, fault: Fault) {
    match fault {
        Fault::Restart => {
            let b = Arc::clone(bouncer);
            tokio::task::spawn_blocking(move || b.restart())
                .await
                .unwrap()
                .unwrap();
        }
        Fault::Pause => {
            bouncer.admin("RESUME").await.unwrap();
        }
        Fault::Kill => {
            // A killed database waits for its own RESUME.
            bouncer.admin("RESUME postgres").await.unwrap();
        }
        Fault::Reconnect => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_from_every_pgbouncer_fault_in_both_modes() {
    let mut lines = Vec::new();
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let Some((_cluster, bouncer)) = setup(mode).await else {
            return;
        };
        for fault in [Fault::Restart, Fault::Pause, Fault::Reconnect, Fault::Kill] {
            if matches!((mode, fault), (PoolMode::Session, Fault::Pause)) {
                // PAUSE waits for every client to give its server connection back, which a
                // pool's clients never do in session mode: not a fault there.
                lines.push(
                    "session     Pause     n/a: PAUSE waits for every client to leave".into(),
                );
                continue;
            }
            let app = format!("bouncer-{}-{fault:?}", mode.as_str()).to_lowercase();
            let transaction = mode == PoolMode::Transaction;
            let pool = Pool::connect(config(&bouncer.url(), &app, transaction))
                .await
                .unwrap();
            let write = |pool: Pool| async move {
                pool.query_one("SELECT $1::int4", &[&1i32]).await.map(drop)
            };
            write(pool.clone()).await.unwrap();
            inject(&bouncer, fault).await;
            let mut failed_during = 0;
            let during_until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < during_until {
                if tokio::time::timeout(Duration::from_millis(300), write(pool.clone()))
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    failed_during += 1;
                }
            }
            heal(&bouncer, fault).await;
            let healed = Instant::now();
            let mut failed_after = 0;
            loop {
                match write(pool.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        failed_after += 1;
                        assert!(
                            healed.elapsed() < BOUND,
                            "{mode:?} {fault:?}: no success within {BOUND:?} of the heal: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            let recovery = healed.elapsed();
            // And it stays up: 50 more, none failing.
            for _ in 0..50 {
                write(pool.clone()).await.unwrap_or_else(|e| {
                    panic!("{mode:?} {fault:?}: a failure after recovery: {e}")
                });
            }
            lines.push(format!(
                "{:<11} {fault:<9?} recovery {:>6.1} ms, failed during {failed_during}, after the heal {failed_after}",
                mode.as_str(),
                recovery.as_secs_f64() * 1000.0
            ));
            pool.shutdown(BOUND).await;
        }
    }
    println!("{}", lines.join("\n"));
}
