//! Issue 3: Claude OAuth accounts end to end against the mock token endpoint (PKCE, setup
//! tokens, refresh exactly once across two relay instances), and per-account proxies.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{body, Engine, Harness};
use crs::testing::{proxy, RedisServer};
use reqwest::Method;
use serde_json::json;

both_engines!(
    pkce_flow_creates_a_working_account,
    setup_token_url_and_failed_refresh,
    requests_go_through_socks5_and_http_proxies
);

/// Points the relay's Claude API and token endpoint at the harness' mock.
async fn harness(engine: Engine) -> Harness {
    let h = Harness::new(engine).await;
    let mut config = h.relay().state.config.clone();
    config.claude_api_url = h.mock.url();
    config.claude_oauth_token_url = format!("{}/v1/oauth/token", h.mock.url());
    let mut h = h;
    h.reconfigure(config).await;
    h
}

async fn pkce_flow_creates_a_working_account(engine: Engine) {
    let h = harness(engine).await;
    let (s, started) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts/generate-auth-url",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{started}");
    let auth_url = started["data"]["authUrl"].as_str().unwrap();
    let parsed = reqwest::Url::parse(auth_url).unwrap();
    let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].contains("user:inference"));
    let session = started["data"]["sessionId"].as_str().unwrap();

    let (s, bad) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts/exchange-code",
            Some(json!({"sessionId": session, "authorizationCode": "wrong"})),
        )
        .await;
    assert_eq!(s, 400, "{bad}");
    let callback = format!(
        "https://platform.claude.com/oauth/code/callback?code=good-code&state={}",
        q["state"]
    );
    let (s, exchanged) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts/exchange-code",
            Some(json!({"sessionId": session, "callbackUrl": callback})),
        )
        .await;
    assert_eq!(s, 200, "{exchanged}");
    assert_eq!(exchanged["data"]["hasRefreshToken"], true);
    assert!(
        !exchanged.to_string().contains("mock-access"),
        "tokens stay on the server"
    );

    let (s, created) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts",
            Some(json!({"name": "subscription", "oauthSessionId": session})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(created["data"]["platform"], "claude-official");
    assert!(
        created["data"]["tokenExpiresAt"].as_i64().unwrap() > chrono::Utc::now().timestamp_millis()
    );
    let (_, list) = h.admin(Method::GET, "/admin/claude-accounts", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains("mock-access") && !list.to_string().contains("mock-refresh")
    );
    // The session is used up.
    let (s, _) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts",
            Some(json!({"name": "again", "oauthSessionId": session})),
        )
        .await;
    assert_eq!(s, 400);

    let (_, key) = h.key(json!({})).await;
    let mut req = body(false);
    req["model"] = json!("claude-sonnet-4-5-20250929");
    let resp = h
        .messages(&key, req)
        .header("anthropic-beta", "context-1m-2025-08-07")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = h.mock.log.last().unwrap();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.headers["authorization"], "Bearer mock-access-1");
    let betas = got.headers["anthropic-beta"].to_str().unwrap();
    assert!(
        betas.starts_with("claude-code-20250219,oauth-2025-04-20"),
        "{betas}"
    );
    assert!(betas.ends_with("context-1m-2025-08-07"), "{betas}");
    assert!(got.headers.get("x-api-key").is_none());
}

