//! PostgreSQL through the real proxy: what tokio-postgres and the pool see under each fault.

use chaos::proxy::toxics;
use std::sync::Arc;
use std::time::Duration;

use chaos::proxy::{Proxies, Proxy, Stream, Toxic, ToxicKind};
use pool::{HealthStatus, Pool, PoolConfig, PoolError};
use tokio::time::{Instant, sleep, timeout};

fn toxic(kind: ToxicKind, stream: Stream) -> Toxic {
    Toxic {
        name: format!("{}_{}", kind.type_name(), stream.as_str()),
        kind,
        stream,
        toxicity: 1.0,
    }
}

/// A proxy in front of the shared cluster.
fn proxy(name: &str) -> (Proxies, Proxy, String) {
    e2e::proxy_to_shared(name)
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn select_one(c: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    Ok(c.query_one("SELECT 1", &[]).await?.get(0))
}

#[tokio::test]
async fn tokio_postgres_sees_each_toxic() {
    let (_p, proxy, url) = proxy("pg-toxics");
    let c = client(&url).await;
    assert_eq!(select_one(&c).await.unwrap(), 1);

    // latency adds delay
    proxy
        .add_toxic(toxic(
            ToxicKind::Latency(toxics::Latency {
                latency: 150,
                jitter: 0,
            }),
            Stream::Downstream,
        ))
        .unwrap();
    let started = Instant::now();
    select_one(&c).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    proxy.remove_toxic("latency_downstream").unwrap();

    // hold delays, then completes when removed
    let c3 = Arc::new(client(&url).await);
    proxy
        .add_toxic(toxic(ToxicKind::Hold(toxics::Hold), Stream::Downstream))
        .unwrap();
    let q = {
        let c3 = Arc::clone(&c3);
        tokio::spawn(async move { select_one(&c3).await })
    };
    sleep(Duration::from_millis(200)).await;
    assert!(!q.is_finished(), "held");
    proxy.remove_toxic("hold_downstream").unwrap();
    assert_eq!(
        timeout(Duration::from_secs(5), q)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        1,
        "completed after heal"
    );

    // timeout hangs then closes
    proxy
        .add_toxic(toxic(
            ToxicKind::Timeout(toxics::Timeout { timeout: 300 }),
            Stream::Downstream,
        ))
        .unwrap();
    let started = Instant::now();
    let r = timeout(Duration::from_secs(10), select_one(&c))
        .await
        .expect("closed, not hung");
    assert!(r.is_err());
    assert!(started.elapsed() >= Duration::from_millis(250));
    proxy.remove_toxic("timeout_downstream").unwrap();

    // reset_peer gives an error
    let c = client(&url).await;
    proxy
        .add_toxic(toxic(
            ToxicKind::ResetPeer(toxics::ResetPeer { timeout: 0 }),
            Stream::Upstream,
        ))
        .unwrap();
    assert!(
        timeout(Duration::from_secs(5), select_one(&c))
            .await
            .unwrap()
            .is_err()
    );
    proxy.remove_toxic("reset_peer_upstream").unwrap();

    // limit_data cuts the connection
    let c = client(&url).await;
    proxy
        .add_toxic(toxic(
            ToxicKind::LimitData(toxics::LimitData { bytes: 100 }),
            Stream::Downstream,
        ))
        .unwrap();
    let r = timeout(
        Duration::from_secs(5),
        c.query("SELECT repeat('x', 1000)", &[]),
    )
    .await
    .unwrap();
    assert!(r.is_err());
    proxy.remove_toxic("limit_data_downstream").unwrap();

    // disable gives an error, on live and new connections
    let c = client(&url).await;
    proxy.disable();
    assert!(
        timeout(Duration::from_secs(5), select_one(&c))
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .is_err()
    );
    proxy.enable().unwrap();
    assert_eq!(select_one(&client(&url).await).await.unwrap(), 1);
}

fn pool_config(url: &str, app: &str) -> PoolConfig {
    PoolConfig::from_url(url)
        .unwrap()
        .application_name(app.to_string())
        .min_size(2)
        .max_size(5)
}

#[tokio::test]
async fn pool_fails_fast_while_refused_and_recovers() {
    let (_p, proxy, url) = proxy("pg-refuse");
    let pool = Pool::connect(pool_config(&url, "e2e-refuse"))
        .await
        .unwrap();
    proxy.disable();
    // The cut reaches the pool's idle connections as an EOF their drivers see almost at once.
    sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for _ in 0..10 {
        let err = pool.acquire().await.err();
        assert!(err.is_some(), "no connection while down");
        sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "failed fast: {:?}",
        started.elapsed()
    );
    assert_eq!(pool.health_check().await.status, HealthStatus::Unhealthy);
    proxy.enable().unwrap();
    let healed = Instant::now();
    let conn = loop {
        match pool.acquire().await {
            Ok(c) => break c,
            Err(_) if healed.elapsed() < Duration::from_secs(5) => {
                sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    };
    let recovery = healed.elapsed();
    conn.query_one("SELECT 1", &[]).await.unwrap();
    assert!(
        recovery < Duration::from_secs(2),
        "recovered after {recovery:?}"
    );
    drop(conn);
    pool.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn pool_detects_a_blackhole_and_never_hangs() {
    let (_p, proxy, url) = proxy("pg-blackhole");
    let pool =
        Pool::connect(pool_config(&url, "e2e-blackhole").acquire_timeout(Duration::from_secs(3)))
            .await
            .unwrap();
    sleep(Duration::from_millis(600)).await;
    proxy
        .add_toxic(toxic(
            ToxicKind::Timeout(toxics::Timeout { timeout: 0 }),
            Stream::Downstream,
        ))
        .unwrap();
    let started = Instant::now();
    loop {
        if pool.health_check().await.status == HealthStatus::Unhealthy {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "blackhole not detected"
        );
        sleep(Duration::from_millis(20)).await;
    }
    let detected = started.elapsed();
    for _ in 0..3 {
        let t = Instant::now();
        let r = pool.acquire().await;
        assert!(
            t.elapsed() <= Duration::from_millis(3500),
            "an acquire overran its deadline: {:?}",
            t.elapsed()
        );
        if let Ok(conn) = r {
            // Whatever is handed out must be checked, or fail within our own bound.
            let _ = timeout(Duration::from_millis(500), conn.query_one("SELECT 1", &[])).await;
        }
    }
    proxy.remove_toxic("timeout_downstream").unwrap();
    let healed = Instant::now();
    loop {
        if let Ok(conn) = pool.acquire().await
            && timeout(Duration::from_secs(1), conn.query_one("SELECT 1", &[]))
                .await
                .is_ok_and(|r| r.is_ok())
        {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(10),
            "no recovery after the blackhole healed"
        );
        sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "blackhole detected in {detected:?}; recovered {:?} after heal",
        healed.elapsed()
    );
    pool.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn pool_drops_connections_stranded_by_a_lost_peer() {
    let (_p, proxy, url) = proxy("pg-peer-lost");
    let pool = Pool::connect(pool_config(&url, "e2e-peer-lost"))
        .await
        .unwrap();
    proxy
        .add_toxic(toxic(
            ToxicKind::PeerLost(toxics::PeerLost),
            Stream::Downstream,
        ))
        .unwrap();
    sleep(Duration::from_secs(3)).await; // a probe times out, the idle ones go
    for _ in 0..5 {
        let conn = pool.acquire().await.expect("new connections pass");
        let r = timeout(Duration::from_secs(2), conn.query_one("SELECT 1", &[])).await;
        assert!(
            r.is_ok_and(|r| r.is_ok()),
            "a stranded connection was handed out"
        );
    }
    assert!(matches!(
        pool.shutdown(Duration::from_secs(2)).await.forced,
        0
    ));
    assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
}

/// Server-side sessions tagged `app`, counted on a direct connection (not through the proxy).
async fn server_sessions(app: &str) -> i64 {
    let url = chaos::postgres::shared().expect("shared database").url();
    let c = client(&url).await;
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn sessions_stranded_by_a_lost_peer_are_terminated_on_the_server_once_it_answers() {
    let app = "e2e-orphans";
    let (_p, proxy, url) = proxy("pg-orphans");
    let pool = Pool::connect(pool_config(&url, app)).await.unwrap();
    assert_eq!(server_sessions(app).await, 2);
    // The pool's open sessions go silent; the server keeps them (the proxy holds their
    // sockets open, as a peer that vanished without a FIN or RST would leave them).
    proxy
        .add_toxic(toxic(
            ToxicKind::PeerLost(toxics::PeerLost),
            Stream::Downstream,
        ))
        .unwrap();
    let started = Instant::now();
    loop {
        let s = pool.statistics();
        if s.connections_closed.outage + s.connections_closed.validation_failed >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the pool never gave up on the stranded sessions: {s:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    // New connections pass: the pool serves again on new sessions (an acquire in the first
    // moments of the outage the silence began may fail fast while the first new connection is
    // being made), and within 5 s the server holds nothing of the pool's that the pool does
    // not hold.
    let gave_up = Instant::now();
    let conn = loop {
        match pool.acquire().await {
            Ok(conn) => break conn,
            Err(e) => assert!(
                gave_up.elapsed() < Duration::from_secs(2),
                "new connections pass, yet no acquire succeeded within 2 s: {e}"
            ),
        }
        sleep(Duration::from_millis(20)).await;
    };
    conn.query_one("SELECT 1", &[]).await.unwrap();
    drop(conn);
    let served = Instant::now();
    loop {
        let held = pool.statistics().total_connections as i64;
        let on_server = server_sessions(app).await;
        if on_server <= held {
            break;
        }
        assert!(
            served.elapsed() < Duration::from_secs(5),
            "the server still holds {on_server} sessions of the pool, which holds {held}: {:?}",
            pool.statistics()
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        pool.statistics().orphans_terminated >= 2,
        "{:?}",
        pool.statistics()
    );
    pool.shutdown(Duration::from_secs(2)).await;
    proxy.remove_all_toxics();
}
