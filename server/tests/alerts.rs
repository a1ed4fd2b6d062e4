//! Account and quota events reach the webhook channels: a rate-limited account, a rejected
//! account key, an admin's reset and a key over its daily cost limit each send one
//! notification (custom JSON channel), without slowing the requests that caused them.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use app::domain::{Settings, WebhookChannel};
use axum::{routing::post, Json, Router};
use common::{body, Engine, Harness};
use serde_json::{json, Value};

async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(v): Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn wait_for(got: &Arc<Mutex<Vec<Value>>>, kind: &str) -> Value {
    for _ in 0..100 {
        if let Some(v) = got.lock().unwrap().iter().find(|v| v["type"] == kind) {
            return v.clone();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no {kind} notification; got {:?}", got.lock().unwrap());
}

both_engines!(account_and_quota_events_are_notified);

async fn account_and_quota_events_are_notified(engine: Engine) {
    let h = Harness::new(engine).await;
    let (url, got) = receiver().await;
    let state = &h.relay().state;
    state
        .settings
        .save(
            &state.store,
            &state.crypto,
            Settings {
                webhooks_enabled: true,
                webhooks: vec![WebhookChannel {
                    id: "ops".into(),
                    kind: "custom".into(),
                    name: "ops".into(),
                    url,
                    enabled: true,
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let limited = h.account("limited", Some("status-429"), 1).await;
    h.account("rejected", Some("status-401"), 2).await;
    h.account("healthy", None, 3).await;
    let (_, free) = h.key(json!({})).await;
    // Both failing accounts are tried, then the healthy one answers.
    let r = h.messages(&free, body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    let rl = wait_for(&got, "rate_limited").await;
    assert_eq!(rl["subject"], limited);
    assert_eq!(rl["name"], "limited");
    assert_eq!(wait_for(&got, "auth_error").await["name"], "rejected");

    // A request that cannot fit in what is left of a key's daily limit is refused and
    // reported.
    h.wait_requests(&crs::store::buckets::global_total(), 1)
        .await;
    let (_, key) = h.key(json!({"dailyCostLimit": 0.000001})).await;
    let refused = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(refused.status(), 402);
    let quota = wait_for(&got, "quota_exceeded").await;
    assert!(
        quota["message"]
            .as_str()
            .unwrap()
            .contains("daily_cost_limit_exceeded"),
        "{quota}"
    );

    // The admin resets the rate-limited account: recovered.
    let (status, _) = h
        .admin(
            reqwest::Method::POST,
            &format!("/admin/claude-console-accounts/{limited}/reset-status"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(wait_for(&got, "recovered").await["subject"], limited);

    // A key at 80–100% of its daily limit (one mock request of 12 output tokens costs
    // $0.0004215; nine of them are 84% of $0.0045): a warning at the next admission.
    let (near_id, near) = h
        .key(json!({"name": "near key", "dailyCostLimit": 0.0045}))
        .await;
    let mut small = body(false);
    small["max_tokens"] = json!(12);
    for i in 1..=9u64 {
        let mut b = small.clone();
        b["messages"][0]["content"] = json!(format!("hello {i}"));
        let r = h.messages(&near, b).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        h.wait_requests(&crs::store::buckets::key_total(&near_id), i)
            .await;
    }
    // Checks of one key are at most every 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let tenth = h.messages(&near, small).send().await.unwrap();
    assert_eq!(tenth.status(), 200);
    let warning = wait_for(&got, "quota_warning").await;
    assert_eq!(warning["name"], "near key");
    assert!(
        warning["message"].as_str().unwrap().contains("84% used"),
        "{warning}"
    );

    // The same event within the cooldown is not sent twice.
    let again = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(again.status(), 402);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quotas = got
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "quota_exceeded")
        .count();
    assert_eq!(quotas, 1);
}
