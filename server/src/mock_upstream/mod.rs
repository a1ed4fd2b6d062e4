//! A protocol-faithful fake of the upstream providers, for tests and benchmarks: Anthropic
//! Messages (JSON and SSE) and count_tokens, OpenAI Chat Completions and Responses, Gemini
//! generateContent. Failures are chosen by a path prefix, `/s/<scenario>/…`:
//!
//! | scenario | answer |
//! |---|---|
//! | `status-<code>` | that status with the provider's error body (`429` adds `retry-after: 7`) |
//! | `html-<code>` | that status with an HTML body (a proxy's error page) |
//! | `slow-<ms>` | waits before the response headers |
//! | `drip-<ms>` | a stream with a pause before every event |
//! | `reset` | a stream cut after its first events (connection reset) |
//! | `no-stop` | a stream that ends without `message_stop` |
//! | `malformed` | a stream with junk lines between the events |
//! | `family-limit` | 429 with `anthropic-ratelimit-unified-reset` one minute ahead |
//! | `quote-<code>` | that status with a request error in the provider's shape whose message quotes the client's input (its last message or input text, else its model), as upstreams do (`messages.0.content: …`, `Invalid value: '…'`, `model: …`) |
//! | `usage-<n>` | Messages answers report `n` input tokens; combines with `+` (`usage-9+drip-20`) |
//! | `long-<n>` | streams answer with `n` text deltas of one token (`"tok "`, 4 bytes) each, reporting `n` output tokens; combines with `+` (`long-400+drip-5`) |
//! | `big-<n>` | streams answer with `n` text deltas of 1,000 bytes each (to fill a client's socket buffers) |
//! | `redirect-<port>` | `307` to `http://127.0.0.1:<port>/captured` (a [`CredentialTrap`], to prove no credential follows a redirect) |
//! | `out-<n>` | answers report `n` output tokens, or the request's output limit if lower (as a real upstream stops at `max_tokens`); combines with `+` |
//!
//! OpenAI Chat streams carry usage only when the request asks for it
//! (`stream_options.include_usage`), and then `"usage": null` in every other chunk, as OpenAI's.
//!
//! `POST /v1/oauth/token` is a Claude OAuth token endpoint: the code `good-code` and any
//! refresh token `mock-refresh-*` are accepted (refreshes take 200 ms, to make races visible).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use futures_util::Stream;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::future::Future;

pub const INPUT_TOKENS: u64 = 25;
pub const OUTPUT_TOKENS: u64 = 12;
pub const CACHE_CREATE_5M_TOKENS: u64 = 10;
pub const CACHE_CREATE_1H_TOKENS: u64 = 20;
pub const CACHE_READ_TOKENS: u64 = 30;
pub const REPLY: [&str; 5] = ["Hello", " from", " the", " mock", " upstream."];

/// What the mock saw.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Requests kept for inspection: a benchmark's millions must not fill the memory.
const KEPT: usize = 1_000;

#[derive(Default)]
pub struct MockLog {
    /// The newest `KEPT` requests, oldest first.
    pub requests: Mutex<std::collections::VecDeque<Received>>,
    /// Every request ever received.
    pub total: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    /// Streams whose client (the relay) went away before the end.
    pub streams_cancelled: AtomicU64,
    /// Streams being sent right now, and the most at any moment.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// Token endpoint calls by grant type.
    pub code_exchanges: AtomicU64,
    pub refreshes: AtomicU64,
}

impl MockLog {
    pub fn count(&self) -> usize {
        self.total.load(Ordering::Relaxed) as usize
    }
    pub fn last(&self) -> Option<Received> {
        self.requests.lock().back().cloned()
    }
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    pub log: Arc<MockLog>,
    handle: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Serves on a free port of 127.0.0.1 until dropped.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("loopback address")).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let log = Arc::new(MockLog::default());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("mock upstream bind");
        let addr = listener.local_addr().expect("mock upstream address");
        let app = router(log.clone());
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockUpstream { addr, log, handle }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL of an account whose upstream behaves as `scenario`.
    pub fn scenario_url(&self, scenario: &str) -> String {
        format!("http://{}/s/{scenario}", self.addr)
    }
}

