//! The criteria: each a measured value beside its bound, with a verdict. The fault runner's
//! criteria (`judge`) are read from the history of requests; the families add their own
//! with `crit`.

use crate::fault::Fault;
use crate::peers::{ACQUIRE_TIMEOUT, PoolKind, QUERY_TIMEOUT};
use crate::report::{Criterion, Op, Outcome, Phases, ScenarioReport, Verdict};

/// A measured criterion: pass when `ok`.
pub(crate) fn crit(
    id: &str,
    description: &str,
    measured: String,
    bound: &str,
    ok: bool,
) -> Criterion {
    Criterion::safety(id, description, measured, bound, verdict(ok))
}

/// A timing criterion: `value_ms` (`None`: never happened) at or below `bound_ms` passes; a
/// miss within the window's scheduling lag is judged `unknown` by the runner.
pub(crate) fn timed(
    id: &str,
    description: &str,
    measured: String,
    bound: &str,
    value_ms: Option<f64>,
    bound_ms: f64,
) -> Criterion {
    Criterion::timing(id, description, measured, bound, value_ms, bound_ms)
}

/// The failed criterion of a pool under test that did not start (`why`: its error).
pub(crate) fn not_started(why: impl std::fmt::Display) -> Criterion {
    crit("setup", "the pool starts", why.to_string(), "starts", false)
}

pub(crate) fn unknown(id: &str, why: &str) -> Criterion {
    Criterion {
        id: id.into(),
        description: why.into(),
        measured: "not measured".into(),
        bound: "-".into(),
        verdict: Verdict::Unknown,
        ..Default::default()
    }
}

pub(crate) fn verdict(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Fail }
}

/// `no_hang`: no request (`what`: "request", "write") outlived its deadline, the acquire and
/// query bounds plus 500 ms; records the longest as `longest_request_ms`.
pub(crate) fn no_hang(
    report: &mut ScenarioReport,
    what: &str,
    latencies_ms: impl Iterator<Item = f64> + Clone,
) {
    let longest = latencies_ms.clone().fold(0.0, f64::max);
    report.metrics.insert("longest_request_ms".into(), longest);
    let bound_ms = (ACQUIRE_TIMEOUT + QUERY_TIMEOUT).as_secs_f64() * 1000.0 + 500.0;
    let hangs = latencies_ms.filter(|&l| l > bound_ms).count();
    report.criteria.push(Criterion {
        id: "no_hang".into(),
        description: format!(
            "no {what} outlived its deadline (acquire + query bound, plus 500 ms)"
        ),
        measured: format!("longest {longest:.0} ms, {hangs} over"),
        bound: format!("<= {bound_ms:.0} ms"),
        verdict: verdict(hangs == 0),
        ..Default::default()
    });
}

