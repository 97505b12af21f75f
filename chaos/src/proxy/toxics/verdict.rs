//! What connection-level toxics do to whole connections, and how the proxy carries it out.
//!
//! A data toxic is a [`Stage`](crate::proxy::stage::Stage) on one direction of a connection;
//! a connection-level toxic instead gives a [`Verdict`] for the connections it meets: when
//! one is accepted ([`ToxicType::on_accept`](super::ToxicType::on_accept)) and for those
//! already open when it is added ([`ToxicType::on_open`](super::ToxicType::on_open)).

use std::io;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

/// What happens to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: it goes on as usual.
    Pass,
    /// Reset at once (TCP RST), before it is dialled upstream.
    Reset,
    /// Accepted, never dialled upstream, never answered: whatever the client sends is dropped
    /// until it gives up or the proxy cuts it ([`hang`]).
    Hang,
    /// Silent from now on (data dropped, never closed) until no toxic strands it any more,
    /// then reset, as a peer that comes back without the connection's state answers ([`strand`]).
    Strand,
}

/// Whether the toxics in force strand connections (a set of toxics, as the proxy holds it).
pub(crate) trait Strands: Send + Sync {
    /// Some toxic in force has [`Verdict::Strand`].
    fn strands(&self) -> bool;
}

/// Reads and drops whatever `client` sends until it closes or `stop` fires.
pub(crate) async fn hang(client: &TcpStream, stop: &mut watch::Receiver<bool>) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = client.readable() => {
                if r.is_err() {
                    return;
                }
                match client.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

/// How a stranded connection ended.
pub(crate) enum Stranded {
    /// No toxic strands it any more: reset it.
    Released,
    /// Told to stop.
    Stopped,
}

/// Reads and drops whatever `src` sends, never writes, never closes, until no toxic in the
/// set strands connections any more, or `stop` fires.
pub(crate) async fn strand<S: Strands>(
    src: &TcpStream,
    toxics: &mut watch::Receiver<Arc<S>>,
    stop: &mut watch::Receiver<bool>,
) -> Stranded {
    let mut sink = [0u8; 4096];
    let mut eof = false;
    loop {
        let strands = toxics.borrow_and_update().strands();
        if !strands {
            return Stranded::Released;
        }
        tokio::select! {
            _ = stop.changed() => return Stranded::Stopped,
            changed = toxics.changed() => if changed.is_err() { return Stranded::Stopped },
            r = src.readable(), if !eof => {
                if r.is_err() {
                    eof = true;
                    continue;
                }
                match src.try_read(&mut sink) {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => eof = true,
                }
            }
        }
    }
}
