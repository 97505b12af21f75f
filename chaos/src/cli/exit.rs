//! How a command's error becomes an exit status, and the signal that ended it.

/// An error with its own exit status.
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

impl Exit {
    /// The exit status of a command's error: its own, or 1.
    pub fn status_of(e: &anyhow::Error) -> u8 {
        e.downcast_ref::<Exit>().map_or(1, |Exit(code, _)| *code)
    }
}

/// The next signal, remembered in `fired` so the exit status can name it.
pub(crate) async fn recorded(
    signals: &mut crate::signals::Signals,
    fired: &std::sync::Mutex<Option<crate::signals::Interrupt>>,
) -> crate::signals::Interrupt {
    let signal = signals.recv().await;
    *fired.lock().unwrap_or_else(|e| e.into_inner()) = Some(signal);
    signal
}
