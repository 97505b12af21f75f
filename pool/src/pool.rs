//! [`Pool`]: connect, acquire, statistics, health, shutdown.
//!
//! # Implementation details
//! Slots are a FIFO-fair `tokio::sync::Semaphore` of `max_size` permits. An acquire takes a
//! permit, then pops the most recently used idle connection (a LIFO stack, so surplus
//! connections age out) or, when none is idle, opens one. A checked-out connection owns its
//! permit; giving it back pushes the connection onto the stack *before* the permit is
//! released. Because new connections are only opened by a permit holder that found the stack
//! empty, `idle + checked out <= max_size` holds at all times.
//!
//! The total and idle counts live together in one `AtomicU64` (total in the high half), so a
//! statistics snapshot is always consistent and never takes a lock.
//!
//! Every network step (connect, validate, probe) is bounded by a timeout, and every step that
//! holds a slot or a connection across an await is covered by a drop guard, so an acquire
//! future may be dropped at any point without leaking either.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, TryAcquireError, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use crate::config::PoolConfig;
use crate::connector::{Connector, PgConnector};
use crate::error::{ConnectFailure, PoolError, TimeoutPhase};
use crate::guard::PooledConnection;
use crate::health::{DatabaseHealth, HealthReport, PoolCounts, PoolState};
use crate::link::{Admission, Link, Transition};
use crate::stats::{CloseReason, PoolStatistics, Stats};

/// A pool of PostgreSQL connections. Cheap to clone: clones share one pool.
///
/// See the [crate documentation](crate) for the guarantees and an example.
///
/// # Examples
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let pool = pool::Pool::connect(pool::PoolConfig::from_url("postgres://app@db/app")?).await?;
/// let conn = pool.acquire().await?;
/// conn.query_one("SELECT 1", &[]).await?;
/// drop(conn);
/// pool.shutdown(Duration::from_secs(30)).await;
/// # Ok(()) }
/// ```
pub struct Pool<C: Connector = PgConnector> {
    pub(crate) shared: Arc<Shared<C>>,
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Connector> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (total, idle) = self.shared.counts.get();
        f.debug_struct("Pool")
            .field("target", &self.shared.target)
            .field("total", &total)
            .field("idle", &idle)
            .field("max_size", &self.shared.config.max_size)
            .finish()
    }
}

/// What [`Pool::shutdown`] did.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pool::Pool) {
/// let report = pool.shutdown(std::time::Duration::from_secs(30)).await;
/// println!("{} returned, {} forced, in {:?}", report.returned, report.forced, report.duration);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// A pooled connection, boxed: it moves between the idle stack, an acquire and its guard on
/// every checkout, and a pointer moves faster than the 300 bytes of a client and its state.
pub(crate) type Conn<Client> = Box<PoolConn<Client>>;

/// One open connection, owned by the idle stack or by a checkout.
pub(crate) struct PoolConn<Client> {
    pub client: Client,
    pub meta: Arc<Meta>,
    pub uses: u64,
    pub last_used: Instant,
    pub validated_epoch: u64,
    pub expires_at: Option<Instant>,
    pub statements: crate::guard::StatementCache,
}

/// What the pool tracks of each connection outside of it: for leak detection and force-close.
pub(crate) struct Meta {
    pub id: u64,
    pub driver: AbortHandle,
    /// Nanoseconds since the pool started at the last checkout, plus one; 0 when not checked out.
    pub checked_out_at: AtomicU64,
    /// Where it was acquired: always null or a `&'static Location`.
    pub location: AtomicPtr<Location<'static>>,
    pub leak_reported: AtomicBool,
    /// Force-closed by shutdown while checked out.
    pub forced: AtomicBool,
}

impl Meta {
    pub fn location(&self) -> Option<&'static Location<'static>> {
        let p = self.location.load(Relaxed);
        // Safety: the pointer is only ever null or made from a `&'static Location<'static>`.
        unsafe { p.as_ref() }
    }
}

/// Total and idle counts in one word: total in the high 32 bits, idle in the low 32.
pub(crate) struct Counts(AtomicU64);

const ONE_TOTAL: u64 = 1 << 32;

impl Counts {
    pub fn get(&self) -> (usize, usize) {
        let v = self.0.load(Acquire);
        ((v >> 32) as usize, (v & 0xffff_ffff) as usize)
    }
    fn add(&self, delta: u64) -> u64 {
        self.0.fetch_add(delta, AcqRel).wrapping_add(delta)
    }
    fn sub(&self, delta: u64) -> u64 {
        self.0.fetch_sub(delta, AcqRel).wrapping_sub(delta)
    }
}

/// Driver tasks, so shutdown can force-close connections and report what still runs.
pub(crate) struct Drivers {
    pub live: AtomicUsize,
    pub metas: Mutex<HashMap<u64, Arc<Meta>>>,
    pub ended: Notify,
}

