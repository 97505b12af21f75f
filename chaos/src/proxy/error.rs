//! What the proxy refuses, with the status the Toxiproxy API gives it.

/// Why a proxy operation failed. Each variant maps to the HTTP status Toxiproxy uses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No such proxy.
    #[error("proxy not found")]
    ProxyNotFound,
    /// No such toxic.
    #[error("toxic not found")]
    ToxicNotFound,
    /// A proxy with this name exists.
    #[error("proxy already exists")]
    ProxyExists,
    /// A toxic with this name exists on the proxy.
    #[error("toxic already exists")]
    ToxicExists,
    /// The request is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The listen address could not be bound.
    #[error("could not listen on {addr}: {source}; choose another address or free the port")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Checks a listen address before anything binds it: a literal `ip:port` or `localhost:port`
/// (a host name would be a DNS lookup, and a bad one reads as a port problem). Not checking
/// it here made `"nonsense"` and port 70000 answer 500 "free the port".
pub fn check_listen(addr: &str) -> Result<(), ProxyError> {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    if let Some(port) = addr.strip_prefix("localhost:") {
        if port.parse::<u16>().is_ok() {
            return Ok(());
        }
        return Err(ProxyError::BadRequest(format!(
            "listen `{addr}`: the port must be a number from 0 to 65535"
        )));
    }
    Err(ProxyError::BadRequest(format!(
        "listen `{addr}` is not an address to listen on: use ip:port, e.g. 127.0.0.1:0 or [::1]:8080, or localhost:port"
    )))
}

impl ProxyError {
    /// The HTTP status Toxiproxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::ProxyNotFound | ProxyError::ToxicNotFound => 404,
            ProxyError::ProxyExists | ProxyError::ToxicExists => 409,
            ProxyError::BadRequest(_) => 400,
            ProxyError::Bind { .. } => 500,
        }
    }
}
