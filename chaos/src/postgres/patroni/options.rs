//! How the HA cluster is set up ([`HaOptions`], checked against Patroni's documented rules)
//! and why it could not be ([`HaError`]).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::super::error::ClusterError;
use crate::hosts::HostsError;

/// Patroni's REST port on every node.
pub const REST_PORT: u16 = 8008;
/// PostgreSQL's port on every node.
pub const PG_PORT: u16 = 5432;
/// etcd's client port.
pub const ETCD_PORT: u16 = 2379;

/// How the cluster is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaOptions {
    /// Patroni nodes (2 to 9).
    pub nodes: usize,
    /// `synchronous_mode`: a commit is acknowledged once a synchronous standby has it.
    pub synchronous: bool,
    /// The leader's lease, seconds (Patroni's minimum is 20).
    pub ttl: u32,
    /// Seconds between Patroni's HA loops.
    pub loop_wait: u32,
    /// Seconds before a DCS or PostgreSQL operation is given up.
    pub retry_timeout: u32,
    /// How clients reach the primary.
    pub route: HaRoute,
}

/// How clients reach the cluster's primary: the two routes users take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaRoute {
    /// The multi-host URL with `target_session_attrs=read-write`: the client finds the
    /// primary itself.
    #[default]
    Url,
    /// HAProxy on a host of its own, sending connections to the node whose `/primary`
    /// answers 200.
    Haproxy,
}

impl HaRoute {
    /// Both, in run order.
    pub const ALL: [HaRoute; 2] = [HaRoute::Url, HaRoute::Haproxy];

    /// Its name in plans (`route = "haproxy"`) and reports.
    pub fn name(self) -> &'static str {
        match self {
            HaRoute::Url => "url",
            HaRoute::Haproxy => "haproxy",
        }
    }
}

impl Default for HaOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            synchronous: false,
            ttl: 20,
            loop_wait: 1,
            retry_timeout: 5,
            route: HaRoute::Url,
        }
    }
}

impl HaOptions {
    /// Refuses what Patroni's documentation forbids.
    ///
    /// # Errors
    /// [`HaError::BadOptions`], saying which rule.
    pub fn check(&self) -> Result<(), HaError> {
        let bad = |problem: String| Err(HaError::BadOptions { problem });
        if !(2..=9).contains(&self.nodes) {
            return bad(format!("nodes = {}: give 2 to 9", self.nodes));
        }
        if self.ttl < 20 {
            return bad(format!("ttl = {}: Patroni's minimum is 20", self.ttl));
        }
        if self.loop_wait + 2 * self.retry_timeout > self.ttl {
            return bad(format!(
                "loop_wait + 2 x retry_timeout = {} is above ttl = {}: Patroni requires loop_wait + 2 x retry_timeout <= ttl",
                self.loop_wait + 2 * self.retry_timeout,
                self.ttl
            ));
        }
        if self.loop_wait == 0 || self.retry_timeout == 0 {
            return bad("loop_wait and retry_timeout must be at least 1".into());
        }
        Ok(())
    }

    /// The settings as the report gives them.
    pub fn describe(&self) -> String {
        let route = match self.route {
            HaRoute::Url => {
                "route: the multi-host URL, target_session_attrs=read-write".to_string()
            }
            HaRoute::Haproxy => format!("route: {}", super::haproxy::describe()),
        };
        format!(
            "Patroni {} nodes + etcd (1 node), ttl {} s, loop_wait {} s, retry_timeout {} s, synchronous_mode {}; {route}",
            self.nodes,
            self.ttl,
            self.loop_wait,
            self.retry_timeout,
            if self.synchronous { "on" } else { "off" }
        )
    }
}

