//! The chaos suite: the replaced system's validation scenarios, measured for real, and a fault
//! matrix run against each pool under a steady load plus bursts.
//!
//! Every scenario writes its pass criteria (measured value beside the bound) into its report.
//! A fault scenario's requests fall in four phases ([`Phases::of`]): before the fault, during
//! it (including those in flight when it began), recovering (after the heal, until the first
//! success: the pool's fast failures while it notices the database is back), and after.
//! Requests are recorded as a Jepsen-style history; after the pool shuts down, the server is asked
//! (`pg_stat_activity`, by `application_name`) whether any connection was left behind.

pub mod application;
pub mod bouncer;
pub mod failover;
pub mod logs;
pub mod service;
pub mod subject;
pub mod validation;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

pub use crate::fault::{Env, Fault, MATRIX, PLAN};
use crate::report::{Criterion, FaultWindow, Op, Outcome, Phases, ScenarioReport, Verdict};
pub use subject::PoolKind;
use subject::Subject;

/// One scenario of the suite: a validation scenario (our pool only) or an entry of the fault
/// matrix (every pool under test).
#[derive(Debug, Clone, Copy)]
pub enum Scenario {
    /// The replaced system's validation scenarios.
    Validation(validation::Validation),
    /// A fault of the matrix.
    Fault(&'static Fault),
    /// Faults the application makes: dirty and abandoned sessions ([`application`]).
    Application,
    /// Faults the deployment makes: a failover or switchover to a streaming standby
    /// ([`failover`]).
    Deployment(failover::Change),
    /// A fault of PgBouncer in the pool's path ([`bouncer`]).
    Bouncer(&'static Fault),
    /// A fault under a service's open-loop load ([`service`]).
    Service(&'static Fault),
    /// The plan of `chaos run --plan` ([`run_plan`]).
    Plan,
}

impl Scenario {
    /// Every scenario, validation first, then the fault matrix.
    pub fn all() -> Vec<Scenario> {
        validation::Validation::ALL
            .into_iter()
            .map(Scenario::Validation)
            .chain(MATRIX.iter().map(Scenario::Fault))
            .chain([Scenario::Application])
            .chain(failover::Change::ALL.map(Scenario::Deployment))
            .chain(crate::fault::BOUNCER_FAULTS.iter().map(Scenario::Bouncer))
            .chain(crate::fault::SERVICE_FAULTS.iter().map(Scenario::Service))
            .collect()
    }

    /// The scenario `--scenario NAME` names.
    pub fn by_name(name: &str) -> Option<Scenario> {
        Self::all().into_iter().find(|s| s.name() == name)
    }

    /// The name for `--scenario` and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Validation(v) => v.name(),
            Scenario::Fault(f) => f.name,
            Scenario::Application => application::NAME,
            Scenario::Deployment(c) => c.name(),
            Scenario::Bouncer(f) | Scenario::Service(f) => f.name,
            Scenario::Plan => PLAN.name,
        }
    }

    /// What it does, for `--list`.
    pub fn description(&self) -> &'static str {
        match self {
            Scenario::Validation(_) => "validation (pool only)",
            Scenario::Fault(f) => f.description,
            Scenario::Application => application::DESCRIPTION,
            Scenario::Deployment(c) => c.description(),
            Scenario::Bouncer(f) | Scenario::Service(f) => f.description,
            Scenario::Plan => PLAN.description,
        }
    }
}

/// Which pools to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolChoice {
    /// Ours, by both paths: `acquire` and the shared `Pool::query`.
    Pool,
    /// deadpool-postgres, at its defaults and with recommended timeouts.
    Deadpool,
    /// bb8-postgres, at its defaults and with recommended timeouts.
    Bb8,
    /// sqlx's `PgPool`, at its defaults and with the recommended acquire timeout.
    Sqlx,
    /// All of them, side by side.
    All,
}

