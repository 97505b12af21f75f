//! `slicer`: slices each chunk into pieces of about `average_size` ± `size_variation` bytes,
//! released `delay` µs apart (Toxiproxy's recursive halving, so sizes vary evenly).

use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::stage::{Item, Stage, Timed, released_from_queue};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `slicer`: Slices data into pieces of `average_size` ± `size_variation` bytes, `delay` µs apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Slicer {
    /// bytes
    pub average_size: u64,
    /// bytes
    pub size_variation: u64,
    /// µs between slices
    pub delay: u64,
}

impl ToxicType for Slicer {
    const NAME: &'static str = "slicer";
    const ATTRIBUTES: &'static [&'static str] = &["average_size", "size_variation", "delay"];
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(SlicerStage::new(self.average_size, self.size_variation, self.delay)))
    }
}

/// The slicer stage.
pub(crate) struct SlicerStage {
    average: usize,
    variation: usize,
    delay: Duration,
    queue: Timed,
}

impl SlicerStage {
    /// Sizes in bytes, `delay` in µs. A variation not below the average is clamped under it.
    pub(crate) fn new(average_size: u64, size_variation: u64, delay: u64) -> Self {
        let average = average_size as usize;
        Self {
            average,
            variation: (size_variation as usize).min(average.saturating_sub(1)),
            delay: Duration::from_micros(delay),
            queue: Timed::default(),
        }
    }

    fn cut(&self, start: usize, end: usize, rng: &mut Rng, cuts: &mut Vec<usize>) {
        if (end - start).saturating_sub(self.average) <= self.variation || end - start <= 1 {
            cuts.push(end);
            return;
        }
        let v = self.variation as i64;
        let offset = if v > 0 {
            rng.below(2 * v as u64) as i64 - v
        } else {
            0
        };
        let mid = ((start + (end - start) / 2) as i64 + offset)
            .clamp(start as i64 + 1, end as i64 - 1) as usize;
        self.cut(start, mid, rng, cuts);
        self.cut(mid, end, rng, cuts);
    }
}

impl Stage for SlicerStage {
    fn push(&mut self, item: Item, now: Instant, rng: &mut Rng) {
        let mut at = self.queue.last_at().map_or(now, |last| last.max(now));
        match item {
            Item::Data(mut bytes, read_at) if self.average > 0 && !bytes.is_empty() => {
                let mut cuts = Vec::new();
                self.cut(0, bytes.len(), rng, &mut cuts);
                let mut taken = 0;
                for (i, end) in cuts.into_iter().enumerate() {
                    if i > 0 {
                        at += self.delay;
                    }
                    self.queue
                        .push(Item::Data(bytes.split_to(end - taken), read_at), at);
                    taken = end;
                }
            }
            other => self.queue.push(other, at),
        }
    }
    released_from_queue!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::test_util::ready;
    use bytes::Bytes;

    #[tokio::test(start_paused = true)]
    async fn slices_keep_every_byte_in_order() {
        let mut rng = Rng::new(3);
        let mut s = SlicerStage::new(10, 4, 100);
        let t0 = Instant::now();
        let payload: Vec<u8> = (0..=255).collect();
        s.push(Item::Data(Bytes::from(payload.clone()), t0), t0, &mut rng);
        let (out, _) = ready(&mut s, t0 + Duration::from_secs(1), &mut rng);
        assert!(out.len() > 10);
        let mut joined = Vec::new();
        for item in &out {
            let Item::Data(b, _) = item else { panic!() };
            assert!(b.len() <= 14 + 1, "slice of {}", b.len());
            joined.extend_from_slice(b);
        }
        assert_eq!(joined, payload);
        let (first, at) = ready(&mut SlicerStage::new(10, 4, 100), t0, &mut rng);
        assert!(first.is_empty() && at.is_none());
    }
}
