//! The Gemini-native surface: generateContent, streamGenerateContent (`alt=sse` kept) and
//! countTokens, passed through to Gemini API accounts; the models list. Errors in Gemini's shape.

use app::domain::Platform;
use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, PathRejection},
        Path, State,
    },
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

use crate::{
    auth::{
        api_key::{authenticate, authenticate_relay},
        key_cache::rerun_if_key_changed,
    },
    limits,
    relay::{
        attempts::{self, Call},
        error::RelayError,
        protocol::Protocol,
        shape::{self, Dialect},
    },
    state::AppState,
    upstream::gemini,
};

pub fn routes(state: &AppState) -> Router<AppState> {
    let relayed = Router::new()
        .route("/gemini/v1beta/models/{model_action}", post(generate))
        .route("/gemini/v1/models/{model_action}", post(generate))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::routes::key_first::require_key,
        ));
    Router::new()
        .route("/gemini/v1beta/models", get(models))
        .route("/gemini/v1/models", get(models))
        .merge(relayed)
}

const GEMINI: [Platform; 1] = [Platform::GeminiApi];

fn fail(e: RelayError) -> Response {
    e.respond(Protocol::Gemini)
}

/// The decoded `{model_action}` segment, checked before anything else: it becomes part of the
/// upstream URL, so the model id must be a plain id (`upstream::gemini::valid_model_id`) and
/// the method one the relay passes (`upstream::gemini::ACTIONS`). Encoded traversal, `?`, `#`,
/// `\`, spaces or non-ASCII are a 400 `INVALID_ARGUMENT`; a well-formed but unknown method a
/// 404, as Gemini answers it.
fn check_model_action(path: Result<Path<String>, PathRejection>) -> Result<String, RelayError> {
    let invalid = || {
        RelayError::BadRequest(
            "Invalid model name in the request path (letters, digits, . _ - only)".into(),
        )
    };
    let Ok(Path(model_action)) = path else {
        return Err(invalid());
    };
    let (model, action) = match model_action.split_once(':') {
        Some((m, a)) => (m, Some(a)),
        None => (model_action.as_str(), None),
    };
    if !gemini::valid_model_id(model) || !app::domain::is_valid_model_name(model) {
        return Err(invalid());
    }
    let Some(action) = action else {
        return Err(RelayError::NotFound(format!(
            "Unknown method: models/{model}"
        )));
    };
    if !gemini::ACTIONS.contains(&action) {
        if action.is_empty() || !action.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(RelayError::BadRequest(
                "Invalid method in the request path".into(),
            ));
        }
        return Err(RelayError::NotFound(format!("Unknown method: {action}")));
    }
    Ok(model_action)
}

async fn generate(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let model_action = match check_model_action(path) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return fail(RelayError::TooLarge),
        Err(r) => return fail(RelayError::BadRequest(r.body_text())),
    };
    rerun_if_key_changed(&state, &headers, uri.query(), || {
        generate_once(&state, &headers, &uri, &model_action, body.clone())
    })
    .await
}

async fn generate_once(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    model_action: &str,
    body: Bytes,
) -> Response {
    let Some((model, action)) = model_action.split_once(':') else {
        return fail(RelayError::NotFound(format!(
            "Unknown method: models/{model_action}"
        )));
    };
    let key = match authenticate_relay(state, headers, uri.query()).await {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    if !key.key.allows_service("gemini") {
        return fail(RelayError::PermissionDenied(
            "This API key has no permission to use Gemini".into(),
        ));
    }
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return fail(RelayError::BadRequest(format!(
                "Invalid JSON payload received: {e}"
            )))
        }
    };
    if action != "countTokens" && json.get("contents").and_then(Value::as_array).is_none() {
        return fail(RelayError::BadRequest(
            "contents: a list is required".into(),
        ));
    }
    // Counting tokens costs nothing but passes the key's concurrency and rate window.
    let costs = action != "countTokens";
    let requested_output = json
        .get("generationConfig")
        .and_then(|g| g.get("maxOutputTokens"))
        .and_then(Value::as_u64);
    let facts = limits::RequestFacts {
        service: "gemini",
        model,
        path: uri.path(),
        has_user_id: false,
        body: &body,
        requested_output,
        costs,
    };
    let admission = match limits::admit_request(state, &key, headers, &facts).await {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let body = shape::with_output_limit(Dialect::Gemini, body, admission.output_limit);
    let endpoint = match action {
        "streamGenerateContent" => "/gemini/streamGenerateContent",
        "countTokens" => "/gemini/countTokens",
        _ => "/gemini/generateContent",
    };
    let call = Call {
        protocol: Protocol::Gemini,
        platforms: &GEMINI,
        endpoint,
        upstream_path: model_action.to_string(),
        model,
        stream: action == "streamGenerateContent",
        session: None,
        headers,
        query: uri.query(),
        body,
        output_limit: admission.output_limit.or(requested_output),
        strip_usage: false,
    };
    attempts::run(state, &key, &call, admission.reservation).await
}

async fn models(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let key = match authenticate(&state, &headers, uri.query()).await {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let models: Vec<Value> = state
        .pricing
        .gemini_models()
        .iter()
        .filter(|m| !key.key.model_blocked(m))
        .map(|m| json!({"name": format!("models/{m}"), "displayName": m,
                        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}))
        .collect();
    Json(json!({"models": models})).into_response()
}
