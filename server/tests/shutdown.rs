//! Graceful shutdown of the `crs` binary: on SIGTERM it stops accepting connections, lets a
//! stream in flight finish, records its usage and releases its leases — and leaves every other
//! instance's state alone (the original deletes every concurrency key on shutdown).

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{body, Engine, Harness};
use crs::store::{account_lease_scope, buckets, key_lease_scope};
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn refused(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_err()
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn sigterm_lets_a_stream_finish(engine: Engine) {
    let mut h = Harness::new(engine).await;
    // A stream with a pause before every event: a few seconds long.
    let account = h.account("slow", Some("drip-250"), 50).await;
    let (key_id, key) = h.key(json!({"concurrencyLimit": 2})).await;
    let config = h.relay().state.config.clone();
    h.relay.take().unwrap().stop().await;

    // Another instance's slot on the same Redis must survive this one's shutdown.
    let other = match engine {
        Engine::Redis => {
            let store = crs::store::open(&config).await.unwrap();
            let scope = account_lease_scope(&account);
            let got = store
                .acquire_lease(&scope, "other-instance", 10, Duration::from_secs(300))
                .await
                .unwrap();
            assert!(got);
            Some((store, scope))
        }
        Engine::Embedded => None,
    };

    // The stopped relay's last tasks may hold the embedded database for a moment.
    for _ in 0..100 {
        if crs::store::open(&config).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let port = free_port();
    let site = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crs"));
    cmd.current_dir(site.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATA_DIR", &config.data_dir)
        .env("ENCRYPTION_KEY", config.encryption_key.clone().unwrap())
        .env("ADMIN_PASSWORD", "admin-password-1")
        .env("PRICING_FILE", &config.pricing_file)
        .env("SITE_ROOT", site.path())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = &config.redis_url {
        cmd.env("REDIS_URL", url);
    }
    let mut child = Child(cmd.spawn().expect("start crs"));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = http.get(format!("{base}/health")).send().await;
        if matches!(&up, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "crs did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut resp = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = String::from_utf8_lossy(&resp.chunk().await.unwrap().unwrap()).into_owned();
    assert!(
        !text.contains("message_stop"),
        "the stream is still running"
    );

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // New connections are refused while the stream is still being served.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !refused(port) {
        assert!(
            Instant::now() < deadline,
            "still accepting 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        text.contains("event: message_stop"),
        "the stream in flight completed: {text}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "crs did not exit after the stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "clean exit: {status}");

    // The stopped process wrote everything down: its usage, and no slot still held.
    let store = crs::store::open(&config).await.unwrap();
    let usage = store.usage(&[buckets::key_total(&key_id)]).await.unwrap()[0];
    assert_eq!(usage.requests, 1, "the stream's usage was recorded");
    assert!(usage.output_tokens > 0);
    let key_slots = store.count_leases(&key_lease_scope(&key_id)).await.unwrap();
    assert_eq!(key_slots, 0, "no key lease left behind");
    let account_slots = store
        .count_leases(&account_lease_scope(&account))
        .await
        .unwrap();
    match other {
        Some((other_store, scope)) => {
            assert_eq!(account_slots, 1, "only the other instance's slot remains");
            other_store
                .release_lease(&scope, "other-instance")
                .await
                .unwrap();
        }
        None => assert_eq!(account_slots, 0, "no account lease left behind"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_finish_embedded() {
    sigterm_lets_a_stream_finish(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_finish_redis() {
    sigterm_lets_a_stream_finish(Engine::Redis).await;
}
