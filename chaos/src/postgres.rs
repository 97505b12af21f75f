//! Throwaway PostgreSQL clusters: the embedded database of tests, benchmarks and `chaos run`.
//!
//! [`Database::from_env`] is the entry point most callers want: it uses the server at
//! `DATABASE_URL` when that variable is set, and otherwise starts a private [`Cluster`].
//!
//! # How a cluster is started
//! 1. Server binaries are found in `PG_BIN`, then `pg_config --bindir`, then `PATH`, then the
//!    newest `/usr/lib/postgresql/*/bin` (and the usual Homebrew and RHEL locations).
//! 2. `initdb` writes a data directory into a fresh temporary directory (trust authentication,
//!    no fsync), and `fixtures/postgresql.conf` is appended to its settings.
//! 3. `postgres` starts on a free `127.0.0.1` port with its unix socket inside the temporary
//!    directory, and the start waits until the server reports `ready` and accepts TCP.
//!
//! `initdb` and `postgres` refuse to run as root. When the effective uid is 0 both run as the
//! `postgres` system user (or `nobody` when there is none), and the temporary directory is
//! handed to that user.
//!
//! # No orphans
//! The server is started by a small `sh` watchdog whose standard input is a pipe held by this
//! process. A stop request is a line on that pipe. When this process dies, however it dies
//! (a panic in a test that shares a `static` cluster, `abort`, `SIGKILL`), the pipe closes,
//! and the watchdog stops the server at once and removes the temporary directory. The
//! watchdog and the server run in a process group of their own, so signals a terminal sends
//! to its foreground group (Ctrl-C, a closed terminal's hang-up) reach only this process,
//! whose handler stops the cluster; a hang-up no longer kills the watchdog and leaves the
//! server (which takes `SIGHUP` as "reload") running.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod bouncer;
mod standby;
pub use bouncer::{Bouncer, PoolMode, SERVER_LOGIN_RETRY, pgbouncer_binary};
pub use standby::REPLICATION_SETTINGS;

/// Server settings appended to every throwaway cluster's `postgresql.conf`.
pub const TEST_SETTINGS: &str = include_str!("../../fixtures/postgresql.conf");

/// How many times a start is retried on another port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Why a throwaway cluster could not be started or controlled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No `initdb`/`postgres` pair was found.
    #[error(
        "PostgreSQL server binaries (initdb and postgres) were not found (searched: {searched}); \
         install them (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql@17`), \
         set PG_BIN to the directory that holds them, or set DATABASE_URL to use a server you run"
    )]
    BinariesNotFound {
        /// The places that were searched, in order.
        searched: String,
    },
    /// Running as root, and no unprivileged user exists to run the server as.
    #[error(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run the server as \
         (initdb and postgres refuse root); create one (`useradd --system postgres`) or run as a normal user"
    )]
    NoUnprivilegedUser,
    /// A file system or process operation failed.
    #[error("could not {action}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `initdb` exited with an error.
    #[error("initdb failed ({status}); its output ends with:\n{log_tail}")]
    InitdbFailed {
        /// initdb's exit status.
        status: std::process::ExitStatus,
        /// The last lines initdb printed.
        log_tail: String,
    },
    /// The server exited or did not become ready.
    #[error(
        "PostgreSQL did not start on 127.0.0.1:{port} ({reason}); its log ends with:\n{log_tail}"
    )]
    StartFailed {
        /// The port it was started on.
        port: u16,
        /// What went wrong.
        reason: String,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// Every attempted port was taken by another process.
    #[error(
        "no free port: {attempts} ports in a row were taken before PostgreSQL could bind them; \
         free some ports or retry"
    )]
    PortInUse {
        /// How many ports were tried.
        attempts: usize,
    },
    /// `DATABASE_URL` is set to something that is not a usable PostgreSQL URL.
    #[error(
        "DATABASE_URL is not a usable PostgreSQL URL: {problem}; fix it (e.g. postgres://user:password@host:5432/db), \
         or unset DATABASE_URL to use a throwaway cluster"
    )]
    BadDatabaseUrl {
        /// What is wrong with it (any password redacted).
        problem: String,
    },
    /// The server at `DATABASE_URL` cannot be reached or refuses the login.
    #[error(
        "the server at DATABASE_URL ({target}) {problem}; check that it runs and that the URL is right, \
         or unset DATABASE_URL to use a throwaway cluster"
    )]
    Unreachable {
        /// `host:port` from the URL.
        target: String,
        /// What happened.
        problem: String,
    },
    /// The operation needs a cluster we own, but `DATABASE_URL` points at an external server.
    #[error(
        "{operation} needs a throwaway cluster; DATABASE_URL points at a server this process does not own \
         (unset DATABASE_URL to use a throwaway cluster)"
    )]
    NotOwned {
        /// The operation that was refused.
        operation: &'static str,
    },
}

fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}

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

/// The OS user the server runs as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
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
    bin_dir: PathBuf,
    root: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    startup_timeout: Duration,
    server: Mutex<Option<Server>>,
}

