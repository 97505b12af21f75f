//! `hold` (ours, not in Toxiproxy): holds every chunk, and delivers all of it when the toxic
//! is removed: a network partition that heals without losing data.

use tokio::time::Instant;

use crate::proxy::stage::{Item, Next, Stage, Timed};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `hold` (ours): holds all data; delivers it when removed (a partition that heals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold;

impl ToxicType for Hold {
    const NAME: &'static str = "hold";
    const ATTRIBUTES: &'static [&'static str] = &[];
    const EXTENSION: bool = true;
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(HoldStage::default()))
    }
}

/// The hold stage.
#[derive(Default)]
pub(crate) struct HoldStage {
    queue: Timed,
}

impl Stage for HoldStage {
    fn push(&mut self, item: Item, now: Instant, _: &mut Rng) {
        self.queue.push(item, now);
    }
    fn poll(&mut self, _: Instant, _: &mut Rng) -> Next {
        Next::Idle
    }
    fn drain(&mut self, _removed: bool) -> Vec<Item> {
        self.queue.drain()
    }
    fn buffered(&self) -> usize {
        self.queue.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::test_util::{data, ready};

    #[tokio::test(start_paused = true)]
    async fn holds_until_removed() {
        let mut rng = Rng::new(1);
        let mut s = HoldStage::default();
        let t0 = Instant::now();
        s.push(data("a", t0), t0, &mut rng);
        assert_eq!(
            ready(&mut s, t0 + std::time::Duration::from_secs(60), &mut rng),
            (vec![], None)
        );
        assert_eq!(s.drain(true), vec![data("a", t0)]);
    }
}
