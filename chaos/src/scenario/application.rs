//! Faults the application makes: request handlers that return early inside a transaction,
//! fail one, or are dropped by a deadline mid-query or mid-transaction, as web frameworks do
//! with every request timeout. Each is followed by a check request, on whatever session the
//! pool hands out next. Run against every pool under test: a pool that hands the next user a
//! dirty session, or leaves an abandoned query running on the server, fails here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::family::{Ctx, Family as FamilyTrait, Running};
use super::judge::{crit, not_started, timed};
use super::runner::{Progress, Timing, make_subject};
use crate::fault::Env;
use crate::peers::{Handler, MAX_SIZE, PoolKind, Subject};
use crate::report::{Op, Outcome, ScenarioReport};
use crate::rng::Rng;

/// The scenario's name.
pub const NAME: &str = "abandoned_sessions";
/// What it does, for `--list` and reports.
pub const DESCRIPTION: &str = "Application-made faults: handlers return early inside a transaction, fail one, or are dropped by a deadline mid-query (a 2 s pg_sleep cut after 50 ms) or mid-transaction; each is followed by a check on the next session handed out.";

/// The handlers that leave a session dirty, picked at random.
const DIRTY: [Handler; 4] = [
    Handler::EarlyReturn,
    Handler::FailedTransaction,
    Handler::AbandonQuery,
    Handler::DroppedHandler,
];

/// A check slower than this waited behind something (an abandoned query runs 2 s).
const NEXT_REQUEST_BOUND_MS: f64 = 1000.0;

/// How long an abandoned query may go on running on the server after it began (each is
/// abandoned 50 or 100 ms in; it runs 2 s when nobody stops it).
const ABANDONED_BOUND_MS: f64 = 600.0;

/// The oldest abandoned `pg_sleep` of `app` running on the server now: how long since it
/// began, ms (0 when none runs).
async fn oldest_abandoned_ms(env: &Env, app: &str) -> crate::Result<i64> {
    env.count_on_server(
        "SELECT coalesce(max((extract(epoch FROM now() - query_start) * 1000)::bigint), 0) \
         FROM pg_stat_activity WHERE application_name = $1 \
         AND state = 'active' AND query LIKE '%pg_sleep%'",
        app,
    )
    .await
}

/// A check cut by a deadline (the acquire's, or the check's own): how long it would have
/// taken is not known, only that it is past the deadline.
fn timed_out(op: &Op) -> bool {
    matches!(op.error.as_deref(), Some("timeout" | "query_timeout"))
}