/// A running server: its watchdog and the postmaster's pid.
struct Server {
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
        };
        // From here on, dropping `cluster` removes the directory.
        cluster.init(&options)?;
        cluster.start_on_free_port()?;
        Ok(cluster)
    }

    /// Starts the server on the first free port it can bind (another process may take a free
    /// port between the look and the bind).
    fn start_on_free_port(&mut self) -> Result<(), ClusterError> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Server>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env_remove("PGDATA");
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &self.root);
        }
        cmd
    }

    /// The cluster's directory and its socket directory, private to the server's user.
    fn prepare_root(&self) -> Result<(), ClusterError> {
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

    fn init(&self, options: &ClusterOptions) -> Result<(), ClusterError> {
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
    fn write_tls(
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
    fn spawn(&self) -> Result<Server, ClusterError> {
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

    fn wait_ready(&self, pid: u32, log_start: u64) -> Result<(), ClusterError> {
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

const PORT_TAKEN: &str = "port already in use";

/// The watchdog: starts the postmaster, prints its pid, then waits for a command on stdin.
/// `fast`/`immediate` stop it; end of input (our process died) stops it at once and removes
/// the cluster directory. Arguments: postgres data port socket_dir log root.
const WATCHDOG: &str = r#"
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
    fn stop(mut self, mode: StopMode) -> Result<(), ClusterError> {
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

/// The database a test or scenario runs against: a throwaway cluster, or `DATABASE_URL`.
#[derive(Debug, Clone)]
pub enum Database {
    /// A private cluster this process owns: it can be stopped, crashed and restarted.
    Owned(Arc<Cluster>),
    /// A server at `DATABASE_URL`: restart and kill scenarios are not available.
    External {
        /// The URL from the environment.
        url: String,
    },
}

impl Database {
    /// What it is, in a report's header, password redacted.
    pub fn report_label(&self) -> String {
        match self {
            Database::Owned(c) => format!("throwaway cluster on 127.0.0.1:{}", c.port()),
            Database::External { url } => redact_url(url),
        }
    }

    /// `DATABASE_URL` when set (and not empty), otherwise a new throwaway cluster.
    ///
    /// # Errors
    /// `DATABASE_URL` is not a PostgreSQL URL or key=value string naming a TCP host
    /// ([`ClusterError::BadDatabaseUrl`], checked before anything starts), or the cluster
    /// could not be started.
    pub fn from_env() -> Result<Self, ClusterError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                tcp_target(&url)?;
                Ok(Database::External { url })
            }
            _ => Ok(Database::Owned(Arc::new(Cluster::start()?))),
        }
    }

    /// Checks that the server answers a login, before anything is run against it: a DNS
    /// failure, a refused or unanswered connection and a refused login each get one error
    /// naming the host and port from the URL. A cluster of our own is always ready.
    ///
    /// # Errors
    /// [`ClusterError::Unreachable`].
    pub async fn check_reachable(&self, within: Duration) -> Result<(), ClusterError> {
        let Database::External { url } = self else {
            return Ok(());
        };
        let config = parse_database_url(url)?;
        let (host, port) = first_tcp_host(url, &config)?;
        let target = format!("{host}:{port}");
        let unreachable = |problem: String| ClusterError::Unreachable {
            target: target.clone(),
            problem,
        };
        match tokio::time::timeout(within, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(unreachable(format!(
                    "could not be found: the name `{host}` does not resolve (DNS: {e})"
                )));
            }
            Err(_) => {
                return Err(unreachable(format!(
                    "could not be found: resolving `{host}` took more than {within:?}"
                )));
            }
        }
        match tokio::time::timeout(within, config.connect(tokio_postgres::NoTls)).await {
            Ok(Ok((client, connection))) => {
                drop(client);
                let _ = connection.await;
                Ok(())
            }
            Ok(Err(e)) => {
                let io = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .map(std::io::Error::kind);
                Err(unreachable(match (io, e.as_db_error()) {
                    (Some(std::io::ErrorKind::ConnectionRefused), _) => {
                        "refused the connection: nothing listens there".into()
                    }
                    (_, Some(db)) => format!("refused the login: {}", db.message()),
                    _ => format!("could not be connected to: {e}"),
                }))
            }
            Err(_) => Err(unreachable(format!("did not answer within {within:?}"))),
        }
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        match self {
            Database::Owned(cluster) => cluster.url(),
            Database::External { url } => url.clone(),
        }
    }

    /// The cluster, when this process owns it.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Database::Owned(cluster) => Some(cluster),
            Database::External { .. } => None,
        }
    }

    /// The cluster, or an error that says why `operation` is unavailable.
    pub fn require_cluster(&self, operation: &'static str) -> Result<&Arc<Cluster>, ClusterError> {
        self.cluster().ok_or(ClusterError::NotOwned { operation })
    }

    /// A short description for logs and reports, with any password redacted.
    pub fn describe(&self) -> String {
        match self {
            Database::Owned(cluster) => format!(
                "throwaway cluster on 127.0.0.1:{} (pid {})",
                cluster.port(),
                cluster.postmaster_pid().unwrap_or(0)
            ),
            Database::External { url } => format!(
                "external server {} (restart and kill scenarios unavailable)",
                redact_url(url)
            ),
        }
    }
}

