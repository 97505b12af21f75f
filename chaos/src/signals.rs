//! The signals that end a run early: `SIGINT` (Ctrl-C), `SIGTERM` and `SIGHUP` (a closed
//! terminal). [`Signals::install`] replaces their default action (dying on the spot, leaving
//! the throwaway cluster and its directory behind) at the start of the process; a run then
//! waits for [`Signals::recv`] beside its work, cleans up, writes its partial report and exits
//! with the shell's code for the signal (128 + its number).

use std::fmt;

/// Which signal ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// `SIGINT`: Ctrl-C.
    Int,
    /// `SIGTERM`: `kill`, a service manager, a CI timeout.
    Term,
    /// `SIGHUP`: the terminal closed.
    Hup,
}

impl Interrupt {
    /// `SIGINT`, `SIGTERM` or `SIGHUP`.
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
            Interrupt::Hup => "SIGHUP",
        }
    }

    /// The exit status a shell gives a process killed by the signal: 130, 143 or 129.
    pub fn exit_code(self) -> u8 {
        128 + match self {
            Interrupt::Int => libc::SIGINT,
            Interrupt::Term => libc::SIGTERM,
            Interrupt::Hup => libc::SIGHUP,
        } as u8
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The three signals, listened for from [`install`](Self::install) on: one that arrives
/// while nobody waits is kept for the next [`recv`](Self::recv).
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signals(SIGINT, SIGTERM, SIGHUP)")
    }
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime).
    ///
    /// # Errors
    /// The handlers could not be installed.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the three to arrive.
    pub async fn recv(&mut self) -> Interrupt {
        tokio::select! {
            _ = self.int.recv() => Interrupt::Int,
            _ = self.term.recv() => Interrupt::Term,
            _ = self.hup.recv() => Interrupt::Hup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(Interrupt::Int.exit_code(), 130);
        assert_eq!(Interrupt::Term.exit_code(), 143);
        assert_eq!(Interrupt::Hup.exit_code(), 129);
        assert_eq!(Interrupt::Hup.to_string(), "SIGHUP");
    }
}
