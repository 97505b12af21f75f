//! The HTTP API, compatible with Toxiproxy 2.x, so any Toxiproxy client can drive our proxy.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /proxies` | 200, `{name: proxy}` |
//! | `POST /proxies` | 201 proxy; 409 name taken; 400 bad body or listen address; 500 the address could not be bound |
//! | `POST /populate` | 201 `{"proxies": [...]}`: identical proxies keep their toxics, changed ones are replaced; all or nothing: 400 for any bad entry, 500 when an address cannot be bound, and then nothing changed |
//! | `GET /proxies/{proxy}` | 200 proxy; 404 |
//! | `POST` or `PATCH /proxies/{proxy}` | 200 proxy: `enabled`, `listen`, `upstream` |
//! | `DELETE /proxies/{proxy}` | 204 |
//! | `GET /proxies/{proxy}/toxics` | 200 `[toxic]` |
//! | `POST /proxies/{proxy}/toxics` | 200 toxic; 409 name taken; 400 bad body |
//! | `GET /proxies/{proxy}/toxics/{toxic}` | 200 toxic; 404 |
//! | `POST` or `PATCH /proxies/{proxy}/toxics/{toxic}` | 200 toxic: `attributes` merge, `toxicity` |
//! | `DELETE /proxies/{proxy}/toxics/{toxic}` | 204 |
//! | `POST /reset` | 204: every proxy enabled, every toxic removed |
//! | `GET /version` | 200 `{"version": ...}` |
//! | `GET /metrics` | 200 Prometheus text: bytes per proxy and direction, connections |
//!
//! A proxy is `{"name", "listen", "upstream", "enabled", "toxics"}` with `listen` as bound
//! (port 0 resolved). A toxic is `{"name", "type", "stream", "toxicity", "attributes"}` with
//! Toxiproxy's defaults: stream `downstream`, toxicity 1.0, name `{type}_{stream}`. Errors are
//! `{"error": message, "status": code}`, and a bad request changes nothing. Requests whose
//! User-Agent starts with `Mozilla/` get 403, as in Toxiproxy, so a web page cannot drive the
//! proxy from a browser.
//!
//! Our extensions, not in Toxiproxy: the toxic types `hold` (data held, delivered when the
//! toxic is removed), `peer_lost` (connections open when it is added go silent until it is
//! removed, then are reset; new ones pass), `handshake_hang` (new connections are accepted
//! and never answered, and stay so after removal; live ones pass) and `refuse` (new
//! connections are reset at once; live ones pass). Unknown attributes are rejected with 400
//! instead of being ignored, so a typo is not a silent no-op.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::proxy::{Proxies, ProxyConfig, ProxyError, Toxic};

mod error;
mod serve;

use error::{ApiError, bad};
pub use serve::{Limits, MAX_BODY, serve_with};

/// The Toxiproxy version whose API this server follows.
pub const TOXIPROXY_API_VERSION: &str = "2.12.0";

type Shared = State<Arc<Proxies>>;

fn parse(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("bad request body: {e}")))
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The API's routes over a set of proxies.
pub fn router(proxies: Arc<Proxies>) -> Router {
    Router::new()
        .route("/proxies", get(list).post(create))
        .route("/populate", post(populate))
        .route(
            "/proxies/{proxy}",
            get(show).post(update).patch(update).delete(delete),
        )
        .route("/proxies/{proxy}/toxics", get(toxics).post(add_toxic))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(show_toxic)
                .post(update_toxic)
                .patch(update_toxic)
                .delete(delete_toxic),
        )
        .route("/reset", post(reset))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not found".into(), None) })
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(forbid_browsers))
        .with_state(proxies)
}

/// Serves the API on `listener` until `shutdown` completes, within the default [`Limits`].
///
/// # Errors
/// As [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxies: Arc<Proxies>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router(proxies), Limits::default(), shutdown).await
}

async fn forbid_browsers(request: Request, next: Next) -> Response {
    let from_browser = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    if from_browser {
        return ApiError(
            StatusCode::FORBIDDEN,
            "User agent not allowed: the API refuses browsers so web pages cannot drive it".into(),
            None,
        )
        .into_response();
    }
    next.run(request).await
}

