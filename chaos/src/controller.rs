//! Driving faults: one [`FaultController`] trait, implemented by the embedded proxy set
//! ([`Proxies`]) and by our small async client of Toxiproxy's HTTP API ([`ToxiproxyClient`]),
//! for `chaos serve` or a real Toxiproxy.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::BoxFut;
use crate::proxy::{Proxies, ProxyConfig, ProxyError, Toxic, ToxicJson};

/// Why a fault could not be set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The embedded proxy refused.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The Toxiproxy server could not be reached.
    #[error(
        "could not reach the Toxiproxy API at {addr}: {source}; is it running (`chaos serve`, or `docker compose up -d`)?"
    )]
    Unreachable {
        /// host:port.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("Toxiproxy API {method} {path} answered {status}: {message}")]
    Api {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The server's error message.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the Toxiproxy API: {0}")]
    Protocol(String),
}

/// Sets and clears faults on named proxies: the one fault-control interface of the suite,
/// the soak and users' own tests. Implemented by the embedded proxy set ([`Proxies`]) and by
/// the client of any Toxiproxy-API server ([`ToxiproxyClient`]); object safe, so a run holds
/// an `Arc<dyn FaultController>` whichever it drives.
pub trait FaultController: Send + Sync {
    /// Creates a proxy; returns it with its listen address resolved.
    fn create_proxy(&self, config: ProxyConfig) -> BoxFut<'_, Result<ProxyConfig, ControlError>>;
    /// Removes a proxy.
    fn delete_proxy<'a>(&'a self, proxy: &'a str) -> BoxFut<'a, Result<(), ControlError>>;
    /// Enables (accepting) or disables (listener closed, connections cut) a proxy.
    fn set_enabled<'a>(
        &'a self,
        proxy: &'a str,
        enabled: bool,
    ) -> BoxFut<'a, Result<(), ControlError>>;
    /// Adds a toxic.
    fn add_toxic<'a>(
        &'a self,
        proxy: &'a str,
        toxic: &'a Toxic,
    ) -> BoxFut<'a, Result<(), ControlError>>;
    /// Removes a toxic.
    fn remove_toxic<'a>(
        &'a self,
        proxy: &'a str,
        toxic: &'a str,
    ) -> BoxFut<'a, Result<(), ControlError>>;
    /// Enables every proxy and removes every toxic.
    fn reset(&self) -> BoxFut<'_, Result<(), ControlError>>;
    /// The proxy's counters, where the controller can read them (the in-process proxy can;
    /// Toxiproxy's API has no such figures).
    fn stats<'a>(&'a self, proxy: &'a str) -> BoxFut<'a, Option<crate::proxy::ProxyStats>> {
        let _ = proxy;
        Box::pin(async { None })
    }
}

/// The in-process proxy set, driven by direct calls.
impl FaultController for Proxies {
    fn create_proxy(&self, config: ProxyConfig) -> BoxFut<'_, Result<ProxyConfig, ControlError>> {
        Box::pin(async move { Ok(self.create(config)?.config()) })
    }
    fn delete_proxy<'a>(&'a self, proxy: &'a str) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(async move { Ok(self.remove(proxy)?) })
    }
    fn set_enabled<'a>(
        &'a self,
        proxy: &'a str,
        enabled: bool,
    ) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(async move {
            let p = self.get(proxy)?;
            if enabled {
                p.enable()?;
            } else {
                p.disable();
            }
            Ok(())
        })
    }
    fn add_toxic<'a>(
        &'a self,
        proxy: &'a str,
        toxic: &'a Toxic,
    ) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.get(proxy)?.add_toxic(toxic.clone())?;
            Ok(())
        })
    }
    fn remove_toxic<'a>(
        &'a self,
        proxy: &'a str,
        toxic: &'a str,
    ) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(async move { Ok(self.get(proxy)?.remove_toxic(toxic)?) })
    }
    fn reset(&self) -> BoxFut<'_, Result<(), ControlError>> {
        Box::pin(async move { Ok(Proxies::reset(self)?) })
    }
    fn stats<'a>(&'a self, proxy: &'a str) -> BoxFut<'a, Option<crate::proxy::ProxyStats>> {
        Box::pin(async move { self.get(proxy).ok().map(|p| p.stats()) })
    }
}

