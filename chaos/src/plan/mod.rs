//! Fault plans: a TOML file of faults on a timeline, for `chaos exec` (any program under the
//! faults) and for users' own tests ([`run`]).
//!
//! ```toml
//! [[fault]]
//! at = "1s"          # after the start of the command (or of the run)
//! duration = "2s"
//! kind = "down"
//!
//! [[fault]]
//! at = "4s"
//! duration = "2s"
//! kind = "latency"   # any toxic type, with Toxiproxy's attributes
//! stream = "downstream"
//! attributes = { latency = 300, jitter = 50 }
//!
//! [[fault]]
//! at = "8s"
//! duration = "500ms"
//! kind = "down"
//! every = "1s"       # repeated: flapping
//! count = 3
//! ```
//!
//! `kind` is a toxic type (`latency`, `bandwidth`, `timeout`, `reset_peer`, `slicer`,
//! `limit_data`, `slow_close`, and ours: `refuse`, `peer_lost`, `handshake_hang`), whose
//! `attributes` are the Toxiproxy API's, or a fault of the suite's matrix without attributes
//! (`down`, `terminate_backends`, `server_restart`, `flapping`, the `kernel_*` faults; a
//! matrix fault named like a toxic type, such as `bandwidth`, is the toxic with the plan's
//! attributes). `kernel_loss` takes `attributes = { percent = N }`. `stream` (default
//! `downstream`) and `toxicity` (default 1) are the toxics'. Every problem of a plan is found
//! before anything starts, each with its line.

mod harness;
mod run;
pub mod spec;

pub use harness::Harness;
pub use run::{PlanEvent, Target, not_begun, run, run_on, run_with};
pub use spec::{ClusterSpec, Plan, PlanError, PlannedFault, What};

#[cfg(test)]
mod tests;