/// Credential headers an upstream request may carry.
pub const CREDENTIAL_HEADERS: [&str; 4] =
    ["x-api-key", "authorization", "x-goog-api-key", "api-key"];

/// A listener that answers any request and counts it, and the credential headers it carried:
/// where a redirecting upstream points.
pub struct CredentialTrap {
    pub addr: SocketAddr,
    /// Requests received (any method, any path).
    pub requests: Arc<AtomicU64>,
    /// Credential headers ([`CREDENTIAL_HEADERS`]) among them.
    pub credentials: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl CredentialTrap {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("trap bind");
        let addr = listener.local_addr().expect("trap address");
        let requests = Arc::new(AtomicU64::new(0));
        let credentials = Arc::new(AtomicU64::new(0));
        let (r, c) = (requests.clone(), credentials.clone());
        let app = Router::new().fallback(move |headers: HeaderMap| {
            let (r, c) = (r.clone(), c.clone());
            async move {
                r.fetch_add(1, Ordering::Relaxed);
                let n = CREDENTIAL_HEADERS
                    .iter()
                    .filter(|h| headers.contains_key(**h))
                    .count();
                c.fetch_add(n as u64, Ordering::Relaxed);
                Json(json!({"trapped": true}))
            }
        });
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CredentialTrap {
            addr,
            requests,
            credentials,
            handle,
        }
    }
}

impl Drop for CredentialTrap {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub fn router(log: Arc<MockLog>) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/responses", post(responses))
        .route("/v1beta/models/{model_action}", post(gemini))
        .route("/v1/oauth/token", post(oauth_token))
        .route("/model/{model_id}/invoke", post(bedrock))
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(bedrock),
        )
        // Azure OpenAI's paths for the same operations.
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(chat_completions),
        )
        .route("/openai/responses", post(responses))
        // Gemini's OpenAI-compatible endpoint.
        .route("/v1beta/openai/chat/completions", post(chat_completions));
    let scenarios = api.clone();
    Router::new()
        .merge(api.with_state((log.clone(), Scenario::Ok)))
        .nest(
            "/s/{scenario}",
            scenarios.with_state((log, Scenario::FromPath)),
        )
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Ok,
    FromPath,
}

#[derive(Clone, Debug, PartialEq)]
enum Behaviour {
    Ok,
    Status(u16),
    Html(u16),
    Slow(u64),
    Drip(u64),
    Reset,
    NoStop,
    Malformed,
    FamilyLimit,
    Quote(u16),
    Redirect(u16),
}

