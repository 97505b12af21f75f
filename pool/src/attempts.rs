//! [`Attempts`]: what the connection attempts and outage probes in flight share with the
//! acquires waiting for them (see `connect` for the rules).

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// What attempts and probes in flight share.
#[derive(Default)]
pub(crate) struct Attempts {
    /// Notified whenever a connection attempt ends: acquires waiting for one look again.
    pub changed: Notify,
    /// Attempts started before this instant are abandoned.
    pub hung_cutoff: watch::Sender<Option<Instant>>,
    /// When an acquire last started a probe (`Shared::now_nanos`; 0 for never).
    pub demand_probe_at: std::sync::atomic::AtomicU64,
    /// Outage probes in flight.
    pub probes: std::sync::atomic::AtomicUsize,
}
