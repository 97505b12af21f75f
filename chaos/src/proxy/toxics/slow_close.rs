//! `slow_close`: data passes at once; the close is delayed by `delay` ms.

use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::stage::{Item, Stage, Timed, released_from_queue};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `slow_close`: Delays the close by `delay` ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlowClose {
    /// ms
    pub delay: u64,
}

impl ToxicType for SlowClose {
    const NAME: &'static str = "slow_close";
    const ATTRIBUTES: &'static [&'static str] = &["delay"];
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(SlowCloseStage::new(self.delay)))
    }
}

/// The slow_close stage.
pub(crate) struct SlowCloseStage {
    delay: Duration,
    queue: Timed,
}

impl SlowCloseStage {
    /// `delay` in ms.
    pub(crate) fn new(delay: u64) -> Self {
        Self {
            delay: Duration::from_millis(delay),
            queue: Timed::default(),
        }
    }
}

impl Stage for SlowCloseStage {
    fn push(&mut self, item: Item, now: Instant, _: &mut Rng) {
        let at = match item {
            Item::Close(_) => now + self.delay,
            Item::Data(..) => now,
        };
        let at = self.queue.last_at().map_or(at, |last| at.max(last));
        self.queue.push(item, at);
    }
    released_from_queue!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stage::CloseKind;
    use crate::proxy::toxics::test_util::{data, ready};

    #[tokio::test(start_paused = true)]
    async fn data_passes_close_waits() {
        let mut rng = Rng::new(1);
        let mut s = SlowCloseStage::new(500);
        let t0 = Instant::now();
        s.push(data("a", t0), t0, &mut rng);
        s.push(Item::Close(CloseKind::Fin), t0, &mut rng);
        let (out, at) = ready(&mut s, t0, &mut rng);
        assert_eq!(out, vec![data("a", t0)]);
        assert_eq!(at, Some(t0 + Duration::from_millis(500)));
        assert_eq!(
            ready(&mut s, at.unwrap(), &mut rng).0,
            vec![Item::Close(CloseKind::Fin)]
        );
    }
}
