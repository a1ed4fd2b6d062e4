//! The Claude relay path end to end: a real relay over HTTP, the mock upstream, both store
//! engines.

mod common;

use std::time::Duration;

use common::{body, Engine, Harness, MODEL, UPSTREAM_KEY};
use crs::{mock_upstream as mock, store::buckets};
use futures_util::StreamExt;
use serde_json::{json, Value};

both_engines!(
    non_stream_is_relayed_unchanged_and_accounted,
    stream_is_forwarded_and_accounted,
    bad_keys_get_401_with_reasons,
    bad_json_is_400_and_never_reaches_upstream,
    upstream_errors_keep_their_status,
    unreachable_and_slow_upstreams_are_502_and_504,
    client_abort_cancels_upstream_and_keeps_partial_usage,
    count_tokens_models_and_claude_code_endpoints,
    api_stats_needs_the_full_key,
    picks_by_priority_then_least_recently_used,
    oversized_bodies_are_413_and_health_reports_the_store,
    unknown_models_are_billed_at_a_flagged_fallback_price,
);

/// 25 input, 12 output, 10 5-minute and 20 1-hour cache writes, 30 cache reads at Sonnet 4.5
/// prices ($3, $15, $3.75, $6, $0.30 per million).
const EXPECTED_COST_NANOS: u64 = 25 * 3000 + 12 * 15000 + 10 * 3750 + 20 * 6000 + 30 * 300;

fn assert_mock_usage(c: &app::domain::UsageCounters, requests: u64) {
    assert_eq!(c.requests, requests);
    assert_eq!(c.input_tokens, requests * mock::INPUT_TOKENS);
    assert_eq!(c.output_tokens, requests * mock::OUTPUT_TOKENS);
    assert_eq!(
        c.cache_create_5m_tokens,
        requests * mock::CACHE_CREATE_5M_TOKENS
    );
    assert_eq!(
        c.cache_create_1h_tokens,
        requests * mock::CACHE_CREATE_1H_TOKENS
    );
    assert_eq!(c.cache_read_tokens, requests * mock::CACHE_READ_TOKENS);
    assert_eq!(c.cost_nanos, requests * EXPECTED_COST_NANOS);
}

async fn non_stream_is_relayed_unchanged_and_accounted(engine: Engine) {
    let h = Harness::new(engine).await;
    let account = h.account("main", None, 50).await;
    let (key_id, key) = h.key(json!({})).await;
    let sent = body(false);
    let resp = h.messages(&key, sent.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], mock::REPLY.concat());

    // Upstream saw the body byte for byte and the account's key, never the client's.
    let got = h.mock.log.last().unwrap();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap(), sent);
    assert_eq!(got.headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(got.headers["anthropic-version"], "2023-06-01");
    assert!(!String::from_utf8_lossy(&got.body).contains(&key));

    let key_total = h.wait_requests(&buckets::key_total(&key_id), 1).await;
    assert_mock_usage(&key_total, 1);
    let store = &h.relay().state.store;
    let [model_total, account_total] = [
        buckets::key_model_total(&key_id, MODEL),
        buckets::account_total(&account),
    ];
    let c = store.usage(&[model_total, account_total]).await.unwrap();
    assert_mock_usage(&c[0], 1);
    assert_mock_usage(&c[1], 1);

    let records = store.recent_records(&key_id, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].model, MODEL);
    assert_eq!(records[0].account_id, account);
    assert!(!records[0].stream);
    assert!(!records[0].used_fallback_pricing);
}

