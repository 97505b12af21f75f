//! The pool's behaviour against a fake database, under tokio's paused clock.
//!
//! The clock is paused so that timeouts, backoff and probes run in virtual time: the tests
//! are deterministic and take milliseconds, however long the timeouts they check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pool::testing::{FakeConnector, FakeDb, Gate};
use pool::{DatabaseStatus, HealthStatus, Pool, PoolConfig, PoolError, PoolState, TimeoutPhase};
use tokio::time::{Instant, advance, sleep};

type FakePool = Pool<FakeConnector>;

fn config() -> PoolConfig {
    PoolConfig::default().min_size(2).max_size(4)
}

async fn pool_with(config: PoolConfig) -> (FakePool, Arc<FakeDb>) {
    let db = FakeDb::new();
    let pool = Pool::connect_with(config, db.connector())
        .await
        .expect("connect");
    (pool, db)
}

fn assert_invariants(pool: &FakePool) {
    let s = pool.statistics();
    assert_eq!(
        s.idle_connections + s.active_connections,
        s.total_connections,
        "{s:?}"
    );
    assert!(s.total_connections <= s.max_size, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn connect_opens_min_size_and_is_healthy() {
    let (pool, db) = pool_with(config()).await;
    let s = pool.statistics();
    assert_eq!((s.total_connections, s.idle_connections), (2, 2));
    assert_eq!(db.opened(), 2);
    let health = pool.health_check().await;
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.database.status, DatabaseStatus::Connected);
}

#[tokio::test(start_paused = true)]
async fn connect_fails_fast_naming_the_target() {
    let db = FakeDb::new();
    db.set_connect(Gate::Fail);
    let started = Instant::now();
    let err = Pool::connect_with(config(), db.connector())
        .await
        .unwrap_err();
    assert!(matches!(err, PoolError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("fake:5432"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(10));

    db.set_connect(Gate::Hang);
    let started = Instant::now();
    let err = Pool::connect_with(config(), db.connector())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connect_timeout"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn acquire_and_release_count_and_reuse() {
    let (pool, db) = pool_with(config()).await;
    for _ in 0..10 {
        let conn = pool.acquire().await.unwrap();
        conn.query().await.unwrap();
        assert_invariants(&pool);
    }
    let s = pool.statistics();
    assert_eq!((s.total_acquisitions, s.total_releases), (10, 10));
    assert_eq!(db.opened(), 2, "idle connections are reused");
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let (pool, _db) = pool_with(config().min_size(1).max_size(1)).await;
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let pool = pool.clone();
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let conn = pool.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            sleep(Duration::from_millis(1)).await;
            drop(conn);
        }));
        // Let each waiter enqueue before the next one.
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.statistics().waiting_requests, 5);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn exhausted_pool_times_out_waiting_with_statistics() {
    let (pool, _db) = pool_with(config().max_size(2).acquire_timeout(Duration::from_secs(3))).await;
    let _a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();
    let started = Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    match &err {
        PoolError::Timeout {
            phase, statistics, ..
        } => {
            assert_eq!(*phase, TimeoutPhase::Wait);
            assert_eq!(statistics.active_connections, 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("raise max_size"), "{err}");
    assert_eq!(pool.statistics().acquire_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_connect_is_bounded_by_the_one_deadline() {
    let (pool, db) = pool_with(
        config()
            .min_size(0)
            .max_size(2)
            .acquire_timeout(Duration::from_secs(1)),
    )
    .await;
    let _held = pool.acquire().await.unwrap(); // the one idle connection
    db.set_connect(Gate::Hang);
    let started = Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "connect_timeout (2 s) did not add up"
    );
    assert_invariants(&pool);
    assert_eq!(
        pool.statistics().active_connections,
        1,
        "the hanging attempt holds no slot"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_validation_is_bounded_and_the_connection_dropped() {
    let (pool, db) = pool_with(config().min_size(1).max_size(1)).await;
    sleep(Duration::from_secs(1)).await; // past the validation bypass window
    db.set_validate(Gate::Hang);
    db.set_connect(Gate::Pass);
    let started = Instant::now();
    // Validation times out after validation_timeout (1 s); the pool drops the connection,
    // treats the path as silent, and opens a fresh one within the same deadline.
    let conn = pool.acquire().await;
    assert!(started.elapsed() <= Duration::from_secs(5));
    match conn {
        Ok(conn) => assert!(conn.id() > 1),
        Err(e) => assert!(e.is_transient(), "{e:?}"),
    }
    assert_invariants(&pool);
}

/// Drops a future after it has been polled `polls` times.
struct Cancellable<F> {
    fut: Pin<Box<F>>,
    polls_left: usize,
}

impl<F: Future> Future for Cancellable<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls_left == 0 {
            return Poll::Ready(None);
        }
        self.polls_left -= 1;
        self.fut.as_mut().poll(cx).map(Some)
    }
}

#[tokio::test(start_paused = true)]
async fn acquire_is_cancel_safe_at_every_await_point() {
    // Each step slow, so there are many await points to cancel at.
    for (connect, validate) in [
        (Gate::Delay(Duration::from_millis(30)), Gate::Pass),
        (Gate::Pass, Gate::Delay(Duration::from_millis(30))),
        (Gate::Hang, Gate::Hang),
        (Gate::Fail, Gate::Fail),
    ] {
        for polls in 0..12 {
            let (pool, db) = pool_with(
                config()
                    .min_size(1)
                    .max_size(2)
                    .probe_interval(Duration::from_secs(3600)),
            )
            .await;
            let held = pool.acquire().await.unwrap();
            sleep(Duration::from_secs(1)).await; // the idle one now needs validation
            let spare = pool.acquire().await.unwrap();
            drop(spare); // one idle connection needing validation, one slot free
            sleep(Duration::from_secs(1)).await;
            db.set_connect(connect);
            db.set_validate(validate);
            let mut futs = Vec::new();
            for _ in 0..3 {
                futs.push(tokio::spawn(Cancellable {
                    fut: Box::pin({
                        let pool = pool.clone();
                        async move { pool.acquire().await.map(drop) }
                    }),
                    polls_left: polls,
                }));
            }
            for f in futs {
                let _ = f.await.unwrap();
            }
            drop(held);
            assert_invariants(&pool);
            db.heal();
            // Let the pool recover from any outage the faults caused (virtual time).
            sleep(Duration::from_secs(3)).await;
            // Every slot must be usable again: take them all.
            let a = pool.acquire_timeout(Duration::from_secs(3)).await;
            let b = pool.acquire_timeout(Duration::from_secs(3)).await;
            assert!(
                a.is_ok() && b.is_ok(),
                "slot leaked with {connect:?}/{validate:?} after {polls} polls: {:?} {:?} {:?}",
                a.as_ref().err(),
                b.as_ref().err(),
                pool.statistics()
            );
            drop((a, b));
            let report = pool.shutdown(Duration::from_secs(1)).await;
            assert_eq!(report.forced, 0);
            assert_eq!(
                db.opened(),
                db.closed(),
                "every connection closed ({connect:?}/{validate:?}, {polls} polls)"
            );
            assert_eq!(pool.statistics().live_connection_tasks, 0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn refused_connects_fail_fast_and_recovery_is_prompt() {
    let (pool, db) = pool_with(config()).await;
    db.down();
    // Idle connections were killed: the pool discards them without a round trip, then the
    // first connect attempt is refused and starts the outage.
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err, PoolError::Connect { .. }), "{err:?}");
    let started = Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err, PoolError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1), "failed fast");
    assert!(pool.statistics().acquire_unavailable >= 1);
    sleep(Duration::from_millis(200)).await;
    let health = pool.health_check().await;
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert_eq!(health.database.status, DatabaseStatus::Disconnected);
    assert!(health.database.outage_duration.is_some());

    // Attempts during the outage are single-flight with backoff: few of them.
    let before = db.connect_attempts();
    for _ in 0..100 {
        let _ = pool.acquire().await;
        sleep(Duration::from_millis(10)).await;
    }
    let attempts = db.connect_attempts() - before;
    assert!(attempts < 20, "{attempts} attempts in 1 s of outage");

    // The database returns: the TCP probe notices within outage_probe_interval.
    db.heal();
    let healed = Instant::now();
    loop {
        if pool.acquire().await.is_ok() {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }
    let recovery = healed.elapsed();
    assert!(
        recovery <= Duration::from_millis(250),
        "recovered after {recovery:?}"
    );
    sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.health_check().await.state, PoolState::Healthy);
    assert_eq!(
        pool.statistics().total_connections,
        2,
        "refilled to min_size"
    );
}

/// Found by the soak: a server that turns new connections away while the open ones work
/// (a proxy refusing, a full connection limit) made the pool flip between up and down,
/// because a successful validation ended the outage; every flip let a stampede of connects
/// through and failed acquires that could have waited for an open connection.
#[tokio::test(start_paused = true)]
async fn refused_new_connections_do_not_flap_and_open_ones_keep_serving() {
    let (pool, db) = pool_with(config()).await;
    db.refuse();
    let before = db.connect_attempts();
    // Three holders on two connections: the third needs a new one, which is refused, so it
    // waits for an open one instead of failing.
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let third = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|c| pool::PooledConnection::id(&c)) }
    });
    sleep(Duration::from_millis(100)).await;
    let a_id = pool::PooledConnection::id(&a);
    drop(a);
    assert_eq!(
        third.await.unwrap().unwrap(),
        a_id,
        "served by the returned one"
    );
    drop(b);
    // For 5 s, four tasks keep asking with two connections open: every request is served by
    // an open connection (waiting for one when both are out), none fails.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                match pool.acquire().await {
                    Ok(conn) => {
                        conn.query().await.unwrap();
                        sleep(Duration::from_millis(3)).await;
                    }
                    Err(_) => failed += 1,
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    assert_eq!(failed, 0, "acquires failed while open connections answered");
    // Refused before reaching PostgreSQL: retried one at a time at the outage probe's pace
    // (100 ms), never in a burst.
    let attempts = db.connect_attempts() - before;
    assert!(
        attempts <= 60,
        "{attempts} connect attempts in 5 s: single-flight and paced, not a stampede"
    );
    assert_eq!(pool.statistics().total_connections, 2);
    assert_ne!(
        pool.health_check().await.database.status,
        DatabaseStatus::Connected,
        "new connections are refused: the outage lasts"
    );
    db.heal();
    sleep(Duration::from_secs(3)).await;
    let _third = (
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
    );
    assert_eq!(
        pool.health_check().await.database.status,
        DatabaseStatus::Connected
    );
}

