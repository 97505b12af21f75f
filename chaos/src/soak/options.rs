//! What a soak runs with: its constants, [`Options`] and the [`Progress`] it reports to.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::report::{Sample, SoakReport, Totals};

/// The soak's `application_name`, by which the server's connections are counted.
pub const APP: &str = "chaos-soak";
/// Concurrent workers of the steady load.
pub const WORKERS: usize = 8;
/// Time between bursts of `10 x max_size` requests.
pub const BURST_EVERY: Duration = Duration::from_secs(15);
/// Time between two requests of the open loop (100 a second).
pub const OPEN_LOOP_EVERY: Duration = Duration::from_millis(10);
/// Each open-loop request is dropped where it stands after this.
pub const OPEN_LOOP_DEADLINE: Duration = Duration::from_secs(2);
/// Time between checkpoints of the report.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// Bound on each query (the connection is discarded when it runs out).
pub const QUERY_BOUND: Duration = Duration::from_secs(3);
/// A request still running after this is recorded as a hang (acquire and query bounds plus
/// ample margin).
pub const HANG_CUTOFF: Duration = Duration::from_secs(10);
/// The pool's acquire timeout in the soak.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a soak runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long.
    pub duration: Duration,
    /// Seed of every random choice (workload mix, fault choice and timing, toxics).
    pub seed: u64,
    /// Where report.json and soak.svg go.
    pub out: PathBuf,
    /// Mean time between faults (default: an eighth of the run, between 10 s and 3 min).
    pub fault_every: Option<Duration>,
    /// Sampling period (default: a two-hundredth of the run, between 1 s and 5 s).
    pub sample_every: Option<Duration>,
    /// Samples before this are not fitted (default: a tenth of the run, between 10 s and
    /// 30 min).
    pub warmup: Option<Duration>,
    /// The pool's max_size.
    pub max_size: usize,
    /// The HA cluster to run on instead of the single server behind the proxy (`--cluster
    /// patroni`), with the HA faults.
    pub cluster: Option<crate::postgres::HaOptions>,
}

impl Options {
    /// Defaults for a run of `duration`.
    pub fn new(duration: Duration, seed: u64, out: PathBuf) -> Self {
        Options {
            duration,
            seed,
            out,
            fault_every: None,
            sample_every: None,
            warmup: None,
            max_size: 10,
            cluster: None,
        }
    }
    /// Mean time between faults.
    pub fn fault_every(&self) -> Duration {
        self.fault_every.unwrap_or_else(|| {
            (self.duration / 8).clamp(Duration::from_secs(10), Duration::from_secs(180))
        })
    }
    /// Sampling period.
    pub fn sample_every(&self) -> Duration {
        self.sample_every.unwrap_or_else(|| {
            (self.duration / 200).clamp(Duration::from_secs(1), Duration::from_secs(5))
        })
    }
    /// Warm-up, never more than half the run.
    pub fn warmup(&self) -> Duration {
        self.warmup
            .unwrap_or_else(|| {
                (self.duration / 10).clamp(Duration::from_secs(10), Duration::from_secs(1800))
            })
            .min(self.duration / 2)
    }
    /// The fault-free stretch at the end.
    pub(super) fn quiet_tail(&self) -> Duration {
        (self.fault_every() / 2).max(Duration::from_secs(8))
    }
}

/// What the terminal is told while a soak runs.
pub trait Progress: Send + Sync {
    /// A sample was taken; `fault` is the fault in force, if any.
    fn sample(&self, sample: &Sample, totals: &Totals, fault: Option<&str>);
    /// A checkpoint was written.
    fn checkpoint(&self, report: &SoakReport);
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
