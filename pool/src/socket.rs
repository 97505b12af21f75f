//! Opening a plain (non-TLS) PostgreSQL connection on a socket the pool owns, so that its
//! traffic can update a [`Session`] (see `session`).
//!
//! This does what tokio-postgres's `Config::connect` does for a plain connection, with the
//! same settings read from the `Config`: every host in order (or shuffled with
//! `load_balance_hosts=random`), `hostaddr`, every resolved address, `connect_timeout` per
//! attempt, `TCP_NODELAY`, TCP keepalives, `tcp_user_timeout`, unix sockets, and
//! `target_session_attrs=read-write` / `read-only`. The socket is then handed to
//! `Config::connect_raw` inside a [`Tracked`] wrapper, with the TLS the connector was set up
//! with (see `tls`): TLS streams are tracked above the encryption.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::{Host, LoadBalanceHosts};

use crate::SessionAttrs;
use crate::error::{BoxError, ConnectFailure};
use crate::hosts::{Hosts, ROLE_QUERY, Role};
use crate::planted::{Bug, planted};
use crate::session::{Peer, Session, Tracked};
use crate::tls::Setup;

/// Why an attempt failed, and the error behind it.
type ConnectError = (ConnectFailure, Option<BoxError>);

/// An open connection: the client, its driver and its tracked session.
pub(crate) struct Opened {
    pub client: tokio_postgres::Client,
    pub driver: std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>,
    pub session: Arc<Session>,
}

fn io_failure(e: io::Error, what: &str) -> ConnectError {
    (
        classify_io(&e, || format!("{what}: {e}")),
        Some(Box::new(e)),
    )
}

/// What an I/O error of an attempt means for the outage rules; `other` says it otherwise.
fn classify_io(e: &io::Error, other: impl FnOnce() -> String) -> ConnectFailure {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
        | UnexpectedEof | AddrNotAvailable | HostUnreachable | NetworkUnreachable => {
            ConnectFailure::Refused
        }
        TimedOut => ConnectFailure::TimedOut(Duration::ZERO),
        _ => ConnectFailure::Other(other()),
    }
}

fn pg_failure(e: tokio_postgres::Error) -> ConnectError {
    (classify(&e), Some(Box::new(e)))
}

/// A failure of the start-up on a connected socket. Closed or reset there, before PostgreSQL
/// said anything (its first words are an answer to the SSL request or an authentication
/// request, and an error it sends is `Server`), the socket was accepted by something that had
/// no server to pass it to: a proxy or load balancer, whose port the TCP probe always reaches.
fn startup_failure(e: tokio_postgres::Error) -> ConnectError {
    match pg_failure(e) {
        (ConnectFailure::Refused, source) => (ConnectFailure::Closed, source),
        other => other,
    }
}

async fn bounded<T>(
    limit: Option<Duration>,
    what: &str,
    f: impl Future<Output = io::Result<T>>,
) -> Result<T, ConnectError> {
    let result = match limit {
        Some(limit) => match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => {
                return Err((ConnectFailure::TimedOut(limit), None));
            }
        },
        None => f.await,
    };
    result.map_err(|e| io_failure(e, what))
}

/// Opens a connection to the first host of `config` that takes it and fits `attrs`, with TLS
/// when `tls` is given (and `sslmode` is not `disable`); what each attempt found goes to
/// `hosts`. Hosts whose last attempt failed are tried last.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    tls: Option<&Setup>,
    attrs: SessionAttrs,
    hosts: &Hosts,
) -> Result<Opened, ConnectError> {
    let n = config.get_hosts().len().max(config.get_hostaddrs().len());
    let mut order: Vec<usize> = (0..n).collect();
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        shuffle(&mut order);
    }
    let mut last = None;
    // prefer-standby: a session on a primary is kept while the others are tried for a standby.
    let mut fallback = None;
    for i in hosts.order(order) {
        let opened = match connect_host(config, tls, i).await {
            Ok(opened) => opened,
            Err(Some(e)) => {
                hosts.failed(i, e.0.to_string());
                last = Some(e);
                continue;
            }
            Err(None) => continue,
        };
        if attrs == SessionAttrs::Any || planted(Bug::RoleCheck) || planted(Bug::DemotedWrites) {
            hosts.reached(i, None);
            return Ok(opened);
        }
        let opened = driven(opened);
        let role = match role_of(&opened.client).await {
            Ok(role) => role,
            Err(e) => {
                hosts.failed(i, e.0.to_string());
                last = Some(e);
                continue;
            }
        };
        hosts.reached(i, Some(role));
        if attrs.fits(role) {
            return Ok(opened);
        }
        if attrs == SessionAttrs::PreferStandby && fallback.is_none() {
            fallback = Some(opened);
        }
        last = Some(misfit(role, attrs));
    }
    if let Some(opened) = fallback {
        return Ok(opened);
    }
    Err(last.unwrap_or((
        ConnectFailure::Other("the configuration names no host".into()),
        None,
    )))
}