#[tokio::test(start_paused = true)]
async fn a_blackhole_shows_in_health_and_stops_handouts_within_two_seconds() {
    let (pool, db) = pool_with(config()).await;
    sleep(Duration::from_secs(1)).await;
    db.blackhole();
    let started = Instant::now();
    loop {
        if pool.health_check().await.status == HealthStatus::Unhealthy {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "blackhole not detected within 2 s"
        );
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        pool.statistics().idle_connections,
        0,
        "idle connections on the silent path dropped"
    );
    // Acquires now fail within their deadline rather than handing out a dead connection.
    let started = Instant::now();
    let res = pool.acquire().await;
    assert!(res.is_err());
    assert!(started.elapsed() <= Duration::from_secs(5));
    assert_invariants(&pool);
    db.heal();
    sleep(Duration::from_secs(3)).await;
    let conn = pool
        .acquire()
        .await
        .expect("recovered after the blackhole healed");
    conn.query().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stranded_connections_are_found_and_never_handed_out() {
    let (pool, db) = pool_with(config()).await;
    let stranded = db.open_ids();
    db.peer_lost();
    sleep(Duration::from_secs(3)).await; // a probe times out and drops the idle ones
    for _ in 0..4 {
        let conn = pool.acquire().await.expect("new connections pass");
        assert!(
            !stranded.contains(&conn.id()),
            "stranded connection {} handed out",
            conn.id()
        );
        conn.query().await.unwrap();
    }
    assert_eq!(pool.health_check().await.status, HealthStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn killed_connections_are_dropped_not_reused() {
    let (pool, db) = pool_with(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    drop(conn);
    assert!(db.kill(id));
    tokio::task::yield_now().await;
    for _ in 0..4 {
        let conn = pool.acquire().await.unwrap();
        assert_ne!(conn.id(), id, "a killed connection was handed out");
        conn.query().await.unwrap();
    }
    assert_eq!(pool.statistics().connections_closed.broken, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_then_forces_and_is_idempotent() {
    let (pool, db) = pool_with(config()).await;
    let held = pool.acquire().await.unwrap();
    let stuck = pool.acquire().await.unwrap();
    let _a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.acquire_timeout(Duration::from_secs(60))
                .await
                .map(drop)
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(pool.statistics().waiting_requests, 1);
    let returner = tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        drop(held);
    });
    db.set_query(Gate::Hang);
    let query = tokio::spawn(async move {
        let r = stuck.query().await;
        drop(stuck);
        r
    });
    let started = Instant::now();
    let report = pool.shutdown(Duration::from_secs(5)).await;
    assert!(matches!(waiter.await.unwrap(), Err(PoolError::Closed)));
    returner.await.unwrap();
    assert_eq!(report.returned, 1);
    assert_eq!(report.forced, 3);
    assert_eq!(started.elapsed(), report.duration);
    assert!(report.duration >= Duration::from_secs(5) && report.duration < Duration::from_secs(6));
    // The forced query fails promptly.
    assert!(query.await.unwrap().is_err());
    assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
    assert_eq!(
        pool.shutdown(Duration::from_secs(5)).await,
        report,
        "idempotent"
    );
    let health = pool.health_check().await;
    assert_eq!(health.state, PoolState::Terminated);
    assert_eq!(pool.statistics().live_connection_tasks, 0);
    assert_eq!(db.opened(), db.closed());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_leaks_no_task_or_connection() {
    let (pool, db) = pool_with(config()).await;
    let weak_probe = pool.clone();
    drop(weak_probe);
    drop(pool);
    sleep(Duration::from_secs(2)).await;
    assert_eq!(db.opened(), db.closed());
}

#[tokio::test(start_paused = true)]
async fn leaks_are_reported_with_the_call_site() {
    let (log, _guard) = pool::testing::LogCapture::start();
    let (pool, _db) =
        pool_with(config().leak_detection_threshold(Some(Duration::from_secs(2)))).await;
    let line = line!() + 1;
    let conn = pool.acquire().await.unwrap();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        pool.statistics().leaks_suspected,
        0,
        "held for less than the threshold"
    );
    sleep(Duration::from_secs(2)).await;
    assert_eq!(pool.statistics().leaks_suspected, 1);
    let text = log.text();
    let warning = text
        .lines()
        .find(|l| l.contains("held longer than leak_detection_threshold"))
        .unwrap_or_else(|| panic!("no leak warning in {text}"));
    assert!(
        warning.contains("WARN") && warning.contains(&format!("fake.rs:{line}:")),
        "the warning names the acquire's line {line}: {warning}"
    );
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pool.statistics().leaks_suspected,
        1,
        "reported once per checkout"
    );
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_above_min_are_retired_and_old_ones_recycled() {
    let (pool, db) = pool_with(
        config()
            .idle_timeout(Some(Duration::from_secs(10)))
            .max_uses(Some(3))
            .max_lifetime(Some(Duration::from_secs(100))),
    )
    .await;
    let conns: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.acquire())).await;
    drop(conns);
    assert_eq!(pool.statistics().total_connections, 4);
    sleep(Duration::from_secs(12)).await;
    let s = pool.statistics();
    assert_eq!(s.total_connections, 2, "{s:?}");
    assert_eq!(s.connections_closed.idle_timeout, 2);
    for _ in 0..6 {
        drop(pool.acquire().await.unwrap());
    }
    assert!(pool.statistics().connections_closed.max_uses >= 1);
    sleep(Duration::from_secs(101)).await;
    assert!(pool.statistics().connections_closed.max_lifetime >= 1);
    assert_eq!(
        pool.statistics().total_connections,
        2,
        "replenished to min_size"
    );
    assert!(db.opened() >= 6);
}

#[tokio::test(start_paused = true)]
async fn lazy_pool_starts_without_the_database() {
    let db = FakeDb::new();
    db.set_connect(Gate::Fail);
    db.set_reachable(false);
    let pool = Pool::connect_lazy_with(config(), db.connector()).unwrap();
    assert_eq!(pool.health_check().await.state, PoolState::Initializing);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.health_check().await.status, HealthStatus::Unhealthy);
    db.heal();
    sleep(Duration::from_secs(1)).await;
    let health = pool.health_check().await;
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert_eq!(pool.statistics().total_connections, 2);
}

#[tokio::test(start_paused = true)]
async fn panicking_while_holding_returns_the_connection() {
    let (pool, _db) = pool_with(config()).await;
    let p = pool.clone();
    let res = tokio::spawn(async move {
        let _conn = p.acquire().await.unwrap();
        panic!("user code panics while holding a connection");
    })
    .await;
    assert!(res.is_err());
    let s = pool.statistics();
    assert_eq!(s.active_connections, 0);
    assert_eq!(s.total_releases, 1);
}

#[test]
fn pool_is_send_sync_clone_static() {
    fn bounds<T: Send + Sync + Clone + 'static>() {}
    bounds::<Pool>();
    bounds::<FakePool>();
    fn send<T: Send>() {}
    send::<pool::PooledConnection>();
}

#[tokio::test(start_paused = true)]
async fn health_and_statistics_serialize() {
    let (pool, _db) = pool_with(config()).await;
    let json = serde_json::to_value(pool.health_check().await).unwrap();
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["database"]["status"], "connected");
    let stats = serde_json::to_value(pool.statistics()).unwrap();
    assert_eq!(stats["total_connections"], 2);
    advance(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn killing_an_idle_backend_then_acquiring_leaves_nothing_open() {
    let (pool, db) = pool_with(config().min_size(1)).await;
    let id = db.open_ids()[0];
    db.kill(id);
    let conn = pool.acquire().await.unwrap();
    assert_ne!(conn.id(), id);
    drop(conn);
    pool.shutdown(Duration::from_secs(1)).await;
    sleep(Duration::from_secs(2)).await;
    let s = pool.statistics();
    assert_eq!(
        (db.opened(), db.closed()),
        (2, 2),
        "{s:?} open ids {:?}",
        db.open_ids()
    );
}

#[tokio::test(start_paused = true)]
async fn lifo_reuses_the_hot_connection_and_fifo_rotates() {
    let ids = |pool: FakePool| async move {
        let mut ids = Vec::new();
        for _ in 0..4 {
            let conn = pool.acquire().await.unwrap();
            ids.push(pool::PooledConnection::id(&conn));
        }
        ids
    };
    let (lifo, _db) = pool_with(config().min_size(3)).await;
    let l = ids(lifo).await;
    assert!(l.iter().all(|id| *id == l[0]), "{l:?}");
    let (fifo, _db) = pool_with(config().min_size(3).idle_order(pool::IdleOrder::Fifo)).await;
    let f = ids(fifo).await;
    assert_eq!(f[0], f[3], "{f:?}: three connections in turn");
    assert!(f[0] != f[1] && f[1] != f[2] && f[0] != f[2], "{f:?}");
}

/// A waiter for a returned connection that is dropped just as one is handed to it gives the
/// connection back: nothing is lost, the counts stay whole.
#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_as_a_connection_is_handed_over_loses_nothing() {
    let (pool, db) = pool_with(config()).await;
    db.refuse();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    // The first attempt to connect is refused and starts the outage; the open sessions answer.
    let mut waiter = Box::pin(pool.acquire());
    for _ in 0..3 {
        assert!(
            futures_poll(&mut waiter).await.is_pending(),
            "waits for a return"
        );
    }
    drop(a); // handed to the waiter, which is never polled again
    drop(waiter);
    assert_invariants(&pool);
    let s = pool.statistics();
    assert_eq!((s.total_connections, s.idle_connections), (2, 1), "{s:?}");
    let again = pool
        .acquire()
        .await
        .expect("the handed-over connection is back");
    drop((again, b));
    assert_invariants(&pool);
}

async fn futures_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

// Tests written for mutants that `cargo mutants -p pool` found surviving (TESTING.md).

/// A connection used within `validation_bypass` is handed out without a round trip; one
/// idle for longer is validated first.
#[tokio::test(start_paused = true)]
async fn the_validation_bypass_window_skips_the_round_trip_and_only_it() {
    let (pool, db) = pool_with(config().min_size(1).max_size(1)).await;
    let id = pool.acquire().await.unwrap().id();
    // Every validation from now on fails: one that happens shows as a failure.
    db.set_validate(Gate::Fail);
    sleep(Duration::from_millis(400)).await; // inside the 500 ms window
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id(), id, "the same connection, not validated");
    assert_eq!(pool.statistics().validation_failures, 0);
    drop(conn);
    sleep(Duration::from_millis(600)).await; // past the window
    let conn = pool.acquire().await.unwrap();
    assert_ne!(conn.id(), id, "validated, failed, replaced");
    assert_eq!(pool.statistics().validation_failures, 1);
}

