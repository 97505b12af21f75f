//! How a connection is made and checked: the [`Connector`] seam, and [`PgConnector`] for
//! tokio-postgres.
//!
//! The pool never does network I/O itself: it calls a connector and bounds every call with its
//! own timeout. Tests plug in a fake connector (see `testing`, feature `test-util`) to run the
//! real pool logic under tokio's paused clock.

use std::future::Future;
use std::pin::Pin;

use crate::error::{BoxError, ConnectFailure};
use crate::session::Session;

/// A boxed future that drives a connection's socket until it closes.
///
/// # Examples
/// ```
/// let driver: pool::Driver = Box::pin(async { /* drive the socket */ });
/// # drop(driver);
/// ```
pub type Driver = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A freshly opened connection: the client handed to users, the driver task the pool spawns,
/// and, when the connector can tell, the tracked state of its server session.
///
/// # Examples
/// ```
/// let connection = pool::Connection::new(42u32, Box::pin(async {}));
/// assert_eq!(connection.client, 42);
/// assert!(connection.session.is_none());
/// ```
pub struct Connection<C> {
    /// The client users query through.
    pub client: C,
    /// Runs the socket; it ends when the connection closes. The pool spawns it, tracks it, and
    /// aborts it to force-close the connection.
    pub driver: Driver,
    /// The session's state, known without a round trip ([`PgConnector`] tracks it on plain
    /// connections). With it, a connection returned inside a transaction is rolled back, and
    /// one returned with a request in flight has it cancelled, before anyone else gets it;
    /// without it, the pool cannot tell and returns connections as they are.
    pub session: Option<std::sync::Arc<Session>>,
}

impl<C> Connection<C> {
    /// A connection whose session the connector does not track.
    pub fn new(client: C, driver: Driver) -> Self {
        Self {
            client,
            driver,
            session: None,
        }
    }
}

/// Why a connection attempt failed.
///
/// # Examples
/// ```
/// let e = pool::ConnectError { kind: pool::ConnectFailure::Refused, source: None };
/// assert!(matches!(e.kind, pool::ConnectFailure::Refused));
/// ```
#[derive(Debug)]
pub struct ConnectError {
    /// The kind of failure.
    pub kind: ConnectFailure,
    /// The underlying error.
    pub source: Option<BoxError>,
}

