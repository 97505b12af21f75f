//! What a fault is: how it is made ([`Kind`]), how long it lasts and how fast a pool must
//! recover from it ([`Fault`]). The catalogue of named faults is [`super::catalogue`].

use crate::kernel::KernelFault;
use crate::proxy::{Stream, Toxic, ToxicKind};

/// How a fault is made.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The proxy disabled: listener closed, live connections cut.
    Down,
    /// A toxic on the proxy for the window.
    Toxic(ToxicSpec),
    /// `pg_terminate_backend` of every backend of the pool.
    TerminateBackends,
    /// The server stopped immediately (a crash), restarted at the heal.
    ServerRestart,
    /// Down/up every 500 ms.
    Flapping,
    /// Packets between the pool and the proxy dropped, reset or lost by the kernel
    /// (nftables, [`crate::kernel`]); needs root and `nft`.
    Kernel(KernelFault),
    /// A fault of the PgBouncer in the pool's path; made where a PgBouncer is
    /// (the PgBouncer family's arena).
    Bouncer(BouncerFault),
}

/// A toxic, as constants.
#[derive(Debug, Clone, Copy)]
pub struct ToxicSpec {
    /// Toxic type.
    pub kind: fn() -> ToxicKind,
    /// Direction.
    pub stream: Stream,
}

/// One entry of the matrix.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Scenario name (for `--scenario`).
    pub name: &'static str,
    /// What it does, for the report.
    pub description: &'static str,
    /// Short label for the timeline.
    pub label: &'static str,
    /// How it is made.
    pub kind: Kind,
    /// Needs a throwaway cluster (it stops the server).
    pub needs_cluster: bool,
    /// Fixed fault window, [quick, full] ms, instead of the default.
    pub during_ms: Option<[u64; 2]>,
    /// Bound on the time from the heal to the first success.
    pub recovery_bound_ms: f64,
}

impl Fault {
    /// Whether every new connection is refused for the whole window (the proxy down, the
    /// server stopped, the kernel answering with resets): a pool that promises to fail fast
    /// during an outage must, here, fail well before its acquire timeout.
    pub fn refuses_every_connection(&self) -> bool {
        matches!(
            self.kind,
            Kind::Down | Kind::ServerRestart | Kind::Kernel(KernelFault::Reset)
        )
    }
}

impl ToxicSpec {
    /// The toxic this spec makes, named `chaos_<type>`, at full toxicity.
    pub fn toxic(&self) -> Toxic {
        let kind = (self.kind)();
        Toxic {
            name: format!("chaos_{}", kind.type_name()),
            kind,
            stream: self.stream,
            toxicity: 1.0,
        }
    }
}

/// A fault of PgBouncer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BouncerFault {
    /// Stopped (every client connection cut), started again on the same port at the heal.
    Restart,
    /// `PAUSE` (new transactions wait), `RESUME` at the heal.
    Pause,
    /// `RECONNECT`: every server connection is closed once released; clients stay.
    Reconnect,
    /// `KILL postgres` (every client and server connection of the database dropped, new
    /// ones wait), `RESUME postgres` at the heal.
    Kill,
}
