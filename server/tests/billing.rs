//! Every token billed: OpenAI streams report usage although the client did not ask (and the
//! client sees the stream it would have seen), streams a client abandons or stops reading are
//! billed what they delivered, and their slots come back.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{Engine, Harness};
use crs::{
    mock_upstream as mock,
    store::{account_lease_scope, buckets, key_lease_scope},
};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

both_engines!(
    openai_streams_are_billed_without_include_usage,
    an_abandoned_anthropic_stream_is_billed_what_it_delivered,
    an_abandoned_openai_stream_is_billed_what_it_delivered,
    an_abandoned_responses_stream_is_billed_what_it_delivered,
    an_abandoned_gemini_stream_is_billed_what_it_delivered,
);

async fn openai_account(h: &Harness, scenario: Option<&str>) -> String {
    let url = scenario
        .map(|s| h.mock.scenario_url(s))
        .unwrap_or_else(|| h.mock.url());
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/openai-responses-accounts",
            Some(json!({"name": "openai", "baseApi": url, "apiKey": "sk-openai-upstream"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"]["id"].as_str().unwrap().to_string()
}

fn chat(stream: bool, options: Option<Value>) -> Value {
    let mut b = json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    if let Some(o) = options {
        b["stream_options"] = o;
    }
    b
}

async fn openai_streams_are_billed_without_include_usage(engine: Engine) {
    let h = Harness::new(engine).await;
    openai_account(&h, None).await;
    let (key_id, key) = h.key(json!({})).await;
    let resp = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat(true, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    // The upstream was asked for its usage.
    let sent: Value = serde_json::from_slice(&h.mock.log.last().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // The client sees the stream it asked for: no usage chunk, no usage field at all.
    assert!(!text.contains("usage"), "{text}");
    assert!(!text.contains("\"choices\":[]"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let content: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, mock::REPLY.concat());
    // And the relay billed the upstream's tokens.
    let c = h.wait_requests(&buckets::key_total(&key_id), 1).await;
    assert_eq!(
        (c.input_tokens, c.cache_read_tokens, c.output_tokens),
        (
            mock::INPUT_TOKENS,
            mock::CACHE_READ_TOKENS,
            mock::OUTPUT_TOKENS
        )
    );
    assert!(c.cost_nanos > 0);

    // A client that asks for usage gets it, as before.
    let resp = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat(true, Some(json!({"include_usage": true}))))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"choices\":[]"), "{text}");
    assert!(text.contains("\"completion_tokens\":12"), "{text}");
    h.wait_requests(&buckets::key_total(&key_id), 2).await;
}

/// Reads a stream until `enough` content bytes arrived, then drops it. Returns the bytes of
/// content received.
async fn read_then_drop(
    resp: reqwest::Response,
    enough: usize,
    content: fn(&Value) -> usize,
) -> usize {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        // Gemini ends its events with CRLF pairs.
        buf = buf.replace("\r\n", "\n");
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(v) = line
                    .strip_prefix("data: ")
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                {
                    received += content(&v);
                }
            }
        }
        if received >= enough {
            break;
        }
    }
    drop(body);
    received
}

