//! The replaced system's validation script (`validation_scenarios.py`), every scenario and
//! success criterion measured for real, with its bound beside the measured value.

use std::time::Duration;

use tokio::time::Instant;

use super::family::{Ctx, Family as FamilyTrait, Running};
use super::family::Stage;
use super::judge::crit;
use super::runner::{Progress, Timing};
use crate::fault::Env;
use crate::peers::PoolKind;
use crate::report::{FaultWindow, Op, Outcome, ScenarioReport};
use pool::{HealthStatus, Pool, PoolConfig};

/// The validation scenarios, each run against our pool only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Validation {
    /// SC-001, SC-012, FR-001.
    Init,
    /// SC-002, FR-004.
    Acquire,
    /// SC-008, FR-010.
    Concurrency,
    /// SC-005, FR-005.
    Shutdown,
    /// SC-003, SC-013, SC-007.
    Health,
    /// SC-011.
    Memory,
    /// SC-004, SC-009, FR-003 with the network path cut.
    OutageProxy,
    /// SC-004, SC-009, FR-003 with the server stopped.
    OutageServer,
    /// A short leak check; SC-006 itself (24 h) is `chaos soak`'s.
    Leaks,
    /// SC-010: runs last, after every other scenario produced events.
    Logs,
}

impl Validation {
    /// Every validation scenario, in run order.
    pub const ALL: [Validation; 10] = [
        Validation::Init,
        Validation::Acquire,
        Validation::Concurrency,
        Validation::Shutdown,
        Validation::Health,
        Validation::Memory,
        Validation::OutageProxy,
        Validation::OutageServer,
        Validation::Leaks,
        Validation::Logs,
    ];

    /// The name for `--scenario` and reports.
    pub fn name(self) -> &'static str {
        match self {
            Validation::Init => "sc_init",
            Validation::Acquire => "sc_acquire",
            Validation::Concurrency => "sc_concurrency",
            Validation::Shutdown => "sc_shutdown",
            Validation::Health => "sc_health",
            Validation::Memory => "sc_memory",
            Validation::OutageProxy => "sc_outage_proxy",
            Validation::OutageServer => "sc_outage_server",
            Validation::Leaks => "sc_leaks",
            Validation::Logs => "sc_logs",
        }
    }
}

fn blank(name: &str, description: &str) -> ScenarioReport {
    ScenarioReport::new(name, "pool", true, description)
}

/// The validation script's pool (min 2, max 10, defaults otherwise), its jitter seeded from
/// the run's seed.
fn config(seed: u64, url: &str, app: &str) -> PoolConfig {
    PoolConfig::from_url(url)
        .expect("valid url")
        .application_name(app.to_string())
        .min_size(2)
        .max_size(10)
        .jitter_seed(Some(crate::rng::seed_for(seed, app)))
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::measure::percentile(&v, p).unwrap_or(0.0)
}

fn rss_mib() -> f64 {
    crate::measure::rss_mib().unwrap_or(0.0)
}

/// Runs one validation scenario.
pub async fn run(
    env: &Env,
    scenario: Validation,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    let name = scenario.name();
    progress.phase(name, "pool", "running");
    let started = Instant::now();
    let mut r = match scenario {
        Validation::Init => init(env).await,
        Validation::Acquire => acquire(env).await,
        Validation::Concurrency => concurrency(env).await,
        Validation::Shutdown => shutdown(env, timing).await,
        Validation::Health => health(env).await,
        Validation::Memory => memory(env).await,
        Validation::OutageProxy => outage(env, false).await,
        Validation::OutageServer => outage(env, true).await,
        Validation::Leaks => leaks(env).await,
        Validation::Logs => logs(),
    }
    .unwrap_or_else(|e| {
        let mut r = blank(name, "the scenario could not run");
        r.criteria.push(crit(
            "runs",
            "the scenario ran to the end",
            e.to_string(),
            "no error",
            false,
        ));
        r
    });
    r.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    r
}

