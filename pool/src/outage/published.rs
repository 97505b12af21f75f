//! What health reads of the outage state, published after every change into atomics (and
//! the last error into a mutex of its own), so a snapshot never waits for an attempt's
//! bookkeeping.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{OutageState, State};
use crate::health::OutageSnapshot;

/// What health reads, published after every change.
pub(super) struct Published {
    pub(super) origin: Instant,
    /// Nanoseconds since `origin` when the outage began, plus one; 0 outside an outage.
    pub(super) outage_since: AtomicU64,
    /// Nanoseconds plus one; 0 for none.
    pub(super) probe_latency: AtomicU64,
    pub(super) failures: AtomicU32,
    pub(super) ever_connected: AtomicBool,
    pub(super) last_error: Mutex<Option<Arc<str>>>,
}

fn plus_one(d: Duration) -> u64 {
    (d.as_nanos() as u64).saturating_add(1)
}

impl OutageState {
    /// Publishes what health reads; called with the state lock held, after a change.
    pub(super) fn publish(&self, s: &State) {
        let p = &self.published;
        p.outage_since.store(
            s.outage_since
                .map_or(0, |t| plus_one(t.saturating_duration_since(p.origin))),
            Ordering::Release,
        );
        p.probe_latency
            .store(s.last_probe_latency.map_or(0, plus_one), Ordering::Release);
        p.failures.store(s.consecutive_failures, Ordering::Release);
        p.ever_connected.store(s.ever_connected, Ordering::Release);
    }

    pub(super) fn publish_error(&self, error: &str) {
        *self
            .published
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(error));
    }

    /// What health reports, without taking the state lock.
    pub fn snapshot(&self, now: Instant) -> OutageSnapshot {
        let p = &self.published;
        let since = p.outage_since.load(Ordering::Acquire);
        let latency = p.probe_latency.load(Ordering::Acquire);
        OutageSnapshot {
            status: self.status(),
            last_error: p
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_deref()
                .map(str::to_string),
            last_probe_latency: (latency > 0).then(|| Duration::from_nanos(latency - 1)),
            consecutive_failures: p.failures.load(Ordering::Acquire),
            outage_duration: (since > 0)
                .then(|| now.saturating_duration_since(p.origin + Duration::from_nanos(since - 1))),
            ever_connected: p.ever_connected.load(Ordering::Acquire),
        }
    }
}
