//! What the suite asks of a pool under test ([`Subject`]), what a request ends as
//! ([`Answer`]), and why a pool could not be made ([`OpenError`]).

use std::time::Duration;

pub use crate::BoxFut;

pub use super::handlers::{Answer, Handler};

/// Why a pool under test could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Our pool's configuration was refused.
    #[error(transparent)]
    Config(#[from] pool::ConfigError),
    /// Our pool did not start.
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
    /// The URL does not parse for a peer's driver.
    #[error("the database URL does not parse: {0}")]
    Url(#[from] tokio_postgres::Error),
    /// A peer pool refused its settings.
    #[error("{0}")]
    Peer(String),
}

/// A pool the suite drives.
pub trait Subject: Send + Sync {
    /// The name in reports (`pool`, `deadpool`, `deadpool+timeouts`, ...).
    fn name(&self) -> String;
    /// Acquires a connection and runs `sql`; the query is bounded by `query_timeout`.
    fn request<'a>(&'a self, sql: &'a str, query_timeout: Duration) -> BoxFut<'a, Answer>;
    /// Health as our pool reports it (`None` for peers, which have no such thing).
    fn health(&self) -> Option<String>;
    /// Connections the pool holds (idle + in use).
    fn open_connections(&self) -> usize;
    /// Shuts down and drops every connection.
    fn shutdown(&self) -> BoxFut<'_, ()>;
    /// Acquires a connection, runs `handler` on it as an application would, and gives the
    /// connection back the ordinary way (dropped, never discarded): what the pool hands the
    /// next user is the pool's doing.
    fn handle<'a>(&'a self, handler: Handler) -> BoxFut<'a, Answer>;
}
