//! The proxy end to end: real sockets, an echo server upstream, each toxic.
//! Timing assertions use generous upper bounds so a busy machine does not fail them.

use chaos::proxy::toxics;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaos::proxy::{Proxies, Proxy, ProxyConfig, Stream, Toxic, ToxicKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn setup() -> (Proxies, Proxy) {
    let upstream = echo_server().await;
    let proxies = Proxies::new(7);
    let proxy = proxies
        .create(ProxyConfig::new(
            "echo",
            "127.0.0.1:0",
            upstream.to_string(),
        ))
        .unwrap();
    (proxies, proxy)
}

fn toxic(kind: ToxicKind, stream: Stream) -> Toxic {
    Toxic {
        name: format!("{}_{}", kind.type_name(), stream.as_str()),
        kind,
        stream,
        toxicity: 1.0,
    }
}

async fn connect(proxy: &Proxy) -> TcpStream {
    TcpStream::connect(proxy.listen_addr().unwrap())
        .await
        .unwrap()
}

async fn round_trip(sock: &mut TcpStream, msg: &[u8]) -> Duration {
    let started = Instant::now();
    sock.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    sock.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, msg);
    started.elapsed()
}

/// Reads until EOF or error; returns the bytes and whether it ended by a reset.
async fn read_to_end(
    sock: &mut TcpStream,
    within: Duration,
) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => panic!("no close within {within:?} (got {} bytes)", out.len()),
            Ok(Ok(0)) => return (out, None),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (out, Some(e.kind())),
        }
    }
}

async fn silent_for(sock: &mut TcpStream, d: Duration) -> bool {
    let mut buf = [0u8; 16];
    tokio::time::timeout(d, sock.read(&mut buf)).await.is_err()
}

#[tokio::test]
async fn passes_bytes_and_counts_them() {
    let (_p, proxy) = setup().await;
    let mut sock = connect(&proxy).await;
    round_trip(&mut sock, b"hello").await;
    let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    round_trip(&mut sock, &big).await;
    let s = proxy.stats();
    assert_eq!(s.accepted, 1);
    assert_eq!(s.live, 1);
    assert_eq!(s.bytes_upstream, 1_000_005);
    assert_eq!(s.bytes_downstream, 1_000_005);
    drop(sock);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(proxy.stats().live, 0);
}

#[tokio::test]
async fn latency_adds_delay_and_applies_to_live_connections() {
    let (_p, proxy) = setup().await;
    let mut sock = connect(&proxy).await;
    let base = round_trip(&mut sock, b"x").await;
    proxy
        .add_toxic(toxic(
            ToxicKind::Latency(toxics::Latency {
                latency: 100,
                jitter: 0,
            }),
            Stream::Downstream,
        ))
        .unwrap();
    let slow = round_trip(&mut sock, b"x").await;
    assert!(slow >= Duration::from_millis(100), "{slow:?}");
    assert!(
        slow < Duration::from_millis(100) + base + Duration::from_millis(400),
        "{slow:?}"
    );
    proxy.remove_toxic("latency_downstream").unwrap();
    assert!(round_trip(&mut sock, b"x").await < Duration::from_millis(100));
}

#[tokio::test]
async fn latency_does_not_cap_bulk_throughput() {
    let (_p, proxy) = setup().await;
    proxy
        .add_toxic(toxic(
            ToxicKind::Latency(toxics::Latency {
                latency: 10,
                jitter: 0,
            }),
            Stream::Upstream,
        ))
        .unwrap();
    let mut sock = connect(&proxy).await;
    let data = vec![7u8; 16 << 20];
    let took = round_trip(&mut sock, &data).await;
    // Per-chunk sleeping would take 16 MiB / 64 KiB * 10 ms = 2.56 s.
    assert!(
        took < Duration::from_millis(2000),
        "16 MiB through a 10 ms latency took {took:?}"
    );
}