/// The first TCP host and its port of a database URL (or key=value string): what the proxy
/// forwards to.
///
/// # Errors
/// [`ClusterError::BadDatabaseUrl`]: it does not parse (the pool's own reading, so the error
/// names what is wrong with every password redacted), or it names only unix sockets.
pub fn tcp_target(url: &str) -> Result<(String, u16), ClusterError> {
    first_tcp_host(url, &parse_database_url(url)?)
}

/// `url` as tokio-postgres reads it, checked by the pool's own reading first (whose errors
/// say what is wrong, every password redacted).
fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, ClusterError> {
    let bad = |problem: String| ClusterError::BadDatabaseUrl { problem };
    pool::PoolConfig::from_url(url).map_err(|e| bad(e.to_string()))?;
    url.parse().map_err(|e| bad(redact_url(&format!("{e}"))))
}

fn first_tcp_host(
    url: &str,
    config: &tokio_postgres::Config,
) -> Result<(String, u16), ClusterError> {
    let ports = config.get_ports();
    let port_of = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    for (i, host) in config.get_hosts().iter().enumerate() {
        if let tokio_postgres::config::Host::Tcp(h) = host {
            return Ok((h.clone(), port_of(i)));
        }
    }
    if let Some(addr) = config.get_hostaddrs().first() {
        return Ok((addr.to_string(), port_of(0)));
    }
    Err(ClusterError::BadDatabaseUrl {
        problem: format!(
            "`{}` names no TCP host (only unix sockets, or none), and the proxy forwards TCP: give host:port",
            redact_url(url)
        ),
    })
}

/// The database shared by every test of one test binary, started on first use.
///
/// Tests that stop or crash the server must start a [`Cluster`] of their own instead.
/// The shared cluster is never dropped (it lives in a `static`); its watchdog stops it and
/// removes its directory when the process exits.
pub fn shared() -> Result<&'static Database, Arc<ClusterError>> {
    static SHARED: OnceLock<Result<Database, Arc<ClusterError>>> = OnceLock::new();
    SHARED
        .get_or_init(|| Database::from_env().map_err(Arc::new))
        .as_ref()
        .map_err(Arc::clone)
}

/// Passwords are redacted with the pool's own function, so both crates redact alike.
pub use pool::redact_url;

/// Where server binaries are looked for, in order; the first directory holding both
/// `initdb` and `postgres` wins.
pub fn binary_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for pattern in [
        "/usr/lib/postgresql",
        "/usr/local/opt",
        "/opt/homebrew/opt",
        "/usr",
    ] {
        let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(pattern)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = match pattern {
                    "/usr/lib/postgresql" => name.clone(),
                    "/usr" => name.strip_prefix("pgsql-")?.to_string(),
                    _ => name.strip_prefix("postgresql@")?.to_string(),
                };
                Some((version_key(&version)?, entry.path().join("bin")))
            })
            .collect();
        versioned.sort_by(|a, b| b.0.cmp(&a.0));
        dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    }
    dirs
}

/// `"16"` -> `[16]`, `"9.6"` -> `[9, 6]`; anything else is not a version.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn find_binaries() -> Result<PathBuf, ClusterError> {
    let candidates = binary_candidates();
    candidates
        .iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .cloned()
        .ok_or_else(|| ClusterError::BinariesNotFound {
            searched: describe_search(&candidates),
        })
}

fn describe_search(candidates: &[PathBuf]) -> String {
    let mut places = vec![
        "$PG_BIN".to_string(),
        "`pg_config --bindir`".to_string(),
        "$PATH".to_string(),
        "/usr/lib/postgresql/*/bin".to_string(),
    ];
    if candidates.is_empty() {
        places.push("(nothing existed)".to_string());
    }
    places.join(", ")
}

fn is_root() -> bool {
    // Safety: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn unprivileged_user() -> Result<RunAs, ClusterError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let lookup = |wanted: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != wanted {
                return None;
            }
            Some(RunAs {
                name: wanted.to_string(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
    };
    lookup("postgres")
        .or_else(|| lookup("nobody"))
        .ok_or(ClusterError::NoUnprivilegedUser)
}

fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_err("find a free loopback port"))
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        // No procfs (macOS): ask the kernel.
        Err(_) if !Path::new("/proc/self").exists() => kill(pid, 0),
        Err(_) => false,
    }
}

fn kill(pid: u32, signal: i32) -> bool {
    // Safety: kill has no memory-safety preconditions; a stale pid at worst yields ESRCH.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// The pids whose parent is `parent` (Linux only; empty elsewhere).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        use std::io::Seek;
        let _ = f.seek(std::io::SeekFrom::Start(offset));
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        assert!(version_key("16").unwrap() > version_key("9.6").unwrap());
        assert_eq!(version_key("main"), None);
    }

    #[test]
    fn missing_binaries_error_says_what_to_do() {
        let msg = ClusterError::BinariesNotFound {
            searched: describe_search(&[]),
        }
        .to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(
            msg.contains("PG_BIN") && msg.contains("DATABASE_URL"),
            "{msg}"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
