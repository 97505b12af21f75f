//! A proxy's settings ([`ProxyConfig`]), its counters ([`ProxyStats`]), and the toxics in
//! force on it ([`ToxicSet`]), as the API shows them.

use serde::{Deserialize, Serialize};

use super::toxic::Toxic;
use super::toxics::verdict::{Strands, Verdict};

/// What a proxy is: its name, where it listens, where it forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// Unique name.
    pub name: String,
    /// `host:port` to listen on; port 0 picks a free one.
    pub listen: String,
    /// `host:port` to forward to.
    pub upstream: String,
    /// Whether it accepts connections (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl ProxyConfig {
    /// An enabled proxy.
    pub fn new(
        name: impl Into<String>,
        listen: impl Into<String>,
        upstream: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            listen: listen.into(),
            upstream: upstream.into(),
            enabled: true,
        }
    }
}

/// Counters of one proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Connections accepted since creation.
    pub accepted: u64,
    /// Connections open now.
    pub live: u64,
    /// Connections reset at once by `refuse`.
    pub refused: u64,
    /// Bytes forwarded client to server.
    pub bytes_upstream: u64,
    /// Connections whose client opened a PostgreSQL session (a startup message, or an SSL or
    /// GSS request before one); for another protocol, connections whose client sent data
    /// that is not a PostgreSQL cancel request.
    pub sessions: u64,
    /// Connections that carried a PostgreSQL cancel request.
    pub cancels: u64,
    /// Bytes forwarded server to client.
    pub bytes_downstream: u64,
    /// Of the bytes forwarded (both directions), those moved with `splice(2)`: never copied
    /// into user space, on a direction with no toxic (Linux).
    pub bytes_zero_copy: u64,
}

/// A toxic as links see it: with a stable id and a version bumped on every update.
#[derive(Debug, Clone)]
pub struct ToxicEntry {
    pub(crate) id: u64,
    pub(crate) version: u64,
    pub(crate) toxic: Toxic,
    /// A timed toxic's duration (ms, as asked), and when it removes itself.
    pub(crate) expires: Option<(u64, std::time::Instant)>,
}

/// The toxics of a proxy, in the order they were added.
#[derive(Debug, Default)]
pub struct ToxicSet {
    pub(crate) toxics: Vec<ToxicEntry>,
}

impl Strands for ToxicSet {
    fn strands(&self) -> bool {
        self.toxics
            .iter()
            .any(|e| e.toxic.kind.on_open() == Verdict::Strand)
    }
}
