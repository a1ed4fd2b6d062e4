//! Secrets never reach a log line, at any level: every log line of a relay that served keys,
//! accounts, failures, a login and settings with a webhook secret is captured at TRACE and
//! searched for each secret.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use common::{body, Engine, Harness, UPSTREAM_KEY};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let c = Capture::default();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(c.clone())
                .json()
                .init();
            c
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line() {
    let logs = capture();
    let h = Harness::new(Engine::Embedded).await;
    h.account("healthy", None, 20).await;
    h.account("failing", Some("status-500"), 10).await;
    let (_, key) = h.key(json!({"name": "log test key"})).await;
    // Served (after a failover), streamed, and refused keys.
    for stream in [false, true] {
        let r = h.messages(&key, body(stream)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let unknown = format!("cr_{}", "ab".repeat(32));
    assert_eq!(
        h.messages(&unknown, body(false))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // A bad login names no password either.
    let http = reqwest::Client::new();
    let wrong_password = "wrong-password-Zq81";
    http.post(h.url("/web/auth/login"))
        .json(&json!({"username": "admin", "password": wrong_password}))
        .send()
        .await
        .unwrap();
    // An account whose upstream rejects its key (auth error path), and a Bedrock account.
    let rejected_secret = "sk-ant-api03-REJECTED-account-secret";
    let (status, _) = h
        .admin(
            reqwest::Method::POST,
            "/admin/claude-console-accounts",
            Some(json!({"name": "rejected", "apiUrl": h.mock.scenario_url("status-401"), "apiKey": rejected_secret, "priority": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let r = h.messages(&key, body(false)).send().await.unwrap();
    r.bytes().await.unwrap();
    let aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let (status, _) = h
        .admin(
            reqwest::Method::POST,
            "/admin/bedrock-accounts",
            Some(
                json!({"name": "bedrock", "apiUrl": h.mock.url(), "region": "us-east-1",
                "awsCredentials": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": aws_secret}}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    h.wait_requests(&crs::store::buckets::key_total(&key_id(&h, &key).await), 2)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(text.contains("request finished"), "the capture works");
    for secret in [
        key.as_str(),
        &key[3..],
        unknown.as_str(),
        UPSTREAM_KEY,
        rejected_secret,
        aws_secret,
        "admin-password-1",
        wrong_password,
        h.token.as_str(),
    ] {
        assert!(
            !text.contains(secret),
            "a log line holds a secret ({}…)",
            &secret[..6]
        );
    }
}

async fn key_id(h: &Harness, key: &str) -> String {
    let hash = h.relay().state.crypto.hash_api_key(key);
    h.relay()
        .state
        .store
        .key_by_hash(&hash)
        .await
        .unwrap()
        .unwrap()
        .key
        .id
}
