//! Toxics: their types, attributes and JSON form, as in Toxiproxy 2.x.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::stage::Stage;
use super::toxics;

/// Which direction a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client to server.
    Upstream,
    /// Server to client (Toxiproxy's default).
    Downstream,
}

impl Stream {
    /// `upstream` or `downstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// A toxic type and its attributes. Times are in milliseconds unless noted; sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToxicKind {
    /// Delays each chunk by `latency` ± `jitter` ms, measured from when it was read.
    Latency {
        /// ms
        latency: u64,
        /// ms
        jitter: u64,
    },
    /// Limits the rate to `rate` KB/s (1 KB = 1000 bytes); 0 means unlimited.
    Bandwidth {
        /// KB/s
        rate: u64,
    },
    /// Delays the close by `delay` ms.
    SlowClose {
        /// ms
        delay: u64,
    },
    /// Drops all data; closes the connection after `timeout` ms without data (never when 0).
    /// Removing it closes the affected connections.
    Timeout {
        /// ms
        timeout: u64,
    },
    /// On the first data after it is added, waits `timeout` ms, then resets the connection (RST).
    ResetPeer {
        /// ms
        timeout: u64,
    },
    /// Slices data into pieces of `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer {
        /// bytes
        average_size: u64,
        /// bytes
        size_variation: u64,
        /// µs
        delay: u64,
    },
    /// Passes `bytes` bytes, then closes the connection.
    LimitData {
        /// bytes
        bytes: u64,
    },
    /// Ours: holds all data; delivers it when removed (a partition that heals).
    Hold,
    /// Ours: connections open when it is added go silent (data dropped, never closed) until it
    /// is removed, then are reset; new connections pass (a crashed host, or lost NAT state).
    PeerLost,
    /// Ours: new connections are reset at once; live ones pass (a refusing server).
    Refuse,
    /// Ours: new connections are accepted and then never answered, for as long as the client
    /// keeps them (a server stuck in its startup handshake); live ones pass. Connections hung
    /// while it was present stay hung after it is removed.
    HandshakeHang,
}

/// The names of our extensions, not in Toxiproxy.
pub const EXTENSIONS: [&str; 4] = ["hold", "peer_lost", "refuse", "handshake_hang"];

