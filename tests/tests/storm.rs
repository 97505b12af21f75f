//! Issue 27's service on a real PostgreSQL through the real proxy: requests arrive at a fixed
//! rate (400/s) whether or not earlier ones were answered, each with a 2 s deadline, while
//! the server's answers vanish for 3 s (a `timeout` toxic with timeout 0 on the downstream,
//! so sessions open on the server and nothing comes back). The pool must absorb the spike:
//! few connections through the proxy during the fault, and serving again after the heal.
//!
//! Figures are printed for the record. The assertions are facts of the history (how many
//! connections the proxy accepted, whether requests failed once the pool served again),
//! with bounds far from what this machine shows, so a loaded machine does not fail them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::proxy::toxics;
use chaos::proxy::{Stream, Toxic, ToxicKind};
use pool::{Pool, PoolConfig};
use tokio::time::{Instant, sleep_until, timeout};

#[derive(Debug, Clone, Copy)]
struct Request {
    start: Duration,
    end: Duration,
    ok: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_under_an_open_loop_load_opens_few_connections_and_recovers() {
    storm(false).await;
}

/// The same through the shared path (`Pool::query_one`, no checkout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_path_opens_few_connections_in_a_blackhole_and_recovers() {
    storm(true).await;
}

async fn storm(shared: bool) {
    let (_proxies, proxy, url) = e2e::proxy_to_shared("storm");
    let config = PoolConfig::from_url(&url)
        .unwrap()
        .application_name("e2e-storm".to_string())
        .max_size(10)
        .acquire_timeout(Duration::from_secs(1));
    let pool = Pool::connect(config).await.unwrap();

    let (fault_at, heal_at, end_at) = (
        Duration::from_secs(2),
        Duration::from_secs(5),
        Duration::from_secs(9),
    );
    let every = Duration::from_micros(2500);
    let t0 = Instant::now();
    let records = Arc::new(Mutex::new(Vec::new()));
    let fault = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            sleep_until(t0 + fault_at).await;
            let before = proxy.stats();
            proxy
                .add_toxic(Toxic {
                    name: "blackhole".into(),
                    kind: ToxicKind::Timeout(toxics::Timeout { timeout: 0 }),
                    stream: Stream::Downstream,
                    toxicity: 1.0,
                })
                .unwrap();
            sleep_until(t0 + heal_at).await;
            proxy.remove_toxic("blackhole").unwrap();
            let after = proxy.stats();
            (
                after.accepted - before.accepted,
                after.sessions - before.sessions,
            )
        })
    };
    let mut tasks = Vec::new();
    let mut i = 0u32;
    while every * i < end_at {
        sleep_until(t0 + every * i).await;
        i += 1;
        let pool = pool.clone();
        let records = Arc::clone(&records);
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let ok = timeout(Duration::from_secs(2), async {
                let conn = pool.acquire().await.ok()?;
                conn.query_one("SELECT $1::int + 1 FROM pg_sleep(0.02)", &[&1i32])
                    .await
                    .ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            records.lock().unwrap().push(Request {
                start: start - t0,
                end: Instant::now() - t0,
                ok,
            });
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (accepted_in_fault, sessions_in_fault) = fault.await.unwrap();
    let statistics = pool.statistics();
    pool.shutdown(Duration::from_secs(5)).await;
    let requests = records.lock().unwrap().clone();
    let first = requests
        .iter()
        .filter(|r| r.ok && r.end >= heal_at)
        .map(|r| r.end)
        .min();
    // When each request that failed although it arrived after the first success arrived,
    // counted from that success (the backlog's tail).
    let failed_after_first: Vec<Duration> = first.map_or(Vec::new(), |first| {
        requests
            .iter()
            .filter(|r| !r.ok && r.start >= first)
            .map(|r| r.start - first)
            .collect()
    });
    let arrived_after_first_failed = first.map_or(usize::MAX, |_| failed_after_first.len());
    let last_failed_after_first = failed_after_first.iter().max();
    let failed = requests.iter().filter(|r| !r.ok).count();
    let failed_before_fault = requests
        .iter()
        .filter(|r| !r.ok && r.start < fault_at)
        .count();
    println!(
        "storm (shared path {shared}): connections accepted by the proxy during the 3 s fault \
         {accepted_in_fault}, sessions opened {sessions_in_fault}, heal -> first success {:?}, \
         requests arriving after it that failed {arrived_after_first_failed} (the last \
         {last_failed_after_first:?} after it), failed before the fault {failed_before_fault}, \
         requests {} ({failed} failed), {statistics:?}",
        first.map(|f| f - heal_at),
        requests.len(),
    );
    // Issue 27 measured 748-1051 connections. Attempts are at most one per 200 ms once they
    // hang (and max_size before they are seen to hang).
    assert!(
        sessions_in_fault <= 20,
        "a storm of connections: {sessions_in_fault} sessions in 3 s"
    );
    assert!(first.is_some(), "never served again after the heal");
    assert_eq!(
        arrived_after_first_failed, 0,
        "requests failed after the pool served again"
    );
}

/// Issue 27's cancellation storm: 20 tasks x 150 acquires with 0-300 us deadlines, one in
/// five dropped 50 us into a `SELECT 1`, on `max_size` 4. Attempts cut short by those
/// deadlines no longer vanish with them: 200 ms after the storm, all four connections can be
/// held at once within 100 ms (plus the scheduling lag this machine showed meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cancellation_storm_every_connection_is_reachable_at_once() {
    let db = chaos::postgres::shared().expect("shared database");
    let config = PoolConfig::from_url(&db.url())
        .unwrap()
        .application_name("e2e-cancel-storm".to_string())
        .min_size(1)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(1));
    let pool = Pool::connect(config).await.unwrap();
    let tasks: Vec<_> = (0..20u64)
        .map(|t| {
            let pool = pool.clone();
            tokio::spawn(async move {
                // A small LCG per task: the deadlines and drops repeat from run to run.
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..150u64 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let deadline = Duration::from_micros((x >> 33) % 300);
                    if let Ok(Ok(conn)) = timeout(deadline, pool.acquire()).await
                        && i % 5 == 0
                    {
                        let _ = timeout(Duration::from_micros(50), conn.query_one("SELECT 1", &[]))
                            .await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lag = chaos::lag::LagMonitor::every(Duration::from_millis(2));
    let started = Instant::now();
    let held = futures_util::future::join_all((0..4).map(|_| pool.acquire())).await;
    let took = started.elapsed();
    let lag = lag.worst();
    let held: Vec<_> = held.into_iter().collect::<Result<_, _>>().unwrap();
    println!(
        "cancellation storm: all 4 connections held {took:?} after asking (scheduling lag up to {lag:?}); {:?}",
        pool.statistics()
    );
    assert!(
        took <= Duration::from_millis(100) + lag,
        "all of max_size took {took:?} (bound 100 ms + lag {lag:?})"
    );
    drop(held);
    pool.shutdown(Duration::from_secs(5)).await;
}
