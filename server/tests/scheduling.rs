//! Issue 3: which account serves a request — bindings, stickiness, failover, rests, per-account
//! concurrency — against the mock upstream, on both store engines.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{body, Engine, Harness, UPSTREAM_KEY};
use crs::store::{account_lease_scope, buckets};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

both_engines!(
    stickiness_follows_metadata_user_id,
    dedicated_and_group_bindings,
    failover_before_the_first_byte,
    no_retry_once_streaming_started,
    rests_expire_and_the_account_returns,
    rate_limits_can_be_per_model_family,
    blocked_accounts_wait_for_an_admin,
    per_account_concurrency_holds_under_50_parallel_requests,
    leases_are_released_after_aborted_streams,
    every_attempt_failing_shows_the_last_error,
    leases_outlive_their_ttl_while_a_stream_runs,
    auto_protection_can_be_switched_off,
);

async fn console(h: &Harness, name: &str, scenario: Option<&str>, extra: Value) -> String {
    let api_url = scenario
        .map(|s| h.mock.scenario_url(s))
        .unwrap_or_else(|| h.mock.url());
    let mut b = json!({"name": name, "apiUrl": api_url, "apiKey": UPSTREAM_KEY, "priority": 50});
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let (s, v) = h
        .admin(Method::POST, "/admin/claude-console-accounts", Some(b))
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"]["id"].as_str().unwrap().to_string()
}

fn with_session(session: &str) -> Value {
    let mut b = body(false);
    b["metadata"] =
        json!({"user_id": format!("user_{}_account__session_{session}", "a".repeat(64))});
    b
}

