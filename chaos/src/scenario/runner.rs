//! The runner every fault family shares: where a scenario runs ([`Arena`]), how long
//! ([`Timing`]), the recorded history of its requests, its progress, and the fault runner
//! ([`run_fault`], [`run_plan`]): load, fault, heal, load, shutdown, leak check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::judge::{judge, not_started};
use crate::fault::{Env, Fault, PLAN};
use crate::peers::{BoxFut, MAX_SIZE, OpenArgs, OpenError, PoolKind, QUERY_TIMEOUT, Subject};
use crate::report::{FaultWindow, Op, Outcome, ScenarioReport, Unavailable};

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

/// A request still running after this is cut and recorded as a hang.
pub const HANG_CUTOFF: Duration = Duration::from_secs(4);

/// Why a scenario could not start.
#[derive(Debug)]
pub enum SetupError {
    /// The fault injector could not be set up (the scenario is `unknown`, with why).
    Injector(Unavailable),
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
    fn open<'a>(&'a self, kind: PoolKind, app: &'a str) -> BoxFut<'a, Result<Opened, SetupError>>;
    /// Injects `fault` for `during`, then heals it.
    fn inject<'a>(
        &'a self,
        handle: &'a str,
        fault: &'a Fault,
        app: &'a str,
        during: Duration,
    ) -> BoxFut<'a, crate::Result<()>>;
    /// Runs `plan` on the injector made by `open`, from now to its last fault's end. An arena
    /// without a real proxy cannot.
    fn inject_plan<'a>(
        &'a self,
        handle: &'a str,
        plan: &'a crate::plan::Plan,
    ) -> BoxFut<'a, crate::Result<()>> {
        let _ = (handle, plan);
        Box::pin(async {
            Err(crate::Error::NotApplicable {
                fault: "a fault plan".into(),
                on: "on this arena: plans need the real proxy".into(),
            })
        })
    }
    /// Connections of `app` the server still holds, waiting (bounded) for them to go.
    fn left_on_server<'a>(&'a self, app: &'a str) -> BoxFut<'a, i64>;
    /// Removes the fault injector made by `open`.
    fn close<'a>(&'a self, handle: &'a str) -> BoxFut<'a, ()>;
}

impl Arena for Env {
    fn owns_server(&self) -> bool {
        self.db.cluster().is_some()
    }
    fn open<'a>(&'a self, kind: PoolKind, app: &'a str) -> BoxFut<'a, Result<Opened, SetupError>> {
        Box::pin(async move {
            let proxy = self
                .proxy(&format!("chaos_{}", app.replace('-', "_")))
                .await
                .map_err(|e| {
                    SetupError::Injector(Unavailable::Injector {
                        detail: format!("could not create the proxy: {e}"),
                    })
                })?;
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
    ) -> BoxFut<'a, crate::Result<()>> {
        Box::pin(async move {
            let proxy = self.made_proxy(handle);
            crate::fault::apply(self, &proxy, fault, app, during).await
        })
    }
    fn inject_plan<'a>(
        &'a self,
        handle: &'a str,
        plan: &'a crate::plan::Plan,
    ) -> BoxFut<'a, crate::Result<()>> {
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
                Err(crate::Error::PlanFailed(failed))
            }
        })
    }
    fn left_on_server<'a>(&'a self, app: &'a str) -> BoxFut<'a, i64> {
        Box::pin(self.wait_no_connections(app, Duration::from_secs(5)))
    }
    fn close<'a>(&'a self, handle: &'a str) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let _ = self.faults.delete_proxy(handle).await;
        })
    }
}

/// Builds a pool of `kind` connected through `url`, tagged `app`; `seed` drives our pool's
/// jitter.
pub async fn make_subject(
    kind: PoolKind,
    url: &str,
    app: &str,
    seed: u64,
) -> Result<Box<dyn Subject>, OpenError> {
    make_subject_with(kind, url, app, seed, false).await
}

/// [`make_subject`], with the pool told whether a transaction-pooling middlebox is in the
/// path ([`OpenArgs::transaction_pooling`]).
pub async fn make_subject_with(
    kind: PoolKind,
    url: &str,
    app: &str,
    seed: u64,
    transaction_pooling: bool,
) -> Result<Box<dyn Subject>, OpenError> {
    kind.open(OpenArgs {
        url,
        app,
        seed,
        transaction_pooling,
    })
    .await
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
        report.mark_unavailable("kernel", kernel_unavailable(&e));
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
    if let Err(e) = &applied {
        report.unavailable = Some(Unavailable::FaultRefused {
            detail: e.to_string(),
        });
    }
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
    let mut report =
        ScenarioReport::new(fault.name, kind.name(), kind.is_ours(), fault.description);
    if fault.needs_cluster && !env.owns_server() {
        report.mark_unavailable("server_restart", Unavailable::ServerNotOurs);
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
        Err(SetupError::Injector(why)) => {
            report.mark_unavailable("setup", why);
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

/// Why kernel faults cannot run here, as a report says it.
pub(crate) fn kernel_unavailable(e: &crate::kernel::KernelError) -> Unavailable {
    use crate::kernel::KernelError;
    match e {
        KernelError::NotRoot => Unavailable::NotRoot {
            detail: e.to_string(),
        },
        KernelError::NoNft(_) => Unavailable::MissingProgram {
            program: "nft".into(),
            detail: e.to_string(),
        },
        _ => Unavailable::Injector {
            detail: e.to_string(),
        },
    }
}
