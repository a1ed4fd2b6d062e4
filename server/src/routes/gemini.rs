//! The Gemini-native surface: generateContent, streamGenerateContent (`alt=sse` kept) and
//! countTokens, passed through to Gemini API accounts; the models list. Errors in Gemini's shape.

use app::domain::Platform;
use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, PathRejection},
        FromRequestParts, Path, State,
    },
    http::{request::Parts, HeaderMap, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

use crate::{
    limits,
    relay::{
        attempts::{self, Call},
        error::{GeminiError, RelayError},
        protocol::Protocol,
        shape::{self, Dialect},
    },
    routes::key_first::RelayKey,
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

/// The checked `{model_action}` of the path ([`check_model_action`]), taken before the key:
/// a bad path is refused first, whichever way the key is read.
struct ModelAction(String);

impl<S: Send + Sync> FromRequestParts<S> for ModelAction {
    type Rejection = GeminiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GeminiError> {
        let path = Path::<String>::from_request_parts(parts, state).await;
        Ok(ModelAction(check_model_action(path)?))
    }
}

async fn generate(
    State(state): State<AppState>,
    ModelAction(model_action): ModelAction,
    RelayKey(key): RelayKey,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GeminiError> {
    let body = body?;
    let Some((model, action)) = model_action.split_once(':') else {
        return Err(RelayError::NotFound(format!("Unknown method: models/{model_action}")).into());
    };
    if !key.key.allows_service("gemini") {
        return Err(RelayError::PermissionDenied(
            "This API key has no permission to use Gemini".into(),
        )
        .into());
    }
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| RelayError::BadRequest(format!("Invalid JSON payload received: {e}")))?;
    if action != "countTokens" && json.get("contents").and_then(Value::as_array).is_none() {
        return Err(RelayError::BadRequest("contents: a list is required".into()).into());
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
    let admission = limits::admit_request(&state, &key, &headers, &facts).await?;
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
        upstream_path: model_action.clone(),
        model,
        stream: action == "streamGenerateContent",
        session: None,
        headers: &headers,
        query: uri.query(),
        body,
        output_limit: admission.output_limit.or(requested_output),
        strip_usage: false,
    };
    Ok(attempts::run(&state, &key, &call, admission.reservation).await)
}

async fn models(State(state): State<AppState>, RelayKey(key): RelayKey) -> Response {
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
