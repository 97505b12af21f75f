//! Random interleavings, real level: the pool through the real proxy to a throwaway
//! PostgreSQL, a few cases (`PROPTEST_CASES` raises them), each checked against
//! `pg_stat_activity` for leaks. Real time, so bounds carry a margin.

use chaos::proxy::toxics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chaos::proxy::{Proxies, ProxyConfig, Stream, Toxic, ToxicKind};
use pool::{Pool, PoolConfig, PoolError, QueryError};
use proptest::prelude::*;

const MAX_SIZE: usize = 3;
const ACQUIRE: Duration = Duration::from_secs(1);
/// Real time on a busy 2-core machine: generous.
const MARGIN: Duration = Duration::from_millis(700);

#[derive(Clone, Debug)]
enum Step {
    Acquire,
    Release(u8),
    Query(u8),
    Fault(u8),
    Heal,
    Sleep(u16),
    /// `n` concurrent statements on the shared path (`Pool::query`), all cut after `cut` ms
    /// when it is not 0.
    Shared {
        n: u8,
        cut: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => Just(Step::Acquire),
        4 => any::<u8>().prop_map(Step::Release),
        3 => any::<u8>().prop_map(Step::Query),
        2 => (0u8..6).prop_map(Step::Fault),
        2 => Just(Step::Heal),
        2 => (10u16..400).prop_map(Step::Sleep),
        3 => (1u8..9, prop_oneof![Just(0u16), 1u16..80]).prop_map(|(n, cut)| Step::Shared { n, cut }),
    ]
}

fn fault(n: u8) -> Option<Toxic> {
    let (kind, stream) = match n {
        1 => (ToxicKind::Refuse(toxics::Refuse), Stream::Downstream),
        2 => (
            ToxicKind::Timeout(toxics::Timeout { timeout: 0 }),
            Stream::Downstream,
        ),
        3 => (ToxicKind::PeerLost(toxics::PeerLost), Stream::Downstream),
        4 => (
            ToxicKind::Latency(toxics::Latency {
                latency: 20,
                jitter: 10,
            }),
            Stream::Downstream,
        ),
        5 => (
            ToxicKind::ResetPeer(toxics::ResetPeer { timeout: 0 }),
            Stream::Upstream,
        ),
        _ => return None, // 0: the proxy goes down
    };
    Some(Toxic {
        name: format!("t_{}", kind.type_name()),
        kind,
        stream,
        toxicity: 1.0,
    })
}

static CASE: AtomicU64 = AtomicU64::new(0);

async fn run(steps: Vec<Step>) -> Result<(), String> {
    let db = chaos::postgres::shared().map_err(|e| e.to_string())?;
    let case = CASE.fetch_add(1, Ordering::Relaxed);
    let app = format!("prop-real-{}-{case}", std::process::id());
    let target = chaos::fault::Env::host_port(&db.url()).unwrap();
    let proxies = Proxies::new(case);
    let proxy = proxies
        .create(ProxyConfig::new("db", "127.0.0.1:0", target.clone()))
        .map_err(|e| e.to_string())?;
    let url = db
        .url()
        .replace(&target, &proxy.listen_addr().unwrap().to_string());
    let config = PoolConfig::from_url(&url)
        .map_err(|e| e.to_string())?
        .application_name(app.clone())
        .min_size(1)
        .max_size(MAX_SIZE)
        .acquire_timeout(ACQUIRE)
        .query_timeout(ACQUIRE)
        .connect_timeout(Duration::from_millis(500))
        .validation_timeout(Duration::from_millis(250))
        .probe_timeout(Duration::from_millis(250))
        .reconnect_backoff_max(Duration::from_millis(500));
    let pool = Pool::connect(config).await.map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let at = format!("after step {n} ({step:?})");
        match step {
            Step::Acquire => {
                let t = Instant::now();
                let r = pool.acquire().await;
                if t.elapsed() > ACQUIRE + MARGIN {
                    return Err(format!("{at}: acquire took {:?}", t.elapsed()));
                }
                match r {
                    Ok(c) => held.push(c),
                    Err(PoolError::Closed) => return Err(format!("{at}: closed without shutdown")),
                    Err(_) => {}
                }
            }
            Step::Release(i) if !held.is_empty() => drop(held.remove(*i as usize % held.len())),
            Step::Query(i) if !held.is_empty() => {
                let c = held.remove(*i as usize % held.len());
                match tokio::time::timeout(Duration::from_millis(500), c.query_one("SELECT 1", &[]))
                    .await
                {
                    Ok(Ok(_)) => held.push(c),
                    _ => pool::PooledConnection::discard(c),
                }
            }
            Step::Fault(k) => match fault(*k) {
                Some(t) => {
                    let _ = proxy.add_toxic(t);
                }
                None => proxy.disable(),
            },
            Step::Heal => {
                proxy.remove_all_toxics();
                proxy.enable().map_err(|e| format!("{at}: {e}"))?;
            }
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(*ms as u64)).await,
            Step::Shared { n, cut } => {
                let t = Instant::now();
                let calls = (0..*n).map(|_| async {
                    let call = pool.query_one("SELECT pg_sleep(0.02)", &[]);
                    if *cut == 0 {
                        Some(call.await)
                    } else {
                        tokio::time::timeout(Duration::from_millis(*cut as u64), call)
                            .await
                            .ok()
                    }
                });
                for r in futures_util::future::join_all(calls)
                    .await
                    .into_iter()
                    .flatten()
                {
                    if let Err(QueryError::Pool(PoolError::Closed)) = r {
                        return Err(format!("{at}: closed without shutdown"));
                    }
                }
                // One deadline per call: query_timeout (= ACQUIRE) covers the session and
                // the statement.
                if t.elapsed() > ACQUIRE + MARGIN {
                    return Err(format!("{at}: shared calls took {:?}", t.elapsed()));
                }
            }
            _ => {}
        }
        let s = pool.statistics();
        if s.idle_connections + s.active_connections != s.total_connections
            || s.total_connections > MAX_SIZE
        {
            return Err(format!("{at}: counts broken: {s:?}"));
        }
    }
    held.clear();
    let report = pool.shutdown(Duration::from_secs(2)).await;
    // Connections a lost peer stranded stay open on the server until the proxy goes (by design).
    proxies.remove("db").map_err(|e| e.to_string())?;
    let s = pool.statistics();
    if s.total_connections != 0 || s.live_connection_tasks != 0 || report.forced != 0 {
        return Err(format!(
            "after shutdown: {} connections, {} tasks, {} forced",
            s.total_connections, s.live_connection_tasks, report.forced
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after shutdown: {left} connections of {app} still on the server"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn through_the_real_proxy_nothing_leaks(steps in proptest::collection::vec(step(), 1..20)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        if let Err(e) = rt.block_on(run(steps.clone())) {
            let script: Vec<String> = steps.iter().enumerate().map(|(i, s)| format!("  {i:>2}. {s:?}")).collect();
            return Err(TestCaseError::fail(format!("{e}\nscript:\n{}", script.join("\n"))));
        }
    }
}
