//! The real HA stack, thrown away after use: etcd and N Patroni nodes (Debian's `etcd-server`
//! and `patroni`), each on a host of its own ([`crate::hosts`]).
//!
//! | host | runs | address |
//! | --- | --- | --- |
//! | `etcd` | etcd (client port 2379) | `10.A.B.10` |
//! | `n1`..`nN` | Patroni (REST 8008) and the PostgreSQL it manages (5432) | `10.A.B.11`.. |
//! | this machine | the pools under test, the harness's REST polls | `10.A.B.1` |
//!
//! Every process runs as the unprivileged server user (PostgreSQL refuses root), with its
//! output in the run's directory (`etcd.log`, `nK/patroni.log`), and everything is removed with
//! the hosts: on drop, or by their watchdog when this process dies.
//!
//! # Settings
//! [`HaOptions::default`] follows Patroni's documented minimums: `ttl` 20 s (the leader's
//! lease), `loop_wait` 1 s and `retry_timeout` 5 s (`loop_wait + 2 x retry_timeout = 11 <=
//! ttl`). A leader killed outright is replaced once its lease expires, so about `ttl` after the
//! kill. `synchronous_mode` is [`HaOptions::synchronous`]. Each server commits durably on its
//! own (`synchronous_commit = on`); `fsync` is off, which loses nothing to a killed process
//! (the kernel keeps its page cache), only to a power cut, which no fault here makes.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::binaries::find_binaries;
use super::error::ClusterError;
use super::process::{RunAs, read_from, tail, unprivileged_user};
use crate::hosts::{Host, Hosts, HostsError};

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
}

impl Default for HaOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            synchronous: false,
            ttl: 20,
            loop_wait: 1,
            retry_timeout: 5,
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
        format!(
            "Patroni {} nodes + etcd (1 node), ttl {} s, loop_wait {} s, retry_timeout {} s, synchronous_mode {}",
            self.nodes,
            self.ttl,
            self.loop_wait,
            self.retry_timeout,
            if self.synchronous { "on" } else { "off" }
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

fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> HaError {
    let action = action.into();
    move |source| HaError::Io { action, source }
}

/// One node's state, as its REST API (`GET /patroni`) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// `master`/`primary` on the leader, `replica` otherwise.
    pub role: String,
    /// `running`, `starting`, `stopped`, ...
    pub state: String,
    /// The timeline PostgreSQL is on.
    pub timeline: Option<u64>,
}

impl NodeState {
    /// Whether this node reports itself as the running primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.role.as_str(), "master" | "primary") && self.state == "running"
    }
}

/// A Patroni node: its host and its process.
struct Node {
    name: String,
    host: Host,
    dir: PathBuf,
    process: Mutex<Option<Child>>,
}

/// etcd and N Patroni nodes on hosts of their own.
pub struct HaCluster {
    options: HaOptions,
    user: RunAs,
    dir: PathBuf,
    etcd_host: Host,
    etcd: Mutex<Option<Child>>,
    nodes: Vec<Node>,
    bin_dir: PathBuf,
    // Dropped last: killing everything in the namespaces and deleting them.
    hosts: Hosts,
}

