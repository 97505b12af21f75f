//! Running a plan: each fault applied at its time on a scenario proxy, healed at its end or
//! when the run is told to stop, and what happened to each recorded.

use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::spec::{Plan, PlannedFault, What};
use crate::fault::{self, Env, HaFault, ScenarioProxy};
use crate::postgres::HaCluster;

/// What a plan's faults act on.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// A proxy in front of the single server (toxics, the suite's faults, the kernel's).
    Proxy {
        /// The database and the fault controller.
        env: &'a Env,
        /// The proxy.
        proxy: &'a ScenarioProxy,
    },
    /// The HA cluster of the plan's `[cluster]` (the `ha_*` faults).
    Cluster(&'a Arc<HaCluster>),
}

/// What happened to one planned fault.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanEvent {
    /// Its label (`down`, `latency downstream`, ...).
    pub label: String,
    /// The line of its `[[fault]]`.
    pub line: usize,
    /// When it was planned, seconds from the origin.
    pub planned_s: f64,
    /// When it was asked for: its timer fired and the fault began to be applied (`None`: the
    /// run stopped first: not reached).
    pub start_s: Option<f64>,
    /// When it took effect: the toxic was set, the proxy down, the server stopped (`None`:
    /// never, see `error`). `effective_s - planned_s` is the timeline's accuracy.
    #[serde(default)]
    pub effective_s: Option<f64>,
    /// When it was healed.
    pub end_s: Option<f64>,
    /// Why it could not be applied or healed.
    pub error: Option<String>,
}

impl PlanEvent {
    /// `line N: label: error` when the fault could not be applied or healed.
    pub fn failure(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|err| format!("line {}: {}: {err}", self.line, self.label))
    }
}

/// Runs `plan` on `proxy` of `env`, times counted from `origin`, until every fault has ended
/// or `stop` completes; then the faults in force are healed and those not yet begun are not
/// applied. Returns what happened to each fault, in plan order. Cancel safe only in the
/// sense that a dropped run leaves a toxic in place: await it to the end.
///
/// # Examples
/// ```no_run
/// # async fn f(env: chaos::fault::Env) -> chaos::Result<()> {
/// let plan = chaos::plan::Plan::parse("[[fault]]\nat = \"1s\"\nduration = \"2s\"\nkind = \"down\"\n").unwrap();
/// let proxy = env.proxy("under_plan").await?;
/// // ... point the service under test at proxy.url ...
/// let events = chaos::plan::run(&plan, &env, &proxy, tokio::time::Instant::now(), std::future::pending()).await;
/// assert!(events.iter().all(|e| e.error.is_none()));
/// # Ok(()) }
/// ```
pub async fn run(
    plan: &Plan,
    env: &Env,
    proxy: &ScenarioProxy,
    origin: Instant,
    stop: impl Future<Output = ()>,
) -> Vec<PlanEvent> {
    run_with(plan, env, proxy, origin, stop, &|_| {}).await
}

/// Like [`run`], calling `progress` with each event as a fault takes effect and as it ends.
pub async fn run_with(
    plan: &Plan,
    env: &Env,
    proxy: &ScenarioProxy,
    origin: Instant,
    stop: impl Future<Output = ()>,
    progress: &(dyn Fn(&PlanEvent) + Sync),
) -> Vec<PlanEvent> {
    run_on(plan, Target::Proxy { env, proxy }, origin, stop, progress).await
}

/// Like [`run_with`], on any [`Target`]: the HA cluster for a plan with a `[cluster]`.
pub async fn run_on(
    plan: &Plan,
    target: Target<'_>,
    origin: Instant,
    stop: impl Future<Output = ()>,
    progress: &(dyn Fn(&PlanEvent) + Sync),
) -> Vec<PlanEvent> {
    let events = Arc::new(Mutex::new(not_begun(plan)));
    let (tx, rx) = watch::channel(false);
    let shared = Shared {
        target,
        origin,
        events: Arc::clone(&events),
        progress,
    };
    let all = futures_util::future::join_all(
        plan.faults
            .iter()
            .enumerate()
            .map(|(i, f)| one(i, f, &shared, rx.clone())),
    );
    tokio::pin!(all);
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut all => {}
        _ = &mut stop => {
            let _ = tx.send(true);
            all.await;
        }
    }
    let events = events.lock().unwrap_or_else(|e| e.into_inner());
    events.clone()
}

