//! The public stats of one key, for its holder. It takes the full key, never a bare key id
//! (the original accepts an id, so anyone who knows one can read its stats).

use axum::{
    extract::State,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::claude::usage_json;
use crate::{
    auth::api_key::well_formed,
    relay::error::RelayError,
    state::AppState,
    store::{buckets, Periods},
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/apiStats/api/user-stats", post(user_stats))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatsQuery {
    api_key: Option<String>,
}

fn fail(status: axum::http::StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "error": message, "message": message})),
    )
        .into_response()
}

async fn user_stats(
    State(state): State<AppState>,
    body: Result<Json<StatsQuery>, axum::extract::rejection::JsonRejection>,
) -> Response {
    use axum::http::StatusCode;
    let Some(key) = body
        .ok()
        .and_then(|Json(q)| q.api_key)
        .filter(|k| !k.is_empty())
    else {
        return fail(StatusCode::BAD_REQUEST, "apiKey is required");
    };
    if !well_formed(&key, &state.config.api_key_prefix) {
        return fail(StatusCode::UNAUTHORIZED, "Invalid API key format");
    }
    let found = match state
        .store
        .key_by_hash(&state.crypto.hash_api_key(&key))
        .await
    {
        Ok(k) => k,
        Err(e) => return RelayError::from(e).into_response(),
    };
    let Some(stored) = found.filter(|k| !k.key.is_deleted) else {
        return fail(StatusCode::UNAUTHORIZED, "API key not found");
    };
    let k = &stored.key;
    let p = Periods::at(Utc::now(), state.config.timezone_offset_hours);
    let names = [
        buckets::key_total(&k.id),
        buckets::key_day(&k.id, &p.day),
        buckets::key_month(&k.id, &p.month),
    ];
    let usage = match state.store.usage(&names).await {
        Ok(u) => u,
        Err(e) => return RelayError::from(e).into_response(),
    };
    let limits = match crate::admin::key_report::limits_report(&state, k).await {
        Ok(l) => l,
        Err(e) => return RelayError::from(e).into_response(),
    };
    Json(json!({
        "success": true,
        "data": {
            "id": k.id,
            "name": k.name,
            "description": k.description,
            "isActive": k.is_active,
            "createdAt": k.created_at,
            "expiresAt": k.expires_at,
            "expirationMode": k.expiration_mode,
            "isActivated": k.is_activated,
            "permissions": k.permissions,
            "usage": {
                "total": usage_json(&usage[0]),
                "daily": usage_json(&usage[1]),
                "monthly": usage_json(&usage[2]),
            },
            "limits": limits,
        }
    }))
    .into_response()
}