/// Sizes of a run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Load before the fault.
    pub before: Duration,
    /// The fault.
    pub during: Duration,
    /// Load after the heal.
    pub after: Duration,
    /// Steady workers.
    pub workers: usize,
    /// Pause between one worker's requests.
    pub pace: Duration,
    /// CI-sized.
    pub quick: bool,
}

impl Timing {
    /// Full or quick (CI-sized).
    pub fn new(quick: bool) -> Self {
        if quick {
            Timing {
                before: Duration::from_millis(500),
                during: Duration::from_millis(1000),
                after: Duration::from_millis(1000),
                workers: 4,
                pace: Duration::from_millis(20),
                quick: true,
            }
        } else {
            Timing {
                before: Duration::from_millis(1500),
                during: Duration::from_millis(3000),
                after: Duration::from_millis(2500),
                workers: 6,
                pace: Duration::from_millis(10),
                quick: false,
            }
        }
    }
}

/// Pool size used by every scenario.
pub const MAX_SIZE: usize = 5;
/// Acquire deadline given to every pool that has one.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on each query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// A request still running after this is cut and recorded as a hang.
pub const HANG_CUTOFF: Duration = Duration::from_secs(4);

/// Why a scenario could not start.
#[derive(Debug)]
pub enum SetupError {
    /// The fault injector could not be set up (the scenario is `unknown`).
    Injector(String),
    /// The pool under test did not start (a failed criterion).
    Pool(String),
}

/// A pool under test and the handle of its fault injector.
pub type Opened = (Box<dyn Subject>, String);

/// Where a fault scenario runs: something that makes a pool under test, injects a fault on
/// its path to the database, and says what the server still holds afterwards. [`Env`] is the
/// real one (a proxy in front of PostgreSQL); a fake database under paused time makes a
/// deterministic one (`chaos/tests/deterministic.rs`).
pub trait Arena: Send + Sync {
    /// Whether the server may be stopped and restarted.
    fn owns_server(&self) -> bool;
    /// Makes a pool of `kind`, tagged `app`, behind its own fault injector; returns the pool
    /// and a handle for [`Arena::inject`] and [`Arena::close`].
    fn open<'a>(
        &'a self,
        kind: PoolKind,
        app: &'a str,
    ) -> subject::BoxFut<'a, Result<Opened, SetupError>>;
    /// Injects `fault` for `during`, then heals it.
    fn inject<'a>(
        &'a self,
        handle: &'a str,
        fault: &'a Fault,
        app: &'a str,
        during: Duration,
    ) -> subject::BoxFut<'a, crate::Result<()>>;
    /// Runs `plan` on the injector made by `open`, from now to its last fault's end. An arena
    /// without a real proxy cannot.
    fn inject_plan<'a>(
        &'a self,
        handle: &'a str,
        plan: &'a crate::plan::Plan,
    ) -> subject::BoxFut<'a, crate::Result<()>> {
        let _ = (handle, plan);
        Box::pin(async {
            Err(crate::Error::Check(
                "this arena cannot run a fault plan".into(),
            ))
        })
    }
    /// Connections of `app` the server still holds, waiting (bounded) for them to go.
    fn left_on_server<'a>(&'a self, app: &'a str) -> subject::BoxFut<'a, i64>;
    /// Removes the fault injector made by `open`.
    fn close<'a>(&'a self, handle: &'a str) -> subject::BoxFut<'a, ()>;
}

