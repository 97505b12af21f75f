//! Session state on return, against the fake database's sessions (`FakeDb::track_sessions`)
//! under tokio's paused clock: what the pool does with a session returned inside a
//! transaction, a failed one, with a statement still running, or with state set, and what
//! it does with the server sessions it gave up on. The same cases run on a real server in
//! `tests/tests/session_state.rs`; here every timing is exact and every path reachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use pool::testing::{FakeConnector, FakeDb, Gate, Statement};
use pool::{Pool, PoolConfig, SessionReset, SessionStatus};
use tokio::time::{Instant, sleep, timeout};

type FakePool = Pool<FakeConnector>;

const VALIDATION: Duration = Duration::from_millis(250);
const CONNECT: Duration = Duration::from_millis(500);

fn config() -> PoolConfig {
    PoolConfig::default()
        .min_size(1)
        .max_size(1)
        .validation_timeout(VALIDATION)
        .connect_timeout(CONNECT)
}

async fn tracked(config: PoolConfig) -> (FakePool, Arc<FakeDb>) {
    let db = FakeDb::new();
    db.track_sessions();
    let pool = Pool::connect_with(config, db.connector())
        .await
        .expect("connect");
    (pool, db)
}

/// Runs a query and drops it `after` (a handler's deadline): it must not have finished.
async fn abandon_query(conn: &pool::PooledConnection<FakeConnector>, after: Duration) {
    assert!(
        timeout(after, conn.query()).await.is_err(),
        "the query ended within {after:?}"
    );
}

/// The one connection, its statement abandoned inside a transaction and still running on
/// the server (the query gate hangs); and its id.
async fn abandoned_in_a_transaction() -> (
    FakePool,
    Arc<FakeDb>,
    pool::PooledConnection<FakeConnector>,
    u64,
) {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.execute(Statement::Begin).await.unwrap();
    db.set_query(Gate::Hang);
    abandon_query(&conn, Duration::from_millis(100)).await;
    (pool, db, conn, id)
}

/// Acquires the one connection: it must be the same session, clean on the server.
async fn next_user_gets(pool: &FakePool, id: u64) {
    let conn = pool.acquire().await.expect("acquire");
    assert_eq!(conn.id(), id, "the session was closed, not restored");
    assert_eq!(conn.server_status(), SessionStatus::Idle);
    conn.query().await.expect("the next user's query");
}

