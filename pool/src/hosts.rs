//! Several hosts behind one pool: libpq's six `target_session_attrs`, what the pool has seen of
//! each host (reachable or not, primary or standby), and the doubt that follows a sign that a
//! server's role changed.
//!
//! tokio-postgres knows three of the six modes (any, read-write, read-only), so the pool takes
//! `target_session_attrs` out of the URL itself and checks a new session with one round trip,
//! `SELECT pg_is_in_recovery(), current_setting('transaction_read_only')`, whatever the mode
//! (`primary` and `standby` ask the first, `read-write` and `read-only` the second, as libpq).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Which servers a session may be opened on (libpq's `target_session_attrs`).
///
/// | mode | a server fits when |
/// | --- | --- |
/// | `any` (default) | always |
/// | `read-write` | it accepts writes by default (`transaction_read_only` off) |
/// | `read-only` | it does not (a standby, or `default_transaction_read_only` on) |
/// | `primary` | it is not in recovery |
/// | `standby` | it is in recovery (a hot standby) |
/// | `prefer-standby` | a standby if any host is one, else any |
///
/// # Examples
/// ```
/// let config = pool::PoolConfig::from_url("postgres://app@a:5432,b:5433/app?target_session_attrs=primary")?;
/// assert_eq!(config.session_attrs()?, pool::SessionAttrs::Primary);
/// assert_eq!(pool::SessionAttrs::parse("prefer-standby"), Some(pool::SessionAttrs::PreferStandby));
/// # Ok::<(), pool::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SessionAttrs {
    /// Any server.
    #[default]
    Any,
    /// A server that accepts writes.
    ReadWrite,
    /// A server that does not.
    ReadOnly,
    /// A server not in recovery.
    Primary,
    /// A server in recovery.
    Standby,
    /// A standby when there is one, else any server.
    PreferStandby,
}

impl SessionAttrs {
    /// The mode a libpq spelling names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            _ => return None,
        })
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }

    /// Whether sessions are for writes: a write refused as read-only (SQLSTATE 25006) means the
    /// server is no longer the one asked for.
    pub(crate) fn wants_writes(self) -> bool {
        matches!(self, Self::ReadWrite | Self::Primary)
    }

    /// Whether a server in this role fits (`prefer-standby` asks for a standby first).
    pub(crate) fn fits(self, role: Role) -> bool {
        match self {
            Self::Any => true,
            Self::ReadWrite => !role.read_only,
            Self::ReadOnly => role.read_only,
            Self::Primary => !role.in_recovery,
            Self::Standby | Self::PreferStandby => role.in_recovery,
        }
    }
}

impl SessionAttrs {
    /// Whether an open session on a server in this role may stay: as [`fits`](Self::fits),
    /// but `prefer-standby` keeps a session on a primary (it was the fallback).
    pub(crate) fn keeps(self, role: Role) -> bool {
        self == Self::PreferStandby || self.fits(role)
    }
}

/// A server's role as one query saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Role {
    pub in_recovery: bool,
    pub read_only: bool,
}

/// The query that tells a [`Role`], and its answer read from a simple-query row.
pub(crate) const ROLE_QUERY: &str =
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')";

impl Role {
    pub(crate) fn from_row(row: &tokio_postgres::SimpleQueryRow) -> Option<Role> {
        Some(Role {
            in_recovery: row.get(0)? == "t",
            read_only: row.get(1)? == "on",
        })
    }

    pub(crate) fn describe(self) -> &'static str {
        match (self.in_recovery, self.read_only) {
            (true, _) => "a standby (in recovery)",
            (false, true) => "a primary whose sessions are read-only",
            (false, false) => "a primary (read-write)",
        }
    }
}

/// What the pool last saw of a host's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostRole {
    /// Not checked yet (`target_session_attrs=any` never checks).
    #[default]
    Unknown,
    /// Not in recovery.
    Primary,
    /// In recovery.
    Standby,
}

/// Whether the last attempt on a host reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostStatus {
    /// No attempt yet.
    #[default]
    Unknown,
    /// The last attempt opened a session (whether or not its role fitted).
    Up,
    /// The last attempt failed.
    Down,
}

/// One host of the pool's URL, as [`HealthReport::hosts`](crate::HealthReport::hosts) lists it.
///
/// # Examples
/// ```no_run
/// # fn f(pool: pool::Pool) {
/// for host in pool.health().hosts {
///     println!("{}:{} {:?} {:?}", host.host, host.port, host.status, host.role);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HostHealth {
    /// The host name, address or socket directory.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The last attempt's outcome.
    pub status: HostStatus,
    /// Its role when last checked.
    pub role: HostRole,
    /// Attempts failed in a row.
    pub consecutive_failures: u32,
    /// The last failure, redacted.
    pub last_error: Option<String>,
}

/// How long after a sign of a role change every validation checks the server's role.
const DOUBT: Duration = Duration::from_secs(30);
/// How often a validation checks the role when nothing is in doubt (one connection's check
/// stands for its host: a promoted standby keeps its sessions).
const ROLE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the connector knows of its hosts. The table is locked by connection attempts and
/// health reports only, never by acquire's fast path.
#[derive(Debug)]
pub(crate) struct Hosts {
    table: Mutex<Vec<HostHealth>>,
    base: Instant,
    /// Milliseconds since `base` until which validations check roles.
    doubt_until_ms: AtomicU64,
    /// Milliseconds since `base` when a validation's next role check is due.
    check_due_ms: AtomicU64,
}

