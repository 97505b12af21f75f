//! Counters by outcome, kept in atomics so reading them never takes a lock shared with acquire.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Why a connection was closed by the pool.
///
/// # Examples
/// ```no_run
/// # fn f(pool: pool::Pool) {
/// let closed = pool.statistics().connections_closed;
/// println!("broken {}, recycled {}", closed.broken, closed.max_lifetime + closed.max_uses);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseReason {
    /// Its driver had ended (server restart, `pg_terminate_backend`, network reset).
    Broken,
    /// A validation round trip failed or timed out.
    ValidationFailed,
    /// Idle above `min_size` for longer than `idle_timeout`.
    IdleTimeout,
    /// Older than `max_lifetime`.
    MaxLifetime,
    /// Checked out `max_uses` times.
    MaxUses,
    /// Dropped because the database path went silent (a blackhole or a lost peer).
    Outage,
    /// Closed by shutdown after it was returned, or while idle.
    Shutdown,
    /// Force-closed by shutdown after its timeout, while still checked out.
    Forced,
    /// An acquire was cancelled while it held the connection (during validation).
    Cancelled,
    /// Closed by the user with [`PooledConnection::discard`](crate::PooledConnection::discard).
    Discarded,
    /// A hook said no: `before_acquire` or `after_release` returned false or ran out of time,
    /// or `after_connect` failed.
    HookRejected,
    /// Returned inside a transaction or with a request in flight, and its session could not
    /// be brought back to idle (the cancel, the drain or the `ROLLBACK` failed or ran out of
    /// time).
    SessionNotReset,
    /// Its server is no longer of the kind `target_session_attrs` asks for: a write on it was
    /// refused as read-only (SQLSTATE 25006) under `read-write` or `primary`.
    WrongRole,
}

impl CloseReason {
    const ALL: [CloseReason; 13] = [
        CloseReason::Broken,
        CloseReason::ValidationFailed,
        CloseReason::IdleTimeout,
        CloseReason::MaxLifetime,
        CloseReason::MaxUses,
        CloseReason::Outage,
        CloseReason::Shutdown,
        CloseReason::Forced,
        CloseReason::Cancelled,
        CloseReason::Discarded,
        CloseReason::SessionNotReset,
        CloseReason::HookRejected,
        CloseReason::WrongRole,
    ];

    #[cfg(all(test, feature = "metrics"))]
    pub(crate) fn all() -> [CloseReason; 13] {
        Self::ALL
    }
}

/// Connections closed, by reason.
///
/// # Examples
/// ```
/// let closed = pool::ClosedCounts { broken: 2, shutdown: 3, ..Default::default() };
/// assert_eq!(closed.total(), 5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct ClosedCounts {
    pub broken: u64,
    pub validation_failed: u64,
    pub idle_timeout: u64,
    pub max_lifetime: u64,
    pub max_uses: u64,
    pub outage: u64,
    pub shutdown: u64,
    pub forced: u64,
    pub cancelled: u64,
    pub discarded: u64,
    pub session_not_reset: u64,
    pub hook_rejected: u64,
    pub wrong_role: u64,
}

impl ClosedCounts {
    /// All closes together.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(pool::ClosedCounts::default().total(), 0);
    /// ```
    pub fn total(&self) -> u64 {
        self.broken
            + self.validation_failed
            + self.idle_timeout
            + self.max_lifetime
            + self.max_uses
            + self.outage
            + self.shutdown
            + self.forced
            + self.cancelled
            + self.discarded
            + self.session_not_reset
            + self.hook_rejected
            + self.wrong_role
    }
}

