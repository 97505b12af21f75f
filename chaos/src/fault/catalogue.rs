//! The catalogue: every named fault the suite, plans, the soak and `chaos exec` can use. A new
//! fault of an existing kind is one entry here.
//!
//! - [`MATRIX`]: faults of the proxy, the server and the kernel, run against every pool.
//! - [`BOUNCER_FAULTS`]: faults PgBouncer makes, with a real PgBouncer in the pool's path.
//! - [`SERVICE_FAULTS`]: the faults a service's open-loop load runs under.
//! - [`PLAN`]: the stand-in entry of `chaos run --plan`.

use crate::kernel::KernelFault;
use crate::proxy::{Stream, ToxicKind, toxics};

use super::kind::{BouncerFault, Fault, Kind, ToxicSpec};

const fn toxic(
    name: &'static str,
    description: &'static str,
    label: &'static str,
    kind: fn() -> ToxicKind,
    stream: Stream,
) -> Fault {
    Fault {
        name,
        description,
        label,
        kind: Kind::Toxic(ToxicSpec { kind, stream }),
        needs_cluster: false,
        during_ms: None,
        recovery_bound_ms: 1000.0,
    }
}

/// Every fault, in run order.
pub const MATRIX: &[Fault] = &[
    Fault {
        name: "down",
        description: "The proxy is disabled: its listener closes and every live connection is cut; then it is enabled again.",
        label: "proxy down",
        kind: Kind::Down,
        needs_cluster: false,
        during_ms: None,
        recovery_bound_ms: 1000.0,
    },
    toxic(
        "refuse",
        "New connections are reset at once while live ones keep working (a server refusing connections).",
        "refuse new connections",
        || ToxicKind::Refuse(toxics::Refuse),
        Stream::Downstream,
    ),
    toxic(
        "reset_peer",
        "Every connection that sends data is reset (TCP RST).",
        "reset_peer",
        || ToxicKind::ResetPeer(toxics::ResetPeer { timeout: 0 }),
        Stream::Upstream,
    ),
    toxic(
        "blackhole_timeout",
        "Data from the server is dropped and sockets stay open (a blackhole); healed by removing the toxic, which closes the affected connections.",
        "blackhole (timeout 0)",
        || ToxicKind::Timeout(toxics::Timeout { timeout: 0 }),
        Stream::Downstream,
    ),
    toxic(
        "peer_lost",
        "The connections open at that moment go silent (a crashed host, lost NAT state); new connections pass. At the heal they are reset, as a peer that comes back without their state does.",
        "peer lost",
        || ToxicKind::PeerLost(toxics::PeerLost),
        Stream::Downstream,
    ),
    Fault {
        name: "handshake_hang",
        description: "New connections are accepted but never answered (a server stuck in its startup handshake); open ones keep working. Connections hung during the fault stay hung after the heal until the client gives up on them.",
        label: "handshake hangs",
        kind: Kind::Toxic(ToxicSpec {
            kind: || ToxicKind::HandshakeHang(toxics::HandshakeHang),
            stream: Stream::Downstream,
        }),
        needs_cluster: false,
        during_ms: None,
        recovery_bound_ms: 1000.0,
    },
    toxic(
        "latency_jitter",
        "100 ms +- 50 ms of latency on every answer.",
        "latency 100+-50 ms",
        || {
            ToxicKind::Latency(toxics::Latency {
                latency: 100,
                jitter: 50,
            })
        },
        Stream::Downstream,
    ),
    toxic(
        "bandwidth",
        "Answers limited to 2 KB/s.",
        "bandwidth 2 KB/s",
        || ToxicKind::Bandwidth(toxics::Bandwidth { rate: 2 }),
        Stream::Downstream,
    ),
    toxic(
        "slicer",
        "Answers sliced into 8 +- 4 byte writes, 200 us apart.",
        "slicer 8+-4 B",
        || {
            ToxicKind::Slicer(toxics::Slicer {
                average_size: 8,
                size_variation: 4,
                delay: 200,
            })
        },
        Stream::Downstream,
    ),
    toxic(
        "limit_data",
        "Every connection is cut after 2000 bytes from the server.",
        "limit_data 2000 B",
        || ToxicKind::LimitData(toxics::LimitData { bytes: 2000 }),
        Stream::Downstream,
    ),
    toxic(
        "slow_close",
        "Closes from the server are delayed by 1 s.",
        "slow_close 1 s",
        || ToxicKind::SlowClose(toxics::SlowClose { delay: 1000 }),
        Stream::Downstream,
    ),
    Fault {
        name: "terminate_backends",
        description: "pg_terminate_backend of every backend of the pool, at once.",
        label: "pg_terminate_backend",
        kind: Kind::TerminateBackends,
        needs_cluster: false,
        during_ms: Some([300, 300]),
        recovery_bound_ms: 1000.0,
    },
    Fault {
        name: "server_restart",
        description: "The PostgreSQL server is stopped immediately (a crash) and restarted on the same port.",
        label: "server crashed",
        kind: Kind::ServerRestart,
        needs_cluster: true,
        during_ms: None,
        recovery_bound_ms: 1000.0,
    },
    Fault {
        name: "flapping",
        description: "The proxy goes down and up every 500 ms.",
        label: "flapping 500 ms",
        kind: Kind::Flapping,
        needs_cluster: false,
        during_ms: Some([3000, 10000]),
        recovery_bound_ms: 1000.0,
    },
    kernel(
        "kernel_blackhole",
        "The kernel drops every packet between the pool and the database, both ways, SYNs too: connects hang at the TCP level and held sockets retransmit.",
        "kernel blackhole",
        KernelFault::Blackhole,
    ),
    kernel(
        "kernel_syn_drop",
        "The kernel drops new connections' SYNs: held sessions answer, new connects hang.",
        "kernel SYN drop",
        KernelFault::SynDrop,
    ),
    kernel(
        "kernel_reset",
        "The kernel answers every packet from the pool to the database with a TCP reset.",
        "kernel reset",
        KernelFault::Reset,
    ),
    kernel(
        "kernel_loss",
        "The kernel drops 10 % of the packets each way at random.",
        "kernel 10 % loss",
        KernelFault::Loss { percent: 10 },
    ),
    kernel(
        "kernel_one_way",
        "The kernel drops every packet from the database to the pool: queries run, answers vanish.",
        "kernel one-way",
        KernelFault::OneWay,
    ),
];

