//! A Claude OAuth token endpoint: `good-code` exchanges, `mock-refresh-*` refreshes.

use std::{sync::atomic::Ordering, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{remember, Shared};

pub(super) async fn oauth_token(
    State((log, _)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let grant = field("grant_type");
    let ok = |n: u64, scope: &str| {
        Json(json!({"access_token": format!("mock-access-{n}"), "refresh_token": format!("mock-refresh-{n}"),
            "expires_in": 3600, "token_type": "Bearer", "scope": scope}))
        .into_response()
    };
    let refused = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    match grant.as_str() {
        "authorization_code"
            if field("code") == "good-code" && !field("code_verifier").is_empty() =>
        {
            let n = log.code_exchanges.fetch_add(1, Ordering::SeqCst) + 1;
            ok(n, "user:inference user:profile")
        }
        "refresh_token" if field("refresh_token").starts_with("mock-refresh-") => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let n = log.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
            ok(100 + n, "user:inference user:profile")
        }
        _ => refused(),
    }
}