impl Arena for Env {
    fn owns_server(&self) -> bool {
        self.db.cluster().is_some()
    }
    fn open<'a>(
        &'a self,
        kind: PoolKind,
        app: &'a str,
    ) -> subject::BoxFut<'a, Result<Opened, SetupError>> {
        Box::pin(async move {
            let proxy = self
                .proxy(&format!("chaos_{}", app.replace('-', "_")))
                .await
                .map_err(|e| SetupError::Injector(format!("could not create the proxy: {e}")))?;
            match make_subject(kind, &proxy.url, app, self.seed).await {
                Ok(s) => Ok((s, proxy.name)),
                Err(e) => {
                    self.drop_proxy(&proxy).await;
                    Err(SetupError::Pool(e.to_string()))
                }
            }
        })
    }
    fn inject<'a>(
        &'a self,
        handle: &'a str,
        fault: &'a Fault,
        app: &'a str,
        during: Duration,
    ) -> subject::BoxFut<'a, crate::Result<()>> {
        Box::pin(async move {
            let proxy = self.made_proxy(handle);
            crate::fault::apply(self, &proxy, fault, app, during).await
        })
    }
    fn inject_plan<'a>(
        &'a self,
        handle: &'a str,
        plan: &'a crate::plan::Plan,
    ) -> subject::BoxFut<'a, crate::Result<()>> {
        Box::pin(async move {
            let proxy = self.made_proxy(handle);
            let events = crate::plan::run(
                plan,
                self,
                &proxy,
                tokio::time::Instant::now(),
                std::future::pending(),
            )
            .await;
            let failed: Vec<String> = events
                .iter()
                .filter_map(crate::plan::PlanEvent::failure)
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(crate::Error::Check(failed.join("; ")))
            }
        })
    }
    fn left_on_server<'a>(&'a self, app: &'a str) -> subject::BoxFut<'a, i64> {
        Box::pin(self.wait_no_connections(app, Duration::from_secs(5)))
    }
    fn close<'a>(&'a self, handle: &'a str) -> subject::BoxFut<'a, ()> {
        Box::pin(async move {
            let _ = self.faults.delete_proxy(handle).await;
        })
    }
}

/// The suite's configuration of our pool through `url`, tagged `app`: the sizes and
/// deadlines every fault scenario and the soak use, and the run's seed for its jitter, so a
/// run replays with `--seed`.
pub fn pool_config(url: &str, app: &str, seed: u64) -> Result<pool::PoolConfig, pool::ConfigError> {
    Ok(pool::PoolConfig::from_url(url)?
        .application_name(app.to_string())
        .min_size(2)
        .max_size(MAX_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .query_timeout(QUERY_TIMEOUT)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .validation_timeout(Duration::from_millis(500))
        .probe_timeout(Duration::from_millis(500))
        .jitter_seed(Some(seed_for(seed, app))))
}

/// A seed for one part of a run (a pool tagged `app`), derived from the run's seed.
pub fn seed_for(seed: u64, part: &str) -> u64 {
    part.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Builds a pool of `kind` connected through `url`, tagged `app`; `seed` drives our pool's
/// jitter.
pub async fn make_subject(
    kind: PoolKind,
    url: &str,
    app: &str,
    seed: u64,
) -> Result<Box<dyn Subject>, subject::OpenError> {
    make_subject_with(kind, url, app, seed, false).await
}

/// [`make_subject`], with our pool told whether a transaction-pooling middlebox is in the
/// path (`PoolConfig::transaction_pooling`; the peers are not told: their requests are simple
/// queries, which it does not break).
pub async fn make_subject_with(
    kind: PoolKind,
    url: &str,
    app: &str,
    seed: u64,
    transaction_pooling: bool,
) -> Result<Box<dyn Subject>, subject::OpenError> {
    let timeouts = matches!(
        kind,
        PoolKind::DeadpoolTimeouts | PoolKind::Bb8Timeouts | PoolKind::SqlxTimeouts
    );
    Ok(match kind {
        PoolKind::Pool => Box::new(subject::OurPool(
            pool::Pool::connect(
                pool_config(url, app, seed)?.transaction_pooling(transaction_pooling),
            )
            .await?,
        )),
        PoolKind::PoolQuery => Box::new(subject::OurPoolShared(
            pool::Pool::connect(
                pool_config(url, app, seed)?.transaction_pooling(transaction_pooling),
            )
            .await?,
        )),
        PoolKind::Deadpool | PoolKind::DeadpoolTimeouts => Box::new(subject::Deadpool::new(
            url,
            MAX_SIZE,
            app,
            timeouts,
            ACQUIRE_TIMEOUT,
        )?),
        PoolKind::Bb8 | PoolKind::Bb8Timeouts => Box::new(subject::Bb8::new(
            url,
            MAX_SIZE,
            app,
            timeouts,
            ACQUIRE_TIMEOUT,
        )?),
        PoolKind::Sqlx | PoolKind::SqlxTimeouts => Box::new(subject::Sqlx::new(
            url,
            MAX_SIZE,
            app,
            timeouts,
            ACQUIRE_TIMEOUT,
        )?),
    })
}

impl PoolChoice {
    /// The pools this choice puts under test.
    pub fn kinds(self) -> Vec<PoolKind> {
        match self {
            PoolChoice::Pool => vec![PoolKind::Pool, PoolKind::PoolQuery],
            PoolChoice::Deadpool => vec![PoolKind::Deadpool, PoolKind::DeadpoolTimeouts],
            PoolChoice::Bb8 => vec![PoolKind::Bb8, PoolKind::Bb8Timeouts],
            PoolChoice::Sqlx => vec![PoolKind::Sqlx, PoolKind::SqlxTimeouts],
            PoolChoice::All => PoolKind::ALL.to_vec(),
        }
    }
}

/// What a running scenario shares with its workers.
struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64() * 1000.0
    }
    async fn request(&self, subject: &dyn Subject) {
        let started = Instant::now();
        let (outcome, error) =
            match tokio::time::timeout(HANG_CUTOFF, subject.request("SELECT 1", QUERY_TIMEOUT))
                .await
            {
                Ok(answer) => answer,
                Err(_) => (Outcome::Info, Some("hang".to_string())),
            };
        let op = Op {
            start_ms: self.ms(started),
            end_ms: self.ms(Instant::now()),
            outcome,
            error,
        };
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }
}

