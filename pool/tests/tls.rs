//! TLS against a real PostgreSQL: a throwaway cluster with `ssl = on` that refuses plain TCP
//! (`hostnossl ... reject`), its certificate issued by a CA made for this run, and a second,
//! unrelated CA. Each `sslmode` is checked for what it must accept and refuse, sessions are
//! tracked through the encryption (a dirty session is rolled back, an abandoned query
//! cancelled), and a handshake that hangs in the proxy is bounded by `connect_timeout`.
//! One test function, so one cluster start.

use std::time::{Duration, Instant};

use chaos::postgres::{Cluster, ClusterOptions};
use chaos::proxy::{Proxies, ProxyConfig, Stream, Toxic, ToxicKind, toxics};
use chaos::tls::TestCa;
use pool::{ConnectFailure, Pool, PoolConfig, PoolError, SslMode};

const BOUND: Duration = Duration::from_secs(10);

async fn pool(url: &str) -> Result<Pool, PoolError> {
    let config = PoolConfig::from_url(url)?
        .min_size(0)
        .max_size(1)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(5));
    tokio::time::timeout(BOUND, Pool::connect(config))
        .await
        .expect("connect is bounded")
}

/// Whether the session of a fresh checkout is encrypted, as the server sees it.
async fn encrypted(pool: &Pool) -> bool {
    let conn = pool.acquire().await.expect("acquire");
    conn.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .expect("pg_stat_ssl")
    .get(0)
}

