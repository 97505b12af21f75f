//! What the pool tells without touching the database, and what it leaves behind: health and
//! statistics, memory, leaks and logs (`sc_health`, `sc_memory`, `sc_leaks`, `sc_logs`).

use std::time::Duration;


use crate::scenario::judge::{crit, timed};
use crate::fault::Env;
use crate::report::ScenarioReport;
use pool::Pool;
use super::common::*;

pub(super) async fn health(env: &Env) -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_health",
        "SC-003, SC-013, SC-007: health check latency and throughput, statistics staleness; none touches the database.",
    );
    let pool = Pool::connect(config(env.seed, &env.db.url(), "chaos-sc-health")).await?;
    let mut lat = Vec::new();
    for _ in 0..100 {
        let t = std::time::Instant::now();
        std::hint::black_box(pool.health_check().await);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p99 = percentile(lat, 0.99);
    let t = std::time::Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(1) {
        std::hint::black_box(pool.health_check().await);
        n += 1;
    }
    let staleness = statistics_staleness(&pool).await?;
    r.metrics.insert("health_p99_ms".into(), p99);
    r.metrics.insert("health_per_s".into(), n as f64);
    r.criteria.push(timed(
        "SC-003",
        "health check latency, p99",
        format!("{:.4} ms", p99),
        "< 10 ms",
        Some(p99),
        10.0,
    ));
    // As a time: how long 1000 checks take at the rate measured, against 1 s.
    r.criteria.push(timed(
        "SC-013",
        "health check throughput",
        format!("{n} per s"),
        "> 1000 per s",
        Some(1000.0 * 1000.0 / n.max(1) as f64),
        1000.0,
    ));
    r.metrics
        .insert("statistics_staleness_ms".into(), staleness);
    r.criteria.push(timed(
        "SC-007",
        "statistics staleness: the longest time from a checkout or a return to the statistics showing it (200 of each)",
        if staleness.is_finite() {
            format!("{staleness:.4} ms")
        } else {
            "an event never showed (waited 100 ms)".into()
        },
        "< 1 ms",
        staleness.is_finite().then_some(staleness),
        1.0,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(r)
}

/// How long after a checkout (or a return) the pool's statistics show it, at the worst, in
/// ms; infinite when one never showed within 100 ms.
pub(super) async fn statistics_staleness(pool: &Pool) -> crate::Result<f64> {
    /// Waits until `shows` holds of the statistics; the time from `since`, in ms.
    fn seen(
        pool: &Pool,
        since: std::time::Instant,
        shows: impl Fn(&pool::PoolStatistics) -> bool,
    ) -> f64 {
        loop {
            if shows(&pool.statistics()) {
                return since.elapsed().as_secs_f64() * 1000.0;
            }
            if since.elapsed() > Duration::from_millis(100) {
                return f64::INFINITY;
            }
            std::hint::spin_loop();
        }
    }
    let mut worst: f64 = 0.0;
    for _ in 0..200 {
        let before = pool.statistics();
        let conn = pool.acquire().await?;
        let acquired = std::time::Instant::now();
        // The counters of the event itself: the active count also moves with the
        // background probe, which borrows an idle connection now and then.
        worst = worst.max(seen(pool, acquired, |s| {
            s.total_acquisitions > before.total_acquisitions
        }));
        let held = pool.statistics();
        drop(conn);
        let returned = std::time::Instant::now();
        worst = worst.max(seen(pool, returned, |s| {
            s.total_releases > held.total_releases
        }));
    }
    Ok(worst)
}

pub(super) async fn memory(env: &Env) -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_memory",
        "SC-011: resident memory added by a pool of max_size 10 with all 10 connections open and used.",
    );
    let before = rss_mib();
    let pool =
        Pool::connect(config(env.seed, &env.db.url(), "chaos-sc-memory").min_size(10)).await?;
    let conns = futures_util::future::try_join_all((0..10).map(|_| pool.acquire())).await?;
    for c in &conns {
        c.query_one("SELECT repeat('x', 1000)", &[]).await?;
    }
    drop(conns);
    let after = rss_mib();
    let delta = (after - before).max(0.0);
    r.metrics.insert("pool_rss_mib".into(), delta);
    r.criteria.push(crit(
        "SC-011",
        "memory for max_size=10 (process RSS growth)",
        format!("{delta:.1} MiB (process {after:.0} MiB)"),
        "< 100 MiB",
        delta < 100.0,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(r)
}

pub(super) async fn leaks(env: &Env) -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_leaks",
        "A short leak check (SC-006 itself is a 24-hour criterion, which `chaos soak --duration 24h` measures): 2000 checkouts, 200 cancelled acquires and 50 dropped mid-query, then shutdown: nothing left in the pool, in its tasks or on the server.",
    );
    let app = "chaos-sc-leaks";
    let pool = Pool::connect(config(env.seed, &env.db.url(), app).max_size(4)).await?;
    for i in 0..2000 {
        let c = pool.acquire().await?;
        if i % 100 == 0 {
            c.query_one("SELECT 1", &[]).await?;
        }
    }
    for _ in 0..200 {
        let _ = tokio::time::timeout(Duration::from_micros(1), pool.acquire()).await;
    }
    for _ in 0..50 {
        let c = pool.acquire().await?;
        let _ = tokio::time::timeout(
            Duration::from_millis(1),
            c.execute("SELECT pg_sleep(0.05)", &[]),
        )
        .await;
        pool::PooledConnection::discard(c);
    }
    let report = pool.shutdown(Duration::from_secs(5)).await;
    let s = pool.statistics();
    let server = env.wait_no_connections(app, Duration::from_secs(5)).await;
    r.criteria.push(crit(
        "leak_short",
        "connections left on the server after shutdown",
        server.to_string(),
        "0",
        server == 0,
    ));
    r.criteria.push(crit(
        "pool_empty",
        "pool connections and driver tasks after shutdown",
        format!(
            "{} connections, {} tasks, {} forced",
            s.total_connections, s.live_connection_tasks, report.forced
        ),
        "0, 0, 0",
        s.total_connections == 0 && s.live_connection_tasks == 0 && report.forced == 0,
    ));
    r.criteria.push(crit(
        "accounting",
        "connections opened = closed",
        format!(
            "{} opened, {} closed",
            s.connections_created,
            s.connections_closed.total()
        ),
        "equal",
        s.connections_created == s.connections_closed.total(),
    ));
    Ok(r)
}