/// Progress of a running scenario, for the terminal.
pub trait Progress: Send + Sync {
    /// A phase began (`before`, `fault: ...`, `after`, `shutdown`).
    fn phase(&self, scenario: &str, pool: &str, phase: &str);
}

/// Runs one fault against one pool: load, fault, heal, load, shutdown, leak check.
pub async fn run_fault(
    env: &dyn Arena,
    fault: &Fault,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    run_injected(env, fault, None, kind, timing, progress).await
}

/// Runs `plan` against one pool, as [`run_fault`] runs a fault of the matrix.
pub async fn run_plan(
    env: &dyn Arena,
    plan: &crate::plan::Plan,
    kind: PoolKind,
    timing: Timing,
    progress: &dyn Progress,
) -> ScenarioReport {
    run_injected(env, &PLAN, Some(plan), kind, timing, progress).await
}

async fn run_injected(
    env: &dyn Arena,
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
    if let crate::fault::Kind::Kernel(_) = fault.kind
        && let Err(e) = crate::kernel::KernelFaults::available()
    {
        report.criteria.push(unknown("kernel", &e.to_string()));
        return report;
    }
    let Some((subject, proxy)) = open_subject(env, kind, &app, &mut report).await else {
        return report;
    };
    let recorder = Arc::new(Recorder {
        origin: Instant::now(),
        ops: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(tokio::sync::Notify::new());
    // Steady workers, and bursts of 3x max_size every second.
    let request = {
        let (s, r) = (Arc::clone(&subject), Arc::clone(&recorder));
        move || {
            let (s, r) = (Arc::clone(&s), Arc::clone(&r));
            async move { r.request(&*s).await }
        }
    };
    let steady = {
        let request = request.clone();
        move || {
            let request = request.clone();
            async move {
                request().await;
                timing.pace
            }
        }
    };
    let workload = crate::workload::Workload::start(
        timing.workers,
        steady,
        crate::workload::Bursts {
            size: 3 * MAX_SIZE,
            first_after: Duration::from_millis(1000),
            spacing: crate::workload::Spacing::AfterEnd(Duration::from_millis(1000)),
        },
        request,
    );
    let mut tasks = Vec::new();
    let health = Arc::new(Mutex::new(Vec::<(f64, String)>::new()));
    {
        let (s, r, h, stop) = (
            Arc::clone(&subject),
            Arc::clone(&recorder),
            Arc::clone(&health),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if let Some(status) = s.health() {
                    let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
                    if h.last().is_none_or(|(_, last)| *last != status) {
                        h.push((r.ms(Instant::now()), status));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.notified() => return,
                }
            }
        }));
    }

    progress.phase(fault.name, kind.name(), "before");
    tokio::time::sleep(timing.before).await;
    progress.phase(fault.name, kind.name(), &format!("fault: {}", fault.label));
    let fault_start = recorder.ms(Instant::now());
    let during = match fault.during_ms {
        Some([quick, full]) => Duration::from_millis(if timing.quick { quick } else { full }),
        None => timing.during,
    };
    let applied = match plan {
        Some(plan) => env.inject_plan(&proxy, plan).await,
        None => env.inject(&proxy, fault, &app, during).await,
    };
    if let Err(e) = &applied {
        report
            .anomalies
            .push(format!("fault could not be applied: {e}"));
    }
    let heal_at_ms = recorder.ms(Instant::now());
    progress.phase(fault.name, kind.name(), "after");
    tokio::time::sleep(timing.after).await;
    workload.stop().await;
    // notify_one, not notify_waiters: it keeps a permit when the health task is between two
    // waits (computing a status), which notify_waiters would lose, leaving that loop, and this
    // scenario waiting for it, running for ever (seen once in CI, under the bandwidth toxic).
    stop.notify_one();
    for t in tasks {
        let _ = t.await;
    }
    progress.phase(fault.name, kind.name(), "shutdown");
    subject.shutdown().await;
    let pool_left = subject.open_connections();
    drop(subject);
    let server_left = env.left_on_server(&app).await;
    env.close(&proxy).await;

    let mut ops = std::mem::take(&mut *recorder.ops.lock().unwrap_or_else(|e| e.into_inner()));
    ops.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    report.fault = Some(fault_window(fault, plan, fault_start, heal_at_ms));
    report.health = std::mem::take(&mut *health.lock().unwrap_or_else(|e| e.into_inner()));
    report.duration_ms = recorder.ms(Instant::now());
    judge(
        &mut report,
        kind,
        &ops,
        fault,
        fault_start,
        heal_at_ms,
        pool_left,
        server_left,
        applied.is_ok(),
    );
    report.ops = ops;
    report
}

