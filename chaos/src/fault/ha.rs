//! The faults of the real HA stack ([`HaFault`]): what each is, and how it is made on a
//! running [`HaCluster`] ([`HaFault::inject`]) and undone ([`HaCluster::restore`]). The HA
//! scenarios, plans with a `[cluster]` and `chaos exec` all use them.

use std::sync::Arc;

use crate::postgres::{HaCluster, HaError};

/// A fault of the HA stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaFault {
    /// The leader's host loses every process.
    KillLeader,
    /// As [`HaFault::KillLeader`], with asynchronous replication.
    KillLeaderAsync,
    /// A switchover through the REST API.
    Switchover,
    /// The synchronous standby's host loses every process.
    KillReplica,
    /// The leader cut off from etcd and the replicas; the clients still reach it.
    IsolateLeader,
    /// The clients cut off from the leader only.
    PartitionClients,
    /// etcd lost.
    EtcdDown,
}

impl HaFault {
    /// Every one, in run order.
    pub const ALL: [HaFault; 7] = [
        HaFault::KillLeader,
        HaFault::Switchover,
        HaFault::IsolateLeader,
        HaFault::KillReplica,
        HaFault::PartitionClients,
        HaFault::EtcdDown,
        HaFault::KillLeaderAsync,
    ];

    /// The name in plans, reports and `--scenario`.
    pub fn name(self) -> &'static str {
        match self {
            HaFault::KillLeader => "ha_kill_leader",
            HaFault::KillLeaderAsync => "ha_kill_leader_async",
            HaFault::Switchover => "ha_switchover",
            HaFault::KillReplica => "ha_kill_replica",
            HaFault::IsolateLeader => "ha_isolate_leader",
            HaFault::PartitionClients => "ha_partition_clients",
            HaFault::EtcdDown => "ha_etcd_down",
        }
    }

    /// What it does.
    pub fn description(self) -> &'static str {
        match self {
            HaFault::KillLeader => {
                "Patroni + etcd, each node a host of its own (synchronous_mode): the leader's host loses every process (SIGKILL). Writes by the multi-host URL must reach the new leader within 100 ms of Patroni reporting it; no acknowledged write may be lost, none acknowledged after the promotion by another server, none reported failed yet present."
            }
            HaFault::KillLeaderAsync => {
                "As ha_kill_leader with asynchronous replication: acknowledged writes lost with the old leader are a figure (lost to the mode), split brain and failed-yet-present writes still fail it."
            }
            HaFault::Switchover => {
                "Patroni + etcd (synchronous_mode): a switchover through the REST API. Writes must reach the new leader within 100 ms of Patroni reporting it, with nothing lost."
            }
            HaFault::KillReplica => {
                "Patroni + etcd (synchronous_mode): the synchronous standby's host loses every process; Patroni names another. Nothing acknowledged may be lost; writes must go on."
            }
            HaFault::IsolateLeader => {
                "Patroni + etcd (synchronous_mode): the leader is cut off from etcd and the replicas while the clients still reach it (the split-brain case). Patroni must demote it; no client may get a write acknowledged there once another node is primary."
            }
            HaFault::PartitionClients => {
                "Patroni + etcd (synchronous_mode): the clients are cut off from the leader only (packets dropped both ways); the cluster keeps its leader. No write may hang past its deadline; writes resume when the path heals."
            }
            HaFault::EtcdDown => {
                "Patroni + etcd (synchronous_mode): etcd is killed; the leader, unable to renew its lease, stops taking writes. Writes resume once etcd is back and a leader is elected; nothing acknowledged may be lost."
            }
        }
    }

    /// Its name on timelines and in plans' events.
    pub fn label(self) -> &'static str {
        match self {
            HaFault::KillLeader | HaFault::KillLeaderAsync => "leader killed",
            HaFault::Switchover => "switchover",
            HaFault::KillReplica => "sync standby killed",
            HaFault::IsolateLeader => "leader isolated",
            HaFault::PartitionClients => "clients cut from leader",
            HaFault::EtcdDown => "etcd down",
        }
    }

    /// Whether it runs with `synchronous_mode` (all but [`HaFault::KillLeaderAsync`]).
    pub fn synchronous(self) -> bool {
        self != HaFault::KillLeaderAsync
    }

    /// Whether the fault ends with another node promoted (the reference for the pool's time).
    pub fn moves_the_leader(self) -> bool {
        matches!(
            self,
            HaFault::KillLeader
                | HaFault::KillLeaderAsync
                | HaFault::Switchover
                | HaFault::IsolateLeader
        )
    }
}