impl HaOptions {
    /// The node's `patroni.yml`: `name` at `ip`, etcd at `etcd`, its files in `dir`, the
    /// server binaries in `bin`.
    pub(super) fn patroni_yml(
        &self,
        name: &str,
        ip: Ipv4Addr,
        etcd: Ipv4Addr,
        dir: &Path,
        bin: &Path,
    ) -> String {
        let subnet = {
            let o = ip.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        };
        let o = self;
        format!(
            "scope: chaos\n\
name: {name}\n\
log:\n  level: INFO\n\
restapi:\n  listen: {ip}:{REST_PORT}\n  connect_address: {ip}:{REST_PORT}\n\
etcd3:\n  hosts: {etcd}:{ETCD_PORT}\n\
bootstrap:\n  dcs:\n    ttl: {ttl}\n    loop_wait: {loop_wait}\n    retry_timeout: {retry}\n    maximum_lag_on_failover: 1048576\n    synchronous_mode: {sync}\n    postgresql:\n      use_pg_rewind: true\n      parameters:\n        wal_level: replica\n        hot_standby: 'on'\n        max_wal_senders: 10\n        max_replication_slots: 10\n        wal_log_hints: 'on'\n        wal_keep_size: 128MB\n        max_connections: 300\n        synchronous_commit: 'on'\n        fsync: 'off'\n        full_page_writes: 'on'\n  initdb:\n  - encoding: UTF8\n  - auth: trust\n  pg_hba:\n  - local all all trust\n  - host replication replicator {subnet} trust\n  - host all all {subnet} trust\n\
postgresql:\n  listen: {ip}:{PG_PORT}\n  connect_address: {ip}:{PG_PORT}\n  data_dir: {data}\n  bin_dir: {bin}\n  pgpass: {pgpass}\n  authentication:\n    replication:\n      username: replicator\n      password: replicator\n    superuser:\n      username: postgres\n      password: postgres\n    rewind:\n      username: postgres\n      password: postgres\n  parameters:\n    unix_socket_directories: {sock}\n    log_min_messages: warning\n",
            name = name,
            etcd = etcd,
            ttl = o.ttl,
            loop_wait = o.loop_wait,
            retry = o.retry_timeout,
            sync = o.synchronous,
            data = dir.join("data").display(),
            bin = bin.display(),
            pgpass = dir.join("pgpass").display(),
            sock = dir.display(),
        )
    }
}

/// Why the HA cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HaError {
    /// The hosts could not be made (not root, no `ip`/`nft`, no free subnet).
    #[error(transparent)]
    Hosts(#[from] HostsError),
    /// A program is missing.
    #[error("the {program} program is missing: {hint}")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// The PostgreSQL binaries or the server user could not be found.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The options break one of Patroni's rules.
    #[error("bad HA cluster options: {problem}")]
    BadOptions {
        /// Which rule.
        problem: String,
    },
    /// A file or process operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not reach the state waited for.
    #[error("the HA cluster {what} within {within:?}; last seen: {seen}\n{logs}")]
    NotReady {
        /// What was waited for.
        what: String,
        /// How long.
        within: Duration,
        /// What the REST API last said.
        seen: String,
        /// The ends of the logs.
        logs: String,
    },
    /// A REST request was refused or failed.
    #[error("Patroni's REST API on {node} refused {request}: {message}")]
    Rest {
        /// The node.
        node: String,
        /// The request.
        request: String,
        /// What it answered.
        message: String,
    },
}

pub(super) fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> HaError {
    let action = action.into();
    move |source| HaError::Io { action, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_patronis_rules() {
        assert!(HaOptions::default().check().is_ok());
        let low_ttl = HaOptions {
            ttl: 10,
            ..HaOptions::default()
        };
        assert!(
            low_ttl
                .check()
                .unwrap_err()
                .to_string()
                .contains("minimum is 20")
        );
        let slow = HaOptions {
            retry_timeout: 10,
            ..HaOptions::default()
        };
        assert!(slow.check().unwrap_err().to_string().contains("<= ttl"));
        let one = HaOptions {
            nodes: 1,
            ..HaOptions::default()
        };
        assert!(one.check().is_err());
    }
}