async fn leases_back_to_zero(h: &Harness, account: &str, key_id: &str) {
    let store = &h.relay().state.store;
    for _ in 0..100 {
        let a = store
            .count_leases(&account_lease_scope(account))
            .await
            .unwrap();
        let k = store.count_leases(&key_lease_scope(key_id)).await.unwrap();
        if a == 0 && k == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("leases were not released");
}

async fn last_record(h: &Harness, key_id: &str) -> app::domain::RequestRecord {
    h.wait_requests(&buckets::key_total(key_id), 1).await;
    h.relay()
        .state
        .store
        .recent_records(key_id, 1)
        .await
        .unwrap()
        .remove(0)
}

async fn an_abandoned_anthropic_stream_is_billed_what_it_delivered(engine: Engine) {
    let h = Harness::new(engine).await;
    // 400 deltas of one 4-byte token, 5 ms apart: two seconds of answer.
    let account = h.account("main", Some("long-400+drip-5"), 50).await;
    let (key_id, key) = h.key(json!({"concurrencyLimit": 2})).await;
    let cancelled = h.mock.log.streams_cancelled.load(Ordering::SeqCst);
    let resp = h
        .messages(
            &key,
            json!({"model": common::MODEL, "max_tokens": 4000, "stream": true,
                   "messages": [{"role": "user", "content": "count"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let received = read_then_drop(resp, 800, |v| {
        v["delta"]["text"].as_str().map_or(0, str::len)
    })
    .await;
    assert!((800..1600).contains(&received), "received {received} bytes");
    let r = last_record(&h, &key_id).await;
    // One token per delivered byte: never fewer tokens than the client received (one per
    // delta here), and not past the request's max_tokens.
    assert!(r.usage_estimated);
    assert!(
        r.usage.output_tokens >= received as u64 && r.usage.output_tokens <= 4000,
        "billed {} output tokens for {received} bytes received",
        r.usage.output_tokens
    );
    assert!(
        r.usage.output_tokens >= received as u64 / 4,
        "tokens received"
    );
    // The input is the upstream's own figure from message_start.
    assert_eq!(r.usage.input_tokens, mock::INPUT_TOKENS);
    assert!(r.cost_nanos > 0);
    leases_back_to_zero(&h, &account, &key_id).await;
    // The upstream stream was cancelled rather than read to its end.
    for _ in 0..100 {
        if h.mock.log.streams_cancelled.load(Ordering::SeqCst) > cancelled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream stream was not cancelled");
}

async fn an_abandoned_openai_stream_is_billed_what_it_delivered(engine: Engine) {
    let h = Harness::new(engine).await;
    let account = openai_account(&h, Some("long-400+drip-5")).await;
    let (key_id, key) = h.key(json!({"concurrencyLimit": 2})).await;
    let body = chat(true, None);
    let resp = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let received = read_then_drop(resp, 800, |v| {
        v["choices"][0]["delta"]["content"]
            .as_str()
            .map_or(0, str::len)
    })
    .await;
    let r = last_record(&h, &key_id).await;
    assert!(r.usage_estimated);
    assert!(
        r.usage.output_tokens >= received as u64,
        "billed {} output tokens for {received} bytes received",
        r.usage.output_tokens
    );
    // OpenAI reports usage only at the end: the input is the prompt's estimate (a token per
    // three bytes of the request body the upstream got).
    assert!(r.usage.input_tokens > 0);
    leases_back_to_zero(&h, &account, &key_id).await;
}

async fn an_abandoned_responses_stream_is_billed_what_it_delivered(engine: Engine) {
    let h = Harness::new(engine).await;
    let account = openai_account(&h, Some("long-400+drip-5")).await;
    let (key_id, key) = h.key(json!({"concurrencyLimit": 2})).await;
    let resp = h
        .http
        .post(h.url("/openai/v1/responses"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o", "stream": true, "input": "count"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let received = read_then_drop(resp, 800, |v| {
        if v["type"] == "response.output_text.delta" {
            v["delta"].as_str().map_or(0, str::len)
        } else {
            0
        }
    })
    .await;
    assert!(received >= 800, "received {received} bytes");
    let r = last_record(&h, &key_id).await;
    // Responses reports usage only in `response.completed`, which never came.
    assert!(r.usage_estimated);
    assert!(
        r.usage.output_tokens >= received as u64,
        "billed {} output tokens for {received} bytes received",
        r.usage.output_tokens
    );
    assert!(r.usage.input_tokens > 0);
    leases_back_to_zero(&h, &account, &key_id).await;
}

async fn an_abandoned_gemini_stream_is_billed_what_it_delivered(engine: Engine) {
    let h = Harness::new(engine).await;
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/gemini-api-accounts",
            Some(
                json!({"name": "g", "baseUrl": h.mock.scenario_url("long-400+drip-5"),
                        "apiKey": "gemini-upstream-key"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let account = v["data"]["id"].as_str().unwrap().to_string();
    let (key_id, key) = h.key(json!({"concurrencyLimit": 2})).await;
    let resp = h
        .http
        .post(h.url("/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", &key)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "count"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let received = read_then_drop(resp, 800, |v| {
        v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .map_or(0, str::len)
    })
    .await;
    assert!(received >= 800, "received {received} bytes");
    let r = last_record(&h, &key_id).await;
    // Gemini sends its usage with the last chunk, which never came.
    assert!(r.usage_estimated);
    assert!(
        r.usage.output_tokens >= received as u64,
        "billed {} output tokens for {received} bytes received",
        r.usage.output_tokens
    );
    assert!(r.usage.input_tokens > 0);
    leases_back_to_zero(&h, &account, &key_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_timeout() {
    let h = Harness::with_config(Engine::Embedded, |c| {
        c.client_write_timeout = Duration::from_secs(1)
    })
    .await;
    // 30 MB of answer: more than the socket buffers between the relay and the client hold.
    let account = h
        .account_at("big", &h.mock.scenario_url("big-30000"), 50)
        .await;
    let (key_id, key) = h.key(json!({"concurrencyLimit": 1})).await;
    let cancelled = h.mock.log.streams_cancelled.load(Ordering::SeqCst);
    let resp = h
        .messages(
            &key,
            json!({"model": common::MODEL, "max_tokens": 64000, "stream": true,
                   "messages": [{"role": "user", "content": "go"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    // The client now reads nothing. Within the timeout (and some slack) the relay drops the
    // stream: upstream cancelled, slots free, what went out billed.
    let mut dropped = false;
    for _ in 0..100 {
        if h.mock.log.streams_cancelled.load(Ordering::SeqCst) > cancelled {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dropped, "the upstream stream was not cancelled");
    leases_back_to_zero(&h, &account, &key_id).await;
    let r = last_record(&h, &key_id).await;
    assert!(r.usage_estimated);
    assert!(r.usage.output_tokens > 0 && r.usage.output_tokens <= 64000);
    // (The key's slot is free although the client still holds its connection: above.)
    drop(body);
}
