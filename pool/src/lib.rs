//! A PostgreSQL connection pool for tokio that stays correct under network faults.
//!
//! ```no_run
//! use std::time::Duration;
//! use pool::{Pool, PoolConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PoolConfig::from_url("postgres://app@db:5432/app")?
//!     .min_size(2)
//!     .max_size(10)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .connect_timeout(Duration::from_secs(2));
//! let pool = Pool::connect(config).await?;
//! let conn = pool.acquire().await?;
//! let one: i32 = conn.query_one("SELECT 1", &[]).await?.get(0);
//! drop(conn); // back to the pool
//! println!("{:?}", pool.statistics());
//! println!("{:?}", pool.health_check().await.status);
//! pool.shutdown(Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```
//!
//! # What it guarantees
//! - **Bounded**: an acquire resolves within `acquire_timeout`, whatever the network does;
//!   waiting, connecting and validating share that one deadline. Every network step the pool
//!   takes has its own bound, so nothing holds a slot on unbounded I/O.
//! - **Live connections only**: a connection whose driver has ended is never handed out; one
//!   idle longer than `validation_bypass` (500 ms) is checked with one round trip first.
//! - **No storm**: connections open and opening never exceed `max_size`; an attempt runs in
//!   a task of its own bounded by `connect_timeout`, outlives the acquire that asked for it,
//!   and hands its connection to the next waiter; attempts that get no answer are hedged one
//!   per `hang_after`, however many requests wait (README, "Connection attempts under load").
//! - **Outages**: refused connects fail acquires at once ([`PoolError::Unavailable`]) instead
//!   of waiting out the timeout, unless an attempt is in flight or due before the acquire's
//!   deadline (then it waits for that attempt); a silent path (blackhole, lost peer) is found by the
//!   background probe, whose timeout is bounded, and the connections on it are dropped. While
//!   the database is down, attempts are single-flight with jittered exponential backoff, and a
//!   cheap TCP probe notices its return within `outage_probe_interval` (100 ms). Only a
//!   successful connect ends an outage; while new connections are refused but the open ones
//!   still answer (a proxy turning new clients away, a full server), acquires wait, in order,
//!   for an open connection instead of failing.
//! - **Fair**: waiters are served first come, first served. Idle connections are handed out
//!   most recently used first ([`IdleOrder::Lifo`], so spare ones retire), or in rotation
//!   ([`IdleOrder::Fifo`]).
//! - **Observable**: [`Pool::statistics`] and [`Pool::health_check`] read memory only.
//! - **Graceful**: [`Pool::shutdown`] waits for checked-out connections up to a timeout, then
//!   force-closes them; no task outlives it.
//!
//! # Two ways to run a statement
//! [`Pool::acquire`] checks a connection out for one caller: transactions, session state,
//! `COPY`, `LISTEN`. [`Pool::query`], [`Pool::query_one`], [`Pool::query_opt`],
//! [`Pool::execute`] (and [`Pool::prepare`] for their prepared form) run one statement outside
//! any transaction on a session the pool shares, pipelined with other callers' statements:
//! with many more tasks than connections, as fast as raw tokio-postgres clients shared by
//! every task, which an exclusive checkout cannot be (`BENCHMARKS.md`). Same promises: one
//! deadline per call (`query_timeout`), outages fail fast, cancel safety (a dropped call is
//! cancelled on the server and never delays the statements pipelined behind it), statistics
//! (`shared_*`), and shutdown waits for them.
//!
//! ```no_run
//! # async fn f(pool: pool::Pool) -> Result<(), pool::QueryError> {
//! let n: i64 = pool.query_one("SELECT count(*) FROM users WHERE active", &[]).await?.get(0);
//! # Ok(()) }
//! ```
//!
//! # Cancel safety
//! Every future of this crate may be dropped at any await point without leaking a slot, a
//! permit, a connection or a task: steps that hold one across an await are covered by drop
//! guards. Dropping a [`PooledConnection`] returns it, even mid-query or mid-transaction: the
//! pool cancels what is in flight and rolls back an open transaction before the next user
//! gets the session (see [`PooledConnection`]).
//!
//! # Layout
//! Each invariant has one owner; the modules depend on each other in one direction (top to
//! bottom here), never in a circle.
//! - `pool`: [`Pool`], the public handle: connect, acquire, statistics, health, shutdown.
//! - `acquire`: the fast path and the boxed slow path of an acquire.
//! - `connect`: admission by the outage rules, one bounded attempt in a task of its own,
//!   adoption; `attempts`: what attempts, probes and their waiters share.
//! - `maintenance`: the background task (replenish, retire, probe, leak watch).
//! - `shutdown`: refuse, drain, wait, force-close, wait for the drivers.
//! - `query`: the shared path, [`Pool::query`] and its siblings: one statement on a shared
//!   session, pipelined with other callers', without a checkout; the keyword check.
//! - `lend`: the shared path's policy: which lent session a statement gets, when one is
//!   drained (abandoned statements, rotation, outages, exclusive waiters, shutdown).
//! - `guard`: [`PooledConnection`], returned on drop; `prepare_cached`.
//! - `shared`: the state one pool's handles share, and the one way back for a connection
//!   (hand over, park, retire, close).
//! - `lent`: the set of lent sessions and the one way back for each.
//! - `slots`: the only code that changes the counts, the idle stack, the slots (permits) and
//!   the hand-off queue: `idle + checked out <= max_size`.
//! - `outage`: outage state, single-flight attempts, backoff; published for health lock-free.
//! - `session`: each session's transaction status and requests in flight, read off the
//!   protocol on the socket (above the encryption with TLS); `socket` opens connections on
//!   sockets the pool owns.
//! - `drivers`: the connections' driver tasks.
//! - `conn`: one pooled connection, its metadata and statement cache.
//! - `on_drop`: the one drop guard that makes every await cancel safe.
//! - `config`: [`PoolConfig`], every option declared once, with its default, validation.
//! - `connector`: the [`Connector`] seam and [`PgConnector`] (tokio-postgres on the pool's own sockets).
//! - `hosts`: several hosts behind one pool: libpq's `target_session_attrs`, what the pool has
//!   seen of each host, and the doubt that follows a sign that a server's role changed.
//! - `hooks`: the application's code after connect, before acquire and after release.
//! - `tls`: libpq's TLS settings ([`SslMode`], [`TlsOptions`]) and their rustls verification.
//! - `redact`: passwords never reach a log line, an error or a `Debug` output.
//! - `health` (a pure function of a snapshot), `stats`, `error`: what the pool reports;
//!   `metrics` (feature `metrics`): the statistics through the `metrics` facade.
//! - `testing` (feature `test-util`): a fake database for deterministic tests.
//!
//! # Logs
//! Lifecycle events are `tracing` events with structured fields (`pool.target`, `conn.id`,
//! `error`, ...) and a message that says what to do: `pool connected`, `acquire timed out`,
//! `database unreachable`, `database stopped answering`, `database connection recovered`,
//! `connection held longer than leak_detection_threshold`, `pool shut down`. Passwords never
//! appear in them.