fn behaviour(s: Scenario, path: &str) -> Behaviour {
    if matches!(s, Scenario::Ok) {
        return Behaviour::Ok;
    }
    let full = path
        .strip_prefix("/s/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    // Scenarios that only shape the answer combine with another: `usage-100000+drip-20`.
    let name = full
        .split('+')
        .find(|p| {
            !["usage-", "out-", "long-", "big-"]
                .iter()
                .any(|s| p.starts_with(s))
        })
        .unwrap_or("");
    let num = |p: &str| name.strip_prefix(p).and_then(|n| n.parse::<u64>().ok());
    if let Some(code) = num("status-") {
        return Behaviour::Status(code as u16);
    }
    if let Some(code) = num("quote-") {
        return Behaviour::Quote(code as u16);
    }
    if let Some(code) = num("html-") {
        return Behaviour::Html(code as u16);
    }
    if let Some(ms) = num("slow-") {
        return Behaviour::Slow(ms);
    }
    if let Some(ms) = num("drip-") {
        return Behaviour::Drip(ms);
    }
    if let Some(port) = num("redirect-") {
        return Behaviour::Redirect(port as u16);
    }
    match name {
        "reset" => Behaviour::Reset,
        "no-stop" => Behaviour::NoStop,
        "malformed" => Behaviour::Malformed,
        "family-limit" => Behaviour::FamilyLimit,
        _ => Behaviour::Ok,
    }
}

/// The input tokens a scenario asks the answers to report (`usage-<n>`).
fn input_tokens(s: Scenario, path: &str) -> u64 {
    if matches!(s, Scenario::Ok) {
        return INPUT_TOKENS;
    }
    path.strip_prefix("/s/")
        .and_then(|p| p.split('/').next())
        .and_then(|name| {
            name.split('+')
                .find_map(|p| p.strip_prefix("usage-")?.parse().ok())
        })
        .unwrap_or(INPUT_TOKENS)
}

/// The number a `<prefix><n>` part of the scenario names.
fn scenario_number(s: Scenario, path: &str, prefix: &str) -> Option<u64> {
    if matches!(s, Scenario::Ok) {
        return None;
    }
    path.strip_prefix("/s/")
        .and_then(|p| p.split('/').next())
        .and_then(|name| {
            name.split('+')
                .find_map(|p| p.strip_prefix(prefix)?.parse::<u64>().ok())
        })
}

/// The text deltas of an answer: the fixed reply, or `long-<n>` / `big-<n>` pieces.
fn reply_parts(s: Scenario, path: &str) -> Vec<String> {
    if let Some(n) = scenario_number(s, path, "long-") {
        return vec!["tok ".to_string(); n as usize];
    }
    if let Some(n) = scenario_number(s, path, "big-") {
        return vec!["x".repeat(1000); n as usize];
    }
    REPLY.iter().map(|p| p.to_string()).collect()
}

/// The output tokens an answer reports: `out-<n>` (else one per `long-` piece, else the
/// default), never more than the request's own output limit.
fn output_tokens(s: Scenario, path: &str, body: &[u8]) -> u64 {
    let wanted = scenario_number(s, path, "out-")
        .or_else(|| scenario_number(s, path, "long-"))
        .unwrap_or(OUTPUT_TOKENS);
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let limit = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_u64))
        .chain(
            v.get("generationConfig")
                .and_then(|g| g.get("maxOutputTokens"))
                .and_then(Value::as_u64),
        )
        .min();
    limit.map_or(wanted, |l| wanted.min(l))
}

type Shared = (Arc<MockLog>, Scenario);

fn remember(log: &MockLog, uri: &axum::http::Uri, headers: &HeaderMap, body: &Bytes) {
    log.total.fetch_add(1, Ordering::Relaxed);
    let mut kept = log.requests.lock();
    if kept.len() >= KEPT {
        kept.pop_front();
    }
    kept.push_back(Received {
        path: uri.path().to_string(),
        headers: headers.clone(),
        body: body.clone(),
    });
}

/// Failure answers shared by every protocol; `None` means carry on normally.
async fn failure(b: &Behaviour, error_body: impl Fn(u16) -> Value) -> Option<Response> {
    match b {
        Behaviour::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (status, Json(error_body(*code))).into_response();
            if *code == 429 {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("7"));
            }
            Some(resp)
        }
        Behaviour::Html(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
            Some(
                (
                    status,
                    [("content-type", "text/html")],
                    "<html><body>Bad gateway</body></html>",
                )
                    .into_response(),
            )
        }
        Behaviour::FamilyLimit => {
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(error_body(429))).into_response();
            let reset = (chrono::Utc::now().timestamp() + 60).to_string();
            if let Ok(v) = HeaderValue::from_str(&reset) {
                resp.headers_mut()
                    .insert("anthropic-ratelimit-unified-reset", v);
            }
            Some(resp)
        }
        Behaviour::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            None
        }
        Behaviour::Redirect(port) => Some(
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("http://127.0.0.1:{port}/captured"))],
            )
                .into_response(),
        ),
        _ => None,
    }
}