/// Errors axum answers by itself (405 with an empty body, 413 and undecodable paths in plain
/// text) are rewritten into the API's `{"error", "status"}` form, which clients parse.
async fn json_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("method {method} is not allowed on {path}; allowed: {allowed}")
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_lowercase(),
        _ => text,
    };
    let mut out = ApiError(status, message, None).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

fn proxy_config(v: &Value) -> Result<ProxyConfig, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("bad request body: expected a JSON object"))?;
    let field = |name: &str| -> Result<String, ApiError> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            None | Some(Value::Null) => Err(bad(format!("missing required field: {name}"))),
            Some(Value::String(_)) => Err(bad(format!("missing required field: {name}"))),
            Some(other) => Err(bad(format!("`{name}` must be a string, got {other}"))),
        }
    };
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(bad(format!("`enabled` must be true or false, got {other}"))),
    };
    let listen = match obj.get("listen") {
        None | Some(Value::Null) => "127.0.0.1:0".to_string(),
        _ => field("listen")?,
    };
    crate::proxy::check_listen(&listen)?;
    Ok(ProxyConfig {
        name: field("name")?,
        listen,
        upstream: field("upstream")?,
        enabled,
    })
}

async fn list(State(proxies): Shared) -> Response {
    let map: serde_json::Map<String, Value> = proxies
        .list()
        .into_iter()
        .map(|p| (p.name().to_string(), p.to_json()))
        .collect();
    ok(StatusCode::OK, Value::Object(map))
}

async fn create(State(proxies): Shared, body: Bytes) -> Result<Response, ApiError> {
    let config = proxy_config(&parse(&body)?)?;
    let proxy = proxies.create(config)?;
    Ok(ok(StatusCode::CREATED, proxy.to_json()))
}

async fn populate(State(proxies): Shared, body: Bytes) -> Result<Response, ApiError> {
    let value = parse(&body)?;
    let items = match &value {
        Value::Array(items) => items.clone(),
        Value::Object(o) => match o.get("proxies") {
            Some(Value::Array(items)) => items.clone(),
            _ => return Err(bad("bad request body: expected a JSON array of proxies")),
        },
        _ => return Err(bad("bad request body: expected a JSON array of proxies")),
    };
    // Validate everything before changing anything.
    let configs = items
        .iter()
        .map(proxy_config)
        .collect::<Result<Vec<_>, _>>()?;
    // All or nothing: on an error nothing changed, so no proxies come with it.
    let done = proxies.populate(configs)?;
    Ok(ok(
        StatusCode::CREATED,
        json!({"proxies": done.iter().map(|p| p.to_json()).collect::<Vec<_>>()}),
    ))
}

async fn show(State(proxies): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(ok(StatusCode::OK, proxies.get(&name)?.to_json()))
}

async fn update(
    State(proxies): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let proxy = proxies.get(&name)?;
    let v = parse(&body)?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("bad request body: expected a JSON object"))?;
    let string = |key: &str| -> Result<Option<String>, ApiError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(bad(format!(
                "`{key}` must be a non-empty string, got {other}"
            ))),
        }
    };
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => return Err(bad(format!("`enabled` must be true or false, got {other}"))),
    };
    let (listen, upstream) = (string("listen")?, string("upstream")?);
    proxy.update(listen, upstream)?;
    match enabled {
        Some(true) => proxy.enable()?,
        Some(false) => proxy.disable(),
        None => {}
    }
    Ok(ok(StatusCode::OK, proxy.to_json()))
}

