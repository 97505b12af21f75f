//! The pool's hooks on a real PostgreSQL: after_connect, before_acquire, after_release.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pool::{ConnectFailure, Pool, PoolConfig, PoolError};

fn config(app: &str) -> PoolConfig {
    PoolConfig::from_url(&chaos::postgres::shared().expect("shared database").url())
        .unwrap()
        .application_name(app.to_string())
        .min_size(1)
        .max_size(2)
}

#[tokio::test]
async fn after_connect_sets_up_every_session_and_its_error_is_the_connect_failure() {
    let pool = Pool::builder(config("hooks-after-connect").min_size(2))
        .after_connect(|client| {
            Box::pin(async move {
                client
                    .batch_execute("SET search_path = tenant_42, public")
                    .await?;
                Ok(())
            })
        })
        .connect()
        .await
        .unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    for conn in [&a, &b] {
        let path: String = conn
            .query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(path, "tenant_42, public");
    }
    drop((a, b));
    pool.shutdown(Duration::from_secs(5)).await;

    let err = Pool::builder(config("hooks-after-connect-fails"))
        .after_connect(|client| {
            Box::pin(async move {
                client.batch_execute("SET search_path = ").await?;
                Ok(())
            })
        })
        .connect()
        .await
        .unwrap_err();
    match &err {
        PoolError::Connect {
            kind: ConnectFailure::Hook(message),
            ..
        } => assert!(
            message.contains("syntax error") || message.contains("db error"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("after_connect hook failed"),
        "{err}"
    );
}

#[tokio::test]
async fn before_acquire_saying_no_closes_the_connection_and_the_acquire_takes_another() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let pool = Pool::builder(config("hooks-before-acquire"))
        .before_acquire(move |_client| {
            // No to the first idle connection offered, yes after.
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move { !first })
        })
        .connect()
        .await
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    conn.query_one("SELECT 1", &[]).await.unwrap();
    drop(conn);
    let s = pool.statistics();
    assert_eq!(s.connections_closed.hook_rejected, 1, "{s:?}");
    assert!(calls.load(Ordering::SeqCst) >= 1);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn after_release_saying_no_closes_the_returned_connection() {
    let pool = Pool::builder(config("hooks-after-release").min_size(1).max_size(1))
        .after_release(|client| {
            Box::pin(async move {
                // Sessions that changed their statement_timeout are not reused.
                match client.query_one("SHOW statement_timeout", &[]).await {
                    Ok(row) => row.get::<_, String>(0) == "0",
                    Err(_) => false,
                }
            })
        })
        .connect()
        .await
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    conn.batch_execute("SELECT 1").await.unwrap();
    drop(conn);
    let conn = pool.acquire().await.unwrap();
    conn.batch_execute("SET statement_timeout = '5s'")
        .await
        .unwrap();
    drop(conn);
    let conn = pool.acquire().await.unwrap();
    let t: String = conn
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "0", "a fresh session, not the one the hook refused");
    drop(conn);
    let s = pool.statistics();
    assert_eq!(s.connections_closed.hook_rejected, 1, "{s:?}");
    assert_eq!(s.connections_created, 2, "{s:?}");
    pool.shutdown(Duration::from_secs(5)).await;
}
