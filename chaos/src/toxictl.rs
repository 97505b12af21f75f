//! `chaos proxy` and `chaos toxic`: toxiproxy-cli's verbs against `chaos serve` or any
//! Toxiproxy (`--host`). Each verb is one or two API requests; what it prints is returned as
//! text, so the binary only prints it.
//!
//! | command | request |
//! | --- | --- |
//! | `proxy list` | `GET /proxies` |
//! | `proxy inspect NAME` | `GET /proxies/NAME` |
//! | `proxy create NAME --listen A --upstream B` | `POST /proxies` |
//! | `proxy toggle NAME` | `GET`, then `POST /proxies/NAME {"enabled": !enabled}` |
//! | `proxy delete NAME` | `DELETE /proxies/NAME` |
//! | `toxic add PROXY --type T [-a k=v]...` | `POST /proxies/PROXY/toxics` |
//! | `toxic update PROXY TOXIC [-a k=v]...` | `PATCH /proxies/PROXY/toxics/TOXIC` |
//! | `toxic remove PROXY TOXIC` | `DELETE /proxies/PROXY/toxics/TOXIC` |

use serde_json::{Map, Value, json};

use crate::controller::{ControlError, ToxiproxyClient};

/// A `proxy` verb.
#[derive(Debug, Clone)]
pub enum ProxyVerb {
    /// Every proxy, one line each.
    List,
    /// One proxy and its toxics.
    Inspect(String),
    /// A new proxy.
    Create {
        /// Its name.
        name: String,
        /// `host:port` to listen on.
        listen: String,
        /// `host:port` to forward to.
        upstream: String,
    },
    /// Enabled becomes disabled (its connections are cut), or back.
    Toggle(String),
    /// Gone, with its toxics.
    Delete(String),
}

/// A `toxic` verb.
#[derive(Debug, Clone)]
pub enum ToxicVerb {
    /// A new toxic.
    Add {
        /// On this proxy.
        proxy: String,
        /// Its type (`latency`, `timeout`, ...).
        kind: String,
        /// Its name (default `{type}_{stream}`).
        name: Option<String>,
        /// `upstream` or `downstream` (default).
        stream: Option<String>,
        /// 0 to 1 (default 1).
        toxicity: Option<f64>,
        /// `key=value` attributes.
        attributes: Vec<String>,
        /// Removes itself after this many milliseconds (a timed toxic).
        duration_ms: Option<u64>,
    },
    /// Attributes or toxicity changed.
    Update {
        /// On this proxy.
        proxy: String,
        /// The toxic's name.
        toxic: String,
        /// New toxicity.
        toxicity: Option<f64>,
        /// `key=value` attributes to change.
        attributes: Vec<String>,
    },
    /// Gone.
    Remove {
        /// On this proxy.
        proxy: String,
        /// The toxic's name.
        toxic: String,
    },
}

/// Why a verb failed: the API's answer, or input refused before any request.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The API refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ControlError),
    /// An argument that cannot be sent as it is.
    #[error("{0}")]
    Usage(String),
}

/// `key=value` pairs as attributes; values must be whole numbers (every Toxiproxy attribute
/// is one).
pub fn attributes(pairs: &[String]) -> Result<Map<String, Value>, CtlError> {
    let mut map = Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CtlError::Usage(format!(
                "attribute `{pair}` is not key=value, e.g. -a latency=100"
            )));
        };
        let value: u64 = v.trim().parse().map_err(|_| {
            CtlError::Usage(format!(
                "attribute `{k}` = `{v}` is not a whole number (attributes are milliseconds, bytes or KB/s)"
            ))
        })?;
        map.insert(k.trim().to_string(), json!(value));
    }
    Ok(map)
}

