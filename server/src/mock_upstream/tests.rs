use super::*;
use serde_json::{json, Value};
use std::time::Duration;

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
