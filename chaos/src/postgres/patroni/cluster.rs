//! [`HaCluster`]: etcd and the Patroni nodes started, killed, isolated and healed.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::super::binaries::find_binaries;
use super::super::process::{RunAs, read_from, tail, unprivileged_user};
use crate::hosts::{Host, Hosts};

use super::haproxy::{
    HAPROXY_PORT, INTER_MS, config as haproxy_config, servers_up, servers_up_blocking,
};
use super::options::{ETCD_PORT, HaError, HaOptions, HaRoute, PG_PORT, REST_PORT, io_err};

/// A Patroni node: its host and its process.
pub(super) struct Node {
    pub(super) name: String,
    pub(super) host: Host,
    pub(super) dir: PathBuf,
    pub(super) process: Mutex<Option<Child>>,
}

/// etcd and N Patroni nodes on hosts of their own.
pub struct HaCluster {
    pub(super) options: HaOptions,
    pub(super) user: RunAs,
    pub(super) dir: PathBuf,
    pub(super) etcd_host: Host,
    pub(super) etcd: Mutex<Option<Child>>,
    pub(super) nodes: Vec<Node>,
    /// HAProxy's host and process, with [`HaRoute::Haproxy`].
    pub(super) haproxy: Option<(Host, Mutex<Option<Child>>)>,
    pub(super) bin_dir: PathBuf,
    // Dropped last: killing everything in the namespaces and deleting them.
    pub(super) hosts: Hosts,
}

impl HaCluster {
    /// Whether this machine can run it: root, `ip`, `nft`, `etcd`, `patroni`, `runuser`
    /// (and `haproxy` for [`HaRoute::Haproxy`]).
    ///
    /// # Errors
    /// The first thing missing, with how to get it.
    pub fn available(route: HaRoute) -> Result<(), HaError> {
        Hosts::available()?;
        let haproxy = (
            "haproxy",
            "-v",
            "install Debian's haproxy (apt-get install haproxy)",
        );
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
        ]
        .into_iter()
        .chain((route == HaRoute::Haproxy).then_some(haproxy))
        {
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
        Self::available(options.route)?;
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
        if options.route == HaRoute::Haproxy {
            names.push("haproxy".to_string());
        }
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hosts = match Hosts::create(&name_refs, &dir) {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        let etcd_host = hosts.hosts()[0].clone();
        let haproxy = hosts.host("haproxy").map(|h| (h.clone(), Mutex::new(None)));
        let nodes = hosts.hosts()[1..=options.nodes]
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
            haproxy,
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
        if cluster.haproxy.is_some() {
            cluster.start_haproxy()?;
        }
        Ok(cluster)
    }

    fn haproxy_socket(&self) -> PathBuf {
        self.dir.join("haproxy.sock")
    }

    /// Starts HAProxy on its host and waits until it sends connections to one node.
    fn start_haproxy(&self) -> Result<(), HaError> {
        let Some((host, slot)) = &self.haproxy else {
            return Ok(());
        };
        let nodes: Vec<(String, Ipv4Addr)> = self
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.host.addr))
            .collect();
        let cfg = self.dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            haproxy_config(
                host.addr,
                &nodes,
                (PG_PORT, REST_PORT),
                &self.haproxy_socket(),
            ),
        )
        .map_err(io_err("write haproxy.cfg"))?;
        let args = [
            "-db".to_string(),
            "-f".to_string(),
            cfg.display().to_string(),
        ];
        let child = self.spawn_logged(host, "haproxy", &args, &self.dir.join("haproxy.log"))?;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let within = Duration::from_secs(20);
        let deadline = std::time::Instant::now() + within;
        let mut seen = None;
        while std::time::Instant::now() < deadline {
            seen = servers_up_blocking(&self.haproxy_socket(), Duration::from_millis(250));
            if seen.as_ref().is_some_and(|up| up.len() == 1) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(INTER_MS));
        }
        Err(HaError::NotReady {
            what: "HAProxy did not send connections to exactly one node".into(),
            within,
            seen: format!("{seen:?}"),
            logs: self.logs(),
        })
    }

    /// The nodes HAProxy sends connections to now (`None`: no HAProxy, or it did not answer).
    pub async fn route_servers(&self) -> Option<Vec<String>> {
        self.haproxy.as_ref()?;
        servers_up(&self.haproxy_socket(), Duration::from_millis(250)).await
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

    /// The URL a service is given by the cluster's route: [`HaCluster::url_first`] with
    /// `leader` first, or HAProxy's address. Behind HAProxy the URL keeps
    /// `target_session_attrs=read-write`, for the moment between a demotion and HAProxy
    /// marking that node down (clients that ignore it are judged on what they do then).
    pub fn route_url(&self, leader: &str) -> String {
        match &self.haproxy {
            Some((host, _)) => format!(
                "postgres://postgres@{}:{HAPROXY_PORT}/postgres?target_session_attrs=read-write&connect_timeout=2",
                host.addr
            ),
            None => self.url_first(leader),
        }
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

    pub(super) fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn config(&self, node: &Node) -> String {
        self.options.patroni_yml(
            &node.name,
            node.host.addr,
            self.etcd_host.addr,
            &node.dir,
            &self.bin_dir,
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

    /// Cuts `name` off from the clients only: this machine, and HAProxy (the clients' path
    /// to the primary when it is their route).
    ///
    /// # Errors
    /// No such node, or `nft` refused the rules.
    pub fn cut_clients(&self, name: &str) -> Result<(), HaError> {
        let node = self.node(name).ok_or_else(|| HaError::BadOptions {
            problem: format!("no node {name}"),
        })?;
        let mut clients = vec![self.hosts.client_addr()];
        clients.extend(self.haproxy.as_ref().map(|(h, _)| h.addr));
        Ok(self.hosts.partition(&node.host, &clients)?)
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

    /// etcd's, every node's and HAProxy's log, whole, each under its name.
    pub fn full_logs(&self) -> String {
        let mut files = vec![("etcd.log".to_string(), self.dir.join("etcd.log"))];
        for n in &self.nodes {
            files.push((format!("{}/patroni.log", n.name), n.dir.join("patroni.log")));
        }
        if self.haproxy.is_some() {
            files.push(("haproxy.log".into(), self.dir.join("haproxy.log")));
        }
        files
            .iter()
            .map(|(name, path)| format!("==> {name} <==\n{}", read_from(path, 0)))
            .collect::<Vec<_>>()
            .join("\n")
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
        if self.haproxy.is_some() {
            out.push_str(&format!(
                "\nhaproxy.log:\n{}",
                tail(&read_from(&self.dir.join("haproxy.log"), 0), 5)
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
            self.kill_node(&node.name);
        }
        self.kill_etcd();
        if let Some((host, slot)) = &self.haproxy {
            self.hosts.kill_all(host);
            if let Some(mut child) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = child.wait();
            }
        }
        // The hosts' drop deletes the namespaces, the bridge and the directory.
    }
}
