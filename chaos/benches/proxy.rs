//! `cargo bench -p chaos`: the proxy against a direct connection, in the same run.
//!
//! - `rtt`: one 64-byte round trip to an echo server: direct, through the proxy with no
//!   toxics, and with a 0 ms latency toxic on each direction;
//! - `bulk`: 16 MiB to a sink on 1 stream and 2 MiB on each of 8 streams, direct vs proxied,
//!   and 16 MiB through a 10 ms latency toxic (it must not be capped at chunk/latency);
//! - after the criterion groups: CPU seconds per GiB proxied and memory per idle connection
//!   for 1,000 connections, printed as plain figures;
//! - `pgbench -S` (a real client) at `c` = 1, 8 and 64 on a throwaway PostgreSQL: direct,
//!   through the proxy with no toxic (zero-copy, and with `splice` turned off), with a 0 ms
//!   latency toxic on each direction, through an eBPF sockmap that redirects in the kernel
//!   (`sockmap`, root only), and through a minimal tokio copy loop (the floor), each
//!   run `PGBENCH_SECONDS` (default 3) in turn for `PGBENCH_ROUNDS` rounds (default 3), as
//!   medians of per-round ratios. Skipped, with the reason, without `pgbench` or a server;
//!   `PGBENCH=off` skips it. `PGBENCH_CLIENTS=1,8` picks the values of `c`, and
//!   `PGBENCH_CONTENDERS=proxy,floor` the contenders (each is read against the first and the
//!   last, as the full list is against direct and the floor).

