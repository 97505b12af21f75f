//! The HA family's scenarios: each fault of the HA stack ([`HaFault`]) by each route
//! ([`HaCase`]).

pub use crate::fault::HaFault;
use crate::postgres::HaRoute;

/// A fault and the route the clients take to the primary: the scenario's item. By the URL
/// it is named as the fault (`ha_kill_leader`); through HAProxy with `_haproxy` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaCase {
    /// The fault.
    pub fault: HaFault,
    /// The route.
    pub route: HaRoute,
}

impl HaCase {
    /// Every fault by each route: the URL's first.
    pub fn all() -> Vec<HaCase> {
        HaRoute::ALL
            .iter()
            .flat_map(|&route| HaFault::ALL.iter().map(move |&fault| HaCase { fault, route }))
            .collect()
    }

    /// The name in plans, reports and `--scenario`.
    pub fn name(self) -> &'static str {
        match self.route {
            HaRoute::Url => self.fault.name(),
            HaRoute::Haproxy => match self.fault {
                HaFault::KillLeader => "ha_kill_leader_haproxy",
                HaFault::KillLeaderAsync => "ha_kill_leader_async_haproxy",
                HaFault::Switchover => "ha_switchover_haproxy",
                HaFault::KillReplica => "ha_kill_replica_haproxy",
                HaFault::IsolateLeader => "ha_isolate_leader_haproxy",
                HaFault::PartitionClients => "ha_partition_clients_haproxy",
                HaFault::EtcdDown => "ha_etcd_down_haproxy",
            },
        }
    }

    /// What it does.
    pub fn description(self) -> &'static str {
        match self.route {
            HaRoute::Url => self.fault.description(),
            HaRoute::Haproxy => match self.fault {
                HaFault::KillLeader => {
                    "As ha_kill_leader, the clients reaching the primary through HAProxy (checking Patroni's /primary, on-marked-down shutdown-sessions): the first write within 100 ms of HAProxy routing to the new leader, nothing lost, no split brain."
                }
                HaFault::KillLeaderAsync => {
                    "As ha_kill_leader_async, through HAProxy: lost writes are a figure; split brain and failed-yet-present writes fail it."
                }
                HaFault::Switchover => {
                    "As ha_switchover, through HAProxy: the first write within 100 ms of HAProxy routing to the new leader, nothing lost."
                }
                HaFault::KillReplica => {
                    "As ha_kill_replica, through HAProxy: nothing acknowledged lost; writes go on."
                }
                HaFault::IsolateLeader => {
                    "As ha_isolate_leader, through HAProxy (which still reaches the isolated leader): no write acknowledged there once another node is primary."
                }
                HaFault::PartitionClients => {
                    "As ha_partition_clients, HAProxy (the clients' path) cut off from the leader with them: no write hangs past its deadline; writes resume when the path heals."
                }
                HaFault::EtcdDown => {
                    "As ha_etcd_down, through HAProxy: writes resume once etcd is back and a leader is elected; nothing acknowledged lost."
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_its_own_name() {
        let all = HaCase::all();
        assert_eq!(all.len(), 2 * HaFault::ALL.len());
        let names: std::collections::BTreeSet<&str> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len());
        for c in all.iter().filter(|c| c.route == HaRoute::Haproxy) {
            assert_eq!(c.name(), format!("{}_haproxy", c.fault.name()));
        }
    }
}