/// A snapshot of the pool, taken without touching the database or any lock that acquire uses.
///
/// `idle_connections + active_connections == total_connections <= max_size` always holds in a
/// snapshot (the two counts are read together from one atomic word).
///
/// # Examples
/// ```no_run
/// # fn f(pool: pool::Pool) {
/// let s = pool.statistics();
/// println!("{}/{} in use, {} waiting, p99 wait {:?}", s.active_connections, s.max_size, s.waiting_requests, s.acquire_wait_p99);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PoolStatistics {
    /// The configured `max_size`.
    pub max_size: usize,
    /// The configured `min_size`.
    pub min_size: usize,
    /// Open connections: idle plus checked out.
    pub total_connections: usize,
    /// Connections waiting in the pool.
    pub idle_connections: usize,
    /// Connections checked out (including ones being validated for a caller).
    pub active_connections: usize,
    /// Acquires waiting for a free slot.
    pub waiting_requests: usize,
    /// The most connections ever checked out at once.
    pub peak_active_connections: usize,
    /// Successful acquires.
    pub total_acquisitions: u64,
    /// Connections given back (returned or dropped by their holder).
    pub total_releases: u64,
    /// Acquires that ran out of time.
    pub acquire_timeouts: u64,
    /// Acquires failed fast because the database was known to be down.
    pub acquire_unavailable: u64,
    /// Connections opened.
    pub connections_created: u64,
    /// Connection attempts that failed (including timeouts).
    pub connect_errors: u64,
    /// Validations (on checkout or by the probe) that failed.
    pub validation_failures: u64,
    /// Connections held past `leak_detection_threshold`.
    pub leaks_suspected: u64,
    /// Connections returned inside a (possibly failed) transaction that the pool rolled back
    /// before reuse.
    pub sessions_rolled_back: u64,
    /// Requests in flight on returned connections (their futures were dropped) that the pool
    /// cancelled on the server before reuse.
    pub requests_cancelled: u64,
    /// Returned sessions reset by [`PoolConfig::session_reset`](crate::PoolConfig::session_reset).
    pub sessions_reset: u64,
    /// Server sessions the pool had closed while they might still run (a lost network, a
    /// request that outlived its cancel), terminated once the database answered again.
    pub orphans_terminated: u64,
    /// Connections closed, by reason.
    pub connections_closed: ClosedCounts,
    /// Sessions lent to the shared path now ([`Pool::query`](crate::Pool::query)); they count
    /// as active connections.
    pub shared_sessions: usize,
    /// Statements in flight on them now.
    pub shared_in_flight: usize,
    /// Statements run on the shared path, whatever their outcome.
    pub shared_statements: u64,
    /// Of those, statements abandoned (the call was dropped or ran past `query_timeout`); the
    /// pool cancelled them on the server before the session was reused.
    pub shared_abandoned: u64,
    /// Driver tasks still running (sockets still open), including force-closed ones winding down.
    pub live_connection_tasks: usize,
    /// Mean time from `acquire()` to a connection.
    pub acquire_wait_mean: Duration,
    /// 99th percentile of that time (the upper bound of its histogram bucket, within 19 %).
    pub acquire_wait_p99: Duration,
    /// The longest that time has been.
    pub acquire_wait_peak: Duration,
}

/// Buckets per doubling of the histogram (4: bucket bounds grow by 2^(1/4), about 19 %).
const SUB: u32 = 4;
const BUCKETS: usize = 64 * SUB as usize;

/// What [`Pool::shutdown`](crate::Pool::shutdown) did.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// let report = pool.shutdown(std::time::Duration::from_secs(30)).await;
/// println!("{} returned, {} forced, in {:?}", report.returned, report.forced, report.duration);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// Idle connections closed at once.
    pub closed_idle: usize,
    /// Checked-out connections that were returned before the timeout.
    pub returned: usize,
    /// Checked-out connections force-closed at the timeout (their queries fail).
    pub forced: usize,
    /// How long the shutdown took.
    pub duration: Duration,
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let msb = 63 - nanos.leading_zeros();
    let sub = (nanos >> (msb - 2)) & (SUB as u64 - 1);
    (msb * SUB + sub as u32) as usize
}

fn bucket_upper(index: usize) -> u64 {
    if index < SUB as usize {
        return index as u64;
    }
    let msb = index as u32 / SUB;
    let sub = index as u64 % SUB as u64;
    ((SUB as u64 + sub + 1) << (msb - 2)).saturating_sub(1)
}