/// Makes and checks connections. Implemented by [`PgConnector`]; implement it to pool something
/// else or to fake a database in tests.
///
/// None of these calls needs its own timeout: the pool bounds every one of them.
///
/// # Examples
/// A connector that pools something else (here, nothing: every "connection" is a number):
/// ```
/// use pool::{BoxError, ConnectError, Connection, Connector};
///
/// struct Numbers;
///
/// impl Connector for Numbers {
///     type Client = u64;
///     async fn connect(&self) -> Result<Connection<u64>, ConnectError> {
///         Ok(Connection::new(7, Box::pin(std::future::pending())))
///     }
///     fn is_closed(&self, _client: &u64) -> bool {
///         false
///     }
///     async fn validate(&self, _client: &u64) -> Result<(), BoxError> {
///         Ok(())
///     }
///     async fn probe(&self) -> Result<(), BoxError> {
///         Ok(())
///     }
///     fn target(&self) -> String {
///         "numbers:0".into()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), pool::PoolError> {
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), Numbers).await?;
/// assert_eq!(*pool.acquire().await?, 7);
/// # pool.shutdown(std::time::Duration::from_secs(1)).await; Ok(()) }
/// ```
pub trait Connector: Send + Sync + 'static {
    /// What a checked-out connection dereferences to.
    type Client: Send + Sync + 'static;

    /// What the connector knows of each host it connects to (none by default); listed by
    /// [`HealthReport::hosts`](crate::HealthReport::hosts).
    fn hosts(&self) -> Vec<crate::HostHealth> {
        Vec::new()
    }

    /// Whether a returned session showed that its server is no longer of the kind the
    /// connector connects to (for [`PgConnector`]: a write refused as read-only, SQLSTATE
    /// 25006, under `target_session_attrs=read-write` or `primary`). Such a connection is
    /// closed ([`CloseReason::WrongRole`](crate::CloseReason::WrongRole)). No I/O.
    fn wrong_role(&self, session: &Session) -> bool {
        let _ = session;
        false
    }

    /// Opens one connection.
    fn connect(
        &self,
    ) -> impl Future<Output = Result<Connection<Self::Client>, ConnectError>> + Send;

    /// Whether the connection is known to be dead, without any I/O (its driver has ended).
    fn is_closed(&self, client: &Self::Client) -> bool;

    /// One bounded round trip that proves the connection is alive.
    fn validate(&self, client: &Self::Client) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// A cheap reachability check of the server (a TCP connect), used during outages to notice
    /// the database's return without a full connection attempt.
    fn probe(&self) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// `host:port` of the server, for messages.
    fn target(&self) -> String;

    /// Cancels the request in flight on `client`'s session (its future was dropped), on a
    /// connection of its own. The pool bounds it by `connect_timeout`. The default cannot.
    fn cancel(
        &self,
        client: &Self::Client,
        session: &Session,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (client, session);
        async { Err::<(), BoxError>("this connector cannot cancel a request".into()) }
    }

    /// Runs a statement that a cancel delivered late (after the request it was sent for had
    /// ended) would cancel, so that it does not cancel the next user's. The pool runs it after
    /// every cancel, twice at most, bounded by `validation_timeout`. The default does nothing.
    fn settle(&self, client: &Self::Client) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = client;
        async { Ok::<(), BoxError>(()) }
    }

    /// Terminates the server sessions in `orphans` that are still there: each is a server
    /// process id and how old its session is at least, in seconds (a process with that id but
    /// younger is another session, which got the id after ours ended). Runs on one of the
    /// pool's sessions, bounded by `validation_timeout`; returns how many were terminated.
    /// The default terminates nothing.
    fn terminate(
        &self,
        client: &Self::Client,
        orphans: &[(u32, f64)],
    ) -> impl Future<Output = Result<u64, BoxError>> + Send {
        let _ = (client, orphans);
        async { Ok::<u64, BoxError>(0) }
    }

    /// Resets the session's state as `how` says ([`PoolConfig::session_reset`](crate::PoolConfig::session_reset)),
    /// on every return when it is on. The pool bounds it by `validation_timeout`. The default
    /// cannot (a pool configured to reset then closes every returned connection).
    fn reset(
        &self,
        client: &Self::Client,
        how: crate::SessionReset,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (client, how);
        async { Err::<(), BoxError>("this connector cannot reset a session".into()) }
    }

    /// Ends the (possibly failed) transaction block `client`'s session is in. The pool bounds
    /// it by `validation_timeout`. The default cannot.
    fn rollback(&self, client: &Self::Client) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = client;
        async { Err::<(), BoxError>("this connector cannot roll back".into()) }
    }
}

/// Connects with tokio-postgres on sockets the pool owns, with TLS as `sslmode` and the
/// certificate settings say (see [`SslMode`](crate::SslMode)), tracking every session's state.
///
/// # Examples
/// ```
/// let pg: tokio_postgres::Config = "host=db user=app".parse().unwrap();
/// let connector = pool::PgConnector::new(pg);
/// # drop(connector);
/// ```
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    target: String,
    tls: Option<crate::tls::Setup>,
    attrs: crate::SessionAttrs,
    hosts: std::sync::Arc<crate::hosts::Hosts>,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug already redacts the password.
        f.debug_struct("PgConnector")
            .field("target", &self.target)
            .field("target_session_attrs", &self.attrs)
            .field("config", &self.config)
            .finish()
    }
}

impl PgConnector {
    /// A connector for these settings. Their `sslmode` (tokio-postgres's: disable, prefer,
    /// require) is followed, encrypting without checking the server's certificate; use
    /// [`with_tls`](Self::with_tls) to check it.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), pool::PoolError> {
    /// let pg: tokio_postgres::Config = "host=db user=app".parse().unwrap();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), pool::PgConnector::new(pg)).await?;
    /// # Ok(()) }
    /// ```
    pub fn new(config: tokio_postgres::Config) -> Self {
        use tokio_postgres::config::SslMode as Pg;
        let mode = match config.get_ssl_mode() {
            Pg::Disable => crate::SslMode::Disable,
            Pg::Require => crate::SslMode::Require,
            _ => crate::SslMode::Prefer,
        };
        Self::assemble(config, crate::tls::Setup::unchecked(mode))
    }

    /// The connector, with tokio-postgres's `target_session_attrs` (three modes) taken over.
    fn assemble(mut config: tokio_postgres::Config, tls: Option<crate::tls::Setup>) -> Self {
        use tokio_postgres::config::TargetSessionAttrs as Attrs;
        let attrs = match config.get_target_session_attrs() {
            Attrs::ReadWrite => crate::SessionAttrs::ReadWrite,
            Attrs::ReadOnly => crate::SessionAttrs::ReadOnly,
            _ => crate::SessionAttrs::Any,
        };
        // The pool checks the role itself (libpq's six modes), on its own sockets.
        config.target_session_attrs(Attrs::Any);
        Self {
            target: target_of(&config),
            hosts: std::sync::Arc::new(crate::hosts::Hosts::new(&config)),
            config,
            tls,
            attrs,
        }
    }

