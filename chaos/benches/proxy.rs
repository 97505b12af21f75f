//! `cargo bench -p chaos`: the proxy against a direct connection, in the same run.
//!
//! - `rtt`: one 64-byte round trip to an echo server: direct, through the proxy with no
//!   toxics, and with a 0 ms latency toxic on each direction;
//! - `bulk`: 16 MiB to a sink on 1 stream and 2 MiB on each of 8 streams, direct vs proxied,
//!   and 16 MiB through a 10 ms latency toxic (it must not be capped at chunk/latency);
//! - after the criterion groups: CPU seconds per GiB proxied and memory per idle connection
//!   for 1,000 connections, printed as plain figures.

use chaos::proxy::toxics;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaos::proxy::{Proxies, Proxy, ProxyConfig, Stream, Toxic, ToxicKind};
use criterion::{Criterion, Throughput, criterion_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

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
    for (name, addr) in [
        ("1_stream/direct", direct),
        ("1_stream/proxy", plain),
        ("1_stream/proxy_latency_0ms", zero),
        ("1_stream/proxy_latency_10ms", ten),
    ] {
        let mut sock = rt.block_on(TcpStream::connect(addr)).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(send(&mut sock, &chunk, ONE)))
        });
    }
    for (name, addr) in [("8_streams/direct", direct), ("8_streams/proxy", plain)] {
        let socks: Vec<_> = (0..8)
            .map(|_| rt.block_on(TcpStream::connect(addr)).unwrap())
            .collect();
        let mut socks: Vec<Option<TcpStream>> = socks.into_iter().map(Some).collect();
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
        for (name, addr) in [("direct", sink), ("proxy", proxy.listen_addr().unwrap())] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let (cpu, t) = (cpu_seconds(), Instant::now());
            send(&mut s, &chunk, GIB).await;
            println!("figure cpu_per_gib/{name}: {:.2} CPU s, {:.2} GB/s", cpu_seconds() - cpu, GIB as f64 / t.elapsed().as_secs_f64() / 1e9);
        }

        let echo = echo_server().await;
        // Round-trip percentiles: 20,000 64-byte round trips each, direct then proxied.
        let rtt_proxy = proxy_to(&proxies, "rtt", echo);
        for (name, addr) in [("direct", echo), ("proxy", rtt_proxy.listen_addr().unwrap())] {
            let mut s = TcpStream::connect(addr).await.unwrap();
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

criterion_group!(benches, rtt, bulk);

fn main() {
    benches();
    figures();
    Criterion::default().configure_from_args().final_summary();
}
