//! The admin JSON API: sessions, accounts and keys with the original's paths and fields,
//! secrets never returned, and data that survives a restart of the embedded store.

mod common;

use common::{body, Engine, Harness, UPSTREAM_KEY};
use reqwest::Method;
use serde_json::{json, Value};

both_engines!(
    admin_routes_need_a_session,
    accounts_crud_never_returns_the_credential,
    keys_crud_and_soft_delete
);

async fn admin_routes_need_a_session(engine: Engine) {
    let h = Harness::new(engine).await;
    for (method, path) in [
        (Method::GET, "/admin/api-keys"),
        (Method::POST, "/admin/api-keys"),
        (Method::GET, "/admin/claude-console-accounts"),
        (Method::GET, "/admin/dashboard"),
    ] {
        let r = h
            .http
            .request(method.clone(), h.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
        let r = h
            .http
            .request(method, h.url(path))
            .bearer_auth("f".repeat(64))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let bad = h
        .http
        .post(h.url("/web/auth/login"))
        .json(&json!({"username": "admin", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let user: Value = h
        .http
        .get(h.url("/web/auth/user"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["user"]["username"], "admin");
    // x-admin-token works too, and logout ends the session.
    let r = h
        .http
        .get(h.url("/admin/dashboard"))
        .header("x-admin-token", &h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.http
        .post(h.url("/web/auth/logout"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    let r = h
        .http
        .get(h.url("/admin/dashboard"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn accounts_crud_never_returns_the_credential(engine: Engine) {
    let h = Harness::new(engine).await;
    let (s, created) = h
        .admin(
            Method::POST,
            "/admin/claude-console-accounts",
            Some(json!({
                "name": "console", "apiUrl": "https://api.example.test/", "apiKey": UPSTREAM_KEY,
                "priority": 7, "supportedModels": {"claude-a": "claude-a", "claude-b": "claude-b"}
            })),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["data"]["apiUrl"], "https://api.example.test");
    assert_eq!(created["data"]["priority"], 7);
    assert_eq!(created["data"]["platform"], "claude-console");
    let mut models: Vec<String> =
        serde_json::from_value(created["data"]["supportedModels"].clone()).unwrap();
    models.sort();
    assert_eq!(models, vec!["claude-a", "claude-b"]);

    let (_, list) = h
        .admin(Method::GET, "/admin/claude-console-accounts", None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    for v in [&created, &list] {
        assert!(
            !v.to_string().contains(UPSTREAM_KEY),
            "credential leaked: {v}"
        );
    }
    // Encrypted at rest.
    let stored = h
        .relay()
        .state
        .store
        .get_account(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.secret.contains(UPSTREAM_KEY));
    assert_eq!(
        crs::upstream::AccountSecrets::open(&h.relay().state.crypto, &stored)
            .unwrap()
            .api_key
            .unwrap(),
        UPSTREAM_KEY
    );

    for bad in [
        json!({"priority": 0}),
        json!({"apiUrl": "ftp://x"}),
        json!({"name": " "}),
        json!({"supportedModels": 5}),
    ] {
        let (s, v) = h
            .admin(
                Method::PUT,
                &format!("/admin/claude-console-accounts/{id}"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(s, 400, "{bad} → {v}");
    }
    let (s, missing) = h
        .admin(
            Method::POST,
            "/admin/claude-console-accounts",
            Some(json!({"name": "x", "apiUrl": "https://x.test"})),
        )
        .await;
    assert_eq!(s, 400, "{missing}");

    let (s, updated) = h
        .admin(
            Method::PUT,
            &format!("/admin/claude-console-accounts/{id}"),
            Some(json!({"schedulable": false, "name": "renamed"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(updated["data"]["schedulable"], false);
    assert_eq!(updated["data"]["name"], "renamed");
    // The credential survives an update that does not mention it.
    let stored = h
        .relay()
        .state
        .store
        .get_account(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        crs::upstream::AccountSecrets::open(&h.relay().state.crypto, &stored)
            .unwrap()
            .api_key
            .unwrap(),
        UPSTREAM_KEY
    );

    let (s, _) = h
        .admin(
            Method::DELETE,
            &format!("/admin/claude-console-accounts/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h
        .admin(
            Method::DELETE,
            &format!("/admin/claude-console-accounts/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

async fn keys_crud_and_soft_delete(engine: Engine) {
    let h = Harness::new(engine).await;
    let (s, created) = h
        .admin(
            Method::POST,
            "/admin/api-keys",
            Some(json!({"name": "alice", "permissions": ["claude"], "tags": ["team-a"]})),
        )
        .await;
    assert_eq!(s, 200);
    let key = created["data"]["apiKey"].as_str().unwrap().to_string();
    let id = created["data"]["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("cr_") && key.len() == 67);
    // Stored only as a hash.
    let stored = h.relay().state.store.get_key(&id).await.unwrap().unwrap();
    assert_ne!(stored.key_hash, key);
    assert!(!serde_json::to_string(&stored).unwrap().contains(&key));

    let (_, list) = h.admin(Method::GET, "/admin/api-keys", None).await;
    let entry = &list["data"][0];
    assert_eq!(entry["name"], "alice");
    assert_eq!(entry["permissions"], json!(["claude"]));
    assert_eq!(entry["usage"]["total"]["requests"], 0);
    assert!(
        !list.to_string().contains(&key),
        "the key is shown only once"
    );

    for bad in [
        json!({"permissions": ["ftp"]}),
        json!({"expiresAt": "tomorrow"}),
        json!({"name": ""}),
        json!({"expirationMode": "activation", "activationDays": 0}),
    ] {
        let (s, v) = h
            .admin(
                Method::PUT,
                &format!("/admin/api-keys/{id}"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(s, 400, "{bad} → {v}");
    }
    let (s, _) = h
        .admin(
            Method::PUT,
            &format!("/admin/api-keys/{id}"),
            Some(json!({"description": "for alice"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h
        .admin(Method::DELETE, &format!("/admin/api-keys/{id}"), None)
        .await;
    assert_eq!(s, 200);
    let (_, list) = h.admin(Method::GET, "/admin/api-keys", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (s, _) = h
        .admin(
            Method::PUT,
            &format!("/admin/api-keys/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_data_survives_a_restart_of_the_embedded_store() {
    let mut h = Harness::new(Engine::Embedded).await;
    let account = h.account("persistent", None, 5).await;
    let (key_id, key) = h.key(json!({"name": "survivor"})).await;
    assert_eq!(
        h.messages(&key, body(false)).send().await.unwrap().status(),
        200
    );
    h.wait_requests(&crs::store::buckets::key_total(&key_id), 1)
        .await;

    h.restart().await;

    let (_, accounts) = h
        .admin(Method::GET, "/admin/claude-console-accounts", None)
        .await;
    assert_eq!(accounts["data"][0]["id"], account);
    assert_eq!(accounts["data"][0]["name"], "persistent");
    let (_, keys) = h.admin(Method::GET, "/admin/api-keys", None).await;
    assert_eq!(keys["data"][0]["name"], "survivor");
    assert_eq!(keys["data"][0]["usage"]["total"]["requests"], 1);
    // The same key still authenticates, and the credential still decrypts upstream.
    assert_eq!(
        h.messages(&key, body(false)).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        h.mock.log.last().unwrap().headers["x-api-key"],
        UPSTREAM_KEY
    );
}

#[tokio::test]
async fn invalid_configuration_stops_the_start_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crs"))
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("PORT"), "{err}");
}
