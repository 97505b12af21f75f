//! PgBouncer as a real middlebox in front of a throwaway cluster: started by the harness on a
//! free loopback port with a configuration of its own (trust authentication, the admin console
//! open to `postgres`), in session or transaction pooling, with the same rules as a
//! [`Cluster`]: run as an unprivileged user when we are root (PgBouncer refuses root), a
//! watchdog that stops it and removes its directory if this process dies. Its admin console
//! makes the faults: `PAUSE`/`RESUME`, `RECONNECT`, `KILL`, and a restart.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::error::{ClusterError, io_err};
use super::process::{
    PORT_ATTEMPTS, PORT_TAKEN, RunAs, free_port, is_root, tail, unprivileged_user,
};

/// How PgBouncer hands server connections to clients (`pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for as long as it stays.
    Session,
    /// A server connection per transaction: statements outside a transaction may each run on
    /// another server connection, so nothing prepared by name survives between them.
    Transaction,
}

impl PoolMode {
    /// The `pool_mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// How long PgBouncer waits before it opens a server connection again after one failed or
/// was killed (`server_login_retry`; its default, 15 s, would make every recovery after
/// `KILL` take 15 s whatever the client does).
pub const SERVER_LOGIN_RETRY: Duration = Duration::from_secs(2);

/// Where PgBouncer was looked for.
const PLACES: [&str; 3] = [
    "/usr/sbin/pgbouncer",
    "/usr/bin/pgbouncer",
    "/usr/local/bin/pgbouncer",
];

/// The `pgbouncer` binary: `PGBOUNCER`, then `PATH`, then the usual places.
pub fn pgbouncer_binary() -> Result<PathBuf, ClusterError> {
    if let Some(p) = std::env::var_os("PGBOUNCER").map(PathBuf::from) {
        return Ok(p);
    }
    let in_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("pgbouncer"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    in_path
        .into_iter()
        .chain(PLACES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| ClusterError::StartFailed {
            port: 0,
            reason: format!(
                "pgbouncer was not found (PGBOUNCER, PATH, {}); install it (Debian/Ubuntu: `apt-get install pgbouncer`) or set PGBOUNCER",
                PLACES.join(", ")
            ),
            log_tail: String::new(),
        })
}

/// A PgBouncer in front of a cluster, stopped and removed on drop.
pub struct Bouncer {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    mode: PoolMode,
    run_as: Option<RunAs>,
    process: Mutex<Option<Running>>,
}

struct Running {
    watchdog: Child,
    stdin: ChildStdin,
}

/// Starts pgbouncer under a watchdog: `fast` stops it, end of input (we died) stops it and
/// removes the directory. Arguments: pgbouncer ini log root.
const WATCHDOG: &str = r#"
"$1" "$2" </dev/null >>"$3" 2>&1 &
pb=$!
echo "$pb"
IFS= read -r cmd || cmd=orphaned
kill -TERM "$pb" 2>/dev/null
wait "$pb"
if [ "$cmd" = orphaned ]; then rm -rf "$4"; fi
"#;

impl std::fmt::Debug for Bouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bouncer")
            .field("port", &self.port)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Bouncer {
    /// Starts PgBouncer in `mode` in front of `upstream`.
    ///
    /// # Examples
    /// ```no_run
    /// use chaos::postgres::{Bouncer, Cluster, PoolMode};
    /// let cluster = Cluster::start()?;
    /// let bouncer = Bouncer::start(&cluster, PoolMode::Transaction)?;
    /// println!("connect to {}", bouncer.url());
    /// # Ok::<(), chaos::postgres::ClusterError>(())
    /// ```
    pub fn start(upstream: &Cluster, mode: PoolMode) -> Result<Self, ClusterError> {
        let bin = pgbouncer_binary()?;
        let run_as = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let root = tempfile::Builder::new()
            .prefix("chaos-pgbouncer-")
            .tempdir()
            .map_err(io_err("create a temporary directory for pgbouncer"))?
            .keep();
        let mut bouncer = Bouncer {
            bin,
            root,
            port: 0,
            mode,
            run_as,
            process: Mutex::new(None),
        };
        std::fs::write(bouncer.root.join("userlist.txt"), "\"postgres\" \"\"\n")
            .map_err(io_err("write pgbouncer's userlist.txt"))?;
        if let Some(user) = &bouncer.run_as {
            for p in [bouncer.root.clone(), bouncer.root.join("userlist.txt")] {
                std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid)).map_err(io_err(
                    format!("give {} to user {}", p.display(), user.name),
                ))?;
            }
        }
        for _ in 0..PORT_ATTEMPTS {
            bouncer.port = free_port()?;
            bouncer.write_ini(upstream.port())?;
            match bouncer.spawn() {
                Ok(running) => {
                    *bouncer.lock() = Some(running);
                    return Ok(bouncer);
                }
                Err(ClusterError::StartFailed { reason, .. }) if reason == PORT_TAKEN => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::PortInUse {
            attempts: PORT_ATTEMPTS,
        })
    }

    /// A URL for the `postgres` database through PgBouncer.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pooling mode.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// The log.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("pgbouncer.log")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_ini(&self, upstream: u16) -> Result<(), ClusterError> {
        let root = self.root.display();
        let ini = format!(
            "[databases]\npostgres = host=127.0.0.1 port={upstream} dbname=postgres\n* = host=127.0.0.1 port={upstream}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {root}/userlist.txt\nadmin_users = postgres\npool_mode = {mode}\nmax_client_conn = 1000\ndefault_pool_size = 20\nserver_reset_query = DISCARD ALL\nserver_login_retry = {retry}\nignore_startup_parameters = extra_float_digits,options\nlogfile = {root}/pgbouncer.log\npidfile = {root}/pgbouncer.pid\n",
            port = self.port,
            mode = self.mode.as_str(),
            retry = SERVER_LOGIN_RETRY.as_secs(),
        );
        let path = self.root.join("pgbouncer.ini");
        std::fs::write(&path, ini).map_err(io_err("write pgbouncer.ini"))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                .map_err(io_err("give pgbouncer.ini to the server's user"))?;
        }
        Ok(())
    }

    fn spawn(&self) -> Result<Running, ClusterError> {
        let log = self.root.join("pgbouncer.out");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("chaos-pgbouncer-watchdog")
            .arg(&self.bin)
            .arg(self.root.join("pgbouncer.ini"))
            .arg(&log)
            .arg(&self.root)
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &self.root);
        }
        let mut watchdog = cmd
            .spawn()
            .map_err(io_err("start the pgbouncer watchdog (sh)"))?;
        let stdin = watchdog.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(watchdog.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .map_err(io_err("read pgbouncer's pid from the watchdog"))?;
        let running = Running { watchdog, stdin };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(running);
            }
            let logs = format!(
                "{}{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
            let taken = logs.contains("Address already in use");
            if taken || Instant::now() >= deadline {
                stop(running);
                return Err(ClusterError::StartFailed {
                    port: self.port,
                    reason: if taken {
                        PORT_TAKEN.to_string()
                    } else {
                        "pgbouncer did not listen within 10 s".to_string()
                    },
                    log_tail: tail(&logs, 20),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops PgBouncer (every client connection is cut). Stopping it again does nothing.
    pub fn stop(&self) {
        if let Some(running) = self.lock().take() {
            stop(running);
        }
    }

    /// Starts it again on the same port (stopping it first if it runs).
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.stop();
        let running = self.spawn()?;
        *self.lock() = Some(running);
        Ok(())
    }

    /// Runs one admin console command (`PAUSE`, `RESUME`, `RECONNECT`, `KILL postgres`, `SHOW
    /// POOLS`, ...) on a connection of its own.
    ///
    /// # Errors
    /// The console could not be reached, or refused the command.
    pub async fn admin(
        &self,
        command: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error> {
        let url = format!("postgres://postgres@127.0.0.1:{}/pgbouncer", self.port);
        let (client, driver) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(driver);
        client.simple_query(command).await
    }

    /// The directory PgBouncer runs in.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn stop(mut running: Running) {
    let _ = running.stdin.write_all(b"stop\n");
    let _ = running.stdin.flush();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = running.watchdog.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = running.watchdog.kill();
    let _ = running.watchdog.wait();
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
