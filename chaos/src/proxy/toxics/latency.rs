//! `latency`: each chunk is delayed by `latency` ± `jitter` ms, measured from the time it was
//! read, so back-to-back data does not pile up delay and bulk throughput is not capped.

use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::stage::{Item, Stage, Timed, released_from_queue};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `latency`: Delays each chunk by `latency` ± `jitter` ms, measured from when it was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    /// ms added to each chunk
    pub latency: u64,
    /// ms of random variation, either way
    pub jitter: u64,
}

impl ToxicType for Latency {
    const NAME: &'static str = "latency";
    const ATTRIBUTES: &'static [&'static str] = &["latency", "jitter"];
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(LatencyStage::new(self.latency, self.jitter)))
    }
}

/// The latency stage.
pub(crate) struct LatencyStage {
    latency: u64,
    jitter: u64,
    queue: Timed,
}

impl LatencyStage {
    /// `latency` and `jitter` in ms.
    pub(crate) fn new(latency: u64, jitter: u64) -> Self {
        Self {
            latency,
            jitter,
            queue: Timed::default(),
        }
    }

    fn delay(&self, rng: &mut Rng) -> Duration {
        let mut ms = self.latency as i64;
        if self.jitter > 0 {
            ms += rng.below(self.jitter * 2) as i64 - self.jitter as i64;
        }
        Duration::from_millis(ms.max(0) as u64)
    }
}

impl Stage for LatencyStage {
    fn push(&mut self, item: Item, now: Instant, rng: &mut Rng) {
        let at = match &item {
            Item::Data(_, read_at) => *read_at + self.delay(rng),
            Item::Close(_) => now,
        };
        // Never overtake the chunk ahead (jitter could otherwise reorder the stream).
        let at = self.queue.last_at().map_or(at, |last| at.max(last));
        self.queue.push(item, at);
    }
    released_from_queue!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::test_util::{data, ready};

    #[tokio::test(start_paused = true)]
    async fn delays_from_read_time_without_piling_up() {
        let mut rng = Rng::new(1);
        let mut s = LatencyStage::new(100, 0);
        let t0 = Instant::now();
        s.push(data("a", t0), t0, &mut rng);
        s.push(
            data("b", t0 + Duration::from_millis(1)),
            t0 + Duration::from_millis(50),
            &mut rng,
        );
        let (out, at) = ready(&mut s, t0 + Duration::from_millis(99), &mut rng);
        assert!(out.is_empty());
        assert_eq!(at, Some(t0 + Duration::from_millis(100)));
        let (out, _) = ready(&mut s, t0 + Duration::from_millis(101), &mut rng);
        assert_eq!(
            out,
            vec![data("a", t0), data("b", t0 + Duration::from_millis(1))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_in_bounds_and_in_order() {
        let mut rng = Rng::new(7);
        let mut s = LatencyStage::new(50, 20);
        let t0 = Instant::now();
        for i in 0..100 {
            s.push(data(&i.to_string(), t0), t0, &mut rng);
        }
        let (early, _) = ready(&mut s, t0 + Duration::from_millis(29), &mut rng);
        assert!(early.is_empty());
        let (all, _) = ready(&mut s, t0 + Duration::from_millis(70), &mut rng);
        assert_eq!(all.len(), 100);
        assert_eq!(all[0], data("0", t0));
        assert_eq!(all[99], data("99", t0));
    }

    #[tokio::test(start_paused = true)]
    async fn removal_keeps_the_data() {
        let mut rng = Rng::new(1);
        let mut s = LatencyStage::new(1000, 0);
        let t0 = Instant::now();
        s.push(data("x", t0), t0, &mut rng);
        assert_eq!(s.drain(true), vec![data("x", t0)]);
    }
}
