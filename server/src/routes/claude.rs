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
    limits,
    relay::{
        attempts::{self, Call},
        error::RelayError,
        protocol::Protocol,
        shape::{self, Dialect},
    },
    routes::key_first::RelayKey,
    scheduler::session,
    state::AppState,
    store::{buckets, StoredKey},
    timestamps::format_time,
};

pub fn routes(state: &AppState) -> Router<AppState> {
    let mut r = Router::new();
    let mut relayed = Router::new();
    for prefix in ["", "/api", "/claude"] {
        relayed = relayed
            .route(&format!("{prefix}/v1/messages"), post(messages))
            .route(
                &format!("{prefix}/v1/messages/count_tokens"),
                post(count_tokens),
            );
        r = r
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
    r.merge(relayed.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::routes::key_first::require_key,
    )))
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
    max_tokens: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Metadata {
    user_id: Option<serde_json::Value>,
}

struct Prepared {
    key: StoredKey,
    model: String,
    stream: bool,
    session: Option<session::Session>,
    has_user_id: bool,
    max_tokens: Option<u64>,
}

/// Account types that speak the Anthropic Messages protocol.
const CLAUDE_PLATFORMS: [Platform; 3] = [
    Platform::ClaudeOfficial,
    Platform::ClaudeConsole,
    Platform::Bedrock,
];

/// The requested model name may end up in an upstream URL (Bedrock ids, Gemini and Azure
/// paths): only names of the safe shape (`app::domain::is_valid_model_name`) are relayed.
pub(crate) fn check_model_name(model: &str) -> Result<(), RelayError> {
    if app::domain::is_valid_model_name(model) {
        return Ok(());
    }
    Err(RelayError::BadRequest(format!(
        "model: not a valid model name (letters, digits and . _ - : / @ [ ] only, no '..', at most {} characters)",
        app::model_name::MAX_MODEL_NAME_LEN
    )))
}

fn prepare(key: StoredKey, body: &[u8], need_messages: bool) -> Result<Prepared, RelayError> {
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
    check_model_name(&model)?;
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
    let max_tokens = peek.max_tokens.as_ref().and_then(serde_json::Value::as_u64);
    let user_id = peek.metadata.and_then(|m| m.user_id);
    let has_user_id = user_id
        .as_ref()
        .and_then(|u| u.as_str())
        .is_some_and(|u| !u.is_empty());
    let named = user_id.and_then(|u| {
        u.as_str()
            .and_then(session::from_user_id)
            .map(|s| session::Session::named(&s))
    });
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
        has_user_id,
        max_tokens,
    })
}

async fn messages(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RelayError> {
    let body = body?;
    let p = prepare(key, &body, true)?;
    let facts = limits::RequestFacts {
        service: "claude",
        model: &p.model,
        path: uri.path(),
        has_user_id: p.has_user_id,
        body: &body,
        requested_output: p.max_tokens,
        costs: true,
    };
    let admission = limits::admit_request(&state, &p.key, &headers, &facts).await?;
    let body = shape::with_output_limit(Dialect::AnthropicMessages, body, admission.output_limit);
    let call = Call {
        protocol: Protocol::Anthropic,
        platforms: &CLAUDE_PLATFORMS,
        endpoint: "/v1/messages",
        upstream_path: "/v1/messages".into(),
        model: &p.model,
        stream: p.stream,
        session: p.session.as_ref(),
        headers: &headers,
        query: uri.query(),
        body,
        output_limit: admission.output_limit.or(p.max_tokens),
        strip_usage: false,
    };
    Ok(attempts::run(&state, &p.key, &call, admission.reservation).await)
}

async fn count_tokens(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RelayError> {
    let body = body?;
    let p = prepare(key, &body, false)?;
    // Counting tokens costs nothing, but floods of it would draw upstream rate limits on
    // shared accounts: it passes the key's concurrency and rate window (no cost reservation).
    let facts = limits::RequestFacts {
        service: "claude",
        model: &p.model,
        path: uri.path(),
        has_user_id: p.has_user_id,
        body: &body,
        requested_output: None,
        costs: false,
    };
    let admission = limits::admit_request(&state, &p.key, &headers, &facts).await?;
    let call = Call {
        protocol: Protocol::Anthropic,
        platforms: &CLAUDE_PLATFORMS,
        endpoint: "/v1/messages/count_tokens",
        upstream_path: "/v1/messages/count_tokens".into(),
        model: &p.model,
        stream: false,
        session: p.session.as_ref(),
        headers: &headers,
        query: uri.query(),
        body,
        output_limit: None,
        strip_usage: false,
    };
    let resp = attempts::run(&state, &p.key, &call, admission.reservation).await;
    // Some Console-compatible upstreams lack count_tokens; Claude Code copes with a zero.
    if resp.status() == axum::http::StatusCode::NOT_FOUND {
        return Ok(Json(json!({"input_tokens": 0})).into_response());
    }
    Ok(resp)
}

async fn models(State(state): State<AppState>, RelayKey(key): RelayKey) -> Response {
    // A key's blacklisted models are not offered to it.
    let data: Vec<_> = state
        .pricing
        .claude_models()
        .iter()
        .filter(|m| !key.key.model_blocked(m))
        .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2024-01-01T00:00:00Z"}))
        .collect();
    let first = state.pricing.claude_models().first().cloned();
    let last = state.pricing.claude_models().last().cloned();
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

async fn key_info(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
) -> Result<Response, RelayError> {
    let total = key_usage_total(&state, &key).await?;
    Ok(Json(json!({
        "keyInfo": {"id": key.key.id, "name": key.key.name, "tokenLimit": 0, "usage": usage_json(&total)},
        "timestamp": format_time(Utc::now()),
    }))
    .into_response())
}

async fn usage(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
) -> Result<Response, RelayError> {
    let total = key_usage_total(&state, &key).await?;
    Ok(
        Json(json!({"usage": usage_json(&total), "limits": {"tokens": 0, "requests": 0}}))
            .into_response(),
    )
}

async fn me(RelayKey(k): RelayKey) -> Response {
    Json(json!({
        "id": format!("user_{}", k.key.id),
        "type": "user",
        "display_name": k.key.name,
        "created_at": k.key.created_at,
    }))
    .into_response()
}

async fn org_usage(Path(_org): Path<String>, _: RelayKey) -> Response {
    Json(json!({"object": "usage", "data": [{"type": "credit_balance", "credit_balance": 0}]}))
        .into_response()
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
