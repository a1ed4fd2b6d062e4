//! The Anthropic-native surface: Messages, count_tokens, models, and the small endpoints
//! Claude Code calls. Mounted at `/`, `/api` and `/claude`.

use app::domain::Platform;
use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    extract::{Path, State},
    http::{HeaderMap, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use serde_json::value::RawValue;

use crate::{
    auth::api_key::{authenticate, format_time},
    relay::{
        error::RelayError,
        passthrough::{self, Attempt, Exchange},
    },
    scheduler::{cooldown, health, session, Ask},
    state::AppState,
    store::{buckets, StoredAccount, StoredKey},
    upstream::{claude_console, claude_oauth, AccountSecrets},
};

pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["", "/api", "/claude"] {
        r = r
            .route(&format!("{prefix}/v1/messages"), post(messages))
            .route(
                &format!("{prefix}/v1/messages/count_tokens"),
                post(count_tokens),
            )
            .route(&format!("{prefix}/v1/models"), get(models))
            .route(&format!("{prefix}/v1/key-info"), get(key_info))
            .route(&format!("{prefix}/v1/usage"), get(usage))
            .route(&format!("{prefix}/v1/me"), get(me))
            .route(
                &format!("{prefix}/v1/organizations/{{org}}/usage"),
                get(org_usage),
            )
            .route(
                &format!("{prefix}/api/event_logging/batch"),
                post(event_logging),
            );
    }
    r
}

/// The few fields the relay reads; the rest of the body is validated as JSON and passed on
/// untouched (system and messages are only looked at, raw, to derive a session when the client
/// names none).
#[derive(Deserialize)]
struct MessagesPeek<'a> {
    model: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    system: Option<&'a RawValue>,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    user_id: Option<serde_json::Value>,
}

struct Prepared {
    key: StoredKey,
    model: String,
    stream: bool,
    session: Option<String>,
}

/// Account types that speak the Anthropic Messages protocol.
const CLAUDE_PLATFORMS: [Platform; 2] = [Platform::ClaudeOfficial, Platform::ClaudeConsole];

async fn prepare(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    need_messages: bool,
) -> Result<Prepared, RelayError> {
    let key = authenticate(state, headers, uri.query()).await?;
    if !key.key.allows_service("claude") {
        return Err(RelayError::PermissionDenied(
            "This API key has no permission to use Claude".into(),
        ));
    }
    let peek: MessagesPeek = serde_json::from_slice(body)
        .map_err(|e| RelayError::BadRequest(format!("Request body is not valid JSON: {e}")))?;
    let model = match peek.model {
        Some(serde_json::Value::String(m)) if !m.trim().is_empty() => m,
        _ => {
            return Err(RelayError::BadRequest(
                "model: a non-empty string is required".into(),
            ))
        }
    };
    let messages_ok = peek.messages.is_some_and(|m| {
        let t = m.get().trim();
        t.starts_with('[') && t[1..].trim_start() != "]"
    });
    if need_messages && !messages_ok {
        return Err(RelayError::BadRequest(
            "messages: a non-empty array is required".into(),
        ));
    }
    let stream = matches!(peek.stream, Some(serde_json::Value::Bool(true)));
    let named = peek
        .metadata
        .and_then(|m| m.user_id)
        .and_then(|u| u.as_str().and_then(session::from_user_id));
    let session = named.or_else(|| {
        let parse = |raw: Option<&RawValue>| {
            raw.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
        };
        session::from_content(parse(peek.system).as_ref(), parse(peek.messages).as_ref())
    });
    Ok(Prepared {
        key,
        model,
        stream,
        session,
    })
}

fn beta(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|p| p == "beta=true"))
}

