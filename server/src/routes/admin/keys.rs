//! `/admin/api-keys`: create (the key is shown once), list with usage, edit, soft delete.
//! The rules are `crate::admin::keys`'; these handlers shape the original's answers.

use app::backend::KeyScope;
use axum::{
    extract::{rejection::JsonRejection, Path, State},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, AdminUser};
use crate::{
    admin::{
        key_input::KeyInput,
        key_report,
        keys::{self, Batch, Created, KeyAction},
    },
    state::AppState,
};

pub async fn list_keys(
    _: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, AdminError> {
    let data: Vec<Value> = key_report::list(&state)
        .await?
        .into_iter()
        .map(|l| {
            let mut v = serde_json::to_value(&l.key).unwrap_or(Value::Null);
            v["usage"] = json!({
                "total": crate::routes::claude::usage_json(&l.total),
                "daily": crate::routes::claude::usage_json(&l.daily),
            });
            v["limits"] = l.limits;
            v
        })
        .collect();
    Ok(Json(json!({"success": true, "data": data})))
}

/// A new key as answered: its record and, this once, the key itself.
fn created(c: &Created) -> Value {
    let mut data = serde_json::to_value(&c.stored.key).unwrap_or(Value::Null);
    data["apiKey"] = Value::String(c.secret.clone());
    data
}

pub async fn create_key(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<KeyInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let c = keys::create(&state, body?.0, None).await?;
    Ok(Json(json!({"success": true, "data": created(&c)})))
}

pub async fn update_key(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<KeyInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let stored = keys::update(&state, &KeyScope::All, &id, body?.0).await?;
    Ok(Json(json!({"success": true, "data": stored.key})))
}

/// Soft delete, as the original: the key stops working and leaves the list, its usage stays.
pub async fn delete_key(
    AdminUser(user): AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    keys::act(&state, &KeyScope::All, &id, KeyAction::Delete).await?;
    tracing::info!(key = %id, by = %user, "API key deleted");
    Ok(Json(json!({"success": true, "message": "API key deleted"})))
}

/// `POST /admin/api-keys/batch`: `count` keys named `<baseName>_<n>`, each shown once.
pub async fn batch_create(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<Batch>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let all = keys::create_batch(&state, body?.0).await?;
    let data: Vec<Value> = all.iter().map(created).collect();
    Ok(Json(json!({"success": true, "data": data})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchUpdate {
    key_ids: Vec<String>,
    updates: KeyInput,
}

/// `PUT /admin/api-keys/batch`: the same changes to many keys; all are validated first.
pub async fn batch_update(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<BatchUpdate>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(batch) = body?;
    let changed = keys::update_many(&state, &batch.key_ids, batch.updates).await?;
    Ok(Json(
        json!({"success": true, "data": {"successCount": changed, "failedCount": 0}}),
    ))
}
