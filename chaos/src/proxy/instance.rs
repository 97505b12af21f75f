//! One proxy ([`Proxy`]): its listener, its connections (each two links), its toxics and its
//! counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::config::{ProxyConfig, ProxyStats, ToxicEntry, ToxicSet};
use super::error::{ProxyError, check_listen};
use super::toxic::{Stream, Toxic};
use super::{link, stage, toxics};
use crate::rng::Rng;

struct ConnEntry {
    stop: watch::Sender<bool>,
    stranded: Arc<AtomicBool>,
    /// The connection's own byte counts: written by its task alone, so two connections on
    /// two cores never share the cache line they count in (summed by `stats`).
    bytes: Arc<Bytes>,
}

/// Bytes forwarded, by direction, and of those, the bytes spliced.
#[derive(Debug, Default)]
pub(super) struct Bytes {
    up: AtomicU64,
    down: AtomicU64,
    zero_copy: AtomicU64,
}

impl Bytes {
    fn add(&self, other: &Bytes) {
        self.up.fetch_add(other.up.load(Relaxed), Relaxed);
        self.down.fetch_add(other.down.load(Relaxed), Relaxed);
        self.zero_copy
            .fetch_add(other.zero_copy.load(Relaxed), Relaxed);
    }
}

struct State {
    config: ProxyConfig,
    bound: Option<SocketAddr>,
    accept: Option<JoinHandle<()>>,
}

pub(super) struct Inner {
    pub(super) name: String,
    state: Mutex<State>,
    /// The listening socket, outside the accept task so `disable` frees the port at once.
    listener: Mutex<Option<TcpListener>>,
    pub(super) toxics: watch::Sender<Arc<ToxicSet>>,
    conns: Mutex<HashMap<u64, ConnEntry>>,
    rng: Mutex<Rng>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    live: AtomicU64,
    refused: AtomicU64,
    /// The bytes of closed connections (live ones count in their [`ConnEntry`]); both are
    /// read under the `conns` lock, where a closing connection moves its counts here.
    closed_bytes: Bytes,
    first: link::FirstBytes,
}