/// What an injected fault hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaInjected {
    /// The leader when it was injected.
    pub leader: String,
    /// The node killed, isolated or cut off (`None` for the switchover and etcd).
    pub victim: Option<String>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HaError> + Send + 'static,
) -> Result<T, HaError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(HaError::BadOptions {
            problem: format!("the fault's blocking work panicked: {e}"),
        })
    })
}

impl HaFault {
    /// Makes the fault on `cluster`, whose leader is `leader` (asked of the cluster when
    /// `None`). [`HaCluster::restore`] undoes every one of them.
    ///
    /// # Errors
    /// No leader (or no replica to kill), `nft` refused the rules, or Patroni refused the
    /// switchover.
    pub async fn inject(
        self,
        cluster: &Arc<HaCluster>,
        leader: Option<String>,
    ) -> Result<HaInjected, HaError> {
        let leader = match leader {
            Some(l) => l,
            None => cluster.leader().await.ok_or_else(|| HaError::BadOptions {
                problem: format!("{}: the cluster has no single leader now", self.name()),
            })?,
        };
        let c = Arc::clone(cluster);
        let victim = match self {
            HaFault::KillLeader | HaFault::KillLeaderAsync => {
                let l = leader.clone();
                blocking(move || Ok(c.kill_node(&l))).await?;
                Some(leader.clone())
            }
            HaFault::Switchover => {
                // Under synchronous_mode Patroni takes only the synchronous standby as
                // candidate; it picks it itself when none is named.
                cluster.switchover(&leader, None).await?;
                None
            }
            HaFault::KillReplica => {
                let roles = cluster.roles().await;
                let victim = roles
                    .iter()
                    .find(|(_, r)| r == "sync_standby")
                    .or_else(|| roles.iter().find(|(_, r)| r == "replica"))
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| HaError::BadOptions {
                        problem: format!("no replica to kill: {roles:?}"),
                    })?;
                let v = victim.clone();
                blocking(move || Ok(c.kill_node(&v))).await?;
                Some(victim)
            }
            HaFault::IsolateLeader => {
                let l = leader.clone();
                blocking(move || c.isolate(&l)).await?;
                Some(leader.clone())
            }
            HaFault::PartitionClients => {
                let l = leader.clone();
                blocking(move || c.cut_clients(&l)).await?;
                Some(leader.clone())
            }
            HaFault::EtcdDown => {
                blocking(move || {
                    c.kill_etcd();
                    Ok(())
                })
                .await?;
                None
            }
        };
        Ok(HaInjected { leader, victim })
    }

    /// Makes the fault, keeps it until `heal` completes (counted from the request: a
    /// switchover's call returns only once it is done), then restores the cluster (partitions
    /// removed, killed nodes and etcd started again), also when the fault was only half made.
    ///
    /// # Errors
    /// [`HaFault::inject`]'s, or a cluster that could not be restored.
    pub async fn until(
        self,
        cluster: &Arc<HaCluster>,
        heal: impl std::future::Future<Output = ()>,
    ) -> Result<HaInjected, HaError> {
        tokio::pin!(heal);
        // Polled once now, so a window's timer starts with the request.
        tokio::select! {
            biased;
            () = &mut heal => {}
            () = std::future::ready(()) => {}
        }
        let injected = self.inject(cluster, None).await;
        if injected.is_ok() {
            heal.await;
        }
        let c = Arc::clone(cluster);
        let restored = blocking(move || c.restore()).await;
        let hit = injected?;
        restored?;
        Ok(hit)
    }

    /// The fault named `name` (`ha_kill_leader`, ...).
    pub fn by_name(name: &str) -> Option<HaFault> {
        HaFault::ALL.into_iter().find(|f| f.name() == name)
    }
}
