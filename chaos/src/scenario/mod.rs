//! The chaos suite: the replaced system's validation scenarios, measured for real, and a fault
//! matrix run against each pool under a steady load plus bursts.
//!
//! Every scenario writes its pass criteria (measured value beside the bound) into its report.
//! A fault scenario's requests fall in four phases ([`crate::report::Phases::of`]): before the fault, during
//! it (including those in flight when it began), recovering (after the heal, until the first
//! success: the pool's fast failures while it notices the database is back), and after.
//! Requests are recorded as a Jepsen-style history; after the pool shuts down, the server is asked
//! (`pg_stat_activity`, by `application_name`) whether any connection was left behind.
//!
//! # Layout
//! - [`family`]: what a family is to the suite ([`Family`]); each family is one file, listed
//!   once in the `families!` list below, which makes the [`Scenario`] enum that lists,
//!   names, describes and runs them.
//! - [`runner`]: the arena, timing, recorder and progress every fault family shares, and the
//!   fault runner; [`judge`]: the criteria. Families import these siblings, never this file.
//! - [`logs`]: the tracing layer the log check reads.

pub mod family;
pub mod judge;
pub mod logs;
pub mod runner;
pub mod writes;

pub use family::{Ctx, Family, Load, Running, Stage};
pub use runner::{
    Arena, Opened, Progress, SetupError, Timing, make_subject, make_subject_with, run_fault,
    run_plan,
};

/// Declares the family modules and makes the enum of their scenarios: a new family is one
/// more line.
macro_rules! families {
    ($($variant:ident => $family:ident),+ $(,)?) => {
        $(pub mod $family;)+

        /// One scenario of the suite, of one of the families.
        #[derive(Debug, Clone, Copy)]
        pub enum Scenario {
            $(
                #[doc = concat!("A scenario of [`", stringify!($family), "`].")]
                $variant(<$family::Family as Family>::Item),
            )+
        }

        impl Scenario {
            /// Every scenario `--list` shows, family by family.
            pub fn all() -> Vec<Scenario> {
                let mut all = Vec::new();
                $(all.extend(
                    <$family::Family as Family>::items().into_iter().map(Scenario::$variant),
                );)+
                all
            }

            /// The name for `--scenario` and reports.
            pub fn name(&self) -> &'static str {
                match *self {
                    $(Scenario::$variant(item) => <$family::Family as Family>::name(item),)+
                }
            }

            /// What it does, for `--list`.
            pub fn description(&self) -> &'static str {
                match *self {
                    $(Scenario::$variant(item) => <$family::Family as Family>::description(item),)+
                }
            }

            /// When in a run it goes.
            pub fn stage(&self) -> Stage {
                match *self {
                    $(Scenario::$variant(item) => <$family::Family as Family>::stage(item),)+
                }
            }

            /// Runs it against `kind`.
            pub fn run<'a>(self, ctx: &'a Ctx<'a>, kind: crate::peers::PoolKind) -> Running<'a> {
                match self {
                    $(Scenario::$variant(item) => <$family::Family as Family>::run(item, ctx, kind),)+
                }
            }
        }
    };
}

families! {
    Validation => validation,
    Fault => matrix,
    Application => application,
    Deployment => failover,
    Bouncer => bouncer,
    Service => service,
    Plan => plan,
    Ha => ha,
}

impl Scenario {
    /// The scenario `--scenario NAME` names.
    pub fn by_name(name: &str) -> Option<Scenario> {
        Self::all().into_iter().find(|s| s.name() == name)
    }
}
