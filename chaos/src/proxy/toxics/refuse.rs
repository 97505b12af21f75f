//! `refuse` (ours): new connections are reset at once; live ones pass (a refusing server).

use serde::{Deserialize, Serialize};

use super::toxic_type::ToxicType;
use super::verdict::Verdict;

/// `refuse`: new connections are reset at once; live ones pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refuse;

impl ToxicType for Refuse {
    const NAME: &'static str = "refuse";
    const ATTRIBUTES: &'static [&'static str] = &[];
    const EXTENSION: bool = true;
    const ON_CONNECTIONS: bool = true;
    fn on_accept(&self) -> Verdict {
        Verdict::Reset
    }
}
