//! What a peer is to the suite: one or more setups ([`Setup`]: at its defaults, with
//! timeouts, ...), each a [`PoolKind`] the suite runs and reports by name.

use std::time::Duration;

use super::subject::{BoxFut, OpenError, Subject};

/// Pool size every pool under test gets.
pub const MAX_SIZE: usize = 5;
/// Acquire deadline given to every pool that has one.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on each query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// What a setup is told when the suite opens it.
#[derive(Debug, Clone, Copy)]
pub struct OpenArgs<'a> {
    /// The database URL (through the scenario's fault injector).
    pub url: &'a str,
    /// The `application_name` its sessions carry, so the server can be asked what it holds.
    pub app: &'a str,
    /// The run's seed, for anything random the pool does (our pool's jitter).
    pub seed: u64,
    /// A transaction-pooling middlebox (PgBouncer) is in the path. Only our pool is told
    /// (`PoolConfig::transaction_pooling`); the peers' requests are simple queries, which it
    /// does not break.
    pub transaction_pooling: bool,
}

/// Opens a pool of one setup.
pub type OpenFn = for<'a> fn(OpenArgs<'a>) -> BoxFut<'a, Result<Box<dyn Subject>, OpenError>>;

/// One way a pool is put under test.
pub struct Setup {
    /// The name in reports and `--pool` filters (`deadpool+timeouts`).
    pub name: &'static str,
    /// How it is configured, for `--list` and reports.
    pub about: &'static str,
    /// Our pool (it has health and criteria of its own, and its failures fail the run).
    pub ours: bool,
    /// Why it cannot be given several hosts (a failover needs them), when it cannot.
    pub single_host: Option<&'static str>,
    /// Opens it.
    pub open: OpenFn,
}

/// A pool the suite can put under test: its `--pool` name and its setups.
pub struct Peer {
    /// The `--pool` value.
    pub name: &'static str,
    /// What it is, for `--pool`'s help.
    pub about: &'static str,
    /// Its setups, in report order.
    pub setups: &'static [Setup],
}

/// One setup of one pool, as the suite runs and reports it.
#[derive(Clone, Copy)]
pub struct PoolKind(&'static Setup);

impl PoolKind {
    /// The kind of a setup.
    pub const fn of(setup: &'static Setup) -> Self {
        Self(setup)
    }

    /// The name in reports.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// How it is configured.
    pub fn about(self) -> &'static str {
        self.0.about
    }

    /// Whether this is our pool, by either path.
    pub fn is_ours(self) -> bool {
        self.0.ours
    }

    /// Why it cannot be given several hosts, when it cannot.
    pub fn single_host(self) -> Option<&'static str> {
        self.0.single_host
    }

    /// Opens a pool of this kind.
    ///
    /// # Errors
    /// The pool refused its settings or did not start ([`OpenError`]).
    pub fn open(self, args: OpenArgs<'_>) -> BoxFut<'_, Result<Box<dyn Subject>, OpenError>> {
        (self.0.open)(args)
    }
}

impl PartialEq for PoolKind {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for PoolKind {}

impl std::hash::Hash for PoolKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl std::fmt::Debug for PoolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::fmt::Display for PoolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}