async fn stream_is_forwarded_and_accounted(engine: Engine) {
    let h = Harness::new(engine).await;
    let account = h.account("main", None, 50).await;
    let (key_id, key) = h.key(json!({})).await;
    for _ in 0..2 {
        let resp = h.messages(&key, body(true)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = resp.text().await.unwrap();
        for event in [
            "message_start",
            "content_block_delta",
            "ping",
            "message_delta",
            "message_stop",
        ] {
            assert!(
                text.contains(&format!("event: {event}\n")),
                "missing {event} in {text}"
            );
        }
        assert!(text.contains(" upstream."), "{text}");
    }
    assert_mock_usage(&h.wait_requests(&buckets::key_total(&key_id), 2).await, 2);
    assert_mock_usage(
        &h.wait_requests(&buckets::account_total(&account), 2).await,
        2,
    );
    let records = h
        .relay()
        .state
        .store
        .recent_records(&key_id, 10)
        .await
        .unwrap();
    assert!(records.iter().all(|r| r.stream));
}

async fn error_of(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    (
        status,
        v["error"]["type"].as_str().unwrap().into(),
        v["error"]["message"].as_str().unwrap().into(),
    )
}

async fn bad_keys_get_401_with_reasons(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("main", None, 50).await;
    let missing = h
        .http
        .post(h.url("/v1/messages"))
        .json(&body(false))
        .send()
        .await
        .unwrap();
    let (s, t, m) = error_of(missing).await;
    assert_eq!((s, t.as_str()), (401, "authentication_error"));
    assert!(m.contains("Missing API key"), "{m}");

    let (s, _, m) = error_of(h.messages("cr_short", body(false)).send().await.unwrap()).await;
    assert_eq!((s, m.as_str()), (401, "Invalid API key format"));

    let unknown = format!("cr_{}", "a".repeat(64));
    let (s, _, m) = error_of(h.messages(&unknown, body(false)).send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert!(m.contains("API key not found"), "{m}");

    // Bearer works like x-api-key.
    let (id, key) = h.key(json!({})).await;
    let ok = h
        .http
        .post(h.url("/api/v1/messages"))
        .bearer_auth(&key)
        .json(&body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let (s, _) = h
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/api-keys/{id}"),
            Some(json!({"isActive": false})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, m) = error_of(h.messages(&key, body(false)).send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert!(m.contains("disabled"), "{m}");

    let (_, expired) = h.key(json!({"expiresAt": "2020-01-01T00:00:00Z"})).await;
    let (s, _, m) = error_of(h.messages(&expired, body(false)).send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert!(m.contains("expired"), "{m}");

    let (del_id, deleted) = h.key(json!({})).await;
    h.admin(
        reqwest::Method::DELETE,
        &format!("/admin/api-keys/{del_id}"),
        None,
    )
    .await;
    let (s, _, _) = error_of(h.messages(&deleted, body(false)).send().await.unwrap()).await;
    assert_eq!(s, 401);

    let (_, no_claude) = h.key(json!({"permissions": ["gemini"]})).await;
    let (s, t, _) = error_of(h.messages(&no_claude, body(false)).send().await.unwrap()).await;
    assert_eq!((s, t.as_str()), (403, "permission_error"));
    assert_eq!(
        h.mock.log.count(),
        1,
        "only the one good request reached upstream"
    );
}

async fn bad_json_is_400_and_never_reaches_upstream(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("main", None, 50).await;
    let (_, key) = h.key(json!({})).await;
    let send = |raw: &'static str| {
        h.http
            .post(h.url("/v1/messages"))
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
    };
    for raw in [
        "{not json",
        "[]",
        "{\"model\":\"x\"}",
        "{\"model\":\"\",\"messages\":[{}]}",
        "{\"model\":5,\"messages\":[{}]}",
    ] {
        let (s, t, _) = error_of(send(raw).await.unwrap()).await;
        assert_eq!((s, t.as_str()), (400, "invalid_request_error"), "{raw}");
    }
    assert_eq!(h.mock.log.count(), 0);
}

async fn upstream_errors_keep_their_status(engine: Engine) {
    let h = Harness::new(engine).await;
    let (_, key) = h.key(json!({})).await;
    for (scenario, status, kind) in [
        ("status-500", 500, "api_error"),
        ("status-529", 529, "overloaded_error"),
        ("status-401", 401, "authentication_error"),
        ("status-429", 429, "rate_limit_error"),
        ("html-502", 502, "api_error"),
    ] {
        let id = h.account(scenario, Some(scenario), 1).await;
        let resp = h.messages(&key, body(true)).send().await.unwrap();
        if status == 429 {
            assert_eq!(resp.headers()["retry-after"], "7");
        }
        let (s, t, _) = error_of(resp).await;
        assert_eq!((s, t.as_str()), (status, kind), "{scenario}");
        h.admin(
            reqwest::Method::DELETE,
            &format!("/admin/claude-console-accounts/{id}"),
            None,
        )
        .await;
    }
    // No usage is recorded for failed requests.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let global = h
        .relay()
        .state
        .store
        .usage(&[buckets::global_total()])
        .await
        .unwrap();
    assert_eq!(global[0].requests, 0);
}

async fn unreachable_and_slow_upstreams_are_502_and_504(engine: Engine) {
    let h = Harness::with_config(engine, |c| {
        c.upstream_first_byte_timeout = Duration::from_millis(500)
    })
    .await;
    let (_, key) = h.key(json!({})).await;
    let dead = format!("http://127.0.0.1:{}", crs::testing::free_port());
    let id = h.account_at("dead", &dead, 1).await;
    let (s, t, m) = error_of(h.messages(&key, body(false)).send().await.unwrap()).await;
    assert_eq!(
        (s, t.as_str(), m.as_str()),
        (502, "api_error", "Upstream connection error")
    );
    h.admin(
        reqwest::Method::DELETE,
        &format!("/admin/claude-console-accounts/{id}"),
        None,
    )
    .await;

    h.account("slow", Some("slow-3000"), 1).await;
    let (s, t, _) = error_of(h.messages(&key, body(true)).send().await.unwrap()).await;
    assert_eq!((s, t.as_str()), (504, "timeout_error"));
}

async fn client_abort_cancels_upstream_and_keeps_partial_usage(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("drip", Some("drip-700"), 1).await;
    let (key_id, key) = h.key(json!({})).await;
    let resp = h.messages(&key, body(true)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("message_start") {
        seen.extend_from_slice(&stream.next().await.unwrap().unwrap());
    }
    drop(stream); // the client goes away mid-stream

    let dropped = std::time::Instant::now();
    let mut cancelled = 0;
    for _ in 0..300 {
        cancelled = h
            .mock
            .log
            .streams_cancelled
            .load(std::sync::atomic::Ordering::SeqCst);
        if cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "upstream cancelled {:?} after the client left",
        dropped.elapsed()
    );
    assert_eq!(cancelled, 1, "the upstream stream was cancelled");
    assert_eq!(
        h.mock
            .log
            .streams_completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // What was streamed is kept: message_start's input and cache figures and its first token.
    let c = h.wait_requests(&buckets::key_total(&key_id), 1).await;
    assert_eq!(c.input_tokens, mock::INPUT_TOKENS);
    assert_eq!(c.cache_read_tokens, mock::CACHE_READ_TOKENS);
    assert_eq!(c.output_tokens, 1);
}

async fn count_tokens_models_and_claude_code_endpoints(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("main", None, 50).await;
    let (key_id, key) = h.key(json!({})).await;
    let resp = h
        .http
        .post(h.url("/v1/messages/count_tokens"))
        .header("x-api-key", &key)
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["input_tokens"],
        mock::INPUT_TOKENS
    );
    assert_eq!(h.mock.log.last().unwrap().path, "/v1/messages/count_tokens");

    let models: Value = h
        .http
        .get(h.url("/v1/models"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&MODEL), "{ids:?}");
    assert!(ids.iter().all(|m| m.starts_with("claude")));
    let unauth = h.http.get(h.url("/v1/models")).send().await.unwrap();
    assert_eq!(unauth.status(), 401);

    let me: Value = h
        .http
        .get(h.url("/claude/v1/me"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], format!("user_{key_id}"));
    let info: Value = h
        .http
        .get(h.url("/v1/key-info"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["keyInfo"]["id"], key_id);
    let ev = h
        .http
        .post(h.url("/api/api/event_logging/batch"))
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(ev.status(), 200);
    let unknown = h.http.get(h.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

async fn api_stats_needs_the_full_key(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("main", None, 50).await;
    let (key_id, key) = h.key(json!({"name": "stats key"})).await;
    assert_eq!(
        h.messages(&key, body(false)).send().await.unwrap().status(),
        200
    );
    h.wait_requests(&buckets::key_total(&key_id), 1).await;
    let stats: Value = h
        .http
        .post(h.url("/apiStats/api/user-stats"))
        .json(&json!({"apiKey": key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["success"], true, "{stats}");
    assert_eq!(stats["data"]["name"], "stats key");
    assert_eq!(stats["data"]["usage"]["total"]["requests"], 1);
    assert_eq!(
        stats["data"]["usage"]["total"]["inputTokens"],
        mock::INPUT_TOKENS
    );
    assert_eq!(
        stats["data"]["usage"]["daily"]["costNanos"],
        EXPECTED_COST_NANOS
    );
    let by_id = h
        .http
        .post(h.url("/apiStats/api/user-stats"))
        .json(&json!({"apiId": key_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.status(), 400, "a bare key id is refused");
    let wrong = h
        .http
        .post(h.url("/apiStats/api/user-stats"))
        .json(&json!({"apiKey": format!("cr_{}", "0".repeat(64))}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

async fn picks_by_priority_then_least_recently_used(engine: Engine) {
    let h = Harness::new(engine).await;
    let a = h.account("a", None, 10).await;
    let b = h.account("b", None, 10).await;
    let c = h.account("c", None, 90).await;
    let (key_id, key) = h.key(json!({})).await;
    for i in 0..4 {
        // A new conversation each time: no stickiness.
        let mut b = body(false);
        b["messages"][0]["content"] = json!(format!("conversation {i}"));
        assert_eq!(h.messages(&key, b).send().await.unwrap().status(), 200);
    }
    h.wait_requests(&buckets::key_total(&key_id), 4).await;
    let names = [a, b, c].map(|id| buckets::account_total(&id));
    let counts = h.relay().state.store.usage(&names).await.unwrap();
    let per_account: Vec<u64> = counts.iter().map(|c| c.requests).collect();
    assert_eq!(
        per_account,
        vec![2, 2, 0],
        "priority 10 shared in turn, priority 90 idle"
    );
}

async fn oversized_bodies_are_413_and_health_reports_the_store(engine: Engine) {
    let h = Harness::with_config(engine, |c| c.request_max_bytes = 1024).await;
    h.account("main", None, 50).await;
    let (_, key) = h.key(json!({})).await;
    let mut big = body(false);
    big["messages"][0]["content"] = json!("x".repeat(4096));
    let (s, t, _) = error_of(h.messages(&key, big).send().await.unwrap()).await;
    assert_eq!((s, t.as_str()), (413, "request_too_large"));
    assert_eq!(h.mock.log.count(), 0);

    let health: Value = h
        .http
        .get(h.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    let expected = if engine == Engine::Redis {
        "redis"
    } else {
        "embedded"
    };
    assert_eq!(health["store"]["engine"], expected);
}

async fn unknown_models_are_billed_at_a_flagged_fallback_price(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("main", None, 50).await;
    let (key_id, key) = h.key(json!({})).await;
    let mut b = body(false);
    b["model"] = json!("claude-from-the-future-9");
    assert_eq!(h.messages(&key, b).send().await.unwrap().status(), 200);
    let c = h.wait_requests(&buckets::key_total(&key_id), 1).await;
    // The fallback is Sonnet pricing, which the expected figure already uses.
    assert_eq!(c.cost_nanos, EXPECTED_COST_NANOS);
    let records = h
        .relay()
        .state
        .store
        .recent_records(&key_id, 1)
        .await
        .unwrap();
    assert!(records[0].used_fallback_pricing);
    assert_eq!(records[0].model, "claude-from-the-future-9");
}
