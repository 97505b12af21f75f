//! Every toxic, one file each. Semantics follow Toxiproxy's `toxics/*.go`; `hold`,
//! `peer_lost`, `refuse` and `handshake_hang` are ours.
//!
//! A file holds the toxic's attributes (a serde struct: its JSON form in the API) and what
//! it does, through [`ToxicType`]: a data toxic gives a [`Stage`] for one direction of a
//! connection, a connection-level toxic gives a [`Verdict`] for whole connections.
//!
//! # Adding a toxic
//! Write `toxics/<name>.rs` with a struct implementing [`ToxicType`], and add one line
//! `Variant => module,` to the `toxics!` list below. The list makes [`ToxicKind`], its
//! parsing from the API's JSON, its JSON form and its dispatch, so nothing else changes.

use serde_json::{Map, Value};

use super::stage::Stage;
pub use toxic_type::{MAX_ATTRIBUTE, ToxicType};
pub use verdict::Verdict;

pub mod toxic_type;
pub mod verdict;

macro_rules! toxics {
    ($($variant:ident => $module:ident,)*) => {
        $(pub mod $module;)*
        $(pub use $module::$variant;)*

        /// A toxic type and its attributes. Times are in milliseconds unless noted; sizes in
        /// bytes. Each variant's struct documents its toxic.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum ToxicKind {
            $(
                #[doc = concat!("`", stringify!($module), "`: see [`", stringify!($variant), "`].")]
                $variant($variant),
            )*
        }

        $(
            impl From<$variant> for ToxicKind {
                fn from(t: $variant) -> Self {
                    ToxicKind::$variant(t)
                }
            }
        )*

        /// Every toxic type name, in the order of the list.
        pub const TYPES: &[&str] = &[$(<$variant as ToxicType>::NAME),*];

        impl ToxicKind {
            /// The type name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(ToxicKind::$variant(_) => <$variant as ToxicType>::NAME,)*
                }
            }

            /// Builds a toxic from its type name and attributes (missing attributes are 0, as
            /// in Toxiproxy). Unknown types, unknown attributes and negative or non-integer
            /// values are errors that say what is valid.
            pub fn parse(type_name: &str, attributes: &Map<String, Value>) -> Result<Self, String> {
                match type_name {
                    $(
                        <$variant as ToxicType>::NAME =>
                            <$variant as ToxicType>::from_attributes(attributes).map(ToxicKind::$variant),
                    )*
                    _ => Err(format!(
                        "invalid toxic type `{type_name}`: expected one of {}",
                        TYPES.join(", ")
                    )),
                }
            }

            /// The attributes as JSON, every one present.
            pub fn attributes(&self) -> Map<String, Value> {
                match self {
                    $(ToxicKind::$variant(t) => t.to_attributes(),)*
                }
            }

            /// Whether this toxic acts on connections rather than on data.
            pub fn stage_free(&self) -> bool {
                match self {
                    $(ToxicKind::$variant(_) => <$variant as ToxicType>::ON_CONNECTIONS,)*
                }
            }

            /// Ours, not Toxiproxy's.
            pub fn is_extension(&self) -> bool {
                match self {
                    $(ToxicKind::$variant(_) => <$variant as ToxicType>::EXTENSION,)*
                }
            }

            /// The stage that runs this toxic on one direction of one connection; `None` for
            /// connection-level toxics.
            pub(crate) fn stage(&self) -> Option<Box<dyn Stage>> {
                match self {
                    $(ToxicKind::$variant(t) => t.stage(),)*
                }
            }

            /// What happens to a connection accepted while it is present.
            pub fn on_accept(&self) -> Verdict {
                match self {
                    $(ToxicKind::$variant(t) => t.on_accept(),)*
                }
            }

            /// What happens to the connections open when it is added.
            pub fn on_open(&self) -> Verdict {
                match self {
                    $(ToxicKind::$variant(t) => t.on_open(),)*
                }
            }
        }
    };
}

toxics! {
    Latency => latency,
    Bandwidth => bandwidth,
    SlowClose => slow_close,
    Timeout => timeout,
    ResetPeer => reset_peer,
    Slicer => slicer,
    LimitData => limit_data,
    Hold => hold,
    PeerLost => peer_lost,
    Refuse => refuse,
    HandshakeHang => handshake_hang,
}

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