fn tls_failure(result: Result<Pool, PoolError>) -> String {
    match result {
        Err(PoolError::Connect {
            kind: ConnectFailure::Tls(message),
            target,
            ..
        }) => format!("{target}: {message}"),
        Err(other) => panic!("expected a TLS failure, got {other}"),
        Ok(_) => panic!("expected a TLS failure, got a pool"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_server_that_requires_tls() {
    let ca = TestCa::new("pool test CA").unwrap();
    let wrong = TestCa::new("an unrelated CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    let wrong_pem = dir.path().join("wrong.pem");
    std::fs::write(&ca_pem, ca.cert_pem()).unwrap();
    std::fs::write(&wrong_pem, wrong.cert_pem()).unwrap();
    let options = ClusterOptions {
        tls: Some(ca.issue(&["localhost", "127.0.0.1"]).unwrap()),
        tls_only: true,
        ..ClusterOptions::default()
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(options))
        .await
        .unwrap()
        .expect("a throwaway PostgreSQL with ssl = on (server binaries needed)");
    let port = cluster.port();
    let url =
        |host: &str, params: &str| format!("postgres://postgres@{host}:{port}/postgres?{params}");
    let ca_param = format!("sslrootcert={}", ca_pem.display());
    let wrong_param = format!("sslrootcert={}", wrong_pem.display());

    // Plain TCP is refused by the server, and says so.
    match pool(&url("127.0.0.1", "sslmode=disable")).await {
        Err(PoolError::Connect {
            kind: ConnectFailure::Server(message),
            ..
        }) => assert!(message.contains("no encryption"), "{message}"),
        other => panic!("a plain connection must be refused: {:?}", other.err()),
    }

    // require: encrypted, no certificate checked (no root given, none in ~/.postgresql).
    let required = pool(&url("127.0.0.1", "sslmode=require"))
        .await
        .expect("require");
    assert!(encrypted(&required).await, "sslmode=require is encrypted");
    // prefer (the default) takes TLS when the server offers it.
    let preferred = pool(&url("127.0.0.1", "")).await.expect("prefer");
    assert!(encrypted(&preferred).await, "sslmode=prefer takes TLS");
    assert_eq!(
        PoolConfig::from_url(&url("127.0.0.1", ""))
            .unwrap()
            .tls_options()
            .unwrap()
            .mode,
        SslMode::Prefer
    );

    // verify-full with the right CA, by name and by address (both are in the certificate).
    for host in ["localhost", "127.0.0.1"] {
        let p = pool(&url(host, &format!("sslmode=verify-full&{ca_param}")))
            .await
            .unwrap_or_else(|e| panic!("verify-full to {host}: {e}"));
        assert!(encrypted(&p).await);
        p.shutdown(BOUND).await;
    }
    // ... and refused with the wrong CA, naming the host and what failed.
    let message = tls_failure(
        pool(&url(
            "localhost",
            &format!("sslmode=verify-full&{wrong_param}"),
        ))
        .await,
    );
    assert!(
        message.starts_with(&format!("localhost:{port}")),
        "{message}"
    );
    assert!(
        message.contains("not signed by a CA in sslrootcert"),
        "{message}"
    );
    // The builder (for hooks) connects as Pool::connect does: the same checks.
    let config = PoolConfig::from_url(&url(
        "localhost",
        &format!("sslmode=verify-full&{wrong_param}"),
    ))
    .unwrap()
    .min_size(1)
    .connect_timeout(Duration::from_secs(3));
    let built = tokio::time::timeout(BOUND, Pool::builder(config).connect())
        .await
        .expect("bounded");
    let message = tls_failure(built);
    assert!(
        message.contains("not signed by a CA in sslrootcert"),
        "{message}"
    );
    // verify-ca checks the CA too.
    let message = tls_failure(
        pool(&url(
            "localhost",
            &format!("sslmode=verify-ca&{wrong_param}"),
        ))
        .await,
    );
    assert!(message.contains("UnknownIssuer"), "{message}");

    // A name the certificate does not list (the address given by hostaddr): verify-full
    // refuses it, verify-ca (the CA only) takes it.
    let kv = |mode: &str, root: &std::path::Path| {
        format!(
            "host=db.example hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode={mode} sslrootcert={}",
            root.display()
        )
    };
    let message = tls_failure(pool(&kv("verify-full", &ca_pem)).await);
    assert!(message.contains("does not name the host"), "{message}");
    let by_ca = pool(&kv("verify-ca", &ca_pem))
        .await
        .expect("verify-ca ignores the name");
    assert!(encrypted(&by_ca).await);
    by_ca.shutdown(BOUND).await;

    // Sessions are tracked through the encryption: a transaction left open is rolled back,
    // and an abandoned query is cancelled on the server, before the next user gets either.
    let conn = required.acquire().await.unwrap();
    conn.batch_execute("BEGIN; CREATE TEMP TABLE t (x int)")
        .await
        .unwrap();
    drop(conn);
    let conn = required.acquire().await.unwrap();
    let in_tx: bool = conn
        .query_one("SELECT txid_current_if_assigned() IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_tx, "the next user must not inherit the transaction");
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        conn.simple_query("SELECT pg_sleep(30)"),
    )
    .await;
    assert!(abandoned.is_err(), "the sleep was abandoned");
    drop(conn);
    let started = Instant::now();
    let conn = required.acquire().await.unwrap();
    let same_pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let waited = started.elapsed();
    assert_eq!(
        same_pid, pid,
        "the cancelled session is reused, not replaced"
    );
    assert!(
        waited < Duration::from_secs(5),
        "waited {waited:?} behind the abandoned query"
    );
    drop(conn);
    let stats = required.statistics();
    assert_eq!(stats.sessions_rolled_back, 1, "{stats:?}");
    assert_eq!(stats.requests_cancelled, 1, "{stats:?}");

    // A handshake that hangs (the proxy accepts and never answers) is bounded by
    // connect_timeout, and the error says so.
    let proxies = Proxies::new(7);
    let proxy = proxies
        .create(ProxyConfig::new(
            "tls-hang",
            "127.0.0.1:0",
            format!("127.0.0.1:{port}"),
        ))
        .unwrap();
    proxy
        .add_toxic(Toxic {
            name: "hang".into(),
            kind: ToxicKind::HandshakeHang(toxics::HandshakeHang),
            stream: Stream::Upstream,
            toxicity: 1.0,
        })
        .unwrap();
    let hung = PoolConfig::from_url(&format!(
        "postgres://postgres@{}/postgres?sslmode=verify-full&{ca_param}",
        proxy.listen_addr().unwrap()
    ))
    .unwrap()
    .min_size(1)
    .connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = tokio::time::timeout(BOUND, Pool::connect(hung))
        .await
        .expect("bounded")
        .expect_err("no connection through a hung handshake");
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            PoolError::Connect {
                kind: ConnectFailure::TimedOut(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} for a 500 ms connect_timeout"
    );

    required.shutdown(BOUND).await;
    preferred.shutdown(BOUND).await;
}

/// A server that takes only client certificates (`hostssl ... cert`): `sslcert` and `sslkey`
/// log in; without them the server's refusal says what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_where_the_server_requires_one() {
    let ca = TestCa::new("pool test CA").unwrap();
    let clients = TestCa::new("client CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = clients.issue_client("postgres").unwrap();
    let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&cert, &client.cert_pem).unwrap();
    std::fs::write(&key, &client.key_pem).unwrap();
    let options = ClusterOptions {
        tls: Some(ca.issue(&["localhost", "127.0.0.1"]).unwrap()),
        tls_client_ca: Some(clients.cert_pem()),
        ..ClusterOptions::default()
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(options))
        .await
        .unwrap()
        .expect("a throwaway PostgreSQL with ssl = on (server binaries needed)");
    let base = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        cluster.port()
    );
    match pool(&base).await {
        Err(PoolError::Connect {
            kind: ConnectFailure::Server(message),
            ..
        }) => assert!(message.contains("certificate"), "{message}"),
        other => panic!("no client certificate must be refused: {:?}", other.err()),
    }
    let with_cert = format!("{base}&sslcert={}&sslkey={}", cert.display(), key.display());
    let p = pool(&with_cert)
        .await
        .expect("the client certificate logs in");
    assert!(encrypted(&p).await);
    p.shutdown(BOUND).await;
}
