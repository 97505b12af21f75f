//! The fault matrix as a family: each fault of [`crate::fault::MATRIX`] against every pool,
//! under the suite's steady load plus bursts, judged by the fault runner's criteria.

use crate::fault::{Fault, MATRIX};
use crate::peers::PoolKind;

use super::family::{Ctx, Family as FamilyTrait, Running};
use super::runner::run_fault;

/// The fault matrix.
pub struct Family;

impl FamilyTrait for Family {
    type Item = &'static Fault;
    fn items() -> Vec<Self::Item> {
        MATRIX.iter().collect()
    }
    fn name(item: Self::Item) -> &'static str {
        item.name
    }
    fn description(item: Self::Item) -> &'static str {
        item.description
    }
    fn run<'a>(item: Self::Item, ctx: &'a Ctx<'a>, kind: PoolKind) -> Running<'a> {
        Box::pin(run_fault(ctx.env, item, kind, ctx.timing, ctx.progress))
    }
}
