//! `timeout`: drops all data, and closes the connection once `timeout` ms pass without data
//! (never when 0). A close from the peer passes at once. Removing the toxic closes the
//! connection, as Toxiproxy's `Cleanup` does.

use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::stage::{CloseKind, Item, Next, Stage};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `timeout`: Drops all data; closes the connection after `timeout` ms without data (never when 0). Removing it closes the affected connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeout {
    /// ms; 0 never closes
    pub timeout: u64,
}

impl ToxicType for Timeout {
    const NAME: &'static str = "timeout";
    const ATTRIBUTES: &'static [&'static str] = &["timeout"];
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(TimeoutStage::new(self.timeout)))
    }
}

/// The timeout stage.
pub(crate) struct TimeoutStage {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    pending_close: bool,
    done: bool,
}

impl TimeoutStage {
    /// `timeout` in ms; 0 never closes.
    pub(crate) fn new(timeout: u64) -> Self {
        Self {
            timeout: (timeout > 0).then(|| Duration::from_millis(timeout)),
            deadline: None,
            pending_close: false,
            done: false,
        }
    }
}

impl Stage for TimeoutStage {
    fn push(&mut self, item: Item, now: Instant, _: &mut Rng) {
        match item {
            Item::Data(..) => self.deadline = self.timeout.map(|t| now + t),
            Item::Close(_) => self.pending_close = true,
        }
    }
    fn poll(&mut self, now: Instant, _: &mut Rng) -> Next {
        if self.done {
            return Next::Idle;
        }
        if self.pending_close {
            self.done = true;
            return Next::Ready(Item::Close(CloseKind::Fin));
        }
        let Some(timeout) = self.timeout else {
            return Next::Idle;
        };
        let deadline = *self.deadline.get_or_insert(now + timeout);
        if now >= deadline {
            self.done = true;
            Next::Ready(Item::Close(CloseKind::Fin))
        } else {
            Next::At(deadline)
        }
    }
    fn drain(&mut self, removed: bool) -> Vec<Item> {
        if removed && !self.done {
            self.done = true;
            vec![Item::Close(CloseKind::Fin)]
        } else {
            Vec::new()
        }
    }
    fn buffered(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::test_util::{data, ready};

    #[tokio::test(start_paused = true)]
    async fn drops_data_and_closes_after_silence() {
        let mut rng = Rng::new(1);
        let mut s = TimeoutStage::new(100);
        let t0 = Instant::now();
        assert_eq!(
            ready(&mut s, t0, &mut rng),
            (vec![], Some(t0 + Duration::from_millis(100)))
        );
        let t1 = t0 + Duration::from_millis(80);
        s.push(data("x", t1), t1, &mut rng);
        let (out, at) = ready(&mut s, t1, &mut rng);
        assert!(out.is_empty(), "data is dropped");
        assert_eq!(
            at,
            Some(t1 + Duration::from_millis(100)),
            "silence restarts the timer"
        );
        let (out, _) = ready(&mut s, t1 + Duration::from_millis(100), &mut rng);
        assert_eq!(out, vec![Item::Close(CloseKind::Fin)]);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_never_closes_but_removal_does() {
        let mut rng = Rng::new(1);
        let mut s = TimeoutStage::new(0);
        let t0 = Instant::now();
        assert_eq!(
            ready(&mut s, t0 + Duration::from_secs(3600), &mut rng),
            (vec![], None)
        );
        assert!(s.drain(false).is_empty(), "an update does not close");
        assert_eq!(s.drain(true), vec![Item::Close(CloseKind::Fin)]);
    }
}
