//! `handshake_hang` (ours): new connections are accepted and then never answered, for as
//! long as the client keeps them (a server stuck in its startup handshake); live ones pass.
//! Connections hung while it was present stay hung after it is removed.

use serde::{Deserialize, Serialize};

use super::toxic_type::ToxicType;
use super::verdict::Verdict;

/// `handshake_hang`: new connections are accepted and never answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeHang;

impl ToxicType for HandshakeHang {
    const NAME: &'static str = "handshake_hang";
    const ATTRIBUTES: &'static [&'static str] = &[];
    const EXTENSION: bool = true;
    const ON_CONNECTIONS: bool = true;
    fn on_accept(&self) -> Verdict {
        Verdict::Hang
    }
}
