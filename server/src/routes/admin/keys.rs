//! `/admin/api-keys`: create (the key is shown once), list with usage, edit, soft delete.

use app::domain::{ApiKey, ExpirationMode};
use axum::{
    extract::{rejection::JsonRejection, Path, State},
    Json,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, AdminUser};
use crate::{
    auth::api_key::{format_time, generate, parse_time},
    state::AppState,
    store::{buckets, Periods, StoredKey},
};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyInput {
    name: Option<String>,
    description: Option<String>,
    is_active: Option<bool>,
    /// A list, or the original's legacy string (`"all"`, `"claude"`).
    permissions: Option<Value>,
    tags: Option<Vec<String>>,
    claude_account_id: Option<Option<String>>,
    claude_console_account_id: Option<Option<String>>,
    allow_dedicated_fallback: Option<bool>,
    expiration_mode: Option<ExpirationMode>,
    activation_days: Option<u32>,
    expires_at: Option<Option<String>>,
}

const SERVICES: [&str; 3] = ["claude", "gemini", "openai"];

fn apply_key(k: &mut ApiKey, input: KeyInput) -> Result<(), AdminError> {
    if let Some(name) = input.name {
        if name.trim().is_empty() {
            return Err(AdminError::BadRequest("name must not be empty".into()));
        }
        k.name = name.trim().to_string();
    }
    if let Some(d) = input.description {
        k.description = d;
    }
    if let Some(v) = input.is_active {
        k.is_active = v;
    }
    if let Some(p) = input.permissions {
        let list: Vec<String> = match p {
            Value::String(s) if s == "all" || s.is_empty() => Vec::new(),
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            Value::Null => Vec::new(),
            _ => return Err(AdminError::BadRequest("permissions must be a list".into())),
        };
        if let Some(bad) = list.iter().find(|p| !SERVICES.contains(&p.as_str())) {
            return Err(AdminError::BadRequest(format!(
                "unknown permission {bad:?}; use claude, gemini or openai"
            )));
        }
        k.permissions = list;
    }
    if let Some(tags) = input.tags {
        k.tags = tags;
    }
    if let Some(acc) = input.claude_account_id {
        k.claude_account_id = acc.filter(|a| !a.is_empty());
    }
    if let Some(v) = input.allow_dedicated_fallback {
        k.allow_dedicated_fallback = v;
    }
    if let Some(acc) = input.claude_console_account_id {
        k.claude_console_account_id = acc.filter(|a| !a.is_empty());
    }
    if let Some(m) = input.expiration_mode {
        k.expiration_mode = m;
    }
    if let Some(d) = input.activation_days {
        k.activation_days = d;
    }
    if let Some(exp) = input.expires_at {
        match exp.filter(|e| !e.is_empty()) {
            None => k.expires_at = None,
            Some(e) => {
                let t = parse_time(&e).ok_or_else(|| {
                    AdminError::BadRequest("expiresAt must be an RFC 3339 time".into())
                })?;
                k.expires_at = Some(format_time(t));
            }
        }
    }
    if k.expiration_mode == ExpirationMode::Activation && k.activation_days == 0 {
        return Err(AdminError::BadRequest(
            "activationDays must be at least 1 in activation mode".into(),
        ));
    }
    Ok(())
}

pub async fn list_keys(
    _: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, AdminError> {
    let mut keys: Vec<ApiKey> = state
        .store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| k.key)
        .filter(|k| !k.is_deleted)
        .collect();
    keys.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let last_used = state.store.keys_last_used().await?;
    let day = Periods::at(Utc::now(), state.config.timezone_offset_hours).day;
    let mut names = Vec::with_capacity(keys.len() * 2);
    for k in &keys {
        names.push(buckets::key_total(&k.id));
        names.push(buckets::key_day(&k.id, &day));
    }
    let usage = state.store.usage(&names).await?;
    let data: Vec<Value> = keys
        .into_iter()
        .enumerate()
        .map(|(i, mut k)| {
            if let Some(ms) = last_used.get(&k.id) {
                k.last_used_at = chrono::DateTime::from_timestamp_millis(*ms).map(format_time);
            }
            let mut v = serde_json::to_value(&k).unwrap_or(Value::Null);
            v["usage"] = json!({
                "total": crate::routes::claude::usage_json(&usage[i * 2]),
                "daily": crate::routes::claude::usage_json(&usage[i * 2 + 1]),
            });
            v
        })
        .collect();
    Ok(Json(json!({"success": true, "data": data})))
}

pub async fn create_key(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<KeyInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    let secret = generate(&state.config.api_key_prefix);
    let mut key = ApiKey {
        id: uuid::Uuid::new_v4().to_string(),
        is_active: true,
        created_at: format_time(Utc::now()),
        key_preview: format!(
            "{}…",
            &secret[..secret.len().min(state.config.api_key_prefix.len() + 6)]
        ),
        ..Default::default()
    };
    apply_key(&mut key, input)?;
    let stored = StoredKey {
        key_hash: state.crypto.hash_api_key(&secret),
        key,
    };
    state.store.insert_key(&stored).await?;
    let mut data = serde_json::to_value(&stored.key).unwrap_or(Value::Null);
    // The only time the key itself is ever returned.
    data["apiKey"] = Value::String(secret);
    Ok(Json(json!({"success": true, "data": data})))
}

pub async fn update_key(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<KeyInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    let mut stored = state
        .store
        .get_key(&id)
        .await?
        .filter(|k| !k.key.is_deleted)
        .ok_or(AdminError::NotFound("API key"))?;
    apply_key(&mut stored.key, input)?;
    state.store.update_key(&stored).await?;
    Ok(Json(json!({"success": true, "data": stored.key})))
}

/// Soft delete, as the original: the key stops working and leaves the list, its usage stays.
pub async fn delete_key(
    AdminUser(user): AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let mut stored = state
        .store
        .get_key(&id)
        .await?
        .filter(|k| !k.key.is_deleted)
        .ok_or(AdminError::NotFound("API key"))?;
    stored.key.is_deleted = true;
    stored.key.is_active = false;
    state.store.update_key(&stored).await?;
    tracing::info!(key = %id, by = %user, "API key deleted");
    Ok(Json(json!({"success": true, "message": "API key deleted"})))
}
