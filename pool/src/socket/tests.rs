use std::time::Duration;

/// The settings reach the kernel: read back from the socket, not from the config.
#[tokio::test]
async fn the_tcp_settings_reach_the_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let config = crate::PoolConfig::from_url("postgres://app@127.0.0.1/app")
        .unwrap()
        .tcp_keepalive_idle(Duration::from_secs(7))
        .tcp_keepalive_interval(Duration::from_secs(3))
        .tcp_keepalive_retries(4)
        .tcp_user_timeout(Duration::from_secs(9))
        .pg_config()
        .unwrap();
    super::set_options(&stream, &config).unwrap();
    let sock = socket2::SockRef::from(&stream);
    assert!(sock.tcp_nodelay().unwrap());
    assert!(sock.keepalive().unwrap());
    assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
    assert_eq!(
        sock.tcp_keepalive_interval().unwrap(),
        Duration::from_secs(3)
    );
    assert_eq!(sock.tcp_keepalive_retries().unwrap(), 4);
    assert_eq!(
        sock.tcp_user_timeout().unwrap(),
        Some(Duration::from_secs(9))
    );
}

#[test]
fn io_errors_are_sorted_for_the_outage_rules() {
    use crate::ConnectFailure;
    use std::io::{Error, ErrorKind};
    for kind in [
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionReset,
        ErrorKind::HostUnreachable,
        ErrorKind::UnexpectedEof,
    ] {
        let failure = super::classify_io(&Error::from(kind), || unreachable!());
        assert!(
            matches!(failure, ConnectFailure::Refused),
            "{kind:?}: {failure:?}"
        );
    }
    let timed_out = super::classify_io(&Error::from(ErrorKind::TimedOut), || unreachable!());
    assert!(
        matches!(timed_out, ConnectFailure::TimedOut(_)),
        "{timed_out:?}"
    );
    let other = super::classify_io(&Error::from(ErrorKind::PermissionDenied), || {
        "denied".into()
    });
    assert!(
        matches!(other, ConnectFailure::Other(ref m) if m == "denied"),
        "{other:?}"
    );
}

/// `load_balance_hosts=random`: every order is a permutation, and orders vary.
#[test]
fn the_host_shuffle_permutes_and_varies() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let mut v: Vec<usize> = (0..4).collect();
        super::shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3], "{v:?}");
        seen.insert(v);
        std::thread::sleep(Duration::from_micros(50));
    }
    // 24 orders exist; a shuffle that always gives a few (or only rotations) is broken.
    assert!(seen.len() >= 12, "{} orders: {seen:?}", seen.len());
}

/// What the outage rules are told of an attempt that never reached PostgreSQL: refused at the
/// TCP connect (nothing listens), or accepted and closed before the server said anything (a
/// proxy with no server behind it), read from real sockets.
#[tokio::test]
async fn a_refused_connect_and_one_closed_after_accept_are_told_apart() {
    use crate::{ConnectFailure, SessionAttrs};
    let attempt = |port: u16| async move {
        let config: tokio_postgres::Config =
            format!("host=127.0.0.1 port={port} user=app dbname=app connect_timeout=5")
                .parse()
                .unwrap();
        let hosts = crate::hosts::Hosts::new(&config);
        match super::connect(&config, None, SessionAttrs::Any, &hosts).await {
            Ok(_) => panic!("nothing here speaks PostgreSQL"),
            Err((failure, _)) => failure,
        }
    };

    // A port nobody listens on: the one just freed.
    let free = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = attempt(free).await;
    assert!(matches!(refused, ConnectFailure::Refused), "{refused:?}");

    // A listener that accepts and closes at once, as HAProxy does with no server up; then one
    // that resets (SO_LINGER 0), as a proxy's `refuse` does.
    for reset in [false, true] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            if reset {
                socket2::SockRef::from(&socket)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(socket);
        });
        let closed = attempt(port).await;
        server.await.unwrap();
        assert!(
            matches!(closed, ConnectFailure::Closed),
            "reset {reset}: {closed:?}"
        );
        assert!(closed.to_string().contains("proxy"), "{closed}");
    }
}