use chaos::proxy::link::set_zero_copy;
use chaos::proxy::toxics;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaos::proxy::{Proxies, Proxy, ProxyConfig, Stream, Toxic, ToxicKind};
use criterion::{Criterion, Throughput, criterion_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// A connection to `addr` whose proxied link (if any) forwards with zero-copy `on` or not:
/// the link reads the setting when it starts, so one exchange (`to_sink`: a 1-byte transfer
/// to the sink, else a 64-byte echo) is made before the setting goes back on.
async fn connect_zero_copy(addr: SocketAddr, on: bool, to_sink: bool) -> TcpStream {
    set_zero_copy(on);
    let mut s = TcpStream::connect(addr).await.unwrap();
    if to_sink {
        send(&mut s, &[1], 1).await;
    } else {
        s.write_all(&[7u8; 64]).await.unwrap();
        s.read_exact(&mut [0u8; 64]).await.unwrap();
    }
    set_zero_copy(true);
    s
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Reads a u64 length, then that many bytes, then answers one byte.
async fn sink_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let Ok(mut left) = s.read_u64().await else {
                        return;
                    };
                    while left > 0 {
                        match s.read(&mut buf[..left.min(256 * 1024) as usize]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left -= n as u64,
                        }
                    }
                    if s.write_all(b"k").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn proxy_to(proxies: &Proxies, name: &str, upstream: SocketAddr) -> Proxy {
    proxies
        .create(ProxyConfig::new(name, "127.0.0.1:0", upstream.to_string()))
        .unwrap()
}

fn latency(ms: u64, stream: Stream) -> Toxic {
    Toxic {
        name: format!("latency_{}", stream.as_str()),
        kind: ToxicKind::Latency(toxics::Latency {
            latency: ms,
            jitter: 0,
        }),
        stream,
        toxicity: 1.0,
    }
}

async fn send(s: &mut TcpStream, chunk: &[u8], total: u64) {
    s.write_u64(total).await.unwrap();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).await.unwrap();
        left -= n as u64;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await.unwrap();
}

fn rtt(c: &mut Criterion) {
    let rt = runtime();
    let proxies = Proxies::new(1);
    let (direct, plain, zero) = rt.block_on(async {
        let echo = echo_server().await;
        let plain = proxy_to(&proxies, "plain", echo);
        let zero = proxy_to(&proxies, "zero", echo);
        zero.add_toxic(latency(0, Stream::Upstream)).unwrap();
        zero.add_toxic(latency(0, Stream::Downstream)).unwrap();
        (
            echo,
            plain.listen_addr().unwrap(),
            zero.listen_addr().unwrap(),
        )
    });
    let mut group = c.benchmark_group("rtt_64B");
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    for (name, addr) in [
        ("direct", direct),
        ("proxy", plain),
        ("proxy_latency_0ms", zero),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut sock = TcpStream::connect(addr).await.unwrap();
                sock.set_nodelay(true).unwrap();
                let msg = [7u8; 64];
                let mut back = [0u8; 64];
                let started = Instant::now();
                for _ in 0..iters {
                    sock.write_all(&msg).await.unwrap();
                    sock.read_exact(&mut back).await.unwrap();
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

fn bulk(c: &mut Criterion) {
    let rt = runtime();
    let proxies = Proxies::new(2);
    let (direct, plain, zero, ten) = rt.block_on(async {
        let sink = sink_server().await;
        let plain = proxy_to(&proxies, "bulk_plain", sink);
        let zero = proxy_to(&proxies, "bulk_zero", sink);
        zero.add_toxic(latency(0, Stream::Upstream)).unwrap();
        let ten = proxy_to(&proxies, "bulk_ten", sink);
        ten.add_toxic(latency(10, Stream::Upstream)).unwrap();
        (
            sink,
            plain.listen_addr().unwrap(),
            zero.listen_addr().unwrap(),
            ten.listen_addr().unwrap(),
        )
    });
    let chunk = vec![1u8; 256 * 1024];
    let mut group = c.benchmark_group("bulk");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    const ONE: u64 = 16 << 20;
    group.throughput(Throughput::Bytes(ONE));
    // `proxy_copying`: the proxy with splice turned off for its connection (the path every
    // direction with a toxic takes, and the only one before zero-copy forwarding).
    for (name, addr, zero_copy) in [
        ("1_stream/direct", direct, true),
        ("1_stream/proxy", plain, true),
        ("1_stream/proxy_copying", plain, false),
        ("1_stream/proxy_latency_0ms", zero, true),
        ("1_stream/proxy_latency_10ms", ten, true),
    ] {
        let mut sock = rt.block_on(connect_zero_copy(addr, zero_copy, true));
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(send(&mut sock, &chunk, ONE)))
        });
    }
    for (name, addr, zero_copy) in [
        ("8_streams/direct", direct, true),
        ("8_streams/proxy", plain, true),
        ("8_streams/proxy_copying", plain, false),
    ] {
        let mut socks: Vec<Option<TcpStream>> = (0..8)
            .map(|_| Some(rt.block_on(connect_zero_copy(addr, zero_copy, true))))
            .collect();
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = socks
                        .iter_mut()
                        .map(|s| {
                            let mut sock = s.take().unwrap();
                            let chunk = chunk.clone();
                            tokio::spawn(async move {
                                send(&mut sock, &chunk, ONE / 8).await;
                                sock
                            })
                        })
                        .collect();
                    for (slot, t) in socks.iter_mut().zip(tasks) {
                        *slot = Some(t.await.unwrap());
                    }
                })
            })
        });
    }
    group.finish();
}

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // Safety: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU per GiB (the whole process: client, proxy and sink) and memory per idle connection.
fn figures() {
    let rt = runtime();
    let proxies = Proxies::new(3);
    rt.block_on(async {
        let sink = sink_server().await;
        let proxy = proxy_to(&proxies, "cpu", sink);
        let chunk = vec![1u8; 256 * 1024];
        const GIB: u64 = 1 << 30;
        let proxied = proxy.listen_addr().unwrap();
        for (name, addr, zero_copy) in [
            ("direct", sink, true),
            ("proxy", proxied, true),
            ("proxy_copying", proxied, false),
        ] {
            let mut s = connect_zero_copy(addr, zero_copy, true).await;
            let (cpu, t) = (cpu_seconds(), Instant::now());
            send(&mut s, &chunk, GIB).await;
            println!("figure cpu_per_gib/{name}: {:.2} CPU s, {:.2} GB/s", cpu_seconds() - cpu, GIB as f64 / t.elapsed().as_secs_f64() / 1e9);
        }

        let echo = echo_server().await;
        // Round-trip percentiles: 20,000 64-byte round trips each, direct then proxied.
        let rtt_proxy = proxy_to(&proxies, "rtt", echo);
        let proxied = rtt_proxy.listen_addr().unwrap();
        for (name, addr, zero_copy) in [
            ("direct", echo, true),
            ("proxy", proxied, true),
            ("proxy_copying", proxied, false),
        ] {
            let mut s = connect_zero_copy(addr, zero_copy, false).await;
            s.set_nodelay(true).unwrap();
            let mut lat = Vec::with_capacity(20_000);
            let (msg, mut back) = ([7u8; 64], [0u8; 64]);
            for _ in 0..20_000 {
                let t = Instant::now();
                s.write_all(&msg).await.unwrap();
                s.read_exact(&mut back).await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat.sort_by(f64::total_cmp);
            println!("figure rtt/{name}: p50 {:.1} us, p99 {:.1} us", lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
        }
        let idle = proxy_to(&proxies, "idle", echo);
        let addr = idle.listen_addr().unwrap();
        let mut warm = Vec::new();
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            warm.push(s);
        }
        drop(warm);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kib();
        let mut conns = Vec::new();
        for _ in 0..1000 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            conns.push(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss_kib();
        println!(
            "figure idle_connection_memory: {:.1} KiB per proxied connection (1000 live, {} errors; includes the echo server's and client's sockets)",
            (after.saturating_sub(before)) as f64 / 1000.0,
            1000 - idle.stats().live.min(1000) as usize
        );
    });
}

/// The floor: a minimal tokio copy loop from `listen` to `upstream`, what any userspace proxy
/// pays at least.
async fn copy_loop(upstream: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

/// Kernel-side redirection (an eBPF sockmap, root only): a proxy that pairs its two sockets in
/// a sockhash and copies in user space only what the kernel passes to it (nothing once paired)
/// and the close. An error, with the reason, where the program cannot be loaded.
#[cfg(target_os = "linux")]
async fn sockmap_loop(upstream: SocketAddr) -> Result<SocketAddr, String> {
    let map = std::sync::Arc::new(
        chaos::proxy::sockmap::SockMap::new().map_err(|e| format!("no sockmap: {e}"))?,
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            let map = map.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let Err(e) = map.pair(&client, &server) {
                    eprintln!("sockmap: pair failed, copying: {e}");
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    Ok(addr)
}

/// The `tps` (without the initial connection time) of one `pgbench -S` run on `port`.
fn pgbench(port: u16, clients: usize, seconds: u64) -> Result<f64, String> {
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-S",
            "-M",
            "prepared",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg(format!("-p{port}"))
        .arg(format!("-c{clients}"))
        .arg(format!("-j{}", clients.min(2)))
        .arg(format!("-T{seconds}"))
        .arg("postgres")
        .output()
        .map_err(|e| format!("pgbench could not start: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
        .ok_or_else(|| {
            format!(
                "pgbench gave no tps (exit {:?}): {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// `pgbench -S` direct, through the proxy (zero-copy and copying), with a 0 ms latency toxic,
/// and through the floor, interleaved.
fn pgbench_figures() {
    if std::env::var("PGBENCH").is_ok_and(|v| v == "off") {
        return;
    }
    let db = match chaos::postgres::Database::from_env() {
        Ok(db) => db,
        Err(e) => return println!("figure pgbench: skipped: no server ({e})"),
    };
    let Some(cluster) = db.cluster() else {
        return println!(
            "figure pgbench: skipped: DATABASE_URL is set; it needs the throwaway cluster"
        );
    };
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (seconds, rounds) = (env("PGBENCH_SECONDS", 3), env("PGBENCH_ROUNDS", 3).max(1));
    let init = std::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-U", "postgres"])
        .arg(format!("-p{}", cluster.port()))
        .arg("postgres")
        .output();
    match init {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return println!(
                "figure pgbench: skipped: pgbench -i failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Err(e) => return println!("figure pgbench: skipped: no pgbench ({e})"),
    }
    let rt = runtime();
    let proxies = Proxies::new(4);
    let server = cluster.addr();
    let (plain, zero, floor, sockmap) = rt.block_on(async {
        let plain = proxy_to(&proxies, "pgbench", server);
        let zero = proxy_to(&proxies, "pgbench_latency_0ms", server);
        zero.add_toxic(latency(0, Stream::Upstream)).unwrap();
        zero.add_toxic(latency(0, Stream::Downstream)).unwrap();
        let floor = copy_loop(server).await;
        #[cfg(target_os = "linux")]
        let sockmap = sockmap_loop(server).await;
        #[cfg(not(target_os = "linux"))]
        let sockmap: Result<SocketAddr, String> = Err("Linux only".into());
        (plain, zero, floor, sockmap)
    });
    let port = |p: &Proxy| p.listen_addr().unwrap().port();
    // (name, port, zero-copy on for links opened during its runs)
    let contenders: Vec<(&str, u16, bool)> = vec![
        ("direct", cluster.port(), true),
        ("proxy", port(&plain), true),
        ("proxy_copying", port(&plain), false),
        ("proxy_latency_0ms", port(&zero), true),
        ("floor", floor.port(), true),
    ];
    let contenders = match &sockmap {
        Ok(addr) => {
            let mut with = contenders;
            with.insert(with.len() - 1, ("sockmap", addr.port(), true));
            with
        }
        Err(e) => {
            println!("figure pgbench/sockmap: skipped: {e}");
            contenders
        }
    };
    let list = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let contenders: Vec<(&str, u16, bool)> = match list("PGBENCH_CONTENDERS") {
        Some(names) => names
            .split(',')
            .filter_map(|n| contenders.iter().find(|c| c.0 == n.trim()).copied())
            .collect(),
        None => contenders,
    };
    if contenders.len() < 2 {
        return println!(
            "figure pgbench: skipped: PGBENCH_CONTENDERS names fewer than two known contenders"
        );
    }
    let clients: Vec<usize> = list("PGBENCH_CLIENTS")
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64]);
    let _guard = rt.enter();
    for clients in clients {
        let mut tps: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
        for round in 0..rounds as usize {
            for k in 0..contenders.len() {
                let i = (round + k) % contenders.len();
                let (name, port, zero_copy) = contenders[i];
                set_zero_copy(zero_copy);
                match pgbench(port, clients, seconds) {
                    Ok(t) => tps[i].push(t),
                    Err(e) => return println!("figure pgbench: {name}, c = {clients}: {e}"),
                }
            }
        }
        set_zero_copy(true);
        let ratio =
            |a: usize, b: usize| median(tps[a].iter().zip(&tps[b]).map(|(x, y)| x / y).collect());
        let (first, last) = (contenders[0].0, contenders[contenders.len() - 1].0);
        for (i, (name, ..)) in contenders.iter().enumerate() {
            let wins = tps[i]
                .iter()
                .zip(&tps[contenders.len() - 1])
                .filter(|(x, y)| x > y)
                .count();
            println!(
                "figure pgbench/c{clients}/{name}: {:.0} tps (median of {rounds}); {:.3}x of {first}, {:.3}x of {last} (faster in {wins} of {rounds} rounds)",
                median(tps[i].clone()),
                ratio(i, 0),
                ratio(i, contenders.len() - 1)
            );
        }
    }
}

criterion_group!(benches, rtt, bulk);

fn main() {
    benches();
    figures();
    pgbench_figures();
    Criterion::default().configure_from_args().final_summary();
}
