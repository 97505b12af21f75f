//! The shared path ([`pool::Pool::query`] and its siblings) against a real PostgreSQL (this
//! binary's throwaway cluster): statements of many tasks pipelined on few sessions, what is
//! refused, what a dropped or timed-out call leaves behind (nothing for the others), that
//! exclusive users are not starved, and shutdown.

use std::sync::Arc;
use std::time::Duration;

use pool::{Pool, PoolConfig, PoolError, QueryError};
use tokio::time::{Instant, timeout};

/// A bound for things that take milliseconds, with room for a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(10);

fn config(app: &str, max_size: usize) -> PoolConfig {
    let db = chaos::postgres::shared().expect("a throwaway PostgreSQL (server binaries needed)");
    PoolConfig::from_url(&db.url())
        .unwrap()
        .application_name(app.to_string())
        .min_size(1)
        .max_size(max_size)
        .acquire_timeout(Duration::from_secs(5))
}

/// Sessions of `app` on the server, counted on a connection of another name.
async fn server_sessions(app: &str, state: &str) -> i64 {
    let db = chaos::postgres::shared().unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND ($2 = '' OR state = $2)",
            &[&app, &state],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_runs_and_is_counted() {
    let pool = Pool::connect(config("shared-forms", 2)).await.unwrap();
    let rows = pool
        .query("SELECT generate_series(1, 3)", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let two: i32 = pool
        .query_one("SELECT $1::int4 + 1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(two, 2);
    assert!(
        pool.query_opt("SELECT 1 WHERE false", &[])
            .await
            .unwrap()
            .is_none()
    );
    pool.execute("CREATE TABLE IF NOT EXISTS shared_forms (a int)", &[])
        .await
        .unwrap();
    let n = pool
        .execute("INSERT INTO shared_forms SELECT generate_series(1, 4)", &[])
        .await
        .unwrap();
    assert_eq!(n, 4);
    let stmt = pool
        .prepare("SELECT $1::text || '!' AS shout")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::TEXT]);
    assert_eq!(stmt.columns(), &["shout".to_string()]);
    let shout: String = pool.query_one(&stmt, &[&"hi"]).await.unwrap().get(0);
    assert_eq!(shout, "hi!");
    let sql = String::from("SELECT 1");
    pool.query_one(&sql, &[]).await.unwrap();
    // A failed statement fails alone; the session goes on.
    let err = pool.query_one("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(
        err.as_db_error().map(|db| db.code().clone()),
        Some(tokio_postgres::error::SqlState::DIVISION_BY_ZERO),
        "{err}"
    );
    pool.query_one("SELECT 1", &[]).await.unwrap();
    let stats = pool.statistics();
    assert_eq!(stats.shared_statements, 10, "{stats:?}");
    assert_eq!(stats.shared_abandoned, 0);
    pool.execute("DROP TABLE shared_forms", &[]).await.unwrap();
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_change_the_session_are_refused_before_anything_is_sent() {
    let pool = Pool::connect(config("shared-refused", 1)).await.unwrap();
    for sql in [
        "BEGIN",
        "  set search_path = x",
        "LISTEN ch",
        "-- c\nCOMMIT",
    ] {
        match pool.execute(sql, &[]).await {
            Err(QueryError::NotShareable { keyword, why }) => {
                let msg = QueryError::NotShareable {
                    keyword: keyword.clone(),
                    why,
                }
                .to_string();
                assert!(msg.contains("pool.acquire()"), "{msg}");
                assert!(msg.contains(&keyword), "{msg}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert_eq!(pool.statistics().shared_statements, 0);
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_few_sessions() {
    let app = "shared-many";
    let pool = Pool::connect(config(app, 2)).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let v: i32 = pool
                    .query_one("SELECT $1::int4", &[&i])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(v, i);
            })
        })
        .collect();
    for t in tasks {
        timeout(BOUND, t).await.unwrap().unwrap();
    }
    let stats = pool.statistics();
    assert_eq!(stats.shared_statements, 64);
    assert_eq!(stats.shared_in_flight, 0, "{stats:?}");
    assert!(stats.shared_sessions <= 2, "{stats:?}");
    assert!(stats.total_connections <= 2, "{stats:?}");
    assert!(server_sessions(app, "").await <= 2);
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_is_cancelled_on_the_server_and_delays_no_one_after_it() {
    let app = "shared-dropped";
    let pool = Pool::connect(config(app, 1)).await.unwrap();
    let sleep = pool.query("SELECT pg_sleep(30)", &[]);
    assert!(
        timeout(Duration::from_millis(300), sleep).await.is_err(),
        "the sleep ended early"
    );
    // The one session went back, the sleep cancelled: the next call is not 30 s behind it.
    let started = Instant::now();
    timeout(BOUND, pool.query_one("SELECT 1", &[]))
        .await
        .expect("the next call is not stuck behind the dropped one")
        .unwrap();
    assert!(started.elapsed() < BOUND);
    let stats = pool.statistics();
    assert_eq!(stats.shared_abandoned, 1, "{stats:?}");
    assert_eq!(stats.requests_cancelled, 1, "{stats:?}");
    assert_eq!(
        server_sessions(app, "active").await,
        0,
        "nothing still runs"
    );
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_hits_the_statement_ahead_is_sent_again_for_the_abandoned_one() {
    // On one session: a 1 s statement, then a 30 s one abandoned after 100 ms, then a short
    // one. The first cancel lands while the statement ahead runs and cancels it instead (it
    // is run again elsewhere); the abandoned one would then hold the short one for 30 s.
    let app = "shared-ahead";
    let pool = Pool::connect(config(app, 1)).await.unwrap();
    // Prepared first, so that each call is one request, pipelined in the order issued.
    let ahead = pool.prepare("SELECT pg_sleep(1)").await.unwrap();
    let slow = pool.prepare("SELECT pg_sleep(30)").await.unwrap();
    let next = pool.prepare("SELECT 2").await.unwrap();
    let started = Instant::now();
    let (ahead, abandoned, next) = tokio::join!(
        pool.query(&ahead, &[]),
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            timeout(Duration::from_millis(100), pool.query(&slow, &[])).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let next = timeout(BOUND, pool.query_one(&next, &[]))
                .await
                .expect("the short statement is not held behind the abandoned one");
            (next, started.elapsed())
        },
    );
    assert!(abandoned.is_err(), "the 30 s statement ended early");
    let (next, next_at) = next;
    assert_eq!(next.unwrap().get::<_, i32>(0), 2);
    assert!(next_at < Duration::from_secs(5), "{next_at:?}");
    ahead.expect("the statement ahead, cancelled by the pool, ran again");
    assert_eq!(
        server_sessions(app, "active").await,
        0,
        "nothing still runs"
    );
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_query_timeout_fails_with_timeout_and_is_cancelled() {
    let app = "shared-timeout";
    let pool = Pool::connect(config(app, 1).query_timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    match pool.query("SELECT pg_sleep(30)", &[]).await {
        Err(QueryError::Timeout { timeout }) => assert_eq!(timeout, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    pool.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(pool.statistics().requests_cancelled, 1);
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_acquire_is_not_starved_by_shared_load() {
    let pool = Pool::connect(config("shared-starve", 1)).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut ok = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match pool.query_one("SELECT 1", &[]).await {
                        Ok(_) => ok += 1,
                        // While the one session is checked out, shared calls wait like
                        // acquires; none may fail.
                        Err(e) => panic!("{e}"),
                    }
                }
                ok
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let conn = pool
            .acquire()
            .await
            .expect("the acquire gets the session in time");
        conn.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in load {
        total += t.await.unwrap();
    }
    assert!(total > 0);
    pool.shutdown(BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_shared_statements_then_refuses_more() {
    let app = "shared-shutdown";
    let pool = Pool::connect(config(app, 2)).await.unwrap();
    let running: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.query_one("SELECT pg_sleep(0.3)", &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = pool.shutdown(BOUND).await;
    assert_eq!(report.forced, 0, "{report:?}");
    for r in running {
        r.await
            .unwrap()
            .expect("a statement in flight at shutdown finishes");
    }
    assert!(matches!(
        pool.query_one("SELECT 1", &[]).await,
        Err(QueryError::Pool(PoolError::Closed))
    ));
    assert_eq!(pool.statistics().total_connections, 0);
    assert_eq!(server_sessions(app, "").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_pipelined_behind_a_dropped_one_are_not_held_hostage() {
    let app = "shared-hostage";
    let pool = Pool::connect(config(app, 1)).await.unwrap();
    let sleeper = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.query("SELECT pg_sleep(30)", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The one session runs the sleep: these are pipelined behind it.
    let followers: Vec<_> = (0..3)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.query_one("SELECT $1::int4", &[&i]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sleeper.abort();
    for (i, f) in followers.into_iter().enumerate() {
        let row = timeout(BOUND, f)
            .await
            .expect("a follower waited for the dropped 30 s statement")
            .unwrap()
            .expect("a follower hit by the pool's cancel runs again");
        assert_eq!(row.get::<_, i32>(0), i as i32);
    }
    assert!(pool.statistics().requests_cancelled >= 1);
    assert_eq!(
        server_sessions(app, "active").await,
        0,
        "the sleep was stopped"
    );
    pool.shutdown(BOUND).await;
}