async fn setup_token_url_and_failed_refresh(engine: Engine) {
    let h = harness(engine).await;
    let (_, started) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts/generate-setup-token-url",
            None,
        )
        .await;
    let url = reqwest::Url::parse(started["data"]["authUrl"].as_str().unwrap()).unwrap();
    let scope = url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .to_string();
    assert_eq!(scope, "user:inference");

    // An expired token whose refresh the endpoint refuses: the account goes to `error`.
    let (s, created) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts",
            Some(json!({"name": "expired", "claudeAiOauth": {"accessToken": "still-used", "refreshToken": "revoked", "expiresAt": 1000}})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let (_, key) = h.key(json!({})).await;
    let resp = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the current token is still tried");
    assert_eq!(
        h.mock.log.last().unwrap().headers["authorization"],
        "Bearer still-used"
    );
    let account = h
        .relay()
        .state
        .store
        .get_account(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.account.status, app::domain::AccountStatus::Error);
    let (_, history) = h
        .admin(
            Method::GET,
            &format!("/admin/accounts/claude-official/{id}/error-history"),
            None,
        )
        .await;
    assert_eq!(history["data"][0]["class"], "refresh_failed");
    // In error, it is no longer scheduled.
    let resp = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_refresh_an_expiring_account_exactly_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut h = Harness::with_config(Engine::Redis, |c| c.redis_url = Some(url.clone())).await;
    let mut config = h.relay().state.config.clone();
    config.claude_api_url = h.mock.url();
    config.claude_oauth_token_url = format!("{}/v1/oauth/token", h.mock.url());
    h.reconfigure(config.clone()).await;
    let second = crs::start(config).await.unwrap();

    let (s, created) = h
        .admin(
            Method::POST,
            "/admin/claude-accounts",
            Some(json!({"name": "expiring", "claudeAiOauth": {"accessToken": "old", "refreshToken": "mock-refresh-0", "expiresAt": chrono::Utc::now().timestamp_millis() - 1000}})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let (_, key) = h.key(json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let base = if i % 2 == 0 {
            h.relay().url()
        } else {
            second.url()
        };
        let mut b = body(false);
        b["messages"][0]["content"] = json!(format!("request {i}"));
        let req = h
            .http
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", &key)
            .json(&b);
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        h.mock.log.refreshes.load(Ordering::SeqCst),
        1,
        "one refresh for both instances"
    );
    let tokens: Vec<String> = h
        .mock
        .log
        .requests
        .lock()
        .iter()
        .filter(|r| r.path == "/v1/messages")
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 20);
    assert!(
        tokens.iter().all(|t| t == "Bearer mock-access-101"),
        "{tokens:?}"
    );
    second.stop().await;
    drop(redis);
}

async fn requests_go_through_socks5_and_http_proxies(engine: Engine) {
    let h = Harness::new(engine).await;
    let creds = Some(("proxyuser".to_string(), "s3cret".to_string()));
    let socks = proxy::socks5(creds.clone()).await;
    let http = proxy::http(creds).await;
    let (_, key) = h.key(json!({})).await;
    for (kind, p) in [("socks5", &socks), ("http", &http)] {
        let (s, created) = h
            .admin(
                Method::POST,
                "/admin/claude-console-accounts",
                Some(json!({"name": kind, "apiUrl": h.mock.url(), "apiKey": common::UPSTREAM_KEY,
                    "proxy": {"type": kind, "host": "127.0.0.1", "port": p.port, "username": "proxyuser", "password": "s3cret"}})),
            )
            .await;
        assert_eq!(s, 200, "{created}");
        assert!(
            !created.to_string().contains("s3cret"),
            "proxy password never returned"
        );
        let id = created["data"]["id"].as_str().unwrap().to_string();
        let before = h.mock.log.count();
        let resp = h.messages(&key, body(false)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{kind}");
        assert_eq!(h.mock.log.count(), before + 1);
        assert!(
            p.relayed.load(Ordering::SeqCst) >= 1,
            "{kind} proxy relayed the request"
        );

        // A wrong proxy password: refused by the proxy, the request fails cleanly.
        let (s, _) = h
            .admin(Method::PUT, &format!("/admin/claude-console-accounts/{id}"),
                Some(json!({"proxy": {"type": kind, "host": "127.0.0.1", "port": p.port, "username": "proxyuser", "password": "wrong"}})))
            .await;
        assert_eq!(s, 200);
        let resp = h.messages(&key, body(false)).send().await.unwrap();
        assert!(resp.status().is_server_error(), "{kind}: {}", resp.status());
        assert!(p.refused.load(Ordering::SeqCst) >= 1, "{kind}");
        h.admin(
            Method::DELETE,
            &format!("/admin/claude-console-accounts/{id}"),
            None,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
