//! `peer_lost` (ours): the connections open when it is added go silent (data dropped, never
//! closed) until it is removed, then are reset; new connections pass (a crashed host, or
//! lost NAT state).

use serde::{Deserialize, Serialize};

use super::toxic_type::ToxicType;
use super::verdict::Verdict;

/// `peer_lost`: the connections open when it is added go silent until it is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLost;

impl ToxicType for PeerLost {
    const NAME: &'static str = "peer_lost";
    const ATTRIBUTES: &'static [&'static str] = &[];
    const EXTENSION: bool = true;
    const ON_CONNECTIONS: bool = true;
    fn on_open(&self) -> Verdict {
        Verdict::Strand
    }
}
