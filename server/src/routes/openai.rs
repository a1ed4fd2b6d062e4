//! The OpenAI-compatible surface: Chat Completions (to Claude accounts by conversion, to
//! OpenAI-compatible accounts by passthrough), Responses (passthrough; what the Codex CLI
//! speaks), and the models list. Errors in OpenAI's shape.

use app::domain::Platform;
use axum::{
    body::{Body, Bytes},
    extract::{rejection::BytesRejection, FromRequestParts, Path, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::{
    limits,
    relay::{
        attempts::{self, Call},
        convert::openai_chat,
        error::{OpenAiError, RelayError},
        protocol::Protocol,
        shape::{self, Dialect},
    },
    routes::key_first::RelayKey,
    scheduler::session::Session,
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
/// upstream deployment, so anything but a plain deployment name is a 400 here, before the key.
struct Deployment(String);

impl<S: Send + Sync> FromRequestParts<S> for Deployment {
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OpenAiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(d)) if crate::upstream::azure::valid_deployment(&d) => Ok(Deployment(d)),
            _ => Err(RelayError::BadRequest(
                "Invalid deployment name in the request path (letters, digits, . _ - only)".into(),
            )
            .into()),
        }
    }
}

async fn azure_sdk_chat(
    State(state): State<AppState>,
    Deployment(deployment): Deployment,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let to = Passthrough {
        platforms: &AZURE,
        path: "/v1/chat/completions",
        deployment: Some(&deployment),
    };
    Ok(passthrough(&state, key, &headers, &uri, body?, to).await?)
}

async fn azure_sdk_responses(
    State(state): State<AppState>,
    Deployment(deployment): Deployment,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let to = Passthrough {
        platforms: &AZURE,
        path: "/v1/responses",
        deployment: Some(&deployment),
    };
    Ok(passthrough(&state, key, &headers, &uri, body?, to).await?)
}

async fn azure_chat(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let to = Passthrough::to(&AZURE, "/v1/chat/completions");
    Ok(passthrough(&state, key, &headers, &uri, body?, to).await?)
}

async fn azure_responses(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let to = Passthrough::to(&AZURE, "/v1/responses");
    Ok(passthrough(&state, key, &headers, &uri, body?, to).await?)
}

async fn responses(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let to = Passthrough::to(&OPENAI, "/v1/responses");
    Ok(passthrough(&state, key, &headers, &uri, body?, to).await?)
}

/// Where a passthrough goes: the accounts that serve it, the upstream path, and the
/// (validated) deployment an Azure SDK path names.
struct Passthrough<'a> {
    platforms: &'static [Platform],
    path: &'static str,
    deployment: Option<&'a str>,
}

impl Passthrough<'static> {
    fn to(platforms: &'static [Platform], path: &'static str) -> Self {
        Passthrough {
            platforms,
            path,
            deployment: None,
        }
    }
}

/// Same protocol in and out: the body goes to an OpenAI-compatible or Azure account unchanged.
async fn passthrough(
    state: &AppState,
    key: StoredKey,
    headers: &HeaderMap,
    uri: &Uri,
    body: Bytes,
    to: Passthrough<'_>,
) -> Result<Response, RelayError> {
    let Passthrough {
        platforms,
        path,
        deployment,
    } = to;
    let service = platforms.first().map(|p| p.service()).unwrap_or("openai");
    let r = prepare(key, &body, Some(service), deployment)?;
    let dialect = if path == "/v1/responses" {
        Dialect::OpenAiResponses
    } else {
        Dialect::OpenAiChat
    };
    check_present(&r.json, dialect)?;
    let requested = requested_output(&r.json, dialect);
    let admission = admit(state, headers, uri, &r, service, &body, requested).await?;
    // Streams of Chat Completions ask for their usage (OpenAI sends none unless asked); what
    // the client did not ask for is taken out of the answer again.
    let mut strip_usage = false;
    let body = if r.stream && dialect == Dialect::OpenAiChat {
        let mut obj = shape::RawObject::parse(&body).map_err(RelayError::BadRequest)?;
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
        session: session.as_ref(),
        headers,
        query: None,
        body,
        output_limit: admission.output_limit.or(requested),
        strip_usage,
    };
    Ok(attempts::run(state, &r.key, &call, admission.reservation).await)
}

