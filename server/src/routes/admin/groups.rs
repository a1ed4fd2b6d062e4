//! `/admin/account-groups`: named sets of accounts a key can be bound to (`group:<id>`).

use app::domain::AccountGroup;
use axum::{
    extract::{rejection::JsonRejection, Path, State},
    Json,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, AdminUser};
use crate::{auth::api_key::format_time, state::AppState};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GroupInput {
    name: Option<String>,
    platform: Option<String>,
    description: Option<String>,
    members: Option<Vec<String>>,
}

async fn find(state: &AppState, id: &str) -> Result<AccountGroup, AdminError> {
    let snap = state.store.account_snapshot(None).await?;
    snap.groups
        .unwrap_or_default()
        .into_iter()
        .find(|g| g.id == id)
        .ok_or(AdminError::NotFound("Account group"))
}

async fn apply(
    state: &AppState,
    g: &mut AccountGroup,
    input: GroupInput,
) -> Result<(), AdminError> {
    if let Some(name) = input.name {
        if name.trim().is_empty() {
            return Err(AdminError::BadRequest("name must not be empty".into()));
        }
        g.name = name.trim().to_string();
    }
    if let Some(p) = input.platform {
        if p != "claude" {
            return Err(AdminError::BadRequest("platform must be claude".into()));
        }
        g.platform = p;
    }
    if let Some(d) = input.description {
        g.description = d;
    }
    if let Some(members) = input.members {
        let accounts = state.store.list_accounts().await?;
        if let Some(unknown) = members
            .iter()
            .find(|m| !accounts.iter().any(|a| &a.account.id == *m))
        {
            return Err(AdminError::BadRequest(format!(
                "members: unknown account {unknown}"
            )));
        }
        g.members = members;
    }
    g.updated_at = format_time(Utc::now());
    Ok(())
}

pub async fn list(_: AdminUser, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let snap = state.store.account_snapshot(None).await?;
    Ok(Json(
        json!({"success": true, "data": snap.groups.unwrap_or_default()}),
    ))
}

pub async fn get_one(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    Ok(Json(
        json!({"success": true, "data": find(&state, &id).await?}),
    ))
}

pub async fn members(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let g = find(&state, &id).await?;
    let accounts: Vec<_> = state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .filter(|a| g.members.contains(&a.account.id))
        .map(|a| a.account)
        .collect();
    Ok(Json(json!({"success": true, "data": accounts})))
}

pub async fn create(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<GroupInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    let now = format_time(Utc::now());
    let mut g = AccountGroup {
        id: uuid::Uuid::new_v4().to_string(),
        platform: "claude".into(),
        created_at: now,
        ..Default::default()
    };
    apply(&state, &mut g, input).await?;
    state.store.put_group(&g).await?;
    state.scheduler.invalidate();
    Ok(Json(json!({"success": true, "data": g})))
}

pub async fn update(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<GroupInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    let mut g = find(&state, &id).await?;
    apply(&state, &mut g, input).await?;
    state.store.put_group(&g).await?;
    state.scheduler.invalidate();
    Ok(Json(json!({"success": true, "data": g})))
}

pub async fn delete(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    find(&state, &id).await?;
    state.store.delete_group(&id).await?;
    state.scheduler.invalidate();
    Ok(Json(
        json!({"success": true, "message": "Account group deleted"}),
    ))
}