impl Drivers {
    /// The connections whose driver still runs, taken out of the lock.
    pub fn snapshot(&self) -> Vec<Arc<Meta>> {
        self.metas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

pub(crate) struct Shared<C: Connector> {
    pub connector: C,
    pub config: PoolConfig,
    pub target: String,
    pub semaphore: Semaphore,
    pub idle: Mutex<Vec<Conn<C::Client>>>,
    pub counts: Counts,
    pub stats: Stats,
    pub link: Link,
    pub drivers: Arc<Drivers>,
    pub closed: AtomicBool,
    pub returned: Notify,
    /// Acquires waiting for a returned connection while new ones are refused, oldest first;
    /// `release` hands a returned connection straight to the first one still waiting.
    handoff: Mutex<std::collections::VecDeque<tokio::sync::oneshot::Sender<Conn<C::Client>>>>,
    /// Entries in `handoff` (a cheap check on the release path).
    handoff_len: AtomicUsize,
    pub maintenance_wake: Arc<Notify>,
    pub suspect_epoch: AtomicU64,
    pub started_at: Instant,
    next_id: AtomicU64,
    rng: Mutex<u64>,
    pub recovering: AtomicBool,
    /// Connection attempts in flight; shutdown waits for them (each is bounded).
    connecting: AtomicUsize,
    shutdown_report: watch::Sender<Option<ShutdownReport>>,
}

impl Pool<PgConnector> {
    /// Validates `config`, opens `min_size` connections concurrently and starts the background
    /// maintenance task.
    ///
    /// # Errors
    /// - [`PoolError::Config`] with every configuration problem.
    /// - [`PoolError::Connect`] naming `host:port` when the database cannot be reached within
    ///   `connect_timeout`.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), pool::PoolError> {
    /// let pool = pool::Pool::connect(pool::PoolConfig::from_url("postgres://app@db/app")?).await?;
    /// let conn = pool.acquire().await?;
    /// let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: PoolConfig) -> Result<Self, PoolError> {
        config.validate()?;
        let pg = config
            .pg_config()
            .map_err(crate::error::ConfigError::single)?;
        Pool::connect_with(config, PgConnector::new(pg)).await
    }

    /// Like [`connect`](Self::connect), but returns at once without touching the database: the
    /// background task opens `min_size` connections, and acquires connect on demand. Health is
    /// `initializing` until the first connection is open.
    ///
    /// # Errors
    /// [`PoolError::Config`], or [`PoolError::NoRuntime`] outside a tokio runtime.
    ///
    /// # Examples
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Starts even while the database is down; connects in the background.
    /// let pool = pool::Pool::connect_lazy(pool::PoolConfig::from_url("postgres://app@db/app")?)?;
    /// # Ok(()) }
    /// ```
    pub fn connect_lazy(config: PoolConfig) -> Result<Self, PoolError> {
        config.validate()?;
        let pg = config
            .pg_config()
            .map_err(crate::error::ConfigError::single)?;
        Pool::connect_lazy_with(config, PgConnector::new(pg))
    }
}

impl<C: Connector> Pool<C> {
    /// [`Pool::connect`] with a connector of your own (a fake in tests, TLS settings, ...).
    /// `config.url` is only used for messages.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), pool::PoolError> {
    /// # #[cfg(feature = "test-util")] {
    /// let db = pool::testing::FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await?;
    /// assert_eq!(pool.statistics().total_connections, 2);
    /// # }
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(config: PoolConfig, connector: C) -> Result<Self, PoolError> {
        let pool = Self::build(config, connector)?;
        let shared = &pool.shared;
        let started = Instant::now();
        // At least one connection proves the database is there, even with min_size = 0.
        let wanted = shared.config.min_size.max(1);
        let attempts =
            (0..wanted).map(|_| shared.open_for_idle(started + shared.config.connect_timeout));
        let results = futures_util::future::join_all(attempts).await;
        if let Some(err) = results.into_iter().find_map(Result::err) {
            shared.close_all_idle(CloseReason::Shutdown);
            shared.closed.store(true, Release);
            return Err(err);
        }
        info!(
            pool.target = %shared.target,
            pool.connections = wanted,
            pool.max_size = shared.config.max_size,
            elapsed = ?started.elapsed(),
            "pool connected"
        );
        pool.spawn_maintenance(false);
        Ok(pool)
    }

    /// [`Pool::connect_lazy`] with a connector of your own.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), pool::PoolError> {
    /// # #[cfg(feature = "test-util")] {
    /// let db = pool::testing::FakeDb::new();
    /// db.down();
    /// let pool = pool::Pool::connect_lazy_with(pool::PoolConfig::default(), db.connector())?;
    /// assert_eq!(pool.health().state, pool::PoolState::Initializing);
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn connect_lazy_with(config: PoolConfig, connector: C) -> Result<Self, PoolError> {
        tokio::runtime::Handle::try_current().map_err(|_| PoolError::NoRuntime)?;
        let pool = Self::build(config, connector)?;
        pool.spawn_maintenance(true);
        Ok(pool)
    }

    fn build(config: PoolConfig, connector: C) -> Result<Self, PoolError> {
        config.validate_settings()?;
        tokio::runtime::Handle::try_current().map_err(|_| PoolError::NoRuntime)?;
        let now = Instant::now();
        let seed = config.jitter_seed.unwrap_or_else(seed);
        let shared = Shared {
            target: connector.target(),
            semaphore: Semaphore::new(config.max_size),
            idle: Mutex::new(Vec::with_capacity(config.max_size)),
            counts: Counts(AtomicU64::new(0)),
            stats: Stats::new(),
            link: Link::new(
                config.reconnect_backoff_base,
                config.reconnect_backoff_max,
                seed,
                now,
            ),
            drivers: Arc::new(Drivers {
                live: AtomicUsize::new(0),
                metas: Mutex::new(HashMap::new()),
                ended: Notify::new(),
            }),
            closed: AtomicBool::new(false),
            returned: Notify::new(),
            handoff: Mutex::new(std::collections::VecDeque::new()),
            handoff_len: AtomicUsize::new(0),
            maintenance_wake: Arc::new(Notify::new()),
            suspect_epoch: AtomicU64::new(0),
            started_at: now,
            next_id: AtomicU64::new(1),
            rng: Mutex::new(seed.rotate_left(17) | 1),
            recovering: AtomicBool::new(false),
            connecting: AtomicUsize::new(0),
            shutdown_report: watch::channel(None).0,
            connector,
            config,
        };
        Ok(Pool {
            shared: Arc::new(shared),
        })
    }