/// The provider shapes of a quoting request error.
#[derive(Clone, Copy)]
enum Shape {
    Anthropic,
    OpenAi,
    Gemini,
    Bedrock,
}

/// The client's own text in a request: the last message's (or input's) text, else the model.
fn client_text(body: &Bytes, path_model: Option<&str>) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text_of = |c: &Value| -> Option<String> {
        match c {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => parts
                .iter()
                .find_map(|p| p.get("text").and_then(Value::as_str).map(str::to_string)),
            _ => None,
        }
    };
    v.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(text_of)
        .or_else(|| v.get("input").and_then(text_of))
        .or_else(|| {
            v.get("contents")
                .and_then(Value::as_array)
                .and_then(|c| c.last())
                .and_then(|c| c.get("parts"))
                .and_then(text_of)
        })
        .or_else(|| v.get("model").and_then(Value::as_str).map(str::to_string))
        .or_else(|| path_model.map(str::to_string))
        .unwrap_or_default()
}

/// A request error that quotes the client (`quote-<code>`), in the provider's shape.
fn quoting_error(shape: Shape, code: u16, body: &Bytes, path_model: Option<&str>) -> Response {
    let text = client_text(body, path_model);
    let message = match code {
        400 => format!("messages.0.content: {text}"),
        403 => format!("Invalid value: '{text}'"),
        404 => format!("model: {text}"),
        413 => format!("Request too large for input: {text}"),
        _ => format!("Invalid 'input[0]': {text}"),
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let (json, aws_type) = match shape {
        Shape::Anthropic => {
            let kind = match code {
                404 => "not_found_error",
                413 => "request_too_large",
                _ => "invalid_request_error",
            };
            (
                json!({"type": "error", "error": {"type": kind, "message": message}}),
                None,
            )
        }
        Shape::OpenAi => {
            let code_field = match code {
                403 | 404 => json!("model_not_found"),
                _ => Value::Null,
            };
            (
                json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code_field}}),
                None,
            )
        }
        Shape::Gemini => {
            let status = match code {
                404 => "NOT_FOUND",
                403 => "FAILED_PRECONDITION",
                _ => "INVALID_ARGUMENT",
            };
            (
                json!({"error": {"code": code, "message": message, "status": status}}),
                None,
            )
        }
        Shape::Bedrock => (
            json!({"message": message}),
            Some(if code == 404 {
                "ResourceNotFoundException"
            } else {
                "ValidationException"
            }),
        ),
    };
    let mut resp = (status, Json(json)).into_response();
    if let Some(t) = aws_type {
        resp.headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(t));
    }
    resp
}

fn anthropic_error(code: u16) -> Value {
    let kind = match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": format!("mock upstream error {code}")}})
}

fn openai_error(code: u16) -> Value {
    json!({"error": {"message": format!("mock upstream error {code}"), "type": "api_error", "code": code.to_string()}})
}

fn gemini_error(code: u16) -> Value {
    json!({"error": {"code": code, "message": format!("mock upstream error {code}"), "status": "UNAVAILABLE"}})
}

