//! The real connector ([`pool::PgConnector`]) against a real PostgreSQL (a throwaway cluster
//! of this test binary, started by `chaos::postgres`): each thing the pool relies on it for,
//! checked directly. The end-to-end suite (`tests/`) covers the same ground through the pool;
//! this test is here so that the pool's own test run, which the mutation testing uses, sees the
//! real connector too. One test function, so one cluster start.

use std::sync::Arc;
use std::time::Duration;

use pool::{
    Connector, PgConnector, Pool, PoolConfig, PooledConnection, SessionReset, SessionStatus,
};
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_real_connector_does_what_the_pool_relies_on() {
    let db = chaos::postgres::shared().expect("a throwaway PostgreSQL (server binaries needed)");
    let url = db.url();
    let pg: tokio_postgres::Config = url.parse().unwrap();
    let port = pg.get_ports()[0];
    let connector = PgConnector::new(pg.clone());
    assert_eq!(connector.target(), format!("127.0.0.1:{port}"));
    connector
        .probe()
        .await
        .expect("the probe reaches the server");

    let opened = connector.connect().await.expect("connect");
    let driver = tokio::spawn(opened.driver);
    let client = Arc::new(opened.client);
    let session = opened.session.expect("plain connections are tracked");
    assert!(!connector.is_closed(&client));
    connector.validate(&client).await.expect("validate");
    assert_eq!(session.status(), SessionStatus::Idle);
    let pid = session.backend_pid().expect("the pid from BackendKeyData");
    let server_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid, server_pid as u32);

    // A transaction block, rolled back.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(session.status(), SessionStatus::InTransaction);
    connector.rollback(&client).await.expect("rollback");
    assert_eq!(session.status(), SessionStatus::Idle);

    // Session state, reset.
    client
        .batch_execute("SET application_name = 'changed by the user'")
        .await
        .unwrap();
    connector
        .reset(&client, SessionReset::Clean)
        .await
        .expect("reset");
    let name: String = client
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(name, "changed by the user");
    connector.settle(&client).await.expect("settle");

    // A statement in flight, cancelled on a connection of its own.
    let sleeping = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.simple_query("SELECT pg_sleep(30)").await }
    });
    timeout(BOUND, async {
        while session.status() != SessionStatus::Busy {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the statement was sent");
    connector.cancel(&client, &session).await.expect("cancel");
    let cut = timeout(BOUND, sleeping)
        .await
        .expect("the cancel ended the statement")
        .unwrap();
    let e = cut.expect_err("cancelled");
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    timeout(BOUND, session.drained()).await.unwrap();
    assert_eq!(session.status(), SessionStatus::Idle);

    // Another session of ours, terminated by pid; a pid younger than asked is left alone.
    let other = connector.connect().await.expect("connect");
    let other_driver = tokio::spawn(other.driver);
    let other_pid = other.session.unwrap().backend_pid().unwrap();
    let too_young = connector
        .terminate(&client, &[(other_pid, 3600.0)])
        .await
        .unwrap();
    assert_eq!(
        too_young, 0,
        "a session younger than the orphan is another one"
    );
    let terminated = connector
        .terminate(&client, &[(other_pid, 0.0), (pid, 0.0)])
        .await
        .unwrap();
    assert_eq!(terminated, 1, "the other one, never the session it runs on");
    timeout(BOUND, other_driver).await.unwrap().unwrap();
    assert!(connector.is_closed(&other.client));
    assert!(connector.validate(&other.client).await.is_err());
    assert!(
        connector.settle(&other.client).await.is_err(),
        "the settling statement is a round trip"
    );
    drop(client);
    let _ = timeout(BOUND, driver).await;

    // target_session_attrs is checked against what the server says.
    let read_only = PgConnector::new(
        format!("{url}?target_session_attrs=read-only")
            .parse()
            .unwrap(),
    );
    let refused = read_only
        .connect()
        .await
        .err()
        .expect("the server is read-write");
    assert!(
        format!("{:?}", refused.kind).contains("read-write"),
        "{:?}",
        refused.kind
    );
    let read_write = PgConnector::new(
        format!("{url}?target_session_attrs=read-write")
            .parse()
            .unwrap(),
    );
    assert!(read_write.connect().await.is_ok());
    // A session the server makes read-only (as a standby's are) is the other way round.
    let ro = "options=-c%20default_transaction_read_only%3Don";
    let on_standby = |attrs: &str| {
        PgConnector::new(
            format!("{url}?{ro}&target_session_attrs={attrs}")
                .parse()
                .unwrap(),
        )
    };
    assert!(on_standby("read-only").connect().await.is_ok());
    let refused = on_standby("read-write")
        .connect()
        .await
        .err()
        .expect("read-only");
    assert!(
        format!("{:?}", refused.kind).contains("read-only"),
        "{:?}",
        refused.kind
    );

    // Nothing listens: the probe says so.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody: tokio_postgres::Config =
        format!("postgres://postgres@127.0.0.1:{closed_port}/postgres")
            .parse()
            .unwrap();
    assert!(PgConnector::new(nobody).probe().await.is_err());

    // The pool's statement cache, per connection.
    let pool = Pool::connect(PoolConfig::from_url(&url).unwrap().min_size(1).max_size(1))
        .await
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    assert_eq!(PooledConnection::statement_cache_len(&conn), 0);
    conn.prepare_cached("SELECT 1").await.unwrap();
    conn.prepare_cached("SELECT 2").await.unwrap();
    conn.prepare_cached("SELECT 1").await.unwrap();
    assert_eq!(PooledConnection::statement_cache_len(&conn), 2);
    drop(conn);
    pool.shutdown(Duration::from_secs(5)).await;

    // A reset on return: `clean` keeps prepared statements, `discard` deallocates them and
    // the cache empties with them.
    for (how, kept) in [(SessionReset::Clean, 1), (SessionReset::Discard, 0)] {
        let config = PoolConfig::from_url(&url)
            .unwrap()
            .min_size(1)
            .max_size(1)
            .session_reset(how);
        let pool = Pool::connect(config).await.unwrap();
        let conn = pool.acquire().await.unwrap();
        conn.prepare_cached("SELECT 1").await.unwrap();
        drop(conn);
        let conn = pool.acquire().await.unwrap();
        assert_eq!(
            PooledConnection::statement_cache_len(&conn),
            kept,
            "{how:?}"
        );
        conn.prepare_cached("SELECT 1")
            .await
            .expect("coherent with the server");
        drop(conn);
        pool.shutdown(Duration::from_secs(5)).await;
    }
}