/// The application name and the empty report of `fault` against `kind`, or the finished
/// report when it cannot run here (it stops a server this process does not own).
pub(crate) fn begin(
    env: &dyn Arena,
    fault: &Fault,
    kind: PoolKind,
) -> Result<(String, ScenarioReport), Box<ScenarioReport>> {
    let app = format!("chaos-{}-{}", kind.name().replace('+', "-"), fault.name);
    let mut report = ScenarioReport::new(fault.name, kind.name(), fault.description);
    if fault.needs_cluster && !env.owns_server() {
        report.criteria.push(unknown(
            "server_restart",
            "needs a throwaway cluster: DATABASE_URL points at a server this process does not own",
        ));
        return Err(Box::new(report));
    }
    Ok((app, report))
}

/// Makes a pool of `kind` tagged `app` behind its fault injector; when it cannot, says why
/// in `report` (an injector that could not be set up is `unknown`, a pool that did not start
/// a failure) and gives `None`.
pub(crate) async fn open_subject(
    env: &dyn Arena,
    kind: PoolKind,
    app: &str,
    report: &mut ScenarioReport,
) -> Option<(Arc<dyn Subject>, String)> {
    match env.open(kind, app).await {
        Ok((s, handle)) => Some((Arc::from(s), handle)),
        Err(SetupError::Injector(e)) => {
            report.criteria.push(unknown("setup", &e));
            None
        }
        Err(SetupError::Pool(e)) => {
            report.criteria.push(not_started(e));
            None
        }
    }
}

