//! A relay authenticates keys from memory, yet a key written anywhere — disabled, given limits,
//! given back its freedom — takes effect on the very next request, on every instance
//! (`auth::key_cache`).

mod common;

use std::time::Duration;

use common::{body, Engine, Harness};
use crs::testing::RedisServer;
use reqwest::Method;
use serde_json::{json, Value};

async fn status(http: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .json(&body(false))
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

/// The key is edited through the first instance's admin API while `serving` relays.
async fn edits_take_effect_at_once(h: &Harness, serving: &str) {
    h.account("main", None, 50).await;
    let (id, key) = h.key(json!({})).await;
    let edit = |body: Value| {
        let path = format!("/admin/api-keys/{id}");
        async move {
            let (s, v) = h.admin(Method::PUT, &path, Some(body)).await;
            assert_eq!(s, 200, "{v}");
        }
    };
    // Twice: the second is served from the copy the first one left.
    for _ in 0..2 {
        assert_eq!(status(&h.http, serving, &key).await.0, 200);
    }

    edit(json!({"isActive": false})).await;
    let (s, v) = status(&h.http, serving, &key).await;
    assert_eq!(s, 401, "a disabled key stops at once: {v}");
    edit(json!({"isActive": true})).await;
    assert_eq!(status(&h.http, serving, &key).await.0, 200);

    // A key without limits gets a window of one request: the copy said "no limits", so
    // admission was skipped — scheduling notices and the request starts over, admitted and
    // counted: the one after it is refused.
    edit(json!({"rateLimitWindow": 1, "rateLimitRequests": 1})).await;
    assert_eq!(status(&h.http, serving, &key).await.0, 200);
    let before = h.mock.log.count();
    let (s, v) = status(&h.http, serving, &key).await;
    assert_eq!(s, 429, "the new limit counted the first request: {v}");
    assert_eq!(h.mock.log.count(), before, "nothing reached the upstream");

    // Raised: admission checks the copy (which has the old limit) and starts over.
    edit(json!({"rateLimitRequests": 5})).await;
    assert_eq!(status(&h.http, serving, &key).await.0, 200);

    // A model taken away: refused before anything is scheduled.
    edit(json!({"enableModelRestriction": true, "restrictedModels": [common::MODEL]})).await;
    let (s, v) = status(&h.http, serving, &key).await;
    assert_eq!(s, 403, "{v}");

    h.admin(Method::DELETE, &format!("/admin/api-keys/{id}"), None)
        .await;
    assert_eq!(status(&h.http, serving, &key).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_key_edits_take_effect_on_the_next_request() {
    let h = Harness::new(Engine::Embedded).await;
    edits_take_effect_at_once(&h, &h.relay().url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_edits_on_one_instance_take_effect_on_the_next_request_on_another() {
    let redis = RedisServer::start();
    let url = redis.url();
    let h = Harness::with_config(Engine::Redis, |c| {
        c.redis_url = Some(url.clone());
    })
    .await;
    let mut config = h.relay().state.config.clone();
    config.port = 0;
    let second = crs::start(config).await.unwrap();
    edits_take_effect_at_once(&h, &second.url()).await;
    second.stop().await;
}

/// A copy is only as good as the version it was read at: concurrent edits and requests never
/// let a request through on a key that was disabled before the request began.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_racing_an_edit_never_outlive_it() {
    let h = Harness::new(Engine::Redis).await;
    h.account("main", None, 50).await;
    let (id, key) = h.key(json!({})).await;
    assert_eq!(status(&h.http, &h.relay().url(), &key).await.0, 200);
    let base = h.relay().url();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let http = h.http.clone();
        let (base, key) = (base.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..40 {
                let started = std::time::Instant::now();
                let s = status(&http, &base, &key).await.0;
                seen.push((started, s));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (s, _) = h
        .admin(
            Method::PUT,
            &format!("/admin/api-keys/{id}"),
            Some(json!({"isActive": false})),
        )
        .await;
    assert_eq!(s, 200);
    let disabled_at = std::time::Instant::now();
    let mut refused = 0;
    for t in tasks {
        for (started, s) in t.await.unwrap() {
            assert!(s == 200 || s == 401, "status {s}");
            if started > disabled_at {
                assert_eq!(s, 401, "a request begun after the edit was served");
            }
            refused += u32::from(s == 401);
        }
    }
    assert!(refused > 0);
}