/// The upstream request for one account.
async fn upstream_request(
    state: &AppState,
    account: &StoredAccount,
    endpoint: &str,
    model: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<reqwest::RequestBuilder, RelayError> {
    let unreadable =
        || RelayError::NoAccount("The selected account's credential cannot be read".into());
    let secrets = AccountSecrets::open(&state.crypto, account).map_err(|e| {
        tracing::error!(account = %account.account.id, error = %e, "account credential unreadable");
        unreadable()
    })?;
    let http = state
        .clients
        .for_proxy(
            account.account.proxy.as_ref(),
            secrets.proxy_password.as_deref(),
        )
        .map_err(|e| {
            tracing::error!(account = %account.account.id, error = %e, "account proxy unusable");
            RelayError::UpstreamUnreachable
        })?;
    match account.account.platform {
        Platform::ClaudeConsole => {
            let key = secrets.api_key.as_deref().ok_or_else(unreadable)?;
            Ok(claude_console::build(
                &http,
                account,
                key,
                endpoint,
                beta(uri),
                headers,
                body,
            ))
        }
        Platform::ClaudeOfficial => {
            let token = claude_oauth::access_token(state, account).await?;
            Ok(claude_oauth::build(
                &http,
                &state.config,
                &token,
                endpoint,
                model,
                headers,
                body,
            ))
        }
    }
}

/// Schedules, sends, and fails over to the next account while nothing reached the client.
async fn relay(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Bytes,
    p: &Prepared,
    endpoint: &'static str,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let settings = state.scheduling();
    let max_attempts = state.config.failover_max_attempts;
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<Response> = None;
    for attempt in 0..max_attempts {
        let lease_id = uuid::Uuid::new_v4().to_string();
        let ask = Ask {
            key: &p.key.key,
            platforms: &CLAUDE_PLATFORMS,
            model: &p.model,
            session: p.session.as_deref(),
            exclude: &tried,
            lease_id: &lease_id,
        };
        let selected = match state.scheduler.select(&state.store, &settings, &ask).await {
            Ok(s) => s,
            // Every account failed or none is left: the client sees the last upstream error.
            Err(e) => return last.unwrap_or_else(|| e.into_response()),
        };
        if let Some(l) = &selected.lease {
            state.leases.hold(l.clone());
        }
        let account_id = selected.account.account.id.clone();
        let request = match upstream_request(
            state,
            &selected.account,
            endpoint,
            &p.model,
            uri,
            headers,
            body.clone(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                passthrough::release(state, selected.lease);
                tried.push(account_id);
                last = Some(e.into_response());
                continue;
            }
        };
        let ex = Exchange {
            request_id: request_id.clone(),
            key_id: p.key.key.id.clone(),
            account_id: account_id.clone(),
            model: p.model.clone(),
            endpoint,
            stream: p.stream,
            started,
            lease: selected.lease.clone(),
        };
        match passthrough::send(state, request, ex).await {
            Attempt::Delivered(resp) => return resp,
            Attempt::Failed(failed) => {
                passthrough::release(state, selected.lease);
                let verdict =
                    cooldown::classify(&state.config.cooldowns, failed.failure(), &p.model);
                let message =
                    String::from_utf8_lossy(&failed.body[..failed.body.len().min(500)]).to_string();
                health::report(state, &selected.account, &verdict, failed.status, &message);
                if verdict.failover && attempt + 1 < max_attempts {
                    tracing::info!(request_id = %request_id, account = %account_id, status = failed.status, "failing over to another account");
                    tried.push(account_id);
                    last = Some(failed.response);
                    continue;
                }
                return failed.response;
            }
        }
    }
    last.unwrap_or_else(|| RelayError::StoreUnavailable.into_response())
}

async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return RelayError::from(r).into_response(),
    };
    let p = match prepare(&state, &headers, &uri, &body, true).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    relay(&state, &headers, &uri, body, &p, "/v1/messages").await
}

async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return RelayError::from(r).into_response(),
    };
    let p = match prepare(&state, &headers, &uri, &body, false).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let resp = relay(
        &state,
        &headers,
        &uri,
        body,
        &p,
        "/v1/messages/count_tokens",
    )
    .await;
    // Some Console-compatible upstreams lack count_tokens; Claude Code copes with a zero.
    if resp.status() == axum::http::StatusCode::NOT_FOUND {
        return Json(json!({"input_tokens": 0})).into_response();
    }
    resp
}

async fn models(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(e) = authenticate(&state, &headers, uri.query()).await {
        return e.into_response();
    }
    let data: Vec<_> = state
        .pricing
        .claude_models()
        .iter()
        .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2024-01-01T00:00:00Z"}))
        .collect();
    let first = state.pricing.claude_models().first();
    let last = state.pricing.claude_models().last();
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
        .into_response()
}

async fn key_usage_total(
    state: &AppState,
    key: &StoredKey,
) -> Result<app::domain::UsageCounters, RelayError> {
    let c = state
        .store
        .usage(&[buckets::key_total(&key.key.id)])
        .await?;
    Ok(c.into_iter().next().unwrap_or_default())
}

async fn key_info(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let key = match authenticate(&state, &headers, uri.query()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let total = match key_usage_total(&state, &key).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    Json(json!({
        "keyInfo": {"id": key.key.id, "name": key.key.name, "tokenLimit": 0, "usage": usage_json(&total)},
        "timestamp": format_time(Utc::now()),
    }))
    .into_response()
}

async fn usage(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let key = match authenticate(&state, &headers, uri.query()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    match key_usage_total(&state, &key).await {
        Ok(t) => Json(json!({"usage": usage_json(&t), "limits": {"tokens": 0, "requests": 0}}))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn me(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    match authenticate(&state, &headers, uri.query()).await {
        Ok(k) => Json(json!({
            "id": format!("user_{}", k.key.id),
            "type": "user",
            "display_name": k.key.name,
            "created_at": k.key.created_at,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn org_usage(
    State(state): State<AppState>,
    Path(_org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    match authenticate(&state, &headers, uri.query()).await {
        Ok(_) => Json(
            json!({"object": "usage", "data": [{"type": "credit_balance", "credit_balance": 0}]}),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Claude Code's telemetry: accepted and dropped.
async fn event_logging() -> Json<serde_json::Value> {
    Json(json!({"success": true}))
}

pub fn usage_json(c: &app::domain::UsageCounters) -> serde_json::Value {
    json!({
        "requests": c.requests,
        "inputTokens": c.input_tokens,
        "outputTokens": c.output_tokens,
        "cacheCreateTokens": c.cache_create_tokens(),
        "cacheCreate5mTokens": c.cache_create_5m_tokens,
        "cacheCreate1hTokens": c.cache_create_1h_tokens,
        "cacheReadTokens": c.cache_read_tokens,
        "allTokens": c.all_tokens(),
        "tokens": c.input_tokens + c.output_tokens,
        "cost": c.cost_usd(),
        "costNanos": c.cost_nanos,
        "formattedCost": app::domain::format_usd(c.cost_nanos),
    })
}