/// After a suspect event (an outage began), connections used a moment ago are validated
/// anyway: the bypass window trusts only what was checked since.
#[tokio::test(start_paused = true)]
async fn a_suspect_event_makes_even_fresh_connections_validate() {
    let (pool, db) = pool_with(config().min_size(1).max_size(2)).await;
    let held = pool.acquire().await.unwrap();
    db.set_connect(Gate::Fail);
    // A second connection is needed and refused: the outage begins (a suspect event).
    assert!(pool.acquire().await.is_err());
    db.set_connect(Gate::Pass);
    db.set_validate(Gate::Fail);
    let id = held.id();
    drop(held);
    let conn = pool.acquire().await;
    assert!(
        pool.statistics().validation_failures >= 1,
        "connection {id} was handed out unvalidated after the outage began"
    );
    drop(conn);
}

/// When the acquire's own deadline is what bounds a hanging validation, the acquire ends
/// with a validation timeout; when `validation_timeout` is shorter, the acquire goes on and
/// gets a fresh connection within its deadline.
#[tokio::test(start_paused = true)]
async fn a_hanging_validation_ends_the_acquire_only_at_its_deadline() {
    let (pool, db) = pool_with(config().min_size(1).max_size(1)).await;
    sleep(Duration::from_secs(1)).await;
    db.set_validate(Gate::Hang);
    let conn = pool.acquire().await.expect("a fresh connection after 1 s");
    assert!(conn.id() > 1);
    drop(conn);

    let tight = config()
        .min_size(1)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(1))
        .validation_timeout(Duration::from_secs(1));
    let (pool, db) = pool_with(tight).await;
    sleep(Duration::from_secs(1)).await;
    db.set_validate(Gate::Hang);
    match pool.acquire().await {
        Err(PoolError::Timeout { phase, .. }) => assert_eq!(phase, TimeoutPhase::Validate),
        other => panic!("expected a validation timeout, got {other:?}"),
    }
}

