//! Issue 5: the OpenAI-compatible and Gemini surfaces through the real relay and the mock, on
//! both store engines: conversion to Claude, passthrough to OpenAI-compatible and Gemini
//! accounts, streams, usage and cost, and errors in each caller's shape.

mod common;

use common::{Engine, Harness, UPSTREAM_KEY};
use crs::{mock_upstream as mock, store::buckets};
use reqwest::Method;
use serde_json::{json, Value};

both_engines!(
    chat_completions_to_claude_by_conversion,
    chat_completions_stream_to_claude_with_usage,
    chat_and_responses_pass_through_to_openai_accounts,
    gemini_generate_and_sse_stream,
    bad_inputs_answer_in_each_protocols_shape,
    azure_openai_accounts_serve_chat_and_responses,
    bedrock_accounts_sign_and_decode_event_streams,
);

async fn accounts(h: &Harness) {
    for (path, body) in [
        (
            "/admin/claude-console-accounts",
            json!({"name": "claude", "apiUrl": h.mock.url(), "apiKey": UPSTREAM_KEY}),
        ),
        (
            "/admin/openai-responses-accounts",
            json!({"name": "openai", "baseApi": h.mock.url(), "apiKey": "sk-openai-upstream"}),
        ),
        (
            "/admin/gemini-api-accounts",
            json!({"name": "gemini", "baseUrl": h.mock.url(), "apiKey": "gemini-upstream-key"}),
        ),
    ] {
        let (s, v) = h.admin(Method::POST, path, Some(body)).await;
        assert_eq!(s, 200, "{path}: {v}");
        assert!(
            !v.to_string().contains("upstream-key") && !v.to_string().contains("sk-openai"),
            "no secret returned"
        );
    }
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 50,
           "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})
}

async fn chat_completions_to_claude_by_conversion(engine: Engine) {
    let h = Harness::new(engine).await;
    accounts(&h).await;
    let (key_id, key) = h.key(json!({})).await;
    for path in [
        "/openai/claude/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/api/v1/chat/completions",
    ] {
        let resp = h
            .http
            .post(h.url(path))
            .bearer_auth(&key)
            .json(&chat_body(common::MODEL, false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], mock::REPLY.concat());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let prompt = mock::INPUT_TOKENS
            + mock::CACHE_READ_TOKENS
            + mock::CACHE_CREATE_5M_TOKENS
            + mock::CACHE_CREATE_1H_TOKENS;
        assert_eq!(v["usage"]["prompt_tokens"], prompt);
        assert_eq!(v["usage"]["completion_tokens"], mock::OUTPUT_TOKENS);
        // Upstream got an Anthropic request, with the system prompt kept.
        let got = h.mock.log.last().unwrap();
        assert_eq!(got.path, "/v1/messages");
        let sent: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(sent["system"], "Be brief.");
        assert_eq!(
            sent["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        );
    }
    let c = h.wait_requests(&buckets::key_total(&key_id), 3).await;
    assert_eq!(c.input_tokens, 3 * mock::INPUT_TOKENS);
    assert_eq!(
        c.cost_nanos,
        3 * (25 * 3000 + 12 * 15000 + 10 * 3750 + 20 * 6000 + 30 * 300)
    );
}

async fn chat_completions_stream_to_claude_with_usage(engine: Engine) {
    let h = Harness::new(engine).await;
    accounts(&h).await;
    let (key_id, key) = h.key(json!({})).await;
    let mut body = chat_body(common::MODEL, true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let datas: Vec<&str> = text
        .split("\n\n")
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, mock::REPLY.concat());
    let usage = chunks.iter().find(|c| c["usage"].is_object()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], mock::OUTPUT_TOKENS);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let c = h.wait_requests(&buckets::key_total(&key_id), 1).await;
    assert_eq!(c.output_tokens, mock::OUTPUT_TOKENS);
}

async fn chat_and_responses_pass_through_to_openai_accounts(engine: Engine) {
    let h = Harness::new(engine).await;
    accounts(&h).await;
    let (key_id, key) = h.key(json!({})).await;
    // Chat Completions for a GPT model: the same protocol, passed through.
    let body = chat_body("gpt-5", false);
    let resp = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], mock::REPLY.concat());
    let got = h.mock.log.last().unwrap();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.headers["authorization"], "Bearer sk-openai-upstream");
    assert_eq!(
        serde_json::from_slice::<Value>(&got.body).unwrap(),
        body,
        "unchanged"
    );

    // Responses, JSON and stream.
    for stream in [false, true] {
        let body = json!({"model": "gpt-5", "input": "Hi", "stream": stream});
        let resp = h
            .http
            .post(h.url("/openai/v1/responses"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        if stream {
            assert!(text.contains("event: response.completed"));
        } else {
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap()["status"],
                "completed"
            );
        }
        assert_eq!(h.mock.log.last().unwrap().path, "/v1/responses");
    }
    let c = h.wait_requests(&buckets::key_total(&key_id), 3).await;
    // Cached input is a cache read, counted once: 25 input + 30 cached.
    assert_eq!(
        (c.input_tokens, c.cache_read_tokens, c.output_tokens),
        (75, 90, 36)
    );
    // gpt-5: $1.25 input, $0.125 cached, $10 output per million.
    assert_eq!(c.cost_nanos, 3 * (25 * 1250 + 30 * 125 + 12 * 10_000));
    let platform = h
        .relay()
        .state
        .store
        .usage(&[buckets::key_platform_total(&key_id, "openai")])
        .await
        .unwrap();
    assert_eq!(platform[0].requests, 3);
}

