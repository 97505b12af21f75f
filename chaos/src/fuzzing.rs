//! Properties of the Toxiproxy API that must hold for any request, however malformed: checked
//! by the coverage-guided fuzz target `api` (`fuzz/`, see TESTING.md) and, on stable, by the
//! tests that replay its committed seed corpus (`chaos/tests/fuzz_corpus.rs`).
//!
//! An input is a script: lines, each one request. A line's first byte picks the method and
//! path (the table below, with the proxy `p` and toxic `t`); the rest is the body. Any listen
//! address that parses is rewritten to `127.0.0.1:0`, so a fuzzer never binds a real port;
//! the ones that do not parse are kept, to test their refusal.
//!
//! The properties, after every request:
//! - no panic, and no 5xx (every failure a client can cause is its fault, a 4xx);
//! - every error is `{"error": non-empty string, "status": the status}` in JSON;
//! - every 200/201 body is JSON, and `/metrics` is valid exposition text;
//! - a 4xx changes nothing: the proxies and toxics read back the same before and after.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::proxy::Proxies;

/// The requests a script line can make: method, path, whether it carries the body.
const REQUESTS: &[(&str, &str)] = &[
    ("GET", "/proxies"),
    ("POST", "/proxies"),
    ("POST", "/populate"),
    ("GET", "/proxies/p"),
    ("POST", "/proxies/p"),
    ("PATCH", "/proxies/p"),
    ("DELETE", "/proxies/p"),
    ("GET", "/proxies/p/toxics"),
    ("POST", "/proxies/p/toxics"),
    ("GET", "/proxies/p/toxics/t"),
    ("POST", "/proxies/p/toxics/t"),
    ("PATCH", "/proxies/p/toxics/t"),
    ("DELETE", "/proxies/p/toxics/t"),
    ("POST", "/reset"),
    ("GET", "/version"),
    ("GET", "/metrics"),
    ("PUT", "/proxies"),
    ("GET", "/nowhere"),
];

/// One API server in process, with the state it keeps between a script's requests.
pub struct ApiUnderTest {
    proxies: Arc<Proxies>,
    router: Router,
}

impl Default for ApiUnderTest {
    fn default() -> Self {
        let proxies = Arc::new(Proxies::new(1));
        let router = crate::api::router(proxies.clone());
        Self { proxies, router }
    }
}

impl Drop for ApiUnderTest {
    fn drop(&mut self) {
        for proxy in self.proxies.list() {
            let _ = self.proxies.remove(proxy.name());
        }
    }
}

impl ApiUnderTest {
    /// Runs a script (see the module's documentation), checking every property; panics with
    /// the request and the response that broke one. Must run inside a tokio runtime.
    pub async fn run_script(&self, script: &[u8]) {
        for line in script.split(|&b| b == b'\n').take(16) {
            let Some((&pick, body)) = line.split_first() else {
                continue;
            };
            let (method, path) = REQUESTS[pick as usize % REQUESTS.len()];
            self.check(method, path, &confine_listen(body)).await;
        }
    }

    /// Sends one request and checks the response.
    pub async fn check(&self, method: &str, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let before = self.state().await;
        let (status, text) = self.send(method, path, body.to_vec()).await;
        let what = || {
            format!(
                "{method} {path} {:?} -> {status} {:?}",
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(&text)
            )
        };
        assert!(!status.is_server_error(), "a 5xx: {}", what());
        if path == "/metrics" && status.is_success() {
            check_exposition(&String::from_utf8_lossy(&text)).unwrap_or_else(|e| {
                panic!("invalid exposition text ({e}): {}", what());
            });
            return (status, Value::Null);
        }
        let json = if text.is_empty() && status == StatusCode::NO_CONTENT {
            Value::Null
        } else {
            serde_json::from_slice(&text)
                .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", what()))
        };
        if status.is_client_error() {
            let message = json.get("error").and_then(Value::as_str).unwrap_or("");
            assert!(!message.is_empty(), "no error message: {}", what());
            assert_eq!(
                json.get("status").and_then(Value::as_u64),
                Some(u64::from(status.as_u16())),
                "the error's status field differs: {}",
                what()
            );
            assert_eq!(
                self.state().await,
                before,
                "a refused request changed the proxies: {}",
                what()
            );
        }
        (status, json)
    }

    async fn send(&self, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("a method of the table"))
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a request of the table");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .expect("a body in memory");
        (status, bytes.to_vec())
    }

    /// Everything a client can read back: the proxies with their toxics.
    async fn state(&self) -> Value {
        let mut proxies: Vec<Value> = self.proxies.list().iter().map(|p| p.to_json()).collect();
        proxies.sort_by_key(|p| p["name"].to_string());
        Value::Array(proxies)
    }
}

/// Rewrites every `listen` that parses (in an object, an array of them, or `{"proxies":
/// [...]}`) to `127.0.0.1:0`; leaves other bodies as they are.
fn confine_listen(body: &[u8]) -> Vec<u8> {
    fn walk(v: &mut Value) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(map) => {
                if let Some(Value::String(listen)) = map.get_mut("listen")
                    && crate::proxy::check_listen(listen).is_ok()
                {
                    *listen = "127.0.0.1:0".to_string();
                }
                if let Some(inner) = map.get_mut("proxies") {
                    walk(inner);
                }
            }
            _ => {}
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            walk(&mut v);
            serde_json::to_vec(&v).expect("a JSON value serialises")
        }
        Err(_) => body.to_vec(),
    }
}

/// Checks Prometheus text exposition: comments, or `name{label="value",...} number`, with
/// label values escaped.
pub fn check_exposition(text: &str) -> Result<(), String> {
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("bad metric name in {line:?}"));
        }
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            rest = skip_labels(labels).ok_or_else(|| format!("bad labels in {line:?}"))?;
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before the value in {line:?}"))?;
        value
            .parse::<f64>()
            .map_err(|_| format!("bad value in {line:?}"))?;
    }
    Ok(())
}

/// Reads `k="v",...}` and returns what follows the closing brace.
fn skip_labels(mut s: &str) -> Option<&str> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Some(rest);
        }
        let eq = s.find('=')?;
        let key = &s[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let mut chars = s[eq + 1..].strip_prefix('"')?.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, '\\' | '"' | 'n') => {}
                    _ => return None,
                },
                (i, '"') => break i,
                (_, '\n') => return None,
                _ => {}
            }
        };
        s = &s[eq + 1 + 1 + end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_checker_accepts_escapes_and_refuses_raw_quotes() {
        assert!(check_exposition("# HELP a b\na_total{proxy=\"x\\\"y\"} 3\nb 1\n").is_ok());
        assert!(check_exposition("a_total{proxy=\"x\"y\"} 3\n").is_err());
        assert!(check_exposition("a_total{proxy=\"x\n\"} 3\n").is_err());
        assert!(check_exposition("a_total{proxy=\"x\"} three\n").is_err());
    }
}