/// The events of `plan` before anything ran: every fault planned, none begun (what a run
/// that never started reports).
pub fn not_begun(plan: &Plan) -> Vec<PlanEvent> {
    plan.faults
        .iter()
        .map(|f| PlanEvent {
            label: f.what.label(),
            line: f.line,
            planned_s: f.at.as_secs_f64(),
            start_s: None,
            effective_s: None,
            end_s: None,
            error: None,
        })
        .collect()
}

/// What every fault of one run shares.
struct Shared<'a> {
    target: Target<'a>,
    origin: Instant,
    events: Arc<Mutex<Vec<PlanEvent>>>,
    progress: &'a (dyn Fn(&PlanEvent) + Sync),
}

async fn one(i: usize, fault: &PlannedFault, run: &Shared<'_>, mut stop: watch::Receiver<bool>) {
    let Shared {
        target,
        origin,
        events,
        progress,
    } = run;
    let origin = *origin;
    let secs = |at: Instant| at.duration_since(origin).as_secs_f64();
    let mut stopped = stop.clone();
    tokio::select! {
        _ = tokio::time::sleep_until(origin + fault.at) => {}
        _ = stopped.wait_for(|s| *s) => return,
    }
    let record = |f: &dyn Fn(&mut PlanEvent)| {
        let mut all = events.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut all[i]);
        all[i].clone()
    };
    let set = |f: &dyn Fn(&mut PlanEvent)| progress(&record(f));
    let started = Instant::now();
    record(&|e| e.start_s = Some(secs(started)));
    tracing::info!(fault = %fault.what.label(), line = fault.line, "planned fault begins");
    let set = &set;
    // Polled first once the fault is in force, so its duration counts from then.
    let heal = async move {
        let effective = Instant::now();
        set(&|e| e.effective_s = Some(secs(effective)));
        tokio::select! {
            _ = tokio::time::sleep(fault.duration) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    };
    let result = match (&fault.what, *target) {
        (What::Ha(h), Target::Cluster(cluster)) => ha_until(cluster, *h, heal).await,
        (What::Ha(h), Target::Proxy { .. }) => Err(crate::Error::Unexpected(format!(
            "{} needs the HA cluster: add [cluster] to the plan",
            h.name()
        ))),
        (_, Target::Cluster(_)) => Err(crate::Error::Unexpected(format!(
            "{} needs a proxy in front of one server; a plan with [cluster] takes the ha_* faults",
            fault.what.label()
        ))),
        (What::Toxic(t), Target::Proxy { env, proxy }) => {
            match env.faults.add_toxic(&proxy.name, t).await {
                Ok(()) => {
                    heal.await;
                    env.faults
                        .remove_toxic(&proxy.name, &t.name)
                        .await
                        .map_err(crate::Error::from)
                }
                Err(e) => Err(e.into()),
            }
        }
        (What::Matrix(f), Target::Proxy { env, proxy }) => {
            fault::apply_until(env, proxy, f, "", heal).await
        }
        (What::KernelLoss(percent), Target::Proxy { proxy, .. }) => {
            let loss = crate::kernel::KernelFault::Loss { percent: *percent };
            fault::kernel_until(proxy, loss, heal).await
        }
    };
    let ended = Instant::now();
    let error = result.err().map(|e| e.to_string());
    if let Some(e) = &error {
        tracing::warn!(fault = %fault.what.label(), line = fault.line, error = %e, "planned fault could not be applied");
    }
    set(&|e| {
        e.end_s = Some(secs(ended));
        e.error = error.clone();
    });
}

/// Makes an HA fault until `heal`, then restores the cluster ([`HaFault::until`]).
async fn ha_until(
    cluster: &Arc<HaCluster>,
    h: HaFault,
    heal: impl Future<Output = ()>,
) -> crate::Result<()> {
    let hit = h.until(cluster, heal).await?;
    tracing::info!(fault = h.name(), leader = %hit.leader, victim = ?hit.victim, "HA fault made and healed");
    Ok(())
}
