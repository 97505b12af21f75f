//! What the fake database counts of connection attempts: how many are in flight, the most
//! ever in flight at once, and when each started.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use super::FakeDb;

/// An attempt in flight, counted until dropped.
pub(super) struct AttemptInFlight(Arc<FakeDb>);

impl Drop for AttemptInFlight {
    fn drop(&mut self) {
        self.0.connects_in_flight.fetch_sub(1, SeqCst);
    }
}

impl FakeDb {
    /// Closes every connection attempt that hangs now, as a proxy healing a blackhole does
    /// (Toxiproxy closes the connections a removed `timeout` toxic held): they fail with a
    /// reset. Attempts that hang after this call are not affected.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use pool::testing::{FakeDb, Gate};
    /// let db = FakeDb::new();
    /// db.set_connect(Gate::Hang);
    /// let attempt = tokio::spawn({
    ///     let connector = db.connector();
    ///     async move { pool::Connector::connect(&connector).await.is_err() }
    /// });
    /// tokio::task::yield_now().await;
    /// db.close_hung_attempts();
    /// assert!(attempt.await.unwrap(), "the hung attempt failed");
    /// # }
    /// ```
    pub fn close_hung_attempts(&self) {
        self.hung_cut.notify_waiters();
    }

    /// Resolves when [`close_hung_attempts`](Self::close_hung_attempts) is called.
    pub(super) fn hung_cut(&self) -> tokio::sync::futures::Notified<'_> {
        self.hung_cut.notified()
    }

    /// Connection attempts in flight now: started, and neither finished nor dropped (an
    /// attempt's socket is open until then, and a real server may hold a session for it).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let db = pool::testing::FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// assert_eq!(db.connects_in_flight(), 0);
    /// assert_eq!(db.peak_connects_in_flight(), 1, "start-up opens one at a time");
    /// # }
    /// ```
    pub fn connects_in_flight(&self) -> u64 {
        self.connects_in_flight.load(SeqCst)
    }

    /// The most connection attempts that were ever in flight at once.
    ///
    /// # Examples
    /// ```
    /// let db = pool::testing::FakeDb::new();
    /// assert_eq!(db.peak_connects_in_flight(), 0);
    /// ```
    pub fn peak_connects_in_flight(&self) -> u64 {
        self.peak_connects_in_flight.load(SeqCst)
    }

    /// When each connection attempt started, oldest first (tokio's clock).
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let db = pool::testing::FakeDb::new();
    /// let pool = pool::Pool::connect_with(pool::PoolConfig::default(), db.connector()).await.unwrap();
    /// assert_eq!(db.connect_starts().len(), 2);
    /// # }
    /// ```
    pub fn connect_starts(&self) -> Vec<tokio::time::Instant> {
        self.connect_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts an attempt in flight until the returned guard drops.
    pub(super) fn attempt_started(self: &Arc<Self>) -> AttemptInFlight {
        self.connect_attempts.fetch_add(1, SeqCst);
        self.connect_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tokio::time::Instant::now());
        let now = self.connects_in_flight.fetch_add(1, SeqCst) + 1;
        self.peak_connects_in_flight.fetch_max(now, SeqCst);
        AttemptInFlight(Arc::clone(self))
    }
}