/// An Anthropic answer: the whole message, and the events of the same answer streamed.
fn anthropic_answer(
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
    parts: &[String],
) -> (Value, Vec<(String, Value)>) {
    let usage = json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": CACHE_CREATE_5M_TOKENS + CACHE_CREATE_1H_TOKENS,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "cache_creation": {"ephemeral_5m_input_tokens": CACHE_CREATE_5M_TOKENS, "ephemeral_1h_input_tokens": CACHE_CREATE_1H_TOKENS},
        "output_tokens": output_tokens,
    });
    let id = format!("msg_mock_{:x}", rand::random::<u64>());
    let message = json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": parts.concat()}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
    });
    let mut start_usage = usage;
    start_usage["output_tokens"] = json!(1);
    let mut events: Vec<(String, Value)> = vec![
        (
            "message_start".into(),
            json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        ),
        (
            "content_block_start".into(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping".into(), json!({"type": "ping"})),
    ];
    for part in parts {
        events.push(("content_block_delta".into(), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}})));
    }
    events.push((
        "content_block_stop".into(),
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(("message_delta".into(), json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": output_tokens}})));
    events.push(("message_stop".into(), json!({"type": "message_stop"})));
    (message, events)
}

/// Bedrock `InvokeModel` and `InvokeModelWithResponseStream`: a signed (or bearer) request in,
/// the Anthropic answer out, streamed as AWS event-stream frames.
async fn bedrock(
    State((log, s)): State<Shared>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !(auth.starts_with("AWS4-HMAC-SHA256 Credential=") || auth.starts_with("Bearer ")) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "Missing Authentication Token"})),
        )
            .into_response();
    }
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(
            Shape::Bedrock,
            code,
            &body,
            params.get("model_id").map(String::as_str),
        );
    }
    if let Some(resp) = failure(
        &b,
        |c| json!({"message": format!("mock bedrock error {c}")}),
    )
    .await
    {
        return resp;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v.get("anthropic_version").is_none() || v.get("model").is_some() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Malformed input request"})),
        )
            .into_response();
    }
    // The model id, without its Bedrock prefix and version, is the answer's model.
    let id = params.get("model_id").cloned().unwrap_or_default();
    let model = id
        .split_once("anthropic.")
        .map(|(_, m)| m.rsplit_once("-v").map(|(m, _)| m).unwrap_or(m))
        .unwrap_or(&id)
        .to_string();
    let (message, events) = anthropic_answer(
        &model,
        input_tokens(s, uri.path()),
        output_tokens(s, uri.path(), &body),
        &reply_parts(s, uri.path()),
    );
    if uri.path().ends_with("/invoke") {
        return Json(message).into_response();
    }
    let events: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
    let raw = crate::upstream::bedrock::encode_events(&events);
    // Sent in uneven pieces, so frames straddle network chunks.
    let frames: VecDeque<Frame> = raw
        .chunks(97)
        .map(|c| Frame::Bytes(Bytes::copy_from_slice(c)))
        .collect();
    let mut resp = sse(log, frames, None);
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    resp
}

fn requested_model(body: &Bytes) -> (String, bool) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-sonnet-4-5-20250929")
        .to_string();
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    (model, stream)
}

async fn messages(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    if serde_json::from_slice::<Value>(&body).is_err() {
        return (StatusCode::BAD_REQUEST, Json(anthropic_error(400))).into_response();
    }
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(Shape::Anthropic, code, &body, None);
    }
    if let Some(resp) = failure(&b, anthropic_error).await {
        return resp;
    }
    let (model, stream) = requested_model(&body);
    let (message, events) = anthropic_answer(
        &model,
        input_tokens(s, uri.path()),
        output_tokens(s, uri.path(), &body),
        &reply_parts(s, uri.path()),
    );
    if !stream {
        return Json(message).into_response();
    }
    let mut frames: VecDeque<Frame> = events
        .into_iter()
        .map(|(name, data)| Frame::Bytes(Bytes::from(format!("event: {name}\ndata: {data}\n\n"))))
        .collect();
    match b {
        Behaviour::Reset => {
            frames.truncate(4);
            frames.push_back(Frame::Pause(Duration::from_millis(50)));
            frames.push_back(Frame::Reset);
        }
        Behaviour::NoStop => {
            frames.pop_back();
        }
        Behaviour::Malformed => {
            frames.insert(
                2,
                Frame::Bytes(Bytes::from_static(
                    b"data: {not json\n\n:comment\ngarbage without colon\n\n",
                )),
            );
        }
        _ => {}
    }
    let delay = drip(&b);
    sse(log, frames, delay)
}

