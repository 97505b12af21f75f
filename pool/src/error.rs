//! Errors: [`PoolError`] for pool operations, [`ConfigError`] for configuration.

use std::fmt;
use std::time::Duration;

use crate::stats::PoolStatistics;

/// Which step of an acquire ran out of time.
///
/// # Examples
/// ```
/// assert_eq!(pool::TimeoutPhase::Connect.to_string(), "opening a connection");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Waiting for a free slot (the pool was at `max_size`).
    Wait,
    /// Opening a new connection.
    Connect,
    /// Validating an idle connection.
    Validate,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Wait => "waiting for a free connection",
            TimeoutPhase::Connect => "opening a connection",
            TimeoutPhase::Validate => "validating an idle connection",
        })
    }
}

/// Why a pool operation failed.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// match pool.acquire().await {
///     Ok(conn) => { /* use it */ }
///     Err(pool::PoolError::Unavailable { retry_in, .. }) => eprintln!("database down; retry in {retry_in:?}"),
///     Err(e @ pool::PoolError::Timeout { .. }) => eprintln!("{e}"),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The acquire deadline passed. `statistics` is the pool's state at that moment.
    #[error(
        "acquire timed out after {waited:?} while {phase} ({} of {} connections in use, {} waiting); \
         raise max_size or acquire_timeout, or return connections sooner",
        statistics.active_connections, statistics.max_size, statistics.waiting_requests
    )]
    Timeout {
        /// The step that was under way when time ran out.
        phase: TimeoutPhase,
        /// How long the acquire had waited.
        waited: Duration,
        /// A snapshot of the pool when the timeout happened.
        statistics: Box<PoolStatistics>,
    },
    /// The pool is shutting down or was shut down.
    #[error("the pool is closed (shutdown was called); create a new pool to connect again")]
    Closed,
    /// The database is known to be unreachable and the next connection attempt is not due yet:
    /// failing now instead of waiting out the timeout.
    #[error(
        "database at {target} is unavailable (down for {down_for:?}; next attempt in {retry_in:?}); last error: {last_error}"
    )]
    Unavailable {
        /// `host:port` of the database.
        target: String,
        /// How long the outage has lasted.
        down_for: Duration,
        /// When the pool will try to connect again (a background probe may bring it forward).
        retry_in: Duration,
        /// The last connection error, password redacted.
        last_error: String,
    },
    /// A connection attempt failed.
    #[error("could not connect to {target}: {kind}")]
    Connect {
        /// `host:port` of the database.
        target: String,
        /// What kind of failure it was.
        kind: ConnectFailure,
        /// The driver's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No tokio runtime to run the pool's background task on.
    #[error("no tokio runtime: create the pool from inside a tokio runtime")]
    NoRuntime,
}

/// A boxed error, for sources.
///
/// # Examples
/// ```
/// let e: pool::BoxError = "refused".into();
/// assert_eq!(e.to_string(), "refused");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with a connection attempt.
///
/// # Examples
/// ```
/// let f = pool::ConnectFailure::Server("too many clients already (53300)".into());
/// assert!(f.to_string().contains("53300"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The attempt did not finish within `connect_timeout` (a blackhole, or an overloaded server).
    TimedOut(Duration),
    /// The server refused or reset the connection, or the network is unreachable.
    Refused,
    /// The connection was accepted, then closed or reset before PostgreSQL said anything: a
    /// proxy or load balancer in front of it (HAProxy, Toxiproxy, a cloud load balancer) with
    /// no server to pass it to.
    Closed,
    /// The server answered with an error (authentication, too many clients, starting up...).
    Server(String),
    /// TLS could not be set up: the server's certificate was refused (the message says why and
    /// what to change), or the server does not offer TLS and `sslmode` requires it.
    Tls(String),
    /// The server answered, but its role does not fit `target_session_attrs` (a standby when
    /// a primary is asked for, say): it may take over later, or another host may.
    Role(String),
    /// Any other I/O or protocol failure.
    Other(String),
    /// The connection was made, and the pool's `after_connect` hook failed on it (its error is
    /// the message).
    Hook(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::TimedOut(after) => write!(
                f,
                "no answer within connect_timeout ({after:?}); check that the host is reachable, or raise connect_timeout"
            ),
            ConnectFailure::Refused => f.write_str(
                "connection refused or reset; check that PostgreSQL is running and listening on this address",
            ),
            ConnectFailure::Closed => f.write_str(
                "the connection was accepted, then closed before PostgreSQL answered; a proxy or load balancer in front of it has no server to pass it to: check the servers behind it",
            ),
            ConnectFailure::Server(message) => write!(f, "the server rejected the connection: {message}"),
            ConnectFailure::Tls(message) => write!(f, "TLS failed: {message}"),
            ConnectFailure::Role(message) | ConnectFailure::Other(message) => f.write_str(message),
            ConnectFailure::Hook(message) => write!(f, "the after_connect hook failed: {message}"),
        }
    }
}

impl PoolError {
    /// Whether retrying later may succeed (timeouts, outages, connection failures).
    ///
    /// # Examples
    /// ```
    /// assert!(!pool::PoolError::Closed.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PoolError::Timeout { .. } | PoolError::Unavailable { .. } | PoolError::Connect { .. }
        )
    }

    /// A short stable name of the variant, for metrics and reports.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(pool::PoolError::Closed.kind(), "closed");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            PoolError::Timeout { .. } => "timeout",
            PoolError::Closed => "closed",
            PoolError::Unavailable { .. } => "unavailable",
            PoolError::Connect { .. } => "connect",
            PoolError::Config(_) => "config",
            PoolError::NoRuntime => "no_runtime",
        }
    }
}

/// One problem with a configuration value, and how to fix it.
///
/// # Examples
/// ```
/// let config = pool::PoolConfig::from_url("postgres://app@db/app").unwrap();
/// let err = config.min_size(5).max_size(2).validate().unwrap_err();
/// assert_eq!(err.problems[0].field, "min_size");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting (or environment variable) at fault.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigProblem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An invalid configuration: every problem found, not just the first.
///
/// # Examples
/// ```
/// let config = pool::PoolConfig::from_url("postgres://app@db/app").unwrap();
/// let err = config.min_size(5).max_size(2).validate().unwrap_err();
/// println!("{err}"); // every problem, each with its fix
/// assert!(!err.problems.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Each problem, in field order.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    pub(crate) fn single(problem: ConfigProblem) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pool configuration:")?;
        for p in &self.problems {
            if p.message.starts_with(&p.field) {
                write!(f, "\n  - {}", p.message)?;
            } else {
                write!(f, "\n  - {} {}", p.field, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