/// A Toxiproxy-API server (`chaos serve`, or a real Toxiproxy), driven over HTTP.
impl FaultController for ToxiproxyClient {
    fn create_proxy(&self, config: ProxyConfig) -> BoxFut<'_, Result<ProxyConfig, ControlError>> {
        Box::pin(async move { ToxiproxyClient::create_proxy(self, &config).await })
    }
    fn delete_proxy<'a>(&'a self, proxy: &'a str) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(ToxiproxyClient::delete_proxy(self, proxy))
    }
    fn set_enabled<'a>(
        &'a self,
        proxy: &'a str,
        enabled: bool,
    ) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(async move {
            self.update_proxy(proxy, &json!({ "enabled": enabled }))
                .await
                .map(drop)
        })
    }
    fn add_toxic<'a>(
        &'a self,
        proxy: &'a str,
        toxic: &'a Toxic,
    ) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(async move {
            ToxiproxyClient::add_toxic(self, proxy, &toxic.to_json())
                .await
                .map(drop)
        })
    }
    fn remove_toxic<'a>(
        &'a self,
        proxy: &'a str,
        toxic: &'a str,
    ) -> BoxFut<'a, Result<(), ControlError>> {
        Box::pin(ToxiproxyClient::remove_toxic(self, proxy, toxic))
    }
    fn reset(&self) -> BoxFut<'_, Result<(), ControlError>> {
        Box::pin(ToxiproxyClient::reset(self))
    }
}

/// A small async client of Toxiproxy's HTTP API (HTTP/1.1, one connection per request).
#[derive(Debug, Clone)]
pub struct ToxiproxyClient {
    addr: String,
}

impl ToxiproxyClient {
    /// A client for `http://host:port` (or plain `host:port`).
    pub fn new(url: &str) -> Self {
        let addr = url
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Self { addr }
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request; returns the status and the JSON body (`null` when empty).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ControlError> {
        let unreachable = |source| ControlError::Unreachable {
            addr: self.addr.clone(),
            source,
        };
        let mut stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(unreachable)?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chaos/{}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            env!("CARGO_PKG_VERSION"),
            payload.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(unreachable)?;
        stream
            .write_all(payload.as_bytes())
            .await
            .map_err(unreachable)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(unreachable)?;
        let (status, body) = parse_response(&raw).map_err(ControlError::Protocol)?;
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        if status >= 400 {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            return Err(ControlError::Api {
                method: method.to_string(),
                path: path.to_string(),
                status,
                message,
            });
        }
        Ok((status, value))
    }

    /// `GET /proxies/{name}`.
    pub async fn proxy(&self, name: &str) -> Result<Value, ControlError> {
        Ok(self
            .request("GET", &format!("/proxies/{name}"), None)
            .await?
            .1)
    }

    /// `POST /proxies`.
    pub async fn create_proxy(&self, config: &ProxyConfig) -> Result<ProxyConfig, ControlError> {
        let body = serde_json::to_value(config).expect("serializable");
        let (_, v) = self.request("POST", "/proxies", Some(&body)).await?;
        serde_json::from_value(v).map_err(|e| ControlError::Protocol(e.to_string()))
    }

    /// `POST /proxies/{name}` with fields to change.
    pub async fn update_proxy(&self, name: &str, body: &Value) -> Result<Value, ControlError> {
        Ok(self
            .request("POST", &format!("/proxies/{name}"), Some(body))
            .await?
            .1)
    }

    /// `DELETE /proxies/{name}`.
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ControlError> {
        self.request("DELETE", &format!("/proxies/{name}"), None)
            .await
            .map(drop)
    }

    /// `POST /proxies/{name}/toxics`.
    pub async fn add_toxic(
        &self,
        proxy: &str,
        toxic: &ToxicJson,
    ) -> Result<ToxicJson, ControlError> {
        let body = serde_json::to_value(toxic).expect("serializable");
        let (_, v) = self
            .request("POST", &format!("/proxies/{proxy}/toxics"), Some(&body))
            .await?;
        serde_json::from_value(v).map_err(|e| ControlError::Protocol(e.to_string()))
    }

    /// `DELETE /proxies/{proxy}/toxics/{toxic}`.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ControlError> {
        self.request("DELETE", &format!("/proxies/{proxy}/toxics/{toxic}"), None)
            .await
            .map(drop)
    }

    /// `POST /reset`.
    pub async fn reset(&self) -> Result<(), ControlError> {
        self.request("POST", "/reset", None).await.map(drop)
    }
}

/// Splits a raw HTTP/1.1 response into status and body (handles chunked encoding).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("bad chunk")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .map_err(|_| "bad chunk size")?;
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            out.extend_from_slice(rest.get(start..start + size).ok_or("short chunk")?);
            rest = rest.get(start + size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let (s, b) =
            parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_slice()), (201, &b"{}"[..]));
        let (s, b) =
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
    }
}
