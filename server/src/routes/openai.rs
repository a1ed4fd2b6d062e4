//! The OpenAI-compatible surface: Chat Completions (to Claude accounts by conversion, to
//! OpenAI-compatible accounts by passthrough), Responses (passthrough; what the Codex CLI
//! speaks), and the models list. Errors in OpenAI's shape.

use app::domain::Platform;
use axum::{
    body::{Body, Bytes},
    extract::{
        rejection::{BytesRejection, PathRejection},
        Path, State,
    },
    http::{header, HeaderMap, HeaderValue, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{
    auth::{
        api_key::{authenticate, authenticate_relay},
        key_cache::rerun_if_key_changed,
    },
    limits,
    relay::{
        attempts::{self, Call},
        convert::openai_chat,
        error::RelayError,
        protocol::Protocol,
        shape::{self, Dialect},
    },
    state::AppState,
    store::StoredKey,
};

pub fn routes(state: &AppState) -> Router<AppState> {
    let relayed = Router::new()
        .route("/openai/claude/v1/chat/completions", post(chat_to_claude))
        .route("/openai/v1/chat/completions", post(chat))
        .route("/api/v1/chat/completions", post(chat))
        .route("/openai/responses", post(responses))
        .route("/openai/v1/responses", post(responses))
        .route("/azure/chat/completions", post(azure_chat))
        .route("/azure/responses", post(azure_responses))
        // What `openai.AzureOpenAI(azure_endpoint=<relay>/azure)` calls.
        .route(
            "/azure/openai/deployments/{deployment}/chat/completions",
            post(azure_sdk_chat),
        )
        .route(
            "/azure/openai/deployments/{deployment}/responses",
            post(azure_sdk_responses),
        )
        .route("/azure/openai/responses", post(azure_responses))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::routes::key_first::require_key,
        ));
    Router::new()
        .route("/openai/v1/models", get(models))
        .route("/openai/claude/v1/models", get(claude_models))
        .route("/azure/models", get(models))
        .merge(relayed)
}

/// The `{deployment}` of the SDK's path, decoded and validated: it may name the model and the
/// upstream deployment, so anything but a plain deployment name is a 400 here.
fn client_deployment(path: Result<Path<String>, PathRejection>) -> Result<String, RelayError> {
    match path {
        Ok(Path(d)) if crate::upstream::azure::valid_deployment(&d) => Ok(d),
        _ => Err(RelayError::BadRequest(
            "Invalid deployment name in the request path (letters, digits, . _ - only)".into(),
        )),
    }
}

async fn azure_sdk_chat(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let deployment = match client_deployment(path) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    passthrough_to(
        &state,
        &headers,
        &uri,
        body,
        &AZURE,
        "/v1/chat/completions",
        Some(&deployment),
    )
    .await
}

async fn azure_sdk_responses(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let deployment = match client_deployment(path) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    passthrough_to(
        &state,
        &headers,
        &uri,
        body,
        &AZURE,
        "/v1/responses",
        Some(&deployment),
    )
    .await
}

async fn azure_chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    passthrough(&state, &headers, &uri, body, &AZURE, "/v1/chat/completions").await
}

async fn azure_responses(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    passthrough(&state, &headers, &uri, body, &AZURE, "/v1/responses").await
}

/// Same protocol in and out: the body goes to an OpenAI-compatible or Azure account unchanged.
async fn passthrough(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Result<Bytes, BytesRejection>,
    platforms: &'static [Platform],
    path: &'static str,
) -> Response {
    passthrough_to(state, headers, uri, body, platforms, path, None).await
}

/// `passthrough`, with the (validated) deployment an Azure SDK path names.
async fn passthrough_to(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Result<Bytes, BytesRejection>,
    platforms: &'static [Platform],
    path: &'static str,
    deployment: Option<&str>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return fail(RelayError::from(r)),
    };
    rerun_if_key_changed(state, headers, uri.query(), || {
        passthrough_once(
            state,
            headers,
            uri,
            body.clone(),
            platforms,
            path,
            deployment,
        )
    })
    .await
}