async fn count_tokens(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    if let Some(resp) = failure(&behaviour(s, uri.path()), anthropic_error).await {
        return resp;
    }
    Json(json!({"input_tokens": INPUT_TOKENS})).into_response()
}

async fn chat_completions(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(Shape::OpenAi, code, &body, None);
    }
    if let Some(resp) = failure(&b, openai_error).await {
        return resp;
    }
    let (model, stream) = requested_model(&body);
    let out = output_tokens(s, uri.path(), &body);
    let usage = json!({"prompt_tokens": INPUT_TOKENS + CACHE_READ_TOKENS, "completion_tokens": out,
        "total_tokens": INPUT_TOKENS + CACHE_READ_TOKENS + out, "prompt_tokens_details": {"cached_tokens": CACHE_READ_TOKENS}});
    let id = format!("chatcmpl-mock{:x}", rand::random::<u32>());
    if !stream {
        return Json(json!({"id": id, "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY.concat()}, "finish_reason": "stop"}],
            "usage": usage})).into_response();
    }
    // OpenAI streams usage only when asked, and then `"usage": null` in every other chunk.
    let include_usage = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["stream_options"]["include_usage"].as_bool())
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut frames: VecDeque<Frame> = VecDeque::new();
    let data = |v: Value| Frame::Bytes(Bytes::from(format!("data: {v}\n\n")));
    frames.push_back(data(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )));
    for part in reply_parts(s, uri.path()) {
        frames.push_back(data(chunk(json!({"content": part}), Value::Null)));
    }
    frames.push_back(data(chunk(json!({}), json!("stop"))));
    if include_usage {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage;
        frames.push_back(data(last));
    }
    frames.push_back(Frame::Bytes(Bytes::from_static(b"data: [DONE]\n\n")));
    let delay = drip(&b);
    if matches!(b, Behaviour::Reset) {
        frames.truncate(3);
        frames.push_back(Frame::Pause(Duration::from_millis(50)));
        frames.push_back(Frame::Reset);
    }
    sse(log, frames, delay)
}

