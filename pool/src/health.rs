//! Health without touching the database: [`HealthReport`] and the states behind it.

use std::time::Duration;

use serde::Serialize;

/// The overall verdict, for load balancers and readiness probes.
///
/// | status | when |
/// | --- | --- |
/// | `Healthy` | state `healthy`: the database answers and the pool holds at least `min_size` connections |
/// | `Degraded` | states `initializing`, `recovering`, `degraded`: serving, or about to, but below strength |
/// | `Unhealthy` | states `unhealthy`, `shutting_down`, `terminated`: requests will fail |
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// let ready = pool.health().status != pool::HealthStatus::Unhealthy;
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving normally.
    Healthy,
    /// Serving, but below strength.
    Degraded,
    /// Not serving.
    Unhealthy,
}

/// What the pool knows of the database, from its own connections and probes.
///
/// | status | when |
/// | --- | --- |
/// | `Connected` | the last connection attempt, validation or probe succeeded |
/// | `Connecting` | before the first connection, or during an outage once the server is reachable again and a connection attempt is under way |
/// | `Disconnected` | the last attempt failed or timed out, or a probe went unanswered: an outage |
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// if pool.health().database.status == pool::DatabaseStatus::Disconnected {
///     eprintln!("database outage: {:?}", pool.health().database.last_error);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseStatus {
    /// The database answers.
    Connected,
    /// No answer yet, but an attempt is under way.
    Connecting,
    /// The database is unreachable or silent.
    Disconnected,
}

/// The pool's lifecycle state.
///
/// | state | when | status |
/// | --- | --- | --- |
/// | `initializing` | no connection has been opened yet (a lazy pool) | degraded |
/// | `healthy` | connected, at least `min_size` connections, no caller starved | healthy |
/// | `degraded` | connected, but below `min_size`, or every connection in use with callers waiting | degraded |
/// | `unhealthy` | the database is disconnected (an outage or a blackhole) | unhealthy |
/// | `recovering` | the outage has ended (or the server is reachable again) and the pool is refilling | degraded |
/// | `shutting_down` | `shutdown` has begun | unhealthy |
/// | `terminated` | `shutdown` has finished | unhealthy |
///
/// # Examples
/// ```
/// assert_eq!(pool::PoolState::Recovering.status(), pool::HealthStatus::Degraded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum PoolState {
    Initializing,
    Healthy,
    Degraded,
    Unhealthy,
    Recovering,
    ShuttingDown,
    Terminated,
}

impl PoolState {
    /// The [`HealthStatus`] this state maps to.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(pool::PoolState::ShuttingDown.status(), pool::HealthStatus::Unhealthy);
    /// ```
    pub fn status(self) -> HealthStatus {
        match self {
            PoolState::Healthy => HealthStatus::Healthy,
            PoolState::Initializing | PoolState::Degraded | PoolState::Recovering => {
                HealthStatus::Degraded
            }
            PoolState::Unhealthy | PoolState::ShuttingDown | PoolState::Terminated => {
                HealthStatus::Unhealthy
            }
        }
    }
}

/// The database side of a [`HealthReport`].
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// let db = pool.health().database;
/// println!("{:?}, last probe {:?}, {} failures", db.status, db.last_probe_latency, db.consecutive_failures);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseHealth {
    /// Connected, connecting or disconnected.
    pub status: DatabaseStatus,
    /// `host:port`.
    pub target: String,
    /// Round-trip time of the last successful probe or validation.
    pub last_probe_latency: Option<Duration>,
    /// The last connection or probe error, password redacted.
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// How long the current outage has lasted, if there is one.
    pub outage_duration: Option<Duration>,
}

/// Connection counts in a [`HealthReport`].
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// let counts = pool.health().pool;
/// println!("{} of {} in use", counts.active, counts.max_size);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct PoolCounts {
    pub total: usize,
    pub idle: usize,
    pub active: usize,
    pub waiting: usize,
    pub min_size: usize,
    pub max_size: usize,
}

/// The pool's health, from memory alone: computing it never touches the database.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// let health = pool.health_check().await;
/// if health.status != pool::HealthStatus::Healthy {
///     eprintln!("{}", serde_json::to_string(&health).unwrap());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The verdict.
    pub status: HealthStatus,
    /// The lifecycle state behind it.
    pub state: PoolState,
    /// What the pool knows of the database.
    pub database: DatabaseHealth,
    /// Connection counts.
    pub pool: PoolCounts,
    /// Time since the pool was created.
    pub uptime: Duration,
    /// When the report was made, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Every host of the URL: reachable or not, its role when checked (`target_session_attrs`
    /// other than `any` checks it), its last error. Empty for connectors that do not say.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::HostHealth>,
}