/// An acquire waiting for a return while new connections are refused ends at its deadline
/// with a wait timeout, and at once with `Closed` when the pool shuts down.
#[tokio::test(start_paused = true)]
async fn a_wait_for_a_return_ends_at_the_deadline_or_at_shutdown() {
    let (pool, db) = pool_with(config().min_size(1).max_size(2)).await;
    db.refuse();
    let held = pool.acquire().await.unwrap();
    let started = Instant::now();
    match pool.acquire().await {
        Err(PoolError::Timeout { phase, .. }) => assert_eq!(phase, TimeoutPhase::Wait),
        other => panic!("expected a wait timeout, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );

    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            (pool.acquire().await.map(|c| c.id()), started.elapsed())
        }
    });
    sleep(Duration::from_millis(500)).await;
    let shutdown = tokio::spawn({
        let pool = pool.clone();
        async move { pool.shutdown(Duration::from_secs(10)).await }
    });
    let (result, waited) = waiter.await.unwrap();
    assert!(matches!(result, Err(PoolError::Closed)), "{result:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    drop(held);
    shutdown.await.unwrap();
}

/// A connect that runs into `connect_timeout` (not the acquire's deadline) is a failed
/// attempt: counted, and the start of an outage.
#[tokio::test(start_paused = true)]
async fn a_connect_timing_out_on_its_own_bound_counts_as_a_failure() {
    let (pool, db) = pool_with(
        config()
            .min_size(1)
            .max_size(2)
            .acquire_timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(2)),
    )
    .await;
    let _held = pool.acquire().await.unwrap();
    db.set_connect(Gate::Hang);
    assert!(pool.acquire().await.is_err());
    // The attempt ends at its own bound, in its own task, as the acquire's deadline passes.
    sleep(Duration::from_millis(1)).await;
    assert_eq!(pool.statistics().connect_errors, 1);
    assert_ne!(
        pool.health_check().await.database.status,
        DatabaseStatus::Connected
    );
}

