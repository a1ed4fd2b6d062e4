//! `/admin/account-groups`: named sets of accounts a key can be bound to (`group:<id>`). The
//! rules are `crate::admin::groups`'.

use axum::{
    extract::{rejection::JsonRejection, Path, State},
    Json,
};
use serde_json::{json, Value};

use super::{AdminError, AdminUser};
use crate::{
    admin::groups::{self, GroupInput},
    state::AppState,
};

pub async fn list(_: AdminUser, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    Ok(Json(
        json!({"success": true, "data": groups::list(&state).await?}),
    ))
}

pub async fn get_one(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    Ok(Json(
        json!({"success": true, "data": groups::get(&state, &id).await?}),
    ))
}

pub async fn members(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    Ok(Json(
        json!({"success": true, "data": groups::members(&state, &id).await?}),
    ))
}

pub async fn create(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<GroupInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let g = groups::create(&state, body?.0).await?;
    Ok(Json(json!({"success": true, "data": g})))
}

pub async fn update(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<GroupInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let g = groups::update(&state, &id, body?.0).await?;
    Ok(Json(json!({"success": true, "data": g})))
}

pub async fn delete(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    groups::delete(&state, &id).await?;
    Ok(Json(
        json!({"success": true, "message": "Account group deleted"}),
    ))
}
