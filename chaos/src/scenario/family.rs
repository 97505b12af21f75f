//! What a scenario family is to the suite ([`Family`]): the scenarios it lists, their names
//! and descriptions, when in a run they go and against which pools, and how each runs.

use crate::fault::Env;
use crate::peers::PoolKind;
use crate::report::ScenarioReport;

use super::runner::{Progress, Timing};

/// A future that runs one scenario (not `Send`: a run drives one scenario at a time).
pub type Running<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ScenarioReport> + 'a>>;

/// The load a fault plan runs under (`chaos run --plan P --load ...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Load {
    /// The suite's steady workers plus bursts of 3 x max_size (as the fault matrix).
    #[default]
    Steady,
    /// A service's open-loop load: a fixed arrival rate, each request with its own 2 s
    /// deadline (as the `service_*` scenarios).
    Service,
}

/// What a scenario is given to run.
pub struct Ctx<'a> {
    /// Where it runs.
    pub env: &'a Env,
    /// How long.
    pub timing: Timing,
    /// Where its phases are shown.
    pub progress: &'a dyn Progress,
    /// The plan of `chaos run --plan`, for the plan family.
    pub fault_plan: Option<&'a crate::plan::Plan>,
    /// The load the plan runs under.
    pub load: Load,
}

/// When in a run a scenario goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Once, against our pool (when it is chosen), before every other scenario.
    First,
    /// Against every chosen pool.
    PerPool,
    /// Once, against our pool (when it is chosen), after every other scenario.
    Last,
    /// Against every chosen pool, only when named with `--scenario`: too long for the
    /// default suite (the HA stack's scenarios take a minute each).
    Named,
}

/// A family of scenarios: one file, listed once in `scenario/mod.rs`.
pub trait Family {
    /// One scenario of the family.
    type Item: Copy + std::fmt::Debug + Send + Sync + 'static;
    /// Its scenarios, in run order (those `--list` shows and `--scenario` selects).
    fn items() -> Vec<Self::Item>;
    /// The name for `--scenario` and reports.
    fn name(item: Self::Item) -> &'static str;
    /// What it does, for `--list` and reports.
    fn description(item: Self::Item) -> &'static str;
    /// When in a run it goes.
    fn stage(item: Self::Item) -> Stage {
        let _ = item;
        Stage::PerPool
    }
    /// Runs it against `kind`.
    fn run<'a>(item: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a>;
}
