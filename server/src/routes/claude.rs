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
    limits::{self, Reservation},
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
    has_user_id: bool,
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
    let user_id = peek.metadata.and_then(|m| m.user_id);
    let has_user_id = user_id
        .as_ref()
        .and_then(|u| u.as_str())
        .is_some_and(|u| !u.is_empty());
    let named = user_id.and_then(|u| u.as_str().and_then(session::from_user_id));
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

/// Sends the request (see `attempts`) and gives the reservation back if nothing was delivered.
async fn relay(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Bytes,
    p: &Prepared,
    endpoint: &'static str,
    reservation: Option<Reservation>,
) -> Response {
    match attempts(state, headers, uri, body, p, endpoint, reservation.clone()).await {
        Ok(resp) => resp,
        Err(resp) => {
            // Nothing was delivered: the admission reservation is given back.
            passthrough::release(state, None, reservation);
            resp
        }
    }
}

/// Schedules, sends, and fails over to the next account while nothing reached the client.
/// `Ok`: an answer is on its way (its accounting settles the reservation); `Err`: the error
/// the client sees.
#[allow(clippy::too_many_arguments)]
async fn attempts(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Bytes,
    p: &Prepared,
    endpoint: &'static str,
    reservation: Option<Reservation>,
) -> Result<Response, Response> {
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
            Err(e) => return Err(last.unwrap_or_else(|| e.into_response())),
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
                passthrough::release(state, selected.lease, None);
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
            service: "claude",
            rate: p.key.key.service_rate("claude"),
            reservation: reservation.clone(),
        };
        match passthrough::send(state, request, ex).await {
            Attempt::Delivered(resp) => return Ok(resp),
            Attempt::Failed(failed) => {
                passthrough::release(state, selected.lease, None);
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
                return Err(failed.response);
            }
        }
    }
    Err(last.unwrap_or_else(|| RelayError::StoreUnavailable.into_response()))
}

/// What the key may do with this request: model blacklist, client restriction, then one
/// atomic admission of every limit (skipped for keys without limits).
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    p: &Prepared,
    body_len: usize,
) -> Result<Option<Reservation>, RelayError> {
    let key = &p.key.key;
    if key.model_blocked(&p.model) {
        return Err(RelayError::PermissionDenied(format!(
            "This API key may not use model {}",
            p.model
        )));
    }
    if key.enable_client_restriction
        && !key.allowed_clients.is_empty()
        && !limits::client::allowed(&key.allowed_clients, headers, uri.path(), p.has_user_id)
    {
        return Err(RelayError::ClientNotAllowed(key.allowed_clients.clone()));
    }
    if !key.has_limits() {
        return Ok(None);
    }
    // A first estimate from the prompt's size; the store raises it to the key's average cost.
    let price = state
        .pricing
        .price(&p.model)
        .copied()
        .unwrap_or(crate::accounting::FALLBACK_PRICE);
    let estimate =
        ((body_len / 4) as f64 * price.input * key.service_rate("claude")).round() as u64;
    let plan = limits::plan(
        key,
        &limits::Facts {
            service: "claude",
            model: &p.model,
            estimate_nanos: estimate,
            now: chrono::Utc::now(),
            tz_hours: state.config.timezone_offset_hours,
        },
    );
    let lease_id = uuid::Uuid::new_v4().to_string();
    let deadline = tokio::time::Instant::now() + state.config.concurrency_queue_timeout;
    let mut wait = std::time::Duration::from_millis(50);
    loop {
        match state
            .store
            .admit(&plan, &lease_id, state.config.lease_ttl)
            .await?
        {
            Ok(reservation) => {
                if let Some(l) = &reservation.lease {
                    state.leases.hold(l.clone());
                }
                return Ok(Some(reservation));
            }
            // Full: wait for a slot while the queue timeout allows.
            Err(limits::Refusal::Concurrency { .. })
                if tokio::time::Instant::now() + wait < deadline =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 3 / 2).min(std::time::Duration::from_secs(1));
            }
            Err(refusal) => return Err(RelayError::Limited(refusal)),
        }
    }
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
    let reservation = match admit(&state, &headers, &uri, &p, body.len()).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    relay(
        &state,
        &headers,
        &uri,
        body,
        &p,
        "/v1/messages",
        reservation,
    )
    .await
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
    // Counting tokens costs nothing and skips the limits, as in the original.
    let resp = relay(
        &state,
        &headers,
        &uri,
        body,
        &p,
        "/v1/messages/count_tokens",
        None,
    )
    .await;
    // Some Console-compatible upstreams lack count_tokens; Claude Code copes with a zero.
    if resp.status() == axum::http::StatusCode::NOT_FOUND {
        return Json(json!({"input_tokens": 0})).into_response();
    }
    resp
}

async fn models(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let key = match authenticate(&state, &headers, uri.query()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    // A key's blacklisted models are not offered to it.
    let data: Vec<_> = state
        .pricing
        .claude_models()
        .iter()
        .filter(|m| !key.key.model_blocked(m))
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