async fn gemini_generate_and_sse_stream(engine: Engine) {
    let h = Harness::new(engine).await;
    accounts(&h).await;
    let (key_id, key) = h.key(json!({})).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
    let resp = h
        .http
        .post(h.url("/gemini/v1beta/models/gemini-2.5-pro:generateContent"))
        .header("x-goog-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        mock::REPLY.concat()
    );
    let got = h.mock.log.last().unwrap();
    assert_eq!(got.path, "/v1beta/models/gemini-2.5-pro:generateContent");
    assert_eq!(got.headers["x-goog-api-key"], "gemini-upstream-key");

    // The key in the query, as Gemini clients do; alt=sse streams.
    let resp = h
        .http
        .post(h.url(&format!(
            "/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key={key}"
        )))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert_eq!(text.matches("data: ").count(), mock::REPLY.len());
    assert!(
        !h.mock.log.last().unwrap().path.contains(&key),
        "the client's key never goes upstream"
    );

    let c = h.wait_requests(&buckets::key_total(&key_id), 2).await;
    // Cached and thinking tokens count: 25 input + 30 cached, 12 + 3 output.
    assert_eq!(
        (c.input_tokens, c.cache_read_tokens, c.output_tokens),
        (50, 60, 30)
    );
    let records = h
        .relay()
        .state
        .store
        .recent_records(&key_id, 5)
        .await
        .unwrap();
    assert!(
        records.iter().all(|r| !r.used_fallback_pricing),
        "gemini-2.5-pro is priced"
    );
    // Chat Completions for a Gemini model: Gemini's OpenAI-compatible endpoint.
    let resp = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("gemini-2.5-pro", false))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let resp: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        resp["choices"][0]["message"]["content"],
        mock::REPLY.concat()
    );
    let got = h.mock.log.last().unwrap();
    assert_eq!(got.path, "/v1beta/openai/chat/completions");
    assert_eq!(got.headers["authorization"], "Bearer gemini-upstream-key");
    let models: Value = h
        .http
        .get(h.url("/gemini/v1beta/models"))
        .header("x-goog-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(models["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "models/gemini-2.5-pro"));
}

