//! `reset_peer`: the first data after the toxic is added (or the peer's close) starts a timer
//! of `timeout` ms, after which the connection is reset (RST, unsent data discarded). Data is
//! dropped meanwhile, as in Toxiproxy.

use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::stage::{CloseKind, Item, Next, Stage};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `reset_peer`: On the first data after it is added, waits `timeout` ms, then resets the connection (RST).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResetPeer {
    /// ms
    pub timeout: u64,
}

impl ToxicType for ResetPeer {
    const NAME: &'static str = "reset_peer";
    const ATTRIBUTES: &'static [&'static str] = &["timeout"];
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(ResetPeerStage::new(self.timeout)))
    }
}

/// The reset_peer stage.
pub(crate) struct ResetPeerStage {
    timeout: Duration,
    fire_at: Option<Instant>,
    done: bool,
}

impl ResetPeerStage {
    /// `timeout` in ms.
    pub(crate) fn new(timeout: u64) -> Self {
        Self {
            timeout: Duration::from_millis(timeout),
            fire_at: None,
            done: false,
        }
    }
}

impl Stage for ResetPeerStage {
    fn push(&mut self, _item: Item, now: Instant, _: &mut Rng) {
        self.fire_at.get_or_insert(now + self.timeout);
    }
    fn poll(&mut self, now: Instant, _: &mut Rng) -> Next {
        match self.fire_at {
            _ if self.done => Next::Idle,
            None => Next::Idle,
            Some(at) if now >= at => {
                self.done = true;
                Next::Ready(Item::Close(CloseKind::Reset))
            }
            Some(at) => Next::At(at),
        }
    }
    fn drain(&mut self, _removed: bool) -> Vec<Item> {
        Vec::new()
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
    async fn resets_after_timeout_from_first_data() {
        let mut rng = Rng::new(1);
        let mut s = ResetPeerStage::new(50);
        let t0 = Instant::now();
        assert_eq!(
            ready(&mut s, t0 + Duration::from_secs(10), &mut rng),
            (vec![], None),
            "idle until data"
        );
        s.push(data("q", t0), t0, &mut rng);
        assert_eq!(
            ready(&mut s, t0, &mut rng),
            (vec![], Some(t0 + Duration::from_millis(50)))
        );
        assert_eq!(
            ready(&mut s, t0 + Duration::from_millis(50), &mut rng).0,
            vec![Item::Close(CloseKind::Reset)]
        );
    }
}
