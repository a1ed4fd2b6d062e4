//! The admin surface lets no one in: every server function checks its caller (no session →
//! 401, a plain user on an admin function → 403, a user never reaches another user's keys),
//! logins are throttled, sessions expire and are revoked by logout, cross-site state changes
//! are refused, every page carries the security headers, and no response carries an account
//! secret.

mod common;

use std::time::Duration;

use common::{Engine, Harness};
use reqwest::{header, Method};
use serde_json::{json, Value};

both_engines!(sessions_expire, logout_revokes_the_session_cookie);

const API: &str = "/admin-next/api";

/// A client that neither follows redirects nor keeps cookies: each call says who it is.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie(token: &str) -> String {
    format!("{}={token}", app::SESSION_COOKIE)
}

/// Calls a server function over HTTP as the pages do (form-encoded POST): (status, body).
async fn call(
    h: &Harness,
    session: Option<&str>,
    endpoint: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client()
        .post(h.url(&format!("{API}/{endpoint}")))
        .form(form);
    if let Some(token) = session {
        req = req.header(header::COOKIE, cookie(token));
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Signs in through the login server function; the session token from its cookie.
async fn sign_in(h: &Harness, username: &str, password: &str) -> Option<String> {
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
}

/// Creates a local user as the admin and signs them in: (user id, session token).
async fn user(h: &Harness, name: &str) -> (String, String) {
    let password = format!("{name}-password-1");
    let (s, b) = call(
        h,
        Some(&h.token),
        "create-user",
        &[
            ("username", name),
            ("password", &password),
            ("role", "user"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, users) = call(h, Some(&h.token), "users", &[]).await;
    assert_eq!(s, 200, "{users}");
    let users: Value = serde_json::from_str(&users).unwrap();
    let id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"]["username"] == name)
        .and_then(|u| u["user"]["id"].as_str())
        .unwrap()
        .to_string();
    let token = sign_in(h, name, &password).await.expect("user signs in");
    (id, token)
}

/// The caller's keys as the keys page sees them.
async fn keys_of(h: &Harness, session: &str) -> Vec<Value> {
    let (s, b) = call(h, Some(session), "keys", &[("query[page]", "1")]).await;
    assert_eq!(s, 200, "{b}");
    let page: Value = serde_json::from_str(&b).unwrap();
    page["rows"].as_array().unwrap().clone()
}

/// A user's own key: (id, raw key).
async fn own_key(h: &Harness, session: &str, name: &str) -> (String, String) {
    let (s, b) = call(h, Some(session), "create-keys", &[("form[name]", name)]).await;
    assert_eq!(s, 200, "{b}");
    let raw: Vec<String> = serde_json::from_str(&b).unwrap();
    let id = keys_of(h, session)
        .await
        .into_iter()
        .find(|k| k["name"] == name)
        .and_then(|k| k["id"].as_str().map(str::to_string))
        .unwrap();
    (id, raw[0].clone())
}

/// Every admin-only server function, with arguments that decode (so a refusal is the
/// authorisation check, not a parse error).
fn admin_functions(victim_user: &str) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let s = |v: &str| v.to_string();
    vec![
        ("dashboard", vec![]),
        ("accounts", vec![]),
        ("account", vec![("id", s(""))]),
        (
            "save-account",
            vec![
                ("id", s("")),
                ("form[platform]", s("claude-console")),
                ("form[name]", s("by-intruder")),
                ("form[api_url]", s("https://api.example.test")),
                ("form[api_key]", s("sk-ant-intruder")),
            ],
        ),
        (
            "account-action",
            vec![("id", s("nope")), ("action", s("disable"))],
        ),
        ("test-account", vec![("id", s("nope"))]),
        ("oauth-start", vec![]),
        (
            "oauth-exchange",
            vec![("session_id", s("nope")), ("code", s("nope"))],
        ),
        ("groups", vec![]),
        (
            "create-group",
            vec![("name", s("intruders")), ("platform", s("claude"))],
        ),
        ("delete-group", vec![("id", s("nope"))]),
        ("users", vec![]),
        (
            "create-user",
            vec![
                ("username", s("mallory")),
                ("password", s("mallory-password-1")),
                ("role", s("admin")),
            ],
        ),
        (
            "user-action",
            vec![("id", s(victim_user)), ("action", s("make-admin"))],
        ),
        (
            "user-budget",
            vec![
                ("id", s(victim_user)),
                ("daily_cost", s("")),
                ("monthly_cost", s("")),
            ],
        ),
        ("test-webhook", vec![("index", s("0"))]),
        ("records", vec![("query[page]", s("1"))]),
        ("settings", vec![]),
        ("save-settings", vec![("form[site_name]", s("pwned"))]),
    ]
}

/// The functions of the keys pages: a user may call them, on their own keys only.
const KEY_FUNCTIONS: &[&str] = &[
    "keys",
    "key-form",
    "create-keys",
    "update-key",
    "key-action",
];

fn form<'a>(args: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    args.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_function_checks_its_caller() {
    let h = Harness::new(Engine::Embedded).await;
    let (alice_id, alice) = user(&h, "alice").await;

    // (a) Without a session: 401 from every function that needs one.
    for (name, args) in admin_functions(&alice_id) {
        let (s, b) = call(&h, None, name, &form(&args)).await;
        assert_eq!(s, 401, "{name} without a session: {b}");
        assert!(b.contains("unauthorized"), "{name}: {b}");
        // A session token that was never issued is no session either.
        let (s, _) = call(&h, Some(&"0".repeat(64)), name, &form(&args)).await;
        assert_eq!(s, 401, "{name} with a forged session");
    }
    for name in KEY_FUNCTIONS {
        let args = [
            ("query[page]", "1"),
            ("id", "x"),
            ("action", "delete"),
            ("form[name]", "k"),
        ];
        let (s, b) = call(&h, None, name, &args).await;
        assert_eq!(s, 401, "{name} without a session: {b}");
    }

    // (b) A plain user: 403 from every admin function, and nothing changed.
    for (name, args) in admin_functions(&alice_id) {
        let (s, b) = call(&h, Some(&alice), name, &form(&args)).await;
        assert_eq!(s, 403, "{name} as a plain user: {b}");
        assert!(b.contains("forbidden"), "{name}: {b}");
    }
    let (_, groups) = call(&h, Some(&h.token), "groups", &[]).await;
    assert!(!groups.contains("intruders"), "{groups}");
    let (_, users) = call(&h, Some(&h.token), "users", &[]).await;
    assert!(!users.contains("mallory"), "{users}");
    let (_, accounts) = call(&h, Some(&h.token), "accounts", &[]).await;
    assert!(!accounts.contains("by-intruder"), "{accounts}");
    let (_, shell) = call(&h, Some(&alice), "shell", &[]).await;
    assert!(!shell.contains("pwned"), "{shell}");
    assert!(
        shell.contains("alice"),
        "the user is still signed in: {shell}"
    );
    let (s, _) = call(&h, Some(&alice), "dashboard", &[]).await;
    assert_eq!(s, 403, "still a plain user after trying make-admin");
    // The JSON admin API refuses a user's session too.
    let r = h
        .http
        .get(h.url("/admin/api-keys"))
        .header(header::COOKIE, cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // (c) The admin passes every check (a refusal now can only be about the input).
    for (name, args) in admin_functions(&alice_id) {
        let (s, b) = call(&h, Some(&h.token), name, &form(&args)).await;
        assert!(s != 401 && s != 403, "{name} as the admin: {s} {b}");
    }

    // The public functions: the shell needs no session; key stats need a real key.
    let (s, _) = call(&h, None, "shell", &[]).await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &h,
        None,
        "key-stats",
        &[("api_key", &format!("cr_{}", "a".repeat(64)))],
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_reaches_another_users_keys() {
    let h = Harness::new(Engine::Embedded).await;
    let (_, alice) = user(&h, "alice").await;
    let (_, bob) = user(&h, "bob").await;
    let (alice_key, _) = own_key(&h, &alice, "alice-key").await;
    let (bob_key, bob_raw) = own_key(&h, &bob, "bob-key").await;
    let (admin_key, _) = h.key(json!({"name": "admin-key"})).await;

    // Listing: each sees their own only.
    let names = |rows: Vec<Value>| {
        rows.iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(keys_of(&h, &alice).await), vec!["alice-key"]);
    assert_eq!(names(keys_of(&h, &bob).await), vec!["bob-key"]);

    for other in [&bob_key, &admin_key] {
        // Read.
        let (s, b) = call(&h, Some(&alice), "key-form", &[("id", other)]).await;
        assert!(s >= 400, "key-form of another's key: {s} {b}");
        assert!(!b.contains("bob-key") && !b.contains("admin-key"), "{b}");
        // Change.
        let (s, b) = call(
            &h,
            Some(&alice),
            "update-key",
            &[("id", other), ("form[name]", "stolen")],
        )
        .await;
        assert!(s >= 400, "update-key of another's key: {s} {b}");
        for action in ["disable", "delete"] {
            let (s, b) = call(
                &h,
                Some(&alice),
                "key-action",
                &[("id", other), ("action", action)],
            )
            .await;
            assert!(s >= 400, "{action} of another's key: {s} {b}");
        }
    }
    // Bob's key is untouched and still works as before.
    let bob_rows = keys_of(&h, &bob).await;
    assert_eq!(bob_rows.len(), 1);
    assert_eq!(bob_rows[0]["name"], "bob-key");
    assert_eq!(bob_rows[0]["isActive"], true);
    assert_eq!(bob_rows[0]["isDeleted"], false);
    let (_, admin_rows) = h.admin(Method::GET, "/admin/api-keys", None).await;
    let admin_row = admin_rows["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == admin_key.as_str())
        .unwrap()
        .clone();
    assert_eq!(admin_row["name"], "admin-key");
    assert_eq!(admin_row["isActive"], true);
    let r = h
        .http
        .get(h.url("/v1/key-info"))
        .header("x-api-key", &bob_raw)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 401, "bob's key still authenticates");

    // Her own key she can change.
    let (s, b) = call(
        &h,
        Some(&alice),
        "key-action",
        &[("id", &alice_key), ("action", "disable")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(keys_of(&h, &alice).await[0]["isActive"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_per_address_and_per_user() {
    let h = Harness::new(Engine::Embedded).await;
    // Five failures for one user name lock it, even with the right password.
    for _ in 0..5 {
        let (s, _) = call(
            &h,
            None,
            "login",
            &[("username", "admin"), ("password", "wrong")],
        )
        .await;
        assert_eq!(s, 401);
    }
    let (s, b) = call(
        &h,
        None,
        "login",
        &[("username", "admin"), ("password", "admin-password-1")],
    )
    .await;
    assert_eq!(s, 429, "{b}");
    assert!(b.contains("Too many"), "{b}");
    let r = h
        .http
        .post(h.url("/web/auth/login"))
        .json(&json!({"username": "admin", "password": "admin-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the JSON login shares the throttle");

    // Per address: failures spread over many user names lock the address for every name.
    let h = Harness::new(Engine::Embedded).await;
    for i in 0..5 {
        let name = format!("nobody-{i}");
        let (s, _) = call(
            &h,
            None,
            "login",
            &[("username", &name), ("password", "wrong")],
        )
        .await;
        assert_eq!(s, 401);
    }
    let (s, b) = call(
        &h,
        None,
        "login",
        &[("username", "admin"), ("password", "admin-password-1")],
    )
    .await;
    assert_eq!(s, 429, "{b}");
    // A session issued before the lockout keeps working.
    let (s, _) = call(&h, Some(&h.token), "dashboard", &[]).await;
    assert_eq!(s, 200);
}

async fn sessions_expire(engine: Engine) {
    let h = Harness::with_config(engine, |c| c.admin_session_ttl = Duration::from_secs(1)).await;
    let cookie_token = sign_in(&h, "admin", "admin-password-1").await.unwrap();
    let (s, _) = call(&h, Some(&cookie_token), "dashboard", &[]).await;
    assert_eq!(s, 200);
    // Untouched past its lifetime, a session is gone, in the pages and the JSON API alike.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, _) = call(&h, Some(&cookie_token), "dashboard", &[]).await;
    assert_eq!(s, 401);
    let (s, _) = h.admin(Method::GET, "/admin/dashboard", None).await;
    assert_eq!(s, 401);
}

async fn logout_revokes_the_session_cookie(engine: Engine) {
    let h = Harness::new(engine).await;
    let token = sign_in(&h, "admin", "admin-password-1").await.unwrap();
    let (s, _) = call(&h, Some(&token), "dashboard", &[]).await;
    assert_eq!(s, 200);
    let r = client()
        .get(h.url("/admin-next/dashboard"))
        .header(header::COOKIE, cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (s, _) = call(&h, Some(&token), "logout", &[]).await;
    assert!(s < 400, "logout: {s}");
    // The old cookie, replayed, is refused everywhere: revoked on the server, not only
    // cleared in the browser.
    let (s, _) = call(&h, Some(&token), "dashboard", &[]).await;
    assert_eq!(s, 401);
    let r = h
        .http
        .get(h.url("/admin/dashboard"))
        .header(header::COOKIE, cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(h.url("/admin-next/dashboard"))
        .header(header::COOKIE, cookie(&token))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(
        status == 401 || status.is_redirection(),
        "the page refuses a revoked session: {status}"
    );
    // The other session (the harness' bearer token) is not affected.
    let (s, _) = h.admin(Method::GET, "/admin/dashboard", None).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_state_changes_are_refused() {
    let h = Harness::new(Engine::Embedded).await;
    let host = h.url("").trim_start_matches("http://").to_string();
    let same = format!("http://{host}");
    let post = |path: &str, origin: Option<&str>, fetch_site: Option<&str>| {
        let mut r = client()
            .post(h.url(path))
            .header(header::COOKIE, cookie(&h.token))
            .form(&[("name", "csrf-group"), ("platform", "claude")]);
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        if let Some(f) = fetch_site {
            r = r.header("sec-fetch-site", f);
        }
        r.send()
    };
    let create_group = format!("{API}/create-group");
    for (origin, site) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
        (Some(same.as_str()), Some("same-site")),
    ] {
        let r = post(&create_group, origin, site).await.unwrap();
        assert_eq!(r.status(), 403, "{origin:?} {site:?}");
    }
    // Referer is the fallback when a browser sends no Origin.
    let r = client()
        .post(h.url(&create_group))
        .header(header::COOKIE, cookie(&h.token))
        .header(header::REFERER, "https://evil.example/page")
        .form(&[("name", "csrf-group"), ("platform", "claude")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The JSON admin API with the session cookie: refused cross-site too.
    let r = h
        .http
        .post(h.url("/admin/account-groups"))
        .header(header::COOKIE, cookie(&h.token))
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({"name": "csrf-group", "platform": "claude"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, groups) = call(&h, Some(&h.token), "groups", &[]).await;
    assert!(!groups.contains("csrf-group"), "{groups}");

    // Same origin, a browser's own verdict, or no browser at all: allowed.
    for (origin, site) in [
        (Some(same.as_str()), None),
        (Some(same.as_str()), Some("same-origin")),
        (None, None),
    ] {
        let r = post(&create_group, origin, site).await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "{origin:?} {site:?}: {}",
            r.text().await.unwrap()
        );
    }
    // Reads are never refused, and a bearer-token client from anywhere is no CSRF risk.
    let r = client()
        .get(h.url("/admin-next/dashboard"))
        .header(header::COOKIE, cookie(&h.token))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .post(h.url("/admin/account-groups"))
        .bearer_auth(&h.token)
        .header(header::ORIGIN, "https://tools.example")
        .json(&json!({"name": "scripted", "platform": "claude"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_the_security_headers() {
    let h = Harness::new(Engine::Embedded).await;
    for (path, session) in [
        ("/admin-next/login", false),
        ("/admin-next/dashboard", true),
        ("/admin-next/keys", true),
        ("/admin-next/api-stats", false),
        ("/health", false),
        ("/v1/messages", false),
        ("/no-such-page", false),
    ] {
        let mut r = client().get(h.url(path));
        if session {
            r = r.header(header::COOKIE, cookie(&h.token));
        }
        let r = r.send().await.unwrap();
        let get = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(get("x-frame-options"), "DENY", "{path}");
        assert_eq!(get("referrer-policy"), "same-origin", "{path}");
        let csp = get("content-security-policy");
        for directive in [
            "frame-ancestors 'none'",
            "base-uri 'self'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
    }
}

/// Accounts of every platform, created through the JSON API and through the pages, with
/// secrets; no admin response or server function answer contains any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_secrets_never_leave_the_server() {
    let h = Harness::new(Engine::Embedded).await;
    let secrets = [
        "sk-ant-api03-SECRET-console-1",
        "sk-SECRET-openai-2",
        "SECRET-azure-3",
        "AIzaSECRET-gemini-4",
        "AKIASECRET5",
        "SECRET-aws-secret-6",
        "SECRET-proxy-password-7",
        "SECRET-bedrock-bearer-8",
        "sk-ant-api03-SECRET-pages-9",
        "sk-ant-oat01-SECRET-access-10",
        "sk-ant-ort01-SECRET-refresh-11",
    ];
    let proxy = json!({"type": "socks5", "host": "127.0.0.1", "port": 1080, "username": "u", "password": secrets[6]});
    for (path, body) in [
        (
            "/admin/claude-console-accounts",
            json!({"name": "c", "apiUrl": "https://api.example.test", "apiKey": secrets[0], "proxy": proxy}),
        ),
        (
            "/admin/openai-responses-accounts",
            json!({"name": "o", "baseApi": "https://api.example.test", "apiKey": secrets[1], "proxy": proxy}),
        ),
        (
            "/admin/azure-openai-accounts",
            json!({"name": "a", "azureEndpoint": "https://x.openai.azure.com", "deploymentName": "d", "apiVersion": "2024-02-01", "apiKey": secrets[2]}),
        ),
        (
            "/admin/gemini-api-accounts",
            json!({"name": "g", "apiKey": secrets[3]}),
        ),
        (
            "/admin/bedrock-accounts",
            json!({"name": "b", "region": "us-east-1", "awsCredentials": {"accessKeyId": secrets[4], "secretAccessKey": secrets[5]}}),
        ),
        (
            "/admin/bedrock-accounts",
            json!({"name": "b2", "region": "us-east-1", "bearerToken": secrets[7]}),
        ),
        (
            "/admin/claude-accounts",
            json!({"name": "oauth", "claudeAiOauth": {"accessToken": secrets[9], "refreshToken": secrets[10], "expiresAt": 4_102_444_800_000i64, "scopes": ["user:inference"]}}),
        ),
    ] {
        let (s, b) = h.admin(Method::POST, path, Some(body)).await;
        assert_eq!(s, 200, "{path}: {b}");
        assert!(
            !b.to_string().contains("SECRET"),
            "{path} answered a secret: {b}"
        );
    }
    // Through the pages' server function too.
    let (s, b) = call(
        &h,
        Some(&h.token),
        "save-account",
        &[
            ("id", ""),
            ("form[platform]", "claude-console"),
            ("form[name]", "pages"),
            ("form[api_url]", "https://api.example.test"),
            ("form[api_key]", secrets[8]),
            ("form[proxy_type]", "http"),
            ("form[proxy_host]", "127.0.0.1"),
            ("form[proxy_port]", "3128"),
            ("form[proxy_username]", "u"),
            ("form[proxy_password]", secrets[6]),
        ],
    )
    .await;
    assert!(s < 400, "{s} {b}");
    assert!(!b.contains("SECRET"), "{b}");

    // Every account was stored (so the check below looks at real data).
    let (_, accounts) = call(&h, Some(&h.token), "accounts", &[]).await;
    let rows: Value = serde_json::from_str(&accounts).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 8, "{accounts}");

    let mut bodies = vec![("accounts".to_string(), accounts)];
    for row in rows.as_array().unwrap() {
        let id = row["id"]
            .as_str()
            .or_else(|| row["account"]["id"].as_str())
            .unwrap_or_default()
            .to_string();
        let (s, b) = call(&h, Some(&h.token), "account", &[("id", &id)]).await;
        assert_eq!(s, 200, "{b}");
        bodies.push((format!("account {id}"), b));
    }
    for f in ["dashboard", "groups", "settings", "users", "shell"] {
        bodies.push((f.to_string(), call(&h, Some(&h.token), f, &[]).await.1));
    }
    for path in [
        "/admin/claude-accounts",
        "/admin/claude-console-accounts",
        "/admin/openai-responses-accounts",
        "/admin/azure-openai-accounts",
        "/admin/gemini-api-accounts",
        "/admin/bedrock-accounts",
        "/admin/dashboard",
        "/admin/account-groups",
        "/admin/api-keys",
    ] {
        let (s, b) = h.admin(Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {b}");
        bodies.push((path.to_string(), b.to_string()));
    }
    for page in ["/admin-next/accounts", "/admin-next/dashboard"] {
        let r = client()
            .get(h.url(page))
            .header(header::COOKIE, cookie(&h.token))
            .send()
            .await
            .unwrap();
        bodies.push((page.to_string(), r.text().await.unwrap()));
    }
    for (what, body) in &bodies {
        for secret in &secrets {
            assert!(!body.contains(secret), "{what} contains {secret}");
        }
    }
}
