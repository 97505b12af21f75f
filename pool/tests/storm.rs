//! A service's load against the pool, under tokio's paused clock and a fake database: requests
//! arrive at a fixed rate whether or not earlier ones were answered (open loop), each with its
//! own deadline, and hundreds wait at once while the database does not answer.
//!
//! The fake is behind "a proxy": its TCP probe always succeeds, and during the fault every
//! connection attempt and round trip hangs (a downstream blackhole: the server's answers
//! vanish). An attempt that hangs stays hung after the heal, as one whose answer was dropped
//! does. These are model tests: the clock is virtual, so every figure is exact and the same on
//! every run, on any machine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool::testing::{FakeConnector, FakeDb, Gate};
use pool::{Pool, PoolConfig};
use proptest::prelude::*;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// One request's record.
#[derive(Debug, Clone, Copy)]
struct Request {
    start: Duration,
    end: Duration,
    ok: bool,
    /// How long the acquire took, when it ended before the request's deadline.
    acquire_took: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Load {
    max_size: usize,
    acquire_timeout: Duration,
    connect_timeout: Duration,
    /// Time between two arrivals.
    every: Duration,
    /// Each request's own deadline (the service's 504), per arrival.
    deadlines: Vec<Duration>,
    fault_at: Duration,
    heal_at: Duration,
    end_at: Duration,
    /// How long a connect takes when the database answers.
    connect_takes: Duration,
    /// The heal closes the attempts that hang (a proxy removing a `timeout` toxic does);
    /// without it they hang until their connect_timeout, and only a hedge finds the heal.
    close_at_heal: bool,
}

impl Load {
    /// The service of issue 27: 400 requests/s, `max_size` 10, a 1 s acquire timeout, a 2 s
    /// handler deadline, a 3 s blackhole at t = 5 s.
    fn service() -> Self {
        let every = Duration::from_micros(2500);
        let end_at = Duration::from_secs(14);
        let n = (end_at.as_micros() / every.as_micros()) as usize;
        Self {
            max_size: 10,
            acquire_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            every,
            deadlines: vec![Duration::from_secs(2); n],
            fault_at: Duration::from_secs(5),
            heal_at: Duration::from_secs(8),
            end_at,
            connect_takes: Duration::from_millis(5),
            close_at_heal: true,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    requests: Vec<Request>,
    attempt_starts: Vec<Duration>,
    peak_in_flight: u64,
    load: Load,
    statistics: String,
}

impl Outcome {
    fn first_success_after_heal(&self) -> Option<Duration> {
        self.requests
            .iter()
            .filter(|r| r.ok && r.end >= self.load.heal_at)
            .map(|r| r.end - self.load.heal_at)
            .min()
    }
    /// Requests that failed although they arrived after the first success that followed the
    /// heal, or were waiting then with more than 50 ms of their acquire deadline left (time
    /// for a connect).
    fn failures_after_first_success(&self) -> usize {
        let Some(first) = self.first_success_after_heal() else {
            return usize::MAX;
        };
        let first = self.load.heal_at + first;
        let room = Duration::from_millis(50);
        self.requests
            .iter()
            .filter(|r| {
                !r.ok
                    && (r.start >= first
                        || (r.end > first && r.start + self.load.acquire_timeout > first + room))
            })
            .count()
    }
    fn attempts_between(&self, from: Duration, to: Duration) -> usize {
        self.attempt_starts
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }
    /// The most attempts started during the fault in any window as long as `connect_timeout`
    /// (while the database answers, attempts end quickly and their number says nothing).
    fn most_attempts_per_connect_timeout(&self) -> usize {
        let w = self.load.connect_timeout;
        let (from, to) = (self.load.fault_at, self.load.heal_at);
        let in_fault: Vec<Duration> = (self.attempt_starts.iter())
            .copied()
            .filter(|t| *t >= from && *t < to)
            .collect();
        (in_fault.iter())
            .map(|start| {
                in_fault
                    .iter()
                    .filter(|t| **t >= *start && **t < *start + w)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

async fn run(load: Load) -> Outcome {
    let db = FakeDb::new();
    db.set_connect(Gate::Delay(load.connect_takes));
    let config = PoolConfig::default()
        .min_size(load.max_size.min(2))
        .max_size(load.max_size)
        .acquire_timeout(load.acquire_timeout)
        .connect_timeout(load.connect_timeout)
        .validation_timeout(load.acquire_timeout.min(Duration::from_secs(1)));
    let pool: Pool<FakeConnector> = Pool::connect_with(config, db.connector())
        .await
        .expect("the pool starts");
    let t0 = Instant::now();
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let fault = {
        let db = Arc::clone(&db);
        let load = load.clone();
        tokio::spawn(async move {
            sleep_until(t0 + load.fault_at).await;
            db.blackhole();
            sleep_until(t0 + load.heal_at).await;
            db.heal();
            if load.close_at_heal {
                db.close_hung_attempts();
            }
            db.set_connect(Gate::Delay(load.connect_takes));
            db.latency(Duration::from_millis(1));
        })
    };
    db.latency(Duration::from_millis(1));
    for (i, deadline) in load.deadlines.iter().copied().enumerate() {
        let at = t0 + load.every * i as u32;
        if at >= t0 + load.end_at {
            break;
        }
        sleep_until(at).await;
        let pool = pool.clone();
        let records = Arc::clone(&records);
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let took = Mutex::new(None);
            let ok = timeout(deadline, async {
                let conn = pool.acquire().await;
                *took.lock().unwrap() = Some(start.elapsed());
                conn.ok()?.query().await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            records.lock().unwrap().push(Request {
                start: start - t0,
                end: Instant::now() - t0,
                ok,
                acquire_took: took.into_inner().unwrap(),
            });
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    fault.await.unwrap();
    sleep(Duration::from_secs(3)).await;
    let statistics = format!("{:?}", pool.statistics());
    pool.shutdown(Duration::from_secs(5)).await;
    let mut requests = records.lock().unwrap().clone();
    requests.sort_by_key(|r| r.start);
    Outcome {
        requests,
        attempt_starts: db.connect_starts().into_iter().map(|t| t - t0).collect(),
        peak_in_flight: db.peak_connects_in_flight(),
        load,
        statistics,
    }
}

fn summary(o: &Outcome) -> String {
    let l = &o.load;
    format!(
        "attempts in the fault {}, after the heal {}, peak in flight {}, heal -> first success {:?}, \
         failures after it {}, requests {} ({} failed); {}",
        o.attempts_between(l.fault_at, l.heal_at),
        o.attempts_between(l.heal_at, l.end_at + Duration::from_secs(3)),
        o.peak_in_flight,
        o.first_success_after_heal(),
        o.failures_after_first_success(),
        o.requests.len(),
        o.requests.iter().filter(|r| !r.ok).count(),
        o.statistics,
    )
}

/// Issue 27's service: the pool absorbs the spike instead of passing it on to the database,
/// and serves again within 250 ms of the heal with nothing failing after.
#[tokio::test(start_paused = true)]
async fn a_blackhole_with_hundreds_waiting_opens_few_connections_and_recovers_at_once() {
    for fault_ms in [3000, 1500, 2500, 5000] {
        let mut load = Load::service();
        load.heal_at = load.fault_at + Duration::from_millis(fault_ms);
        let o = run(load).await;
        let l = &o.load;
        let s = format!("{fault_ms} ms fault: {}", summary(&o));
        assert!(o.peak_in_flight <= l.max_size as u64, "{s}");
        assert!(
            o.attempts_between(l.fault_at, l.heal_at) <= 2 * l.max_size,
            "a storm of connection attempts: {s}"
        );
        let first = o.first_success_after_heal().expect(&s);
        assert!(first <= Duration::from_millis(250), "{s}");
        assert_eq!(o.failures_after_first_success(), 0, "{s}");
        assert!(
            o.attempts_between(l.heal_at, l.end_at + Duration::from_secs(3)) <= l.max_size,
            "{s}"
        );
    }
}

/// A silent path that nothing closes at its heal (answers dropped, sockets kept): only a
/// hedge finds the heal, and hedges back off to one per connect_timeout, so recovery takes
/// at most about that long. The price of few attempts during a long silence.
#[tokio::test(start_paused = true)]
async fn a_silent_path_that_heals_unannounced_is_found_by_a_hedge_within_connect_timeout() {
    let mut load = Load::service();
    load.close_at_heal = false;
    for fault_ms in [1500, 3000, 5000] {
        load.heal_at = load.fault_at + Duration::from_millis(fault_ms);
        let o = run(load.clone()).await;
        let s = format!("{fault_ms} ms fault: {}", summary(&o));
        assert!(
            o.attempts_between(o.load.fault_at, o.load.heal_at) <= 2 * o.load.max_size,
            "{s}"
        );
        let first = o.first_success_after_heal().expect(&s);
        assert!(
            first <= load.connect_timeout + Duration::from_millis(100),
            "{s}"
        );
        assert_eq!(o.failures_after_first_success(), 0, "{s}");
        println!("{}", s.split("; PoolStat").next().unwrap());
    }
}

/// Every acquire ends by its own deadline, served or failed: none outlives it (the timer's
/// millisecond granularity aside).
fn acquires_end_by_their_deadline(o: &Outcome) -> Result<(), TestCaseError> {
    for r in &o.requests {
        if let Some(took) = r.acquire_took {
            prop_assert!(
                took <= o.load.acquire_timeout + Duration::from_millis(2),
                "{:?}",
                r
            );
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    // `PROPTEST_CASES=500 cargo test -p pool --test storm` searches longer.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Up to 1,000 waiters with random deadlines against attempts that hang, then succeed.
    #[test]
    fn attempts_stay_bounded_and_the_heal_is_served(
        max_size in 1usize..12,
        waiters in 10usize..1000,
        every_us in 500u64..20_000,
        deadlines in proptest::collection::vec(50u64..3000, 1000),
        acquire_ms in 100u64..3000,
        connect_ms in 200u64..3000,
        fault_ms in 0u64..2000,
        fault_len_ms in 500u64..5000,
        close_at_heal in any::<bool>(),
    ) {
        let every = Duration::from_micros(every_us);
        let fault_at = Duration::from_millis(fault_ms);
        let heal_at = fault_at + Duration::from_millis(fault_len_ms);
        let load = Load {
            max_size,
            acquire_timeout: Duration::from_millis(acquire_ms),
            connect_timeout: Duration::from_millis(connect_ms),
            every,
            deadlines: deadlines[..waiters].iter().map(|ms| Duration::from_millis(*ms)).collect(),
            fault_at,
            heal_at,
            end_at: (every * waiters as u32).max(heal_at + Duration::from_secs(1)),
            connect_takes: Duration::from_millis(5),
            close_at_heal,
        };
        let o = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(run(load));
        let s = summary(&o);
        prop_assert!(o.peak_in_flight <= max_size as u64, "{}", s);
        prop_assert!(
            o.most_attempts_per_connect_timeout() <= 2 * max_size,
            "{} attempts within one connect_timeout: {}", o.most_attempts_per_connect_timeout(), s
        );
        acquires_end_by_their_deadline(&o)?;
        // After the heal the pool opens what the waiters need: at most max_size, plus a
        // replacement for each connection found dead after the heal (at most max_size).
        prop_assert!(
            o.attempts_between(o.load.heal_at, o.load.end_at + Duration::from_secs(3)) <= 2 * max_size,
            "{}", s
        );
    }
}