async fn passthrough_once(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Bytes,
    platforms: &'static [Platform],
    path: &'static str,
    deployment: Option<&str>,
) -> Response {
    let service = platforms.first().map(|p| p.service()).unwrap_or("openai");
    let r = match prepare(state, headers, uri, &body, Some(service), deployment).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let needs = if path == "/v1/responses" {
        "input"
    } else {
        "messages"
    };
    let present = match r.json.get(needs) {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty() && needs == "input",
        Some(_) => needs == "input",
        None => false,
    };
    if !present {
        return fail(RelayError::BadRequest(if needs == "input" {
            "input is required".into()
        } else {
            "messages: a non-empty array is required".into()
        }));
    }
    let dialect = if path == "/v1/responses" {
        Dialect::OpenAiResponses
    } else {
        Dialect::OpenAiChat
    };
    let requested = requested_output(&r.json, dialect);
    let admission = match admit(state, headers, uri, &r, service, &body, requested).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    // Streams of Chat Completions ask for their usage (OpenAI sends none unless asked); what
    // the client did not ask for is taken out of the answer again.
    let mut strip_usage = false;
    let body = if r.stream && dialect == Dialect::OpenAiChat {
        let mut obj = match shape::RawObject::parse(&body) {
            Ok(o) => o,
            Err(e) => return fail(RelayError::BadRequest(e)),
        };
        strip_usage = shape::request_stream_usage(&mut obj);
        if let Some(limit) = admission.output_limit {
            shape::set_output_limit(dialect, &mut obj, limit);
        }
        obj.to_bytes()
    } else {
        shape::with_output_limit(dialect, body, admission.output_limit)
    };
    let session = session(headers, &r.json);
    let call = Call {
        protocol: Protocol::OpenAi,
        platforms,
        endpoint: path,
        upstream_path: match deployment {
            Some(d) => crate::upstream::azure::with_client_deployment(d, path),
            None => path.into(),
        },
        model: &r.model,
        stream: r.stream,
        session: session.as_deref(),
        headers,
        query: None,
        body,
        output_limit: admission.output_limit.or(requested),
        strip_usage,
    };
    attempts::run(state, &r.key, &call, admission.reservation).await
}

const OPENAI: [Platform; 2] = [Platform::OpenaiResponses, Platform::AzureOpenai];
const AZURE: [Platform; 1] = [Platform::AzureOpenai];
const GEMINI: [Platform; 1] = [Platform::GeminiApi];
const CLAUDE: [Platform; 3] = [
    Platform::ClaudeOfficial,
    Platform::ClaudeConsole,
    Platform::Bedrock,
];

fn fail(e: RelayError) -> Response {
    e.respond(Protocol::OpenAi)
}

/// Models served by OpenAI-compatible accounts; everything else goes to Claude.
fn is_openai_model(model: &str) -> bool {
    [
        "gpt-",
        "o1",
        "o3",
        "o4",
        "chatgpt",
        "codex",
        "text-embedding",
    ]
    .iter()
    .any(|p| model.starts_with(p))
}

/// The OpenAI-style session: `session_id` header, else `prompt_cache_key` or `session_id` in the
/// body, hashed (the original's rule).
fn session(headers: &HeaderMap, body: &Value) -> Option<String> {
    let raw = headers
        .get("session_id")
        .or_else(|| headers.get("x-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            ["prompt_cache_key", "session_id", "conversation_id"]
                .iter()
                .find_map(|k| body.get(k).and_then(Value::as_str).map(str::to_string))
        })?;
    Some(hex::encode(&Sha256::digest(raw.as_bytes())[..16]))
}

struct Request {
    key: StoredKey,
    json: Value,
    model: String,
    stream: bool,
}

async fn prepare(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    service: Option<&str>,
    deployment: Option<&str>,
) -> Result<Request, RelayError> {
    let key = authenticate_relay(state, headers, uri.query()).await?;
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| RelayError::BadRequest(format!("Request body is not valid JSON: {e}")))?;
    if !json.is_object() {
        return Err(RelayError::BadRequest(
            "Request body must be a JSON object".into(),
        ));
    }
    // Azure's SDK path names the deployment, which stands for the model when the body has none.
    let model = match (json.get("model"), deployment) {
        (Some(Value::String(m)), _) if !m.trim().is_empty() => m.clone(),
        (None, Some(d)) => d.to_string(),
        _ => {
            return Err(RelayError::BadRequest(
                "model: a non-empty string is required".into(),
            ))
        }
    };
    super::claude::check_model_name(&model)?;
    let service = service.unwrap_or(if is_openai_model(&model) {
        "openai"
    } else {
        "claude"
    });
    if !key.key.allows_service(service) {
        return Err(RelayError::PermissionDenied(format!(
            "This API key has no permission to use {service}"
        )));
    }
    let stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok(Request {
        key,
        json,
        model,
        stream,
    })
}

/// The output limit a Chat or Responses request names.
fn requested_output(json: &Value, dialect: Dialect) -> Option<u64> {
    let field = |k: &str| json.get(k).and_then(Value::as_u64);
    match dialect {
        Dialect::OpenAiResponses => field("max_output_tokens"),
        _ => field("max_completion_tokens").or_else(|| field("max_tokens")),
    }
}

async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    r: &Request,
    service: &str,
    body: &[u8],
    requested_output: Option<u64>,
) -> Result<limits::Admission, RelayError> {
    let facts = limits::RequestFacts {
        service,
        model: &r.model,
        path: uri.path(),
        has_user_id: false,
        body,
        requested_output,
        costs: true,
    };
    limits::admit_request(state, &r.key, headers, &facts).await
}

