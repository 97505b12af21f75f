//! The replaced system's validation script (`validation_scenarios.py`), every scenario and
//! success criterion measured for real, with its bound beside the measured value.

mod basics;
mod common;
mod observe;
mod outage;

use tokio::time::Instant;

use basics::{acquire, concurrency, init, shutdown};
use common::blank;
use observe::{health, leaks, logs, memory};
use outage::outage;

use super::family::{Ctx, Family as FamilyTrait, Running};
use super::family::Stage;
use super::judge::crit;
use super::runner::{Progress, Timing};
use crate::fault::Env;
use crate::peers::PoolKind;
use crate::report::ScenarioReport;

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
