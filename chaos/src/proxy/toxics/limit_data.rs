//! `limit_data`: passes `bytes` bytes in total, then closes the connection.

use tokio::time::Instant;

use crate::proxy::stage::{CloseKind, Item, Stage, Timed, released_from_queue};
use crate::rng::Rng;
use super::toxic_type::ToxicType;
use serde::{Deserialize, Serialize};

/// `limit_data`: Passes `bytes` bytes, then closes the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitData {
    /// bytes
    pub bytes: u64,
}

impl ToxicType for LimitData {
    const NAME: &'static str = "limit_data";
    const ATTRIBUTES: &'static [&'static str] = &["bytes"];
    fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(LimitDataStage::new(self.bytes)))
    }
}

/// The limit_data stage.
pub(crate) struct LimitDataStage {
    remaining: u64,
    closed: bool,
    queue: Timed,
}

impl LimitDataStage {
    /// `bytes` to pass before closing.
    pub(crate) fn new(bytes: u64) -> Self {
        Self {
            remaining: bytes,
            closed: false,
            queue: Timed::default(),
        }
    }
}

impl Stage for LimitDataStage {
    fn push(&mut self, item: Item, now: Instant, _: &mut Rng) {
        if self.closed {
            return;
        }
        match item {
            Item::Data(mut bytes, at) => {
                bytes.truncate(self.remaining.min(bytes.len() as u64) as usize);
                self.remaining -= bytes.len() as u64;
                if !bytes.is_empty() {
                    self.queue.push(Item::Data(bytes, at), now);
                }
                if self.remaining == 0 {
                    self.closed = true;
                    self.queue.push(Item::Close(CloseKind::Fin), now);
                }
            }
            close => {
                self.closed = true;
                self.queue.push(close, now);
            }
        }
    }
    released_from_queue!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::toxics::test_util::{data, ready};

    #[tokio::test(start_paused = true)]
    async fn passes_the_limit_then_closes() {
        let mut rng = Rng::new(1);
        let mut s = LimitDataStage::new(5);
        let t0 = Instant::now();
        s.push(data("abc", t0), t0, &mut rng);
        s.push(data("defg", t0), t0, &mut rng);
        s.push(data("h", t0), t0, &mut rng);
        let (out, _) = ready(&mut s, t0, &mut rng);
        assert_eq!(
            out,
            vec![data("abc", t0), data("de", t0), Item::Close(CloseKind::Fin)]
        );
    }
}