/// Computes phases, figures and verdicts from the history.
#[allow(clippy::too_many_arguments)]
pub(crate) fn judge(
    report: &mut ScenarioReport,
    kind: PoolKind,
    ops: &[Op],
    fault: &Fault,
    start: f64,
    heal: f64,
    pool_left: usize,
    server_left: i64,
    applied: bool,
) {
    report.phases = Phases::of(ops, start, heal);
    no_hang(report, "request", ops.iter().map(Op::latency_ms));
    // A pool that gives up must give up on time: wait, connect and validation share one
    // deadline (peers that time each step separately let them add up).
    let give_up_bound = ACQUIRE_TIMEOUT.as_secs_f64() * 1000.0 + 250.0;
    let slowest_failure = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Fail)
        .map(Op::latency_ms)
        .fold(0.0, f64::max);
    let late_failures = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Fail && o.latency_ms() > give_up_bound)
        .count();
    report
        .metrics
        .insert("slowest_failure_ms".into(), slowest_failure);
    report.criteria.push(timed(
        "acquire_deadline",
        "a failed acquire gave up within the acquire timeout (plus 250 ms)",
        format!("slowest failure {slowest_failure:.0} ms, {late_failures} over"),
        &format!("<= {give_up_bound:.0} ms"),
        Some(slowest_failure),
        give_up_bound,
    ));
    if kind.is_ours() && fault.refuses_every_connection() {
        let c = fails_fast(report, ops, start, heal);
        report.criteria.push(c);
    }
    let first_ok = ops
        .iter()
        .find(|o| o.start_ms >= heal && o.outcome == Outcome::Ok);
    let recovery_bound = fault.recovery_bound_ms;
    match first_ok {
        Some(op) => {
            let recovery = (op.end_ms - heal).max(0.0);
            report.metrics.insert("recovery_ms".into(), recovery);
            report.criteria.push(timed(
                "recovery",
                "time from the heal to the first success",
                format!("{recovery:.0} ms"),
                &format!("<= {recovery_bound:.0} ms"),
                Some(recovery),
                recovery_bound,
            ));
            let settled = op.end_ms + 500.0;
            let late: Vec<&Op> = ops
                .iter()
                .filter(|o| o.start_ms >= settled && o.outcome != Outcome::Ok)
                .collect();
            report
                .metrics
                .insert("failures_after_recovery".into(), late.len() as f64);
            report.criteria.push(Criterion {
                id: "no_failure_after_recovery".into(),
                description: "no request failed once the pool had recovered (500 ms after the first success): no dead connection handed out".into(),
                measured: format!("{} failed", late.len()),
                bound: "0".into(),
                verdict: verdict(late.is_empty()),
                ..Default::default()
            });
            if let Some(op) = late.first() {
                report.anomalies.push(format!(
                    "first failure after recovery at {:.0} ms: {:?} {}",
                    op.start_ms,
                    op.outcome,
                    op.error.clone().unwrap_or_default()
                ));
            }
        }
        None => {
            report.criteria.push(timed(
                "recovery",
                "time from the heal to the first success",
                "no success after the heal".into(),
                &format!("<= {recovery_bound:.0} ms"),
                None,
                recovery_bound,
            ));
        }
    }
    report.metrics.insert(
        "server_connections_after_shutdown".into(),
        server_left as f64,
    );
    report.criteria.push(Criterion {
        id: "no_leak".into(),
        description:
            "connections left on the server after shutdown (pg_stat_activity by application_name)"
                .into(),
        measured: server_left.to_string(),
        bound: "0".into(),
        verdict: verdict(server_left == 0),
        ..Default::default()
    });
    report
        .metrics
        .insert("pool_connections_after_shutdown".into(), pool_left as f64);
    if kind.is_ours() {
        report.criteria.push(Criterion {
            id: "pool_empty".into(),
            description: "connections left in the pool after shutdown".into(),
            measured: pool_left.to_string(),
            bound: "0".into(),
            verdict: verdict(pool_left == 0),
            ..Default::default()
        });
    }
    if !applied {
        for c in &mut report.criteria {
            c.verdict = Verdict::Unknown;
        }
    }
}

/// How long, after the fault starts, the pool is given to notice the outage before it must
/// answer at once. A refused connection is noticed on the first attempt.
const NOTICE_MS: f64 = 200.0;

/// The most a request may take, during an outage that refuses every connection, for the pool
/// to count as failing fast: a fifth of the acquire timeout.
const FAST_MS: f64 = 200.0;

/// Our pool's promise during an outage that refuses every connection: once it has noticed
/// (`NOTICE_MS` into the window), a request is answered at once, with an error, instead of
/// waiting out its acquire timeout or until the heal. Judged on the median latency of the
/// requests begun from `NOTICE_MS` into the window to `FAST_MS` before the heal (a pool that
/// waits answers each of those later than `FAST_MS`), so one request that met an attempt in
/// flight does not decide it.
fn fails_fast(report: &mut ScenarioReport, ops: &[Op], start: f64, heal: f64) -> Criterion {
    let mut latencies: Vec<f64> = ops
        .iter()
        .filter(|o| o.start_ms >= start + NOTICE_MS && o.start_ms < heal - FAST_MS)
        .map(Op::latency_ms)
        .collect();
    let bound = format!("median <= {FAST_MS:.0} ms");
    let description = "during an outage that refuses every connection, requests were answered at once (median latency, from 200 ms into the fault to 200 ms before the heal)";
    if latencies.is_empty() {
        let mut c = timed(
            "fail_fast",
            description,
            "no request in the window".into(),
            &bound,
            None,
            FAST_MS,
        );
        c.verdict = Verdict::Unknown;
        c.note = Some(
            "no request began during the outage, so failing fast could not be observed".into(),
        );
        return c;
    }
    latencies.sort_by(f64::total_cmp);
    let median = latencies[latencies.len() / 2];
    report
        .metrics
        .insert("outage_answer_median_ms".into(), median);
    timed(
        "fail_fast",
        description,
        format!("median {median:.0} ms over {} requests", latencies.len()),
        &bound,
        Some(median),
        FAST_MS,
    )
}