#[test]
fn the_getters_return_what_was_set() {
    let from_url = PoolConfig::from_url("postgres://app@db/app?application_name=svc").unwrap();
    assert_eq!(from_url.get_application_name(), "svc", "the URL's wins");
    let config = PoolConfig::from_url("postgres://app@db/app")
        .unwrap()
        .min_size(3)
        .max_size(7)
        .acquire_timeout(Duration::from_millis(1234))
        .application_name("mine".to_string());
    assert_eq!(config.get_min_size(), 3);
    assert_eq!(config.get_max_size(), 7);
    assert_eq!(config.get_acquire_timeout(), Duration::from_millis(1234));
    assert_eq!(config.get_application_name(), "mine");
}

/// Lifetimes are spread over the last 2.5 % of `max_lifetime`, so connections opened together
/// are not all replaced at once (a reconnect storm): none before 97.5 %, all by 100 %.
#[tokio::test(start_paused = true)]
async fn lifetimes_are_jittered_so_connections_opened_together_retire_apart() {
    let (pool, db) = pool_with(
        config()
            .min_size(8)
            .max_size(8)
            .idle_timeout(None)
            .max_lifetime(Some(Duration::from_secs(1000)))
            .jitter_seed(Some(7)),
    )
    .await;
    let first: Vec<u64> = db.open_ids();
    assert_eq!(first.len(), 8);
    let left = || {
        let open = db.open_ids();
        first.iter().filter(|id| open.contains(id)).count()
    };
    sleep(Duration::from_secs(974)).await;
    assert_eq!(left(), 8, "none retired before 97.5 % of the lifetime");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..28 {
        sleep(Duration::from_secs(1)).await;
        seen.insert(left());
    }
    assert_eq!(
        left(),
        0,
        "all retired by the lifetime (and a maintenance tick)"
    );
    assert!(
        seen.len() >= 4,
        "retirements spread over several seconds, not one instant: {seen:?}"
    );
    assert_eq!(pool.statistics().total_connections, 8, "replaced");
}

/// After an outage, a pool refilling towards `min_size` says it is recovering (not merely
/// degraded), and stops saying so once refilled.
#[tokio::test(start_paused = true)]
async fn refilling_after_an_outage_is_reported_as_recovering() {
    let (pool, db) = pool_with(config().min_size(3).max_size(4)).await;
    db.down();
    db.kill_all();
    sleep(Duration::from_secs(3)).await;
    assert!(pool.acquire().await.is_err());
    db.heal();
    // Each connect takes 300 ms, so the refill has stages to see.
    db.set_connect(Gate::Delay(Duration::from_millis(300)));
    // Sampled every 10 ms from the heal until refilled: while below min_size, recovering.
    let mut states = Vec::new();
    for _ in 0..1000 {
        let total = pool.statistics().total_connections;
        states.push((total, pool.health().state));
        if total == 3 {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    let refilling: Vec<_> = states.iter().filter(|(t, _)| (1..3).contains(t)).collect();
    assert!(
        !refilling.is_empty(),
        "no sample while refilling: {states:?}"
    );
    assert!(
        refilling.iter().all(|(_, s)| *s == PoolState::Recovering),
        "{states:?}"
    );
    sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.statistics().total_connections, 3);
    assert_eq!(pool.health().state, PoolState::Healthy);
}

/// A trial connect during an outage that the acquire's own deadline cuts short gives the
/// trial back: the next attempt may run, and the pool recovers once the server answers.
#[tokio::test(start_paused = true)]
async fn a_trial_connect_cut_short_by_the_deadline_does_not_block_recovery() {
    let (pool, db) = pool_with(
        config()
            .min_size(1)
            .max_size(1)
            .acquire_timeout(Duration::from_millis(500))
            .validation_timeout(Duration::from_millis(200))
            .connect_timeout(Duration::from_secs(2)),
    )
    .await;
    db.down();
    db.kill_all();
    sleep(Duration::from_secs(2)).await;
    assert!(pool.acquire().await.is_err(), "the outage begins");
    // The server answers TCP but never the handshake: every trial hangs past the deadline.
    db.set_reachable(true);
    db.set_connect(Gate::Hang);
    for _ in 0..5 {
        sleep(Duration::from_secs(3)).await;
        assert!(pool.acquire().await.is_err());
    }
    db.heal();
    let mut served = false;
    for _ in 0..10 {
        sleep(Duration::from_secs(1)).await;
        if pool.acquire().await.is_ok() {
            served = true;
            break;
        }
    }
    assert!(
        served,
        "never recovered: a cut-short trial was not given back"
    );
}

/// The slow path (taken by every checkout when a before_acquire hook is set) keeps the
/// validation bypass window too: a connection used a moment ago is not validated again.
#[tokio::test(start_paused = true)]
async fn the_slow_path_keeps_the_validation_bypass_window() {
    let db = FakeDb::new();
    let pool = Pool::builder_with(config().min_size(1).max_size(1), db.connector())
        .before_acquire(|_client| Box::pin(async { true }))
        .connect()
        .await
        .unwrap();
    let id = pool.acquire().await.unwrap().id();
    db.set_validate(Gate::Fail);
    sleep(Duration::from_millis(400)).await;
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id(), id, "handed out again without a validation");
    assert_eq!(pool.statistics().validation_failures, 0);
    drop(conn);
    sleep(Duration::from_millis(600)).await;
    assert_ne!(
        pool.acquire().await.unwrap().id(),
        id,
        "past the window: validated"
    );
}