    fn spawn_maintenance(&self, first_tick_now: bool) {
        let weak: Weak<Shared<C>> = Arc::downgrade(&self.shared);
        let wake = Arc::clone(&self.shared.maintenance_wake);
        tokio::spawn(crate::maintenance::run(weak, wake, first_tick_now));
    }

    /// A connection, within `acquire_timeout`.
    ///
    /// Waiting for a slot, opening a connection and validating an idle one all count against
    /// that one deadline. Waiters are served first come, first served.
    ///
    /// # Errors
    /// - [`PoolError::Timeout`] with the phase that ran out of time and a statistics snapshot.
    /// - [`PoolError::Unavailable`] at once when the database is known to be down.
    /// - [`PoolError::Connect`] when a needed connection could not be opened.
    /// - [`PoolError::Closed`] after [`shutdown`](Self::shutdown).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future at any await point leaks no slot, permit or connection.
    /// A connection being validated for the dropped acquire is closed.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.acquire().await?;
    /// let rows = conn.query("SELECT 1", &[]).await?;
    /// drop(conn); // back to the pool
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire(
        &self,
    ) -> impl std::future::Future<Output = Result<PooledConnection<C>, PoolError>> + Send + '_ {
        let location = Location::caller();
        self.shared
            .acquire(location, self.shared.config.acquire_timeout)
    }

    /// Like [`acquire`](Self::acquire) with a deadline of `timeout` instead of `acquire_timeout`.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) -> Result<(), pool::PoolError> {
    /// // A tighter deadline than the pool's for a latency-sensitive path.
    /// let conn = pool.acquire_timeout(std::time::Duration::from_millis(200)).await?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<PooledConnection<C>, PoolError>> + Send + '_ {
        let location = Location::caller();
        self.shared.acquire(location, timeout)
    }

    /// A snapshot of the counters; no database round trip and no lock shared with acquire.
    ///
    /// # Examples
    /// ```no_run
    /// # fn f(pool: pool::Pool) {
    /// let stats = pool.statistics();
    /// assert_eq!(stats.idle_connections + stats.active_connections, stats.total_connections);
    /// # }
    /// ```
    pub fn statistics(&self) -> PoolStatistics {
        self.shared.statistics()
    }

    /// The pool's health from memory alone; see [`HealthReport`] for what each status means.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) {
    /// let report = pool.health_check().await;
    /// println!("{}", serde_json::to_string(&report).unwrap());
    /// # }
    /// ```
    pub async fn health_check(&self) -> HealthReport {
        self.shared.health()
    }

    /// Same as [`health_check`](Self::health_check), without `async`.
    ///
    /// # Examples
    /// ```no_run
    /// # fn f(pool: pool::Pool) {
    /// if pool.health().status == pool::HealthStatus::Unhealthy { /* report not ready */ }
    /// # }
    /// ```
    pub fn health(&self) -> HealthReport {
        self.shared.health()
    }

    /// The configuration the pool runs with.
    ///
    /// # Examples
    /// ```no_run
    /// # fn f(pool: pool::Pool) {
    /// println!("max_size {}", pool.config().get_max_size());
    /// # }
    /// ```
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) {
    /// pool.shutdown(std::time::Duration::from_secs(5)).await;
    /// assert!(pool.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Acquire)
    }

    /// Shuts the pool down: new acquires and queued waiters fail at once with
    /// [`PoolError::Closed`], idle connections close at once, checked-out connections are
    /// awaited up to `timeout` and then force-closed (their in-flight queries fail promptly).
    /// The background task stops. Idempotent: later calls wait for the first and return its
    /// report.
    ///
    /// # Cancel safety
    /// Dropping the future stops the waiting, not the shutdown: the pool stays closed, and
    /// connections returned later are closed.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pool::Pool) {
    /// let report = pool.shutdown(std::time::Duration::from_secs(30)).await;
    /// println!("{} returned, {} forced in {:?}", report.returned, report.forced, report.duration);
    /// # }
    /// ```
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.shared.shutdown(timeout).await
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9);
    t ^ (std::process::id() as u64).rotate_left(32) ^ (&t as *const u64 as u64)
}

/// Gives the permit back unless defused: covers every await of an acquire that holds a slot.
struct SlotGuard<'a> {
    semaphore: &'a Semaphore,
    armed: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.semaphore.add_permits(1);
        }
    }
}

/// Counts a waiter while it waits.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Relaxed);
        Self(counter)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A connection taken off the idle stack for validation: closed if the acquire is dropped.
struct Taken<'a, C: Connector> {
    shared: &'a Shared<C>,
    conn: Option<Conn<C::Client>>,
}

impl<C: Connector> Drop for Taken<'_, C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.discard(conn, CloseReason::Cancelled);
        }
    }
}

/// Counts a connection attempt while it is in flight, however it ends.
struct Connecting<'a> {
    count: &'a AtomicUsize,
    drivers: &'a Drivers,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, AcqRel);
        self.drivers.ended.notify_waiters();
    }
}

/// An acquire's place in the hand-off queue. On drop (timeout or cancel) it closes its
/// channel and puts back a connection that was handed over too late, then drops the closed
/// entries so the queue does not grow.
struct HandoffWait<'a, C: Connector> {
    shared: &'a Shared<C>,
    rx: Option<tokio::sync::oneshot::Receiver<Conn<C::Client>>>,
}

impl<C: Connector> Drop for HandoffWait<'_, C> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        {
            let mut queue = self
                .shared
                .handoff
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            queue.retain(|tx| !tx.is_closed());
            self.shared.handoff_len.store(queue.len(), Release);
        }
        if let Ok(conn) = rx.try_recv() {
            // Handed over as we left: to the next waiter, or back to the idle stack.
            if let Some(conn) = self.shared.hand_over(conn) {
                self.shared.push_idle(conn, Instant::now());
            }
        }
    }
}

