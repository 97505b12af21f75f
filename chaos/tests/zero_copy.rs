//! The proxy's two data paths on a live link: `splice(2)` (zero-copy) while a direction has no
//! toxic, the toxic chain while it has one. Toxics are added and removed at random while data
//! flows both ways through an echo server, and every byte must come back once, in order.
//! Real sockets, the real proxy; proptest picks the toxics, their timing and the chunk sizes,
//! and whether the no-toxic path splices or copies (as it does where splice is off).

use std::net::SocketAddr;
use std::time::Duration;

use chaos::proxy::link::set_zero_copy;
use chaos::proxy::{Proxies, Proxy, ProxyConfig, Stream, Toxic, ToxicKind, toxics};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Zero-copy forwarding is a process-wide setting read when a link starts: the tests that set
/// it or depend on it take turns.
static SETTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// The byte at `i` of the stream: not periodic over any chunk size, so a lost, repeated or
/// reordered chunk shows.
fn byte_at(i: u64) -> u8 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 7);
    (x >> 56) as u8
}

/// A toxic the property switches on and off: one with a stage on the data path.
#[derive(Debug, Clone)]
enum Kind {
    Latency { ms: u64, jitter: u64 },
    Slicer { average: u64, variation: u64 },
    Bandwidth,
    Hold,
}

impl Kind {
    fn toxic(&self, stream: Stream, toxicity: f32) -> Toxic {
        let kind = match self {
            Kind::Latency { ms, jitter } => ToxicKind::Latency(toxics::Latency {
                latency: *ms,
                jitter: *jitter,
            }),
            Kind::Slicer { average, variation } => ToxicKind::Slicer(toxics::Slicer {
                average_size: *average,
                size_variation: *variation,
                delay: 0,
            }),
            // Fast enough not to slow the case down; it still takes the chain's path.
            Kind::Bandwidth => ToxicKind::Bandwidth(toxics::Bandwidth { rate: 200_000 }),
            Kind::Hold => ToxicKind::Hold(toxics::Hold),
        };
        Toxic {
            name: format!("{}_{}", kind.type_name(), stream.as_str()),
            kind,
            stream,
            toxicity,
        }
    }
}

/// One step of a case: wait, then add (or replace) or remove a toxic on one direction.
#[derive(Debug, Clone)]
struct Step {
    after_ms: u64,
    stream: Stream,
    add: Option<(Kind, f32)>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0u64..3, 0u64..2).prop_map(|(ms, jitter)| Kind::Latency { ms, jitter }),
        (1u64..512, 0u64..64).prop_map(|(average, variation)| Kind::Slicer { average, variation }),
        Just(Kind::Bandwidth),
        Just(Kind::Hold),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u64..15,
        prop_oneof![Just(Stream::Upstream), Just(Stream::Downstream)],
        proptest::option::weighted(0.6, (kind(), prop_oneof![Just(1.0f32), Just(0.5f32)])),
    )
        .prop_map(|(after_ms, stream, add)| Step {
            after_ms,
            stream,
            add,
        })
}

fn apply(proxy: &Proxy, step: &Step) {
    let name = |kind: &Kind| kind.toxic(step.stream, 1.0).name;
    // One toxic per direction at a time: remove whatever is there first.
    for toxic in proxy.toxics() {
        if toxic.stream == step.stream {
            proxy.remove_toxic(&toxic.name).unwrap();
        }
    }
    if let Some((kind, toxicity)) = &step.add {
        let toxic = kind.toxic(step.stream, *toxicity);
        assert_eq!(toxic.name, name(kind));
        proxy.add_toxic(toxic).unwrap();
    }
}

/// Sends `total` bytes in `chunks` sizes (cycled) through the proxy while the steps run,
/// reads the echo, and returns what came back.
async fn case(proxy: &Proxy, total: u64, chunks: &[usize], steps: &[Step]) -> Vec<u8> {
    let sock = TcpStream::connect(proxy.listen_addr().unwrap())
        .await
        .unwrap();
    let (mut r, mut w) = sock.into_split();
    let sizes = chunks.to_vec();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        for size in sizes.iter().cycle() {
            if sent >= total {
                break;
            }
            let n = (*size as u64).min(total - sent);
            let chunk: Vec<u8> = (sent..sent + n).map(byte_at).collect();
            w.write_all(&chunk).await.unwrap();
            sent += n;
            // Let the other direction and the toxic changes interleave with the writes.
            tokio::task::yield_now().await;
        }
        w
    });
    let reader = tokio::spawn(async move {
        let mut back = Vec::with_capacity(total as usize);
        let mut buf = vec![0u8; 64 * 1024];
        // A stall (bytes held somewhere and never sent) ends the read: the check then says
        // how many came back.
        while (back.len() as u64) < total {
            match tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => back.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        back
    });
    for step in steps {
        tokio::time::sleep(Duration::from_millis(step.after_ms)).await;
        apply(proxy, step);
    }
    // The last toxics go (a hold releases what it kept), so the stream can finish.
    proxy.remove_all_toxics();
    let back = reader.await.unwrap();
    writer.abort();
    back
}

