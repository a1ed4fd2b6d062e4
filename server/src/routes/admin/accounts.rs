//! Claude Console and Claude OAuth accounts: CRUD in the original's shape, the PKCE and
//! setup-token flows, toggles, status reset, a test call, and the error history. No response
//! ever carries a credential.

use std::time::Duration;

use app::domain::{Account, AccountType, Platform, ProxyConfig};
use axum::{
    extract::{rejection::JsonRejection, OriginalUri, Path, State},
    http::HeaderMap,
    routing::{get, post, put},
    Json, Router,
};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, AdminUser};
use crate::{
    auth::api_key::format_time,
    relay::passthrough::{self, Attempt, Exchange},
    scheduler::health,
    state::AppState,
    store::{OAuthSession, StoredAccount},
    upstream::{claude_oauth, AccountSecrets},
};

/// How long a PKCE authorization may take.
const OAUTH_SESSION_TTL: Duration = Duration::from_secs(600);

/// Create and update body. Every field is optional on update.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccountInput {
    name: Option<String>,
    description: Option<String>,
    /// The upstream base URL (`baseApi` for OpenAI-compatible, `baseUrl` for Gemini,
    /// `azureEndpoint` for Azure accounts).
    #[serde(alias = "baseApi", alias = "baseUrl", alias = "azureEndpoint")]
    api_url: Option<String>,
    deployment_name: Option<String>,
    api_version: Option<String>,
    /// Bedrock: the region, and AWS keys (or `bearerToken`, a Bedrock API key).
    region: Option<String>,
    aws_credentials: Option<AwsCredentialsInput>,
    bearer_token: Option<String>,
    api_key: Option<String>,
    priority: Option<u32>,
    is_active: Option<bool>,
    schedulable: Option<bool>,
    /// A list, or the original's mapping object `{requested: upstream}` (its keys are taken).
    supported_models: Option<Value>,
    user_agent: Option<String>,
    account_type: Option<AccountType>,
    max_concurrency: Option<u32>,
    /// The original's name for Console accounts' concurrency limit.
    max_concurrent_tasks: Option<u32>,
    disable_auto_protection: Option<bool>,
    /// `null` removes the proxy.
    proxy: Option<Option<ProxyInput>>,
    /// OAuth accounts: tokens from `exchange-code` (kept server-side) …
    oauth_session_id: Option<String>,
    /// … or given directly, as the original accepts them.
    claude_ai_oauth: Option<OAuthInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyInput {
    #[serde(rename = "type")]
    kind: String,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentialsInput {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthInput {
    access_token: String,
    refresh_token: Option<String>,
    /// ms since the epoch.
    expires_at: Option<i64>,
    scopes: Option<Vec<String>>,
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

fn apply(state: &AppState, a: &mut StoredAccount, input: AccountInput) -> Result<(), AdminError> {
    let too_long = |e: app::bounds::TooLong| AdminError::Invalid(e.field, e.to_string());
    if let Some(name) = &input.name {
        app::bounds::name("name", name.trim()).map_err(too_long)?;
    }
    if let Some(d) = &input.description {
        app::bounds::description("description", d).map_err(too_long)?;
    }
    let mut secrets = AccountSecrets::open(&state.crypto, a).map_err(|_| {
        AdminError::BadRequest(
            "the stored credential cannot be read with this ENCRYPTION_KEY".into(),
        )
    })?;
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
        secrets.api_key = Some(key.trim().to_string());
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
    // These three go into upstream URLs: only plain values are stored.
    if let Some(d) = input.deployment_name {
        let d = d.trim();
        if !d.is_empty() && !crate::upstream::azure::valid_deployment(d) {
            return Err(AdminError::BadRequest(
                "deploymentName must be letters, digits, '.', '_' or '-' (at most 64)".into(),
            ));
        }
        a.account.deployment_name = Some(d.to_string()).filter(|d| !d.is_empty());
    }
    if let Some(v) = input.api_version {
        let v = v.trim();
        if !v.is_empty() && !crate::upstream::azure::valid_api_version(v) {
            return Err(AdminError::BadRequest(
                "apiVersion must be letters, digits, '.' or '-' (at most 32), e.g. 2024-10-21"
                    .into(),
            ));
        }
        a.account.api_version = Some(v.to_string()).filter(|v| !v.is_empty());
    }
    if let Some(r) = input.region {
        let r = r.trim();
        if !r.is_empty() && !crate::upstream::bedrock::valid_region(r) {
            return Err(AdminError::BadRequest(
                "region must be an AWS region such as us-east-1".into(),
            ));
        }
        a.account.region = Some(r.to_string()).filter(|r| !r.is_empty());
    }
    if let Some(c) = input.aws_credentials {
        if c.access_key_id.trim().is_empty() || c.secret_access_key.trim().is_empty() {
            return Err(AdminError::BadRequest(
                "awsCredentials needs accessKeyId and secretAccessKey".into(),
            ));
        }
        secrets.aws_access_key_id = Some(c.access_key_id.trim().to_string());
        secrets.aws_secret_access_key = Some(c.secret_access_key.trim().to_string());
        secrets.aws_session_token = c.session_token.filter(|t| !t.is_empty());
        secrets.api_key = None;
    }
    if let Some(t) = input.bearer_token.filter(|t| !t.trim().is_empty()) {
        secrets.api_key = Some(t.trim().to_string());
    }
    if let Some(t) = input.account_type {
        a.account.account_type = t;
    }
    if let Some(m) = input.max_concurrency.or(input.max_concurrent_tasks) {
        a.account.max_concurrency = m;
    }
    if let Some(v) = input.disable_auto_protection {
        a.account.disable_auto_protection = v;
    }
    match input.proxy {
        Some(None) => {
            a.account.proxy = None;
            secrets.proxy_password = None;
        }
        Some(Some(p)) => {
            if !matches!(p.kind.as_str(), "socks5" | "http" | "https") {
                return Err(AdminError::BadRequest(
                    "proxy.type must be socks5, http or https".into(),
                ));
            }
            if p.host.trim().is_empty() || p.port == 0 {
                return Err(AdminError::BadRequest(
                    "proxy.host and proxy.port are required".into(),
                ));
            }
            a.account.proxy = Some(ProxyConfig {
                kind: p.kind,
                host: p.host.trim().to_string(),
                port: p.port,
                username: p.username.filter(|u| !u.is_empty()),
            });
            if p.password.is_some() {
                secrets.proxy_password = p.password.filter(|pw| !pw.is_empty());
            }
        }
        None => {}
    }
    if let Some(o) = input.claude_ai_oauth {
        if o.access_token.trim().is_empty() {
            return Err(AdminError::BadRequest(
                "claudeAiOauth.accessToken is required".into(),
            ));
        }
        secrets.access_token = Some(o.access_token);
        secrets.refresh_token = o.refresh_token.filter(|r| !r.is_empty());
        a.account.token_expires_at = o.expires_at;
        a.account.scopes = o.scopes.unwrap_or_default();
    }
    a.secret = secrets.seal(&state.crypto);
    Ok(())
}

/// An account as listed: its record, its live rests and a one-word state.
pub(crate) async fn describe(
    state: &AppState,
    accounts: Vec<StoredAccount>,
) -> Result<Vec<Value>, AdminError> {
    let snap = state.store.account_snapshot(None).await?;
    let ids: Vec<String> = accounts.iter().map(|a| a.account.id.clone()).collect();
    let rests = state.store.cooldowns(&ids).await?;
    let mut out = Vec::with_capacity(accounts.len());
    for mut a in accounts {
        if let Some(ms) = snap.last_used_ms.get(&a.account.id) {
            a.account.last_used_at = chrono::DateTime::from_timestamp_millis(*ms).map(format_time);
        }
        let cooldowns = rests.get(&a.account.id).cloned().unwrap_or_default();
        let acct = &a.account;
        let state_word = if acct.status == "blocked" {
            "blocked"
        } else if acct.status == "error" {
            "error"
        } else if !acct.is_active || !acct.schedulable {
            "paused"
        } else if cooldowns.iter().any(|c| c.class == "rate_limit") {
            "rate_limited"
        } else if !cooldowns.is_empty() {
            "cooling_down"
        } else {
            "normal"
        };
        let mut v = serde_json::to_value(&a.account).unwrap_or(Value::Null);
        v["state"] = json!(state_word);
        v["cooldowns"] = json!(cooldowns);
        v["hasRefreshToken"] = json!(AccountSecrets::open(&state.crypto, &a)
            .map(|s| s.refresh_token.is_some())
            .unwrap_or(false));
        out.push(v);
    }
    Ok(out)
}

async fn list(state: &AppState, platform: Platform) -> Result<Json<Value>, AdminError> {
    let mut accounts: Vec<StoredAccount> = state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .filter(|a| a.account.platform == platform)
        .collect();
    accounts.sort_by(|a, b| {
        (a.account.priority, &a.account.name).cmp(&(b.account.priority, &b.account.name))
    });
    Ok(Json(
        json!({"success": true, "data": describe(state, accounts).await?}),
    ))
}

fn new_account(platform: Platform) -> StoredAccount {
    StoredAccount {
        account: Account {
            id: uuid::Uuid::new_v4().to_string(),
            platform,
            created_at: format_time(Utc::now()),
            ..Default::default()
        },
        secret: String::new(),
    }
}

async fn save(state: &AppState, a: &StoredAccount) -> Result<Json<Value>, AdminError> {
    state.store.put_account(a).await?;
    state.scheduler.invalidate();
    let described = describe(state, vec![a.clone()]).await?;
    Ok(Json(
        json!({"success": true, "data": described.into_iter().next()}),
    ))
}

async fn load(
    state: &AppState,
    id: &str,
    platform: Option<Platform>,
) -> Result<StoredAccount, AdminError> {
    state
        .store
        .get_account(id)
        .await?
        .filter(|a| platform.is_none_or(|p| a.account.platform == p))
        .ok_or(AdminError::NotFound("Account"))
}

async fn create_keyed(
    state: &AppState,
    platform: Platform,
    mut input: AccountInput,
    default_url: Option<&str>,
) -> Result<Json<Value>, AdminError> {
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    if input.api_url.is_none() {
        match default_url {
            Some(u) => input.api_url = Some(u.to_string()),
            None => return Err(AdminError::BadRequest("apiUrl is required".into())),
        }
    }
    if input.api_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
        return Err(AdminError::BadRequest("apiKey is required".into()));
    }
    let mut a = new_account(platform);
    apply(state, &mut a, input)?;
    save(state, &a).await
}

/// Creates an account of `platform`, with what that kind requires.
pub(crate) async fn create(
    state: &AppState,
    platform: Platform,
    input: AccountInput,
) -> Result<Json<Value>, AdminError> {
    match platform {
        Platform::ClaudeConsole => create_keyed(state, platform, input, None).await,
        Platform::OpenaiResponses => {
            create_keyed(state, platform, input, Some("https://api.openai.com")).await
        }
        Platform::GeminiApi => {
            create_keyed(
                state,
                platform,
                input,
                Some(crate::upstream::gemini::DEFAULT_BASE),
            )
            .await
        }
        Platform::AzureOpenai => {
            if input
                .deployment_name
                .as_deref()
                .is_none_or(|d| d.trim().is_empty())
            {
                return Err(AdminError::BadRequest("deploymentName is required".into()));
            }
            create_keyed(state, platform, input, None).await
        }
        Platform::Bedrock => create_bedrock(state, input).await,
        Platform::ClaudeOfficial => create_official(state, input).await,
    }
}

/// The CRUD, toggle, reset and test routes of one account type, at the original's paths.
pub fn platform_routes(base: &str, platform: Platform) -> Router<AppState> {
    Router::new()
        .route(
            base,
            get(move |_: AdminUser, State(state): State<AppState>| async move { list(&state, platform).await }).post(
                move |_: AdminUser, State(state): State<AppState>, body: Result<Json<AccountInput>, JsonRejection>| async move {
                    create(&state, platform, body?.0).await
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
                    update(&state, &id, platform, body?.0).await
                },
            )
            .delete(move |_: AdminUser, State(state): State<AppState>, Path(id): Path<String>| async move {
                delete(&state, &id, platform).await
            }),
        )
        .route(&format!("{base}/{{id}}/toggle-schedulable"), put(toggle_schedulable))
        .route(&format!("{base}/{{id}}/reset-status"), post(reset_status))
        .route(&format!("{base}/{{id}}/test"), post(test_account))
}

async fn create_bedrock(state: &AppState, input: AccountInput) -> Result<Json<Value>, AdminError> {
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    if input.aws_credentials.is_none()
        && input
            .bearer_token
            .as_deref()
            .is_none_or(|t| t.trim().is_empty())
    {
        return Err(AdminError::BadRequest(
            "awsCredentials or bearerToken is required".into(),
        ));
    }
    let mut a = new_account(Platform::Bedrock);
    a.account.region = Some("us-east-1".into());
    apply(state, &mut a, input)?;
    save(state, &a).await
}

async fn create_official(
    state: &AppState,
    mut input: AccountInput,
) -> Result<Json<Value>, AdminError> {
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    let mut a = new_account(Platform::ClaudeOfficial);
    a.account.api_url = state.config.claude_api_url.clone();
    if let Some(sid) = input.oauth_session_id.take() {
        let session =
            state.store.get_oauth_session(&sid).await?.ok_or_else(|| {
                AdminError::BadRequest("oauthSessionId is unknown or expired".into())
            })?;
        let sealed = session.tokens.ok_or_else(|| {
            AdminError::BadRequest(
                "the authorization code of this session was not exchanged yet".into(),
            )
        })?;
        let tokens: AccountSecrets = serde_json::from_str(
            &state
                .crypto
                .decrypt(&sealed)
                .map_err(|_| AdminError::BadRequest("session tokens unreadable".into()))?,
        )
        .map_err(|_| AdminError::BadRequest("session tokens unreadable".into()))?;
        input.claude_ai_oauth = Some(OAuthInput {
            access_token: tokens.access_token.unwrap_or_default(),
            refresh_token: tokens.refresh_token,
            expires_at: session.expires_at,
            scopes: Some(session.granted_scopes),
        });
        if input.proxy.is_none() {
            if let Some(p) = session.proxy {
                let password = session
                    .proxy_secret
                    .and_then(|s| state.crypto.decrypt(&s).ok());
                input.proxy = Some(Some(ProxyInput {
                    kind: p.kind,
                    host: p.host,
                    port: p.port,
                    username: p.username,
                    password,
                }));
            }
        }
        state.store.delete_oauth_session(&sid).await?;
    }
    if input.claude_ai_oauth.is_none() {
        return Err(AdminError::BadRequest(
            "oauthSessionId (from exchange-code) or claudeAiOauth is required".into(),
        ));
    }
    apply(state, &mut a, input)?;
    save(state, &a).await
}

pub(crate) async fn update(
    state: &AppState,
    id: &str,
    platform: Platform,
    input: AccountInput,
) -> Result<Json<Value>, AdminError> {
    let mut a = load(state, id, Some(platform)).await?;
    apply(state, &mut a, input)?;
    save(state, &a).await
}

async fn delete(state: &AppState, id: &str, platform: Platform) -> Result<Json<Value>, AdminError> {
    load(state, id, Some(platform)).await?;
    state.store.delete_account(id).await?;
    state.scheduler.invalidate();
    Ok(Json(json!({"success": true, "message": "Account deleted"})))
}

pub async fn toggle_schedulable(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let mut a = load(&state, &id, None).await?;
    a.account.schedulable = !a.account.schedulable;
    state.store.put_account(&a).await?;
    state.scheduler.invalidate();
    Ok(Json(
        json!({"success": true, "schedulable": a.account.schedulable}),
    ))
}

/// Active again, every rest lifted (the way out of `blocked` and `error`).
pub async fn reset_status(
    AdminUser(user): AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let mut a = load(&state, &id, None).await?;
    health::reset(&state, &mut a).await?;
    state.scheduler.invalidate();
    tracing::info!(account = %id, by = %user, "account status reset");
    save(&state, &a).await
}

pub async fn refresh_official(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let mut a = load(&state, &id, Some(Platform::ClaudeOfficial)).await?;
    // Expire it now, so the shared refresh path (with its lock) does the work.
    a.account.token_expires_at = Some(0);
    state.store.put_account(&a).await?;
    let before = a.account.token_expires_at;
    let _ = claude_oauth::access_token(&state, &a).await;
    let after = load(&state, &id, None).await?;
    if after.account.token_expires_at == before {
        return Err(AdminError::BadRequest(format!(
            "refresh failed: {}",
            after.account.error_message
        )));
    }
    save(&state, &after).await
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
    let a = load(&state, &id, None).await?;
    let model = body
        .and_then(|b| b.0.model)
        .unwrap_or_else(|| "claude-sonnet-4-5-20250929".into());
    use crate::relay::{attempts::Call, protocol::Protocol};
    let (protocol, path, payload) = match a.account.platform {
        Platform::ClaudeConsole | Platform::ClaudeOfficial | Platform::Bedrock => (
            Protocol::Anthropic,
            "/v1/messages".to_string(),
            json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}),
        ),
        Platform::OpenaiResponses | Platform::AzureOpenai => (
            Protocol::OpenAi,
            "/v1/chat/completions".to_string(),
            json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}),
        ),
        Platform::GeminiApi => (
            Protocol::Gemini,
            format!("{model}:generateContent"),
            json!({"contents": [{"role": "user", "parts": [{"text": "ping"}]}]}),
        ),
    };
    let headers = HeaderMap::new();
    let call = Call {
        protocol,
        platforms: &[],
        endpoint: "/admin/test",
        upstream_path: path,
        model: &model,
        stream: false,
        session: None,
        headers: &headers,
        query: None,
        body: Bytes::from(payload.to_string()),
        output_limit: None,
        strip_usage: false,
    };
    let request = crate::upstream::request(&state, &a, &call)
        .await
        .map_err(|e| AdminError::BadRequest(e.message()))?;
    let started = std::time::Instant::now();
    let ex = Exchange {
        request_id: format!("test-{}", uuid::Uuid::new_v4()),
        // Tests spend upstream tokens: they are accounted to the account, under this pseudo key.
        key_id: "admin-test".into(),
        account_id: id.clone(),
        model: model.clone(),
        endpoint: "/v1/messages",
        stream: false,
        started,
        lease: None,
        service: a.account.platform.service(),
        rate: 1.0,
        reservation: None,
        protocol,
        span: tracing::Span::current(),
        preview: None,
        output_limit: None,
        input_estimate: 0,
        strip_usage: false,
    };
    let (status, answer) = match passthrough::send(&state, request, ex).await {
        Attempt::Delivered(resp) => (resp.status().as_u16(), body_text(resp).await),
        Attempt::Failed(f) => (f.status, String::from_utf8_lossy(&f.body).to_string()),
    };
    Ok(Json(json!({
        "success": (200..300).contains(&status),
        "data": {"status": status, "latencyMs": started.elapsed().as_millis() as u64, "model": model,
                 "response": answer.chars().take(2000).collect::<String>()},
    })))
}

