//! One throwaway cluster: initdb, start under a watchdog, crash, stop, restart, and the
//! watchdog that removes it whatever happens to this process.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::binaries::find_binaries;
use super::error::{ClusterError, io_err};
use super::process::*;

/// Server settings appended to every throwaway cluster's `postgresql.conf`.
pub const TEST_SETTINGS: &str = include_str!("../../../fixtures/postgresql.conf");

/// How to stop a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `SIGINT`: roll back open transactions, disconnect clients, checkpoint, exit.
    Fast,
    /// `SIGQUIT`: exit at once without a checkpoint, like a crash; the next start runs recovery.
    Immediate,
}

/// Options for [`Cluster::start_with`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Extra `name = value` settings, applied after [`TEST_SETTINGS`].
    pub settings: Vec<(String, String)>,
    /// How long a start may take before it is reported as failed (default 30 s).
    pub startup_timeout: Duration,
    /// TLS: the server's certificate and key (`ssl = on`), e.g. from
    /// [`TestCa::issue`](crate::tls::TestCa::issue). Off by default.
    pub tls: Option<crate::tls::Issued>,
    /// With `tls`, refuse every TCP connection that is not encrypted (a `hostnossl ... reject`
    /// rule first in `pg_hba.conf`), as managed services that require TLS do.
    pub tls_only: bool,
    /// With `tls`, the PEM certificate of the CA that signs clients' certificates
    /// (`ssl_ca_file`): TCP logins then need a client certificate whose common name is the
    /// user (`hostssl ... cert`), and nothing else is accepted.
    pub tls_client_ca: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            settings: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            tls: None,
            tls_only: false,
            tls_client_ca: None,
        }
    }
}

/// A private PostgreSQL server in a temporary directory, stopped and removed on drop.
///
/// `Cluster` is `Send + Sync`: share it behind an `Arc`, stop and restart it from any thread.
/// Its methods block (a start takes about a second); from async code call them through
/// `tokio::task::spawn_blocking`.
///
/// # Examples
/// ```no_run
/// use chaos::postgres::{Cluster, StopMode};
/// let cluster = Cluster::start()?;
/// println!("connect to {}", cluster.url());
/// cluster.stop(StopMode::Immediate)?; // a crash
/// cluster.restart()?;                 // same port, same data
/// # Ok::<(), chaos::postgres::ClusterError>(())
/// ```
pub struct Cluster {
    pub(super) bin_dir: PathBuf,
    pub(super) root: PathBuf,
    pub(super) port: u16,
    pub(super) run_as: Option<RunAs>,
    pub(super) startup_timeout: Duration,
    pub(super) server: Mutex<Option<Server>>,
    /// Counted until dropped, last: after `Drop` has removed the directory.
    pub(super) _live: super::live::Live,
}

/// A running server: its watchdog and the postmaster's pid.
pub(super) struct Server {
    watchdog: Child,
    stdin: ChildStdin,
    pid: u32,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("port", &self.port)
            .field("root", &self.root)
            .field("pid", &self.postmaster_pid())
            .finish()
    }
}

impl Cluster {
    /// Starts a throwaway cluster with default options.
    pub fn start() -> Result<Self, ClusterError> {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts a throwaway cluster: find binaries, `initdb`, start on a free port, wait until ready.
    pub fn start_with(options: ClusterOptions) -> Result<Self, ClusterError> {
        let bin_dir = find_binaries()?;
        let run_as = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let live = super::live::Live::new();
        let root = tempfile::Builder::new()
            .prefix("chaos-pg-")
            .tempdir()
            .map_err(io_err("create a temporary directory for the cluster"))?
            .keep();
        let mut cluster = Cluster {
            bin_dir,
            root,
            port: 0,
            run_as,
            startup_timeout: options.startup_timeout,
            server: Mutex::new(None),
            _live: live,
        };
        // From here on, dropping `cluster` removes the directory.
        cluster.init(&options)?;
        cluster.start_on_free_port()?;
        Ok(cluster)
    }

    /// Starts the server on the first free port it can bind (another process may take a free
    /// port between the look and the bind).
    pub(super) fn start_on_free_port(&mut self) -> Result<(), ClusterError> {
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            match self.spawn() {
                Ok(server) => {
                    *self.lock() = Some(server);
                    return Ok(());
                }
                Err(ClusterError::StartFailed { reason, .. }) if reason == PORT_TAKEN => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::PortInUse {
            attempts: PORT_ATTEMPTS,
        })
    }

    /// A URL for the `postgres` superuser and database, over TCP on loopback.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback TCP port the server listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory of the server's unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("socket")
    }

