//! The admin JSON API, compatible with the original's paths and camelCase fields:
//! `/web/auth/*` for the session, `/admin/*` behind it.
//!
//! - `accounts`: Claude Console and Claude OAuth accounts, their OAuth flows and states;
//! - `groups`: account groups;
//! - `keys`: API keys.

pub mod accounts;
pub mod groups;
pub mod keys;
pub mod pricing;
pub mod records;

use app::{backend::ClientInfo, domain::DashboardSummary};
use axum::{
    extract::{rejection::JsonRejection, FromRequestParts, State},
    http::{request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    state::AppState,
    store::{buckets, Periods, StoreError},
};

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

/// Admin failures: `{success:false,error,message}` with the status.
#[derive(Debug)]
pub enum AdminError {
    Unauthorized,
    BadRequest(String),
    /// A 400 naming the field at fault (`{..., "field": "username"}`).
    Invalid(&'static str, String),
    NotFound(&'static str),
    TooManyAttempts(u64),
    Store(StoreError),
}

impl AdminError {
    /// The message the admin sees (store details stay in the log).
    pub fn message(&self) -> String {
        match self {
            AdminError::Unauthorized => "Missing, invalid or expired admin session".into(),
            AdminError::BadRequest(m) => m.clone(),
            AdminError::Invalid(_, m) => m.clone(),
            AdminError::NotFound(what) => format!("{what} not found"),
            AdminError::TooManyAttempts(secs) => {
                format!("Too many failed logins; try again in {secs} s")
            }
            AdminError::Store(e) => {
                tracing::error!(error = %e, "admin store error");
                "The store is unavailable; retry shortly".into()
            }
        }
    }
}

impl From<JsonRejection> for AdminError {
    fn from(r: JsonRejection) -> Self {
        AdminError::BadRequest(r.body_text())
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let AdminError::Invalid(field, message) = self {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"success": false, "error": "Bad request", "message": message, "field": field})),
            )
                .into_response();
        }
        let (status, error, message) = match self {
            AdminError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Missing, invalid or expired admin session".to_string(),
            ),
            AdminError::BadRequest(m) | AdminError::Invalid(_, m) => {
                (StatusCode::BAD_REQUEST, "Bad request", m)
            }
            AdminError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "Not found",
                format!("{what} not found"),
            ),
            AdminError::TooManyAttempts(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Too many failed logins; try again in {secs} s"),
            ),
            AdminError::Store(e) => {
                tracing::error!(error = %e, "admin API store error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Store unavailable",
                    "The store is unavailable; retry shortly".into(),
                )
            }
        };
        (
            status,
            Json(json!({"success": false, "error": error, "message": message})),
        )
            .into_response()
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

/// Days in the dashboard's usage trend.
const TREND_DAYS: i64 = 14;

pub async fn dashboard_summary(state: &AppState) -> Result<DashboardSummary, AdminError> {
    use app::domain::{ModelUsage, UsagePoint, ACCOUNT_STATES};
    let keys = state.all_keys().await?;
    let accounts = accounts::describe(state, state.store.list_accounts().await?).await?;
    let now = Utc::now();
    let tz = state.config.timezone_offset_hours;
    let today = Periods::at(now, tz);
    // One pipelined read: the trend's days, the last five minutes, then today's models.
    let days: Vec<String> = (0..TREND_DAYS)
        .rev()
        .map(|n| Periods::at(now - chrono::Duration::days(n), tz).day)
        .collect();
    let minutes: Vec<String> = (1..=5)
        .map(|n| Periods::at(now - chrono::Duration::minutes(n), tz).minute)
        .collect();
    let models = state.store.models_used(&today.day).await?;
    let names: Vec<String> = days
        .iter()
        .map(|d| buckets::global_day(d))
        .chain(minutes.iter().map(|m| buckets::global_minute(m)))
        .chain(models.iter().map(|m| buckets::model_day(m, &today.day)))
        .collect();
    let usage = state.store.usage(&names).await?;
    let unpriced_models = crate::accounting::unpriced::list(state).await?;
    let (trend_usage, rest) = usage.split_at(days.len());
    let (minute_usage, model_usage) = rest.split_at(minutes.len());
    let mut models: Vec<ModelUsage> = models
        .into_iter()
        .zip(model_usage)
        .filter(|(_, u)| u.requests > 0)
        .map(|(model, usage)| ModelUsage {
            model,
            usage: *usage,
        })
        .collect();
    models.sort_by(|a, b| {
        (b.usage.cost_nanos, b.usage.requests).cmp(&(a.usage.cost_nanos, a.usage.requests))
    });
    let live: Vec<_> = keys.iter().filter(|k| !k.key.is_deleted).collect();
    let by_state = ACCOUNT_STATES
        .iter()
        .map(|st| {
            let n = accounts.iter().filter(|a| a["state"] == *st).count() as u64;
            (st.to_string(), n)
        })
        .collect();
    Ok(DashboardSummary {
        username: String::new(),
        total_keys: live.len() as u64,
        active_keys: live.iter().filter(|k| k.key.is_active).count() as u64,
        total_accounts: accounts.len() as u64,
        schedulable_accounts: accounts.iter().filter(|a| a["state"] == "normal").count() as u64,
        accounts_by_state: by_state,
        today: trend_usage.last().copied().unwrap_or_default(),
        rpm: minute_usage.iter().map(|u| u.requests).sum::<u64>() as f64 / 5.0,
        tpm: minute_usage.iter().map(|u| u.all_tokens()).sum::<u64>() as f64 / 5.0,
        trend: days
            .into_iter()
            .zip(trend_usage)
            .map(|(period, usage)| UsagePoint {
                period,
                usage: *usage,
            })
            .collect(),
        models,
        store_engine: state.store.engine().to_string(),
        unpriced_models,
    })
}

async fn dashboard(_: AdminUser, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let s = dashboard_summary(&state).await?;
    Ok(Json(json!({"success": true, "data": s})))
}