    /// Which servers sessions may be opened on (libpq's `target_session_attrs`; the URL's
    /// when the connector comes from [`Pool::connect`](crate::Pool::connect)).
    ///
    /// # Examples
    /// ```
    /// let pg: tokio_postgres::Config = "host=a,b port=5432,5433 user=app".parse().unwrap();
    /// let connector = pool::PgConnector::new(pg).target_session_attrs(pool::SessionAttrs::Primary);
    /// assert_eq!(connector.session_attrs(), pool::SessionAttrs::Primary);
    /// ```
    pub fn target_session_attrs(mut self, attrs: crate::SessionAttrs) -> Self {
        self.attrs = attrs;
        self
    }

    /// The mode [`target_session_attrs`](Self::target_session_attrs) set.
    pub fn session_attrs(&self) -> crate::SessionAttrs {
        self.attrs
    }

    /// A connector with the TLS settings `tls` (as [`PoolConfig::tls_options`](crate::PoolConfig::tls_options)
    /// reads them from a URL), reading the certificate files it names now.
    ///
    /// # Errors
    /// [`ConfigError`](crate::ConfigError) when a file cannot be read or holds no certificate,
    /// or a mode that checks certificates has no CA to check them against.
    ///
    /// # Examples
    /// ```
    /// let config = pool::PoolConfig::from_url("postgres://app@db/app?sslmode=verify-full&sslrootcert=/nonexistent.pem")?;
    /// let pg: tokio_postgres::Config = "host=db user=app".parse().unwrap();
    /// let err = pool::PgConnector::with_tls(pg, &config.tls_options()?).unwrap_err();
    /// assert!(err.to_string().contains("sslrootcert `/nonexistent.pem` could not be read"), "{err}");
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn with_tls(
        mut config: tokio_postgres::Config,
        tls: &crate::TlsOptions,
    ) -> Result<Self, crate::ConfigError> {
        let setup = crate::tls::Setup::new(tls)
            .map_err(|e| crate::ConfigError::single(crate::ConfigProblem::new("url", e)))?;
        config.ssl_mode(tls.mode.for_tokio_postgres());
        Ok(Self::assemble(config, setup))
    }

    /// A connector that requires TLS and checks the server's certificate and name against the
    /// public CAs (`sslmode=verify-full sslrootcert=system`).
    ///
    /// # Examples
    /// ```
    /// let pg: tokio_postgres::Config = "host=db user=app sslmode=require".parse().unwrap();
    /// let connector = pool::PgConnector::with_rustls(pg);
    /// # drop(connector);
    /// ```
    #[cfg(feature = "rustls")]
    pub fn with_rustls(config: tokio_postgres::Config) -> Self {
        let tls = crate::TlsOptions {
            mode: crate::SslMode::VerifyFull,
            root_cert: Some(crate::RootCert::System),
            ..Default::default()
        };
        Self::with_tls(config, &tls).expect("the built-in public CAs make a TLS setup")
    }

    /// The same connector as [`Pool::connect`](crate::Pool::connect) makes from `config`.
    pub(crate) fn from_pool_config(config: &crate::PoolConfig) -> Result<Self, crate::ConfigError> {
        let (pg, tls, attrs) = config
            .connection()
            .map_err(crate::error::ConfigError::single)?;
        Ok(Self::with_tls(pg, &tls)?.target_session_attrs(attrs))
    }

    /// The connection settings.
    ///
    /// # Examples
    /// ```
    /// let pg: tokio_postgres::Config = "host=db user=app".parse().unwrap();
    /// assert_eq!(pool::PgConnector::new(pg).config().get_user(), Some("app"));
    /// ```
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

fn target_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Sorts a tokio-postgres error into a [`ConnectFailure`].
impl Connector for PgConnector {
    type Client = tokio_postgres::Client;

    async fn connect(&self) -> Result<Connection<Self::Client>, ConnectError> {
        let opened =
            crate::socket::connect(&self.config, self.tls.as_ref(), self.attrs, &self.hosts)
                .await
                .map_err(|(kind, source)| ConnectError { kind, source })?;
        Ok(Connection {
            client: opened.client,
            driver: opened.driver,
            session: Some(opened.session),
        })
    }