impl HaCluster {
    /// Whether this machine can run it: root, `ip`, `nft`, `etcd`, `patroni`, `runuser`.
    ///
    /// # Errors
    /// The first thing missing, with how to get it.
    pub fn available() -> Result<(), HaError> {
        Hosts::available()?;
        for (program, arg, hint) in [
            (
                "etcd",
                "--version",
                "install Debian's etcd-server (apt-get install etcd-server)",
            ),
            (
                "patroni",
                "--version",
                "install Debian's patroni (apt-get install patroni)",
            ),
            (
                "runuser",
                "--version",
                "install util-linux (apt-get install util-linux)",
            ),
        ] {
            let ran = Command::new(program)
                .arg(arg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if ran.is_err() {
                return Err(HaError::MissingProgram { program, hint });
            }
        }
        Ok(())
    }

    /// Starts etcd and the nodes and waits until one node leads and every other streams
    /// from it (and, with `synchronous_mode`, one is its synchronous standby). Blocking: call
    /// it from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`HaCluster::available`]'s, bad options, or a cluster that did not come up (with the
    /// ends of its logs). Everything started is removed.
    pub fn start(options: HaOptions) -> Result<Self, HaError> {
        options.check()?;
        Self::available()?;
        // Patroni calls pg_ctl, pg_controldata, pg_rewind and pg_basebackup by their full
        // path: the real directory, not one of symlinks to some of them.
        let bin_dir = find_binaries()?;
        let bin_dir = std::fs::canonicalize(bin_dir.join("postgres"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(bin_dir);
        let user = unprivileged_user()?;
        let dir = tempfile::Builder::new()
            .prefix("chaos-ha-")
            .tempdir()
            .map_err(io_err("make the HA cluster's directory"))?
            .keep();
        let mut names = vec!["etcd".to_string()];
        names.extend((1..=options.nodes).map(|i| format!("n{i}")));
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hosts = match Hosts::create(&name_refs, &dir) {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        let etcd_host = hosts.hosts()[0].clone();
        let nodes = hosts.hosts()[1..]
            .iter()
            .map(|host| Node {
                name: host.name.clone(),
                host: host.clone(),
                dir: dir.join(&host.name),
                process: Mutex::new(None),
            })
            .collect();
        let cluster = HaCluster {
            options,
            user,
            dir,
            etcd_host,
            etcd: Mutex::new(None),
            nodes,
            bin_dir,
            hosts,
        };
        cluster.give_dir(&cluster.dir)?;
        for node in &cluster.nodes {
            std::fs::create_dir_all(&node.dir).map_err(io_err("make a node's directory"))?;
            std::fs::write(node.dir.join("patroni.yml"), cluster.config(node))
                .map_err(io_err("write patroni.yml"))?;
            cluster.give_dir(&node.dir)?;
        }
        cluster.start_etcd()?;
        cluster.wait_etcd()?;
        for node in &cluster.nodes {
            cluster.start_node_process(node)?;
        }
        cluster.wait_healthy(Duration::from_secs(90))?;
        Ok(cluster)
    }

    fn give_dir(&self, path: &Path) -> Result<(), HaError> {
        std::os::unix::fs::chown(path, Some(self.user.uid), Some(self.user.gid)).map_err(io_err(
            format!("give {} to {}", path.display(), self.user.name),
        ))
    }

    /// The options it runs with.
    pub fn options(&self) -> &HaOptions {
        &self.options
    }

    /// The nodes' names, `n1`..`nN`.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// A node's PostgreSQL address.
    pub fn pg_addr(&self, node: &str) -> Option<SocketAddr> {
        self.node(node)
            .map(|n| SocketAddr::from((n.host.addr, PG_PORT)))
    }

    /// The address clients come from (this machine's side of the bridge).
    pub fn client_addr(&self) -> Ipv4Addr {
        self.hosts.client_addr()
    }

    /// The multi-host URL of every node, with `target_session_attrs=read-write`, as a service
    /// in front of Patroni is configured.
    pub fn url(&self) -> String {
        self.url_first(&self.nodes[0].name)
    }

    /// [`HaCluster::url`] with `first` listed first (a service configured when `first` was
    /// the primary: after a failover, the first host it lists is no longer the one to write to).
    pub fn url_first(&self, first: &str) -> String {
        let hosts = self
            .nodes
            .iter()
            .filter(|n| n.name == first)
            .chain(self.nodes.iter().filter(|n| n.name != first))
            .map(|n| format!("{}:{PG_PORT}", n.host.addr))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "postgres://postgres@{hosts}/postgres?target_session_attrs=read-write&connect_timeout=2"
        )
    }

    /// One node's own URL (whatever its role).
    pub fn node_url(&self, node: &str) -> Option<String> {
        self.node(node).map(|n| {
            format!(
                "postgres://postgres@{}:{PG_PORT}/postgres?connect_timeout=2",
                n.host.addr
            )
        })
    }

    fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn config(&self, node: &Node) -> String {
        let ip = node.host.addr;
        let subnet = {
            let o = ip.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        };
        let o = &self.options;
        format!(
            "scope: chaos\n\
name: {name}\n\
log:\n  level: INFO\n\
restapi:\n  listen: {ip}:{REST_PORT}\n  connect_address: {ip}:{REST_PORT}\n\
etcd3:\n  hosts: {etcd}:{ETCD_PORT}\n\
bootstrap:\n  dcs:\n    ttl: {ttl}\n    loop_wait: {loop_wait}\n    retry_timeout: {retry}\n    maximum_lag_on_failover: 1048576\n    synchronous_mode: {sync}\n    postgresql:\n      use_pg_rewind: true\n      parameters:\n        wal_level: replica\n        hot_standby: 'on'\n        max_wal_senders: 10\n        max_replication_slots: 10\n        wal_log_hints: 'on'\n        wal_keep_size: 128MB\n        max_connections: 300\n        synchronous_commit: 'on'\n        fsync: 'off'\n        full_page_writes: 'on'\n  initdb:\n  - encoding: UTF8\n  - auth: trust\n  pg_hba:\n  - local all all trust\n  - host replication replicator {subnet} trust\n  - host all all {subnet} trust\n\
postgresql:\n  listen: {ip}:{PG_PORT}\n  connect_address: {ip}:{PG_PORT}\n  data_dir: {data}\n  bin_dir: {bin}\n  pgpass: {pgpass}\n  authentication:\n    replication:\n      username: replicator\n      password: replicator\n    superuser:\n      username: postgres\n      password: postgres\n    rewind:\n      username: postgres\n      password: postgres\n  parameters:\n    unix_socket_directories: {sock}\n    log_min_messages: warning\n",
            name = node.name,
            etcd = self.etcd_host.addr,
            ttl = o.ttl,
            loop_wait = o.loop_wait,
            retry = o.retry_timeout,
            sync = o.synchronous,
            data = node.dir.join("data").display(),
            bin = self.bin_dir.display(),
            pgpass = node.dir.join("pgpass").display(),
            sock = node.dir.display(),
        )
    }

    fn spawn_logged(
        &self,
        host: &Host,
        program: &str,
        args: &[String],
        log: &Path,
    ) -> Result<Child, HaError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err(format!("open {}", log.display())))?;
        let err = log.try_clone().map_err(io_err("open a log"))?;
        self.hosts
            .command(host, Some(&self.user.name), program)
            .args(args)
            .env("HOME", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Not in this process's group: a terminal's Ctrl-C reaches us, and we stop them.
            .process_group(0)
            .spawn()
            .map_err(io_err(format!("start {program} on {}", host.name)))
    }

    /// Starts etcd (again, after [`HaCluster::kill_etcd`]: its data is kept).
    ///
    /// # Errors
    /// It could not be started.
    pub fn start_etcd(&self) -> Result<(), HaError> {
        let ip = self.etcd_host.addr;
        let args: Vec<String> = [
            "--name",
            "etcd",
            "--data-dir",
            &self.dir.join("etcd").display().to_string(),
            "--listen-client-urls",
            &format!("http://{ip}:{ETCD_PORT}"),
            "--advertise-client-urls",
            &format!("http://{ip}:{ETCD_PORT}"),
            "--listen-peer-urls",
            &format!("http://{ip}:2380"),
            "--initial-advertise-peer-urls",
            &format!("http://{ip}:2380"),
            "--initial-cluster",
            &format!("etcd=http://{ip}:2380"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child =
            self.spawn_logged(&self.etcd_host, "etcd", &args, &self.dir.join("etcd.log"))?;
        *self.etcd.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    fn wait_etcd(&self) -> Result<(), HaError> {
        let addr = SocketAddr::from((self.etcd_host.addr, ETCD_PORT));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HaError::NotReady {
            what: "etcd did not accept connections".into(),
            within: Duration::from_secs(20),
            seen: String::new(),
            logs: self.logs(),
        })
    }

    /// Kills etcd (`SIGKILL`): the consensus store lost.
    pub fn kill_etcd(&self) {
        self.hosts.kill_all(&self.etcd_host);
        if let Some(mut child) = self.etcd.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.wait();
        }
    }

    fn start_node_process(&self, node: &Node) -> Result<(), HaError> {
        let child = self.spawn_logged(
            &node.host,
            "patroni",
            &[node.dir.join("patroni.yml").display().to_string()],
            &node.dir.join("patroni.log"),
        )?;
        *node.process.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// Starts a node's Patroni again after [`HaCluster::kill_node`]: it rejoins (rewinding its
    /// data when it diverged).
    ///
    /// # Errors
    /// No such node, or it could not be started.
    pub fn start_node(&self, name: &str) -> Result<(), HaError> {
        let node = self.node(name).ok_or_else(|| HaError::BadOptions {
            problem: format!("no node {name}"),
        })?;
        self.start_node_process(node)
    }

    /// Kills every process of a node at once (`SIGKILL`: its Patroni, its postmaster and every
    /// backend), as a lost host. Returns how many processes were killed.
    pub fn kill_node(&self, name: &str) -> usize {
        let Some(node) = self.node(name) else {
            return 0;
        };
        let killed = self.hosts.kill_all(&node.host);
        if let Some(mut child) = node
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = child.wait();
        }
        killed
    }

    /// Cuts `name` off from etcd and every other node, both ways, while this machine (the
    /// clients) still reaches it: the split-brain case.
    ///
    /// # Errors
    /// No such node, or `nft` refused the rules.
    pub fn isolate(&self, name: &str) -> Result<(), HaError> {
        let node = self.node(name).ok_or_else(|| HaError::BadOptions {
            problem: format!("no node {name}"),
        })?;
        let mut peers = vec![self.etcd_host.addr];
        peers.extend(
            self.nodes
                .iter()
                .filter(|n| n.name != name)
                .map(|n| n.host.addr),
        );
        Ok(self.hosts.partition(&node.host, &peers)?)
    }

    /// Cuts `name` off from the clients (this machine) only.
    ///
    /// # Errors
    /// No such node, or `nft` refused the rules.
    pub fn cut_clients(&self, name: &str) -> Result<(), HaError> {
        let node = self.node(name).ok_or_else(|| HaError::BadOptions {
            problem: format!("no node {name}"),
        })?;
        Ok(self
            .hosts
            .partition(&node.host, &[self.hosts.client_addr()])?)
    }

    /// Removes every partition.
    ///
    /// # Errors
    /// `nft` refused to remove one.
    pub fn heal_partitions(&self) -> Result<(), HaError> {
        Ok(self.hosts.heal_all()?)
    }

    /// Undoes every fault: partitions removed, etcd and every killed node started again.
    /// Does not wait; [`HaCluster::wait_healthy`] does.
    ///
    /// # Errors
    /// A partition that could not be removed or a process that could not be started.
    pub fn restore(&self) -> Result<(), HaError> {
        self.heal_partitions()?;
        let gone = |slot: &Mutex<Option<Child>>| {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => false,
                _ => {
                    *slot = None;
                    true
                }
            }
        };
        if gone(&self.etcd) {
            self.start_etcd()?;
        }
        for node in &self.nodes {
            if gone(&node.process) {
                self.start_node_process(node)?;
            }
        }
        Ok(())
    }

    /// Every node's state, asked at once (`None` for a node that did not answer in time).
    pub async fn states(&self, within: Duration) -> Vec<(String, Option<NodeState>)> {
        let asks = self.nodes.iter().map(|n| {
            let addr = SocketAddr::from((n.host.addr, REST_PORT));
            async move {
                let state = match http(addr, "GET", "/patroni", None, within).await {
                    Ok((_, body)) => parse_state(&body),
                    Err(_) => None,
                };
                (n.name.clone(), state)
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// One node's state (`None`: no answer within `within`).
    pub async fn node_state(&self, name: &str, within: Duration) -> Option<NodeState> {
        let node = self.node(name)?;
        let addr = SocketAddr::from((node.host.addr, REST_PORT));
        let (_, body) = http(addr, "GET", "/patroni", None, within).await.ok()?;
        parse_state(&body)
    }

    /// Every member's name and role as the cluster lists them (`GET /cluster` on the first
    /// node that answers): `leader`, `sync_standby`, `replica`.
    pub async fn roles(&self) -> Vec<(String, String)> {
        for n in &self.nodes {
            let addr = SocketAddr::from((n.host.addr, REST_PORT));
            let Ok((200, body)) =
                http(addr, "GET", "/cluster", None, Duration::from_millis(500)).await
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            return v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    Some((
                        m["name"].as_str()?.to_string(),
                        m["role"].as_str()?.to_string(),
                    ))
                })
                .collect();
        }
        Vec::new()
    }

    /// The node that reports itself the running primary, when exactly one does.
    pub async fn leader(&self) -> Option<String> {
        let primaries: Vec<String> = self
            .states(Duration::from_millis(500))
            .await
            .into_iter()
            .filter(|(_, s)| s.as_ref().is_some_and(NodeState::is_primary))
            .map(|(n, _)| n)
            .collect();
        (primaries.len() == 1).then(|| primaries[0].clone())
    }

    /// A switchover through the REST API (`POST /switchover` on the leader), to `candidate`
    /// or to any replica.
    ///
    /// # Errors
    /// The API refused it.
    pub async fn switchover(&self, leader: &str, candidate: Option<&str>) -> Result<(), HaError> {
        let node = self.node(leader).ok_or_else(|| HaError::BadOptions {
            problem: format!("no node {leader}"),
        })?;
        let mut body = serde_json::json!({ "leader": leader });
        if let Some(c) = candidate {
            body["candidate"] = Value::from(c);
        }
        let addr = SocketAddr::from((node.host.addr, REST_PORT));
        let request = format!("POST /switchover {body}");
        let (status, answer) = http(
            addr,
            "POST",
            "/switchover",
            Some(&body.to_string()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| HaError::Rest {
            node: leader.into(),
            request: request.clone(),
            message: e.to_string(),
        })?;
        if status != 200 {
            return Err(HaError::Rest {
                node: leader.into(),
                request,
                message: format!("HTTP {status}: {}", answer.trim()),
            });
        }
        Ok(())
    }

    /// Waits (blocking) until one node leads and all others stream from it on its timeline
    /// (with `synchronous_mode`, one of them synchronously).
    ///
    /// # Errors
    /// [`HaError::NotReady`] with what was last seen and the ends of the logs.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), HaError> {
        let deadline = std::time::Instant::now() + within;
        let mut seen = String::new();
        while std::time::Instant::now() < deadline {
            let addrs: Vec<SocketAddr> = self
                .nodes
                .iter()
                .map(|n| SocketAddr::from((n.host.addr, REST_PORT)))
                .collect();
            for addr in addrs {
                let Ok((200, body)) = blocking_get(addr, "/cluster") else {
                    continue;
                };
                seen = body.clone();
                if cluster_healthy(&body, self.options.nodes, self.options.synchronous) {
                    return Ok(());
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HaError::NotReady {
            what: "did not have a leader and every replica streaming".into(),
            within,
            seen,
            logs: self.logs(),
        })
    }

    /// The ends of etcd's and every node's log.
    pub fn logs(&self) -> String {
        let mut out = format!(
            "etcd.log:\n{}",
            tail(&read_from(&self.dir.join("etcd.log"), 0), 5)
        );
        for n in &self.nodes {
            out.push_str(&format!(
                "\n{}/patroni.log:\n{}",
                n.name,
                tail(&read_from(&n.dir.join("patroni.log"), 0), 8)
            ));
        }
        out
    }

    /// The run's directory (logs, configuration, data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            self.hosts.kill_all(&node.host);
            if let Some(mut child) = node
                .process
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                let _ = child.wait();
            }
        }
        self.kill_etcd();
        // The hosts' drop deletes the namespaces, the bridge and the directory.
    }
}

/// Whether `GET /cluster`'s body shows a running leader and `nodes - 1` running replicas on
/// its timeline (one of them a synchronous standby when `synchronous`).
pub(crate) fn cluster_healthy(body: &str, nodes: usize, synchronous: bool) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    let Some(members) = v["members"].as_array() else {
        return false;
    };
    let leader = members
        .iter()
        .filter(|m| m["role"] == "leader" && m["state"] == "running")
        .collect::<Vec<_>>();
    let [leader] = leader.as_slice() else {
        return false;
    };
    let timeline = leader["timeline"].as_u64();
    let replicas = members
        .iter()
        .filter(|m| m["role"] != "leader")
        .filter(|m| matches!(m["state"].as_str(), Some("running" | "streaming")))
        .filter(|m| m["timeline"].as_u64() == timeline && m["lag"].as_u64() == Some(0))
        .collect::<Vec<_>>();
    let sync = members.iter().any(|m| m["role"] == "sync_standby");
    members.len() == nodes && replicas.len() == nodes - 1 && (!synchronous || sync)
}

/// A node's state from `GET /patroni`.
pub(crate) fn parse_state(body: &str) -> Option<NodeState> {
    let v: Value = serde_json::from_str(body).ok()?;
    Some(NodeState {
        role: v["role"].as_str()?.to_string(),
        state: v["state"].as_str().unwrap_or("unknown").to_string(),
        timeline: v["timeline"].as_u64(),
    })
}

/// One HTTP/1.1 request (`Connection: close`), bounded by `within`: the status and the body.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    within: Duration,
) -> std::io::Result<(u16, String)> {
    let deadline = Instant::now() + within;
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout_at(deadline, work).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {within:?}"),
        )
    })?
}