/// The window is half-open: a connection idle for exactly `validation_bypass` is validated.
#[tokio::test(start_paused = true)]
async fn a_connection_idle_for_exactly_the_bypass_window_is_validated() {
    let (pool, db) = pool_with(config().min_size(1).max_size(1)).await;
    let id = pool.acquire().await.unwrap().id();
    db.set_validate(Gate::Fail);
    sleep(Duration::from_millis(500)).await;
    assert_ne!(pool.acquire().await.unwrap().id(), id);
    assert_eq!(pool.statistics().validation_failures, 1);
}

/// A pool with a custom connector still refuses invalid settings (the URL is the
/// connector's business, the rest is the pool's).
#[tokio::test(start_paused = true)]
async fn a_custom_connector_pool_refuses_invalid_settings() {
    let db = FakeDb::new();
    match Pool::connect_with(PoolConfig::default().max_size(0), db.connector()).await {
        Err(PoolError::Config(e)) => assert_eq!(e.problems[0].field, "max_size", "{e}"),
        other => panic!("expected a configuration error, got {:?}", other.err()),
    }
}

/// A returned connection is no longer timed as a checkout: however long it then sits idle,
/// no leak is reported.
#[tokio::test(start_paused = true)]
async fn a_returned_connection_is_never_reported_as_a_leak() {
    let (pool, _db) = pool_with(
        config()
            .min_size(1)
            .max_size(1)
            .leak_detection_threshold(Some(Duration::from_secs(2))),
    )
    .await;
    drop(pool.acquire().await.unwrap());
    sleep(Duration::from_secs(10)).await;
    assert_eq!(pool.statistics().leaks_suspected, 0);
}

/// What a checkout says of itself: how long it is held, how often its connection was used,
/// and that a discarded one is closed, not returned.
#[tokio::test(start_paused = true)]
async fn a_checkout_reports_its_age_and_uses_and_a_discard_closes_it() {
    let (pool, db) = pool_with(config().min_size(1).max_size(1)).await;
    let conn = pool.acquire().await.unwrap();
    let (id, first_uses) = (conn.id(), pool::PooledConnection::uses(&conn));
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pool::PooledConnection::held_for(&conn),
        Duration::from_secs(3)
    );
    drop(conn);
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id(), id);
    assert_eq!(pool::PooledConnection::uses(&conn), first_uses + 1);
    assert!(format!("{conn:?}").contains(&id.to_string()));
    pool::PooledConnection::discard(conn);
    sleep(Duration::from_millis(10)).await;
    assert!(
        !db.open_ids().contains(&id),
        "a discarded connection is closed"
    );
    assert_ne!(pool.acquire().await.unwrap().id(), id);
}

#[test]
fn errors_say_whether_to_retry_and_name_themselves() {
    assert!(!PoolError::Closed.is_transient());
    assert_eq!(PoolError::Closed.kind(), "closed");
    assert_eq!(PoolError::NoRuntime.kind(), "no_runtime");
    assert!(!PoolError::NoRuntime.is_transient());
    assert_eq!(
        TimeoutPhase::Wait.to_string(),
        "waiting for a free connection"
    );
    assert_eq!(
        TimeoutPhase::Validate.to_string(),
        "validating an idle connection"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_transient_and_says_what_was_under_way() {
    let (pool, _db) = pool_with(config().min_size(1).max_size(1)).await;
    let _held = pool.acquire().await.unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.kind(), "timeout");
    assert!(
        err.to_string().contains("waiting for a free connection"),
        "{err}"
    );
}

/// Drivers that do not end when their client is dropped get half a second (or less when
/// `connect_timeout` is short), then are aborted; the shutdown returns with none left.
#[tokio::test(start_paused = true)]
async fn shutdown_gives_lingering_drivers_a_grace_then_aborts_them() {
    for (connect_timeout, grace) in [
        (Duration::from_secs(5), Duration::from_millis(500)),
        (Duration::from_millis(200), Duration::from_millis(300)),
    ] {
        let db = FakeDb::new();
        db.hold_drivers(true);
        let pool = Pool::connect_with(config().connect_timeout(connect_timeout), db.connector())
            .await
            .unwrap();
        let report = pool.shutdown(Duration::from_secs(1)).await;
        assert_eq!(
            report.duration, grace,
            "connect_timeout {connect_timeout:?}"
        );
        assert_eq!(pool.statistics().live_connection_tasks, 0);
        assert_eq!(db.opened(), db.closed());
    }
}

/// A connection attempt in flight is waited for (it is bounded by `connect_timeout`), not
/// abandoned at the drivers' grace.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_connect_in_flight_up_to_its_bound() {
    let (pool, db) = pool_with(config().connect_timeout(Duration::from_secs(2))).await;
    db.set_connect(Gate::Hang);
    // The maintenance task replaces the killed connection: its attempt hangs.
    db.kill(db.open_ids()[0]);
    sleep(Duration::from_millis(1100)).await;
    // The replacement, and a hedge once it had hung for hang_after (200 ms).
    assert!(
        db.connect_attempts() >= 3,
        "the replacement attempt started"
    );
    let started = Instant::now();
    let report = pool.shutdown(Duration::ZERO).await;
    let waited = started.elapsed();
    assert!(
        // The attempts started up to 1.1 s after the kill and end at their 2 s bound; the
        // drivers' grace alone would be 500 ms.
        waited >= Duration::from_millis(900) && waited <= Duration::from_millis(2100),
        "{waited:?}"
    );
    assert_eq!(report.duration, waited);
    assert_eq!(pool.statistics().live_connection_tasks, 0);
}

