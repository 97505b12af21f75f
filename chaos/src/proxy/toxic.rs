//! A toxic on a proxy: its name, stream, toxicity and JSON form, as in Toxiproxy 2.x. The
//! toxic types themselves are in `toxics/`, one file each.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::toxics::{TYPES, ToxicKind};

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
    /// A timed toxic's duration: it removes itself this many milliseconds after it was added
    /// (ours; absent from toxics without one, so Toxiproxy clients see what they expect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
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
            duration_ms: None,
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
    /// change. Type, stream and name stay: Toxiproxy ignores them in an update, which makes a
    /// request that tries to change them a silent no-op, so one that names a different value
    /// is refused (the same value, as a client sending the whole toxic back does, is fine).
    pub fn updated(&self, body: &Value) -> Result<Toxic, String> {
        let obj = body.as_object().ok_or("the body must be a JSON object")?;
        for (field, now) in [
            ("type", self.kind.type_name()),
            ("stream", self.stream.as_str()),
            ("name", self.name.as_str()),
        ] {
            match obj.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(v)) if v.eq_ignore_ascii_case(now) => {}
                Some(other) => {
                    return Err(format!(
                        "a toxic's {field} cannot change (this one's is `{now}`, the request says {other}); delete the toxic and add a new one"
                    ));
                }
            }
        }
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
            ToxicKind::Latency(crate::proxy::toxics::Latency {
                latency: 100,
                jitter: 0
            })
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
    fn every_type_round_trips_through_its_json_form() {
        for name in TYPES {
            let kind = ToxicKind::parse(name, &Map::new()).unwrap();
            assert_eq!(kind.type_name(), *name);
            let again = ToxicKind::parse(name, &kind.attributes()).unwrap();
            assert_eq!(again, kind, "{name}");
            assert!(
                kind.stage_free() != kind.stage().is_some(),
                "{name} is either a data toxic or a connection-level one"
            );
        }
        let extensions: Vec<_> = TYPES
            .iter()
            .filter(|n| ToxicKind::parse(n, &Map::new()).unwrap().is_extension())
            .copied()
            .collect();
        assert_eq!(
            extensions,
            ["hold", "peer_lost", "refuse", "handshake_hang"]
        );
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
            ToxicKind::Latency(crate::proxy::toxics::Latency {
                latency: 7,
                jitter: 5
            })
        );
        assert_eq!(u.toxicity, 0.5);
        assert_eq!(u.name, t.name);
    }
}
