//! Issue 4: key, platform and model limits through the real relay, on both store engines, and
//! across two relay instances sharing Redis.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{body, Engine, Harness, UPSTREAM_KEY};
use crs::{store::buckets, testing::RedisServer};
use reqwest::Method;
use serde_json::{json, Value};

both_engines!(
    concurrency_limit_refuses_with_429,
    request_and_token_windows,
    cost_limits_answer_402_with_their_codes,
    platform_and_model_limits,
    blacklist_and_client_restriction,
    expiry_starts_at_first_use,
    limits_are_visible_to_admin_and_key_holder,
    bad_limit_values_are_400_naming_the_field,
    daily_limit_under_parallel_load_overshoots_by_at_most_the_admitted,
    service_rates_and_cost_windows,
);

/// 25 input, 12 output, 10 + 20 cache writes, 30 cache reads at Sonnet 4.5 prices.
const COST: f64 = 0.0004215;

async fn setup(h: &Harness, scenario: Option<&str>, limits: Value) -> (String, String) {
    let url = scenario
        .map(|s| h.mock.scenario_url(s))
        .unwrap_or_else(|| h.mock.url());
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/claude-console-accounts",
            Some(json!({"name": "main", "apiUrl": url, "apiKey": UPSTREAM_KEY})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    h.key(limits).await
}

/// A relay whose day (and week) is at its middle while the test runs: a daily limit must not
/// reset under a test that fills it (UTC+8, the default, turns the day at 16:00 UTC).
async fn harness(engine: Engine) -> Harness {
    use chrono::Timelike;
    let hour = chrono::Utc::now().hour() as i32;
    let offset = (12 - hour + 36) % 24 - 12;
    Harness::with_config(engine, |c| c.timezone_offset_hours = offset).await
}

fn fresh(i: usize) -> Value {
    let mut b = body(false);
    b["messages"][0]["content"] = json!(format!("request {i}"));
    b
}

async fn status_and_body(resp: reqwest::Response) -> (u16, Value) {
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn concurrency_limit_refuses_with_429(engine: Engine) {
    let h = harness(engine).await;
    let (_, key) = setup(&h, Some("drip-100"), json!({"concurrencyLimit": 2})).await;
    let mut held = Vec::new();
    for i in 0..2 {
        let mut b = body(true);
        b["messages"][0]["content"] = json!(format!("long {i}"));
        let resp = h.messages(&key, b).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    let (s, v) = status_and_body(h.messages(&key, fresh(9)).send().await.unwrap()).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["concurrencyLimit"], 2);
    assert_eq!(v["currentConcurrency"], 2);
    for r in held {
        r.text().await.unwrap();
    }
    let mut ok = false;
    for _ in 0..100 {
        if h.messages(&key, fresh(10)).send().await.unwrap().status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "slots come back when the streams end");
}

async fn request_and_token_windows(engine: Engine) {
    let h = harness(engine).await;
    let (_, key) = setup(
        &h,
        None,
        json!({"rateLimitWindow": 1, "rateLimitRequests": 3}),
    )
    .await;
    for i in 0..3 {
        assert_eq!(
            h.messages(&key, fresh(i)).send().await.unwrap().status(),
            200,
            "request {i}"
        );
    }
    let resp = h.messages(&key, fresh(3)).send().await.unwrap();
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let (s, v) = status_and_body(resp).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["requestLimit"], 3);
    assert_eq!(v["currentRequests"], 3);
    assert!(v["resetAt"].is_string());
    assert_eq!(h.mock.log.count(), 3);

    // Tokens: each mock answer uses 97 tokens, so a 150-token window allows two.
    let (_, tkey) = h
        .key(json!({"rateLimitWindow": 1, "tokenLimit": 150}))
        .await;
    for i in 0..2 {
        let resp = h.messages(&tkey, fresh(10 + i)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        // Settled before the next one is admitted.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = status_and_body(h.messages(&tkey, fresh(20)).send().await.unwrap()).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["tokenLimit"], 150);
}

async fn wait_cost(h: &Harness, key_id: &str, requests: u64) {
    h.wait_requests(&buckets::key_total(key_id), requests).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn cost_limits_answer_402_with_their_codes(engine: Engine) {
    let h = harness(engine).await;
    // Three requests fit under a limit of 2.5 requests' cost: the third crosses it, the fourth is refused.
    let limit = COST * 2.5;
    for (field, code) in [
        ("dailyCostLimit", "daily_cost_limit_exceeded"),
        ("totalCostLimit", "total_cost_limit_exceeded"),
        ("weeklyCostLimit", "weekly_cost_limit_exceeded"),
        ("weeklyOpusCostLimit", "weekly_opus_cost_limit_exceeded"),
    ] {
        let (key_id, key) = if h.mock.log.count() == 0 {
            setup(&h, None, json!({field: limit})).await
        } else {
            h.key(json!({field: limit})).await
        };
        for i in 0..3 {
            assert_eq!(
                h.messages(&key, fresh(i)).send().await.unwrap().status(),
                200,
                "{field} request {i}"
            );
            wait_cost(&h, &key_id, i as u64 + 1).await;
        }
        let (s, v) = status_and_body(h.messages(&key, fresh(3)).send().await.unwrap()).await;
        assert_eq!(s, 402, "{field}: {v}");
        assert_eq!(v["error"]["type"], "insufficient_quota");
        assert_eq!(v["error"]["code"], code);
        assert!((v["costLimit"].as_f64().unwrap() - limit).abs() < 1e-9);
        assert!(
            (v["currentCost"].as_f64().unwrap() - 3.0 * COST).abs() < 1e-9,
            "{v}"
        );
        if field != "totalCostLimit" {
            assert!(v["resetAt"].is_string(), "{field}: {v}");
        }
    }
}

async fn platform_and_model_limits(engine: Engine) {
    let h = harness(engine).await;
    let (key_id, key) = setup(
        &h,
        None,
        json!({"platformLimits": {"claude": {"totalCost": COST * 3.5}}, "modelLimits": {"claude-sonnet-*": {"dailyCost": COST * 1.5}}}),
    )
    .await;
    let with_model = |i: usize, m: &str| {
        let mut b = fresh(i);
        b["model"] = json!(m);
        b
    };
    for i in 0..2 {
        assert_eq!(
            h.messages(&key, with_model(i, "claude-sonnet-4-5-20250929"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        wait_cost(&h, &key_id, i as u64 + 1).await;
    }
    let (s, v) = status_and_body(
        h.messages(&key, with_model(2, "claude-sonnet-4-5-20250929"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (402, Some("model_daily_cost_limit_exceeded")),
        "{v}"
    );
    // A model outside the sonnet pattern (Sonnet 3.7, at Sonnet 4.5's price) is limited only by
    // the platform total.
    for i in 3..5 {
        assert_eq!(
            h.messages(&key, with_model(i, "claude-3-7-sonnet-20250219"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        wait_cost(&h, &key_id, i as u64).await;
    }
    let (s, v) = status_and_body(
        h.messages(&key, with_model(5, "claude-3-7-sonnet-20250219"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (402, Some("platform_total_cost_limit_exceeded")),
        "{v}"
    );
    // Usage per platform is recorded for the key.
    let c = h
        .relay()
        .state
        .store
        .usage(&[buckets::key_platform_total(&key_id, "claude")])
        .await
        .unwrap();
    assert_eq!(c[0].requests, 4);
}

async fn blacklist_and_client_restriction(engine: Engine) {
    let h = harness(engine).await;
    let (_, key) = setup(
        &h,
        None,
        json!({"enableModelRestriction": true, "restrictedModels": ["claude-opus-4-1-20250805"]}),
    )
    .await;
    let mut b = fresh(0);
    b["model"] = json!("claude-opus-4-1-20250805");
    let (s, v) = status_and_body(h.messages(&key, b).send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (403, Some("permission_error")),
        "{v}"
    );
    assert_eq!(
        h.messages(&key, fresh(1)).send().await.unwrap().status(),
        200
    );
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
    assert!(!ids.contains(&"claude-opus-4-1-20250805") || !ids.is_empty());
    assert!(
        !ids.contains(&"claude-opus-4-1-20250805"),
        "filtered from /v1/models"
    );

    let (_, cc_only) = h
        .key(json!({"enableClientRestriction": true, "allowedClients": ["claude_code"]}))
        .await;
    let (s, v) = status_and_body(h.messages(&cc_only, fresh(2)).send().await.unwrap()).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["allowedClients"], json!(["claude_code"]));
    let mut cc = fresh(3);
    cc["metadata"] = json!({"user_id": "user_abc_account__session_s1"});
    let resp = h
        .messages(&cc_only, cc)
        .header("user-agent", "claude-cli/2.1.3 (external, cli)")
        .header("x-app", "cli")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn expiry_starts_at_first_use(engine: Engine) {
    let h = harness(engine).await;
    let (key_id, key) = setup(
        &h,
        None,
        json!({"expirationMode": "activation", "activationDays": 3}),
    )
    .await;
    let before = h
        .relay()
        .state
        .store
        .get_key(&key_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!before.key.is_activated && before.key.expires_at.is_none());
    assert_eq!(
        h.messages(&key, fresh(0)).send().await.unwrap().status(),
        200
    );
    let after = h
        .relay()
        .state
        .store
        .get_key(&key_id)
        .await
        .unwrap()
        .unwrap();
    assert!(after.key.is_activated);
    let exp =
        chrono::DateTime::parse_from_rfc3339(after.key.expires_at.as_deref().unwrap()).unwrap();
    let days = (exp.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((71..=72).contains(&days), "{days} hours");
}

async fn limits_are_visible_to_admin_and_key_holder(engine: Engine) {
    let h = harness(engine).await;
    let (key_id, key) = setup(
        &h,
        None,
        json!({"dailyCostLimit": 1.0, "concurrencyLimit": 3, "rateLimitWindow": 5, "rateLimitRequests": 100,
               "platformLimits": {"claude": {"dailyCost": 2.0}}, "modelLimits": {"claude-sonnet-*": {"totalCost": 4.0}}}),
    )
    .await;
    assert_eq!(
        h.messages(&key, fresh(0)).send().await.unwrap().status(),
        200
    );
    wait_cost(&h, &key_id, 1).await;
    let (_, list) = h.admin(Method::GET, "/admin/api-keys", None).await;
    let limits = &list["data"][0]["limits"];
    assert_eq!(limits["dailyCost"]["limit"], 1.0);
    assert!(
        (limits["dailyCost"]["current"].as_f64().unwrap() - COST).abs() < 1e-9,
        "{limits}"
    );
    assert!(limits["dailyCost"]["resetAt"].is_string());
    assert!(
        (limits["platformLimits"]["claude"]["dailyCost"]["current"]
            .as_f64()
            .unwrap()
            - COST)
            .abs()
            < 1e-9
    );
    assert!(
        (limits["modelLimits"]["claude-sonnet-*"]["totalCost"]["current"]
            .as_f64()
            .unwrap()
            - COST)
            .abs()
            < 1e-9
    );
    assert_eq!(limits["concurrency"]["limit"], 3);
    assert_eq!(limits["window"]["requests"]["current"], 1);
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
    assert_eq!(stats["data"]["limits"], *limits);
}

async fn bad_limit_values_are_400_naming_the_field(engine: Engine) {
    let h = harness(engine).await;
    for (body, field) in [
        (json!({"name": "x", "dailyCostLimit": -1}), "dailyCostLimit"),
        (
            json!({"name": "x", "concurrencyLimit": 1.5}),
            "concurrencyLimit",
        ),
        (
            json!({"name": "x", "platformLimits": {"ftp": {"dailyCost": 1}}}),
            "platformLimits",
        ),
        (
            json!({"name": "x", "platformLimits": {"claude": {"dailyCost": -2}}}),
            "platformLimits.claude.dailyCost",
        ),
        (
            json!({"name": "x", "modelLimits": {"claude-x": {"totalCost": "lots"}}}),
            "modelLimits.claude-x.totalCost",
        ),
        (json!({"name": "x", "weeklyResetDay": 8}), "weeklyResetDay"),
        (
            json!({"name": "x", "allowedClients": ["curl"]}),
            "allowedClients",
        ),
    ] {
        let (s, v) = h
            .admin(Method::POST, "/admin/api-keys", Some(body.clone()))
            .await;
        assert_eq!(s, 400, "{body}");
        assert!(
            v["message"].as_str().unwrap().contains(field),
            "{field}: {v}"
        );
    }
    // Batch create and batch edit.
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/api-keys/batch",
            Some(json!({"baseName": "team", "count": 3, "dailyCostLimit": 5})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let created = v["data"].as_array().unwrap();
    assert_eq!(created.len(), 3);
    assert!(created
        .iter()
        .all(|k| k["apiKey"].as_str().unwrap().starts_with("cr_") && k["dailyCostLimit"] == 5.0));
    let ids: Vec<&str> = created.iter().map(|k| k["id"].as_str().unwrap()).collect();
    let (s, v) = h
        .admin(
            Method::PUT,
            "/admin/api-keys/batch",
            Some(json!({"keyIds": ids, "updates": {"totalCostLimit": 50}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, list) = h.admin(Method::GET, "/admin/api-keys", None).await;
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["totalCostLimit"] == 50.0));
    let (s, _) = h
        .admin(
            Method::PUT,
            "/admin/api-keys/batch",
            Some(json!({"keyIds": ids, "updates": {"totalCostLimit": -1}})),
        )
        .await;
    assert_eq!(s, 400);
}

async fn daily_limit_under_parallel_load_overshoots_by_at_most_the_admitted(engine: Engine) {
    let h = harness(engine).await;
    // Answers of 100 000 input tokens: $0.3003465 each at Sonnet 4.5 prices.
    let (key_id, key) = setup(
        &h,
        Some("usage-100000+drip-10"),
        json!({"dailyCostLimit": 1.0}),
    )
    .await;
    let per_request: u64 = 100_000 * 3000 + 12 * 15_000 + 10 * 3750 + 20 * 6000 + 30 * 300;
    // One request first, so admission knows what a request of this key costs.
    assert_eq!(
        h.messages(&key, fresh(0)).send().await.unwrap().status(),
        200
    );
    wait_cost(&h, &key_id, 1).await;
    let mut tasks = Vec::new();
    for i in 1..=30 {
        let req = h.messages(&key, fresh(i));
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let s = resp.status().as_u16();
            let _ = resp.bytes().await;
            s
        }));
    }
    let mut ok = 1;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => {}
            other => panic!("unexpected {other}"),
        }
    }
    wait_cost(&h, &key_id, ok).await;
    let total = h
        .relay()
        .state
        .store
        .usage(&[buckets::key_total(&key_id)])
        .await
        .unwrap()[0];
    // Admitted while spent + reserved < $1: 1 + 3 requests, $1.20; never more than one
    // request's cost past the limit.
    assert_eq!(ok, 4, "admitted {ok}");
    assert!(
        total.cost_nanos <= 1_000_000_000 + per_request,
        "{}",
        total.cost_nanos
    );
    // The recorded cost is the sum of the per-request costs, exactly.
    let records = h
        .relay()
        .state
        .store
        .recent_records(&key_id, 100)
        .await
        .unwrap();
    assert_eq!(records.len() as u64, ok);
    assert!(records.iter().all(|r| r.cost_nanos == per_request));
    assert_eq!(
        total.cost_nanos,
        records.iter().map(|r| r.cost_nanos).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_admit_exactly_five_at_a_time_and_twenty_per_window() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut h = Harness::with_config(Engine::Redis, |c| {
        c.redis_url = Some(url.clone());
        c.concurrency_queue_timeout = Duration::from_secs(20);
    })
    .await;
    let config = h.relay().state.config.clone();
    h.reconfigure(config.clone()).await;
    let second = crs::start(config).await.unwrap();
    let (_, key) = setup(
        &h,
        Some("drip-15"),
        json!({"concurrencyLimit": 5, "rateLimitWindow": 1, "rateLimitRequests": 20}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let base = if i % 2 == 0 {
            h.relay().url()
        } else {
            second.url()
        };
        let mut b = body(true);
        b["messages"][0]["content"] = json!(format!("burst {i}"));
        let req = h
            .http
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", &key)
            .json(&b);
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let s = resp.status().as_u16();
            let _ = resp.bytes().await;
            s
        }));
    }
    let mut by_status = std::collections::BTreeMap::new();
    for t in tasks {
        *by_status.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(by_status.get(&200), Some(&20), "{by_status:?}");
    assert_eq!(by_status.get(&429), Some(&180), "{by_status:?}");
    assert_eq!(h.mock.log.count(), 20, "exactly 20 reached the upstream");
    assert!(
        h.mock.log.max_in_flight.load(Ordering::SeqCst) <= 5,
        "at most 5 at a time"
    );
    assert_eq!(
        h.mock.log.max_in_flight.load(Ordering::SeqCst),
        5,
        "and the 5 slots were used"
    );
    second.stop().await;
}

async fn service_rates_and_cost_windows(engine: Engine) {
    let h = harness(engine).await;
    // Rated cost is the cost times the key's rate: a 2× key reaches a 2.5-request limit after
    // two requests, not three.
    let (key_id, key) = setup(
        &h,
        None,
        json!({"serviceRates": {"claude": 2.0}, "dailyCostLimit": COST * 2.5}),
    )
    .await;
    for i in 0..2 {
        assert_eq!(
            h.messages(&key, fresh(i)).send().await.unwrap().status(),
            200
        );
        wait_cost(&h, &key_id, i as u64 + 1).await;
    }
    let (s, v) = status_and_body(h.messages(&key, fresh(2)).send().await.unwrap()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (402, Some("daily_cost_limit_exceeded")),
        "{v}"
    );
    assert!(
        (v["currentCost"].as_f64().unwrap() - 4.0 * COST).abs() < 1e-9,
        "{v}"
    );
    let records = h
        .relay()
        .state
        .store
        .recent_records(&key_id, 5)
        .await
        .unwrap();
    assert!(records
        .iter()
        .all(|r| r.rated_cost_nanos == 2 * r.cost_nanos));

    // A cost window: $ per N minutes, answered with 429.
    let (wid, wkey) = h
        .key(json!({"rateLimitWindow": 1, "rateLimitCost": COST * 1.5}))
        .await;
    for i in 0..2 {
        assert_eq!(
            h.messages(&wkey, fresh(10 + i))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        wait_cost(&h, &wid, i as u64 + 1).await;
    }
    let (s, v) = status_and_body(h.messages(&wkey, fresh(12)).send().await.unwrap()).await;
    assert_eq!(s, 429, "{v}");
    assert!(
        (v["costLimit"].as_f64().unwrap() - COST * 1.5).abs() < 1e-9,
        "{v}"
    );
}
