//! The attack battery, sign-in / session / webhook half (issue 16). Each test plays one class
//! of attack against a real relay (in this process, so its memory is ours to read), prints
//! what it tried and what held (`--nocapture`), and fails if it did not hold. Scaled for
//! `make test`; `BATTERY=full` runs the sizes in the README.
//!
//! (a) huge and many usernames: memory and throttle state stay bounded;
//! (b) a lockout attempt from many addresses: the admin still signs in from another;
//! (c) sessions end: past their absolute lifetime, after change-password, after a CLI reset;
//! (d) hostile names in webhook messages arrive escaped and capped;
//! (e) oversized fields: a 400 naming the field (413 for a body), never a 500.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use app::domain::{Settings, WebhookChannel};
use axum::{body::Bytes, extract::State, http::Uri, Router};
use common::{Engine, Harness};
use crs::{
    notify::{Event, EventKind, Notifier, NotifyConfig},
    testing::free_port,
};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "admin-password-1";

fn full() -> bool {
    std::env::var("BATTERY").as_deref() == Ok("full")
}

fn scale(test: usize, full_size: usize) -> usize {
    if full() {
        full_size
    } else {
        test
    }
}

/// This process's resident memory (the relay runs in it), in KiB.
/// The memory test runs alone; the others may run side by side.
static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn behind_proxy(engine: Engine) -> Harness {
    Harness::with_config(engine, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

/// A sign-in through the (trusted) local proxy on behalf of `from`.
async fn login_from(h: &Harness, from: &str, username: &str, password: &str) -> (u16, Value) {
    let r = h
        .http
        .post(h.url("/web/auth/login"))
        .header("x-forwarded-for", from)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn throttle_entries(h: &Harness) -> usize {
    h.relay().state.store.login_failure_entries().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// (a) Memory before login.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_and_many_usernames_stay_bounded() {
    // Alone: the resident size of the whole test process is what is measured.
    let _alone = MEMORY.write().await;
    let h = behind_proxy(Engine::Embedded).await;
    let n = scale(500, 10_000);
    let pad = "u".repeat(1024 * 1024);
    // Warm up the allocator and the connection pool before the baseline.
    for i in 0..3 {
        let _ = login_from(&h, "198.51.100.1", &format!("{i}{pad}"), "pw").await;
    }
    let before = rss_kib();
    let started = Instant::now();
    let mut refused = 0;
    for i in 0..n {
        let body = format!(r#"{{"username":"{i}{pad}","password":"x"}}"#);
        let mut req = h
            .http
            .post(h.url("/web/auth/login"))
            .header("content-type", "application/json")
            .header(
                "x-forwarded-for",
                format!("198.51.{}.{}", (i / 250) % 250, i % 250 + 1),
            );
        // Every tenth without a declared length (chunked).
        req = if i % 10 == 0 {
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .into_bytes()
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            req.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
        } else {
            req.body(body)
        };
        let status = req.send().await.unwrap().status().as_u16();
        assert!(status == 413 || status == 400, "username {i}: {status}");
        refused += 1;
    }
    let after = rss_kib();
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    assert_eq!(throttle_entries(&h).await, 0, "refused before any state");
    println!(
        "(a) {n} failed logins with distinct 1 MiB usernames ({} MiB sent) in {:.1}s: {refused} refused (413) \
         before parsing; relay process RSS {} → {} MiB (growth {growth_mib:.1} MiB); throttle entries 0",
        n,
        started.elapsed().as_secs_f64(),
        before / 1024,
        after / 1024
    );
    assert!(growth_mib < 64.0, "RSS grew {growth_mib:.1} MiB");

    // Distinct names of legal length, each a failed sign-in (one argon2 each): the throttle
    // keeps a counter per (name hash, address) and per address, never the name.
    for engine in [Engine::Embedded, Engine::Redis] {
        let h = behind_proxy(engine).await;
        let names = scale(200, 2_000);
        let before = rss_kib();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for i in 0..names {
            // Four names an address: under its allowance of five failures.
            let from = format!("203.0.{}.{}", i / 4 / 250, (i / 4) % 250 + 1);
            let name = format!("{i:08}{}", "n".repeat(56));
            let (status, _) = login_from(&h, &from, &name, "wrong password").await;
            *statuses.entry(status).or_default() += 1;
        }
        let entries = throttle_entries(&h).await;
        let addresses = names.div_ceil(4);
        let growth_mib = rss_kib().saturating_sub(before) as f64 / 1024.0;
        println!(
            "(a) {engine:?}: {names} distinct 64-byte usernames from {addresses} addresses: {statuses:?}; \
             throttle entries {entries} (≤ names + addresses = {}; cap per instance {}); RSS growth \
             {growth_mib:.1} MiB (argon2's memory: 2 pooled buffers of 19 MiB)",
            names + addresses,
            crs::store::login_failures::MAX_ENTRIES,
        );
        assert!(growth_mib < 64.0, "RSS grew {growth_mib:.1} MiB");
        assert!(entries <= names + addresses);
        assert!(entries <= crs::store::login_failures::MAX_ENTRIES);
        assert_eq!(statuses.get(&500), None);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Lockout of the admin by strangers.

async fn lockout_from_many_addresses(engine: Engine) {
    let h = behind_proxy(engine).await;
    let addresses = scale(20, 100);
    let tries = 7; // past the 5 free failures of a (name, address)
    let started = Instant::now();
    let mut throttled = 0;
    let mut refused = 0;
    for a in 0..addresses {
        let from = format!("192.0.2.{}", a + 1);
        for _ in 0..tries {
            match login_from(&h, &from, "admin", "not the password").await.0 {
                401 => refused += 1,
                429 => throttled += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    // An attacked address waits (the last one: its backoff has not run out), even with the
    // right password …
    let last = format!("192.0.2.{addresses}");
    let (status, _) = login_from(&h, &last, "admin", PASSWORD).await;
    assert_eq!(status, 429);
    // … and the admin, from an address of theirs, signs in.
    let (status, body) = login_from(&h, "198.18.0.7", "admin", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    // Spraying names from one address hits the address's own allowance.
    let mut spray_429 = 0;
    for i in 0..20 {
        if login_from(&h, "192.0.2.250", &format!("name{i}"), "x")
            .await
            .0
            == 429
        {
            spray_429 += 1;
        }
    }
    assert!(spray_429 > 0);
    println!(
        "(b) {engine:?}: {} bad logins for admin from {addresses} addresses in {:.1}s ({refused} × 401, \
         {throttled} × 429); the admin from another address: {status}; one address spraying 20 names: \
         {spray_429} × 429",
        addresses * tries,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_lockout_from_many_addresses_embedded() {
    let _shared = MEMORY.read().await;
    lockout_from_many_addresses(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_lockout_from_many_addresses_redis() {
    let _shared = MEMORY.read().await;
    lockout_from_many_addresses(Engine::Redis).await;
}

// ---------------------------------------------------------------------------------------------
// (c) Sessions that end.

async fn user_status(h: &Harness, token: &str) -> u16 {
    h.http
        .get(h.url("/web/auth/user"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn login_token(h: &Harness, password: &str) -> String {
    let (status, body) = login_from(h, "198.18.0.1", "admin", password).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

async fn sessions_end(engine: Engine) {
    // Absolute lifetime 2 s, idle 60 s: used every 250 ms, the session still ends.
    let h = Harness::with_config(engine, |c| {
        c.admin_session_ttl = Duration::from_secs(60);
        c.admin_session_max = Duration::from_secs(2);
    })
    .await;
    let token = login_token(&h, PASSWORD).await;
    let started = Instant::now();
    let mut uses = 0;
    while user_status(&h, &token).await == 200 {
        uses += 1;
        assert!(started.elapsed() < Duration::from_secs(4), "never ended");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ended = started.elapsed();
    assert!(ended >= Duration::from_millis(1900), "{ended:?}");
    println!(
        "(c) {engine:?}: a session with a 2 s absolute lifetime, used {uses} times: refused after {:.1}s",
        ended.as_secs_f64()
    );

    // change-password (the original's shape) ends every session of the user.
    let h = Harness::new(engine).await;
    let a = login_token(&h, PASSWORD).await;
    let b = login_token(&h, PASSWORD).await;
    let r = h
        .http
        .post(h.url("/web/auth/change-password"))
        .bearer_auth(&a)
        .json(&json!({"currentPassword": "wrong password", "newPassword": "brand-new-pass-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .post(h.url("/web/auth/change-password"))
        .bearer_auth(&a)
        .json(&json!({"currentPassword": PASSWORD, "newPassword": "brand-new-pass-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["newUsername"], "admin");
    assert_eq!(
        v["message"],
        "Password changed successfully. Please login again."
    );
    let after = [
        user_status(&h, &a).await,
        user_status(&h, &b).await,
        user_status(&h, &h.token).await,
    ];
    assert_eq!(after, [401, 401, 401]);
    assert_eq!(login_from(&h, "198.18.0.1", "admin", PASSWORD).await.0, 401);
    let fresh = login_token(&h, "brand-new-pass-1").await;
    assert_eq!(user_status(&h, &fresh).await, 200);
    println!(
        "(c) {engine:?}: change-password: 3 sessions signed in before → {after:?} after; the new password signs in"
    );

    // The CLI's reset (with Redis it runs beside the relay).
    if engine == Engine::Redis {
        let redis = h.redis.as_ref().unwrap().url();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crs"))
            .args(["admin", "reset-password"])
            .current_dir(h.dir.path())
            .env_clear()
            .env("REDIS_URL", redis)
            .env("ENCRYPTION_KEY", "test-encryption-key-0123456789abcdef")
            .env(
                "PRICING_FILE",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../resources/model-pricing/model_prices_and_context_window.json"
                ),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(user_status(&h, &fresh).await, 401);
        println!("(c) {engine:?}: crs admin reset-password: the session signed in before → 401");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sessions_end_embedded() {
    let _shared = MEMORY.read().await;
    sessions_end(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sessions_end_redis() {
    let _shared = MEMORY.read().await;
    sessions_end(Engine::Redis).await;
}

/// The session cookie the pages' sign-in sets, sent with `headers`.
async fn session_cookie(h: &Harness, headers: &[(&str, &str)]) -> String {
    let mut req = h
        .http
        .post(h.url("/admin-next/api/login"))
        .form(&[("username", "admin"), ("password", PASSWORD)]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let prefix = format!("{}=", app::SESSION_COOKIE);
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no session cookie ({})", r.status()))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_session_cookie_is_secure_over_https() {
    let _shared = MEMORY.read().await;
    let https = [("x-forwarded-proto", "https")];
    // No trusted proxy: a client's own X-Forwarded-Proto is not believed.
    let h = Harness::new(Engine::Embedded).await;
    let plain = session_cookie(&h, &https).await;
    assert!(!plain.contains("Secure"), "{plain}");
    assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
    // Behind a trusted proxy: https from it makes the cookie Secure, http does not.
    let h = behind_proxy(Engine::Embedded).await;
    let secure = session_cookie(&h, &https).await;
    assert!(secure.contains("; Secure"), "{secure}");
    let http = session_cookie(&h, &[("x-forwarded-proto", "http")]).await;
    assert!(!http.contains("Secure"), "{http}");
    // The Max-Age is the absolute lifetime (7 days by default), not the idle one.
    assert!(secure.contains("Max-Age=604800"), "{secure}");
    // An https PUBLIC_URL makes it Secure whatever the request says.
    let h = Harness::with_config(Engine::Embedded, |c| {
        c.public_url = Some("https://crs.example.com".into());
    })
    .await;
    let public = session_cookie(&h, &[]).await;
    assert!(public.contains("; Secure"), "{public}");
    println!("(c) Secure cookie: direct with a spoofed proto → not Secure; trusted proxy https → Secure; https PUBLIC_URL → Secure");
}

// ---------------------------------------------------------------------------------------------
// (d) Hostile names in webhook messages.

#[derive(Default)]
struct Received(Mutex<Vec<(String, Vec<u8>)>>);

async fn receive(State(r): State<Arc<Received>>, uri: Uri, body: Bytes) -> &'static str {
    r.0.lock().push((uri.path().to_string(), body.to_vec()));
    "ok"
}

const HOSTILE: [&str; 8] = [
    "<!channel>",
    "<!here|here>",
    "<@U024BE7LH>",
    "<https://evil.example/login|Reset your password>",
    "@everyone look",
    "@here now",
    "a & b <script>",
    "@EVERYONE",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_hostile_names_reach_webhooks_escaped() {
    let _shared = MEMORY.read().await;
    let received = Arc::new(Received::default());
    let app = Router::new().fallback(receive).with_state(received.clone());
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let channel = |kind: &str, u: String| WebhookChannel {
        id: kind.into(),
        kind: kind.into(),
        name: kind.into(),
        url: u,
        secret: String::new(),
        enabled: true,
    };
    let settings = Arc::new(Settings {
        site_name: "crs".into(),
        webhooks: vec![
            channel("slack", url("/slack")),
            channel("discord", url("/discord")),
            channel("telegram", url("/botT/sendMessage?chat_id=1")),
            channel("custom", url("/custom")),
        ],
        webhooks_enabled: true,
        ..Default::default()
    });
    let notifier = Notifier::start(
        Arc::new(move || settings.clone()),
        NotifyConfig {
            attempts: 1,
            base_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
            cooldown: Duration::from_secs(60),
        },
    );
    let repeat = scale(1, 10);
    let huge = "N".repeat(1024 * 1024);
    let mut names: Vec<String> = Vec::new();
    for r in 0..repeat {
        names.extend(HOSTILE.iter().map(|h| format!("{h} #{r}")));
    }
    names.push(format!("@everyone {huge}"));
    for (i, name) in names.iter().enumerate() {
        notifier.notify(Event {
            kind: EventKind::RateLimited,
            subject: format!("acc-{i}"),
            name: name.clone(),
            platform: "claude".into(),
            message: format!("model {name} answered <!channel>"),
            at: chrono::Utc::now(),
        });
        // The queue is bounded (and drops beyond it): pace the senders.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let want = names.len() * 4;
    let end = Instant::now() + Duration::from_secs(20);
    while received.0.lock().len() < want && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.0.lock().clone();
    assert_eq!(got.len(), want);
    let mut largest = 0;
    for (path, body) in &got {
        largest = largest.max(body.len());
        let v: Value = serde_json::from_slice(body).unwrap();
        match path.as_str() {
            "/slack" => {
                let t = v["text"].as_str().unwrap();
                assert!(!t.contains('<') && !t.contains('>'), "{t}");
            }
            "/discord" => {
                let t = v["content"].as_str().unwrap().to_lowercase();
                assert!(!t.contains("@everyone") && !t.contains("@here"), "{t}");
                assert_eq!(v["allowed_mentions"], json!({"parse": []}));
                assert!(t.chars().count() <= 2000);
            }
            "/botT/sendMessage" => {
                assert!(v.get("parse_mode").is_none());
                assert!(v["text"].as_str().unwrap().chars().count() <= 4096);
            }
            "/custom" => {
                assert!(v["name"].as_str().unwrap().chars().count() <= 201);
            }
            other => panic!("{other}"),
        }
    }
    assert!(largest < 16 * 1024, "a message of {largest} bytes");
    println!(
        "(d) {} hostile names (Slack <!channel>/<@U…>/links, Discord @everyone/@here, a 1 MiB name) × 4 channels: \
         {} deliveries, every one escaped for its channel; largest body {largest} bytes",
        names.len(),
        got.len()
    );
}

// ---------------------------------------------------------------------------------------------
// (e) Oversized fields.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_oversized_fields_get_a_400_naming_the_field() {
    let _shared = MEMORY.read().await;
    let h = Harness::new(Engine::Embedded).await;
    let long = |n: usize| "x".repeat(n);
    let mut tried = 0;
    let mut check = |(status, body): (u16, Value), field: &str| {
        tried += 1;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["field"], field, "{body}");
        assert_eq!(body["success"], false);
    };
    check(login_from(&h, "1.1.1.1", &long(65), "pw").await, "username");
    check(
        login_from(&h, "1.1.1.1", "admin", &long(1025)).await,
        "password",
    );
    let change = |body: Value| {
        let h = &h;
        async move {
            let r = h
                .http
                .post(h.url("/web/auth/change-password"))
                .bearer_auth(&h.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
        }
    };
    check(
        change(json!({"currentPassword": PASSWORD, "newPassword": long(1025)})).await,
        "newPassword",
    );
    check(
        change(json!({"currentPassword": long(1025), "newPassword": "long enough"})).await,
        "currentPassword",
    );
    check(
        change(json!({"currentPassword": PASSWORD, "newPassword": "long enough", "newUsername": long(65)}))
            .await,
        "newUsername",
    );
    check(
        h.admin(
            Method::POST,
            "/admin/api-keys",
            Some(json!({"name": long(101)})),
        )
        .await,
        "name",
    );
    check(
        h.admin(
            Method::POST,
            "/admin/api-keys",
            Some(json!({"name": "ok", "description": long(1001)})),
        )
        .await,
        "description",
    );
    check(
        h.admin(
            Method::POST,
            "/admin/claude-console-accounts",
            Some(json!({"name": long(101), "apiUrl": h.mock.url(), "apiKey": "sk-ant-x"})),
        )
        .await,
        "name",
    );
    // The pages' sign-in (a server function) refuses the same way.
    let r = h
        .http
        .post(h.url("/admin-next/api/login"))
        .form(&[("username", long(65)), ("password", "pw".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A body past the sign-in bound: 413, before anything reads it.
    let r = h
        .http
        .post(h.url("/web/auth/login"))
        .json(&json!({"username": long(10_000), "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = h
        .http
        .post(h.url("/admin-next/api/login"))
        .form(&[("username", long(10_000)), ("password", "x".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The session still works: nothing above ended it.
    let (status, _) = h.admin(Method::GET, "/web/auth/user", None).await;
    assert_eq!(status, 200);
    println!(
        "(e) {} oversized fields (username, password, currentPassword, newPassword, newUsername, key name, \
         description, account name): each a 400 naming the field; the pages' login: 400; bodies past 8 KiB: 413; no 500",
        tried + 1
    );
}
