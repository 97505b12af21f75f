//! The fault matrix: each fault, how it is injected and healed, and how fast recovery must be.

use crate::kernel::{KernelFault, KernelFaults};
use crate::proxy::toxics;
use std::time::Duration;

use super::{Env, ScenarioProxy};
use crate::postgres::StopMode;
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
    Kernel(crate::kernel::KernelFault),
    /// A fault of the PgBouncer in the pool's path ([`super::bouncer`]); made by the
    /// PgBouncer arena only.
    Bouncer(super::bouncer::BouncerFault),
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

/// Injects `fault` for `during`, then heals it.
pub async fn apply(
    env: &Env,
    proxy: &ScenarioProxy,
    fault: &Fault,
    app: &str,
    during: Duration,
) -> crate::Result<()> {
    apply_until(env, proxy, fault, app, tokio::time::sleep(during)).await
}

/// Injects `fault`, holds it until `heal` completes, then heals it. A fault that is a single
/// act (`terminate_backends`) is made once and then waits for `heal` like the others.
pub async fn apply_until(
    env: &Env,
    proxy: &ScenarioProxy,
    fault: &Fault,
    app: &str,
    heal: impl std::future::Future<Output = ()>,
) -> crate::Result<()> {
    match fault.kind {
        Kind::Down => {
            env.faults.set_enabled(&proxy.name, false).await?;
            heal.await;
            env.faults.set_enabled(&proxy.name, true).await?;
        }
        Kind::Toxic(spec) => {
            let t = spec.toxic();
            env.faults.add_toxic(&proxy.name, &t).await?;
            heal.await;
            env.faults.remove_toxic(&proxy.name, &t.name).await?;
        }
        Kind::TerminateBackends => {
            env.terminate(app).await?;
            heal.await;
        }
        Kind::ServerRestart => {
            let cluster = std::sync::Arc::clone(env.db.require_cluster("server_restart")?);
            let c = std::sync::Arc::clone(&cluster);
            tokio::task::spawn_blocking(move || c.stop(StopMode::Immediate)).await??;
            heal.await;
            tokio::task::spawn_blocking(move || cluster.restart()).await??;
        }
        Kind::Flapping => {
            tokio::pin!(heal);
            let mut up = true;
            loop {
                up = !up;
                env.faults.set_enabled(&proxy.name, up).await?;
                tokio::select! {
                    _ = &mut heal => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            env.faults.set_enabled(&proxy.name, true).await?;
        }
        Kind::Kernel(kernel) => kernel_until(proxy, kernel, heal).await?,
        Kind::Bouncer(_) => {
            return Err(crate::Error::Check(format!(
                "{} is a PgBouncer fault: it runs on the PgBouncer arena (chaos run --scenario {})",
                fault.name, fault.name
            )));
        }
    }
    Ok(())
}

/// Makes `fault` in the kernel on the path to `proxy`, holds it until `heal` completes, then
/// removes it. The rules match the proxy's listening port: the client's side only, never the
/// proxy's own connections to the database.
pub async fn kernel_until(
    proxy: &ScenarioProxy,
    fault: KernelFault,
    heal: impl std::future::Future<Output = ()>,
) -> crate::Result<()> {
    let (_, port) = crate::postgres::tcp_target(&proxy.url)?;
    let faults = tokio::task::spawn_blocking(move || KernelFaults::new(port)).await??;
    let faults = std::sync::Arc::new(faults);
    let f = std::sync::Arc::clone(&faults);
    tokio::task::spawn_blocking(move || f.apply(fault)).await??;
    heal.await;
    // Dropping the table heals too, and is done even if the flush failed.
    tokio::task::spawn_blocking(move || faults.heal()).await??;
    Ok(())
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

/// Undoes whatever a fault interrupted before its heal (a soak stopped mid-fault): the proxy
/// enabled, every toxic the matrix uses removed, the server running. Errors are ignored: each
/// step is a no-op when there is nothing to undo.
pub async fn heal_everything(env: &Env, proxy: &ScenarioProxy) {
    let _ = env.faults.set_enabled(&proxy.name, true).await;
    for f in MATRIX {
        if let Kind::Toxic(spec) = f.kind {
            let _ = env
                .faults
                .remove_toxic(&proxy.name, &spec.toxic().name)
                .await;
        }
    }
    if let Some(cluster) = env.db.cluster()
        && !cluster.is_running()
    {
        let c = std::sync::Arc::clone(cluster);
        let _ = tokio::task::spawn_blocking(move || c.restart()).await;
    }
}