pub(super) fn logs() -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_logs",
        "SC-010: the pool's lifecycle log events seen during this run, each with a message that says what to do.",
    );
    let events = crate::scenario::logs::captured();
    let wanted = [
        ("pool connected", "connect"),
        ("database unreachable", "outage"),
        ("recovered", "recovered"),
        ("shut down", "shutdown"),
    ];
    for (needle, id) in wanted {
        let found = events.iter().find(|e| e.message.contains(needle));
        r.criteria.push(crit(
            &format!("SC-010/{id}"),
            &format!("a `{needle}` event was logged"),
            found.map_or("not seen".into(), |e| format!("{} {}", e.level, e.message)),
            "seen",
            found.is_some(),
        ));
    }
    let warns: Vec<_> = events.iter().filter(|e| e.level == "WARN").collect();
    let vague: Vec<_> = warns
        .iter()
        .filter(|e| !(e.message.contains(';') || e.message.contains(':')))
        .collect();
    r.criteria.push(crit(
        "SC-010/actionable",
        "every warning says what to do (a `;` or `:` then advice)",
        format!("{} warnings, {} without advice", warns.len(), vague.len()),
        "0 without advice",
        vague.is_empty(),
    ));
    let leaked_password = events
        .iter()
        .any(|e| e.fields.iter().any(|f| f.contains("password")));
    r.criteria.push(crit(
        "no_password",
        "no password in any captured event",
        if leaked_password {
            "found".into()
        } else {
            "none".into()
        },
        "none",
        !leaked_password,
    ));
    r.metrics.insert("events".into(), events.len() as f64);
    Ok(r)
}
