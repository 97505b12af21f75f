//! `bandwidth`: passes data at `rate` KB/s (1 KB = 1000 bytes); 0 means unlimited. Chunks
//! larger than 100 ms worth of data are split and released in 100 ms steps, as Toxiproxy does.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::proxy::stage::{Item, Stage, Timed, released_from_queue};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `bandwidth`: Limits the rate to `rate` KB/s (1 KB = 1000 bytes); 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bandwidth {
    /// KB/s (1 KB = 1000 bytes); 0 means unlimited
    pub rate: u64,
}

impl ToxicType for Bandwidth {
    const NAME: &'static str = "bandwidth";
    const ATTRIBUTES: &'static [&'static str] = &["rate"];
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(BandwidthStage::new(self.rate)))
    }
}

/// The bandwidth stage.
pub(crate) struct BandwidthStage {
    rate: u64,
    next_free: Option<Instant>,
    queue: Timed,
}

impl BandwidthStage {
    /// `rate` in KB/s.
    pub(crate) fn new(rate: u64) -> Self {
        Self {
            rate,
            next_free: None,
            queue: Timed::default(),
        }
    }

    fn cost(&self, bytes: usize) -> Duration {
        // rate KB/s = rate bytes per ms.
        Duration::from_nanos(bytes as u64 * 1_000_000 / self.rate)
    }
}

impl Stage for BandwidthStage {
    fn push(&mut self, item: Item, now: Instant, _: &mut Rng) {
        let start = self.next_free.map_or(now, |t| t.max(now));
        match item {
            Item::Data(bytes, read_at) if self.rate > 0 => {
                let step = (self.rate * 100) as usize; // bytes per 100 ms
                let mut at = start;
                let mut rest: Bytes = bytes;
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(step));
                    at += self.cost(piece.len());
                    self.queue.push(Item::Data(piece, read_at), at);
                }
                self.next_free = Some(at);
            }
            other => self.queue.push(other, start),
        }
    }
    released_from_queue!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::test_util::ready;

    #[tokio::test(start_paused = true)]
    async fn paces_at_the_rate_in_100ms_steps() {
        let mut rng = Rng::new(1);
        let mut s = BandwidthStage::new(10); // 10 KB/s: 1000 bytes per 100 ms
        let t0 = Instant::now();
        s.push(Item::Data(Bytes::from(vec![0u8; 2500]), t0), t0, &mut rng);
        let (out, at) = ready(&mut s, t0, &mut rng);
        assert!(out.is_empty());
        assert_eq!(at, Some(t0 + Duration::from_millis(100)));
        let (out, _) = ready(&mut s, t0 + Duration::from_millis(200), &mut rng);
        assert_eq!(out.iter().map(Item::len).sum::<usize>(), 2000);
        let (out, at) = ready(&mut s, t0 + Duration::from_millis(249), &mut rng);
        assert!(out.is_empty());
        assert_eq!(at, Some(t0 + Duration::from_millis(250)));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_rate_is_unlimited() {
        let mut rng = Rng::new(1);
        let mut s = BandwidthStage::new(0);
        let t0 = Instant::now();
        s.push(
            Item::Data(Bytes::from(vec![0u8; 1 << 20]), t0),
            t0,
            &mut rng,
        );
        assert_eq!(ready(&mut s, t0, &mut rng).0.len(), 1);
    }
}