#[tokio::test(start_paused = true)]
async fn a_forced_shutdown_warns_and_a_clean_one_does_not() {
    for forced in [false, true] {
        let (log, _guard) = pool::testing::LogCapture::start();
        let (pool, _db) = pool_with(config()).await;
        let held = pool.acquire().await.unwrap();
        if !forced {
            drop(held);
        } else {
            std::mem::forget(held);
        }
        let report = pool.shutdown(Duration::from_millis(100)).await;
        assert_eq!(report.forced, usize::from(forced));
        let text = log.text();
        let last = text
            .lines()
            .rfind(|l| l.contains("pool shut down"))
            .unwrap_or_else(|| panic!("no shutdown line in {text}"));
        if forced {
            assert!(
                last.contains("WARN") && last.contains("force-closed"),
                "{last}"
            );
        } else {
            assert!(last.contains("INFO") && last.contains("cleanly"), "{last}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_pool_says_what_it_is_without_a_round_trip() {
    let (pool, db) = pool_with(config()).await;
    assert_eq!(pool.config().get_max_size(), 4);
    assert_eq!(pool.config().get_min_size(), 2);
    let shown = format!("{pool:?}");
    assert_eq!(
        shown,
        "Pool { target: \"fake:5432\", total: 2, idle: 2, max_size: 4 }"
    );
    assert!(!pool.is_closed());
    let before = db.connect_attempts();
    pool.shutdown(Duration::from_secs(1)).await;
    assert!(pool.is_closed());
    assert_eq!(db.connect_attempts(), before);
}

/// The maintenance round whose trial connect ends an outage refills to `min_size` at once,
/// not one `probe_interval` later.
#[tokio::test(start_paused = true)]
async fn the_round_that_ends_an_outage_refills_the_pool() {
    let (pool, db) = pool_with(config().min_size(3).max_size(4)).await;
    db.down();
    sleep(Duration::from_secs(3)).await;
    assert!(pool.statistics().total_connections < 3);
    assert_eq!(pool.health().database.status, DatabaseStatus::Disconnected);
    db.heal();
    let healed = Instant::now();
    while pool.statistics().total_connections < 3 {
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "never refilled: {:?} {:?}",
            pool.statistics(),
            pool.health()
        );
        sleep(Duration::from_millis(5)).await;
    }
    // The next outage probe (every 100 ms) sees the server, its trial succeeds, the rest follow.
    assert!(
        healed.elapsed() <= Duration::from_millis(250),
        "refilled {:?} after the heal",
        healed.elapsed()
    );
}

/// Without `jitter_seed`, each pool draws its own jitter: two pools started together do not
/// retire their connections in step (a fleet of services would otherwise reconnect at once).
#[tokio::test(start_paused = true)]
async fn pools_without_a_seed_jitter_apart() {
    let config = || {
        config()
            .min_size(8)
            .max_size(8)
            .idle_timeout(None)
            .max_lifetime(Some(Duration::from_secs(1000)))
    };
    let (a, db_a) = pool_with(config()).await;
    let (b, db_b) = pool_with(config()).await;
    let (first_a, first_b) = (db_a.open_ids(), db_b.open_ids());
    let left = |db: &Arc<FakeDb>, first: &[u64]| {
        let open = db.open_ids();
        first.iter().filter(|id| open.contains(id)).count()
    };
    sleep(Duration::from_secs(974)).await;
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    for _ in 0..270 {
        sleep(Duration::from_millis(100)).await;
        seen_a.push(left(&db_a, &first_a));
        seen_b.push(left(&db_b, &first_b));
    }
    assert_eq!((seen_a.last(), seen_b.last()), (Some(&0), Some(&0)));
    assert_ne!(
        seen_a, seen_b,
        "two pools retired their connections in step"
    );
    drop((a, b));
}

/// Idle connections above `min_size` go after `idle_timeout`, not before.
#[tokio::test(start_paused = true)]
async fn idle_connections_stay_until_their_idle_timeout() {
    let (pool, _db) = pool_with(
        config()
            .min_size(1)
            .max_size(3)
            .idle_timeout(Some(Duration::from_secs(10))),
    )
    .await;
    let held: Vec<_> = vec![
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
    ];
    drop(held);
    sleep(Duration::from_secs(9)).await;
    assert_eq!(
        pool.statistics().total_connections,
        3,
        "retired before idle_timeout"
    );
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pool.statistics().total_connections,
        1,
        "kept past idle_timeout"
    );
}

/// After an outage of refused connections, the attempt after the probe's first success is due
/// at once, whatever the backoff had grown to.
#[tokio::test(start_paused = true)]
async fn a_refused_outage_recovers_at_the_probes_first_success_not_after_the_backoff() {
    let (pool, db) = pool_with(
        config()
            .min_size(1)
            .max_size(2)
            .reconnect_backoff_base(Duration::from_secs(2))
            .reconnect_backoff_max(Duration::from_secs(30))
            .jitter_seed(Some(3)),
    )
    .await;
    db.down();
    sleep(Duration::from_secs(40)).await;
    assert_eq!(pool.health().database.status, DatabaseStatus::Disconnected);
    db.heal();
    let healed = Instant::now();
    while pool.statistics().total_connections == 0 {
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "never recovered"
        );
        sleep(Duration::from_millis(10)).await;
    }
    assert!(
        healed.elapsed() <= Duration::from_millis(300),
        "recovered {:?} after the heal: the backoff was waited out",
        healed.elapsed()
    );
}