/// One attempt on host `i` of `config`; `Err(None)` when it names none there.
async fn connect_host(
    config: &tokio_postgres::Config,
    tls: Option<&Setup>,
    i: usize,
) -> Result<Opened, Option<ConnectError>> {
    let ports = config.get_ports();
    let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    match (config.get_hostaddrs().get(i), config.get_hosts().get(i)) {
        (Some(ip), host) => {
            // verify-full checks the name given as `host`, else the address itself.
            let name = match host {
                Some(Host::Tcp(h)) => h.clone(),
                _ => ip.to_string(),
            };
            connect_tcp(config, vec![SocketAddr::new(*ip, port)], tls, &name)
                .await
                .map_err(Some)
        }
        (None, Some(Host::Tcp(host))) => {
            let addrs = bounded(config.get_connect_timeout().copied(), "resolving", async {
                Ok(tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|e| io::Error::other(format!("could not resolve host `{host}`: {e}")))?
                    .collect::<Vec<_>>())
            })
            .await?;
            connect_tcp(config, addrs, tls, host).await.map_err(Some)
        }
        #[cfg(unix)]
        (None, Some(Host::Unix(dir))) => connect_unix(config, dir.join(format!(".s.PGSQL.{port}")))
            .await
            .map_err(Some),
        (None, None) => Err(None),
    }
}

async fn connect_tcp(
    config: &tokio_postgres::Config,
    addrs: Vec<SocketAddr>,
    tls: Option<&Setup>,
    host: &str,
) -> Result<Opened, ConnectError> {
    let mut last = None;
    for addr in addrs {
        let stream = match bounded(
            config.get_connect_timeout().copied(),
            "connecting",
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        if let Err(e) = set_options(&stream, config) {
            last = Some(io_failure(e, "setting socket options"));
            continue;
        }
        let tls = tls.map(|setup| (setup, host));
        match handshake(config, stream, Peer::Tcp(addr, host.to_string()), tls).await {
            Ok(opened) => return Ok(opened),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or((
        ConnectFailure::Other("the host resolved to no address".into()),
        None,
    )))
}

/// The pool's TCP settings on a connected socket: no Nagle delay, keepalives (idle time,
/// interval, retries) and, on Linux, the user timeout that ends a connection whose data goes
/// unacknowledged.
fn set_options(stream: &tokio::net::TcpStream, config: &tokio_postgres::Config) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    #[cfg(target_os = "linux")]
    if let Some(t) = config.get_tcp_user_timeout() {
        sock.set_tcp_user_timeout(Some(*t))?;
    }
    if config.get_keepalives() {
        let mut keepalive = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            keepalive = keepalive.with_interval(interval);
        }
        #[cfg(not(any(target_os = "windows", target_os = "openbsd")))]
        if let Some(retries) = config.get_keepalives_retries() {
            keepalive = keepalive.with_retries(retries);
        }
        sock.set_tcp_keepalive(&keepalive)?;
    }
    Ok(())
}

#[cfg(unix)]
async fn connect_unix(
    config: &tokio_postgres::Config,
    path: PathBuf,
) -> Result<Opened, ConnectError> {
    let stream = bounded(
        config.get_connect_timeout().copied(),
        "connecting",
        tokio::net::UnixStream::connect(&path),
    )
    .await?;
    // As libpq: no TLS on a Unix-domain socket, whatever sslmode says.
    let mut plain = config.clone();
    plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
    handshake(&plain, stream, Peer::Unix(path), None).await
}

