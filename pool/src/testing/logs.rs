//! [`LogCapture`]: what the pool logs, kept in memory for a test to read.

use std::sync::{Arc, Mutex};

/// Log lines captured while its guard lives, formatted as `tracing_subscriber::fmt` writes
/// them (level, target, message, fields), without colours.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let (log, _guard) = pool::testing::LogCapture::start();
/// let db = pool::testing::FakeDb::new();
/// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
/// pool.shutdown(std::time::Duration::from_secs(1)).await;
/// assert!(log.text().contains("pool shut down cleanly"));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::fmt::Debug for LogCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCapture")
            .field("bytes", &self.lock().len())
            .finish()
    }
}

impl LogCapture {
    /// Captures every event (debug and up) on this thread until the guard is dropped.
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let writer = log.clone();
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish(),
        );
        (log, guard)
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