/// A running proxy. Cheap to clone: clones control the same proxy.
#[derive(Clone)]
pub struct Proxy {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("name", &self.inner.name)
            .field("listen", &self.listen())
            .field("upstream", &self.upstream())
            .field("enabled", &self.enabled())
            .finish()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Proxy {
    /// Starts a proxy (listening at once when enabled). `seed` drives all of its randomness.
    /// Must be called inside a tokio runtime.
    pub fn start(config: ProxyConfig, seed: u64) -> Result<Proxy, ProxyError> {
        if config.name.trim().is_empty() {
            return Err(ProxyError::BadRequest(
                "missing required field: name".into(),
            ));
        }
        if config.upstream.trim().is_empty() {
            return Err(ProxyError::BadRequest(
                "missing required field: upstream".into(),
            ));
        }
        check_listen(&config.listen)?;
        let enabled = config.enabled;
        let proxy = Proxy {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                state: Mutex::new(State {
                    config: ProxyConfig {
                        enabled: false,
                        ..config
                    },
                    bound: None,
                    accept: None,
                }),
                listener: Mutex::new(None),
                toxics: watch::channel(Arc::new(ToxicSet::default())).0,
                conns: Mutex::new(HashMap::new()),
                rng: Mutex::new(Rng::new(seed)),
                next_id: AtomicU64::new(1),
                accepted: AtomicU64::new(0),
                live: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                closed_bytes: Bytes::default(),
                first: link::FirstBytes::default(),
            }),
        };
        if enabled {
            proxy.enable()?;
        }
        Ok(proxy)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The bound address while enabled.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        lock(&self.inner.state).bound
    }

    /// The listen address: the bound one (port 0 resolved) once bound, else as configured.
    pub fn listen(&self) -> String {
        let state = lock(&self.inner.state);
        state
            .bound
            .map_or_else(|| state.config.listen.clone(), |a| a.to_string())
    }

    /// The upstream address.
    pub fn upstream(&self) -> String {
        lock(&self.inner.state).config.upstream.clone()
    }

    /// Whether it accepts connections.
    pub fn enabled(&self) -> bool {
        lock(&self.inner.state).config.enabled
    }

    /// The configuration, with the listen address resolved.
    pub fn config(&self) -> ProxyConfig {
        let state = lock(&self.inner.state);
        ProxyConfig {
            listen: state
                .bound
                .map_or_else(|| state.config.listen.clone(), |a| a.to_string()),
            ..state.config.clone()
        }
    }

    /// Starts listening (again). Re-enabling reuses the port bound before.
    pub fn enable(&self) -> Result<(), ProxyError> {
        let mut state = lock(&self.inner.state);
        if state.config.enabled {
            return Ok(());
        }
        let addr = state
            .bound
            .map_or_else(|| state.config.listen.clone(), |a| a.to_string());
        let std_listener = std::net::TcpListener::bind(&addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ProxyError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let listener = TcpListener::from_std(std_listener)
            .map_err(|source| ProxyError::Bind { addr, source })?;
        state.bound = listener.local_addr().ok();
        state.config.enabled = true;
        *lock(&self.inner.listener) = Some(listener);
        let inner = Arc::clone(&self.inner);
        state.accept = Some(tokio::spawn(accept_loop(inner)));
        info!(proxy = %self.inner.name, listen = ?state.bound, upstream = %state.config.upstream, "proxy listening");
        Ok(())
    }

    /// The "down" fault: stops listening and closes every live connection.
    pub fn disable(&self) {
        let mut state = lock(&self.inner.state);
        drop(lock(&self.inner.listener).take());
        if let Some(task) = state.accept.take() {
            task.abort();
        }
        state.config.enabled = false;
        drop(state);
        for conn in lock(&self.inner.conns).values() {
            let _ = conn.stop.send(true);
        }
        debug!(proxy = %self.inner.name, "proxy disabled");
    }

    /// Whether `config` describes this proxy as it is (a populate then keeps it).
    pub(super) fn same_as(&self, config: &ProxyConfig) -> bool {
        let current = self.config();
        let same_listen = current.listen == config.listen
            || self
                .listen_addr()
                .is_some_and(|a| a.to_string() == config.listen)
            || lock(&self.inner.state).config.listen == config.listen;
        same_listen && current.upstream == config.upstream && current.enabled == config.enabled
    }

    /// Changes where it listens and forwards; a changed listen address rebinds.
    pub fn update(
        &self,
        listen: Option<String>,
        upstream: Option<String>,
    ) -> Result<(), ProxyError> {
        if let Some(listen) = &listen {
            check_listen(listen)?;
        }
        if let Some(upstream) = upstream {
            lock(&self.inner.state).config.upstream = upstream;
        }
        if let Some(listen) = listen {
            let was_enabled = self.enabled();
            let same = {
                let state = lock(&self.inner.state);
                state.bound.is_some_and(|b| b.to_string() == listen)
                    || state.config.listen == listen
            };
            if !same {
                self.disable();
                {
                    let mut state = lock(&self.inner.state);
                    state.config.listen = listen;
                    state.bound = None;
                }
                if was_enabled {
                    self.enable()?;
                }
            }
        }
        Ok(())
    }

    /// The toxics, in order.
    pub fn toxics(&self) -> Vec<Toxic> {
        self.inner
            .toxics
            .borrow()
            .toxics
            .iter()
            .map(|e| e.toxic.clone())
            .collect()
    }

    /// One toxic.
    pub fn toxic(&self, name: &str) -> Option<Toxic> {
        self.toxics().into_iter().find(|t| t.name == name)
    }

    pub(super) fn modify(
        &self,
        f: impl FnOnce(&mut Vec<ToxicEntry>) -> Result<(), ProxyError>,
    ) -> Result<(), ProxyError> {
        let mut result = Ok(());
        self.inner.toxics.send_modify(|set| {
            let mut toxics = set.toxics.clone();
            result = f(&mut toxics);
            if result.is_ok() {
                *set = Arc::new(ToxicSet { toxics });
            }
        });
        result
    }

    /// Adds a toxic; it applies to live connections at once.
    pub fn add_toxic(&self, toxic: Toxic) -> Result<Toxic, ProxyError> {
        self.add_entry(toxic, None).map(|(_, added)| added)
    }

    /// Adds a toxic, timed or not; returns its entry's id too.
    pub(super) fn add_entry(
        &self,
        toxic: Toxic,
        expires: Option<(u64, std::time::Instant)>,
    ) -> Result<(u64, Toxic), ProxyError> {
        if toxic.kind.on_open() == toxics::Verdict::Strand {
            // Strand the connections that are open now; later ones pass.
            for conn in lock(&self.inner.conns).values() {
                conn.stranded.store(true, Relaxed);
            }
        }
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        let added = toxic.clone();
        self.modify(|toxics| {
            if toxics.iter().any(|e| e.toxic.name == toxic.name) {
                return Err(ProxyError::ToxicExists);
            }
            toxics.push(ToxicEntry {
                id,
                version: 0,
                toxic,
                expires,
            });
            Ok(())
        })?;
        info!(proxy = %self.inner.name, toxic = %added.name, kind = added.kind.type_name(), stream = added.stream.as_str(), duration_ms = expires.map(|(ms, _)| ms), "toxic added");
        Ok((id, added))
    }

    /// Updates a toxic's attributes or toxicity from a request body.
    pub fn update_toxic(&self, name: &str, body: &serde_json::Value) -> Result<Toxic, ProxyError> {
        let mut updated = None;
        self.modify(|toxics| {
            let entry = toxics
                .iter_mut()
                .find(|e| e.toxic.name == name)
                .ok_or(ProxyError::ToxicNotFound)?;
            entry.toxic = entry.toxic.updated(body).map_err(ProxyError::BadRequest)?;
            entry.version += 1;
            updated = Some(entry.toxic.clone());
            Ok(())
        })?;
        Ok(updated.expect("set on success"))
    }

    /// Removes a toxic; data it held is delivered (except as `timeout` does: it closes).
    pub fn remove_toxic(&self, name: &str) -> Result<(), ProxyError> {
        self.modify(|toxics| {
            let before = toxics.len();
            toxics.retain(|e| e.toxic.name != name);
            if toxics.len() == before {
                Err(ProxyError::ToxicNotFound)
            } else {
                Ok(())
            }
        })?;
        info!(proxy = %self.inner.name, toxic = %name, "toxic removed");
        Ok(())
    }

    /// Removes every toxic.
    pub fn remove_all_toxics(&self) {
        let _ = self.modify(|toxics| {
            toxics.clear();
            Ok(())
        });
    }

    /// The counters.
    pub fn stats(&self) -> ProxyStats {
        let i = &self.inner;
        let bytes = Bytes::default();
        {
            let conns = lock(&i.conns);
            bytes.add(&i.closed_bytes);
            for conn in conns.values() {
                bytes.add(&conn.bytes);
            }
        }
        ProxyStats {
            accepted: i.accepted.load(Relaxed),
            live: i.live.load(Relaxed),
            refused: i.refused.load(Relaxed),
            bytes_upstream: bytes.up.into_inner(),
            sessions: i.first.sessions.load(Relaxed),
            cancels: i.first.cancels.load(Relaxed),
            bytes_downstream: bytes.down.into_inner(),
            bytes_zero_copy: bytes.zero_copy.into_inner(),
        }
    }

    /// The JSON form of Toxiproxy's API.
    pub fn to_json(&self) -> serde_json::Value {
        let config = self.config();
        serde_json::json!({
            "name": config.name,
            "listen": config.listen,
            "upstream": config.upstream,
            "enabled": config.enabled,
            "toxics": self.toxics_json(),
        })
    }

    /// What the connection-level toxics say of the connection just accepted: a reset wins
    /// over a hang; each verdict is decided by the toxicity roll of the first toxic that
    /// gives it.
    fn verdict_for_new(&self) -> toxics::Verdict {
        use toxics::Verdict;
        for verdict in [Verdict::Reset, Verdict::Hang] {
            let toxicity = self
                .inner
                .toxics
                .borrow()
                .toxics
                .iter()
                .find(|e| e.toxic.kind.on_accept() == verdict)
                .map(|e| e.toxic.toxicity);
            if toxicity.is_some_and(|t| self.roll(t)) {
                return verdict;
            }
        }
        Verdict::Pass
    }

    fn roll(&self, toxicity: f32) -> bool {
        toxicity >= 1.0 || lock(&self.inner.rng).next_f64() < toxicity as f64
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    let proxy = Proxy { inner };
    loop {
        let accepted = std::future::poll_fn(|cx| match lock(&proxy.inner.listener).as_ref() {
            Some(listener) => listener.poll_accept(cx).map(Some),
            None => std::task::Poll::Ready(None),
        })
        .await;
        let (client, peer) = match accepted {
            None => return, // disabled
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                debug!(proxy = %proxy.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        proxy.inner.accepted.fetch_add(1, Relaxed);
        let verdict = proxy.verdict_for_new();
        if verdict == toxics::Verdict::Reset {
            proxy.inner.refused.fetch_add(1, Relaxed);
            reset(&client);
            continue;
        }
        let hung = verdict == toxics::Verdict::Hang;
        // The upstream dial happens in the connection's own task: a slow upstream never holds
        // up accepting other clients.
        tokio::spawn(connection(proxy.clone(), client, peer, hung));
    }
}

/// Closes with a TCP reset (SO_LINGER 0).
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn connection(proxy: Proxy, mut client: TcpStream, peer: SocketAddr, hang: bool) {
    let inner = &proxy.inner;
    let id = inner.next_id.fetch_add(1, Relaxed);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stranded = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(Bytes::default());
    lock(&inner.conns).insert(
        id,
        ConnEntry {
            stop: stop_tx,
            stranded: Arc::clone(&stranded),
            bytes: Arc::clone(&bytes),
        },
    );
    inner.live.fetch_add(1, Relaxed);
    let _registered = Registered { proxy: &proxy, id };
    if !proxy.enabled() {
        return;
    }
    if hang {
        debug!(proxy = %proxy.name(), conn = id, %peer, "connection hung in its handshake");
        return toxics::verdict::hang(&client, &mut stop_rx).await;
    }
    let upstream = proxy.upstream();
    let mut server = tokio::select! {
        r = TcpStream::connect(&upstream) => match r {
            Ok(s) => s,
            Err(e) => {
                debug!(proxy = %proxy.name(), %upstream, error = %e, "upstream dial failed; closing the client");
                return;
            }
        },
        _ = stop_rx.changed() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    debug!(proxy = %proxy.name(), conn = id, %peer, "connection open");
    let (seed_up, seed_down) = {
        let mut rng = lock(&inner.rng);
        (rng.fork(), rng.fork())
    };
    // Either direction ending ends the connection: it raises the connection's stop signal,
    // which the other direction (and `disable`) watch.
    let finish = || {
        if let Some(conn) = lock(&inner.conns).get(&id) {
            conn.stop.send_replace(true);
        }
    };
    let (mut client_r, mut client_w) = client.split();
    let (mut server_r, mut server_w) = server.split();
    let up = async {
        let r = link::run(
            &mut client_r,
            &mut server_w,
            link::LinkCtx {
                stream: Stream::Upstream,
                bytes: &bytes.up,
                zero_copied: &bytes.zero_copy,
                first: Some(&inner.first),
                stranded: &stranded,
                rng: seed_up,
            },
            inner.toxics.subscribe(),
            stop_rx.clone(),
        )
        .await;
        finish();
        r
    };
    let down = async {
        let r = link::run(
            &mut server_r,
            &mut client_w,
            link::LinkCtx {
                stream: Stream::Downstream,
                bytes: &bytes.down,
                zero_copied: &bytes.zero_copy,
                first: None,
                stranded: &stranded,
                rng: seed_down,
            },
            inner.toxics.subscribe(),
            stop_rx.clone(),
        )
        .await;
        finish();
        r
    };
    let (a, b) = tokio::join!(up, down);
    if [a, b].contains(&link::Ended::Close(stage::CloseKind::Reset)) {
        reset(&client);
        reset(&server);
    }
    debug!(proxy = %proxy.name(), conn = id, "connection closed");
}

/// Unregisters a connection however its task ends.
struct Registered<'a> {
    proxy: &'a Proxy,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let inner = &self.proxy.inner;
        let mut conns = lock(&inner.conns);
        if let Some(conn) = conns.remove(&self.id) {
            inner.closed_bytes.add(&conn.bytes);
        }
        inner.live.fetch_sub(1, Relaxed);
    }
}
