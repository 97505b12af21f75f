//! A service's load: requests arrive at a fixed rate whether or not earlier ones were
//! answered (an open loop, as behind a load balancer), each with its own deadline (the
//! service's 504), so hundreds wait at once while the pool cannot serve. Under each fault the
//! pool must absorb the spike instead of passing it on to the database, and serve again at
//! once after the heal (issue 27: a pool that opened a connection per waiting request during
//! a blackhole flooded the server and sometimes never recovered).
//!
//! What the server holds is read from the server itself: a direct connection samples the
//! pool's sessions in `pg_stat_activity` every [`SAMPLE_EVERY`] for the whole run. A session
//! shorter than that can be missed; the sessions a storm leaves behind (waiting for a client
//! that gave up) last far longer.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::family::{Ctx, Family as FamilyTrait, Running};
use super::judge::{crit, not_started, timed, unknown};
use super::runner::{Arena, Progress, Timing, begin, fault_window, make_subject};
use crate::peers::{ACQUIRE_TIMEOUT, MAX_SIZE, OpenError, POOL, POOL_QUERY, PoolKind, QUERY_TIMEOUT, Subject};
use crate::fault::{Env, Fault, Kind, SERVICE_FAULTS};
use crate::report::{Unavailable, Criterion, Op, Outcome, Phases, ScenarioReport, Verdict};

/// Each request's own deadline: past it the service answers 504 and drops the request.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// How often the server's sessions of the pool are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Arrivals per second: quick and full.
fn rate(timing: Timing) -> u32 {
    if timing.quick { 200 } else { 400 }
}

/// A session of the pool as the server knows it: process id and start, in the server's
/// words.
type Session = (i32, String);

/// The server's sessions of `app`, sampled on one direct connection for the whole run, and
/// the server's accept queue, read from this machine's `/proc` (a server on another host has
/// none to read).
struct Sampler {
    /// (local ms, the sessions seen then).
    samples: Mutex<Vec<(f64, Vec<Session>)>>,
    /// (local ms, connections waiting in the server's accept queue then).
    queue: Mutex<Vec<(f64, u64)>>,
    /// The server's port.
    port: Option<u16>,
}

impl Sampler {
    async fn run(
        &self,
        url: String,
        app: String,
        ms: impl Fn(Instant) -> f64,
        stop: Arc<tokio::sync::Notify>,
    ) {
        let stop = stop.notified();
        tokio::pin!(stop);
        // A connection of its own, made again when the server restarts under it.
        let mut client = None;
        loop {
            if let Some(waiting) = self.port.and_then(crate::measure::accept_queue) {
                let at = ms(Instant::now());
                (self.queue.lock().unwrap_or_else(|e| e.into_inner())).push((at, waiting));
            }
            if client.is_none() {
                client = connect(&url).await;
            }
            if let Some((c, statement)) = &client {
                let at = ms(Instant::now());
                match tokio::time::timeout(Duration::from_secs(1), c.query(statement, &[&app]))
                    .await
                {
                    Ok(Ok(rows)) => {
                        let sessions = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                        self.samples
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((at, sessions));
                    }
                    _ => client = None,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                _ = &mut stop => break,
            }
        }
    }

    /// Sessions first seen in `[from, to)` ms, and samples taken then.
    fn began_between(&self, from: f64, to: f64) -> (usize, usize) {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let before: BTreeSet<&Session> = samples
            .iter()
            .filter(|(t, _)| *t < from)
            .flat_map(|(_, s)| s)
            .collect();
        let during: Vec<_> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .collect();
        let new: BTreeSet<&Session> = during
            .iter()
            .flat_map(|(_, s)| s)
            .filter(|s| !before.contains(s))
            .collect();
        (new.len(), during.len())
    }

    /// The deepest accept queue seen in `[from, to)` ms; `None` when it could not be read.
    fn queue_between(&self, from: f64, to: f64) -> Option<u64> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        (queue.iter())
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, n)| *n)
            .max()
    }

    /// The most sessions held at once from `from` ms on, and samples taken then.
    fn most_from(&self, from: f64) -> (usize, usize) {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let after: Vec<_> = samples.iter().filter(|(t, _)| *t >= from).collect();
        let most = after.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        (most, after.len())
    }
}