/// The pool's counters. Everything is `Relaxed`: they are statistics, not synchronisation.
pub(crate) struct Stats {
    pub waiting: AtomicUsize,
    pub peak_active: AtomicUsize,
    pub releases: AtomicU64,
    pub timeouts: AtomicU64,
    pub unavailable: AtomicU64,
    pub created: AtomicU64,
    pub connect_errors: AtomicU64,
    pub validation_failures: AtomicU64,
    pub leaks: AtomicU64,
    pub rollbacks: AtomicU64,
    pub cancels: AtomicU64,
    pub resets: AtomicU64,
    pub orphans: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    wait_sum_ns: AtomicU64,
    wait_peak_ns: AtomicU64,
    wait_hist: Box<[AtomicU64; BUCKETS]>,
    #[cfg(feature = "metrics")]
    wait_seconds: metrics::Histogram,
}

impl Stats {
    #[cfg(test)]
    pub fn new() -> Self {
        Self::for_pool("pool")
    }

    /// `pool`: the label of its metrics (feature `metrics`).
    pub fn for_pool(pool: &str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = pool;
        Self {
            waiting: AtomicUsize::new(0),
            peak_active: AtomicUsize::new(0),
            releases: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            created: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            validation_failures: AtomicU64::new(0),
            leaks: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            cancels: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            orphans: AtomicU64::new(0),
            closed: Default::default(),
            wait_sum_ns: AtomicU64::new(0),
            wait_peak_ns: AtomicU64::new(0),
            wait_hist: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            #[cfg(feature = "metrics")]
            wait_seconds: {
                // Registered once per pool: the recorder must be installed before the pool is
                // built (see `pool::metrics`).
                ::metrics::describe_histogram!(
                    "pg_pool_acquire_wait_seconds",
                    ::metrics::Unit::Seconds,
                    "Time from acquire() to a connection"
                );
                ::metrics::histogram!("pg_pool_acquire_wait_seconds", "pool" => pool.to_string())
            },
        }
    }

    /// Records a successful acquire that waited `wait` and left `active` connections out.
    #[inline]
    pub fn acquired(&self, wait: Duration, active: usize) {
        // The histogram's buckets count the acquisitions too: no counter of its own, one
        // atomic add fewer, on a line every worker writes.
        let ns = wait.as_nanos().min(u64::MAX as u128) as u64;
        self.wait_hist[bucket_of(ns).min(BUCKETS - 1)].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.wait_seconds.record(wait.as_secs_f64());
        if ns > 0 {
            self.wait_sum_ns.fetch_add(ns, Relaxed);
            if ns > self.wait_peak_ns.load(Relaxed) {
                self.wait_peak_ns.fetch_max(ns, Relaxed);
            }
        }
        if active > self.peak_active.load(Relaxed) {
            self.peak_active.fetch_max(active, Relaxed);
        }
    }