#[tokio::test]
async fn timeout_drops_data_then_closes_and_removal_closes() {
    let (_p, proxy) = setup().await;
    let mut sock = connect(&proxy).await;
    round_trip(&mut sock, b"ok").await;
    proxy
        .add_toxic(toxic(
            ToxicKind::Timeout(toxics::Timeout { timeout: 200 }),
            Stream::Upstream,
        ))
        .unwrap();
    let started = Instant::now();
    sock.write_all(b"lost").await.unwrap();
    let (data, _) = read_to_end(&mut sock, Duration::from_secs(5)).await;
    assert!(data.is_empty(), "data was dropped");
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );

    proxy.remove_toxic("timeout_upstream").unwrap();
    proxy
        .add_toxic(toxic(
            ToxicKind::Timeout(toxics::Timeout { timeout: 0 }),
            Stream::Upstream,
        ))
        .unwrap();
    let mut sock = connect(&proxy).await;
    sock.write_all(b"lost").await.unwrap();
    assert!(
        silent_for(&mut sock, Duration::from_millis(300)).await,
        "timeout 0 never closes"
    );
    proxy.remove_toxic("timeout_upstream").unwrap();
    let (data, _) = read_to_end(&mut sock, Duration::from_secs(5)).await;
    assert!(data.is_empty(), "removing a timeout closes the connection");
}

#[tokio::test]
async fn reset_peer_resets() {
    let (_p, proxy) = setup().await;
    proxy
        .add_toxic(toxic(
            ToxicKind::ResetPeer(toxics::ResetPeer { timeout: 50 }),
            Stream::Upstream,
        ))
        .unwrap();
    let mut sock = connect(&proxy).await;
    sock.write_all(b"query").await.unwrap();
    let (data, err) = read_to_end(&mut sock, Duration::from_secs(5)).await;
    assert!(data.is_empty());
    assert_eq!(err, Some(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn limit_data_cuts_after_the_limit() {
    let (_p, proxy) = setup().await;
    proxy
        .add_toxic(toxic(
            ToxicKind::LimitData(toxics::LimitData { bytes: 10 }),
            Stream::Downstream,
        ))
        .unwrap();
    let mut sock = connect(&proxy).await;
    sock.write_all(b"0123456789abcdef").await.unwrap();
    let (data, _) = read_to_end(&mut sock, Duration::from_secs(5)).await;
    assert_eq!(data, b"0123456789");
}

#[tokio::test]
async fn slicer_keeps_every_byte() {
    let (_p, proxy) = setup().await;
    proxy
        .add_toxic(toxic(
            ToxicKind::Slicer(toxics::Slicer {
                average_size: 10,
                size_variation: 5,
                delay: 10,
            }),
            Stream::Downstream,
        ))
        .unwrap();
    let mut sock = connect(&proxy).await;
    let msg: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    round_trip(&mut sock, &msg).await;
}

#[tokio::test]
async fn bandwidth_limits_the_rate() {
    let (_p, proxy) = setup().await;
    proxy
        .add_toxic(toxic(
            ToxicKind::Bandwidth(toxics::Bandwidth { rate: 100 }),
            Stream::Downstream,
        ))
        .unwrap();
    let mut sock = connect(&proxy).await;
    let took = round_trip(&mut sock, &vec![1u8; 30_000]).await;
    assert!(
        took >= Duration::from_millis(250),
        "30 KB at 100 KB/s took {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn slow_close_delays_the_close() {
    let (_p, proxy) = setup().await;
    proxy
        .add_toxic(toxic(
            ToxicKind::SlowClose(toxics::SlowClose { delay: 300 }),
            Stream::Upstream,
        ))
        .unwrap();
    let sock = connect(&proxy).await;
    let (mut r, mut w) = sock.into_split();
    w.write_all(b"bye").await.unwrap();
    w.shutdown().await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"bye");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn disable_cuts_live_connections_and_refuses_new_ones() {
    let (_p, proxy) = setup().await;
    let addr = proxy.listen_addr().unwrap();
    let mut sock = connect(&proxy).await;
    round_trip(&mut sock, b"x").await;
    proxy.disable();
    let (_, _) = read_to_end(&mut sock, Duration::from_secs(5)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a disabled proxy does not listen"
    );
    proxy.enable().unwrap();
    assert_eq!(proxy.listen_addr(), Some(addr), "same port again");
    let mut sock = connect(&proxy).await;
    round_trip(&mut sock, b"back").await;
}

#[tokio::test]
async fn refuse_resets_new_connections_only() {
    let (_p, proxy) = setup().await;
    let mut live = connect(&proxy).await;
    round_trip(&mut live, b"x").await;
    proxy
        .add_toxic(toxic(ToxicKind::Refuse(toxics::Refuse), Stream::Downstream))
        .unwrap();
    let mut sock = connect(&proxy).await;
    let _ = sock.write_all(b"hi").await;
    let (data, _) = read_to_end(&mut sock, Duration::from_secs(5)).await;
    assert!(data.is_empty());
    round_trip(&mut live, b"still fine").await;
    assert_eq!(proxy.stats().refused, 1);
}

#[tokio::test]
async fn peer_lost_strands_live_connections_and_passes_new_ones() {
    let (_p, proxy) = setup().await;
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"x").await;
    proxy
        .add_toxic(toxic(
            ToxicKind::PeerLost(toxics::PeerLost),
            Stream::Downstream,
        ))
        .unwrap();
    old.write_all(b"anyone?").await.unwrap();
    assert!(
        silent_for(&mut old, Duration::from_millis(300)).await,
        "a lost peer never answers"
    );
    let mut new = connect(&proxy).await;
    round_trip(&mut new, b"new ones pass").await;
    proxy.remove_toxic("peer_lost_downstream").unwrap();
    // The peer is back without the connection's state: the stranded connection is reset,
    // so neither end keeps it open (the server side would otherwise leak).
    let mut b = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), old.read(&mut b))
        .await
        .expect("the stranded connection is closed when the toxic goes");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    round_trip(&mut new, b"new ones still pass").await;
}

#[tokio::test]
async fn handshake_hang_leaves_new_connections_unanswered_even_after_removal() {
    let (_p, proxy) = setup().await;
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"x").await;
    proxy
        .add_toxic(toxic(
            ToxicKind::HandshakeHang(toxics::HandshakeHang),
            Stream::Downstream,
        ))
        .unwrap();
    let mut stuck = connect(&proxy).await;
    stuck.write_all(b"startup packet").await.unwrap();
    assert!(
        silent_for(&mut stuck, Duration::from_millis(300)).await,
        "never answered"
    );
    round_trip(&mut old, b"live ones pass").await;
    proxy.remove_toxic("handshake_hang_downstream").unwrap();
    assert!(
        silent_for(&mut stuck, Duration::from_millis(200)).await,
        "a hung handshake stays hung: the server never answers it"
    );
    let mut new = connect(&proxy).await;
    round_trip(&mut new, b"new ones pass again").await;
    // The client giving up closes it on the proxy too.
    drop(stuck);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.stats().live > 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.stats().live, 2, "old and new remain");
}

