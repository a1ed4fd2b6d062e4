//! Hard cost ceilings through the real relay: admission reserves a request's worst case and
//! lowers its output limit to what fits, on both engines and across two instances on one
//! Redis; requests that cost nothing still pass the key's window and concurrency.

mod common;

use std::time::Duration;

use common::{Engine, Harness, UPSTREAM_KEY};
use crs::{store::buckets, testing::RedisServer};
use reqwest::Method;
use serde_json::{json, Value};

/// $5 / $25 per million tokens: 60,000 output tokens cost $1.50.
const MODEL: &str = "claude-opus-4-5-20251101";
const ANSWER_TOKENS: u64 = 60_000;

/// A relay whose day is at its middle while the test runs (a daily limit must not reset
/// under the test).
fn midday(c: &mut crs::config::Config) {
    use chrono::Timelike;
    let hour = chrono::Utc::now().hour() as i32;
    c.timezone_offset_hours = (12 - hour + 36) % 24 - 12;
}

/// The mock reports 85 prompt tokens (input and cache): a prompt that can hold them, as any
/// real prompt does (a token is at least a byte).
fn request(i: usize) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": ANSWER_TOKENS,
        "messages": [{"role": "user", "content": format!("write a long story {i} {}", "about a lighthouse keeper ".repeat(12))}],
    })
}

/// 20 parallel requests whose answers would cost $1.50 each, against a $2.00 daily limit, sent
/// to the given relays in turn. Checks the ceiling, the refusals and the lowered limit.
async fn twenty_against_two_dollars(h: &Harness, relays: &[String]) {
    // The upstream answers 60,000 tokens, or fewer when the request's max_tokens says so.
    let scenario = h
        .mock
        .scenario_url(&format!("out-{ANSWER_TOKENS}+slow-300"));
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/claude-console-accounts",
            Some(json!({"name": "opus", "apiUrl": scenario, "apiKey": UPSTREAM_KEY})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (key_id, key) = h.key(json!({"dailyCostLimit": 2.0})).await;
    let upstream_before = h.mock.log.count();
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let req = http
            .post(format!("{}/v1/messages", relays[i % relays.len()]))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&request(i));
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let s = resp.status().as_u16();
            (s, resp.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let (mut admitted, mut refused) = (0u64, 0u64);
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            200 => admitted += 1,
            402 => {
                refused += 1;
                assert_eq!(v["error"]["code"], "daily_cost_limit_exceeded", "{v}");
                assert!(v["remainingCost"].as_f64().unwrap() >= 0.0, "{v}");
                assert!(
                    v["minimumRequestCost"].as_f64().unwrap()
                        > v["remainingCost"].as_f64().unwrap(),
                    "{v}"
                );
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(admitted + refused, 20);
    assert!(admitted >= 2, "admitted {admitted}");
    // Refused requests never reached the upstream.
    assert_eq!(h.mock.log.count() - upstream_before, admitted as usize);
    h.wait_requests(&buckets::key_total(&key_id), admitted)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let total = h
        .relay()
        .state
        .store
        .usage(&[buckets::key_total(&key_id)])
        .await
        .unwrap()[0];
    println!(
        "$2.00 daily limit, 20 parallel $1.50 answers: {admitted} admitted, {refused} refused (402), \
         ${:.4} recorded",
        total.cost_usd()
    );
    assert!(
        total.cost_nanos <= 2_000_000_000,
        "recorded ${:.6} against a $2.00 limit",
        total.cost_usd()
    );
    assert!(
        total.cost_nanos >= 1_800_000_000,
        "only ${:.6} of the $2.00 budget used",
        total.cost_usd()
    );
    // The request that got what was left went upstream with a lower max_tokens, and its
    // record says so.
    let lowered: Vec<u64> = h
        .mock
        .log
        .requests
        .lock()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["model"] == MODEL)
        .filter_map(|b| b["max_tokens"].as_u64())
        .filter(|m| *m < ANSWER_TOKENS)
        .collect();
    assert!(!lowered.is_empty(), "no request was lowered");
    let (s, records) = h
        .admin(
            Method::GET,
            &format!("/admin/request-records?key={key_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{records}");
    let shown: Vec<u64> = records["data"]["rows"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["record"]["outputLimitLoweredTo"].as_u64())
        .collect();
    assert_eq!(shown.len(), lowered.len(), "{records}");
    assert!(shown.iter().all(|n| lowered.contains(n)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_limit_holds_across_two_instances_on_one_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut h = Harness::with_config(Engine::Redis, |c| {
        c.redis_url = Some(url.clone());
        midday(c);
    })
    .await;
    let config = h.relay().state.config.clone();
    h.reconfigure(config.clone()).await;
    let second = crs::start(config).await.unwrap();
    twenty_against_two_dollars(&h, &[h.relay().url(), second.url()]).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_limit_holds_on_the_embedded_store() {
    let h = Harness::with_config(Engine::Embedded, midday).await;
    twenty_against_two_dollars(&h, &[h.relay().url()]).await;
}

async fn count_tokens_floods_meet_the_window(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("main", None, 50).await;
    let (_, key) = h
        .key(json!({"rateLimitWindow": 1, "rateLimitRequests": 5, "dailyCostLimit": 0.000001}))
        .await;
    let before = h.mock.log.count();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let resp = h
            .http
            .post(h.url("/v1/messages/count_tokens"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-sonnet-4-5-20250929", "messages": [{"role": "user", "content": format!("count {i}")}]}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    // Five pass (counting costs nothing, so the exhausted cost limit does not refuse them);
    // the rest meet the window and never reach the upstream.
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(h.mock.log.count() - before, 5);
}

async fn count_tokens_meets_the_concurrency_limit(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("slow", Some("slow-400"), 50).await;
    let (_, key) = h.key(json!({"concurrencyLimit": 1})).await;
    let send = |i: usize| {
        h.http
            .post(h.url("/v1/messages/count_tokens"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-sonnet-4-5-20250929", "messages": [{"role": "user", "content": format!("count {i}")}]}))
            .send()
    };
    let (a, b) = tokio::join!(send(0), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(1).await
    });
    let mut s = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    s.sort();
    assert_eq!(s, [200, 429]);
    // The slot comes back (it is released off the response path, just after it).
    let mut back = false;
    for _ in 0..50 {
        if send(2).await.unwrap().status() == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "the count_tokens slot was not released");
}

async fn gemini_count_tokens_meets_the_window(engine: Engine) {
    let h = Harness::new(engine).await;
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/gemini-api-accounts",
            Some(json!({"name": "g", "baseUrl": h.mock.url(), "apiKey": "gemini-upstream-key"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, key) = h
        .key(json!({"rateLimitWindow": 1, "rateLimitRequests": 2}))
        .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = h
            .http
            .post(h.url("/gemini/v1beta/models/gemini-2.5-flash:countTokens"))
            .header("x-goog-api-key", &key)
            .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
}

both_engines!(
    count_tokens_floods_meet_the_window,
    count_tokens_meets_the_concurrency_limit,
    gemini_count_tokens_meets_the_window,
);