/// Runs a `proxy` verb.
pub async fn proxy(client: &ToxiproxyClient, verb: ProxyVerb) -> Result<String, CtlError> {
    Ok(match verb {
        ProxyVerb::List => {
            let (_, all) = client.request("GET", "/proxies", None).await?;
            let mut rows: Vec<&Value> = all
                .as_object()
                .map(|m| m.values().collect())
                .unwrap_or_default();
            rows.sort_by_key(|p| p["name"].as_str().unwrap_or("").to_string());
            let mut out = format!(
                "{:<24} {:<22} {:<22} {:<8} toxics\n",
                "name", "listen", "upstream", "enabled"
            );
            for p in rows {
                out.push_str(&format!(
                    "{:<24} {:<22} {:<22} {:<8} {}\n",
                    p["name"].as_str().unwrap_or(""),
                    p["listen"].as_str().unwrap_or(""),
                    p["upstream"].as_str().unwrap_or(""),
                    p["enabled"].as_bool().unwrap_or(false),
                    p["toxics"].as_array().map_or(0, Vec::len)
                ));
            }
            out
        }
        ProxyVerb::Inspect(name) => inspect(&client.proxy(&name).await?),
        ProxyVerb::Create {
            name,
            listen,
            upstream,
        } => {
            let body =
                json!({"name": name, "listen": listen, "upstream": upstream, "enabled": true});
            let (_, p) = client.request("POST", "/proxies", Some(&body)).await?;
            format!(
                "created proxy {} listening on {} -> {}\n",
                p["name"].as_str().unwrap_or(&name),
                p["listen"].as_str().unwrap_or(&listen),
                p["upstream"].as_str().unwrap_or(&upstream)
            )
        }
        ProxyVerb::Toggle(name) => {
            let enabled = client.proxy(&name).await?["enabled"]
                .as_bool()
                .unwrap_or(true);
            client
                .update_proxy(&name, &json!({"enabled": !enabled}))
                .await?;
            format!(
                "proxy {name} is now {}\n",
                if enabled {
                    "disabled (its connections were cut)"
                } else {
                    "enabled"
                }
            )
        }
        ProxyVerb::Delete(name) => {
            client.delete_proxy(&name).await?;
            format!("deleted proxy {name}\n")
        }
    })
}

/// Runs a `toxic` verb.
pub async fn toxic(client: &ToxiproxyClient, verb: ToxicVerb) -> Result<String, CtlError> {
    Ok(match verb {
        ToxicVerb::Add {
            proxy,
            kind,
            name,
            stream,
            toxicity,
            attributes: pairs,
            duration_ms,
        } => {
            let mut body = json!({"type": kind, "attributes": attributes(&pairs)?});
            let obj = body.as_object_mut().expect("an object");
            if let Some(n) = name {
                obj.insert("name".into(), json!(n));
            }
            if let Some(s) = stream {
                obj.insert("stream".into(), json!(s));
            }
            if let Some(t) = toxicity {
                obj.insert("toxicity".into(), json!(t));
            }
            if let Some(d) = duration_ms {
                obj.insert("duration_ms".into(), json!(d));
            }
            let (_, t) = client
                .request("POST", &format!("/proxies/{proxy}/toxics"), Some(&body))
                .await?;
            format!("added {} on {proxy}\n", describe(&t))
        }
        ToxicVerb::Update {
            proxy,
            toxic,
            toxicity,
            attributes: pairs,
        } => {
            let mut body = json!({"attributes": attributes(&pairs)?});
            if let Some(t) = toxicity {
                body["toxicity"] = json!(t);
            }
            let (_, t) = client
                .request(
                    "PATCH",
                    &format!("/proxies/{proxy}/toxics/{toxic}"),
                    Some(&body),
                )
                .await?;
            format!("updated {} on {proxy}\n", describe(&t))
        }
        ToxicVerb::Remove { proxy, toxic } => {
            client.remove_toxic(&proxy, &toxic).await?;
            format!("removed toxic {toxic} from {proxy}\n")
        }
    })
}

fn describe(t: &Value) -> String {
    let attrs = t["attributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let timed = t["duration_ms"]
        .as_u64()
        .map(|d| format!(", removes itself after {d} ms"))
        .unwrap_or_default();
    format!(
        "toxic {} ({} {}, toxicity {}{}{timed})",
        t["name"].as_str().unwrap_or(""),
        t["type"].as_str().unwrap_or(""),
        t["stream"].as_str().unwrap_or(""),
        t["toxicity"],
        if attrs.is_empty() {
            String::new()
        } else {
            format!(", {attrs}")
        }
    )
}

fn inspect(p: &Value) -> String {
    let mut out = format!(
        "{}\n  listen    {}\n  upstream  {}\n  enabled   {}\n  toxics\n",
        p["name"].as_str().unwrap_or(""),
        p["listen"].as_str().unwrap_or(""),
        p["upstream"].as_str().unwrap_or(""),
        p["enabled"]
    );
    let toxics = p["toxics"].as_array().cloned().unwrap_or_default();
    if toxics.is_empty() {
        out.push_str("    (none)\n");
    }
    for t in toxics {
        out.push_str(&format!("    {}\n", describe(&t)));
    }
    out
}