impl ToxicKind {
    /// The type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
            ToxicKind::Hold => "hold",
            ToxicKind::PeerLost => "peer_lost",
            ToxicKind::Refuse => "refuse",
            ToxicKind::HandshakeHang => "handshake_hang",
        }
    }

    fn attribute_names(type_name: &str) -> Option<&'static [&'static str]> {
        Some(match type_name {
            "latency" => &["latency", "jitter"],
            "bandwidth" => &["rate"],
            "slow_close" => &["delay"],
            "timeout" | "reset_peer" => &["timeout"],
            "slicer" => &["average_size", "size_variation", "delay"],
            "limit_data" => &["bytes"],
            "hold" | "peer_lost" | "refuse" | "handshake_hang" => &[],
            _ => return None,
        })
    }

    /// Builds a toxic from its type name and attributes (missing attributes are 0, as in
    /// Toxiproxy). Unknown types, unknown attributes and negative or non-integer values are
    /// errors that say what is valid.
    pub fn parse(type_name: &str, attributes: &Map<String, Value>) -> Result<Self, String> {
        let names = Self::attribute_names(type_name).ok_or_else(|| {
            format!(
                "invalid toxic type `{type_name}`: expected one of latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, hold, peer_lost, refuse, handshake_hang"
            )
        })?;
        for key in attributes.keys() {
            if !names.contains(&key.as_str()) {
                return Err(format!(
                    "unknown attribute `{key}` for toxic type `{type_name}`; its attributes are: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
        }
        let get = |name: &str| -> Result<u64, String> {
            match attributes.get(name) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| {
                    format!("attribute `{name}` must be a non-negative integer, got {v}")
                }),
            }
        };
        Ok(match type_name {
            "latency" => ToxicKind::Latency {
                latency: get("latency")?,
                jitter: get("jitter")?,
            },
            "bandwidth" => ToxicKind::Bandwidth { rate: get("rate")? },
            "slow_close" => ToxicKind::SlowClose {
                delay: get("delay")?,
            },
            "timeout" => ToxicKind::Timeout {
                timeout: get("timeout")?,
            },
            "reset_peer" => ToxicKind::ResetPeer {
                timeout: get("timeout")?,
            },
            "slicer" => ToxicKind::Slicer {
                average_size: get("average_size")?,
                size_variation: get("size_variation")?,
                delay: get("delay")?,
            },
            "limit_data" => ToxicKind::LimitData {
                bytes: get("bytes")?,
            },
            "hold" => ToxicKind::Hold,
            "peer_lost" => ToxicKind::PeerLost,
            "refuse" => ToxicKind::Refuse,
            "handshake_hang" => ToxicKind::HandshakeHang,
            _ => unreachable!("checked above"),
        })
    }

    /// The attributes as JSON, every one present.
    pub fn attributes(&self) -> Map<String, Value> {
        let pairs: Vec<(&str, u64)> = match *self {
            ToxicKind::Latency { latency, jitter } => {
                vec![("latency", latency), ("jitter", jitter)]
            }
            ToxicKind::Bandwidth { rate } => vec![("rate", rate)],
            ToxicKind::SlowClose { delay } => vec![("delay", delay)],
            ToxicKind::Timeout { timeout } | ToxicKind::ResetPeer { timeout } => {
                vec![("timeout", timeout)]
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => vec![
                ("average_size", average_size),
                ("size_variation", size_variation),
                ("delay", delay),
            ],
            ToxicKind::LimitData { bytes } => vec![("bytes", bytes)],
            ToxicKind::Hold
            | ToxicKind::PeerLost
            | ToxicKind::Refuse
            | ToxicKind::HandshakeHang => vec![],
        };
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect()
    }

    /// Whether this toxic acts on connections rather than on data (`peer_lost`, `refuse`,
    /// `handshake_hang`).
    pub fn stage_free(&self) -> bool {
        matches!(
            self,
            ToxicKind::PeerLost | ToxicKind::Refuse | ToxicKind::HandshakeHang
        )
    }

    /// The stage that runs this toxic on one direction of one connection; `None` for toxics
    /// that act on connections rather than data (`peer_lost`, `refuse`).
    pub(crate) fn stage(&self) -> Option<Box<dyn Stage>> {
        Some(match *self {
            ToxicKind::Latency { latency, jitter } => {
                Box::new(toxics::latency::Latency::new(latency, jitter))
            }
            ToxicKind::Bandwidth { rate } => Box::new(toxics::bandwidth::Bandwidth::new(rate)),
            ToxicKind::SlowClose { delay } => Box::new(toxics::slow_close::SlowClose::new(delay)),
            ToxicKind::Timeout { timeout } => Box::new(toxics::timeout::Timeout::new(timeout)),
            ToxicKind::ResetPeer { timeout } => {
                Box::new(toxics::reset_peer::ResetPeer::new(timeout))
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => Box::new(toxics::slicer::Slicer::new(
                average_size,
                size_variation,
                delay,
            )),
            ToxicKind::LimitData { bytes } => Box::new(toxics::limit_data::LimitData::new(bytes)),
            ToxicKind::Hold => Box::new(toxics::hold::Hold::default()),
            ToxicKind::PeerLost | ToxicKind::Refuse | ToxicKind::HandshakeHang => return None,
        })
    }
}

/// A toxic on a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Unique on its proxy; defaults to `{type}_{stream}`.
    pub name: String,
    /// What it does.
    pub kind: ToxicKind,
    /// Which direction.
    pub stream: Stream,
    /// The chance, from 0 to 1, that it applies to a given connection (rolled once per
    /// connection and direction).
    pub toxicity: f32,
}

/// A toxic in Toxiproxy's JSON form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToxicJson {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `upstream` or `downstream`.
    pub stream: String,
    /// 0 to 1.
    pub toxicity: f32,
    /// Type-specific attributes.
    pub attributes: Map<String, Value>,
}

impl Toxic {
    /// The JSON form.
    pub fn to_json(&self) -> ToxicJson {
        ToxicJson {
            name: self.name.clone(),
            kind: self.kind.type_name().to_string(),
            stream: self.stream.as_str().to_string(),
            toxicity: self.toxicity,
            attributes: self.kind.attributes(),
        }
    }