#![warn(missing_docs)]

mod acquire;
mod attempts;
mod config;
mod conn;
mod connect;
mod connector;
mod drivers;
mod error;
mod guard;
mod health;
mod hooks;
mod hosts;
mod lend;
mod lent;
mod maintenance;
#[cfg(feature = "metrics")]
pub mod metrics;
mod on_drop;
mod outage;
mod planted;
mod pool;
mod query;
mod redact;
mod restore;
mod session;
mod shared;
mod shutdown;
mod slots;
mod socket;
mod stats;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod tls;

pub use config::{IdleOrder, PoolConfig, SessionReset, parse_duration};
pub use connector::{ConnectError, Connection, Connector, Driver, PgConnector};
pub use error::{BoxError, ConfigError, ConfigProblem, ConnectFailure, PoolError, TimeoutPhase};
pub use guard::PooledConnection;
pub use health::{
    DatabaseHealth, DatabaseStatus, HealthReport, HealthStatus, PoolCounts, PoolState,
};
pub use hooks::HookFuture;
pub use hosts::{HostHealth, HostRole, HostStatus, SessionAttrs};
pub use pool::{Pool, PoolBuilder};
pub use query::{PoolStatement, QueryError, SharedStatement};
pub use redact::redact_url;
pub use session::{Session, SessionStatus};
pub use stats::{CloseReason, ClosedCounts, PoolStatistics, ShutdownReport};
pub use tls::{RootCert, SslMode, TlsOptions};