async fn bad_inputs_answer_in_each_protocols_shape(engine: Engine) {
    let h = Harness::new(engine).await;
    accounts(&h).await;
    let (_, key) = h.key(json!({})).await;
    let openai = |path: &'static str, body: Value| {
        h.http
            .post(h.url(path))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    for (path, body) in [
        (
            "/openai/v1/chat/completions",
            json!({"model": "claude-sonnet-4-5-20250929"}),
        ),
        (
            "/openai/v1/chat/completions",
            json!({"model": "gpt-5", "messages": []}),
        ),
        (
            "/openai/v1/chat/completions",
            json!({"model": 7, "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/openai/v1/chat/completions",
            json!({"model": "claude-x", "messages": [{"role": "user", "content": 5}]}),
        ),
        ("/openai/v1/responses", json!({"model": "gpt-5"})),
    ] {
        let resp = openai(path, body.clone()).await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].is_string() && v.get("type").is_none(),
            "OpenAI shape: {v}"
        );
    }
    let resp = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .json(&chat_body("gpt-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Missing API key"));
    let gemini = |path: String, body: Value| {
        h.http
            .post(h.url(&path))
            .header("x-goog-api-key", &key)
            .json(&body)
            .send()
    };
    let resp = gemini(
        "/gemini/v1beta/models/gemini-2.5-pro:generateContent".into(),
        json!({"contents": "nope"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(v["error"]["code"], 400);
    let resp = gemini(
        "/gemini/v1beta/models/gemini-2.5-pro:explode".into(),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn unknown_models_with_no_account_are_404_in_every_protocol() {
    let h = Harness::new(Engine::Embedded).await;
    let (_, key) = h.key(json!({})).await;
    // No account at all.
    let resp = h.messages(&key, common::body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    let resp = h
        .http
        .post(h.url("/openai/v1/responses"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-9", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = h
        .http
        .post(h.url("/gemini/v1beta/models/gemini-9:generateContent"))
        .header("x-goog-api-key", &key)
        .json(&json!({"contents": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["status"],
        "NOT_FOUND"
    );
}

async fn azure_openai_accounts_serve_chat_and_responses(engine: Engine) {
    let h = Harness::new(engine).await;
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/azure-openai-accounts",
            Some(json!({"name": "azure", "azureEndpoint": h.mock.url(), "apiKey": "azure-secret", "deploymentName": "gpt5-prod", "apiVersion": "2025-04-01-preview"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains("azure-secret"));
    let (s, _) = h
        .admin(
            Method::POST,
            "/admin/azure-openai-accounts",
            Some(json!({"name": "x", "azureEndpoint": h.mock.url(), "apiKey": "k"})),
        )
        .await;
    assert_eq!(s, 400, "deploymentName is required");
    let (key_id, key) = h.key(json!({})).await;
    for (path, body, upstream) in [
        (
            "/azure/chat/completions",
            chat_body("gpt-5", false),
            "/openai/deployments/gpt5-prod/chat/completions",
        ),
        (
            "/openai/v1/chat/completions",
            chat_body("gpt-5", true),
            "/openai/deployments/gpt5-prod/chat/completions",
        ),
        (
            "/azure/responses",
            json!({"model": "gpt-5", "input": "Hi"}),
            "/openai/responses",
        ),
    ] {
        let resp = h
            .http
            .post(h.url(path))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("Hello") || text.contains("upstream."),
            "{path}: {text}"
        );
        let got = h.mock.log.last().unwrap();
        assert_eq!(got.path, upstream);
        assert_eq!(got.headers["api-key"], "azure-secret");
    }
    let c = h.wait_requests(&buckets::key_total(&key_id), 2).await;
    assert!(c.requests >= 2);
    assert_eq!(c.output_tokens, c.requests * mock::OUTPUT_TOKENS);
}

async fn bedrock_accounts_sign_and_decode_event_streams(engine: Engine) {
    let h = Harness::new(engine).await;
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/bedrock-accounts",
            Some(json!({"name": "bedrock", "region": "us-west-2", "apiUrl": h.mock.url(),
                        "awsCredentials": {"accessKeyId": "AKIDMOCK", "secretAccessKey": "mock-aws-secret"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains("mock-aws-secret"));
    let (key_id, key) = h.key(json!({})).await;
    for stream in [false, true] {
        let resp = h.messages(&key, common::body(stream)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        if stream {
            for event in [
                "message_start",
                "content_block_delta",
                "message_delta",
                "message_stop",
            ] {
                assert!(
                    text.contains(&format!("event: {event}\n")),
                    "{event} in {text}"
                );
            }
        } else {
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap()["content"][0]["text"],
                mock::REPLY.concat()
            );
        }
        let got = h.mock.log.last().unwrap();
        let action = if stream {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        assert_eq!(
            got.path,
            format!("/model/us.anthropic.{}-v1%3A0/{action}", common::MODEL)
        );
        let auth = got.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCK/"),
            "{auth}"
        );
        assert!(auth.contains("/us-west-2/bedrock/aws4_request"), "{auth}");
        assert!(got.headers.contains_key("x-amz-date"));
        let sent: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(sent["anthropic_version"], "bedrock-2023-05-31");
        assert!(sent.get("model").is_none());
    }
    // Usage, cache tokens included, and the Sonnet price for both.
    let c = h.wait_requests(&buckets::key_total(&key_id), 2).await;
    assert_eq!(c.cache_read_tokens, 2 * mock::CACHE_READ_TOKENS);
    assert_eq!(c.output_tokens, 2 * mock::OUTPUT_TOKENS);
    assert_eq!(
        c.cost_nanos,
        2 * (25 * 3000 + 12 * 15000 + 10 * 3750 + 20 * 6000 + 30 * 300)
    );
    // An account needs AWS keys or a Bedrock API key (bearerToken).
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/bedrock-accounts",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
}
