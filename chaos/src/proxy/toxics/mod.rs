//! One file per toxic, each a [`Stage`](super::stage::Stage). Semantics follow Toxiproxy's
//! `toxics/*.go`; `hold` (and the connection-level `peer_lost` and `refuse`, handled by the
//! proxy itself) are ours.

pub mod bandwidth;
pub mod hold;
pub mod latency;
pub mod limit_data;
pub mod reset_peer;
pub mod slicer;
pub mod slow_close;
pub mod timeout;

#[cfg(test)]
pub(crate) mod test_util {
    use bytes::Bytes;
    use tokio::time::Instant;

    use crate::proxy::stage::{Item, Next, Stage};
    use crate::rng::Rng;

    pub fn data(s: &str, at: Instant) -> Item {
        Item::Data(Bytes::copy_from_slice(s.as_bytes()), at)
    }

    /// Everything the stage releases at `now`, and when it wants to be polled next.
    pub fn ready(
        stage: &mut dyn Stage,
        now: Instant,
        rng: &mut Rng,
    ) -> (Vec<Item>, Option<Instant>) {
        let mut out = Vec::new();
        loop {
            match stage.poll(now, rng) {
                Next::Ready(item) => out.push(item),
                Next::At(at) => return (out, Some(at)),
                Next::Idle => return (out, None),
            }
        }
    }
}
