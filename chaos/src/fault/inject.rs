//! How a fault of the catalogue is made and healed: on the proxy, on the server, in the
//! kernel, or on a PgBouncer.

use std::sync::Arc;
use std::time::Duration;

use super::catalogue::MATRIX;
use super::env::{Env, ScenarioProxy};
use super::kind::{BouncerFault, Fault, Kind};
use crate::kernel::{KernelFault, KernelFaults};
use crate::postgres::{Bouncer, StopMode};

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
            return Err(crate::Error::NotApplicable {
                fault: fault.name.to_string(),
                on: format!(
                    "on a proxy: it is a PgBouncer fault, made where a PgBouncer is (chaos run --scenario {})",
                    fault.name
                ),
            });
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

/// Makes `fault` on `bouncer`, holds it for `during`, heals it.
pub async fn apply_bouncer(
    bouncer: &Arc<Bouncer>,
    fault: BouncerFault,
    during: Duration,
) -> crate::Result<()> {
    let admin = |command: &'static str| {
        let b = Arc::clone(bouncer);
        async move {
            b.admin(command)
                .await
                .map(drop)
                .map_err(|e| crate::Error::Bouncer {
                    command,
                    message: e.to_string(),
                })
        }
    };
    match fault {
        BouncerFault::Restart => {
            let b = Arc::clone(bouncer);
            tokio::task::spawn_blocking(move || b.stop()).await?;
            tokio::time::sleep(during).await;
            let b = Arc::clone(bouncer);
            tokio::task::spawn_blocking(move || b.restart()).await??;
        }
        BouncerFault::Pause => {
            admin("PAUSE").await?;
            tokio::time::sleep(during).await;
            admin("RESUME").await?;
        }
        BouncerFault::Reconnect => {
            admin("RECONNECT").await?;
            tokio::time::sleep(during).await;
        }
        BouncerFault::Kill => {
            admin("KILL postgres").await?;
            tokio::time::sleep(during).await;
            admin("RESUME postgres").await?;
        }
    }
    Ok(())
}