#[tokio::test]
async fn hold_delivers_everything_when_removed() {
    let (_p, proxy) = setup().await;
    let mut sock = connect(&proxy).await;
    proxy
        .add_toxic(toxic(ToxicKind::Hold(toxics::Hold), Stream::Upstream))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    sock.write_all(b"held data").await.unwrap();
    assert!(silent_for(&mut sock, Duration::from_millis(200)).await);
    proxy.remove_toxic("hold_upstream").unwrap();
    let mut buf = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), sock.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"held data");
}

#[tokio::test]
async fn toxicity_zero_never_applies() {
    let (_p, proxy) = setup().await;
    let mut t = toxic(
        ToxicKind::Latency(toxics::Latency {
            latency: 1000,
            jitter: 0,
        }),
        Stream::Downstream,
    );
    t.toxicity = 0.0;
    proxy.add_toxic(t).unwrap();
    let mut sock = connect(&proxy).await;
    assert!(round_trip(&mut sock, b"x").await < Duration::from_millis(900));
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxies = Proxies::new(1);
    let proxy = proxies
        .create(ProxyConfig::new(
            "dead",
            "127.0.0.1:0",
            format!("127.0.0.1:{port}"),
        ))
        .unwrap();
    let mut sock = connect(&proxy).await;
    let (data, _) = read_to_end(&mut sock, Duration::from_secs(5)).await;
    assert!(data.is_empty());
}

#[tokio::test]
async fn many_connections_at_once() {
    let (_p, proxy) = setup().await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let addr = proxy.listen_addr().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            round_trip(&mut s, &i.to_be_bytes()).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(proxy.stats().accepted, 200);
}