const fn kernel(
    name: &'static str,
    description: &'static str,
    label: &'static str,
    fault: KernelFault,
) -> Fault {
    Fault {
        name,
        description,
        label,
        kind: Kind::Kernel(fault),
        needs_cluster: false,
        during_ms: None,
        recovery_bound_ms: 1000.0,
    }
}

const fn bouncer(
    name: &'static str,
    description: &'static str,
    label: &'static str,
    f: BouncerFault,
    recovery_bound_ms: f64,
) -> Fault {
    Fault {
        name,
        description,
        label,
        kind: Kind::Bouncer(f),
        needs_cluster: true,
        during_ms: None,
        recovery_bound_ms,
    }
}

/// The PgBouncer faults, in run order.
pub const BOUNCER_FAULTS: &[Fault] = &[
    bouncer(
        "pgbouncer_restart",
        "PgBouncer (transaction pooling) is stopped, cutting every client connection, and started again on the same port at the heal.",
        "pgbouncer stopped",
        BouncerFault::Restart,
        1000.0,
    ),
    bouncer(
        "pgbouncer_pause",
        "PgBouncer's PAUSE: transactions wait (connections stay open) until RESUME at the heal.",
        "pgbouncer PAUSE",
        BouncerFault::Pause,
        1000.0,
    ),
    bouncer(
        "pgbouncer_reconnect",
        "PgBouncer's RECONNECT: every server connection is closed once released and opened anew; clients keep theirs.",
        "pgbouncer RECONNECT",
        BouncerFault::Reconnect,
        1000.0,
    ),
    bouncer(
        "pgbouncer_kill",
        "PgBouncer's KILL of the database: every client and server connection dropped, new ones wait until RESUME at the heal; PgBouncer then opens server connections again after server_login_retry (2 s here).",
        "pgbouncer KILL",
        BouncerFault::Kill,
        1000.0 + crate::postgres::SERVER_LOGIN_RETRY.as_millis() as f64,
    ),
];

/// The fault window, quick and full (the criteria's bounds are for a window this long).
pub const SERVICE_DURING_MS: [u64; 2] = [1500, 3000];

/// The faults the service family runs under.
pub const SERVICE_FAULTS: &[Fault] = &[
    Fault {
        name: "service_down",
        description: "A service's open-loop load (a fixed arrival rate, each request with a 2 s deadline) while the proxy is down: connections refused.",
        label: "proxy down",
        kind: Kind::Down,
        needs_cluster: false,
        during_ms: Some(SERVICE_DURING_MS),
        recovery_bound_ms: 1000.0,
    },
    Fault {
        name: "service_blackhole",
        description: "A service's open-loop load while the server's answers vanish (a timeout toxic with timeout 0 on the downstream): new sessions open on the server and nothing comes back.",
        label: "blackhole (timeout 0)",
        kind: Kind::Toxic(ToxicSpec {
            kind: || ToxicKind::Timeout(toxics::Timeout { timeout: 0 }),
            stream: Stream::Downstream,
        }),
        needs_cluster: false,
        during_ms: Some(SERVICE_DURING_MS),
        recovery_bound_ms: 1000.0,
    },
    Fault {
        name: "service_restart",
        description: "A service's open-loop load while the server crashes (stopped immediately) and is restarted.",
        label: "server crashed",
        kind: Kind::ServerRestart,
        needs_cluster: true,
        during_ms: Some(SERVICE_DURING_MS),
        recovery_bound_ms: 1000.0,
    },
    Fault {
        name: "service_latency",
        description: "A service's open-loop load while every answer takes 300 ms longer: connects take several round trips, and the pool must not take a slow server for a silent one.",
        label: "latency 300 ms",
        kind: Kind::Toxic(ToxicSpec {
            kind: || {
                ToxicKind::Latency(toxics::Latency {
                    latency: 300,
                    jitter: 0,
                })
            },
            stream: Stream::Downstream,
        }),
        needs_cluster: false,
        during_ms: Some(SERVICE_DURING_MS),
        recovery_bound_ms: 1000.0,
    },
];

/// The scenario `chaos run --plan` runs: the suite's load on the pool, the plan's faults on
/// its timeline (from the end of the `before` phase), the same criteria as a fault of the
/// matrix, with the plan's span as the fault window.
pub const PLAN: Fault = Fault {
    name: "plan",
    description: "The faults of the plan given with --plan, on its timeline, under the suite's load.",
    label: "plan",
    kind: Kind::Down,
    needs_cluster: false,
    during_ms: None,
    recovery_bound_ms: 1000.0,
};
