//! The admin JSON API, compatible with the original's paths and camelCase fields:
//! `/web/auth/*` for the session, `/admin/*` behind it.

use std::net::SocketAddr;

use app::domain::{Account, ApiKey, DashboardSummary, ExpirationMode, Platform};
use axum::{
    extract::{rejection::JsonRejection, ConnectInfo, FromRequestParts, Path, State},
    http::{request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    auth::api_key::{format_time, generate, parse_time},
    state::AppState,
    store::{buckets, Periods, StoreError, StoredAccount, StoredKey},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/web/auth/login", post(login))
        .route("/web/auth/logout", post(logout))
        .route("/web/auth/user", get(current_user))
        .route("/admin/dashboard", get(dashboard))
        .route(
            "/admin/claude-console-accounts",
            get(list_accounts).post(create_account),
        )
        .route(
            "/admin/claude-console-accounts/{id}",
            put(update_account).delete(delete_account),
        )
        .route("/admin/api-keys", get(list_keys).post(create_key))
        .route("/admin/api-keys/{id}", put(update_key).delete(delete_key))
}

/// Admin failures: `{success:false,error,message}` with the status.
#[derive(Debug)]
pub enum AdminError {
    Unauthorized,
    BadRequest(String),
    NotFound(&'static str),
    TooManyAttempts(u64),
    Store(StoreError),
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
        let (status, error, message) = match self {
            AdminError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Missing, invalid or expired admin session".to_string(),
            ),
            AdminError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
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
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(r) => return AdminError::from(r).into_response(),
    };
    use app::backend::LoginRefusal;
    match state.admin.login(&body.username, &body.password, connect.map(|c| c.0 .0.ip())).await {
        Ok(g) => Json(json!({"success": true, "token": g.token, "expiresIn": g.expires_in_secs * 1000, "username": g.username})).into_response(),
        Err(LoginRefusal::InvalidCredentials) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"success": false, "error": "Invalid credentials", "message": "Invalid username or password"})),
        )
            .into_response(),
        Err(LoginRefusal::TooManyAttempts(s)) => AdminError::TooManyAttempts(s).into_response(),
        Err(LoginRefusal::Unavailable) => AdminError::Store(StoreError::Unavailable("login".into())).into_response(),
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

pub async fn dashboard_summary(state: &AppState) -> Result<DashboardSummary, StoreError> {
    let keys = state.store.list_keys().await?;
    let accounts = state.store.list_accounts().await?;
    let day = Periods::at(Utc::now(), state.config.timezone_offset_hours).day;
    let today = state
        .store
        .usage(&[buckets::global_day(&day)])
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let live: Vec<_> = keys.iter().filter(|k| !k.key.is_deleted).collect();
    Ok(DashboardSummary {
        username: String::new(),
        total_keys: live.len() as u64,
        active_keys: live.iter().filter(|k| k.key.is_active).count() as u64,
        total_accounts: accounts.len() as u64,
        schedulable_accounts: accounts
            .iter()
            .filter(|a| a.account.is_active && a.account.schedulable)
            .count() as u64,
        today,
        store_engine: state.store.engine().to_string(),
    })
}

async fn dashboard(_: AdminUser, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let s = dashboard_summary(&state).await?;
    Ok(Json(json!({"success": true, "data": s})))
}

// ---- Claude Console accounts ----

/// Create and update body. Every field is optional on update.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AccountInput {
    name: Option<String>,
    description: Option<String>,
    api_url: Option<String>,
    api_key: Option<String>,
    priority: Option<u32>,
    is_active: Option<bool>,
    schedulable: Option<bool>,
    /// A list, or the original's mapping object `{requested: upstream}` (its keys are taken).
    supported_models: Option<Value>,
    user_agent: Option<String>,
}

fn models_from(v: &Value) -> Result<Vec<String>, AdminError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    AdminError::BadRequest("supportedModels must hold strings".into())
                })
            })
            .collect(),
        Value::Object(map) => Ok(map.keys().cloned().collect()),
        _ => Err(AdminError::BadRequest(
            "supportedModels must be a list or an object".into(),
        )),
    }
}

