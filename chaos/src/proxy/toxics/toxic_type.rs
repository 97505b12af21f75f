//! What every toxic type is ([`ToxicType`]): its name and attributes in Toxiproxy's API, and
//! what it does, a [`Stage`] on data or a [`Verdict`] on whole connections.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::verdict::Verdict;
use crate::proxy::stage::Stage;

/// The largest attribute value accepted: ten years in milliseconds. Anything larger cannot be
/// applied (a delay past it overflows the clock), so it is refused rather than wrapped.
pub const MAX_ATTRIBUTE: u64 = 10 * 365 * 24 * 3600 * 1000;

/// One toxic type: its name and attributes in Toxiproxy's API, and what it does.
pub trait ToxicType:
    Serialize + DeserializeOwned + Clone + PartialEq + Eq + std::fmt::Debug + Send + Sync
{
    /// The `type` in the API.
    const NAME: &'static str;
    /// The attribute names, each a non-negative integer (missing means 0, as in Toxiproxy).
    const ATTRIBUTES: &'static [&'static str];
    /// Ours, not Toxiproxy's.
    const EXTENSION: bool = false;
    /// Acts on whole connections (a [`Verdict`]) rather than on data (a [`Stage`]).
    const ON_CONNECTIONS: bool = false;

    /// The stage that runs this toxic on one direction of one connection (data toxics).
    fn stage(&self) -> Option<Box<dyn Stage>> {
        None
    }
    /// What happens to a connection accepted while it is present (connection-level toxics).
    fn on_accept(&self) -> Verdict {
        Verdict::Pass
    }
    /// What happens to the connections open when it is added (connection-level toxics).
    fn on_open(&self) -> Verdict {
        Verdict::Pass
    }

    /// Builds the toxic from its attributes: unknown attributes and values that are not
    /// non-negative integers are errors that say what is valid.
    fn from_attributes(attributes: &Map<String, Value>) -> Result<Self, String> {
        for (key, value) in attributes {
            if !Self::ATTRIBUTES.contains(&key.as_str()) {
                return Err(format!(
                    "unknown attribute `{key}` for toxic type `{}`; its attributes are: {}",
                    Self::NAME,
                    if Self::ATTRIBUTES.is_empty() {
                        "none".to_string()
                    } else {
                        Self::ATTRIBUTES.join(", ")
                    }
                ));
            }
            if !value.is_null() && value.as_u64().is_none() {
                return Err(format!(
                    "attribute `{key}` must be a non-negative integer, got {value}"
                ));
            }
            if value.as_u64().is_some_and(|v| v > MAX_ATTRIBUTE) {
                return Err(format!(
                    "attribute `{key}` is {value}, more than the proxy can apply: at most {MAX_ATTRIBUTE} (ten years in milliseconds)"
                ));
            }
        }
        let body = if Self::ATTRIBUTES.is_empty() {
            Value::Null
        } else {
            Value::Object(
                attributes
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        serde_json::from_value(body)
            .map_err(|e| format!("bad attributes for `{}`: {e}", Self::NAME))
    }

    /// The attributes as JSON, every one present.
    fn to_attributes(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}