async fn body_text(resp: axum::response::Response) -> String {
    axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthUrlInput {
    proxy: Option<ProxyInput>,
}

async fn start_authorization(
    state: &AppState,
    body: Option<Json<AuthUrlInput>>,
    scopes: &str,
) -> Result<Json<Value>, AdminError> {
    let (verifier, challenge) = claude_oauth::pkce();
    let oauth_state = claude_oauth::random_state();
    let session_id = uuid::Uuid::new_v4().to_string();
    let proxy = body.and_then(|b| b.0.proxy);
    let session = OAuthSession {
        code_verifier: verifier,
        state: oauth_state.clone(),
        scopes: scopes.to_string(),
        proxy_secret: proxy
            .as_ref()
            .and_then(|p| p.password.as_ref())
            .map(|pw| state.crypto.encrypt(pw)),
        proxy: proxy.map(|p| ProxyConfig {
            kind: p.kind,
            host: p.host,
            port: p.port,
            username: p.username,
        }),
        ..Default::default()
    };
    state
        .store
        .put_oauth_session(&session_id, &session, OAUTH_SESSION_TTL)
        .await?;
    let auth_url = claude_oauth::authorize_url(&state.config, &challenge, &oauth_state, scopes);
    Ok(Json(json!({
        "success": true,
        "data": {"authUrl": auth_url, "sessionId": session_id, "instructions": "Open the URL, authorize, then paste the code or the whole callback URL into exchange-code."},
    })))
}

pub async fn generate_auth_url(
    _: AdminUser,
    State(state): State<AppState>,
    body: Option<Json<AuthUrlInput>>,
) -> Result<Json<Value>, AdminError> {
    start_authorization(&state, body, claude_oauth::SCOPES_FULL).await
}

pub async fn generate_setup_token_url(
    _: AdminUser,
    State(state): State<AppState>,
    body: Option<Json<AuthUrlInput>>,
) -> Result<Json<Value>, AdminError> {
    start_authorization(&state, body, claude_oauth::SCOPES_SETUP).await
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
    OriginalUri(_uri): OriginalUri,
    body: Result<Json<ExchangeInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    let mut session = state
        .store
        .get_oauth_session(&input.session_id)
        .await?
        .ok_or_else(|| AdminError::BadRequest("sessionId is unknown or expired".into()))?;
    let pasted = input
        .authorization_code
        .or(input.callback_url)
        .unwrap_or_default();
    let code = claude_oauth::parse_code(&pasted).ok_or_else(|| {
        AdminError::BadRequest("authorizationCode or callbackUrl is required".into())
    })?;
    let password = session
        .proxy_secret
        .as_ref()
        .and_then(|s| state.crypto.decrypt(s).ok());
    let http = state
        .clients
        .for_proxy(session.proxy.as_ref(), password.as_deref())
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let tokens = claude_oauth::exchange_code(
        &http,
        &state.config,
        &code,
        &session.code_verifier,
        &session.state,
    )
    .await
    .map_err(|e| AdminError::BadRequest(format!("code exchange failed: {e}")))?;
    let sealed = AccountSecrets {
        access_token: Some(tokens.access_token.clone()),
        refresh_token: tokens.refresh_token.clone(),
        ..Default::default()
    };
    session.tokens = Some(
        state
            .crypto
            .encrypt(&serde_json::to_string(&sealed).unwrap_or_default()),
    );
    session.expires_at = tokens.expires_at_ms;
    session.granted_scopes = tokens.scopes.clone();
    state
        .store
        .put_oauth_session(&input.session_id, &session, OAUTH_SESSION_TTL)
        .await?;
    Ok(Json(json!({
        "success": true,
        "data": {"oauthSessionId": input.session_id, "expiresAt": tokens.expires_at_ms, "scopes": tokens.scopes,
                 "hasRefreshToken": tokens.refresh_token.is_some()},
    })))
}

pub async fn error_history(
    _: AdminUser,
    State(state): State<AppState>,
    Path((_kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    load(&state, &id, None).await?;
    let history = state.store.error_history(&id, 100).await?;
    Ok(Json(json!({"success": true, "data": history})))
}