fn apply_account(
    state: &AppState,
    a: &mut StoredAccount,
    input: AccountInput,
) -> Result<(), AdminError> {
    if let Some(name) = input.name {
        if name.trim().is_empty() {
            return Err(AdminError::BadRequest("name must not be empty".into()));
        }
        a.account.name = name.trim().to_string();
    }
    if let Some(d) = input.description {
        a.account.description = d;
    }
    if let Some(url) = input.api_url {
        let url = url.trim().trim_end_matches('/').to_string();
        if reqwest::Url::parse(&url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            return Err(AdminError::BadRequest(
                "apiUrl must be an http(s) URL".into(),
            ));
        }
        a.account.api_url = url;
    }
    if let Some(key) = input.api_key.filter(|k| !k.trim().is_empty()) {
        a.secret = state.crypto.encrypt(key.trim());
    }
    if let Some(p) = input.priority {
        if !(1..=100).contains(&p) {
            return Err(AdminError::BadRequest(
                "priority must be between 1 and 100".into(),
            ));
        }
        a.account.priority = p;
    }
    if let Some(v) = input.is_active {
        a.account.is_active = v;
    }
    if let Some(v) = input.schedulable {
        a.account.schedulable = v;
    }
    if let Some(m) = input.supported_models {
        a.account.supported_models = models_from(&m)?;
    }
    if let Some(ua) = input.user_agent {
        a.account.user_agent = Some(ua).filter(|u| !u.trim().is_empty());
    }
    Ok(())
}

async fn list_accounts(
    _: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, AdminError> {
    let snap = state.store.account_snapshot(None).await?;
    let mut list: Vec<Account> = snap
        .accounts
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.account.platform == Platform::ClaudeConsole)
        .map(|mut a| {
            if let Some(ms) = snap.last_used_ms.get(&a.account.id) {
                a.account.last_used_at =
                    chrono::DateTime::from_timestamp_millis(*ms).map(format_time);
            }
            a.account
        })
        .collect();
    list.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    Ok(Json(json!({"success": true, "data": list})))
}

async fn create_account(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<AccountInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    if input.api_url.is_none() {
        return Err(AdminError::BadRequest("apiUrl is required".into()));
    }
    if input.api_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
        return Err(AdminError::BadRequest("apiKey is required".into()));
    }
    let mut a = StoredAccount {
        account: Account {
            id: uuid::Uuid::new_v4().to_string(),
            platform: Platform::ClaudeConsole,
            created_at: format_time(Utc::now()),
            ..Default::default()
        },
        secret: String::new(),
    };
    apply_account(&state, &mut a, input)?;
    state.store.put_account(&a).await?;
    Ok(Json(json!({"success": true, "data": a.account})))
}

async fn update_account(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<AccountInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    let mut a = state
        .store
        .get_account(&id)
        .await?
        .ok_or(AdminError::NotFound("Account"))?;
    apply_account(&state, &mut a, input)?;
    state.store.put_account(&a).await?;
    Ok(Json(json!({"success": true, "data": a.account})))
}

async fn delete_account(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    if !state.store.delete_account(&id).await? {
        return Err(AdminError::NotFound("Account"));
    }
    Ok(Json(json!({"success": true, "message": "Account deleted"})))
}

// ---- API keys ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KeyInput {
    name: Option<String>,
    description: Option<String>,
    is_active: Option<bool>,
    /// A list, or the original's legacy string (`"all"`, `"claude"`).
    permissions: Option<Value>,
    tags: Option<Vec<String>>,
    claude_console_account_id: Option<Option<String>>,
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

async fn list_keys(_: AdminUser, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
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
                "total": super::claude::usage_json(&usage[i * 2]),
                "daily": super::claude::usage_json(&usage[i * 2 + 1]),
            });
            v
        })
        .collect();
    Ok(Json(json!({"success": true, "data": data})))
}

async fn create_key(
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

async fn update_key(
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
async fn delete_key(
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