/// The pool under test as a service configures it: our pool as issue 27's service did
/// (`max_size`, a 1 s acquire timeout, everything else at its defaults, so an attempt's
/// `connect_timeout` of 2 s outlasts the acquire that asks for it), the peers as everywhere
/// else in the suite.
async fn subject(
    kind: PoolKind,
    url: &str,
    app: &str,
    seed: u64,
) -> Result<Box<dyn Subject>, OpenError> {
    let config = || -> Result<pool::PoolConfig, pool::ConfigError> {
        Ok(pool::PoolConfig::from_url(url)?
            .application_name(app.to_string())
            .max_size(MAX_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .jitter_seed(Some(crate::rng::seed_for(seed, app))))
    };
    Ok(if kind == POOL {
        Box::new(crate::peers::ours::OurPool(pool::Pool::connect(config()?).await?))
    } else if kind == POOL_QUERY {
        Box::new(crate::peers::ours::OurPoolShared(pool::Pool::connect(config()?).await?))
    } else {
        make_subject(kind, url, app, seed).await?
    })
}

/// A direct connection for the sampler, with its statement prepared; `None` while the server
/// does not answer.
async fn connect(url: &str) -> Option<(tokio_postgres::Client, tokio_postgres::Statement)> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(1),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .ok()?
    .ok()?;
    tokio::spawn(conn);
    let statement = client
        .prepare(
            "SELECT pid, backend_start::text FROM pg_stat_activity WHERE application_name = $1",
        )
        .await
        .ok()?;
    Some((client, statement))
}

/// Runs `fault` under the open-loop load against a pool of `kind`.
pub async fn run(
    env: &Env,
    fault: &Fault,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    run_injected(env, fault, None, kind, timing, progress).await
}

/// Runs `plan` under the open-loop load against a pool of `kind` (`chaos run --plan P --load
/// service`): the plan's faults on its timeline from the end of the `before` phase, its span
/// as the fault window, the same criteria.
pub async fn run_plan(
    env: &Env,
    plan: &crate::plan::Plan,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    let fault = Fault {
        name: "plan",
        description: "The faults of the plan given with --plan, on its timeline, under a service's open-loop load.",
        label: "plan",
        kind: Kind::Down,
        needs_cluster: plan
            .faults
            .iter()
            .any(|f| matches!(&f.what, crate::plan::What::Matrix(m) if m.needs_cluster)),
        during_ms: None,
        recovery_bound_ms: 1000.0,
    };
    run_injected(env, &fault, Some(plan), kind, timing, progress).await
}