async fn delete(State(proxies): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    proxies.remove(&name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn toxics(State(proxies): Shared, Path(name): Path<String>) -> Result<Response, ApiError> {
    let proxy = proxies.get(&name)?;
    Ok(ok(StatusCode::OK, json!(proxy.toxics_json())))
}

async fn add_toxic(
    State(proxies): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let proxy = proxies.get(&name)?;
    let body = parse(&body)?;
    let toxic = Toxic::from_request(&body).map_err(bad)?;
    let toxic = match crate::proxy::requested_duration(&body).map_err(bad)? {
        Some(duration) => proxy.add_toxic_for(toxic, duration)?,
        None => proxy.add_toxic(toxic)?,
    };
    let shown = proxy
        .toxic_json(&toxic.name)
        .unwrap_or_else(|| toxic.to_json());
    Ok(ok(StatusCode::OK, json!(shown)))
}

async fn show_toxic(
    State(proxies): Shared,
    Path((name, toxic)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let toxic = proxies
        .get(&name)?
        .toxic_json(&toxic)
        .ok_or(ProxyError::ToxicNotFound)?;
    Ok(ok(StatusCode::OK, json!(toxic)))
}

async fn update_toxic(
    State(proxies): Shared,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let proxy = proxies.get(&name)?;
    let body = parse(&body)?;
    // As with type, stream and name: the same value (the whole toxic sent back) is fine, a
    // different one would be a silent no-op, so it is refused.
    if let Some(asked) = body.get("duration_ms").filter(|v| !v.is_null()) {
        let now = proxy
            .toxic_json(&toxic)
            .ok_or(ProxyError::ToxicNotFound)?
            .duration_ms;
        if asked.as_u64() != now {
            return Err(bad(format!(
                "a toxic's duration_ms is set when it is added (this one's is {}), not in an update; delete the toxic and add it again with the new duration",
                now.map_or("none".to_string(), |ms| ms.to_string())
            )));
        }
    }
    let toxic = proxy.update_toxic(&toxic, &body)?;
    let shown = proxy
        .toxic_json(&toxic.name)
        .unwrap_or_else(|| toxic.to_json());
    Ok(ok(StatusCode::OK, json!(shown)))
}

async fn delete_toxic(
    State(proxies): Shared,
    Path((name, toxic)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    proxies.get(&name)?.remove_toxic(&toxic)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset(State(proxies): Shared) -> Result<Response, ApiError> {
    proxies.reset()?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn version() -> Response {
    ok(
        StatusCode::OK,
        json!({"version": TOXIPROXY_API_VERSION, "server": concat!("chaos ", env!("CARGO_PKG_VERSION"))}),
    )
}

async fn metrics(State(proxies): Shared) -> Response {
    let mut text = String::new();
    text.push_str(
        "# HELP toxiproxy_proxy_sent_bytes_total Bytes forwarded by the proxy, per direction.\n",
    );
    text.push_str("# TYPE toxiproxy_proxy_sent_bytes_total counter\n");
    let list = proxies.list();
    for p in &list {
        let s = p.stats();
        let labels = |dir: &str| {
            format!(
                "direction=\"{dir}\",listener=\"{}\",proxy=\"{}\",upstream=\"{}\"",
                label(&p.listen()),
                label(p.name()),
                label(&p.upstream())
            )
        };
        text.push_str(&format!(
            "toxiproxy_proxy_sent_bytes_total{{{}}} {}\n",
            labels("upstream"),
            s.bytes_upstream
        ));
        text.push_str(&format!(
            "toxiproxy_proxy_sent_bytes_total{{{}}} {}\n",
            labels("downstream"),
            s.bytes_downstream
        ));
    }
    text.push_str(
        "# HELP chaos_proxy_zero_copy_bytes_total Of the bytes forwarded, those moved with splice(2) (no toxic on their direction).\n# TYPE chaos_proxy_zero_copy_bytes_total counter\n",
    );
    for p in &list {
        text.push_str(&format!(
            "chaos_proxy_zero_copy_bytes_total{{proxy=\"{}\"}} {}\n",
            label(p.name()),
            p.stats().bytes_zero_copy
        ));
    }
    for (name, help, kind, get) in [
        (
            "chaos_proxy_connections_accepted_total",
            "Connections accepted.",
            "counter",
            0,
        ),
        (
            "chaos_proxy_connections_live",
            "Connections open now.",
            "gauge",
            1,
        ),
        (
            "chaos_proxy_connections_refused_total",
            "Connections reset by the refuse toxic.",
            "counter",
            2,
        ),
    ] {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for p in &list {
            let s = p.stats();
            let v = [s.accepted, s.live, s.refused][get];
            text.push_str(&format!("{name}{{proxy=\"{}\"}} {v}\n", label(p.name())));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A label value in the exposition format: backslash, quote and newline escaped, so a proxy
/// named `a"b` or with a newline in it cannot break the page for every scraper.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