/// The start-up on `stream`, tracked, with TLS (and the host name it checks) when given.
async fn handshake<S>(
    config: &tokio_postgres::Config,
    stream: S,
    peer: Peer,
    tls: Option<(&Setup, &str)>,
) -> Result<Opened, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let session = Arc::new(Session::default());
    let _ = session.peer.set(peer);
    let Some((setup, host)) = tls else {
        let tracked = Tracked::new(stream, Arc::clone(&session));
        let (client, connection) = config
            .connect_raw(tracked, tokio_postgres::NoTls)
            .await
            .map_err(startup_failure)?;
        return Ok(Opened {
            client,
            driver: Box::pin(async move {
                let _ = connection.await;
            }),
            session,
        });
    };
    #[cfg(not(feature = "rustls"))]
    {
        let _ = host;
        match *setup {}
    }
    #[cfg(feature = "rustls")]
    {
        let direct = config.get_ssl_negotiation() == tokio_postgres::config::SslNegotiation::Direct;
        let tracked = if direct {
            Tracked::encrypted(stream, Arc::clone(&session))
        } else {
            Tracked::new(stream, Arc::clone(&session))
        };
        let inner = setup
            .for_host::<Tracked<S>>(host)
            .map_err(|m| (ConnectFailure::Tls(m), None))?;
        let tls = crate::tls::TrackedTls {
            inner,
            session: Arc::clone(&session),
        };
        let (client, connection) = config
            .connect_raw(tracked, tls)
            .await
            .map_err(startup_failure)?;
        Ok(Opened {
            client,
            driver: Box::pin(async move {
                let _ = connection.await;
            }),
            session,
        })
    }
}

/// `opened` with its driver running in a task of its own (so that the pool can query the
/// session before adopting it); the task is aborted when the returned driver is dropped.
fn driven(opened: Opened) -> Opened {
    let Opened {
        client,
        driver,
        session,
    } = opened;
    let task = tokio::spawn(driver);
    let abort = task.abort_handle();
    let guard = crate::on_drop::on_drop(move || abort.abort());
    Opened {
        client,
        driver: Box::pin(async move {
            let _guard = guard;
            let _ = task.await;
        }),
        session,
    }
}

/// The server's role (one round trip; the connection's driver must be running).
pub(crate) async fn role_of(client: &tokio_postgres::Client) -> Result<Role, ConnectError> {
    let rows = client.simple_query(ROLE_QUERY).await.map_err(pg_failure)?;
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Role::from_row(row),
            _ => None,
        })
        .ok_or_else(|| {
            (
                ConnectFailure::Other("the server did not say whether it is in recovery".into()),
                None,
            )
        })
}

/// The failure of a server whose role does not fit `attrs`.
pub(crate) fn misfit(role: Role, attrs: SessionAttrs) -> ConnectError {
    (
        ConnectFailure::Role(format!(
            "the server is {}, and target_session_attrs asks for {}; after a failover another host of the URL takes over",
            role.describe(),
            attrs.as_str()
        )),
        None,
    )
}

/// Sends a CancelRequest for `client`'s session on a connection of its own, with the TLS its
/// session was opened with (a server or a middlebox may take nothing else).
pub(crate) async fn cancel(
    client: &tokio_postgres::Client,
    session: &Session,
    tls: Option<&Setup>,
) -> Result<(), BoxError> {
    let token = client.cancel_token();
    let Some(peer) = session.peer.get() else {
        return Err("the session's server address is not known".into());
    };
    match peer {
        #[cfg_attr(not(feature = "rustls"), allow(unused_variables))]
        Peer::Tcp(addr, host) => {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            match tls {
                None => {
                    token
                        .cancel_query_raw(stream, tokio_postgres::NoTls)
                        .await?
                }
                #[cfg(feature = "rustls")]
                Some(setup) => {
                    let tls = setup.for_host::<tokio::net::TcpStream>(host)?;
                    token.cancel_query_raw(stream, tls).await?
                }
                #[cfg(not(feature = "rustls"))]
                Some(setup) => match *setup {},
            }
        }
        #[cfg(unix)]
        Peer::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            token
                .cancel_query_raw(stream, tokio_postgres::NoTls)
                .await?;
        }
    }
    Ok(())
}

/// A shuffle for `load_balance_hosts=random`, seeded from the clock (not for tests' replay:
/// host order is the server's choice, not the pool's logic).
fn shuffle(v: &mut [usize]) {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// What a tokio-postgres connect error means for the outage rules.
pub(crate) fn classify(e: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(db) = e.as_db_error() {
        return ConnectFailure::Server(format!("{} ({})", db.message(), db.code().code()));
    }
    #[cfg(feature = "rustls")]
    if let Some(message) = crate::tls::failure_message(e) {
        return ConnectFailure::Tls(message);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return classify_io(io, || io.to_string());
        }
        source = err.source();
    }
    if e.is_closed() {
        return ConnectFailure::Refused;
    }
    ConnectFailure::Other(e.to_string())
}

#[cfg(all(test, target_os = "linux"))]
mod tests;
