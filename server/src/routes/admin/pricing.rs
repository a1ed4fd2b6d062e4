//! `/admin/pricing`: the pricing table in force (model count, source, load time, SHA-256,
//! the last refused reload) and `POST /admin/pricing/refresh` to reload it now: from
//! `PRICING_URL` when configured (digest checked), else from `PRICING_FILE`.

use axum::{extract::State, http::StatusCode, response::IntoResponse, Json};
use serde_json::json;

use super::AdminUser;
use crate::state::AppState;

pub async fn status(_: AdminUser, State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({"success": true, "data": state.pricing.status()}))
}

pub async fn refresh(
    AdminUser(user): AdminUser,
    State(state): State<AppState>,
) -> impl IntoResponse {
    match state.pricing.refresh().await {
        Ok(status) => {
            tracing::info!(by = %user, models = status.models, source = %status.source, "pricing refreshed");
            (
                StatusCode::OK,
                Json(json!({"success": true, "data": status})),
            )
        }
        // The current table stays in force; the admin sees why the new one was refused.
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({
                "success": false,
                "error": "Pricing refresh failed",
                "message": e.to_string(),
                "data": state.pricing.status(),
            })),
        ),
    }
}