/// What `open` gives an acquire.
enum Opened<T> {
    /// A new connection.
    Conn(T),
    /// No attempt is allowed now, but open connections answer: wait for one to be returned.
    WaitForReturn,
}

/// Releases a single-flight trial if the attempt is dropped before it reports.
struct TrialGuard<'a> {
    link: &'a Link,
    armed: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.link.release_trial();
        }
    }
}

impl<C: Connector> Shared<C> {
    pub(crate) fn now_nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started_at).as_nanos() as u64
    }

    async fn acquire(
        self: &Arc<Self>,
        location: &'static Location<'static>,
        timeout: Duration,
    ) -> Result<PooledConnection<C>, PoolError> {
        if self.closed.load(Acquire) {
            return Err(PoolError::Closed);
        }
        // One clock read on the fast path: it is the start, the checkout time and the
        // reference for the validation bypass window.
        let start;
        let now;
        // Whether this acquire had to queue for a slot: the pool is saturated.
        let mut contended = false;
        match self.semaphore.try_acquire() {
            Ok(permit) => {
                permit.forget();
                start = Instant::now();
                now = start;
            }
            Err(TryAcquireError::Closed) => return Err(PoolError::Closed),
            Err(TryAcquireError::NoPermits) => {
                start = Instant::now();
                let _waiting = WaitingGuard::new(&self.stats.waiting);
                match timeout_at(start + timeout, self.semaphore.acquire()).await {
                    Ok(Ok(permit)) => permit.forget(),
                    Ok(Err(_)) => return Err(PoolError::Closed),
                    Err(_) => return Err(self.timed_out(TimeoutPhase::Wait, start)),
                }
                now = Instant::now();
                contended = true;
            }
        }
        let deadline = start + timeout;
        let slot = SlotGuard {
            semaphore: &self.semaphore,
            armed: true,
        };
        // The fast path: an idle connection that is alive and needs no round trip. Everything
        // else (connecting, validating, waiting for a returned connection) is in a boxed
        // future, so the future every acquire builds and moves stays small.
        let first = match self.pop_idle(contended) {
            Some(conn) if self.ready(&conn, now) => {
                let mut slot = slot;
                slot.armed = false;
                return Ok(self.hand_out(conn, location, start, now));
            }
            other => other.map(|conn| Taken {
                shared: &**self,
                conn: Some(conn),
            }),
        };
        Box::pin(self.acquire_slow(location, start, now, deadline, contended, slot, first)).await
    }

    /// Whether `conn` can be handed out as it is: its driver runs, it is not due for
    /// retirement, and it was used within the validation bypass window since the last suspect
    /// event.
    fn ready(&self, conn: &Conn<C::Client>, now: Instant) -> bool {
        !self.connector.is_closed(&conn.client)
            && self.retire_reason(conn, now).is_none()
            && conn.validated_epoch >= self.suspect_epoch.load(Acquire)
            && now.saturating_duration_since(conn.last_used) < self.config.validation_bypass
    }

    /// The rest of an acquire that holds a slot: checks `first` (an idle connection taken by
    /// the fast path), then takes idle connections, connects, or waits for a returned one,
    /// until one is fit to hand out or the deadline passes.
    #[allow(clippy::too_many_arguments)]
    async fn acquire_slow<'a>(
        self: &'a Arc<Self>,
        location: &'static Location<'static>,
        start: Instant,
        mut now: Instant,
        deadline: Instant,
        contended: bool,
        mut slot: SlotGuard<'a>,
        mut first: Option<Taken<'a, C>>,
    ) -> Result<PooledConnection<C>, PoolError> {
        loop {
            let idle = match first.take() {
                Some(mut taken) => taken.conn.take(),
                None => self.pop_idle(contended),
            };
            let conn = match idle {
                Some(conn) => conn,
                None => match self.open(deadline, start).await? {
                    Opened::Conn(conn) => {
                        if self.closed.load(Acquire) {
                            self.discard(conn, CloseReason::Shutdown);
                            return Err(PoolError::Closed);
                        }
                        slot.armed = false;
                        return Ok(self.hand_out(conn, location, start, Instant::now()));
                    }
                    Opened::WaitForReturn => {
                        // New connections are refused but the open ones answer: wait, in
                        // arrival order, for one of them to come back. Short waits, so a
                        // recovery (or a shutdown) is noticed on the next round.
                        let conn = self.wait_for_return(deadline).await;
                        now = Instant::now();
                        match conn {
                            Some(conn) => conn,
                            None if self.closed.load(Acquire) => return Err(PoolError::Closed),
                            None if now >= deadline => {
                                return Err(self.timed_out(TimeoutPhase::Wait, start));
                            }
                            None => continue,
                        }
                    }
                },
            };
            let mut taken = Taken {
                shared: self,
                conn: Some(conn),
            };
            let conn = taken.conn.as_mut().expect("just taken");
            if self.connector.is_closed(&conn.client) {
                let conn = taken.conn.take().expect("just taken");
                self.discard(conn, CloseReason::Broken);
                continue;
            }
            if let Some(reason) = self.retire_reason(conn, now) {
                let conn = taken.conn.take().expect("just taken");
                self.discard(conn, reason);
                continue;
            }
            let epoch = self.suspect_epoch.load(Acquire);
            if conn.validated_epoch < epoch
                || now.saturating_duration_since(conn.last_used) >= self.config.validation_bypass
            {
                let limit = deadline.min(now + self.config.validation_timeout);
                match timeout_at(limit, self.connector.validate(&conn.client)).await {
                    Ok(Ok(())) => {
                        conn.validated_epoch = epoch;
                        self.link.on_round_trip(now.elapsed());
                    }
                    Ok(Err(e)) => {
                        self.stats.validation_failures.fetch_add(1, Relaxed);
                        let conn = taken.conn.take().expect("just taken");
                        debug!(conn.id = conn.meta.id, error = %e, "connection failed validation; discarded, trying another");
                        self.discard(conn, CloseReason::ValidationFailed);
                        now = Instant::now();
                        continue;
                    }
                    Err(_) => {
                        self.stats.validation_failures.fetch_add(1, Relaxed);
                        let conn = taken.conn.take().expect("just taken");
                        self.discard(conn, CloseReason::ValidationFailed);
                        if limit == deadline {
                            return Err(self.timed_out(TimeoutPhase::Validate, start));
                        }
                        // A round trip that never came back: the path to the server is silent.
                        self.silent_path_detected("validation timed out");
                        now = Instant::now();
                        continue;
                    }
                }
            }
            let conn = taken.conn.take().expect("just taken");
            slot.armed = false;
            return Ok(self.hand_out(conn, location, start, now));
        }
    }

    fn hand_out(
        self: &Arc<Self>,
        mut conn: Conn<C::Client>,
        location: &'static Location<'static>,
        start: Instant,
        now: Instant,
    ) -> PooledConnection<C> {
        conn.uses += 1;
        conn.meta
            .checked_out_at
            .store(self.now_nanos(now) + 1, Relaxed);
        conn.meta
            .location
            .store(location as *const Location<'static> as *mut _, Relaxed);
        conn.meta.leak_reported.store(false, Relaxed);
        let (total, idle) = self.counts.get();
        self.stats.acquired(
            now.saturating_duration_since(start),
            total.saturating_sub(idle),
        );
        PooledConnection::new(Arc::clone(self), conn, now)
    }

    fn timed_out(&self, phase: TimeoutPhase, start: Instant) -> PoolError {
        self.stats.timeouts.fetch_add(1, Relaxed);
        let waited = start.elapsed();
        let statistics = Box::new(self.statistics());
        warn!(
            pool.target = %self.target,
            phase = ?phase,
            waited = ?waited,
            pool.active = statistics.active_connections,
            pool.max_size = statistics.max_size,
            pool.waiting = statistics.waiting_requests,
            "acquire timed out; raise max_size or acquire_timeout, or return connections sooner"
        );
        PoolError::Timeout {
            phase,
            waited,
            statistics,
        }
    }

    /// Waits (up to 100 ms, within `deadline`) for `release` to hand over a connection.
    /// Cancel-safe: a connection handed over to a waiter that is gone goes back to the pool.
    async fn wait_for_return(&self, deadline: Instant) -> Option<Conn<C::Client>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut queue = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
            queue.push_back(tx);
            self.handoff_len.store(queue.len(), Release);
        }
        let mut wait = HandoffWait {
            shared: self,
            rx: Some(rx),
        };
        // A connection may have been returned between `pop_idle` and joining the queue.
        if let Some(conn) = self.pop_idle(true) {
            return Some(conn);
        }
        let until = deadline.min(Instant::now() + Duration::from_millis(100));
        let rx = wait.rx.as_mut().expect("present until drop");
        match timeout_at(until, rx).await {
            Ok(Ok(conn)) => {
                wait.rx = None;
                Some(conn)
            }
            _ => None,
        }
    }

    /// Gives `conn` to the oldest acquire still waiting for a returned connection, or gives
    /// it back when none is.
    fn hand_over(&self, mut conn: Conn<C::Client>) -> Option<Conn<C::Client>> {
        let mut queue = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(tx) = queue.pop_front() {
            match tx.send(conn) {
                Ok(()) => {
                    self.handoff_len.store(queue.len(), Release);
                    return None;
                }
                Err(back) => conn = back,
            }
        }
        self.handoff_len.store(0, Release);
        Some(conn)
    }

    /// Takes an idle connection: the most recently returned under `IdleOrder::Lifo`, unless
    /// the acquire had to queue (`contended`): then, as under `Fifo`, the longest idle one,
    /// whose backend has finished whatever it did after its last answer.
    fn pop_idle(&self, contended: bool) -> Option<Conn<C::Client>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let newest = self.config.idle_order == crate::config::IdleOrder::Lifo && !contended;
        let conn = if newest {
            idle.pop()?
        } else if idle.is_empty() {
            return None;
        } else {
            idle.remove(0)
        };
        self.counts.sub(1);
        Some(conn)
    }

    /// Puts a connection on the idle stack, unless shutdown has begun: then it is closed.
    /// The check is made under the idle lock, which shutdown also takes to drain the stack
    /// after setting `closed`, so no connection can slip in after the drain.
    pub(crate) fn push_idle(&self, mut conn: Conn<C::Client>, now: Instant) {
        conn.last_used = now;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Acquire) {
            drop(idle);
            self.discard(conn, CloseReason::Shutdown);
            self.returned.notify_waiters();
            return;
        }
        idle.push(conn);
        self.counts.add(1);
    }

    pub(crate) fn retire_reason(
        &self,
        conn: &Conn<C::Client>,
        now: Instant,
    ) -> Option<CloseReason> {
        if self.config.max_uses.is_some_and(|max| conn.uses >= max) {
            return Some(CloseReason::MaxUses);
        }
        if conn.expires_at.is_some_and(|at| now >= at) {
            return Some(CloseReason::MaxLifetime);
        }
        None
    }

    /// Gives a checked-out connection back (called by the guard's `Drop`, before the permit).
    pub(crate) fn release(&self, conn: Conn<C::Client>, now: Instant) {
        self.stats.releases.fetch_add(1, Relaxed);
        conn.meta.checked_out_at.store(0, Relaxed);
        if self.closed.load(Acquire) {
            let reason = if conn.meta.forced.load(Relaxed) {
                CloseReason::Forced
            } else {
                CloseReason::Shutdown
            };
            self.discard(conn, reason);
            self.returned.notify_waiters();
            return;
        }
        if self.connector.is_closed(&conn.client) {
            debug!(
                conn.id = conn.meta.id,
                "returned connection is closed; discarded"
            );
            self.discard(conn, CloseReason::Broken);
            return;
        }
        if let Some(reason) = self.retire_reason(&conn, now) {
            debug!(conn.id = conn.meta.id, reason = ?reason, "connection recycled");
            self.discard(conn, reason);
            self.maintenance_wake.notify_one();
            return;
        }
        let conn = if self.handoff_len.load(Acquire) > 0 {
            let mut conn = conn;
            conn.last_used = now;
            match self.hand_over(conn) {
                Some(conn) => conn,
                None => return,
            }
        } else {
            conn
        };
        self.push_idle(conn, now);
    }

    /// Closes a connection that is not on the idle stack.
    pub(crate) fn discard(&self, conn: Conn<C::Client>, reason: CloseReason) {
        self.counts.sub(ONE_TOTAL);
        self.close_conn(conn, reason);
    }

    /// Closes a connection already removed from the counts. Broken or suspect connections get
    /// their driver aborted (the socket is useless); healthy ones are dropped so the driver
    /// sends a polite Terminate and ends by itself.
    fn close_conn(&self, conn: Conn<C::Client>, reason: CloseReason) {
        self.stats.closed(reason);
        match reason {
            CloseReason::Broken
            | CloseReason::ValidationFailed
            | CloseReason::Outage
            | CloseReason::Forced
            | CloseReason::Cancelled => conn.meta.driver.abort(),
            _ => {}
        }
        drop(conn);
    }

    /// `n` connections were removed from the idle stack to be closed.
    pub(crate) fn counts_remove_idle(&self, n: usize) {
        self.counts.sub(n as u64 * (ONE_TOTAL + 1));
    }

    /// One idle connection was taken for a probe (it counts as active meanwhile).
    pub(crate) fn counts_checkout_idle(&self) {
        self.counts.sub(1);
    }

    /// A probed connection went back onto the idle stack.
    pub(crate) fn counts_return_idle(&self) {
        self.counts.add(1);
    }

    /// Closes a connection already removed from the counts.
    pub(crate) fn close_removed(&self, conn: Conn<C::Client>, reason: CloseReason) {
        self.close_conn(conn, reason);
    }

    pub(crate) fn close_all_idle(&self, reason: CloseReason) -> usize {
        let drained: Vec<_> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let n = idle.len() as u64;
            self.counts.sub(n * (ONE_TOTAL + 1));
            idle.drain(..).collect()
        };
        let n = drained.len();
        for conn in drained {
            self.close_conn(conn, reason);
        }
        n
    }

    /// A round trip went unanswered: the network path to the server is silent (a blackhole, a
    /// lost peer). Every idle connection shares that path, so all of them are dropped, and
    /// those checked out now must be validated before they are handed out again.
    pub(crate) fn silent_path_detected(&self, what: &str) {
        self.suspect_epoch.fetch_add(1, AcqRel);
        let dropped = self.close_all_idle(CloseReason::Outage);
        let now = Instant::now();
        if self
            .link
            .on_silent(now, format!("{what}: no answer from {}", self.target))
            == Transition::OutageBegan
        {
            warn!(
                pool.target = %self.target,
                dropped_idle = dropped,
                "database stopped answering ({what}); dropped idle connections, failing fast until it answers again; check the network path to the database"
            );
        }
        self.maintenance_wake.notify_one();
    }

    /// Opens a connection for an acquire, within the deadline and the outage rules.
    async fn open(
        &self,
        deadline: Instant,
        start: Instant,
    ) -> Result<Opened<Conn<C::Client>>, PoolError> {
        let now = Instant::now();
        let admission = match self.link.admit(now) {
            Ok(a) => a,
            Err(refusal) => {
                if refusal.sessions_answer && self.counts.get().0 > 0 {
                    return Ok(Opened::WaitForReturn);
                }
                self.stats.unavailable.fetch_add(1, Relaxed);
                return Err(self.unavailable(refusal));
            }
        };
        let limit = deadline.min(now + self.config.connect_timeout);
        match self.connect_once(admission, limit).await {
            Ok(conn) => {
                self.counts.add(ONE_TOTAL);
                Ok(Opened::Conn(conn))
            }
            Err(None) => Err(self.timed_out(TimeoutPhase::Connect, start)),
            Err(Some(_)) if self.link.sessions_answer() && self.counts.get().0 > 0 => {
                Ok(Opened::WaitForReturn)
            }
            Err(Some(e)) => Err(e),
        }
    }

    /// The error for an attempt the outage rules do not allow now.
    fn unavailable(&self, refusal: crate::link::Refusal) -> PoolError {
        PoolError::Unavailable {
            target: self.target.clone(),
            down_for: refusal.down_for,
            retry_in: refusal.retry_in,
            last_error: refusal.last_error,
        }
    }

    /// Opens a connection straight onto the idle stack (start-up, maintenance).
    pub(crate) async fn open_for_idle(&self, limit: Instant) -> Result<(), PoolError> {
        let admission = self
            .link
            .admit(Instant::now())
            .map_err(|r| self.unavailable(r))?;
        match self.connect_once(admission, limit).await {
            Ok(conn) => {
                self.counts.add(ONE_TOTAL);
                self.push_idle(conn, Instant::now());
                Ok(())
            }
            Err(Some(e)) => Err(e),
            Err(None) => Err(PoolError::Connect {
                target: self.target.clone(),
                kind: ConnectFailure::TimedOut(self.config.connect_timeout),
                source: None,
            }),
        }
    }

    /// One bounded connection attempt. `Err(None)`: `limit` passed before `connect_timeout`
    /// did (the caller's deadline, not the server's fault).
    async fn connect_once(
        &self,
        admission: Admission,
        limit: Instant,
    ) -> Result<Conn<C::Client>, Option<PoolError>> {
        let mut trial = TrialGuard {
            link: &self.link,
            armed: admission == Admission::Trial,
        };
        let started = Instant::now();
        let full = started + self.config.connect_timeout;
        self.connecting.fetch_add(1, AcqRel);
        let _connecting = Connecting {
            count: &self.connecting,
            drivers: &self.drivers,
        };
        let result = timeout_at(limit, self.connector.connect()).await;
        let now = Instant::now();
        trial.armed = false;
        let (kind, source) = match result {
            Ok(Ok(connection)) => {
                let transition = self.link.on_success(now, None);
                if let Transition::Recovered(outage) = transition {
                    self.recovering.store(true, Relaxed);
                    info!(
                        pool.target = %self.target,
                        outage = ?outage,
                        "database connection recovered; serving again"
                    );
                }
                return Ok(self.adopt(connection, now));
            }
            Ok(Err(e)) => (e.kind, e.source),
            Err(_) if limit < full => {
                if admission == Admission::Trial {
                    self.link.release_trial();
                }
                return Err(None);
            }
            Err(_) => (ConnectFailure::TimedOut(self.config.connect_timeout), None),
        };
        self.stats.connect_errors.fetch_add(1, Relaxed);
        let message = crate::redact::redact_url(&kind.to_string());
        // A server that is starting up or recovering (SQLSTATE 57P03) accepts TCP before it
        // accepts logins: count it as not there yet, so the TCP probe's next success makes
        // the next attempt due at once instead of after the whole backoff.
        let unreachable = match &kind {
            ConnectFailure::Refused => true,
            ConnectFailure::Server(message) => message.contains("(57P03)"),
            _ => false,
        };
        if self.link.on_failure(now, message.clone(), unreachable) == Transition::OutageBegan {
            self.suspect_epoch.fetch_add(1, AcqRel);
            warn!(
                pool.target = %self.target,
                error = %message,
                "database unreachable; failing acquires fast and retrying with backoff; check that PostgreSQL is up and reachable"
            );
            self.maintenance_wake.notify_one();
        } else {
            debug!(pool.target = %self.target, error = %message, "connection attempt failed");
        }
        Err(Some(PoolError::Connect {
            target: self.target.clone(),
            kind,
            source,
        }))
    }

    /// Spawns the driver of a new connection and wraps it for the pool.
    fn adopt(
        &self,
        connection: crate::connector::Connection<C::Client>,
        now: Instant,
    ) -> Conn<C::Client> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let drivers = Arc::clone(&self.drivers);
        drivers.live.fetch_add(1, AcqRel);
        let task = tokio::spawn(DriverTask {
            driver: connection.driver,
            drivers: Arc::clone(&drivers),
            id,
        });
        let meta = Arc::new(Meta {
            id,
            driver: task.abort_handle(),
            checked_out_at: AtomicU64::new(0),
            location: AtomicPtr::new(std::ptr::null_mut()),
            leak_reported: AtomicBool::new(false),
            forced: AtomicBool::new(false),
        });
        drivers
            .metas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&meta));
        self.stats.created.fetch_add(1, Relaxed);
        let expires_at = self.config.max_lifetime.map(|life| {
            let jitter = {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                crate::link::next_f64(&mut rng)
            };
            now + life.mul_f64(1.0 - 0.025 * jitter)
        });
        debug!(conn.id = id, pool.target = %self.target, "connection opened");
        Box::new(PoolConn {
            client: connection.client,
            meta,
            uses: 0,
            last_used: now,
            validated_epoch: self.suspect_epoch.load(Acquire),
            expires_at,
            statements: Default::default(),
        })
    }

    pub(crate) fn statistics(&self) -> PoolStatistics {
        let (total, idle) = self.counts.get();
        let s = &self.stats;
        let (mean, p99, peak) = s.wait_figures();
        PoolStatistics {
            max_size: self.config.max_size,
            min_size: self.config.min_size,
            total_connections: total,
            idle_connections: idle,
            active_connections: total.saturating_sub(idle),
            waiting_requests: s.waiting.load(Relaxed),
            peak_active_connections: s.peak_active.load(Relaxed),
            total_acquisitions: s.acquisitions.load(Relaxed),
            total_releases: s.releases.load(Relaxed),
            acquire_timeouts: s.timeouts.load(Relaxed),
            acquire_unavailable: s.unavailable.load(Relaxed),
            connections_created: s.created.load(Relaxed),
            connect_errors: s.connect_errors.load(Relaxed),
            validation_failures: s.validation_failures.load(Relaxed),
            leaks_suspected: s.leaks.load(Relaxed),
            connections_closed: s.closed_counts(),
            live_connection_tasks: self.drivers.live.load(Acquire),
            acquire_wait_mean: mean,
            acquire_wait_p99: p99,
            acquire_wait_peak: peak,
        }
    }

    pub(crate) fn state(
        &self,
        link_status: crate::health::DatabaseStatus,
        ever_connected: bool,
    ) -> PoolState {
        use crate::health::DatabaseStatus::*;
        if self.shutdown_report.borrow().is_some() {
            return PoolState::Terminated;
        }
        if self.closed.load(Acquire) {
            return PoolState::ShuttingDown;
        }
        let (total, idle) = self.counts.get();
        match link_status {
            Disconnected => PoolState::Unhealthy,
            Connecting if !ever_connected => PoolState::Initializing,
            Connecting => PoolState::Recovering,
            Connected => {
                if total < self.config.min_size {
                    if self.recovering.load(Relaxed) {
                        PoolState::Recovering
                    } else {
                        PoolState::Degraded
                    }
                } else {
                    self.recovering.store(false, Relaxed);
                    let active = total - idle;
                    if active >= self.config.max_size && self.stats.waiting.load(Relaxed) > 0 {
                        PoolState::Degraded
                    } else {
                        PoolState::Healthy
                    }
                }
            }
        }
    }

    pub(crate) fn health(&self) -> HealthReport {
        let now = Instant::now();
        let link = self.link.snapshot(now);
        let state = self.state(link.status, link.ever_connected);
        let (total, idle) = self.counts.get();
        HealthReport {
            status: state.status(),
            state,
            database: DatabaseHealth {
                status: link.status,
                target: self.target.clone(),
                last_probe_latency: link.last_probe_latency,
                last_error: link.last_error,
                consecutive_failures: link.consecutive_failures,
                outage_duration: link.outage_duration,
            },
            pool: PoolCounts {
                total,
                idle,
                active: total.saturating_sub(idle),
                waiting: self.stats.waiting.load(Relaxed),
                min_size: self.config.min_size,
                max_size: self.config.max_size,
            },
            uptime: now.saturating_duration_since(self.started_at),
            timestamp_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let mut report_rx = self.shutdown_report.subscribe();
        if self.closed.swap(true, AcqRel) {
            // Someone else runs the shutdown: wait for its report.
            loop {
                if let Some(report) = report_rx.borrow_and_update().clone() {
                    return report;
                }
                if report_rx.changed().await.is_err() {
                    return ShutdownReport {
                        closed_idle: 0,
                        returned: 0,
                        forced: 0,
                        duration: Duration::ZERO,
                    };
                }
            }
        }
        let started = Instant::now();
        self.semaphore.close();
        self.maintenance_wake.notify_one();
        let closed_idle = self.close_all_idle(CloseReason::Shutdown);
        let (out_at_start, _) = self.counts.get();
        info!(
            pool.target = %self.target,
            closed_idle,
            checked_out = out_at_start,
            timeout = ?timeout,
            "pool shutting down; waiting for checked-out connections"
        );
        let deadline = started + timeout;
        loop {
            let notified = self.returned.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.counts.get().0 == 0 {
                break;
            }
            if timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let (still_out, _) = self.counts.get();
        let mut forced = 0;
        if still_out > 0 {
            let metas: Vec<Arc<Meta>> = self.drivers.snapshot();
            for meta in metas {
                if meta.checked_out_at.load(Relaxed) != 0 {
                    meta.forced.store(true, Relaxed);
                    meta.driver.abort();
                    forced += 1;
                    warn!(
                        conn.id = meta.id,
                        acquired_at = %meta.location().map(|l| l.to_string()).unwrap_or_default(),
                        "connection still checked out at the shutdown timeout; force-closed, its query fails"
                    );
                }
            }
        }
        // Attempts in flight finish (each is bounded by connect_timeout) and their connections
        // are closed on arrival; idle connections were dropped politely. Give the drivers a
        // moment to send Terminate, then abort whatever still runs, and wait for the aborted
        // tasks to wind down, so no task outlives the shutdown.
        let attempts_done =
            Instant::now() + self.config.connect_timeout + Duration::from_millis(100);
        let grace =
            Instant::now().max(attempts_done.min(Instant::now() + Duration::from_millis(500)));
        let mut aborted = false;
        loop {
            let ended = self.drivers.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let connecting = self.connecting.load(Acquire);
            if self.drivers.live.load(Acquire) == 0 && connecting == 0 {
                break;
            }
            let wait_until = if connecting > 0 {
                attempts_done
            } else if aborted {
                Instant::now() + Duration::from_millis(200)
            } else {
                grace
            };
            if timeout_at(wait_until, ended).await.is_err() {
                if aborted || connecting > 0 && Instant::now() < attempts_done {
                    break;
                }
                for meta in self.drivers.snapshot() {
                    meta.driver.abort();
                }
                aborted = true;
            }
        }
        let report = ShutdownReport {
            closed_idle,
            returned: out_at_start.saturating_sub(still_out),
            forced,
            duration: started.elapsed(),
        };
        if forced > 0 {
            warn!(
                pool.target = %self.target,
                returned = report.returned,
                forced,
                duration = ?report.duration,
                "pool shut down; some connections were force-closed: return connections before the timeout, or raise it"
            );
        } else {
            info!(
                pool.target = %self.target,
                closed_idle,
                returned = report.returned,
                duration = ?report.duration,
                "pool shut down cleanly"
            );
        }
        self.shutdown_report.send_replace(Some(report.clone()));
        report
    }
}

/// Runs a connection's driver and keeps the live count true however it ends (even aborted).
struct DriverTask {
    driver: crate::connector::Driver,
    drivers: Arc<Drivers>,
    id: u64,
}

impl std::future::Future for DriverTask {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.driver.as_mut().poll(cx)
    }
}

impl Drop for DriverTask {
    fn drop(&mut self) {
        self.drivers
            .metas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.drivers.live.fetch_sub(1, AcqRel);
        self.drivers.ended.notify_waiters();
    }
}