proptest! {
    // A failing case may take a stall's 10 s: shrinking is bounded in time.
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_time: 60_000, ..ProptestConfig::default() })]

    /// Every byte comes back once and in order, whatever toxics come and go on a live link.
    #[test]
    fn toxics_switched_on_a_live_link_lose_duplicate_and_reorder_nothing(
        total in 64u64 * 1024..3 * 1024 * 1024,
        chunks in proptest::collection::vec(1usize..96 * 1024, 1..6),
        steps in proptest::collection::vec(step(), 0..10),
        zero_copy in any::<bool>(),
    ) {
        let _turn = SETTING.lock().unwrap_or_else(|e| e.into_inner());
        set_zero_copy(zero_copy);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (back, stats) = rt.block_on(async {
            let proxies = Proxies::new(11);
            let proxy = proxies
                .create(ProxyConfig::new("live", "127.0.0.1:0", echo_server().await.to_string()))
                .unwrap();
            let back = case(&proxy, total, &chunks, &steps).await;
            (back, proxy.stats())
        });
        set_zero_copy(true);
        prop_assert_eq!(back.len() as u64, total, "bytes echoed");
        if let Some(i) = (0..total).find(|i| back[*i as usize] != byte_at(*i)) {
            prop_assert!(false, "byte {} of {} differs: the stream was reordered, duplicated or lost", i, total);
        }
        prop_assert_eq!(stats.bytes_upstream, total);
        prop_assert_eq!(stats.bytes_downstream, total);
        prop_assert!(stats.bytes_zero_copy <= 2 * total);
        if !zero_copy {
            prop_assert_eq!(stats.bytes_zero_copy, 0, "copying: nothing spliced");
        }
    }
}

/// With no toxic, a bulk transfer is spliced in both directions (on Linux) and small messages
/// are copied; with a toxic on one direction, that direction's bytes are not spliced, and once
/// it is removed they are again.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard is the test's turn at the process-wide setting (the other test blocks on it in
// its own thread, never in this runtime).
#[allow(clippy::await_holding_lock)]
async fn a_direction_without_toxics_is_spliced_and_one_with_a_toxic_is_not() {
    let _turn = SETTING.lock().unwrap_or_else(|e| e.into_inner());
    if !chaos::proxy::link::zero_copy_enabled() {
        eprintln!("CHAOS_ZERO_COPY=off: zero-copy forwarding is turned off; nothing to check");
        return;
    }
    let proxies = Proxies::new(12);
    let proxy = proxies
        .create(ProxyConfig::new(
            "spliced",
            "127.0.0.1:0",
            echo_server().await.to_string(),
        ))
        .unwrap();
    let mut sock = TcpStream::connect(proxy.listen_addr().unwrap())
        .await
        .unwrap();
    // One round trip of `n` bytes; returns the bytes spliced meanwhile (both directions).
    let mut round = async |n: usize| {
        let before = proxy.stats().bytes_zero_copy;
        let msg: Vec<u8> = (0..n as u64).map(byte_at).collect();
        sock.write_all(&msg).await.unwrap();
        let mut back = vec![0u8; n];
        sock.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
        proxy.stats().bytes_zero_copy - before
    };
    // Small messages are copied: a pipe costs them more than their copy.
    for _ in 0..20 {
        assert_eq!(round(200).await, 0, "a small message is copied");
    }
    // Bulk: after the read that shows it (a full 64 KiB buffer), the bytes are spliced. How
    // much is depends on how far the proxy keeps up, so the check is that most are.
    const BULK: u64 = 4 << 20;
    let spliced = round(BULK as usize).await;
    eprintln!("bulk, no toxic: {spliced} of {} bytes spliced", 2 * BULK);
    assert!(
        spliced > BULK,
        "most bytes of both directions spliced: {spliced}"
    );
    proxy
        .add_toxic(Kind::Latency { ms: 0, jitter: 0 }.toxic(Stream::Downstream, 1.0))
        .unwrap();
    let spliced = round(BULK as usize).await;
    eprintln!("bulk, downstream toxic: {spliced} of {BULK} bytes spliced");
    assert!(
        spliced <= BULK && spliced > BULK / 2,
        "only the upstream, without a toxic, spliced: {spliced}"
    );
    proxy.remove_all_toxics();
    let spliced = round(BULK as usize).await;
    assert!(
        spliced > BULK,
        "both spliced again once the toxic is gone: {spliced}"
    );
}
