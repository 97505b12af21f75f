//! The API's errors, as Toxiproxy sends them: `{"error": ..., "status": ...}` with the status
//! code, from one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::proxy::ProxyError;

/// An API error: `{"error": ..., "status": ...}` with its status code.
pub(super) struct ApiError(
    pub(super) StatusCode,
    pub(super) String,
    pub(super) Option<Value>,
);

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError(status, e.to_string(), None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.1, "status": self.0.as_u16()});
        if let Some(extra) = self.2 {
            body["proxies"] = extra;
        }
        (self.0, axum::Json(body)).into_response()
    }
}

pub(super) fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into(), None)
}