/// Runs the scenario against a pool of `kind`, directly on the server (no proxy).
pub async fn run(
    env: &Env,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    let app = format!("chaos-{}-{NAME}", kind.name().replace('+', "-"));
    let mut report = ScenarioReport::new(NAME, kind.name(), kind.is_ours(), DESCRIPTION);
    let subject: Arc<dyn Subject> = match make_subject(kind, &env.db.url(), &app, env.seed).await {
        Ok(s) => Arc::from(s),
        Err(e) => {
            report.criteria.push(not_started(e));
            return report;
        }
    };
    progress.phase(NAME, kind.name(), "handlers");
    let origin = Instant::now();
    let ms = move |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let ops: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let until = origin + timing.before + timing.during + timing.after;
    let mut workers = Vec::new();
    for w in 0..timing.workers.min(MAX_SIZE) {
        let (subject, ops) = (Arc::clone(&subject), Arc::clone(&ops));
        let mut rng = Rng::new(crate::rng::seed_for(env.seed, &format!("{app}-{w}")));
        workers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let dirty = DIRTY[rng.below(DIRTY.len() as u64) as usize];
                let _ = subject.handle(dirty).await;
                let started = Instant::now();
                let (outcome, error) = subject.handle(Handler::Check).await;
                let op = Op {
                    start_ms: ms(started),
                    end_ms: ms(Instant::now()),
                    outcome,
                    error,
                };
                ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
                tokio::time::sleep(timing.pace).await;
            }
        }));
    }
    // Abandoned queries still running on the server, sampled every 100 ms.
    let mut oldest_running = 0;
    let mut sampled = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(age) = oldest_abandoned_ms(env, &app).await {
            oldest_running = oldest_running.max(age);
            sampled += 1;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    progress.phase(NAME, kind.name(), "shutdown");
    subject.shutdown().await;
    drop(subject);
    let server_left = env.wait_no_connections(&app, Duration::from_secs(5)).await;

    let mut ops = std::mem::take(&mut *ops.lock().unwrap_or_else(|e| e.into_inner()));
    ops.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    report.duration_ms = ms(Instant::now());
    let checks = ops.len();
    let dirty = ops
        .iter()
        .filter(|o| o.error.as_deref() == Some("dirty_session"))
        .count();
    let other_failures = ops
        .iter()
        .filter(|o| {
            o.outcome != Outcome::Ok && o.error.as_deref() != Some("dirty_session") && !timed_out(o)
        })
        .count();
    let timeouts = ops.iter().filter(|o| timed_out(o)).count();
    // A check cut by its deadline counts as endless: a percentile it reaches is a miss no lag
    // excuses.
    let mut latencies: Vec<f64> = ops
        .iter()
        .map(|o| if timed_out(o) { f64::INFINITY } else { o.latency_ms() })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p99 = crate::measure::percentile(&latencies, 0.99).unwrap_or(0.0);
    let longest = ops.iter().map(Op::latency_ms).fold(0.0, f64::max);
    report.metrics.insert("checks".into(), checks as f64);
    report
        .metrics
        .insert("dirty_checkouts".into(), dirty as f64);
    report.metrics.insert("next_request_p99_ms".into(), p99);
    report.metrics.insert("longest_request_ms".into(), longest);
    report
        .metrics
        .insert("abandoned_longest_ms".into(), oldest_running as f64);
    report.metrics.insert("check_timeouts".into(), timeouts as f64);
    for op in &ops {
        report.phases.during.add(op.outcome);
    }
    if checks == 0 {
        report.mark_unavailable(
            "checks",
            crate::report::Unavailable::NothingHappened {
                detail: "no check request completed, so nothing was measured".into(),
            },
        );
        report.ops = ops;
        return report;
    }
    report.criteria.push(crit(
        "no_dirty_checkout",
        "checks that started inside a transaction a previous handler left (its SET LOCAL mark visible, or 'current transaction is aborted')",
        format!("{dirty} of {checks}"),
        "0",
        dirty == 0,
    ));
    report.criteria.push(timed(
        "next_request",
        "the next request's latency after a dirty handler (p99; a check cut by its deadline counts as endless): no waiting behind an abandoned query",
        format!("p99 {p99:.0} ms, longest {longest:.0} ms, {timeouts} timed out"),
        &format!("p99 <= {NEXT_REQUEST_BOUND_MS:.0} ms"),
        p99.is_finite().then_some(p99),
        NEXT_REQUEST_BOUND_MS,
    ));
    report.criteria.push(if sampled == 0 {
        crate::scenario::judge::unknown(
            "abandoned_stopped",
            "pg_stat_activity could not be read, so abandoned queries were not seen",
        )
    } else {
        timed(
            "abandoned_stopped",
            "the longest an abandoned query was seen running on the server since it began (pg_stat_activity, sampled every 100 ms; one left alone runs 2 s)",
            format!("{oldest_running} ms ({sampled} samples)"),
            &format!("<= {ABANDONED_BOUND_MS:.0} ms"),
            Some(oldest_running as f64),
            ABANDONED_BOUND_MS,
        )
    });
    report.criteria.push(crit(
        "checks_succeed",
        "checks that failed with an error (other than a dirty session; a timeout is judged by next_request)",
        format!("{other_failures} of {checks}"),
        "0",
        other_failures == 0,
    ));
    report.criteria.push(crit(
        "no_leak",
        "connections left on the server after shutdown (pg_stat_activity by application_name)",
        server_left.to_string(),
        "0",
        server_left == 0,
    ));
    report.ops = ops;
    report
}

/// Faults the application makes: one scenario.
pub struct Family;

impl FamilyTrait for Family {
    type Item = ();
    fn items() -> Vec<Self::Item> {
        vec![()]
    }
    fn name(_: Self::Item) -> &'static str {
        NAME
    }
    fn description(_: Self::Item) -> &'static str {
        DESCRIPTION
    }
    fn run<'a>(_: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a> {
        Box::pin(run(ctx.env, kind, ctx.timing, ctx.progress))
    }
}