async fn run_injected(
    env: &Env,
    fault: &Fault,
    plan: Option<&crate::plan::Plan>,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    let (app, mut report) = match begin(env, fault, kind) {
        Ok(begun) => begun,
        Err(report) => return *report,
    };
    let scenario_proxy = match env.proxy(&format!("chaos_{}", app.replace('-', "_"))).await {
        Ok(p) => p,
        Err(e) => {
            report.mark_unavailable(
                "setup",
                Unavailable::Injector {
                    detail: format!("could not create the proxy: {e}"),
                },
            );
            return report;
        }
    };
    let subject: Arc<dyn Subject> =
        match subject(kind, &scenario_proxy.url, &app, env.seed).await {
            Ok(s) => Arc::from(s),
            Err(e) => {
                env.drop_proxy(&scenario_proxy).await;
                report.criteria.push(not_started(e));
                return report;
            }
        };
    let proxy = scenario_proxy.name.clone();
    let origin = Instant::now();
    let ms = move |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let sampler = Arc::new(Sampler {
        samples: Mutex::new(Vec::new()),
        queue: Mutex::new(Vec::new()),
        port: crate::postgres::tcp_target(&env.db.url())
            .ok()
            .map(|(_, port)| port),
    });
    let stop = Arc::new(tokio::sync::Notify::new());
    let sampling = {
        let (sampler, stop, url, app) = (
            Arc::clone(&sampler),
            Arc::clone(&stop),
            env.db.url(),
            app.clone(),
        );
        tokio::spawn(async move { sampler.run(url, app, ms, stop).await })
    };
    let ops: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let during = match plan {
        Some(plan) => plan.end(),
        None => Duration::from_millis(
            crate::fault::catalogue::SERVICE_DURING_MS[usize::from(!timing.quick)],
        ),
    };
    let end = origin + timing.before + during + timing.after;
    let every = Duration::from_secs(1) / rate(timing);
    let arrivals = {
        let (subject, ops) = (Arc::clone(&subject), Arc::clone(&ops));
        tokio::spawn(async move {
            let mut requests = Vec::new();
            let mut next = origin;
            while next < end {
                tokio::time::sleep_until(next).await;
                next += every;
                let (subject, ops) = (Arc::clone(&subject), Arc::clone(&ops));
                requests.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let (outcome, error) = match tokio::time::timeout(
                        DEADLINE,
                        subject.request("SELECT 1", QUERY_TIMEOUT),
                    )
                    .await
                    {
                        Ok(answer) => answer,
                        Err(_) => (Outcome::Fail, Some("deadline".to_string())),
                    };
                    let op = Op {
                        start_ms: ms(started),
                        end_ms: ms(Instant::now()),
                        outcome,
                        error,
                    };
                    ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
                }));
            }
            for r in requests {
                let _ = r.await;
            }
        })
    };

    progress.phase(fault.name, kind.name(), "before");
    tokio::time::sleep(timing.before).await;
    progress.phase(fault.name, kind.name(), &format!("fault: {}", fault.label));
    let fault_start = ms(Instant::now());
    let at_start = env.faults.stats(&proxy).await;
    let applied = match plan {
        Some(plan) => env.inject_plan(&proxy, plan).await,
        None => env.inject(&proxy, fault, &app, during).await,
    };
    let at_heal = env.faults.stats(&proxy).await;
    if let Err(e) = &applied {
        report
            .anomalies
            .push(format!("fault could not be applied: {e}"));
    }
    let heal = ms(Instant::now());
    progress.phase(fault.name, kind.name(), "after");
    let _ = arrivals.await;
    stop.notify_one();
    let _ = sampling.await;
    progress.phase(fault.name, kind.name(), "shutdown");
    subject.shutdown().await;
    drop(subject);
    let server_left = env.left_on_server(&app).await;
    env.close(&proxy).await;

    let mut ops = std::mem::take(&mut *ops.lock().unwrap_or_else(|e| e.into_inner()));
    ops.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    report.fault = Some(fault_window(fault, plan, fault_start, heal));
    report.duration_ms = ms(Instant::now());
    let opened = at_start.zip(at_heal).map(|(a, b)| Opened {
        sessions: b.sessions - a.sessions,
        cancels: b.cancels - a.cancels,
        probes: (b.accepted - a.accepted)
            .saturating_sub(b.sessions - a.sessions + b.cancels - a.cancels),
    });
    judge(
        &mut report,
        &ops,
        &sampler,
        opened,
        fault_start,
        heal,
        server_left,
    );
    if let Err(e) = &applied {
        for c in &mut report.criteria {
            c.verdict = Verdict::Unknown;
        }
        report.unavailable = Some(Unavailable::FaultRefused {
            detail: e.to_string(),
        });
    }
    report.ops = ops;
    report
}

/// Connections opened through the proxy during the fault, by what their client sent first.
#[derive(Debug, Clone, Copy)]
struct Opened {
    /// PostgreSQL sessions (startup messages and SSL requests).
    sessions: u64,
    /// Cancel requests.
    cancels: u64,
    /// Connections whose client sent nothing (TCP probes).
    probes: u64,
}