async fn responses(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(Shape::OpenAi, code, &body, None);
    }
    if let Some(resp) = failure(&b, openai_error).await {
        return resp;
    }
    let (model, stream) = requested_model(&body);
    let out = output_tokens(s, uri.path(), &body);
    let parts = reply_parts(s, uri.path());
    let id = format!("resp_mock{:x}", rand::random::<u32>());
    let response = json!({"id": id, "object": "response", "created_at": 1_700_000_000, "status": "completed", "model": model,
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": parts.concat(), "annotations": []}]}],
        "usage": {"input_tokens": INPUT_TOKENS + CACHE_READ_TOKENS, "input_tokens_details": {"cached_tokens": CACHE_READ_TOKENS},
            "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + CACHE_READ_TOKENS + out}});
    if !stream {
        return Json(response).into_response();
    }
    let mut in_progress = response.clone();
    in_progress["status"] = json!("in_progress");
    in_progress["output"] = json!([]);
    in_progress["usage"] = Value::Null;
    let message = response["output"][0].clone();
    let mut empty_message = message.clone();
    empty_message["status"] = json!("in_progress");
    empty_message["content"] = json!([]);
    let mut frames = VecDeque::new();
    let mut seq = 0u64;
    let mut ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        Frame::Bytes(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
    };
    // The event sequence of the real Responses API.
    frames.push_back(ev(
        "response.created",
        json!({"response": in_progress.clone()}),
    ));
    frames.push_back(ev("response.in_progress", json!({"response": in_progress})));
    frames.push_back(ev(
        "response.output_item.added",
        json!({"output_index": 0, "item": empty_message}),
    ));
    frames.push_back(ev("response.content_part.added", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})));
    for part in &parts {
        frames.push_back(ev(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": part}),
        ));
    }
    frames.push_back(ev(
        "response.output_text.done",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": parts.concat()}),
    ));
    frames.push_back(ev("response.content_part.done", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": message["content"][0]})));
    frames.push_back(ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": message}),
    ));
    frames.push_back(ev("response.completed", json!({"response": response})));
    sse(log, frames, drip(&b))
}

async fn gemini(
    State((log, s)): State<Shared>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let model_action = params.get("model_action").cloned().unwrap_or_default();
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        let model = model_action.split(':').next();
        return quoting_error(Shape::Gemini, code, &body, model);
    }
    if let Some(resp) = failure(&b, gemini_error).await {
        return resp;
    }
    let (model, action) = model_action
        .split_once(':')
        .unwrap_or((model_action.as_str(), "generateContent"));
    let out = output_tokens(s, uri.path(), &body);
    let usage = json!({"promptTokenCount": INPUT_TOKENS + CACHE_READ_TOKENS, "candidatesTokenCount": out,
        "cachedContentTokenCount": CACHE_READ_TOKENS, "thoughtsTokenCount": 3,
        "totalTokenCount": INPUT_TOKENS + CACHE_READ_TOKENS + out + 3});
    let candidate = |text: &str, finish: Option<&str>| {
        let mut c = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        c
    };
    match action {
        "countTokens" => Json(json!({"totalTokens": INPUT_TOKENS})).into_response(),
        "streamGenerateContent" => {
            let parts = reply_parts(s, uri.path());
            let mut frames = VecDeque::new();
            for (i, part) in parts.iter().enumerate() {
                let last = i == parts.len() - 1;
                let mut chunk = json!({"candidates": [candidate(part, last.then_some("STOP"))], "modelVersion": model});
                if last {
                    chunk["usageMetadata"] = usage.clone();
                }
                frames.push_back(Frame::Bytes(Bytes::from(format!("data: {chunk}\r\n\r\n"))));
            }
            sse(log, frames, drip(&b))
        }
        _ => Json(json!({"candidates": [candidate(&REPLY.concat(), Some("STOP"))], "usageMetadata": usage, "modelVersion": model})).into_response(),
    }
}

/// The pause between frames of a `drip-<ms>` scenario.
fn drip(b: &Behaviour) -> Option<Duration> {
    match b {
        Behaviour::Drip(ms) => Some(Duration::from_millis(*ms)),
        _ => None,
    }
}

enum Frame {
    Bytes(Bytes),
    /// Lets what came before reach the peer before the next frame.
    Pause(Duration),
    Reset,
}