/// The account's rests, once its mark (written off the request path) has landed.
async fn rests_of(h: &Harness, id: &str) -> Vec<app::domain::Cooldown> {
    for _ in 0..100 {
        let r = h
            .relay()
            .state
            .store
            .cooldowns(&[id.to_string()])
            .await
            .unwrap();
        if let Some(list) = r.get(id) {
            return list.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("account {id} never marked");
}

async fn served_by(h: &Harness, accounts: &[&String], key_id: &str, total: u64) -> Vec<u64> {
    h.wait_requests(&buckets::key_total(key_id), total).await;
    let names: Vec<String> = accounts.iter().map(|a| buckets::account_total(a)).collect();
    h.relay()
        .state
        .store
        .usage(&names)
        .await
        .unwrap()
        .iter()
        .map(|c| c.requests)
        .collect()
}

async fn stickiness_follows_metadata_user_id(engine: Engine) {
    let h = Harness::new(engine).await;
    let a = console(&h, "a", None, json!({})).await;
    let b = console(&h, "b", None, json!({})).await;
    let (key_id, key) = h.key(json!({})).await;
    for _ in 0..3 {
        assert_eq!(
            h.messages(&key, with_session("s-one"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let counts = served_by(&h, &[&a, &b], &key_id, 3).await;
    assert!(
        counts == vec![3, 0] || counts == vec![0, 3],
        "one session, one account: {counts:?}"
    );
    // A new session goes to the least recently used account, the other one.
    assert_eq!(
        h.messages(&key, with_session("s-two"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let counts = served_by(&h, &[&a, &b], &key_id, 4).await;
    assert!(counts == vec![3, 1] || counts == vec![1, 3], "{counts:?}");
    // The JSON form Claude Code sends now is understood too.
    let mut j = body(false);
    j["metadata"] =
        json!({"user_id": "{\"device_id\":\"d\",\"account_uuid\":\"\",\"session_id\":\"s-one\"}"});
    assert_eq!(h.messages(&key, j).send().await.unwrap().status(), 200);
    let counts2 = served_by(&h, &[&a, &b], &key_id, 5).await;
    let grew: Vec<bool> = counts2.iter().zip(&counts).map(|(n, o)| n > o).collect();
    assert_eq!(
        grew,
        counts.iter().map(|c| *c == 3).collect::<Vec<_>>(),
        "same session, same account"
    );
}

async fn dedicated_and_group_bindings(engine: Engine) {
    let h = Harness::new(engine).await;
    let shared = console(&h, "shared", None, json!({"priority": 1})).await;
    let ded = console(
        &h,
        "ded",
        None,
        json!({"priority": 90, "accountType": "dedicated"}),
    )
    .await;
    let g1 = console(&h, "g1", None, json!({"priority": 80})).await;
    let g2 = console(&h, "g2", None, json!({"priority": 80})).await;
    let (s, group) = h
        .admin(
            Method::POST,
            "/admin/account-groups",
            Some(json!({"name": "team", "members": [g1, g2]})),
        )
        .await;
    assert_eq!(s, 200, "{group}");
    let gid = group["data"]["id"].as_str().unwrap();

    let (ded_key_id, ded_key) = h.key(json!({"claudeConsoleAccountId": ded})).await;
    let (grp_key_id, grp_key) = h
        .key(json!({"claudeAccountId": format!("group:{gid}")}))
        .await;
    let (pool_key_id, pool_key) = h.key(json!({})).await;
    for i in 0..4 {
        for k in [&ded_key, &grp_key, &pool_key] {
            let mut b = body(false);
            b["messages"][0]["content"] = json!(format!("new conversation {i}"));
            assert_eq!(h.messages(k, b).send().await.unwrap().status(), 200);
        }
    }
    assert_eq!(
        served_by(&h, &[&shared, &ded, &g1, &g2], &ded_key_id, 4).await[1],
        4
    );
    let store = &h.relay().state.store;
    h.wait_requests(&buckets::key_total(&grp_key_id), 4).await;
    h.wait_requests(&buckets::key_total(&pool_key_id), 4).await;
    let c = store
        .usage(&[
            buckets::account_total(&shared),
            buckets::account_total(&ded),
            buckets::account_total(&g1),
            buckets::account_total(&g2),
        ])
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|c| c.requests).collect::<Vec<_>>(),
        vec![4, 4, 2, 2],
        "pool → shared, group → rotates inside"
    );

    // The dedicated account paused: its key fails (no silent fallback) …
    h.admin(
        Method::PUT,
        &format!("/admin/claude-console-accounts/{ded}/toggle-schedulable"),
        None,
    )
    .await;
    let resp = h.messages(&ded_key, body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not_schedulable"),
        "{v}"
    );
    // … unless the key opts into fallback.
    let (s, _) = h
        .admin(
            Method::PUT,
            &format!("/admin/api-keys/{ded_key_id}"),
            Some(json!({"allowDedicatedFallback": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        h.messages(&ded_key, body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn failover_before_the_first_byte(engine: Engine) {
    let dead = format!("http://127.0.0.1:{}", crs::testing::free_port());
    for broken in [
        "status-529",
        "status-429",
        "status-500",
        "status-401",
        "dead",
    ] {
        let h = Harness::new(engine).await;
        let bad = if broken == "dead" {
            h.account_at("bad", &dead, 1).await
        } else {
            console(&h, "bad", Some(broken), json!({"priority": 1})).await
        };
        let good = console(&h, "good", None, json!({"priority": 2})).await;
        let (key_id, key) = h.key(json!({})).await;
        for stream in [false, true] {
            let resp = h.messages(&key, body(stream)).send().await.unwrap();
            assert_eq!(
                resp.status(),
                200,
                "{broken}: the client sees the healthy account's answer"
            );
            resp.bytes().await.unwrap();
        }
        let counts = served_by(&h, &[&bad, &good], &key_id, 2).await;
        assert_eq!(counts, vec![0, 2], "{broken}");
        // The broken account rests: the second request did not even try it.
        let attempts_on_bad = h
            .mock
            .log
            .requests
            .lock()
            .iter()
            .filter(|r| r.path.starts_with("/s/"))
            .count();
        assert_eq!(attempts_on_bad, usize::from(broken != "dead"), "{broken}");
        let rests = rests_of(&h, &bad).await;
        let rest = &rests[0];
        let (class, secs) = match broken {
            "status-529" => ("overload", 600),
            "status-429" => ("rate_limit", 7),
            "status-500" => ("server_error", 300),
            "status-401" => ("auth_error", 1800),
            _ => ("unreachable", 60),
        };
        assert_eq!(rest.class, class, "{broken}");
        let left = (rest.until_ms - chrono::Utc::now().timestamp_millis()) / 1000;
        assert!(
            left <= secs && left >= secs - 5,
            "{broken}: {left}s left of {secs}s"
        );
        let (_, history) = h
            .admin(
                Method::GET,
                &format!("/admin/accounts/claude-console/{bad}/error-history"),
                None,
            )
            .await;
        assert_eq!(history["data"][0]["class"], class, "{broken}");
        let (_, list) = h
            .admin(Method::GET, "/admin/claude-console-accounts", None)
            .await;
        let listed = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == bad.as_str())
            .unwrap()
            .clone();
        let expected_state = if class == "rate_limit" {
            "rate_limited"
        } else {
            "cooling_down"
        };
        assert_eq!(listed["state"], expected_state, "{broken}");
    }
}

async fn no_retry_once_streaming_started(engine: Engine) {
    let h = Harness::new(engine).await;
    let cut = console(&h, "cut", Some("reset"), json!({"priority": 1})).await;
    let good = console(&h, "good", None, json!({"priority": 2})).await;
    let (key_id, key) = h.key(json!({})).await;
    let resp = h.messages(&key, body(true)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: message_start"), "{text}");
    assert!(
        text.contains("event: error"),
        "the cut is told in the stream: {text}"
    );
    // What was streamed is accounted on the account that streamed it; the healthy one saw nothing.
    let counts = served_by(&h, &[&cut, &good], &key_id, 1).await;
    assert_eq!(counts, vec![1, 0]);
    assert_eq!(h.mock.log.count(), 1);
}

async fn rests_expire_and_the_account_returns(engine: Engine) {
    let h = Harness::with_config(engine, |c| {
        c.cooldowns.service_unavailable = Duration::from_secs(1)
    })
    .await;
    let flaky = console(&h, "flaky", Some("status-503"), json!({"priority": 1})).await;
    console(&h, "good", None, json!({"priority": 2})).await;
    let (_, key) = h.key(json!({})).await;
    let on_flaky = || {
        h.mock
            .log
            .requests
            .lock()
            .iter()
            .filter(|r| r.path.starts_with("/s/status-503"))
            .count()
    };
    assert_eq!(
        h.messages(&key, body(false)).send().await.unwrap().status(),
        200
    );
    assert_eq!(on_flaky(), 1);
    rests_of(&h, &flaky).await;
    assert_eq!(
        h.messages(&key, body(false)).send().await.unwrap().status(),
        200
    );
    assert_eq!(on_flaky(), 1, "resting: not tried");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(h
        .relay()
        .state
        .store
        .cooldowns(std::slice::from_ref(&flaky))
        .await
        .unwrap()
        .is_empty());
    let mut b = body(false);
    b["messages"][0]["content"] = json!("another conversation");
    assert_eq!(h.messages(&key, b).send().await.unwrap().status(), 200);
    assert_eq!(on_flaky(), 2, "rest over: tried again");
}

async fn rate_limits_can_be_per_model_family(engine: Engine) {
    let h = Harness::new(engine).await;
    let limited = console(&h, "limited", Some("family-limit"), json!({"priority": 1})).await;
    console(&h, "good", None, json!({"priority": 2})).await;
    let (_, key) = h.key(json!({})).await;
    let with_model = |m: &str| {
        let mut b = body(false);
        b["model"] = json!(m);
        b
    };
    assert_eq!(
        h.messages(&key, with_model("claude-opus-4-1-20250805"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let rests = rests_of(&h, &limited).await;
    assert_eq!(rests.len(), 1);
    assert_eq!(rests[0].family.as_deref(), Some("opus"));
    let tries = || {
        h.mock
            .log
            .requests
            .lock()
            .iter()
            .filter(|r| r.path.starts_with("/s/family-limit"))
            .count()
    };
    assert_eq!(tries(), 1);
    assert_eq!(
        h.messages(&key, with_model("claude-opus-4-1-20250805"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(tries(), 1, "opus rests on this account");
    let mut sonnet = with_model("claude-sonnet-4-5-20250929");
    sonnet["messages"][0]["content"] = json!("a new conversation, not stuck to the other account");
    assert_eq!(h.messages(&key, sonnet).send().await.unwrap().status(), 200);
    assert_eq!(tries(), 2, "sonnet may still use it");
}

async fn blocked_accounts_wait_for_an_admin(engine: Engine) {
    let h = Harness::new(engine).await;
    // A mock answer saying the organisation is disabled: served by a tiny upstream of its own.
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(|| async {
            (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": "This organization has been disabled."}})))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let blocked = h.account_at("disabled org", &url, 1).await;
    console(&h, "good", None, json!({"priority": 2})).await;
    let (_, key) = h.key(json!({})).await;
    assert_eq!(
        h.messages(&key, body(false)).send().await.unwrap().status(),
        200
    );
    let mut status = "";
    for _ in 0..50 {
        status = h
            .relay()
            .state
            .store
            .get_account(&blocked)
            .await
            .unwrap()
            .unwrap()
            .account
            .status
            .as_str();
        if status == "blocked" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "blocked");
    let (_, list) = h
        .admin(Method::GET, "/admin/claude-console-accounts", None)
        .await;
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == blocked.as_str() && a["state"] == "blocked"));
    let (s, reset) = h
        .admin(
            Method::POST,
            &format!("/admin/claude-console-accounts/{blocked}/reset-status"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{reset}");
    assert_eq!(reset["data"]["state"], "normal");
}

async fn per_account_concurrency_holds_under_50_parallel_requests(engine: Engine) {
    let h = Harness::new(engine).await;
    let acc = console(&h, "narrow", Some("drip-20"), json!({"maxConcurrency": 3})).await;
    let (_, key) = h.key(json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let req = h.messages(&key, {
            let mut b = body(true);
            b["messages"][0]["content"] = json!(format!("parallel {i}"));
            b
        });
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let _ = resp.bytes().await;
            status
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            503 => busy += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok + busy, 50);
    assert!(ok >= 3, "{ok} served");
    assert!(
        h.mock.log.max_in_flight.load(Ordering::SeqCst) <= 3,
        "never more than 3 at once upstream"
    );
    let scope = account_lease_scope(&acc);
    let store = &h.relay().state.store;
    for _ in 0..100 {
        if store.count_leases(&scope).await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.count_leases(&scope).await.unwrap(),
        0,
        "every slot released"
    );
}

async fn leases_are_released_after_aborted_streams(engine: Engine) {
    let h = Harness::new(engine).await;
    let acc = console(&h, "slow", Some("drip-300"), json!({"maxConcurrency": 2})).await;
    let (_, key) = h.key(json!({})).await;
    let store = h.relay().state.store.clone();
    let scope = account_lease_scope(&acc);
    for i in 0..3 {
        let mut b = body(true);
        b["messages"][0]["content"] = json!(format!("abort {i}"));
        let resp = h.messages(&key, b).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut s = resp.bytes_stream();
        s.next().await.unwrap().unwrap();
        assert_eq!(store.count_leases(&scope).await.unwrap(), 1);
        drop(s);
        let mut n = 1;
        for _ in 0..100 {
            n = store.count_leases(&scope).await.unwrap();
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(n, 0, "released after the abort");
    }
}

async fn every_attempt_failing_shows_the_last_error(engine: Engine) {
    let h = Harness::new(engine).await;
    let a = console(&h, "a", Some("status-500"), json!({"priority": 1})).await;
    let b = console(&h, "b", Some("status-529"), json!({"priority": 2})).await;
    let (_, key) = h.key(json!({})).await;
    let resp = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 529, "the last upstream error");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    rests_of(&h, &a).await;
    rests_of(&h, &b).await;
    // Both rest now: the next request finds no account.
    let resp = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
}

async fn leases_outlive_their_ttl_while_a_stream_runs(engine: Engine) {
    let h = Harness::with_config(engine, |c| c.lease_ttl = Duration::from_secs(3)).await;
    // 11 events, 500 ms apart: the stream runs ~5.5 s, well past the 3 s lease.
    let acc = console(&h, "long", Some("drip-500"), json!({"maxConcurrency": 1})).await;
    let (_, key) = h.key(json!({})).await;
    let resp = h.messages(&key, body(true)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let reader = tokio::spawn(async move { resp.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let scope = account_lease_scope(&acc);
    assert_eq!(
        h.relay().state.store.count_leases(&scope).await.unwrap(),
        1,
        "still held after its ttl"
    );
    // So the account stays full for others.
    let mut other = body(false);
    other["messages"][0]["content"] = json!("someone else");
    assert_eq!(h.messages(&key, other).send().await.unwrap().status(), 503);
    assert!(reader.await.unwrap().contains("message_stop"));
    let mut n = 1;
    for _ in 0..100 {
        n = h.relay().state.store.count_leases(&scope).await.unwrap();
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n, 0);
}

async fn auto_protection_can_be_switched_off(engine: Engine) {
    let h = Harness::new(engine).await;
    let fragile = console(
        &h,
        "unprotected",
        Some("status-529"),
        json!({"priority": 1, "disableAutoProtection": true}),
    )
    .await;
    console(&h, "good", None, json!({"priority": 2})).await;
    let (_, key) = h.key(json!({})).await;
    assert_eq!(
        h.messages(&key, body(false)).send().await.unwrap().status(),
        200,
        "failover still happens"
    );
    // The error is in the history, but the account does not rest.
    let mut history = Value::Null;
    for _ in 0..100 {
        let (_, v) = h
            .admin(
                Method::GET,
                &format!("/admin/accounts/claude-console/{fragile}/error-history"),
                None,
            )
            .await;
        if v["data"].as_array().is_some_and(|a| !a.is_empty()) {
            history = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(history["data"][0]["class"], "overload");
    assert_eq!(history["data"][0]["cooldownSecs"], 0);
    assert!(h
        .relay()
        .state
        .store
        .cooldowns(std::slice::from_ref(&fragile))
        .await
        .unwrap()
        .is_empty());
}
