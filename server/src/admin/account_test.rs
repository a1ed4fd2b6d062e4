//! A test request through one account (not the scheduler), as the admin's "test" button.

use app::domain::Platform;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::json;

use super::{accounts::get, AdminError};
use crate::{
    relay::{
        attempts::Call,
        passthrough::{self, Attempt, Exchange},
        protocol::Protocol,
    },
    state::AppState,
};

/// The model a test asks for when none is given.
pub const DEFAULT_TEST_MODEL: &str = "claude-sonnet-4-5-20250929";

/// How a test request went.
pub struct TestOutcome {
    pub status: u16,
    pub latency_ms: u64,
    pub model: String,
    /// The start of the upstream's answer (at most 2,000 characters).
    pub response: String,
}

impl TestOutcome {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends one small request through account `id` and reports the outcome.
pub async fn test(
    state: &AppState,
    id: &str,
    model: Option<String>,
) -> Result<TestOutcome, AdminError> {
    let a = get(state, id, None).await?;
    let model = model.unwrap_or_else(|| DEFAULT_TEST_MODEL.into());
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
    let request = crate::upstream::request(state, &a, &call)
        .await
        .map_err(|e| AdminError::BadRequest(e.message()))?;
    let started = std::time::Instant::now();
    let ex = Exchange {
        request_id: format!("test-{}", uuid::Uuid::new_v4()),
        // Tests spend upstream tokens: they are accounted to the account, under this pseudo key.
        key_id: "admin-test".into(),
        account_id: id.to_string(),
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
    let (status, answer) = match passthrough::send(state, request, ex).await {
        Attempt::Delivered(resp) => (resp.status().as_u16(), body_text(resp).await),
        Attempt::Failed(f) => (f.status, String::from_utf8_lossy(&f.body).to_string()),
    };
    Ok(TestOutcome {
        status,
        latency_ms: started.elapsed().as_millis() as u64,
        model,
        response: answer.chars().take(2000).collect(),
    })
}

async fn body_text(resp: axum::response::Response) -> String {
    axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default()
}