async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The model decides the path; a body without one is refused by either path's checks.
    #[derive(serde::Deserialize)]
    struct Peek {
        model: Option<Value>,
    }
    let model = body
        .as_ref()
        .ok()
        .and_then(|b| serde_json::from_slice::<Peek>(b).ok())
        .and_then(|p| p.model)
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_default();
    if is_openai_model(&model) {
        return passthrough(
            &state,
            &headers,
            &uri,
            body,
            &OPENAI,
            "/v1/chat/completions",
        )
        .await;
    }
    if model.starts_with("gemini") {
        // Gemini's OpenAI-compatible endpoint: the same protocol, passed through.
        return passthrough(
            &state,
            &headers,
            &uri,
            body,
            &GEMINI,
            "/v1/chat/completions",
        )
        .await;
    }
    converted(&state, &headers, &uri, body, None).await
}

/// Chat Completions to Claude accounts (prepared, then converted), run again if the key copy
/// was out of date.
async fn converted(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Result<Bytes, BytesRejection>,
    service: Option<&str>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return fail(RelayError::from(r)),
    };
    let body = &body;
    rerun_if_key_changed(state, headers, uri.query(), || async move {
        match prepare(state, headers, uri, body, service, None).await {
            Ok(r) => to_claude(state, headers, uri, r, body).await,
            Err(e) => fail(e),
        }
    })
    .await
}

async fn chat_to_claude(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    converted(&state, &headers, &uri, body, Some("claude")).await
}

/// The conversion path: the Chat request becomes an Anthropic request, its answer a chat
/// completion (or a chunk stream).
async fn to_claude(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    r: Request,
    body: &[u8],
) -> Response {
    let req: openai_chat::ChatRequest = match serde_json::from_value(r.json.clone()) {
        Ok(req) => req,
        Err(e) => {
            return fail(RelayError::BadRequest(format!(
                "Invalid chat completion request: {e}"
            )))
        }
    };
    let mut anthropic = match openai_chat::to_anthropic(&req) {
        Ok(a) => a,
        Err(m) => return fail(RelayError::BadRequest(m)),
    };
    // The converted request always names its output limit (the client's, or a default).
    let requested = anthropic.get("max_tokens").and_then(Value::as_u64);
    let admission = match admit(state, headers, uri, &r, "claude", body, requested).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if let Some(limit) = admission.output_limit {
        anthropic["max_tokens"] = json!(limit);
    }
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let session = session(headers, &r.json).or_else(|| {
        crate::scheduler::session::from_content(anthropic.get("system"), anthropic.get("messages"))
    });
    let call = Call {
        protocol: Protocol::Anthropic,
        platforms: &CLAUDE,
        endpoint: "/v1/chat/completions",
        upstream_path: "/v1/messages".into(),
        model: &r.model,
        stream: r.stream,
        session: session.as_deref(),
        headers: &HeaderMap::new(),
        query: None,
        body: Bytes::from(anthropic.to_string()),
        output_limit: requested.map(|r| admission.output_limit.unwrap_or(r)),
        strip_usage: false,
    };
    let resp = attempts::run(state, &r.key, &call, admission.reservation).await;
    if resp
        .extensions()
        .get::<crate::auth::key_cache::KeyChanged>()
        .is_some()
    {
        return resp;
    }
    convert_answer(resp, &r.model, r.stream, include_usage).await
}

async fn convert_answer(
    resp: Response,
    model: &str,
    stream: bool,
    include_usage: bool,
) -> Response {
    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    if status.is_success() && stream && is_sse {
        let chunks = openai_chat::ChunkStream::new(
            resp.into_body().into_data_stream().boxed(),
            model,
            include_usage,
        );
        let mut out = Response::new(Body::from_stream(chunks));
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        out.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return out;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut out = if status.is_success() {
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, Json(openai_chat::from_anthropic(&msg, model))).into_response()
    } else {
        (status, Json(openai_chat::error_from_anthropic(&body))).into_response()
    };
    if let Some(r) = retry_after {
        out.headers_mut().insert(header::RETRY_AFTER, r);
    }
    out
}

async fn responses(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    passthrough(&state, &headers, &uri, body, &OPENAI, "/v1/responses").await
}

fn list(ids: impl Iterator<Item = String>, owner: &str) -> Value {
    let data: Vec<Value> = ids
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": owner}))
        .collect();
    json!({"object": "list", "data": data})
}

async fn models(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let key = match authenticate(&state, &headers, uri.query()).await {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let k = &key.key;
    let mut ids: Vec<String> = Vec::new();
    if k.allows_service("openai") {
        ids.extend(
            state
                .pricing
                .openai_models()
                .iter()
                .filter(|m| !k.model_blocked(m))
                .cloned(),
        );
    }
    if k.allows_service("claude") {
        ids.extend(
            state
                .pricing
                .claude_models()
                .iter()
                .filter(|m| !k.model_blocked(m))
                .cloned(),
        );
    }
    Json(list(ids.into_iter(), "crs")).into_response()
}

async fn claude_models(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let key = match authenticate(&state, &headers, uri.query()).await {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let ids = state
        .pricing
        .claude_models()
        .iter()
        .filter(|m| !key.key.model_blocked(m))
        .cloned()
        .collect::<Vec<_>>();
    Json(list(ids.into_iter(), "anthropic")).into_response()
}