/// The fault window of a report: the fault's label, or the plan's count of faults.
pub(crate) fn fault_window(
    fault: &Fault,
    plan: Option<&crate::plan::Plan>,
    start_ms: f64,
    end_ms: f64,
) -> FaultWindow {
    FaultWindow {
        label: match plan {
            Some(p) => format!("plan: {} fault(s)", p.faults.len()),
            None => fault.label.to_string(),
        },
        start_ms,
        end_ms,
    }
}

/// A measured criterion: pass when `ok`.
pub(crate) fn crit(
    id: &str,
    description: &str,
    measured: String,
    bound: &str,
    ok: bool,
) -> Criterion {
    Criterion {
        id: id.into(),
        description: description.into(),
        measured,
        bound: bound.into(),
        verdict: verdict(ok),
    }
}

/// The failed criterion of a pool under test that did not start (`why`: its error).
pub(crate) fn not_started(why: impl std::fmt::Display) -> Criterion {
    crit("setup", "the pool starts", why.to_string(), "starts", false)
}

fn unknown(id: &str, why: &str) -> Criterion {
    Criterion {
        id: id.into(),
        description: why.into(),
        measured: "not measured".into(),
        bound: "-".into(),
        verdict: Verdict::Unknown,
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Fail }
}

/// Computes phases, figures and verdicts from the history.
#[allow(clippy::too_many_arguments)]
fn judge(
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
    let longest = ops.iter().map(Op::latency_ms).fold(0.0, f64::max);
    report.metrics.insert("longest_request_ms".into(), longest);
    let bound_ms = (ACQUIRE_TIMEOUT + QUERY_TIMEOUT).as_secs_f64() * 1000.0 + 500.0;
    let hangs = ops.iter().filter(|o| o.latency_ms() > bound_ms).count();
    report.criteria.push(Criterion {
        id: "no_hang".into(),
        description: "no request outlived its deadline (acquire + query bound, plus 500 ms)".into(),
        measured: format!("longest {longest:.0} ms, {hangs} over"),
        bound: format!("<= {bound_ms:.0} ms"),
        verdict: verdict(hangs == 0),
    });
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
    report.criteria.push(Criterion {
        id: "acquire_deadline".into(),
        description: "a failed acquire gave up within the acquire timeout (plus 250 ms)".into(),
        measured: format!("slowest failure {slowest_failure:.0} ms, {late_failures} over"),
        bound: format!("<= {give_up_bound:.0} ms"),
        verdict: verdict(late_failures == 0),
    });
    let first_ok = ops
        .iter()
        .find(|o| o.start_ms >= heal && o.outcome == Outcome::Ok);
    let recovery_bound = fault.recovery_bound_ms;
    match first_ok {
        Some(op) => {
            let recovery = (op.end_ms - heal).max(0.0);
            report.metrics.insert("recovery_ms".into(), recovery);
            report.criteria.push(Criterion {
                id: "recovery".into(),
                description: "time from the heal to the first success".into(),
                measured: format!("{recovery:.0} ms"),
                bound: format!("<= {recovery_bound:.0} ms"),
                verdict: verdict(recovery <= recovery_bound),
            });
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
            report.criteria.push(Criterion {
                id: "recovery".into(),
                description: "time from the heal to the first success".into(),
                measured: "no success after the heal".into(),
                bound: format!("<= {recovery_bound:.0} ms"),
                verdict: Verdict::Fail,
            });
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
        });
    }
    if !applied {
        for c in &mut report.criteria {
            c.verdict = Verdict::Unknown;
        }
    }
}