    /// Builds a toxic from a create request body, applying Toxiproxy's defaults.
    pub fn from_request(body: &Value) -> Result<Toxic, String> {
        let obj = body.as_object().ok_or("the body must be a JSON object")?;
        let type_name = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err("`type` must be a string".into()),
            None => return Err("missing `type`: the toxic type, e.g. latency".into()),
        };
        let stream = match obj.get("stream") {
            None | Some(Value::Null) => Stream::Downstream,
            Some(Value::String(s)) if s.is_empty() => Stream::Downstream,
            Some(Value::String(s)) => parse_stream(s)?,
            Some(_) => return Err("`stream` must be a string".into()),
        };
        let toxicity = parse_toxicity(obj.get("toxicity"))?.unwrap_or(1.0);
        let empty = Map::new();
        let attributes = match obj.get("attributes") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err("`attributes` must be an object".into()),
        };
        let kind = ToxicKind::parse(type_name, attributes)?;
        let name = match obj.get("name") {
            None | Some(Value::Null) => format!("{}_{}", type_name, stream.as_str()),
            Some(Value::String(n)) if n.is_empty() => format!("{}_{}", type_name, stream.as_str()),
            Some(Value::String(n)) => n.clone(),
            Some(_) => return Err("`name` must be a string".into()),
        };
        Ok(Toxic {
            name,
            kind,
            stream,
            toxicity,
        })
    }

    /// Applies an update request body: attributes merge into the current ones; `toxicity` may
    /// change. Type, stream and name stay.
    pub fn updated(&self, body: &Value) -> Result<Toxic, String> {
        let obj = body.as_object().ok_or("the body must be a JSON object")?;
        let mut attributes = self.kind.attributes();
        match obj.get("attributes") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    attributes.insert(k.clone(), v.clone());
                }
            }
            Some(_) => return Err("`attributes` must be an object".into()),
        }
        let kind = ToxicKind::parse(self.kind.type_name(), &attributes)?;
        let toxicity = parse_toxicity(obj.get("toxicity"))?.unwrap_or(self.toxicity);
        Ok(Toxic {
            kind,
            toxicity,
            ..self.clone()
        })
    }
}

fn parse_stream(s: &str) -> Result<Stream, String> {
    match s.to_ascii_lowercase().as_str() {
        "upstream" => Ok(Stream::Upstream),
        "downstream" => Ok(Stream::Downstream),
        _ => Err(format!(
            "stream `{s}` is invalid: it can be either upstream or downstream"
        )),
    }
}

fn parse_toxicity(v: Option<&Value>) -> Result<Option<f32>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Ok(Some(t as f32)),
            _ => Err(format!(
                "toxicity must be a number between 0 and 1, got {v}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_toxiproxy() {
        let t = Toxic::from_request(&json!({"type": "latency", "attributes": {"latency": 100}}))
            .unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(
            t.kind,
            ToxicKind::Latency {
                latency: 100,
                jitter: 0
            }
        );
        assert_eq!(
            t.to_json().attributes,
            json!({"latency": 100, "jitter": 0})
                .as_object()
                .unwrap()
                .clone()
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let err = |v: Value| Toxic::from_request(&v).unwrap_err();
        assert!(err(json!({"type": "lag"})).contains("invalid toxic type"));
        assert!(
            err(json!({"type": "latency", "attributes": {"latency": -5}})).contains("non-negative")
        );
        assert!(
            err(json!({"type": "latency", "attributes": {"latncy": 5}}))
                .contains("unknown attribute")
        );
        assert!(
            err(json!({"type": "latency", "stream": "sideways"}))
                .contains("upstream or downstream")
        );
        assert!(err(json!({"type": "latency", "toxicity": 1.5})).contains("between 0 and 1"));
        assert!(err(json!({"attributes": {}})).contains("missing `type`"));
    }

    #[test]
    fn updates_merge_attributes() {
        let t = Toxic::from_request(
            &json!({"type": "latency", "attributes": {"latency": 100, "jitter": 5}}),
        )
        .unwrap();
        let u = t
            .updated(&json!({"attributes": {"latency": 7}, "toxicity": 0.5}))
            .unwrap();
        assert_eq!(
            u.kind,
            ToxicKind::Latency {
                latency: 7,
                jitter: 5
            }
        );
        assert_eq!(u.toxicity, 0.5);
        assert_eq!(u.name, t.name);
    }
}