/// A Responses request needs its `input`, a Chat request a non-empty `messages` array.
fn check_present(json: &Value, dialect: Dialect) -> Result<(), RelayError> {
    let responses = dialect == Dialect::OpenAiResponses;
    let field = if responses { "input" } else { "messages" };
    let present = match json.get(field) {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty() && responses,
        Some(_) => responses,
        None => false,
    };
    if present {
        return Ok(());
    }
    Err(RelayError::BadRequest(if responses {
        "input is required".into()
    } else {
        "messages: a non-empty array is required".into()
    }))
}

const OPENAI: [Platform; 2] = [Platform::OpenaiResponses, Platform::AzureOpenai];
const AZURE: [Platform; 1] = [Platform::AzureOpenai];
const GEMINI: [Platform; 1] = [Platform::GeminiApi];
const CLAUDE: [Platform; 3] = [
    Platform::ClaudeOfficial,
    Platform::ClaudeConsole,
    Platform::Bedrock,
];

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
fn session(headers: &HeaderMap, body: &Value) -> Option<Session> {
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
    Some(Session::named(&raw))
}

struct Request {
    key: StoredKey,
    json: Value,
    model: String,
    stream: bool,
}

fn prepare(
    key: StoredKey,
    body: &[u8],
    service: Option<&str>,
    deployment: Option<&str>,
) -> Result<Request, RelayError> {
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
    Ok(limits::admit_request(state, &r.key, headers, &facts).await?)
}

async fn chat(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let body = body?;
    // The model decides the path; a body without one is refused by either path's checks.
    #[derive(serde::Deserialize)]
    struct Peek {
        model: Option<Value>,
    }
    let model = serde_json::from_slice::<Peek>(&body)
        .ok()
        .and_then(|p| p.model)
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_default();
    let to = if is_openai_model(&model) {
        Passthrough::to(&OPENAI, "/v1/chat/completions")
    } else if model.starts_with("gemini") {
        // Gemini's OpenAI-compatible endpoint: the same protocol, passed through.
        Passthrough::to(&GEMINI, "/v1/chat/completions")
    } else {
        return Ok(to_claude(&state, key, &headers, &uri, &body, None).await?);
    };
    Ok(passthrough(&state, key, &headers, &uri, body, to).await?)
}

async fn chat_to_claude(
    State(state): State<AppState>,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    Ok(to_claude(&state, key, &headers, &uri, &body?, Some("claude")).await?)
}

/// The conversion path: the Chat request becomes an Anthropic request, its answer a chat
/// completion (or a chunk stream).
async fn to_claude(
    state: &AppState,
    key: StoredKey,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    service: Option<&str>,
) -> Result<Response, RelayError> {
    let r = prepare(key, body, service, None)?;
    let req: openai_chat::ChatRequest = serde_json::from_value(r.json.clone())
        .map_err(|e| RelayError::BadRequest(format!("Invalid chat completion request: {e}")))?;
    let mut anthropic = openai_chat::to_anthropic(&req).map_err(RelayError::BadRequest)?;
    // The converted request always names its output limit (the client's, or a default).
    let requested = anthropic.get("max_tokens").and_then(Value::as_u64);
    let admission = admit(state, headers, uri, &r, "claude", body, requested).await?;
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
        session: session.as_ref(),
        headers: &HeaderMap::new(),
        query: None,
        body: Bytes::from(anthropic.to_string()),
        output_limit: requested.map(|r| admission.output_limit.unwrap_or(r)),
        strip_usage: false,
    };
    let resp = attempts::run(state, &r.key, &call, admission.reservation).await;
    // Left as it is for the relay layer, which runs the request again.
    if resp
        .extensions()
        .get::<crate::auth::key_cache::KeyChanged>()
        .is_some()
    {
        return Ok(resp);
    }
    Ok(convert_answer(resp, &r.model, r.stream, include_usage).await)
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

fn list(ids: impl Iterator<Item = String>, owner: &str) -> Value {
    let data: Vec<Value> = ids
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": owner}))
        .collect();
    json!({"object": "list", "data": data})
}

async fn models(State(state): State<AppState>, RelayKey(key): RelayKey) -> Response {
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

async fn claude_models(State(state): State<AppState>, RelayKey(key): RelayKey) -> Response {
    let ids = state
        .pricing
        .claude_models()
        .iter()
        .filter(|m| !key.key.model_blocked(m))
        .cloned()
        .collect::<Vec<_>>();
    Json(list(ids.into_iter(), "anthropic")).into_response()
}
