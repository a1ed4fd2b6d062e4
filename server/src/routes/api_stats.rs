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

/// The typed stats of a key for the public page: usage today, this month and in all, and a
/// progress bar per limit.
pub async fn key_stats(
    state: &AppState,
    key: &str,
) -> Result<app::domain::KeyStats, (axum::http::StatusCode, &'static str)> {
    use axum::http::StatusCode;
    if !well_formed(key, &state.config.api_key_prefix) {
        return Err((StatusCode::UNAUTHORIZED, "Invalid API key format"));
    }
    let unavailable = (
        StatusCode::SERVICE_UNAVAILABLE,
        "The store is unavailable; retry shortly",
    );
    let stored = state
        .store
        .key_by_hash(&state.crypto.hash_api_key(key))
        .await
        .map_err(|_| unavailable)?
        .filter(|k| !k.key.is_deleted)
        .ok_or((StatusCode::UNAUTHORIZED, "API key not found"))?;
    let k = &stored.key;
    let p = Periods::at(Utc::now(), state.config.timezone_offset_hours);
    let names = [
        buckets::key_day(&k.id, &p.day),
        buckets::key_month(&k.id, &p.month),
        buckets::key_total(&k.id),
    ];
    let usage = state.store.usage(&names).await.map_err(|_| unavailable)?;
    let models = crate::admin::key_report::model_usage(state, &k.id)
        .await
        .map_err(|_| unavailable)?;
    let report = crate::admin::key_report::limits_report(state, k)
        .await
        .map_err(|_| unavailable)?;
    Ok(app::domain::KeyStats {
        name: k.name.clone(),
        is_active: k.is_active,
        expires_at: k.expires_at.clone(),
        today: usage[0],
        month: usage[1],
        total: usage[2],
        limits: limit_bars(&report),
        models,
    })
}

/// The limits report (see `limits_report`) as progress bars.
pub fn limit_bars(report: &serde_json::Value) -> Vec<app::domain::LimitBar> {
    use app::domain::LimitBar;
    use serde_json::Value;
    let bar = |label: String, v: &Value, unit: &str, reset: Option<&Value>| LimitBar {
        label,
        current: v["current"].as_f64().unwrap_or(0.0),
        limit: v["limit"].as_f64().unwrap_or(0.0),
        unit: unit.into(),
        reset_at: reset
            .or(v.get("resetAt"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let money = [
        ("dailyCost", "Daily cost"),
        ("totalCost", "Total cost"),
        ("weeklyCost", "Weekly cost"),
        ("weeklyOpusCost", "Weekly Claude cost"),
    ];
    let mut out = Vec::new();
    for (key, label) in money {
        if let Some(v) = report.get(key) {
            out.push(bar(label.into(), v, "$", None));
        }
    }
    for (group, what) in [("platformLimits", "Platform"), ("modelLimits", "Model")] {
        if let Some(Value::Object(map)) = report.get(group) {
            for (name, limits) in map {
                for (key, label) in &money[..2] {
                    if let Some(v) = limits.get(*key) {
                        out.push(bar(
                            format!("{what} {name} · {}", label.to_lowercase()),
                            v,
                            "$",
                            None,
                        ));
                    }
                }
            }
        }
    }
    if let Some(v) = report.get("concurrency") {
        out.push(bar("Concurrent requests".into(), v, "", None));
    }
    if let Some(w) = report.get("window") {
        let minutes = w["minutes"].as_u64().unwrap_or(0);
        for (key, label, unit) in [
            ("requests", "requests", ""),
            ("tokens", "tokens", ""),
            ("cost", "cost", "$"),
        ] {
            if w[key]["limit"].as_f64().unwrap_or(0.0) > 0.0 {
                out.push(bar(
                    format!("Window ({minutes} min) · {label}"),
                    &w[key],
                    unit,
                    w.get("resetAt"),
                ));
            }
        }
    }
    out
}
