//! Initialisation, acquire latency, concurrency and shutdown (`sc_init`, `sc_acquire`,
//! `sc_concurrency`, `sc_shutdown`).

use std::time::Duration;

use tokio::time::Instant;

use crate::scenario::judge::{crit, timed};
use crate::fault::Env;
use crate::report::{Op, Outcome, ScenarioReport};
use pool::{HealthStatus, Pool};
use crate::scenario::runner::Timing;
use super::common::*;

pub(super) async fn init(env: &Env) -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_init",
        "SC-001, SC-012, FR-001: initialise a pool (min 2, max 10): time, counts, health.",
    );
    let started = Instant::now();
    let pool = Pool::connect(config(env.seed, &env.db.url(), "chaos-sc-init")).await?;
    let took = started.elapsed();
    let s = pool.statistics();
    let health = pool.health_check().await;
    r.metrics
        .insert("init_ms".into(), took.as_secs_f64() * 1000.0);
    let ms = format!("{:.1} ms", took.as_secs_f64() * 1000.0);
    let took_ms = took.as_secs_f64() * 1000.0;
    r.criteria.push(timed(
        "SC-001",
        "pool initialisation",
        ms.clone(),
        "< 2 s",
        Some(took_ms),
        2000.0,
    ));
    r.criteria.push(timed(
        "SC-012",
        "startup overhead",
        ms,
        "< 200 ms",
        Some(took_ms),
        200.0,
    ));
    r.criteria.push(crit(
        "FR-001",
        "total and idle connections after start",
        format!("{} total, {} idle", s.total_connections, s.idle_connections),
        "2 total, 2 idle",
        s.total_connections == 2 && s.idle_connections == 2,
    ));
    r.criteria.push(crit(
        "FR-008",
        "health after start",
        format!("{:?} / {:?}", health.status, health.database.status),
        "Healthy / Connected",
        health.status == HealthStatus::Healthy,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(r)
}

pub(super) async fn acquire(env: &Env) -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_acquire",
        "SC-002, FR-004: 20 acquisitions with SELECT 1; p95 of acquire + query; statistics track them.",
    );
    let pool = Pool::connect(config(env.seed, &env.db.url(), "chaos-sc-acquire")).await?;
    // The baseline: the same query on a bare tokio-postgres connection, interleaved with the
    // pool's, so a loaded machine's own round trip is measured in the same window.
    let (bare, driver) = tokio_postgres::connect(&env.db.url(), tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(driver);
    let mut times = Vec::new();
    let mut bare_times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let conn = pool.acquire().await?;
        let one: i32 = conn.query_one("SELECT 1", &[]).await?.get(0);
        if one != 1 {
            return Err(crate::Error::Unexpected(format!("SELECT 1 returned {one}")));
        }
        drop(conn);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        bare.query_one("SELECT 1", &[]).await?;
        bare_times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(bare);
    let _ = driver.await;
    let p95 = percentile(times, 0.95);
    let bare_p95 = percentile(bare_times, 0.95);
    let s = pool.statistics();
    r.metrics.insert("acquire_p95_ms".into(), p95);
    r.metrics.insert("bare_query_p95_ms".into(), bare_p95);
    r.criteria.push(
        timed(
            "SC-002",
            "acquisition incl. validation and a query, p95",
            format!("{p95:.2} ms"),
            "< 10 ms",
            Some(p95),
            10.0,
        )
        .with_baseline("the same SELECT 1 on a bare connection, p95", bare_p95),
    );
    r.criteria.push(crit(
        "FR-004",
        "acquisitions and releases counted",
        format!("{} / {}", s.total_acquisitions, s.total_releases),
        ">= 20 / >= 20",
        s.total_acquisitions >= 20 && s.total_releases >= 20,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(r)
}

pub(super) async fn concurrency(env: &Env) -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_concurrency",
        "SC-008, FR-010: 100 concurrent requests (pg_sleep 10 ms) on max_size 10: no deadlock, no timeout.",
    );
    let pool = Pool::connect(
        config(env.seed, &env.db.url(), "chaos-sc-concurrency")
            .acquire_timeout(Duration::from_secs(30)),
    )
    .await?;
    let origin = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let res = async {
                    pool.acquire()
                        .await?
                        .execute("SELECT pg_sleep(0.01)", &[])
                        .await
                        .map_err(crate::Error::from)?;
                    Ok::<_, crate::Error>(i)
                }
                .await;
                (t, Instant::now(), res)
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        let (s, e, res) = t.await?;
        let outcome = if res.is_ok() {
            done += 1;
            Outcome::Ok
        } else {
            Outcome::Fail
        };
        r.ops.push(Op {
            start_ms: (s - origin).as_secs_f64() * 1000.0,
            end_ms: (e - origin).as_secs_f64() * 1000.0,
            outcome,
            error: res.err().map(|e| e.to_string()),
        });
    }
    let s = pool.statistics();
    r.phases.during.ok = done;
    r.criteria.push(crit(
        "SC-008",
        "100 concurrent requests complete",
        format!("{done}/100"),
        "100/100",
        done == 100,
    ));
    r.criteria.push(crit(
        "FR-010",
        "peak active connections, waiting after",
        format!(
            "peak {}, waiting {}",
            s.peak_active_connections, s.waiting_requests
        ),
        "peak <= 10, waiting 0",
        s.peak_active_connections <= 10 && s.waiting_requests == 0,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(r)
}

pub(super) async fn shutdown(env: &Env, timing: Timing) -> crate::Result<ScenarioReport> {
    let sleep = if timing.quick { 1.0 } else { 5.0 };
    let mut r = blank(
        "sc_shutdown",
        "SC-005, FR-005: shutdown(30 s) while a query runs: the query completes, shutdown waits for it and no longer.",
    );
    let pool = Pool::connect(config(env.seed, &env.db.url(), "chaos-sc-shutdown")).await?;
    let p = pool.clone();
    let query = tokio::spawn(async move {
        let conn = p.acquire().await?;
        conn.execute(&format!("SELECT pg_sleep({sleep})"), &[])
            .await?;
        Ok::<_, crate::Error>(())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let report = pool.shutdown(Duration::from_secs(30)).await;
    let took = t.elapsed().as_secs_f64();
    let completed = query.await?.is_ok();
    let expected = sleep - 0.2;
    r.metrics.insert("shutdown_s".into(), took);
    r.criteria.push(crit(
        "SC-005",
        "graceful shutdown with an active query",
        format!("{took:.2} s, query completed: {completed}"),
        "< 30 s, completed",
        took < 30.0 && completed,
    ));
    // Returning before the query ended, or forcing it, is a fact; taking longer than the
    // query needed is a time.
    let measured = format!(
        "{took:.2} s (query had {expected:.1} s left), returned {}, forced {}",
        report.returned, report.forced
    );
    let bound = format!("{:.1}..{:.1} s, forced 0", expected - 0.1, expected + 1.0);
    r.criteria.push(if took < expected - 0.1 || report.forced != 0 {
        crit(
            "FR-005",
            "shutdown waited for the query and no longer",
            measured,
            &bound,
            false,
        )
    } else {
        timed(
            "FR-005",
            "shutdown waited for the query and no longer",
            measured,
            &bound,
            Some(took * 1000.0),
            (expected + 1.0) * 1000.0,
        )
    });
    Ok(r)
}