/// An acquire dropped in the instant a connection was handed to it gives that connection
/// back, and the other waiters keep their place.
#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_as_it_is_served_gives_the_connection_back() {
    let (pool, _db) = pool_with(config().min_size(1).max_size(1)).await;
    let held = pool.acquire().await.unwrap();
    let mut first = Box::pin(pool.acquire());
    let mut second = Box::pin(pool.acquire());
    for f in [&mut first, &mut second] {
        assert!(
            std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx).is_pending())).await,
            "queued"
        );
    }
    assert_eq!(pool.statistics().waiting_requests, 2);
    drop(held); // handed to the first waiter...
    drop(first); // ...which is dropped before it runs
    let got = tokio::time::timeout(Duration::from_secs(1), second)
        .await
        .expect("the second waiter is served with the connection the first gave back")
        .unwrap();
    drop(got);
    let s = pool.statistics();
    assert_eq!((s.total_connections, s.idle_connections), (1, 1), "{s:?}");
}

/// A silent path is announced once, when the outage begins, not at every silent round trip.
#[tokio::test(start_paused = true)]
async fn a_silent_database_is_warned_about_once() {
    let (log, _guard) = pool::testing::LogCapture::start();
    let (pool, db) = pool_with(config().min_size(2).max_size(4)).await;
    let held = pool.acquire().await.unwrap();
    sleep(Duration::from_secs(1)).await;
    db.blackhole();
    sleep(Duration::from_secs(5)).await;
    // A second silent round trip, on the held connection, after the outage began.
    let _ = tokio::time::timeout(Duration::from_secs(1), held.query()).await;
    drop(held);
    sleep(Duration::from_secs(5)).await;
    let warned = log.text().matches("database stopped answering").count();
    assert_eq!(warned, 1, "{}", log.text());
}

/// A connection that failed validation is not waited for: its driver is aborted (a socket
/// that went bad may never finish sending a polite Terminate).
#[tokio::test(start_paused = true)]
async fn a_failed_connection_s_driver_is_aborted_not_waited_for() {
    let (pool, db) = pool_with(config().min_size(2).max_size(4)).await;
    db.hold_drivers(true);
    db.set_validate(Gate::Fail);
    sleep(Duration::from_secs(2)).await; // past the bypass window: idle ones are validated
    let conn = pool.acquire().await.unwrap();
    drop(conn);
    sleep(Duration::from_secs(1)).await;
    let s = pool.statistics();
    assert!(s.connections_closed.validation_failed >= 1, "{s:?}");
    assert_eq!(
        s.live_connection_tasks, s.total_connections,
        "a failed connection's driver still runs: {s:?}"
    );
}

/// Attempts that got no answer at all (packets lost, as under a blackhole) do not hold the
/// recovery behind the backoff: once the path answers the TCP probe again, the next attempt
/// is due at once. Here the backoff after a few failures would be seconds (base 4 s); the
/// pool serves again within one connect_timeout plus one probe interval of the heal.
#[tokio::test(start_paused = true)]
async fn a_healed_blackhole_is_noticed_by_the_probe_not_after_the_backoff() {
    let config = config()
        .connect_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(1))
        .validation_timeout(Duration::from_millis(500))
        .reconnect_backoff_base(Duration::from_secs(4))
        .reconnect_backoff_max(Duration::from_secs(30))
        .jitter_seed(Some(7));
    let (pool, db) = pool_with(config).await;
    db.blackhole();
    sleep(Duration::from_secs(8)).await;
    assert!(pool.acquire().await.is_err(), "the blackhole is in force");
    db.heal();
    let healed = Instant::now();
    loop {
        if let Ok(conn) = pool.acquire().await
            && conn.query().await.is_ok()
        {
            break;
        }
        assert!(
            healed.elapsed() <= Duration::from_millis(1300),
            "not served again {:?} after the heal: {:?}",
            healed.elapsed(),
            pool.statistics()
        );
        sleep(Duration::from_millis(20)).await;
    }
    assert_invariants(&pool);
}

/// A proxy whose servers are all gone (HAProxy while Patroni promotes a standby): the pool's
/// sessions were cut, and new connections are accepted and reset before any server speaks.
/// The proxy's port answers the TCP probe throughout, so the probe has no news to give;
/// attempts go one at a time, a quarter of the probe interval apart, and the server behind
/// the proxy is noticed within that pace plus one attempt, not half a probe interval later.
#[tokio::test(start_paused = true)]
async fn a_proxy_with_no_server_behind_it_is_retried_at_a_quarter_of_the_probe_interval() {
    let (pool, db) = pool_with(config().jitter_seed(Some(5))).await;
    db.refuse();
    db.kill_all();
    let probe = Duration::from_millis(100); // the default outage_probe_interval
    let mut workers = Vec::new();
    for _ in 0..4 {
        let pool = pool.clone();
        workers.push(tokio::spawn(async move {
            // The longest a failed acquire took.
            let mut slowest_failure = Duration::ZERO;
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                let asked = Instant::now();
                if pool.acquire().await.is_err() {
                    slowest_failure = slowest_failure.max(asked.elapsed());
                }
                sleep(Duration::from_millis(2)).await;
            }
            slowest_failure
        }));
    }
    sleep(Duration::from_millis(100)).await;
    let before = db.connect_attempts();
    sleep(Duration::from_secs(1)).await;
    let attempts = db.connect_attempts() - before;
    let paced = (Duration::from_secs(1).as_millis() / (probe / 4).as_millis()) as u64;
    assert!(
        attempts >= paced * 3 / 4 && attempts <= paced + 2,
        "{attempts} attempts in 1 s, {paced} expected: one at a time, {:?} apart",
        probe / 4
    );
    assert_ne!(
        pool.health().database.status,
        DatabaseStatus::Connected,
        "still an outage"
    );
    db.heal();
    let healed = Instant::now();
    while pool.statistics().total_connections == 0 {
        assert!(healed.elapsed() < Duration::from_secs(5), "never recovered");
        sleep(Duration::from_millis(1)).await;
    }
    assert!(
        healed.elapsed() <= probe / 4 + Duration::from_millis(5),
        "noticed {:?} after the heal",
        healed.elapsed()
    );
    // The next attempt will most likely be closed as the last one was: acquires fail fast
    // instead of waiting for it.
    for w in workers {
        let slowest = w.await.unwrap();
        assert!(
            slowest < Duration::from_millis(1),
            "a failed acquire took {slowest:?}: it waited for an attempt due later"
        );
    }
}