    fn is_closed(&self, client: &Self::Client) -> bool {
        client.is_closed()
    }

    async fn validate(&self, client: &Self::Client) -> Result<(), BoxError> {
        let check = !crate::planted::planted(crate::planted::Bug::RoleCheck)
            && !crate::planted::planted(crate::planted::Bug::DemotedWrites);
        if check && self.attrs != crate::SessionAttrs::Any && self.hosts.role_check_due() {
            let role = crate::socket::role_of(client)
                .await
                .map_err(|(kind, _)| kind.to_string())?;
            if !self.attrs.keeps(role) {
                self.hosts.doubt();
                return Err(crate::socket::misfit(role, self.attrs).0.to_string().into());
            }
            return Ok(());
        }
        // The empty query is the cheapest round trip: no parse, no plan, one message back.
        client
            .simple_query("")
            .await
            .map(|_| ())
            .map_err(Into::into)
    }

    async fn probe(&self) -> Result<(), BoxError> {
        // Reachable when any host takes a TCP connection (every host at once: a silent one
        // must not hide the others); the role is the connection attempt's to check.
        let hosts = self.hosts.snapshot();
        let attempts = hosts.into_iter().map(|h| {
            Box::pin(async move {
                #[cfg(unix)]
                if h.host.starts_with('/') {
                    let path = std::path::Path::new(&h.host).join(format!(".s.PGSQL.{}", h.port));
                    return tokio::net::UnixStream::connect(path).await.map(drop);
                }
                tokio::net::TcpStream::connect((h.host.as_str(), h.port))
                    .await
                    .map(drop)
            })
        });
        // The first host that answers, or the last error when none does.
        futures_util::future::select_ok(attempts)
            .await
            .map(drop)
            .map_err(Into::into)
    }

    fn hosts(&self) -> Vec<crate::HostHealth> {
        self.hosts.snapshot()
    }

    fn wrong_role(&self, session: &Session) -> bool {
        let wrong = self.attrs.wants_writes()
            && session.refused_write()
            && !crate::planted::planted(crate::planted::Bug::DemotedWrites);
        if wrong {
            self.hosts.doubt();
        }
        wrong
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    async fn cancel(&self, client: &Self::Client, session: &Session) -> Result<(), BoxError> {
        crate::socket::cancel(client, session, self.tls.as_ref()).await
    }

    async fn rollback(&self, client: &Self::Client) -> Result<(), BoxError> {
        client.batch_execute("ROLLBACK").await.map_err(Into::into)
    }

    async fn reset(&self, client: &Self::Client, how: crate::SessionReset) -> Result<(), BoxError> {
        client.batch_execute(how.sql()).await.map_err(Into::into)
    }

    async fn terminate(
        &self,
        client: &Self::Client,
        orphans: &[(u32, f64)],
    ) -> Result<u64, BoxError> {
        let pids: Vec<i32> = orphans.iter().map(|(pid, _)| *pid as i32).collect();
        let ages: Vec<f64> = orphans.iter().map(|(_, age)| *age).collect();
        let row = client
            .query_one(
                "SELECT count(pg_terminate_backend(a.pid)) \
                 FROM unnest($1::int4[], $2::float8[]) AS o(pid, age) \
                 JOIN pg_stat_activity a ON a.pid = o.pid \
                 WHERE a.pid <> pg_backend_pid() \
                 AND a.usename = current_user \
                 AND extract(epoch FROM now() - a.backend_start) >= o.age - 1",
                &[&pids, &ages],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn settle(&self, client: &Self::Client) -> Result<(), BoxError> {
        // A statement that runs through the executor, where a pending cancel is taken.
        client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::PgConnector;

    #[test]
    fn the_target_names_host_and_port_and_debug_hides_the_password() {
        let pg: tokio_postgres::Config = "host=db.internal port=6432 user=app password=s3cret"
            .parse()
            .unwrap();
        let connector = PgConnector::new(pg);
        assert_eq!(connector.target, "db.internal:6432");
        assert_eq!(connector.config().get_user(), Some("app"));
        let debug = format!("{connector:?}");
        assert!(
            debug.contains("db.internal:6432") && debug.contains("app"),
            "{debug}"
        );
        assert!(!debug.contains("s3cret"), "{debug}");
        let socket: tokio_postgres::Config = "host=/run/postgresql user=app".parse().unwrap();
        assert_eq!(PgConnector::new(socket).target, "/run/postgresql:5432");
        let none: tokio_postgres::Config = "user=app".parse().unwrap();
        assert_eq!(PgConnector::new(none).target, "localhost:5432");
    }
}
