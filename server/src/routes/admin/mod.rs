//! The admin JSON API, compatible with the original's paths and camelCase fields:
//! `/web/auth/*` for the session, `/admin/*` behind it. Each handler extracts, calls the
//! action in `crate::admin` and shapes its answer; the rules live there.
//!
//! - `accounts`: Claude Console and Claude OAuth accounts, their OAuth flows and states;
//! - `groups`: account groups;
//! - `keys`: API keys.

pub mod accounts;
pub mod groups;
pub mod keys;
pub mod pricing;
pub mod records;

use app::backend::ClientInfo;
use axum::{
    extract::{rejection::JsonRejection, FromRequestParts, State},
    http::{request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{state::AppState, store::StoreError};

pub fn routes() -> Router<AppState> {
    use accounts::*;
    use app::domain::Platform;
    let mut router = Router::new()
        .route("/web/auth/login", post(login))
        .route("/web/auth/logout", post(logout))
        .route("/web/auth/change-password", post(change_password))
        .route("/web/auth/user", get(current_user))
        .route("/admin/dashboard", get(dashboard))
        .route("/admin/pricing", get(pricing::status))
        .route("/admin/pricing/refresh", post(pricing::refresh))
        .route("/admin/request-records", get(records::list))
        .route("/admin/request-records.csv", get(records::csv))
        .route(
            "/admin/claude-accounts/{id}/refresh",
            post(refresh_official),
        )
        .route(
            "/admin/claude-accounts/generate-auth-url",
            post(generate_auth_url),
        )
        .route(
            "/admin/claude-accounts/generate-setup-token-url",
            post(generate_setup_token_url),
        )
        .route("/admin/claude-accounts/exchange-code", post(exchange_code))
        .route(
            "/admin/claude-accounts/exchange-setup-token-code",
            post(exchange_code),
        )
        .route(
            "/admin/accounts/{kind}/{id}/error-history",
            get(error_history),
        )
        .route(
            "/admin/account-groups",
            get(groups::list).post(groups::create),
        )
        .route(
            "/admin/account-groups/{id}",
            get(groups::get_one)
                .put(groups::update)
                .delete(groups::delete),
        )
        .route("/admin/account-groups/{id}/members", get(groups::members))
        .route(
            "/admin/api-keys",
            get(keys::list_keys).post(keys::create_key),
        )
        .route(
            "/admin/api-keys/batch",
            post(keys::batch_create).put(keys::batch_update),
        )
        .route(
            "/admin/api-keys/{id}",
            put(keys::update_key).delete(keys::delete_key),
        );
    for (base, platform) in [
        ("/admin/claude-accounts", Platform::ClaudeOfficial),
        ("/admin/claude-console-accounts", Platform::ClaudeConsole),
        (
            "/admin/openai-responses-accounts",
            Platform::OpenaiResponses,
        ),
        ("/admin/azure-openai-accounts", Platform::AzureOpenai),
        ("/admin/gemini-api-accounts", Platform::GeminiApi),
        ("/admin/bedrock-accounts", Platform::Bedrock),
    ] {
        router = router.merge(platform_routes(base, platform));
    }
    router
}

pub use crate::admin::AdminError;

impl From<JsonRejection> for AdminError {
    fn from(r: JsonRejection) -> Self {
        AdminError::BadRequest(r.body_text())
    }
}

/// Admin failures: `{success:false,error,message}` with the status (and `field` when one
/// field is at fault).
impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, error) = self.status();
        let mut body = json!({"success": false, "error": error, "message": self.message()});
        if let AdminError::Invalid(field, _) = self {
            body["field"] = json!(field);
        }
        (status, Json(body)).into_response()
    }
}

/// The admin token from `Authorization: Bearer`, `x-admin-token`, or the session cookie.
pub fn admin_token(headers: &HeaderMap) -> Option<String> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(t) = header("authorization").and_then(|a| a.strip_prefix("Bearer ")) {
        return Some(t.trim().to_string());
    }
    if let Some(t) = header("x-admin-token").filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == app::SESSION_COOKIE || *k == "adminToken")
        .map(|(_, v)| v.to_string())
}

/// An authenticated admin: every `/admin/*` handler takes one.
pub struct AdminUser(pub String);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let token = admin_token(&parts.headers).ok_or(AdminError::Unauthorized)?;
        state
            .admin
            .session_user(&token)
            .await
            .map(AdminUser)
            .ok_or(AdminError::Unauthorized)
    }
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientInfo>>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(r) => return AdminError::from(r).into_response(),
    };
    let ip = client.and_then(|c| c.0.ip);
    use app::backend::LoginRefusal;
    match state.admin.login(&body.username, &body.password, ip).await {
        Ok(g) => Json(json!({"success": true, "token": g.token, "expiresIn": g.expires_in_secs * 1000, "username": g.username})).into_response(),
        Err(LoginRefusal::Invalid(field, message)) => AdminError::Invalid(field, message).into_response(),
        Err(LoginRefusal::InvalidCredentials) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"success": false, "error": "Invalid credentials", "message": "Invalid username or password"})),
        )
            .into_response(),
        Err(LoginRefusal::TooManyAttempts(s)) => AdminError::TooManyAttempts(s).into_response(),
        Err(LoginRefusal::Unavailable) => AdminError::Store(StoreError::Unavailable("login".into())).into_response(),
    }
}

/// The original's body: `{newUsername?, currentPassword, newPassword}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangePasswordBody {
    #[serde(default)]
    new_username: Option<String>,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /web/auth/change-password`: as the original, every session ends (this one too) and
/// the answer asks to sign in again.
async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<ClientInfo>>,
    body: Result<Json<ChangePasswordBody>, JsonRejection>,
) -> Response {
    use app::backend::{ChangeRefusal, PasswordChange};
    let Some(token) = admin_token(&headers) else {
        return AdminError::Unauthorized.into_response();
    };
    let body = match body {
        Ok(Json(b)) => b,
        Err(r) => return AdminError::from(r).into_response(),
    };
    let change = PasswordChange {
        current_password: body.current_password,
        new_password: body.new_password,
        new_username: body.new_username,
    };
    let ip = client.and_then(|c| c.0.ip);
    match state.admin.change_password(&token, &change, ip).await {
        Ok(username) => Json(json!({
            "success": true,
            "message": "Password changed successfully. Please login again.",
            "newUsername": username,
        }))
        .into_response(),
        Err(ChangeRefusal::Unauthorized) => AdminError::Unauthorized.into_response(),
        Err(ChangeRefusal::Invalid(field, message)) => AdminError::Invalid(field, message).into_response(),
        Err(ChangeRefusal::WrongPassword) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"success": false, "error": "Invalid current password", "message": "Current password is incorrect"})),
        )
            .into_response(),
        Err(ChangeRefusal::TooManyAttempts(s)) => AdminError::TooManyAttempts(s).into_response(),
        Err(ChangeRefusal::Unavailable) => {
            AdminError::Store(StoreError::Unavailable("change password".into())).into_response()
        }
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    if let Some(t) = admin_token(&headers) {
        state.admin.logout(&t).await;
    }
    Json(json!({"success": true, "message": "Logged out"}))
}

async fn current_user(AdminUser(user): AdminUser) -> Json<Value> {
    Json(json!({"success": true, "user": {"username": user}}))
}

async fn dashboard(_: AdminUser, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let s = crate::admin::dashboard::summary(&state).await?;
    Ok(Json(json!({"success": true, "data": s})))
}