/// The criteria, from the history, the proxy's counters and the server's samples.
fn judge(
    report: &mut ScenarioReport,
    ops: &[Op],
    sampler: &Sampler,
    opened: Option<Opened>,
    start: f64,
    heal: f64,
    server_left: i64,
) {
    report.phases = Phases::of(ops, start, heal);
    let (began, _) = sampler.began_between(start, heal);
    report
        .metrics
        .insert("server_sessions_begun_in_fault".into(), began as f64);
    report.criteria.push(match opened {
        None => unmeasured(
            "connections_in_fault",
            "the fault controller gives no connection counts (Toxiproxy's API has none): run with the embedded proxy",
        ),
        Some(o) => {
            report
                .metrics
                .insert("sessions_opened_in_fault".into(), o.sessions as f64);
            report
                .metrics
                .insert("cancels_in_fault".into(), o.cancels as f64);
            report
                .metrics
                .insert("tcp_probes_in_fault".into(), o.probes as f64);
            crit(
                "connections_in_fault",
                "sessions opened through the proxy during the fault (startup or SSL requests; cancel requests and silent TCP probes are counted apart): the pool absorbs the spike, it does not pass it on",
                format!(
                    "{} sessions ({} cancels, {} probes)",
                    o.sessions, o.cancels, o.probes
                ),
                &format!("<= {}", 2 * MAX_SIZE),
                o.sessions <= 2 * MAX_SIZE as u64,
            )
        }
    });
    // The server notices a closed session when its socket's end reaches it: half a second.
    let (most, samples) = sampler.most_from(heal + 500.0);
    report
        .metrics
        .insert("sessions_after_heal_max".into(), most as f64);
    report.criteria.push(if samples == 0 {
        unmeasured(
            "sessions_after_heal",
            "the server could not be sampled after the heal",
        )
    } else {
        crit(
            "sessions_after_heal",
            "the most server sessions of the pool held at once from 500 ms after the heal on",
            format!("{most} ({samples} samples)"),
            &format!("<= {MAX_SIZE}"),
            most <= MAX_SIZE,
        )
    });
    if let Some(deepest) = sampler.queue_between(start, heal) {
        report
            .metrics
            .insert("accept_queue_max_in_fault".into(), deepest as f64);
    }
    report.criteria.push(
        match sampler.queue_between(heal + 500.0, f64::INFINITY) {
            None => unmeasured(
                "accept_queue_after_heal",
                "the server's accept queue cannot be read here (it is not on this machine, or there is no /proc)",
            ),
            Some(deepest) => {
                report
                    .metrics
                    .insert("accept_queue_max_after_heal".into(), deepest as f64);
                crit(
                    "accept_queue_after_heal",
                    "the most connections waiting in the server's accept queue from 500 ms after the heal on (/proc/net/tcp, every 20 ms): a flooded server turns everyone away",
                    deepest.to_string(),
                    &format!("<= {MAX_SIZE}"),
                    deepest <= MAX_SIZE as u64,
                )
            }
        },
    );
    let first = ops
        .iter()
        .filter(|o| o.end_ms >= heal && o.outcome == Outcome::Ok)
        .map(|o| o.end_ms)
        .fold(f64::INFINITY, f64::min);
    let arrived_after = ops.iter().filter(|o| o.start_ms >= first).count();
    if first.is_finite() {
        let recovery = first - heal;
        report.metrics.insert("recovery_ms".into(), recovery);
        report.criteria.push(timed(
            "recovery",
            "time from the heal to the first success",
            format!("{recovery:.0} ms"),
            "<= 1000 ms",
            Some(recovery),
            1000.0,
        ));
        let failed_after: Vec<&Op> = ops
            .iter()
            .filter(|o| o.start_ms >= first && o.outcome != Outcome::Ok)
            .collect();
        let in_flight_failed = ops
            .iter()
            .filter(|o| o.start_ms < first && o.end_ms > first && o.outcome != Outcome::Ok)
            .count();
        report.metrics.insert(
            "failures_after_first_success".into(),
            failed_after.len() as f64,
        );
        report.metrics.insert(
            "waiting_at_first_success_then_failed".into(),
            in_flight_failed as f64,
        );
        report.criteria.push(crit(
            "no_failure_after_first_success",
            "requests that arrived after the first success since the heal and failed",
            format!("{} of {arrived_after}", failed_after.len()),
            "0",
            failed_after.is_empty(),
        ));
        if let Some(op) = failed_after.first() {
            report.anomalies.push(format!(
                "first failure after the first success at {:.0} ms: {}",
                op.start_ms,
                op.error.clone().unwrap_or_default()
            ));
        }
    } else {
        report.criteria.push(timed(
            "recovery",
            "time from the heal to the first success",
            "never recovered: no success after the heal".into(),
            "<= 1000 ms",
            None,
            1000.0,
        ));
    }
    report.criteria.push(crit(
        "no_leak",
        "connections left on the server after shutdown (pg_stat_activity by application_name)",
        server_left.to_string(),
        "0",
        server_left == 0,
    ));
}

fn unmeasured(id: &str, why: &str) -> Criterion {
    unknown(id, why)
}

/// A service's load under a fault.
pub struct Family;

impl FamilyTrait for Family {
    type Item = &'static Fault;
    fn items() -> Vec<Self::Item> {
        SERVICE_FAULTS.iter().collect()
    }
    fn name(item: Self::Item) -> &'static str {
        item.name
    }
    fn description(item: Self::Item) -> &'static str {
        item.description
    }
    fn run<'a>(item: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a> {
        Box::pin(run(ctx.env, item, kind, ctx.timing, ctx.progress))
    }
}
