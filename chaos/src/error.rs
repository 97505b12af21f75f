//! [`Error`]: what can go wrong in a run of the suite, the soak or a smoke check, typed, so
//! callers (the `chaos` binary, users' own tests) can tell an unreachable Toxiproxy from a
//! missing PostgreSQL from a full disk. Each variant's message says what happened; the cause
//! is its `source()`.

use std::path::PathBuf;

/// An error of the chaos library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The fault controller (the embedded proxy or a Toxiproxy-API server) refused.
    #[error(transparent)]
    Control(#[from] crate::controller::ControlError),
    /// The throwaway cluster could not be made, stopped or restarted.
    #[error(transparent)]
    Cluster(#[from] crate::postgres::ClusterError),
    /// A kernel-made fault could not be applied or removed.
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
    /// The HA cluster could not be started or driven.
    #[error(transparent)]
    Ha(#[from] crate::postgres::HaError),
    /// A pool under test could not be made.
    #[error(transparent)]
    Open(#[from] crate::peers::OpenError),
    /// Our pool's configuration was refused.
    #[error(transparent)]
    PoolConfig(#[from] pool::ConfigError),
    /// Our pool failed.
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
    /// A query on the suite's own connection to the server failed.
    #[error("the database answered with an error: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// A step of the suite's own did not finish in time.
    #[error("{what} did not finish within {within:?}")]
    TimedOut {
        /// The step.
        what: &'static str,
        /// Its bound.
        within: std::time::Duration,
    },
    /// A report file could not be written.
    #[error(
        "could not write {path}: {source}; check that the directory is writable (or choose another with --out)"
    )]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A background step panicked or was cancelled.
    #[error("a background step failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The command line or a setting asks for something no run can do; says what to change.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// A fault was asked of a place that cannot make it (a PgBouncer fault on a proxy, a
    /// kernel fault on a fake database).
    #[error("{fault} cannot be made {on}")]
    NotApplicable {
        /// The fault.
        fault: String,
        /// Where it was asked, and where it can run.
        on: String,
    },
    /// Faults of a plan could not be applied or healed.
    #[error("the plan's faults failed: {}", .0.join("; "))]
    PlanFailed(Vec<String>),
    /// PgBouncer refused an admin command.
    #[error("pgbouncer's {command} failed: {message}")]
    Bouncer {
        /// The admin command.
        command: &'static str,
        /// Its error.
        message: String,
    },
    /// A system call of the harness's own failed (binding a socket, waiting for a process).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The server did something a healthy server does not (a check of the harness's own).
    #[error("the server did not behave as expected: {0}")]
    Unexpected(String),
    /// A signal ended the run before there was anything to report.
    #[error("interrupted by {0} before the run began; nothing was left running")]
    Interrupted(crate::signals::Interrupt),
}

/// What the command line or a setting asks for that no run can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// `--scenario` names that match no scenario.
    #[error("no scenario is called {}; see `chaos run --list` for the names", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    UnknownScenario {
        /// The names.
        names: Vec<String>,
    },
    /// `--plan` with `--scenario`.
    #[error(
        "--plan runs the plan instead of the built-in scenarios: drop --scenario, or drop --plan"
    )]
    PlanWithScenarios,
    /// `--plan` with a plan that asks for the HA cluster.
    #[error(
        "the plan asks for the HA cluster ([cluster]): run it with `chaos exec --plan PLAN -- CMD` (any program, DATABASE_URL the cluster's), or run the ha_* scenarios with `chaos run --scenario ha_kill_leader ...` (every write checked); `chaos run --plan` runs a plan on the single server behind the proxy"
    )]
    ClusterPlan,
    /// The scenarios asked for do not run against the pools asked for.
    #[error(
        "none of the scenarios {scenarios:?} runs against {pool} (validation scenarios run only against our pool); see `chaos run --list`"
    )]
    NothingToRun {
        /// The scenarios.
        scenarios: Vec<String>,
        /// The `--pool` value.
        pool: String,
    },
    /// A setting (an environment variable) with a value it cannot take.
    #[error("{0}")]
    Setting(String),
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes `body` to `path`, naming the file when it fails.
pub(crate) fn write(path: PathBuf, body: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(&path, body).map_err(|source| Error::Write { path, source })
}

/// Creates `path` and its parents, naming it when it fails.
pub(crate) fn create_dir_all(path: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&path).map_err(|source| Error::Write { path, source })
}
