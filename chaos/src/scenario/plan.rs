//! The plan of `chaos run --plan` as a family: the plan's faults on its timeline, under the
//! suite's steady load ([`super::runner::run_plan`]) or a service's open-loop load
//! ([`super::service::run_plan`]). It lists no scenario: `--plan` selects it.

use crate::fault::PLAN;
use crate::peers::PoolKind;
use crate::report::ScenarioReport;

use super::family::{Ctx, Family as FamilyTrait, Load, Running};

/// The plan of `chaos run --plan`.
pub struct Family;

impl FamilyTrait for Family {
    type Item = ();
    fn items() -> Vec<Self::Item> {
        Vec::new()
    }
    fn name(_: Self::Item) -> &'static str {
        PLAN.name
    }
    fn description(_: Self::Item) -> &'static str {
        PLAN.description
    }
    fn run<'a>(_: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a> {
        Box::pin(async move {
            let Some(plan) = ctx.fault_plan else {
                let mut report = ScenarioReport::new(PLAN.name, kind.name(), kind.is_ours(), PLAN.description);
                report.mark_unavailable(
                    "plan",
                    crate::report::Unavailable::NothingHappened {
                        detail: "no plan was given (--plan)".into(),
                    },
                );
                return report;
            };
            match ctx.load {
                Load::Steady => {
                    super::runner::run_plan(ctx.env, plan, kind, ctx.timing, ctx.progress).await
                }
                Load::Service => {
                    super::service::run_plan(ctx.env, plan, kind, ctx.timing, ctx.progress).await
                }
            }
        })
    }
}
