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

// One file per protocol; Azure OpenAI's paths are served by `openai`'s handlers.
mod anthropic;
mod bedrock;
mod errors;
mod gemini;
mod oauth;
mod openai;
mod scenario;
mod stream;
#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use axum::{body::Bytes, http::HeaderMap, routing::post, Json, Router};
use parking_lot::Mutex;
use serde_json::json;

use scenario::Scenario;

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
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(openai::responses))
        .route("/v1beta/models/{model_action}", post(gemini::gemini))
        .route("/v1/oauth/token", post(oauth::oauth_token))
        .route("/model/{model_id}/invoke", post(bedrock::bedrock))
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(bedrock::bedrock),
        )
        // Azure OpenAI's paths for the same operations.
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(openai::chat_completions),
        )
        .route("/openai/responses", post(openai::responses))
        // Gemini's OpenAI-compatible endpoint.
        .route(
            "/v1beta/openai/chat/completions",
            post(openai::chat_completions),
        );
    let scenarios = api.clone();
    Router::new()
        .merge(api.with_state((log.clone(), Scenario::Ok)))
        .nest(
            "/s/{scenario}",
            scenarios.with_state((log, Scenario::FromPath)),
        )
}

/// Every handler's state: the log, and whether its path carries a scenario.
type Shared = (Arc<MockLog>, Scenario);

/// Logs a request (every handler does, first).
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
