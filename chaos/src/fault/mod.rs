//! The fault library: what a fault is ([`kind`]), the named faults ([`catalogue`]), how they
//! are made and healed ([`inject`]), and where ([`env`]: the database, the fault controller and
//! the proxies in front of the database). It knows no pool under test and no report: the
//! suite, plans, the soak and `chaos exec` all sit on top of it.

pub mod catalogue;
pub mod env;
pub mod ha;
pub mod inject;
pub mod kind;

pub use catalogue::{BOUNCER_FAULTS, MATRIX, PLAN, SERVICE_FAULTS};
pub use env::{Env, ScenarioProxy, count_at, wait_no_connections_at};
pub use ha::{HaFault, HaInjected};
pub use inject::{apply, apply_bouncer, apply_until, heal_everything, kernel_until};
pub use kind::{BouncerFault, Fault, Kind, ToxicSpec};