async fn init(env: &Env) -> crate::Result<ScenarioReport> {
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
    r.criteria.push(crit(
        "SC-001",
        "pool initialisation",
        ms.clone(),
        "< 2 s",
        took < Duration::from_secs(2),
    ));
    r.criteria.push(crit(
        "SC-012",
        "startup overhead",
        ms,
        "< 200 ms",
        took < Duration::from_millis(200),
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

async fn acquire(env: &Env) -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_acquire",
        "SC-002, FR-004: 20 acquisitions with SELECT 1; p95 of acquire + query; statistics track them.",
    );
    let pool = Pool::connect(config(env.seed, &env.db.url(), "chaos-sc-acquire")).await?;
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let conn = pool.acquire().await?;
        let one: i32 = conn.query_one("SELECT 1", &[]).await?.get(0);
        if one != 1 {
            return Err(crate::Error::Unexpected(format!("SELECT 1 returned {one}")));
        }
        drop(conn);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p95 = percentile(times, 0.95);
    let s = pool.statistics();
    r.metrics.insert("acquire_p95_ms".into(), p95);
    r.criteria.push(crit(
        "SC-002",
        "acquisition incl. validation and a query, p95",
        format!("{p95:.2} ms"),
        "< 10 ms",
        p95 < 10.0,
    ));
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

async fn concurrency(env: &Env) -> crate::Result<ScenarioReport> {
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

async fn shutdown(env: &Env, timing: Timing) -> crate::Result<ScenarioReport> {
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
    r.criteria.push(crit(
        "FR-005",
        "shutdown waited for the query and no longer",
        format!(
            "{took:.2} s (query had {expected:.1} s left), returned {}, forced {}",
            report.returned, report.forced
        ),
        &format!("{:.1}..{:.1} s, forced 0", expected - 0.1, expected + 1.0),
        took >= expected - 0.1 && took <= expected + 1.0 && report.forced == 0,
    ));
    Ok(r)
}

async fn health(env: &Env) -> crate::Result<ScenarioReport> {
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
    r.criteria.push(crit(
        "SC-003",
        "health check latency, p99",
        format!("{:.4} ms", p99),
        "< 10 ms",
        p99 < 10.0,
    ));
    r.criteria.push(crit(
        "SC-013",
        "health check throughput",
        format!("{n} per s"),
        "> 1000 per s",
        n > 1000,
    ));
    r.metrics
        .insert("statistics_staleness_ms".into(), staleness);
    r.criteria.push(crit(
        "SC-007",
        "statistics staleness: the longest time from a checkout or a return to the statistics showing it (200 of each)",
        if staleness.is_finite() {
            format!("{staleness:.4} ms")
        } else {
            "an event never showed (waited 100 ms)".into()
        },
        "< 1 ms",
        staleness < 1.0,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(r)
}

/// How long after a checkout (or a return) the pool's statistics show it, at the worst, in
/// ms; infinite when one never showed within 100 ms.
async fn statistics_staleness(pool: &Pool) -> crate::Result<f64> {
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

async fn memory(env: &Env) -> crate::Result<ScenarioReport> {
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

async fn outage(env: &Env, server: bool) -> crate::Result<ScenarioReport> {
    let (name, what) = if server {
        (
            "sc_outage_server",
            "SC-004, SC-009, FR-003: the real server is stopped (immediate) for 2 s and restarted; the pool notices, recovers by itself, and queries work again.",
        )
    } else {
        (
            "sc_outage_proxy",
            "SC-004, SC-009, FR-003: the network path is cut (proxy down) for 2 s; the pool notices, recovers by itself, and queries work again.",
        )
    };
    let mut r = blank(name, what);
    if server && env.db.cluster().is_none() {
        r.mark_unavailable("SC-004", crate::report::Unavailable::ServerNotOurs);
        return Ok(r);
    }
    let app = format!("chaos-{}", name.replace('_', "-"));
    let proxy = env.proxy(&format!("chaos_{name}")).await?;
    let url = if server {
        env.db.url()
    } else {
        proxy.url.clone()
    };
    let pool =
        Pool::connect(config(env.seed, &url, &app).acquire_timeout(Duration::from_secs(2))).await?;
    let origin = Instant::now();
    let ms = |t: Instant| (t - origin).as_secs_f64() * 1000.0;
    let cut = Instant::now();
    if server {
        let c = std::sync::Arc::clone(env.db.require_cluster("outage")?);
        tokio::task::spawn_blocking(move || c.stop(crate::postgres::StopMode::Immediate)).await??;
    } else {
        env.faults.set_enabled(&proxy.name, false).await?;
    }
    let mut detected = None;
    let mut calls = Calls::default();
    while cut.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        let ok = calls.call(&pool).await;
        r.ops.push(Op {
            start_ms: ms(t),
            end_ms: ms(Instant::now()),
            outcome: if ok { Outcome::Ok } else { Outcome::Fail },
            error: None,
        });
        if detected.is_none() && pool.health_check().await.status != HealthStatus::Healthy {
            detected = Some(cut.elapsed());
        }
        r.health.push((
            ms(Instant::now()),
            format!("{:?}", pool.health().status).to_lowercase(),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status_during = pool.health_check().await.status;
    let heal = Instant::now();
    if server {
        let c = std::sync::Arc::clone(env.db.require_cluster("outage")?);
        tokio::task::spawn_blocking(move || c.restart()).await??;
    } else {
        env.faults.set_enabled(&proxy.name, true).await?;
    }
    let ready = Instant::now();
    let mut recovered = None;
    while ready.elapsed() < Duration::from_secs(30) {
        if pool.health_check().await.status == HealthStatus::Healthy && calls.call(&pool).await {
            recovered = Some(ready.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.fault = Some(FaultWindow {
        label: if server {
            "server stopped".into()
        } else {
            "proxy down".into()
        },
        start_ms: ms(cut),
        end_ms: ms(heal),
    });
    r.duration_ms = ms(Instant::now());
    let rec = recovered.map(|d| d.as_secs_f64() * 1000.0);
    if let Some(rec) = rec {
        r.metrics.insert("recovery_ms".into(), rec);
    }
    r.criteria.push(crit(
        "FR-003",
        "outage detected by health",
        format!(
            "{status_during:?} after {:.0} ms",
            detected.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        ),
        "Unhealthy or Degraded within 2 s",
        status_during != HealthStatus::Healthy
            && detected.is_some_and(|d| d < Duration::from_secs(2)),
    ));
    r.criteria.push(crit(
        "SC-004",
        "reconnection after the database is back (healthy, and a query works)",
        rec.map_or("never".into(), |v| format!("{v:.0} ms")),
        "< 30 s (ours: < 1 s)",
        rec.is_some_and(|v| v < 1000.0),
    ));
    r.criteria.push(crit(
        "SC-009",
        "no crash: every call during the outage and the recovery returned (ok or an error) within its deadline, and none panicked",
        format!(
            "{} calls: {} ok, {} failed, {} past {:.1} s, {} panicked",
            calls.ok + calls.failed + calls.hung + calls.panicked,
            calls.ok,
            calls.failed,
            calls.hung,
            Calls::BOUND.as_secs_f64(),
            calls.panicked
        ),
        "0 past the deadline, 0 panicked",
        calls.hung == 0 && calls.panicked == 0 && calls.ok + calls.failed > 0,
    ));
    pool.shutdown(Duration::from_secs(5)).await;
    let left = env.wait_no_connections(&app, Duration::from_secs(5)).await;
    r.criteria.push(crit(
        "no_leak",
        "connections left on the server after shutdown",
        left.to_string(),
        "0",
        left == 0,
    ));
    env.drop_proxy(&proxy).await;
    Ok(r)
}

/// Calls made during an outage and its recovery, each in a task of its own so a panic or a
/// hang is seen, not suffered.
#[derive(Default)]
struct Calls {
    ok: usize,
    failed: usize,
    hung: usize,
    panicked: usize,
}

impl Calls {
    /// The outage scenarios' acquire timeout (2 s), plus a second for the query.
    const BOUND: Duration = Duration::from_secs(3);

    /// An acquire and a `SELECT 1`; true when both succeeded.
    async fn call(&mut self, pool: &Pool) -> bool {
        let p = pool.clone();
        let task = tokio::spawn(async move {
            match p.acquire().await {
                Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
                Err(_) => false,
            }
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(Self::BOUND, task).await {
            Ok(Ok(true)) => {
                self.ok += 1;
                true
            }
            Ok(Ok(false)) => {
                self.failed += 1;
                false
            }
            Ok(Err(e)) => {
                if e.is_panic() {
                    self.panicked += 1;
                } else {
                    self.failed += 1;
                }
                false
            }
            Err(_) => {
                abort.abort();
                self.hung += 1;
                false
            }
        }
    }
}

async fn leaks(env: &Env) -> crate::Result<ScenarioReport> {
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

fn logs() -> crate::Result<ScenarioReport> {
    let mut r = blank(
        "sc_logs",
        "SC-010: the pool's lifecycle log events seen during this run, each with a message that says what to do.",
    );
    let events = super::logs::captured();
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

/// The replaced system's validation scenarios: our pool only; the log check last, after every
/// other scenario has produced events.
pub struct Family;

impl FamilyTrait for Family {
    type Item = Validation;
    fn items() -> Vec<Self::Item> {
        Validation::ALL.to_vec()
    }
    fn name(item: Self::Item) -> &'static str {
        item.name()
    }
    fn description(_: Self::Item) -> &'static str {
        "validation (pool only)"
    }
    fn stage(item: Self::Item) -> Stage {
        if item == Validation::Logs {
            Stage::Last
        } else {
            Stage::First
        }
    }
    fn run<'a>(item: Self::Item, ctx: &'a Ctx<'a>, _: PoolKind) -> Running<'a> {
        Box::pin(run(ctx.env, item, ctx.timing, ctx.progress))
    }
}
