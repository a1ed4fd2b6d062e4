//! Upstream accounts at the original's paths: CRUD per account type, the PKCE and
//! setup-token flows, toggles, status reset, a test call, and the error history. The rules
//! are `crate::admin::accounts`'; no response ever carries a credential.

use app::domain::Platform;
use axum::{
    extract::{rejection::JsonRejection, Path, State},
    routing::{get, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, AdminUser};
use crate::{
    admin::{
        account_input::{AccountInput, ProxyInput},
        accounts::{self, AccountView},
        oauth,
    },
    state::AppState,
};

fn one(view: AccountView) -> Json<Value> {
    Json(json!({"success": true, "data": view}))
}

/// The CRUD, toggle, reset and test routes of one account type, at the original's paths.
pub fn platform_routes(base: &str, platform: Platform) -> Router<AppState> {
    Router::new()
        .route(
            base,
            get(move |_: AdminUser, State(state): State<AppState>| async move {
                let all = accounts::list(&state, platform).await?;
                Ok::<_, AdminError>(Json(json!({"success": true, "data": all})))
            })
            .post(
                move |_: AdminUser, State(state): State<AppState>, body: Result<Json<AccountInput>, JsonRejection>| async move {
                    Ok::<_, AdminError>(one(accounts::create(&state, platform, body?.0).await?))
                },
            ),
        )
        .route(
            &format!("{base}/{{id}}"),
            put(
                move |_: AdminUser,
                      State(state): State<AppState>,
                      Path(id): Path<String>,
                      body: Result<Json<AccountInput>, JsonRejection>| async move {
                    Ok::<_, AdminError>(one(accounts::update(&state, &id, Some(platform), body?.0).await?))
                },
            )
            .delete(move |_: AdminUser, State(state): State<AppState>, Path(id): Path<String>| async move {
                accounts::delete(&state, &id, Some(platform)).await?;
                Ok::<_, AdminError>(Json(json!({"success": true, "message": "Account deleted"})))
            }),
        )
        .route(&format!("{base}/{{id}}/toggle-schedulable"), put(toggle_schedulable))
        .route(&format!("{base}/{{id}}/reset-status"), post(reset_status))
        .route(&format!("{base}/{{id}}/test"), post(test_account))
}

pub async fn toggle_schedulable(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let schedulable = accounts::toggle_schedulable(&state, &id).await?;
    Ok(Json(json!({"success": true, "schedulable": schedulable})))
}

/// Active again, every rest lifted (the way out of `blocked` and `error`).
pub async fn reset_status(
    AdminUser(user): AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let view = accounts::reset_status(&state, &id).await?;
    tracing::info!(account = %id, by = %user, "account status reset");
    Ok(one(view))
}

pub async fn refresh_official(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    Ok(one(accounts::refresh_official(&state, &id).await?))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TestInput {
    model: Option<String>,
}

/// Sends one small request through this account (not the scheduler) and reports the outcome.
pub async fn test_account(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<TestInput>>,
) -> Result<Json<Value>, AdminError> {
    let t = accounts::test(&state, &id, body.and_then(|b| b.0.model)).await?;
    Ok(Json(json!({
        "success": t.ok(),
        "data": {"status": t.status, "latencyMs": t.latency_ms, "model": t.model, "response": t.response},
    })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthUrlInput {
    proxy: Option<ProxyInput>,
}

async fn start_authorization(
    state: &AppState,
    body: Option<Json<AuthUrlInput>>,
    setup_token: bool,
) -> Result<Json<Value>, AdminError> {
    let started = oauth::start(state, body.and_then(|b| b.0.proxy), setup_token).await?;
    Ok(Json(json!({
        "success": true,
        "data": {"authUrl": started.auth_url, "sessionId": started.session_id, "instructions": "Open the URL, authorize, then paste the code or the whole callback URL into exchange-code."},
    })))
}

pub async fn generate_auth_url(
    _: AdminUser,
    State(state): State<AppState>,
    body: Option<Json<AuthUrlInput>>,
) -> Result<Json<Value>, AdminError> {
    start_authorization(&state, body, false).await
}

pub async fn generate_setup_token_url(
    _: AdminUser,
    State(state): State<AppState>,
    body: Option<Json<AuthUrlInput>>,
) -> Result<Json<Value>, AdminError> {
    start_authorization(&state, body, true).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInput {
    session_id: String,
    authorization_code: Option<String>,
    callback_url: Option<String>,
}

/// Exchanges the pasted code for tokens, which stay on the server: the answer names the
/// session to create the account from (`POST /admin/claude-accounts {oauthSessionId}`).
pub async fn exchange_code(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<ExchangeInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    let pasted = input
        .authorization_code
        .or(input.callback_url)
        .unwrap_or_default();
    let done = oauth::exchange(&state, &input.session_id, &pasted).await?;
    Ok(Json(json!({
        "success": true,
        "data": {"oauthSessionId": done.session_id, "expiresAt": done.expires_at, "scopes": done.scopes,
                 "hasRefreshToken": done.has_refresh_token},
    })))
}

pub async fn error_history(
    _: AdminUser,
    State(state): State<AppState>,
    Path((_kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    let history = accounts::error_history(&state, &id, 100).await?;
    Ok(Json(json!({"success": true, "data": history})))
}
