//! Users inside the limits, through the real relay on both engines: a user's budget is shared
//! by all their keys (402 `user_daily_budget_exceeded`, spent ≤ budget); the keys a user
//! creates get the admin's defaults and nothing else; deleting a key never frees a slot; a key
//! an admin disabled stays disabled for its owner. The pages have no JSON API for users, so
//! this calls their server functions over HTTP as the pages do.

mod common;

use common::{Engine, Harness, UPSTREAM_KEY};
use crs::store::buckets;
use reqwest::{header, Method};
use serde_json::{json, Value};

both_engines!(
    a_budget_is_shared_by_all_of_a_users_keys,
    a_users_key_gets_the_admins_defaults,
    deleting_a_key_does_not_free_a_slot,
    a_key_an_admin_disabled_stays_disabled_for_its_owner,
);

const API: &str = "/admin-next/api";
/// $5 / $25 per million tokens: 60,000 output tokens cost $1.50.
const OPUS: &str = "claude-opus-4-5-20251101";
const ANSWER_TOKENS: u64 = 60_000;

/// A relay whose day is at its middle while the test runs (a daily budget must not reset
/// under the test).
fn midday(c: &mut crs::config::Config) {
    use chrono::Timelike;
    let hour = chrono::Utc::now().hour() as i32;
    c.timezone_offset_hours = (12 - hour + 36) % 24 - 12;
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Calls a server function as the pages do (form-encoded POST): (status, body).
async fn call(h: &Harness, session: &str, endpoint: &str, form: &[(&str, &str)]) -> (u16, String) {
    let resp = client()
        .post(h.url(&format!("{API}/{endpoint}")))
        .header(header::COOKIE, format!("{}={session}", app::SESSION_COOKIE))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn ok(h: &Harness, session: &str, endpoint: &str, form: &[(&str, &str)]) -> String {
    let (s, b) = call(h, session, endpoint, form).await;
    assert_eq!(s, 200, "{endpoint}: {b}");
    b
}

async fn sign_in(h: &Harness, username: &str, password: &str) -> String {
    let resp = client()
        .post(h.url(&format!("{API}/login")))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    let prefix = format!("{}=", app::SESSION_COOKIE);
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.strip_prefix(&prefix))
        .find(|t| !t.is_empty())
        .map(str::to_string)
        .expect("signed in")
}

/// Creates a local user as the admin and signs them in: (user id, session token).
async fn user(h: &Harness, name: &str) -> (String, String) {
    let password = format!("{name}-password-1");
    ok(
        h,
        &h.token,
        "create-user",
        &[
            ("username", name),
            ("password", &password),
            ("role", "user"),
        ],
    )
    .await;
    let id = users(h)
        .await
        .iter()
        .find(|u| u["user"]["username"] == name)
        .and_then(|u| u["user"]["id"].as_str())
        .unwrap()
        .to_string();
    (id, sign_in(h, name, &password).await)
}

async fn users(h: &Harness) -> Vec<Value> {
    serde_json::from_str(&ok(h, &h.token, "users", &[]).await).unwrap()
}

/// A user's own key, from their page (extra form fields as a user might post them): (status,
/// body).
async fn create_own(
    h: &Harness,
    session: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut form = vec![("form[name]", name)];
    form.extend_from_slice(extra);
    call(h, session, "create-keys", &form).await
}

/// (id, raw key) of a user's new key.
async fn own_key(h: &Harness, session: &str, name: &str) -> (String, String) {
    let (s, b) = create_own(h, session, name, &[]).await;
    assert_eq!(s, 200, "{b}");
    let raw: Vec<String> = serde_json::from_str(&b).unwrap();
    let page: Value =
        serde_json::from_str(&ok(h, session, "keys", &[("query[page]", "1")]).await).unwrap();
    let id = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .and_then(|k| k["id"].as_str())
        .unwrap()
        .to_string();
    (id, raw[0].clone())
}

/// A key as the admin JSON API lists it.
async fn admin_view(h: &Harness, id: &str) -> Value {
    let (s, v) = h.admin(Method::GET, "/admin/api-keys", None).await;
    assert_eq!(s, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("key {id} not listed"))
}

/// The settings form as the admin saves it, with these fields changed.
async fn save_settings(h: &Harness, fields: &[(&str, &str)]) -> (u16, String) {
    let mut form = vec![
        ("form[site_name]", "relay"),
        ("form[user_keys_enabled]", "on"),
        ("form[max_keys_per_user]", "5"),
    ];
    for (k, v) in fields {
        form.retain(|(f, _)| f != k);
        form.push((k, v));
    }
    call(h, &h.token, "save-settings", &form).await
}

fn opus(i: usize) -> Value {
    json!({
        "model": OPUS,
        "max_tokens": ANSWER_TOKENS,
        "messages": [{"role": "user", "content": format!("write a long story {i} {}", "about a lighthouse keeper ".repeat(12))}],
    })
}

async fn send(h: &Harness, key: &str, body: Value) -> (u16, Value) {
    let resp = h.messages(key, body).send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

/// The output limits the upstream was asked for, oldest first.
fn max_tokens_seen(h: &Harness) -> Vec<u64> {
    h.mock
        .log
        .requests
        .lock()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["model"] == OPUS)
        .filter_map(|b| b["max_tokens"].as_u64())
        .collect()
}

async fn a_budget_is_shared_by_all_of_a_users_keys(engine: Engine) {
    let h = Harness::with_config(engine, midday).await;
    let scenario = h.mock.scenario_url(&format!("out-{ANSWER_TOKENS}"));
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/claude-console-accounts",
            Some(json!({"name": "opus", "apiUrl": scenario, "apiKey": UPSTREAM_KEY})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (uid, alice) = user(&h, "alice").await;
    // One key from before the budget (the budget reaches it), one from after (born with it).
    let (a_id, a) = own_key(&h, &alice, "before").await;

    // A refused budget names its field, and changes nothing.
    for (daily, monthly, field) in [("-1", "", "dailyCost"), ("2", "lots", "monthlyCost")] {
        let (s, b) = call(
            &h,
            &h.token,
            "user-budget",
            &[
                ("id", &uid),
                ("daily_cost", daily),
                ("monthly_cost", monthly),
            ],
        )
        .await;
        assert_eq!(s, 400, "{b}");
        assert!(b.contains(field), "{b}");
    }
    ok(
        &h,
        &h.token,
        "user-budget",
        &[("id", &uid), ("daily_cost", "2"), ("monthly_cost", "50")],
    )
    .await;
    let (b_id, b) = own_key(&h, &alice, "after").await;
    let row = users(&h)
        .await
        .into_iter()
        .find(|u| u["user"]["id"] == uid.as_str())
        .unwrap();
    assert_eq!(
        row["user"]["budget"],
        json!({"dailyCost": 2.0, "monthlyCost": 50.0})
    );
    for id in [&a_id, &b_id] {
        let k = admin_view(&h, id).await;
        assert_eq!(
            k["ownerBudget"],
            json!({"dailyCost": 2.0, "monthlyCost": 50.0}),
            "{k}"
        );
        assert_eq!(k["limits"]["ownerBudget"]["dailyCost"]["limit"], 2.0, "{k}");
    }

    // $1.50 on the first key; the second key gets only what is left of the $2.00.
    let (s, v) = send(&h, &a, opus(0)).await;
    assert_eq!(s, 200, "{v}");
    h.wait_requests(&buckets::key_total(&a_id), 1).await;
    let (s, v) = send(&h, &b, opus(1)).await;
    assert_eq!(s, 200, "{v}");
    let seen = max_tokens_seen(&h);
    assert_eq!(seen[0], ANSWER_TOKENS);
    assert!(
        seen[1] < ANSWER_TOKENS / 2,
        "the second key's request was not lowered to the shared budget: {seen:?}"
    );
    h.wait_requests(&buckets::key_total(&b_id), 1).await;

    // Then both keys are refused by the one budget.
    let mut refused = Vec::new();
    for i in 2..12 {
        let (key, name) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        let (s, v) = send(&h, key, opus(i)).await;
        match s {
            200 => {}
            402 => {
                assert_eq!(v["error"]["code"], "user_daily_budget_exceeded", "{v}");
                refused.push(name);
            }
            other => panic!("unexpected {other}: {v}"),
        }
        if refused.contains(&"a") && refused.contains(&"b") {
            break;
        }
    }
    assert!(
        refused.contains(&"a") && refused.contains(&"b"),
        "both keys refused by the budget: {refused:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let spent: u64 = h
        .relay()
        .state
        .store
        .usage(&[buckets::key_total(&a_id), buckets::key_total(&b_id)])
        .await
        .unwrap()
        .iter()
        .map(|c| c.cost_nanos)
        .sum();
    assert!(
        spent <= 2_000_000_000,
        "spent ${:.6} against a $2.00 budget",
        spent as f64 / 1e9
    );
    assert!(
        spent >= 1_800_000_000,
        "only ${:.6} of $2.00 used",
        spent as f64 / 1e9
    );
    let report = admin_view(&h, &b_id).await["limits"]["ownerBudget"]["dailyCost"].clone();
    assert!(report["current"].as_f64().unwrap() <= 2.0, "{report}");

    // A raised budget reaches the keys at once.
    ok(
        &h,
        &h.token,
        "user-budget",
        &[("id", &uid), ("daily_cost", "10"), ("monthly_cost", "")],
    )
    .await;
    let (s, v) = send(&h, &a, opus(20)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        admin_view(&h, &b_id).await["ownerBudget"],
        json!({"dailyCost": 10.0, "monthlyCost": 0.0})
    );
}

async fn a_users_key_gets_the_admins_defaults(engine: Engine) {
    let h = Harness::with_config(engine, midday).await;
    h.account("main", None, 50).await;
    // Refused defaults name their field.
    for (field, value, named) in [
        (
            "form[user_key_daily_cost_limit]",
            "-1",
            "userKeyDefaults.dailyCostLimit",
        ),
        (
            "form[user_key_concurrency_limit]",
            "1.5",
            "userKeyDefaults.concurrencyLimit",
        ),
        (
            "form[user_key_rate_limit_requests]",
            "3",
            "userKeyDefaults.rateLimitWindow",
        ),
        (
            "form[user_key_expiry_days]",
            "soon",
            "userKeyDefaults.expiryDays",
        ),
    ] {
        let (s, b) = save_settings(&h, &[(field, value)]).await;
        assert_eq!(s, 400, "{field}: {b}");
        assert!(b.contains(named), "{field}: {b}");
    }
    let (s, b) = save_settings(
        &h,
        &[
            ("form[user_key_daily_cost_limit]", "5"),
            ("form[user_key_total_cost_limit]", "50"),
            ("form[user_key_weekly_cost_limit]", "20"),
            ("form[user_key_concurrency_limit]", "2"),
            ("form[user_key_rate_limit_window]", "1"),
            ("form[user_key_rate_limit_requests]", "1"),
            ("form[user_key_rate_limit_cost]", "1"),
            ("form[user_key_perm_claude]", "on"),
            ("form[user_key_perm_openai]", "on"),
            ("form[user_key_expiry_days]", "30"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let settings: Value = serde_json::from_str(&ok(&h, &h.token, "settings", &[]).await).unwrap();
    assert_eq!(settings["user_key_daily_cost_limit"], "5", "{settings}");
    assert_eq!(settings["user_key_perm_gemini"], Value::Null, "{settings}");

    let (_, alice) = user(&h, "alice").await;
    // Whatever else the user posts, the key gets the admin's defaults only.
    let (s, b) = create_own(
        &h,
        &alice,
        "laptop",
        &[
            ("form[daily_cost_limit]", "1000"),
            ("form[concurrency_limit]", "0"),
            ("form[rate_limit_requests]", "1000"),
            ("form[perm_gemini]", "on"),
            ("form[expires_at]", "2099-01-01"),
            ("form[count]", "5"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let raw: Vec<String> = serde_json::from_str(&b).unwrap();
    assert_eq!(raw.len(), 1);
    let page: Value =
        serde_json::from_str(&ok(&h, &alice, "keys", &[("query[page]", "1")]).await).unwrap();
    let id = page["rows"][0]["id"].as_str().unwrap().to_string();
    let k = admin_view(&h, &id).await;
    assert_eq!(k["dailyCostLimit"], 5.0, "{k}");
    assert_eq!(k["totalCostLimit"], 50.0, "{k}");
    assert_eq!(k["weeklyCostLimit"], 20.0, "{k}");
    assert_eq!(k["concurrencyLimit"], 2, "{k}");
    assert_eq!(k["rateLimitWindow"], 1, "{k}");
    assert_eq!(k["rateLimitRequests"], 1, "{k}");
    assert_eq!(k["rateLimitCost"], 1.0, "{k}");
    assert_eq!(k["permissions"], json!(["claude", "openai"]), "{k}");
    let expires = chrono::DateTime::parse_from_rfc3339(k["expiresAt"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!(
        (29 * 24..=30 * 24).contains(&days),
        "expires in {days} h: {k}"
    );
    // The user cannot change them afterwards either.
    let (s, b) = call(
        &h,
        &alice,
        "update-key",
        &[
            ("id", &id),
            ("form[name]", "laptop"),
            ("form[daily_cost_limit]", ""),
        ],
    )
    .await;
    assert!(s >= 400, "{b}");

    // A request over the defaults is refused: one request per minute.
    let (s, v) = send(&h, &raw[0], common::body(false)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(&h, &raw[0], common::body(false)).await;
    assert_eq!(s, 429, "{v}");
}

async fn deleting_a_key_does_not_free_a_slot(engine: Engine) {
    let h = Harness::new(engine).await;
    let (s, b) = save_settings(&h, &[("form[max_keys_per_user]", "2")]).await;
    assert_eq!(s, 200, "{b}");
    let (uid, alice) = user(&h, "alice").await;
    let (first, _) = own_key(&h, &alice, "one").await;
    own_key(&h, &alice, "two").await;
    let (s, b) = create_own(&h, &alice, "three", &[]).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("maximum of 2"), "{b}");

    // Deleting one does not give the slot back.
    ok(
        &h,
        &alice,
        "key-action",
        &[("id", &first), ("action", "delete")],
    )
    .await;
    let (s, b) = create_own(&h, &alice, "three", &[]).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("deleted keys count"), "{b}");
    let row = users(&h)
        .await
        .into_iter()
        .find(|u| u["user"]["id"] == uid.as_str())
        .unwrap();
    assert_eq!(
        (row["keyCount"].as_u64(), row["deletedKeyCount"].as_u64()),
        (Some(1), Some(1))
    );
    // Nor do a user's restore or permanent delete exist.
    for action in ["restore", "purge"] {
        let (s, b) = call(
            &h,
            &alice,
            "key-action",
            &[("id", &first), ("action", action)],
        )
        .await;
        assert_eq!(s, 400, "{action}: {b}");
    }
    // The admin's permanent delete does (only of a deleted key).
    let page: Value =
        serde_json::from_str(&ok(&h, &alice, "keys", &[("query[page]", "1")]).await).unwrap();
    let second = page["rows"][0]["id"].as_str().unwrap().to_string();
    let (s, b) = call(
        &h,
        &h.token,
        "key-action",
        &[("id", &second), ("action", "purge")],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    ok(
        &h,
        &h.token,
        "key-action",
        &[("id", &first), ("action", "purge")],
    )
    .await;
    assert!(h
        .relay()
        .state
        .store
        .get_key(&first)
        .await
        .unwrap()
        .is_none());
    own_key(&h, &alice, "three").await;
    let (s, b) = create_own(&h, &alice, "four", &[]).await;
    assert_eq!(s, 400, "{b}");
}

async fn a_key_an_admin_disabled_stays_disabled_for_its_owner(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("main", None, 50).await;
    let (_, alice) = user(&h, "alice").await;
    let (id, key) = own_key(&h, &alice, "laptop").await;
    let relay = |key: String| {
        let h = &h;
        async move { send(h, &key, common::body(false)).await.0 }
    };
    let owner = |action: &'static str| {
        let (h, alice, id) = (&h, alice.clone(), id.clone());
        async move { call(h, &alice, "key-action", &[("id", &id), ("action", action)]).await }
    };
    // The owner may disable and enable their own key.
    assert_eq!(owner("disable").await.0, 200);
    assert_eq!(relay(key.clone()).await, 401);
    assert_eq!(owner("enable").await.0, 200);
    assert_eq!(relay(key.clone()).await, 200);

    // Disabled by the admin from the pages: the owner's enable is refused, with why.
    ok(
        &h,
        &h.token,
        "key-action",
        &[("id", &id), ("action", "disable")],
    )
    .await;
    let (s, b) = owner("enable").await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("disabled by an administrator"), "{b}");
    assert_eq!(relay(key.clone()).await, 401);
    let row: Value =
        serde_json::from_str(&ok(&h, &alice, "keys", &[("query[page]", "1")]).await).unwrap();
    assert_eq!(row["rows"][0]["disabledByAdmin"], true, "{row}");
    // Disabling it again, or deleting it, stays the owner's right; enabling does not come back.
    assert_eq!(owner("disable").await.0, 200);
    assert_eq!(owner("enable").await.0, 400);
    assert_eq!(admin_view(&h, &id).await["disabledByAdmin"], true);

    // The admin enables it: the owner has it back.
    ok(
        &h,
        &h.token,
        "key-action",
        &[("id", &id), ("action", "enable")],
    )
    .await;
    assert_eq!(relay(key.clone()).await, 200);
    assert_eq!(owner("disable").await.0, 200);
    assert_eq!(owner("enable").await.0, 200);

    // The same through the JSON API and its batch.
    let (s, v) = h
        .admin(
            Method::PUT,
            &format!("/admin/api-keys/{id}"),
            Some(json!({"isActive": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(owner("enable").await.0, 400);
    assert_eq!(relay(key.clone()).await, 401);
    let (s, v) = h
        .admin(
            Method::PUT,
            "/admin/api-keys/batch",
            Some(json!({"keyIds": [id], "updates": {"isActive": true}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(relay(key.clone()).await, 200);
    assert_eq!(owner("disable").await.0, 200);
    assert_eq!(owner("enable").await.0, 200);
    let (s, v) = h
        .admin(
            Method::PUT,
            "/admin/api-keys/batch",
            Some(json!({"keyIds": [id], "updates": {"isActive": false}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, b) = owner("enable").await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(relay(key.clone()).await, 401);
    // Deleted and restored by the admin, it is the owner's again.
    assert_eq!(owner("delete").await.0, 200);
    ok(
        &h,
        &h.token,
        "key-action",
        &[("id", &id), ("action", "restore")],
    )
    .await;
    assert_eq!(relay(key).await, 200);
    assert_eq!(owner("disable").await.0, 200);
    assert_eq!(owner("enable").await.0, 200);
}