/// What the outage state machine publishes for health.
pub(crate) struct OutageSnapshot {
    pub status: DatabaseStatus,
    pub last_error: Option<String>,
    pub last_probe_latency: Option<Duration>,
    pub consecutive_failures: u32,
    pub outage_duration: Option<Duration>,
    pub ever_connected: bool,
}

/// Everything health is computed from: a snapshot read from memory.
pub(crate) struct HealthInputs {
    pub outage: OutageSnapshot,
    pub terminated: bool,
    pub closed: bool,
    pub recovering: bool,
    pub total: usize,
    pub idle: usize,
    pub waiting: usize,
    pub min_size: usize,
    pub max_size: usize,
    pub target: String,
    pub uptime: Duration,
    pub hosts: Vec<crate::HostHealth>,
}

/// The pool's state: a pure function of its inputs.
pub(crate) fn state_of(i: &HealthInputs) -> PoolState {
    use DatabaseStatus::*;
    if i.terminated {
        return PoolState::Terminated;
    }
    if i.closed {
        return PoolState::ShuttingDown;
    }
    match i.outage.status {
        Disconnected => PoolState::Unhealthy,
        Connecting if !i.outage.ever_connected => PoolState::Initializing,
        Connecting => PoolState::Recovering,
        Connected if i.total < i.min_size && i.recovering => PoolState::Recovering,
        Connected if i.total < i.min_size => PoolState::Degraded,
        Connected if i.total - i.idle >= i.max_size && i.waiting > 0 => PoolState::Degraded,
        Connected => PoolState::Healthy,
    }
}

/// The report for `inputs`.
pub(crate) fn assess(inputs: HealthInputs) -> HealthReport {
    let state = state_of(&inputs);
    let o = inputs.outage;
    HealthReport {
        status: state.status(),
        state,
        database: DatabaseHealth {
            status: o.status,
            target: inputs.target,
            last_probe_latency: o.last_probe_latency,
            last_error: o.last_error,
            consecutive_failures: o.consecutive_failures,
            outage_duration: o.outage_duration,
        },
        pool: PoolCounts {
            total: inputs.total,
            idle: inputs.idle,
            active: inputs.total.saturating_sub(inputs.idle),
            waiting: inputs.waiting,
            min_size: inputs.min_size,
            max_size: inputs.max_size,
        },
        uptime: inputs.uptime,
        timestamp_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        hosts: inputs.hosts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(status: DatabaseStatus, total: usize, idle: usize) -> HealthInputs {
        HealthInputs {
            outage: OutageSnapshot {
                status,
                last_error: None,
                last_probe_latency: None,
                consecutive_failures: 0,
                outage_duration: None,
                ever_connected: true,
            },
            terminated: false,
            closed: false,
            recovering: false,
            total,
            idle,
            waiting: 0,
            min_size: 2,
            max_size: 4,
            target: "db:5432".into(),
            uptime: Duration::ZERO,
            hosts: Vec::new(),
        }
    }

    #[test]
    fn every_state_from_its_inputs() {
        use DatabaseStatus::*;
        assert_eq!(state_of(&inputs(Connected, 2, 2)), PoolState::Healthy);
        assert_eq!(state_of(&inputs(Connected, 1, 1)), PoolState::Degraded);
        let mut i = inputs(Connected, 1, 1);
        i.recovering = true;
        assert_eq!(state_of(&i), PoolState::Recovering);
        i.total = 2;
        assert_eq!(state_of(&i), PoolState::Healthy, "back at min_size");
        let mut i = inputs(Connected, 4, 0);
        i.waiting = 1;
        assert_eq!(state_of(&i), PoolState::Degraded, "starved");
        i.waiting = 0;
        assert_eq!(state_of(&i), PoolState::Healthy, "all out, nobody waiting");
        let mut i = inputs(Connected, 4, 1);
        i.waiting = 1;
        assert_eq!(state_of(&i), PoolState::Healthy, "one idle: not starved");
        assert_eq!(state_of(&inputs(Disconnected, 2, 2)), PoolState::Unhealthy);
        assert_eq!(state_of(&inputs(Connecting, 0, 0)), PoolState::Recovering);
        let mut i = inputs(Connecting, 0, 0);
        i.outage.ever_connected = false;
        assert_eq!(state_of(&i), PoolState::Initializing);
        i.closed = true;
        assert_eq!(state_of(&i), PoolState::ShuttingDown);
        i.terminated = true;
        assert_eq!(state_of(&i), PoolState::Terminated);
    }
}