#[tokio::test(start_paused = true)]
async fn a_clean_return_sends_nothing_to_the_server() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.query().await.unwrap();
    drop(conn);
    next_user_gets(&pool, id).await;
    assert_eq!(db.session_counts(), Default::default());
    let s = pool.statistics();
    assert_eq!((s.sessions_rolled_back, s.requests_cancelled), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_session_returned_inside_a_transaction_is_rolled_back_and_reused() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.execute(Statement::Begin).await.unwrap();
    drop(conn);
    next_user_gets(&pool, id).await;
    assert_eq!(db.session_counts().rollbacks, 1);
    let s = pool.statistics();
    assert_eq!(s.sessions_rolled_back, 1);
    assert_eq!(s.connections_closed.total(), 0, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_transaction_does_not_fail_the_next_user() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.execute(Statement::Begin).await.unwrap();
    conn.execute(Statement::Error).await.unwrap_err();
    assert_eq!(conn.server_status(), SessionStatus::FailedTransaction);
    drop(conn);
    next_user_gets(&pool, id).await;
    assert_eq!(db.session_counts().rollbacks, 1);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_statement_is_cancelled_and_the_next_user_does_not_wait_behind_it() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    db.set_query(Gate::Delay(Duration::from_secs(5)));
    abandon_query(&conn, Duration::from_millis(100)).await;
    assert_eq!(conn.server_status(), SessionStatus::Busy);
    drop(conn);
    db.set_query(Gate::Pass);
    let started = Instant::now();
    next_user_gets(&pool, id).await;
    // The grace before the cancel (25 ms), then the cancel, the drain and a settling statement.
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    let c = db.session_counts();
    assert_eq!((c.cancels, c.cancelled, c.settles), (1, 1, 1), "{c:?}");
    assert_eq!(
        c.rollbacks, 0,
        "outside a transaction nothing is rolled back"
    );
    assert_eq!(pool.statistics().requests_cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn a_statement_ending_within_the_grace_is_not_cancelled() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    db.set_query(Gate::Delay(Duration::from_millis(20)));
    abandon_query(&conn, Duration::from_millis(5)).await;
    drop(conn);
    db.set_query(Gate::Pass);
    next_user_gets(&pool, id).await;
    let c = db.session_counts();
    assert_eq!((c.cancels, c.settles), (0, 0), "{c:?}");
    assert_eq!(pool.statistics().requests_cancelled, 0);
}

#[tokio::test(start_paused = true)]
async fn a_statement_abandoned_inside_a_transaction_is_cancelled_then_rolled_back() {
    // `lost`: PostgreSQL drops a cancel that lands while the backend still reads the
    // statement (a busy machine); the pool sends another 100 ms later, rather than waiting
    // out validation_timeout and closing the session while the statement runs on.
    for lost in 0..=2u64 {
        let (pool, db, conn, id) = abandoned_in_a_transaction().await;
        db.lose_cancels(lost);
        drop(conn);
        db.set_query(Gate::Pass);
        let started = Instant::now();
        next_user_gets(&pool, id).await;
        // The grace, then one cancel per 100 ms until one is not lost.
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(25 + 100 * lost),
            "{lost} lost"
        );
        let c = db.session_counts();
        assert_eq!(
            (c.cancels, c.cancelled),
            (lost + 1, 1),
            "{lost} lost: {c:?}"
        );
        assert_eq!((c.rollbacks, c.settles), (1, 1), "{lost} lost: {c:?}");
        let s = pool.statistics();
        assert_eq!((s.requests_cancelled, s.sessions_rolled_back), (1, 1));
        assert_eq!(s.connections_closed.total(), 0, "{s:?}");
    }
}

/// Closed instead of handed on, and the next user gets a new, clean session at once.
async fn next_user_gets_a_new_session(pool: &FakePool, old: u64, within: Duration) {
    let started = Instant::now();
    let conn = pool.acquire().await.expect("acquire");
    assert!(started.elapsed() <= within, "{:?}", started.elapsed());
    assert_ne!(
        conn.id(),
        old,
        "a session that could not be restored was handed on"
    );
    assert_eq!(conn.server_status(), SessionStatus::Idle);
    let s = pool.statistics();
    assert_eq!(s.connections_closed.session_not_reset, 1, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_cancel_is_refused_is_closed() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    db.set_query(Gate::Hang);
    abandon_query(&conn, Duration::from_millis(100)).await;
    db.set_connect(Gate::Fail);
    drop(conn);
    sleep(Duration::from_millis(50)).await;
    db.set_connect(Gate::Pass);
    next_user_gets_a_new_session(&pool, id, CONNECT).await;
    assert_eq!(db.session_counts().cancels, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_that_hangs_ends_at_connect_timeout() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    db.set_query(Gate::Hang);
    abandon_query(&conn, Duration::from_millis(100)).await;
    db.set_connect(Gate::Hang);
    drop(conn);
    let started = Instant::now();
    // The slot is held while the pool restores: the next acquire waits for it.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|c| c.id()) }
    });
    sleep(Duration::from_millis(25) + CONNECT - Duration::from_millis(1)).await;
    assert!(
        !waiter.is_finished(),
        "the slot came back before the cancel's bound"
    );
    db.set_connect(Gate::Pass);
    let got = waiter.await.unwrap().expect("acquire");
    assert_ne!(got, id);
    assert!(started.elapsed() >= Duration::from_millis(25) + CONNECT);
}

#[tokio::test(start_paused = true)]
async fn a_statement_that_outlives_its_cancel_closes_the_session() {
    // Either the cancel reaches the server and the answer never comes back (the peer is
    // lost), or every cancel is lost (three are sent): closed at validation_timeout.
    for peer_lost in [true, false] {
        let (pool, db) = tracked(config()).await;
        let conn = pool.acquire().await.unwrap();
        let id = conn.id();
        if peer_lost {
            db.peer_lost();
        } else {
            db.set_query(Gate::Hang);
        }
        abandon_query(&conn, Duration::from_millis(100)).await;
        db.lose_cancels(if peer_lost { 0 } else { u64::MAX });
        drop(conn);
        let started = Instant::now();
        sleep(Duration::from_millis(1)).await;
        next_user_gets_a_new_session(&pool, id, Duration::from_millis(25) + VALIDATION).await;
        assert!(started.elapsed() >= Duration::from_millis(24) + VALIDATION);
        if !peer_lost {
            assert_eq!(db.session_counts().cancels, 3);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_fails_closes_the_session() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.execute(Statement::Begin).await.unwrap();
    db.set_restore(Gate::Fail);
    drop(conn);
    next_user_gets_a_new_session(&pool, id, Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_hangs_ends_at_validation_timeout() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.execute(Statement::Begin).await.unwrap();
    db.set_restore(Gate::Hang);
    drop(conn);
    let started = Instant::now();
    next_user_gets_a_new_session(&pool, id, VALIDATION).await;
    assert_eq!(started.elapsed(), VALIDATION);
}

#[tokio::test(start_paused = true)]
async fn a_slow_rollback_within_validation_timeout_keeps_the_session() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.execute(Statement::Begin).await.unwrap();
    db.set_restore(Gate::Delay(VALIDATION - Duration::from_millis(10)));
    drop(conn);
    next_user_gets(&pool, id).await;
}

#[tokio::test(start_paused = true)]
async fn a_late_cancel_may_take_the_first_rollback_and_a_second_one_follows() {
    // After a cancel, the rollback is tried twice: the first failing (as a late cancel would
    // make it) must not cost the session.
    let (pool, db, conn, id) = abandoned_in_a_transaction().await;
    db.set_restore(Gate::Fail);
    drop(conn);
    sleep(Duration::from_millis(26)).await; // the grace; the cancel is sent now
    db.set_restore(Gate::Pass);
    let conn = pool.acquire().await.unwrap();
    let c = db.session_counts();
    assert!(c.rollbacks >= 1, "{c:?}");
    if c.rollbacks == 1 {
        assert_eq!(conn.id(), id);
    }
}

#[tokio::test(start_paused = true)]
async fn by_default_session_state_stays_with_the_session() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    conn.execute(Statement::Set).await.unwrap();
    drop(conn);
    let conn = pool.acquire().await.unwrap();
    assert!(conn.has_session_state());
    assert_eq!(db.session_counts().resets, 0);
}

#[tokio::test(start_paused = true)]
async fn a_reset_on_return_clears_session_state_for_the_next_user() {
    for how in [SessionReset::Clean, SessionReset::Discard] {
        let (pool, db) = tracked(config().session_reset(how)).await;
        let conn = pool.acquire().await.unwrap();
        let id = conn.id();
        conn.execute(Statement::Set).await.unwrap();
        drop(conn);
        let conn = pool.acquire().await.unwrap();
        assert_eq!(conn.id(), id, "{how:?}");
        assert!(!conn.has_session_state(), "{how:?}");
        assert_eq!(db.session_counts().resets, 1, "{how:?}");
        assert_eq!(pool.statistics().sessions_reset, 1, "{how:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_transaction_is_rolled_back_before_the_reset() {
    let (pool, db) = tracked(config().session_reset(SessionReset::Clean)).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    conn.execute(Statement::Begin).await.unwrap();
    conn.execute(Statement::Set).await.unwrap();
    drop(conn);
    next_user_gets(&pool, id).await;
    let c = db.session_counts();
    assert_eq!((c.rollbacks, c.resets), (1, 1), "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn a_reset_that_fails_closes_the_session() {
    let (pool, db) = tracked(config().session_reset(SessionReset::Clean)).await;
    let conn = pool.acquire().await.unwrap();
    let id = conn.id();
    db.set_restore(Gate::Fail);
    drop(conn);
    next_user_gets_a_new_session(&pool, id, Duration::ZERO).await;
    assert_eq!(pool.statistics().sessions_reset, 0);
}

#[tokio::test(start_paused = true)]
async fn an_untracked_session_with_a_reset_is_reset_on_every_return() {
    let db = FakeDb::new(); // not tracked: the pool cannot see transactions
    let pool = Pool::connect_with(config().session_reset(SessionReset::Clean), db.connector())
        .await
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    conn.execute(Statement::Set).await.unwrap();
    drop(conn);
    let conn = pool.acquire().await.unwrap();
    assert!(!conn.has_session_state());
    assert_eq!(db.session_counts().resets, 1);
}

#[tokio::test(start_paused = true)]
async fn an_untracked_session_comes_back_as_it_was_left() {
    // What a connector that cannot see the protocol (TLS inside tokio-postgres) gets.
    let db = FakeDb::new();
    let pool = Pool::connect_with(config(), db.connector()).await.unwrap();
    let conn = pool.acquire().await.unwrap();
    conn.execute(Statement::Begin).await.unwrap();
    drop(conn);
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.server_status(), SessionStatus::InTransaction);
    assert_eq!(db.session_counts().rollbacks, 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_returned_during_shutdown_is_closed_not_restored() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    conn.execute(Statement::Begin).await.unwrap();
    let shutdown = tokio::spawn({
        let pool = pool.clone();
        async move { pool.shutdown(Duration::from_secs(1)).await }
    });
    tokio::task::yield_now().await;
    drop(conn);
    let report = shutdown.await.unwrap();
    assert_eq!((report.returned, report.forced), (1, 0));
    assert_eq!(db.session_counts().rollbacks, 0);
    assert_eq!(pool.statistics().connections_closed.shutdown, 1);
}

#[tokio::test(start_paused = true)]
async fn a_killed_session_returned_inside_a_transaction_is_closed_as_broken() {
    let (pool, db) = tracked(config()).await;
    let conn = pool.acquire().await.unwrap();
    conn.execute(Statement::Begin).await.unwrap();
    db.kill(conn.id());
    sleep(Duration::from_millis(1)).await;
    drop(conn);
    sleep(Duration::from_millis(1)).await;
    assert_eq!(db.session_counts().rollbacks, 0);
    assert_eq!(pool.statistics().connections_closed.broken, 1);
}

fn hook_pool(db: &Arc<FakeDb>, answer: Option<bool>, calls: &Arc<AtomicUsize>) -> FakePool {
    let calls = Arc::clone(calls);
    Pool::builder_with(config(), db.connector())
        .after_release(move |_client| {
            calls.fetch_add(1, SeqCst);
            Box::pin(async move {
                match answer {
                    Some(yes) => yes,
                    None => std::future::pending().await,
                }
            })
        })
        .connect_lazy()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_after_release_hook_runs_on_every_return_and_its_no_closes_the_session() {
    for (answer, kept) in [(Some(true), true), (Some(false), false), (None, false)] {
        let db = FakeDb::new();
        db.track_sessions();
        let calls = Arc::new(AtomicUsize::new(0));
        let pool = hook_pool(&db, answer, &calls);
        let conn = pool.acquire().await.unwrap();
        let id = conn.id();
        drop(conn); // clean: the hook still runs
        let started = Instant::now();
        let conn = pool.acquire().await.unwrap();
        assert_eq!(calls.load(SeqCst), 1, "{answer:?}");
        assert_eq!(conn.id() == id, kept, "{answer:?}");
        let closed = pool.statistics().connections_closed.hook_rejected;
        assert_eq!(closed, u64::from(!kept), "{answer:?}");
        if answer.is_none() {
            assert_eq!(started.elapsed(), VALIDATION, "the hook is bounded");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn sessions_the_pool_gave_up_on_are_terminated_once_the_server_answers() {
    let (log, _guard) = pool::testing::LogCapture::start();
    let db = FakeDb::new();
    db.track_sessions();
    db.keep_lost_sessions(true);
    let config = PoolConfig::default()
        .min_size(2)
        .max_size(2)
        .validation_timeout(VALIDATION)
        .connect_timeout(CONNECT);
    let pool = Pool::connect_with(config, db.connector()).await.unwrap();
    let lost = db.open_ids();
    db.peer_lost();
    // Both held and used: their queries go unanswered; the pool gives them up.
    let a = pool.acquire().await.unwrap();
    abandon_query(&a, Duration::from_millis(300)).await;
    pool::PooledConnection::discard(a);
    sleep(Duration::from_secs(2)).await;
    let b = pool.acquire().await.unwrap();
    assert!(!lost.contains(&b.id()), "a lost session was handed out");
    drop(b);
    // The server still holds what it never heard closed, until the pool terminates it.
    sleep(Duration::from_secs(5)).await;
    let held: Vec<u64> = db.open_ids();
    assert!(
        lost.iter().all(|id| !held.contains(id)),
        "orphans left on the server: {held:?} (lost {lost:?})"
    );
    assert!(db.session_counts().terminated >= 1);
    assert_eq!(
        pool.statistics().orphans_terminated,
        db.session_counts().terminated
    );
    assert!(
        log.text()
            .contains("terminated server sessions the pool had closed while they might still run"),
        "the reaping is logged"
    );
    // Once terminated, they are forgotten: no more requests for them.
    let requests = db.session_counts().terminate_requests;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(db.session_counts().terminate_requests, requests);
}

#[tokio::test(start_paused = true)]
async fn a_session_given_up_while_others_are_terminated_is_terminated_next() {
    let db = FakeDb::new();
    db.track_sessions();
    db.keep_lost_sessions(true);
    let config = PoolConfig::default()
        .min_size(3)
        .max_size(3)
        .validation_timeout(VALIDATION)
        .connect_timeout(CONNECT);
    let pool = Pool::connect_with(config, db.connector()).await.unwrap();
    // One session lost and given up: an orphan the next maintenance round terminates.
    let first = pool.acquire().await.unwrap();
    let first_id = first.id();
    db.strand(first_id);
    pool::PooledConnection::discard(first);
    let held = pool.acquire().await.unwrap();
    let second_id = held.id();
    db.strand(second_id);
    // The terminate round trip is slow; while it runs, a second session is given up.
    db.set_query(Gate::Delay(Duration::from_millis(400)));
    while db.session_counts().terminate_requests == 0 {
        sleep(Duration::from_millis(10)).await;
    }
    pool::PooledConnection::discard(held);
    db.set_query(Gate::Pass);
    sleep(Duration::from_secs(5)).await;
    let open = db.open_ids();
    assert!(!open.contains(&first_id), "{open:?}");
    assert!(
        !open.contains(&second_id),
        "the session given up during a round was forgotten: {open:?}"
    );
    assert_eq!(db.session_counts().terminated, 2);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_discard_is_checked_once_and_then_forgotten() {
    // A discarded session whose Terminate did reach the server: the reaper finds nothing,
    // counts nothing, and asks no more.
    let (log, _guard) = pool::testing::LogCapture::start();
    let (pool, db) = tracked(config().min_size(1).max_size(2)).await;
    let conn = pool.acquire().await.unwrap();
    pool::PooledConnection::discard(conn);
    sleep(Duration::from_secs(3)).await;
    assert!(
        !log.text().contains("terminated server sessions"),
        "nothing terminated, nothing said"
    );
    let c = db.session_counts();
    assert_eq!((c.terminate_requests, c.terminated), (1, 0), "{c:?}");
    assert_eq!(pool.statistics().orphans_terminated, 0);
}

#[tokio::test(start_paused = true)]
async fn without_the_reaper_a_lost_session_stays_on_the_server() {
    // The fake's orphans are real to the test: a session discarded on a lost peer stays.
    let db = FakeDb::new();
    db.keep_lost_sessions(true);
    let pool = Pool::connect_with(config(), db.connector()).await.unwrap();
    let id = db.open_ids()[0];
    db.peer_lost();
    let conn = pool.acquire().await.unwrap();
    abandon_query(&conn, Duration::from_millis(300)).await;
    pool::PooledConnection::discard(conn);
    sleep(Duration::from_secs(5)).await;
    // Untracked: the pool does not know the server pid, so it cannot terminate it.
    assert!(db.open_ids().contains(&id));
}

#[tokio::test(start_paused = true)]
async fn sessions_retired_on_a_healthy_path_are_not_chased() {
    // Lifetime and idle retirements close politely over a working path: nothing to terminate.
    let (pool, db) = tracked(
        config()
            .min_size(1)
            .max_size(2)
            .max_lifetime(Some(Duration::from_secs(30)))
            .idle_timeout(Some(Duration::from_secs(10))),
    )
    .await;
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    drop((a, b));
    sleep(Duration::from_secs(120)).await;
    let s = pool.statistics();
    assert!(
        s.connections_closed.idle_timeout + s.connections_closed.max_lifetime >= 2,
        "{s:?}"
    );
    assert_eq!(db.session_counts().terminate_requests, 0);
}