fn sse(log: Arc<MockLog>, frames: VecDeque<Frame>, delay: Option<Duration>) -> Response {
    log.streams_started.fetch_add(1, Ordering::SeqCst);
    let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    log.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let stream = MockStream {
        frames,
        delay,
        sleep: None,
        log,
        done: false,
    };
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

struct MockStream {
    frames: VecDeque<Frame>,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    log: Arc<MockLog>,
    done: bool,
}

impl Stream for MockStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(d) = self.delay {
            if self.frames.is_empty() {
                // fall through to completion
            } else {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
        }
        if let Some(Frame::Pause(d)) = self.frames.front() {
            let d = *d;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            self.frames.pop_front();
        }
        match self.frames.pop_front() {
            Some(Frame::Bytes(b)) => Poll::Ready(Some(Ok(b))),
            Some(Frame::Pause(_)) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Frame::Reset) => {
                self.done = true;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "mock reset",
                ))))
            }
            None => {
                if !self.done {
                    self.done = true;
                    self.log.streams_completed.fetch_add(1, Ordering::SeqCst);
                }
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for MockStream {
    fn drop(&mut self) {
        self.log.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            self.log.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn oauth_token(
    State((log, _)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let grant = field("grant_type");
    let ok = |n: u64, scope: &str| {
        Json(json!({"access_token": format!("mock-access-{n}"), "refresh_token": format!("mock-refresh-{n}"),
            "expires_in": 3600, "token_type": "Bearer", "scope": scope}))
        .into_response()
    };
    let refused = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    match grant.as_str() {
        "authorization_code"
            if field("code") == "good-code" && !field("code_verifier").is_empty() =>
        {
            let n = log.code_exchanges.fetch_add(1, Ordering::SeqCst) + 1;
            ok(n, "user:inference user:profile")
        }
        "refresh_token" if field("refresh_token").starts_with("mock-refresh-") => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let n = log.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
            ok(100 + n, "user:inference user:profile")
        }
        _ => refused(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(mock: &MockUpstream, path: &str, body: Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", mock.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn speaks_openai_responses_and_gemini() {
        let mock = MockUpstream::start().await;
        let chat: Value = post(
            &mock,
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": []}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(chat["object"], "chat.completion");
        assert_eq!(
            chat["usage"]["prompt_tokens"],
            INPUT_TOKENS + CACHE_READ_TOKENS
        );
        let stream = post(
            &mock,
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap();
        assert!(stream.trim_end().ends_with("data: [DONE]"));
        // As OpenAI: a stream reports usage only when asked to.
        assert!(!stream.contains("usage"), "{stream}");
        let stream = post(
            &mock,
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await
        .text()
        .await
        .unwrap();
        assert!(stream.contains("\"completion_tokens\":12"));
        assert!(stream.contains("\"choices\":[],"));
        assert!(stream.contains("\"usage\":null"));

        let resp: Value = post(&mock, "/v1/responses", json!({"model": "gpt-5"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            resp["usage"]["input_tokens_details"]["cached_tokens"],
            CACHE_READ_TOKENS
        );
        let stream = post(
            &mock,
            "/v1/responses",
            json!({"model": "gpt-5", "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap();
        assert!(stream.contains("event: response.completed"));

        let g: Value = post(
            &mock,
            "/v1beta/models/gemini-2.5-pro:generateContent",
            json!({"contents": []}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            g["usageMetadata"]["cachedContentTokenCount"],
            CACHE_READ_TOKENS
        );
        let gs = post(
            &mock,
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            json!({}),
        )
        .await
        .text()
        .await
        .unwrap();
        assert_eq!(gs.matches("data: ").count(), REPLY.len());
        assert!(gs.contains("usageMetadata"));

        let err = post(
            &mock,
            "/s/status-503/v1beta/models/gemini-2.5-pro:generateContent",
            json!({}),
        )
        .await;
        assert_eq!(err.status(), 503);
        let err = post(&mock, "/s/status-429/v1/chat/completions", json!({})).await;
        assert_eq!(err.status(), 429);
        assert_eq!(err.headers()["retry-after"], "7");
        assert_eq!(mock.log.count(), 9);
    }

    #[tokio::test]
    async fn anthropic_stream_failures() {
        let mock = MockUpstream::start().await;
        let body = json!({"model": "claude-x", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let ok = post(&mock, "/v1/messages", body.clone())
            .await
            .text()
            .await
            .unwrap();
        assert!(ok.contains("event: message_stop"));
        let no_stop = post(&mock, "/s/no-stop/v1/messages", body.clone())
            .await
            .text()
            .await
            .unwrap();
        assert!(no_stop.contains("event: message_delta") && !no_stop.contains("message_stop"));
        let malformed = post(&mock, "/s/malformed/v1/messages", body.clone())
            .await
            .text()
            .await
            .unwrap();
        assert!(malformed.contains("data: {not json"));
        let reset = post(&mock, "/s/reset/v1/messages", body.clone())
            .await
            .text()
            .await;
        assert!(reset.is_err(), "the connection is cut mid-stream");
        let started = std::time::Instant::now();
        let slow = post(&mock, "/s/slow-300/v1/messages", body).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(slow.status(), 200);
    }
}
