//! Streaming replication between throwaway clusters: a primary with a hot standby made by
//! `pg_basebackup -R`, promotion, and an old primary rejoining as a standby of the new one.
//! The same rules as any [`Cluster`]: free loopback ports, run as an unprivileged user when we
//! are root, a watchdog that removes everything if this process dies.

use std::process::Stdio;
use std::sync::Mutex;

use super::cluster::{Cluster, ClusterOptions, StopMode};
use super::error::{ClusterError, io_err};
use super::process::tail;

/// The settings a primary needs for a streaming standby (the throwaway defaults turn WAL
/// shipping off: `wal_level = minimal`).
pub const REPLICATION_SETTINGS: [(&str, &str); 4] = [
    ("wal_level", "replica"),
    ("max_wal_senders", "8"),
    ("hot_standby", "on"),
    ("wal_keep_size", "64MB"),
];

impl ClusterOptions {
    /// Options for a primary that can feed standbys ([`Cluster::start_standby`]).
    pub fn replicated() -> Self {
        let mut options = Self::default();
        options.settings.extend(
            REPLICATION_SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        options
    }
}

impl Cluster {
    /// Starts a hot standby of this cluster (which must run, started with
    /// [`ClusterOptions::replicated`]): `pg_basebackup -R` into a new temporary directory, then
    /// the server on a free port, streaming from this one.
    ///
    /// # Examples
    /// ```no_run
    /// use chaos::postgres::{Cluster, ClusterOptions, StopMode};
    /// let primary = Cluster::start_with(ClusterOptions::replicated())?;
    /// let standby = primary.start_standby()?;
    /// primary.stop(StopMode::Immediate)?; // the primary crashes
    /// standby.promote()?;                 // and the standby takes over
    /// # Ok::<(), chaos::postgres::ClusterError>(())
    /// ```
    pub fn start_standby(&self) -> Result<Cluster, ClusterError> {
        let live = super::live::Live::new();
        let root = tempfile::Builder::new()
            .prefix("chaos-pg-standby-")
            .tempdir()
            .map_err(io_err("create a temporary directory for the standby"))?
            .keep();
        let mut standby = Cluster {
            bin_dir: self.bin_dir.clone(),
            root,
            port: 0,
            run_as: self.run_as.clone(),
            startup_timeout: self.startup_timeout,
            server: Mutex::new(None),
            _live: live,
        };
        standby.prepare_root()?;
        let output = standby
            .command(self.bin_dir.join("pg_basebackup"))
            .arg("-D")
            .arg(standby.data_dir())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("run pg_basebackup"))?;
        if !output.status.success() {
            return Err(ClusterError::StartFailed {
                port: self.port,
                reason: format!(
                    "pg_basebackup from the primary failed ({}): is the primary started with ClusterOptions::replicated()?",
                    output.status
                ),
                log_tail: tail(&String::from_utf8_lossy(&output.stderr), 20),
            });
        }
        standby.start_on_free_port()?;
        Ok(standby)
    }

    /// Promotes this standby to a primary and waits until it accepts writes
    /// (`pg_ctl promote -w`, which looks every 100 ms or so).
    pub fn promote(&self) -> Result<(), ClusterError> {
        self.pg_ctl_promote(true)
    }

    /// Asks this standby to promote itself and returns at once (`pg_ctl promote -W`); poll
    /// `pg_is_in_recovery()` to see when it has.
    pub fn start_promotion(&self) -> Result<(), ClusterError> {
        self.pg_ctl_promote(false)
    }

    fn pg_ctl_promote(&self, wait: bool) -> Result<(), ClusterError> {
        let output = self
            .command(self.bin_dir.join("pg_ctl"))
            .arg("promote")
            .arg("-D")
            .arg(self.data_dir())
            .args(if wait {
                ["-w", "-t", "30"]
            } else {
                ["-W", "-t", "30"]
            })
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("run pg_ctl promote"))?;
        if !output.status.success() {
            return Err(ClusterError::StartFailed {
                port: self.port,
                reason: format!("pg_ctl promote failed ({})", output.status),
                log_tail: tail(&String::from_utf8_lossy(&output.stderr), 20),
            });
        }
        Ok(())
    }

    /// Starts this stopped cluster again as a standby of `primary` (a switchover's old
    /// primary rejoining): `standby.signal`, `primary_conninfo` to the new primary, and the
    /// latest timeline. Works after a clean stop (`StopMode::Fast`), when the new primary had
    /// every WAL record this one wrote.
    pub fn rejoin_as_standby_of(&self, primary: &Cluster) -> Result<(), ClusterError> {
        self.stop(StopMode::Fast)?;
        let data = self.data_dir();
        std::fs::write(data.join("standby.signal"), "").map_err(io_err("write standby.signal"))?;
        let conf = format!(
            "\n# chaos: rejoined as a standby\nprimary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name=rejoined'\nrecovery_target_timeline = 'latest'\n",
            primary.port
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.auto.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(io_err("write postgresql.auto.conf"))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(data.join("standby.signal"), Some(user.uid), Some(user.gid))
                .map_err(io_err("give standby.signal to the server's user"))?;
        }
        let server = self.spawn()?;
        *self.lock() = Some(server);
        Ok(())
    }
}
