//! Sign-in and password bodies are a few fields: past `bounds::AUTH_BODY_MAX_BYTES` they are
//! refused (413, the admin API's shape) before anything reads or parses them, whatever the
//! relay's general body limit. A body without a declared length is read up to the bound.

use app::bounds::AUTH_BODY_MAX_BYTES;
use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use futures_util::StreamExt;
use serde_json::json;

/// Paths that carry a username or a password.
pub fn is_auth_path(path: &str) -> bool {
    path.starts_with("/web/auth/")
        || matches!(
            path,
            "/admin-next/api/login" | "/admin-next/api/change-password"
        )
}

/// Read and dropped at most, so that the 413 reaches the client before the connection
/// closes (closing with unread bytes makes the kernel send a reset).
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

fn too_large() -> Response {
    let mut resp = (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(json!({
            "success": false,
            "error": "Payload too large",
            "message": format!("the request body must be at most {AUTH_BODY_MAX_BYTES} bytes"),
        })),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn drain(body: Body, mut read: usize) {
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

pub async fn limit(req: Request, next: Next) -> Response {
    if !is_auth_path(req.uri().path()) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > AUTH_BODY_MAX_BYTES as u64) {
        drain(req.into_body(), 0).await;
        return too_large();
    }
    if declared.is_some() {
        return next.run(req).await;
    }
    // No length declared: read up to the bound here.
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
        };
        buf.extend_from_slice(&chunk);
        if buf.len() > AUTH_BODY_MAX_BYTES {
            drain(Body::from_stream(stream), buf.len()).await;
            return too_large();
        }
    }
    next.run(Request::from_parts(parts, Body::from(Bytes::from(buf))))
        .await
}