/// [`http`]'s `GET`, blocking, with a 1 s bound (for the start, which blocks anyway).
fn blocking_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let within = Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, within)?;
    stream.set_read_timeout(Some(within))?;
    stream.set_write_timeout(Some(within))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// The status and body of a whole HTTP/1.x response (chunked bodies decoded).
fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_string()));
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    Ok((status, out))
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

    #[test]
    fn a_cluster_is_healthy_with_a_leader_and_every_replica_streaming() {
        let body = r#"{"members": [
            {"name": "n1", "role": "leader", "state": "running", "timeline": 2},
            {"name": "n2", "role": "replica", "state": "running", "timeline": 2, "lag": 0},
            {"name": "n3", "role": "sync_standby", "state": "streaming", "timeline": 2, "lag": 0}]}"#;
        assert!(cluster_healthy(body, 3, false));
        assert!(cluster_healthy(body, 3, true));
        let behind = body.replace(
            r#""timeline": 2, "lag": 0}]"#,
            r#""timeline": 1, "lag": 0}]"#,
        );
        assert!(!cluster_healthy(&behind, 3, false));
        let no_sync = body.replace("sync_standby", "replica");
        assert!(cluster_healthy(&no_sync, 3, false));
        assert!(!cluster_healthy(&no_sync, 3, true));
        assert!(!cluster_healthy(body, 4, false));
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"role\": \"master\", \"state\": \"running\", \"timeline\": 3}";
        let (status, body) = parse_response(plain).unwrap();
        assert_eq!(status, 200);
        let state = parse_state(&body).unwrap();
        assert!(state.is_primary());
        assert_eq!(state.timeline, Some(3));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (503, "hello world".into())
        );
    }
}