impl Hosts {
    pub(crate) fn new(config: &tokio_postgres::Config) -> Self {
        use tokio_postgres::config::Host;
        let ports = config.get_ports();
        let addrs = config.get_hostaddrs();
        let n = config.get_hosts().len().max(addrs.len()).max(1);
        let table = (0..n)
            .map(|i| HostHealth {
                host: match (config.get_hosts().get(i), addrs.get(i)) {
                    (Some(Host::Tcp(h)), _) => h.clone(),
                    #[cfg(unix)]
                    (Some(Host::Unix(p)), _) => p.display().to_string(),
                    (None, Some(ip)) => ip.to_string(),
                    (None, None) => "localhost".to_string(),
                },
                port: ports.get(i).or(ports.first()).copied().unwrap_or(5432),
                status: HostStatus::Unknown,
                role: HostRole::Unknown,
                consecutive_failures: 0,
                last_error: None,
            })
            .collect();
        Self {
            table: Mutex::new(table),
            base: Instant::now(),
            doubt_until_ms: AtomicU64::new(0),
            check_due_ms: AtomicU64::new(0),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<HostHealth>) -> R) -> R {
        f(&mut self.table.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn snapshot(&self) -> Vec<HostHealth> {
        self.with(|t| t.clone())
    }

    /// The order to try hosts in: `order` (the URL's, or shuffled), hosts whose last attempt
    /// failed last, so that a dead or silent host costs a failover nothing while another
    /// answers.
    pub(crate) fn order(&self, mut order: Vec<usize>) -> Vec<usize> {
        self.with(|t| {
            order.sort_by_key(|i| t.get(*i).is_some_and(|h| h.status == HostStatus::Down))
        });
        order
    }

    /// An attempt on host `i` opened a session; `role` when it was checked. A host whose role
    /// differs from the one seen before starts a doubt.
    pub(crate) fn reached(&self, i: usize, role: Option<Role>) {
        let changed = self.with(|t| {
            let Some(h) = t.get_mut(i) else { return false };
            h.status = HostStatus::Up;
            h.consecutive_failures = 0;
            h.last_error = None;
            let Some(role) = role else { return false };
            let new = if role.in_recovery {
                HostRole::Standby
            } else {
                HostRole::Primary
            };
            let old = std::mem::replace(&mut h.role, new);
            old != HostRole::Unknown && old != new
        });
        if changed {
            self.doubt();
        }
    }

    pub(crate) fn failed(&self, i: usize, error: String) {
        self.with(|t| {
            if let Some(h) = t.get_mut(i) {
                h.status = HostStatus::Down;
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                h.last_error = Some(crate::redact::redact_url(&error));
            }
        });
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_millis() as u64
    }

    /// A sign that a server's role changed: for a while, every validation checks the role.
    pub(crate) fn doubt(&self) {
        self.doubt_until_ms
            .fetch_max(self.now_ms() + DOUBT.as_millis() as u64, Relaxed);
    }

    /// Whether this validation should check the role: in doubt, or none did for a second.
    pub(crate) fn role_check_due(&self) -> bool {
        let now = self.now_ms();
        if now < self.doubt_until_ms.load(Relaxed) {
            return true;
        }
        let due = self.check_due_ms.load(Relaxed);
        now >= due
            && self
                .check_due_ms
                .compare_exchange(
                    due,
                    now + ROLE_CHECK_EVERY.as_millis() as u64,
                    Relaxed,
                    Relaxed,
                )
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_reads_back_and_fits_as_libpq_says() {
        for mode in [
            SessionAttrs::Any,
            SessionAttrs::ReadWrite,
            SessionAttrs::ReadOnly,
            SessionAttrs::Primary,
            SessionAttrs::Standby,
            SessionAttrs::PreferStandby,
        ] {
            assert_eq!(SessionAttrs::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(SessionAttrs::parse("master"), None);
        let primary = Role {
            in_recovery: false,
            read_only: false,
        };
        let standby = Role {
            in_recovery: true,
            read_only: true,
        };
        let read_only_primary = Role {
            in_recovery: false,
            read_only: true,
        };
        assert!(SessionAttrs::ReadWrite.fits(primary) && !SessionAttrs::ReadWrite.fits(standby));
        assert!(!SessionAttrs::ReadWrite.fits(read_only_primary));
        assert!(SessionAttrs::Primary.fits(read_only_primary));
        assert!(
            SessionAttrs::ReadOnly.fits(read_only_primary) && SessionAttrs::ReadOnly.fits(standby)
        );
        assert!(SessionAttrs::Standby.fits(standby) && !SessionAttrs::Standby.fits(primary));
        assert!(SessionAttrs::Any.fits(standby) && SessionAttrs::Any.fits(primary));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_hosts_go_last_and_a_role_change_starts_a_doubt() {
        let config: tokio_postgres::Config = "host=a,b,c port=1,2 user=u".parse().unwrap();
        let hosts = Hosts::new(&config);
        let ports: Vec<u16> = hosts.snapshot().iter().map(|h| h.port).collect();
        assert_eq!(ports, [1, 2, 1], "as the connection attempts read them");
        hosts.failed(0, "refused".into());
        assert_eq!(hosts.order(vec![0, 1, 2]), [1, 2, 0]);
        let standby = Role {
            in_recovery: true,
            read_only: true,
        };
        hosts.reached(1, Some(standby));
        // The first check after start is due, then not again within the second.
        assert!(hosts.role_check_due());
        assert!(!hosts.role_check_due());
        hosts.reached(
            1,
            Some(Role {
                in_recovery: false,
                read_only: false,
            }),
        );
        assert_eq!(hosts.snapshot()[1].role, HostRole::Primary);
        assert!(hosts.role_check_due() && hosts.role_check_due(), "in doubt");
        tokio::time::advance(DOUBT + ROLE_CHECK_EVERY).await;
        assert!(hosts.role_check_due());
        assert!(!hosts.role_check_due());
    }
}
