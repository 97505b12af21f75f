//! The database a run uses: the server at `DATABASE_URL`, or a throwaway cluster; and the
//! first TCP host of a database URL.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::cluster::Cluster;
use super::error::ClusterError;
use pool::redact_url;

/// The database a test or scenario runs against: a throwaway cluster, or `DATABASE_URL`.
#[derive(Debug, Clone)]
pub enum Database {
    /// A private cluster this process owns: it can be stopped, crashed and restarted.
    Owned(Arc<Cluster>),
    /// A server at `DATABASE_URL`: restart and kill scenarios are not available.
    External {
        /// The URL from the environment.
        url: String,
    },
}

impl Database {
    /// What it is, in a report's header, password redacted.
    pub fn report_label(&self) -> String {
        match self {
            Database::Owned(c) => format!("throwaway cluster on 127.0.0.1:{}", c.port()),
            Database::External { url } => redact_url(url),
        }
    }

    /// `DATABASE_URL` when set (and not empty), otherwise a new throwaway cluster.
    ///
    /// # Errors
    /// `DATABASE_URL` is not a PostgreSQL URL or key=value string naming a TCP host
    /// ([`ClusterError::BadDatabaseUrl`], checked before anything starts), or the cluster
    /// could not be started.
    pub fn from_env() -> Result<Self, ClusterError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                tcp_target(&url)?;
                Ok(Database::External { url })
            }
            _ => Ok(Database::Owned(Arc::new(Cluster::start()?))),
        }
    }

    /// Checks that the server answers a login, before anything is run against it: a DNS
    /// failure, a refused or unanswered connection and a refused login each get one error
    /// naming the host and port from the URL. A cluster of our own is always ready.
    ///
    /// # Errors
    /// [`ClusterError::Unreachable`].
    pub async fn check_reachable(&self, within: Duration) -> Result<(), ClusterError> {
        let Database::External { url } = self else {
            return Ok(());
        };
        let config = parse_database_url(url)?;
        let (host, port) = first_tcp_host(url, &config)?;
        let target = format!("{host}:{port}");
        let unreachable = |problem: String| ClusterError::Unreachable {
            target: target.clone(),
            problem,
        };
        match tokio::time::timeout(within, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(unreachable(format!(
                    "could not be found: the name `{host}` does not resolve (DNS: {e})"
                )));
            }
            Err(_) => {
                return Err(unreachable(format!(
                    "could not be found: resolving `{host}` took more than {within:?}"
                )));
            }
        }
        match tokio::time::timeout(within, config.connect(tokio_postgres::NoTls)).await {
            Ok(Ok((client, connection))) => {
                drop(client);
                let _ = connection.await;
                Ok(())
            }
            Ok(Err(e)) => {
                let io = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .map(std::io::Error::kind);
                Err(unreachable(match (io, e.as_db_error()) {
                    (Some(std::io::ErrorKind::ConnectionRefused), _) => {
                        "refused the connection: nothing listens there".into()
                    }
                    (_, Some(db)) => format!("refused the login: {}", db.message()),
                    _ => format!("could not be connected to: {e}"),
                }))
            }
            Err(_) => Err(unreachable(format!("did not answer within {within:?}"))),
        }
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        match self {
            Database::Owned(cluster) => cluster.url(),
            Database::External { url } => url.clone(),
        }
    }

    /// The cluster, when this process owns it.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Database::Owned(cluster) => Some(cluster),
            Database::External { .. } => None,
        }
    }

    /// The cluster, or an error that says why `operation` is unavailable.
    pub fn require_cluster(&self, operation: &'static str) -> Result<&Arc<Cluster>, ClusterError> {
        self.cluster().ok_or(ClusterError::NotOwned { operation })
    }

    /// A short description for logs and reports, with any password redacted.
    pub fn describe(&self) -> String {
        match self {
            Database::Owned(cluster) => format!(
                "throwaway cluster on 127.0.0.1:{} (pid {})",
                cluster.port(),
                cluster.postmaster_pid().unwrap_or(0)
            ),
            Database::External { url } => format!(
                "external server {} (restart and kill scenarios unavailable)",
                redact_url(url)
            ),
        }
    }
}

/// The first TCP host and its port of a database URL (or key=value string): what the proxy
/// forwards to.
///
/// # Errors
/// [`ClusterError::BadDatabaseUrl`]: it does not parse (the pool's own reading, so the error
/// names what is wrong with every password redacted), or it names only unix sockets.
pub fn tcp_target(url: &str) -> Result<(String, u16), ClusterError> {
    first_tcp_host(url, &parse_database_url(url)?)
}

/// `url` as tokio-postgres reads it, checked by the pool's own reading first (whose errors
/// say what is wrong, every password redacted).
pub(super) fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, ClusterError> {
    let bad = |problem: String| ClusterError::BadDatabaseUrl { problem };
    pool::PoolConfig::from_url(url).map_err(|e| bad(e.to_string()))?;
    url.parse().map_err(|e| bad(redact_url(&format!("{e}"))))
}

pub(super) fn first_tcp_host(
    url: &str,
    config: &tokio_postgres::Config,
) -> Result<(String, u16), ClusterError> {
    let ports = config.get_ports();
    let port_of = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    for (i, host) in config.get_hosts().iter().enumerate() {
        if let tokio_postgres::config::Host::Tcp(h) = host {
            return Ok((h.clone(), port_of(i)));
        }
    }
    if let Some(addr) = config.get_hostaddrs().first() {
        return Ok((addr.to_string(), port_of(0)));
    }
    Err(ClusterError::BadDatabaseUrl {
        problem: format!(
            "`{}` names no TCP host (only unix sockets, or none), and the proxy forwards TCP: give host:port",
            redact_url(url)
        ),
    })
}

/// The database shared by every test of one test binary, started on first use.
///
/// Tests that stop or crash the server must start a [`Cluster`] of their own instead.
/// The shared cluster is never dropped (it lives in a `static`); its watchdog stops it and
/// removes its directory when the process exits.
pub fn shared() -> Result<&'static Database, Arc<ClusterError>> {
    static SHARED: OnceLock<Result<Database, Arc<ClusterError>>> = OnceLock::new();
    SHARED
        .get_or_init(|| Database::from_env().map_err(Arc::new))
        .as_ref()
        .map_err(Arc::clone)
}
