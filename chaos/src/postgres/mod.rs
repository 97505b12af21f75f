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

mod binaries;
mod bouncer;
mod cluster;
mod database;
mod error;
mod live;
mod patroni;
mod process;
mod standby;

pub use binaries::binary_candidates;
pub use bouncer::{Bouncer, PoolMode, SERVER_LOGIN_RETRY, pgbouncer_binary};
pub use cluster::{Cluster, ClusterOptions, StopMode, TEST_SETTINGS};
pub use database::{Database, shared, tcp_target};
pub use error::ClusterError;
pub use live::wait_for_clusters;
pub use patroni::{HAPROXY_PORT, HaCluster, HaError, HaOptions, HaRoute, NodeState};
pub use pool::redact_url;
pub use process::process_alive;
pub use standby::REPLICATION_SETTINGS;