    pub fn closed(&self, reason: CloseReason) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[i].fetch_add(1, Relaxed);
    }

    pub fn closed_counts(&self) -> ClosedCounts {
        let c = |r: CloseReason| {
            self.closed[CloseReason::ALL.iter().position(|x| *x == r).unwrap_or(0)].load(Relaxed)
        };
        ClosedCounts {
            broken: c(CloseReason::Broken),
            validation_failed: c(CloseReason::ValidationFailed),
            idle_timeout: c(CloseReason::IdleTimeout),
            max_lifetime: c(CloseReason::MaxLifetime),
            max_uses: c(CloseReason::MaxUses),
            outage: c(CloseReason::Outage),
            shutdown: c(CloseReason::Shutdown),
            forced: c(CloseReason::Forced),
            cancelled: c(CloseReason::Cancelled),
            discarded: c(CloseReason::Discarded),
            session_not_reset: c(CloseReason::SessionNotReset),
            hook_rejected: c(CloseReason::HookRejected),
            wrong_role: c(CloseReason::WrongRole),
        }
    }

    /// The public snapshot, with the counts read by the caller.
    pub fn snapshot(
        &self,
        (min_size, max_size): (usize, usize),
        total: usize,
        idle: usize,
        live_tasks: usize,
    ) -> PoolStatistics {
        let (acquisitions, (mean, p99, peak)) = self.wait_counted();
        PoolStatistics {
            max_size,
            min_size,
            total_connections: total,
            idle_connections: idle,
            active_connections: total.saturating_sub(idle),
            waiting_requests: self.waiting.load(Relaxed),
            peak_active_connections: self.peak_active.load(Relaxed),
            total_acquisitions: acquisitions,
            total_releases: self.releases.load(Relaxed),
            acquire_timeouts: self.timeouts.load(Relaxed),
            acquire_unavailable: self.unavailable.load(Relaxed),
            connections_created: self.created.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            validation_failures: self.validation_failures.load(Relaxed),
            leaks_suspected: self.leaks.load(Relaxed),
            sessions_rolled_back: self.rollbacks.load(Relaxed),
            requests_cancelled: self.cancels.load(Relaxed),
            sessions_reset: self.resets.load(Relaxed),
            orphans_terminated: self.orphans.load(Relaxed),
            connections_closed: self.closed_counts(),
            shared_sessions: 0,
            shared_in_flight: 0,
            shared_statements: 0,
            shared_abandoned: 0,
            live_connection_tasks: live_tasks,
            acquire_wait_mean: mean,
            acquire_wait_p99: p99,
            acquire_wait_peak: peak,
        }
    }

    /// Acquisitions so far, and (mean, p99, peak) of their wait.
    pub(crate) fn wait_counted(&self) -> (u64, (Duration, Duration, Duration)) {
        let counts: Vec<u64> = self.wait_hist.iter().map(|b| b.load(Relaxed)).collect();
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return Default::default();
        }
        let mean = Duration::from_nanos(self.wait_sum_ns.load(Relaxed) / n);
        let rank = n - n / 100; // the smallest count covering 99 %
        let mut seen = 0;
        let mut p99 = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                p99 = bucket_upper(i);
                break;
            }
        }
        let peak = self.wait_peak_ns.load(Relaxed);
        (
            n,
            (
                mean,
                Duration::from_nanos(p99.min(peak)),
                Duration::from_nanos(peak),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_total_adds_every_reason_once() {
        let c = ClosedCounts {
            broken: 1,
            validation_failed: 2,
            idle_timeout: 4,
            max_lifetime: 8,
            max_uses: 16,
            outage: 32,
            shutdown: 64,
            forced: 128,
            cancelled: 256,
            discarded: 512,
            session_not_reset: 1024,
            hook_rejected: 2048,
            wrong_role: 4096,
        };
        assert_eq!(c.total(), 8191);
    }

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for ns in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            1_000,
            999_999,
            1_000_000,
            5_000_000_000,
        ] {
            let b = bucket_of(ns);
            assert!(b >= last, "{ns}");
            assert!(bucket_upper(b) >= ns, "{ns} -> {b} -> {}", bucket_upper(b));
            assert!(bucket_upper(b) as f64 <= ns as f64 * 1.2 + 1.0, "{ns}");
            last = b;
        }
    }

    #[test]
    fn wait_figures_follow_the_samples() {
        let stats = Stats::new();
        for _ in 0..99 {
            stats.acquired(Duration::from_micros(10), 1);
        }
        stats.acquired(Duration::from_millis(50), 3);
        let (mean, p99, peak) = stats.wait_counted().1;
        assert_eq!(peak, Duration::from_millis(50));
        assert!(
            p99 >= Duration::from_micros(10) && p99 <= Duration::from_micros(12),
            "{p99:?}"
        );
        assert!(
            mean > Duration::from_micros(500) && mean < Duration::from_micros(520),
            "{mean:?}"
        );
        assert_eq!(stats.peak_active.load(Relaxed), 3);
    }

    #[test]
    fn long_waits_land_in_their_own_bucket() {
        let stats = Stats::new();
        for _ in 0..100 {
            stats.acquired(Duration::from_secs(5), 1);
        }
        let (mean, p99, peak) = stats.wait_counted().1;
        assert_eq!(
            (mean, p99, peak),
            (
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(5)
            )
        );
        // The last bucket holds the longest wait a u64 of nanoseconds can say.
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }
}