    /// The server log.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// The postmaster's pid, while the server runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|s| s.pid)
    }

    /// The postmaster and all of its children (backends, checkpointer, ...), while it runs.
    pub fn pids(&self) -> Vec<u32> {
        let Some(pid) = self.postmaster_pid() else {
            return Vec::new();
        };
        let mut pids = vec![pid];
        pids.extend(children_of(pid));
        pids
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(process_alive)
    }

    /// Stops the server and waits until it has exited. Stopping a stopped server does nothing.
    pub fn stop(&self, mode: StopMode) -> Result<(), ClusterError> {
        let server = self.lock().take();
        if let Some(server) = server {
            server.stop(mode)?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data directory (stopping it fast first if
    /// it runs). After an immediate stop the server runs crash recovery before it is ready.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.stop(StopMode::Fast)?;
        let server = self.spawn()?;
        *self.lock() = Some(server);
        Ok(())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Option<Server>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env_remove("PGDATA");
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &self.root);
        }
        cmd
    }

    /// The cluster's directory and its socket directory, private to the server's user.
    pub(super) fn prepare_root(&self) -> Result<(), ClusterError> {
        let socket_dir = self.socket_dir();
        std::fs::create_dir(&socket_dir).map_err(io_err("create the socket directory"))?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("set permissions on the cluster directory"))?;
        if let Some(user) = &self.run_as {
            for dir in [&self.root, &socket_dir] {
                std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).map_err(io_err(
                    format!("give {} to user {}", dir.display(), user.name),
                ))?;
            }
        }
        Ok(())
    }

    pub(super) fn init(&self, options: &ClusterOptions) -> Result<(), ClusterError> {
        self.prepare_root()?;
        let output = self
            .command(self.bin_dir.join("initdb"))
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("run initdb"))?;
        if !output.status.success() {
            let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
            log.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(ClusterError::InitdbFailed {
                status: output.status,
                log_tail: tail(&log, 20),
            });
        }
        let mut conf = format!("\n# chaos throwaway cluster\n{TEST_SETTINGS}\n");
        if let Some(tls) = &options.tls {
            self.write_tls(tls, options.tls_only, options.tls_client_ca.as_deref())?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            if options.tls_client_ca.is_some() {
                conf.push_str("ssl_ca_file = 'client-ca.crt'\n");
            }
        }
        for (name, value) in &options.settings {
            conf.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(io_err("write postgresql.conf"))
    }

    /// The server's certificate and key in its data directory (the key readable by the
    /// server's user only, as PostgreSQL insists), and the rule refusing plain TCP.
    pub(super) fn write_tls(
        &self,
        tls: &crate::tls::Issued,
        tls_only: bool,
        client_ca: Option<&str>,
    ) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let mut files = vec![
            ("server.crt", tls.cert_pem.as_str()),
            ("server.key", &tls.key_pem),
        ];
        files.extend(client_ca.map(|pem| ("client-ca.crt", pem)));
        for (name, pem) in files {
            let path = data.join(name);
            std::fs::write(&path, pem).map_err(io_err(format!("write {name}")))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("set permissions on {name}")))?;
            if let Some(user) = &self.run_as {
                std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                    .map_err(io_err(format!("give {name} to user {}", user.name)))?;
            }
        }
        let mut first = String::new();
        if tls_only || client_ca.is_some() {
            first.push_str("hostnossl all all all reject\n");
        }
        if client_ca.is_some() {
            first.push_str("hostssl all all all cert\n");
        }
        if !first.is_empty() {
            let hba = data.join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).map_err(io_err("read pg_hba.conf"))?;
            std::fs::write(&hba, format!("{first}{rules}")).map_err(io_err("write pg_hba.conf"))?;
        }
        Ok(())
    }

    /// Starts the postmaster under its watchdog and waits until it is ready.
    pub(super) fn spawn(&self) -> Result<Server, ClusterError> {
        let log = self.log_path();
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut watchdog = self
            .command("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("chaos-pg-watchdog")
            .arg(self.bin_dir.join("postgres"))
            .arg(self.data_dir())
            .arg(self.port.to_string())
            .arg(self.socket_dir())
            .arg(&log)
            .arg(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // A process group of its own: a terminal's Ctrl-C or hang-up (sent to its
            // foreground group) reaches this process, which stops the cluster, and never the
            // watchdog or the server, which would otherwise be killed or left behind.
            .process_group(0)
            .spawn()
            .map_err(io_err("start the server watchdog (sh)"))?;
        let stdin = watchdog.stdin.take().expect("piped stdin");
        let mut first_line = String::new();
        BufReader::new(watchdog.stdout.take().expect("piped stdout"))
            .read_line(&mut first_line)
            .map_err(io_err("read the server pid from the watchdog"))?;
        let pid: u32 = first_line
            .trim()
            .parse()
            .map_err(|_| ClusterError::StartFailed {
                port: self.port,
                reason: format!("the watchdog did not report a pid (got {first_line:?})"),
                log_tail: String::new(),
            })?;
        let server = Server {
            watchdog,
            stdin,
            pid,
        };
        match self.wait_ready(pid, log_start) {
            Ok(()) => Ok(server),
            Err(e) => {
                let _ = server.stop(StopMode::Immediate);
                Err(e)
            }
        }
    }

    pub(super) fn wait_ready(&self, pid: u32, log_start: u64) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.startup_timeout;
        let pid_file = self.data_dir().join("postmaster.pid");
        let failed = |reason: String| {
            let log = read_from(&self.log_path(), log_start);
            let reason = if log.contains("could not bind") || log.contains("Address already in use")
            {
                PORT_TAKEN.to_string()
            } else {
                reason
            };
            ClusterError::StartFailed {
                port: self.port,
                reason,
                log_tail: tail(&log, 20),
            }
        };
        loop {
            if !process_alive(pid) {
                return Err(failed("the server exited during start-up".into()));
            }
            let ready = std::fs::read_to_string(&pid_file).is_ok_and(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines.first().map(|l| l.trim()) == Some(&pid.to_string())
                    && lines.get(7).is_some_and(|l| l.trim() == "ready")
            });
            if ready && TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "not ready after {:?}",
                    self.startup_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The watchdog: starts the postmaster, prints its pid, then waits for a command on stdin.
/// `fast`/`immediate` stop it; end of input (our process died) stops it at once and removes
/// the cluster directory. Arguments: postgres data port socket_dir log root.
pub(super) const WATCHDOG: &str = r#"
"$1" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 </dev/null >>"$5" 2>&1 &
pg=$!
echo "$pg"
IFS= read -r cmd || cmd=orphaned
case "$cmd" in
  fast) kill -INT "$pg" 2>/dev/null ;;
  *) kill -QUIT "$pg" 2>/dev/null ;;
esac
wait "$pg"
if [ "$cmd" = orphaned ]; then rm -rf "$6"; fi
"#;

impl Server {
    pub(super) fn stop(mut self, mode: StopMode) -> Result<(), ClusterError> {
        let line: &[u8] = match mode {
            StopMode::Fast => b"fast\n",
            StopMode::Immediate => b"immediate\n",
        };
        // The watchdog may already be gone if the server died; waiting tells.
        let _ = self.stdin.write_all(line);
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.watchdog.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    // A server that ignores its shutdown signal: kill it outright.
                    kill(self.pid, libc::SIGKILL);
                    let _ = self.watchdog.kill();
                    let _ = self.watchdog.wait();
                    break;
                }
                Err(e) => return Err(io_err("wait for the server to stop")(e)),
            }
        }
        // The postmaster exits after its children; make sure no stray child outlives it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let server = self.lock().take();
        if let Some(server) = server {
            let _ = server.stop(StopMode::Immediate);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
