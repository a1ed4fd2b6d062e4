//! The pricing table under a running relay: a changed PRICING_FILE prices the next request, a
//! bad one is refused; PRICING_URL is downloaded only when its SHA-256 matches; the admin
//! endpoints; `crs pricing update`.

mod common;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::StatusCode, http::Uri, Router};
use common::{body, Engine, Harness, MODEL};
use crs::accounting::pricing::sha256_hex;
use serde_json::{json, Value};

/// A table pricing MODEL at `usd_per_mtok` for every token kind, plus `extra` other models.
fn table(usd_per_mtok: f64, extra: usize) -> Vec<u8> {
    let per_token = usd_per_mtok / 1e6;
    let mut t = json!({
        MODEL: {
            "input_cost_per_token": per_token,
            "output_cost_per_token": per_token,
            "cache_creation_input_token_cost": per_token,
            "cache_creation_input_token_cost_above_1hr": per_token,
            "cache_read_input_token_cost": per_token,
            "litellm_provider": "anthropic",
            "mode": "chat",
        }
    });
    for i in 0..extra {
        t[format!("other-model-{i}")] =
            json!({"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6});
    }
    serde_json::to_vec_pretty(&t).unwrap()
}

async fn pricing_status(h: &Harness) -> Value {
    let (status, body) = h.admin(reqwest::Method::GET, "/admin/pricing", None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn wait_status(h: &Harness, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let s = pricing_status(h).await;
        if ok(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pricing never reached: {what}: {}", pricing_status(h).await);
}

/// Sends one request with `key` and returns what it cost (the key's total grows by it).
async fn one_request_cost(h: &Harness, key: &str, key_id: &str, nth: u64) -> u64 {
    let bucket = crs::store::buckets::key_total(key_id);
    let before = h
        .relay()
        .state
        .store
        .usage(std::slice::from_ref(&bucket))
        .await
        .unwrap()[0]
        .cost_nanos;
    let r = h.messages(key, body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    h.wait_requests(&bucket, nth).await.cost_nanos - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_pricing_file_prices_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.json");
    std::fs::write(&file, table(1.0, 0)).unwrap();
    let path = file.clone();
    let h = Harness::with_config(Engine::Embedded, move |c| {
        c.pricing_file = path;
        c.pricing_watch_interval = Duration::from_millis(100);
    })
    .await;
    h.account("a", None, 1).await;
    let (key_id, key) = h.key(json!({})).await;
    let first = one_request_cost(&h, &key, &key_id, 1).await;
    assert!(first > 0);
    let s = pricing_status(&h).await;
    assert_eq!(s["models"], 1);
    assert_eq!(s["sha256"], sha256_hex(&table(1.0, 0)));
    assert!(s["source"].as_str().unwrap().starts_with("file:"));

    // Twice the price, written under the running relay: the next request costs twice as much.
    let v2 = table(2.0, 1);
    std::fs::write(&file, &v2).unwrap();
    wait_status(&h, "the new file", |s| s["sha256"] == sha256_hex(&v2)).await;
    assert_eq!(pricing_status(&h).await["models"], 2);
    let second = one_request_cost(&h, &key, &key_id, 2).await;
    assert_eq!(second, 2 * first, "priced with the new table");

    // A broken file is refused: the old table stays, and the admin sees why.
    std::fs::write(&file, b"{\"truncated\": ").unwrap();
    let s = wait_status(&h, "a refusal", |s| s["lastError"].is_string()).await;
    assert_eq!(s["sha256"], sha256_hex(&v2));
    assert!(
        s["lastError"].as_str().unwrap().contains("not valid JSON"),
        "{s}"
    );
    // So is a valid file that prices nothing.
    std::fs::write(
        &file,
        b"{\"sample_spec\": {\"input_cost_per_token\": \"x\"}}",
    )
    .unwrap();
    let s = wait_status(&h, "an empty table refused", |s| {
        s["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("prices no model"))
    })
    .await;
    assert_eq!(s["sha256"], sha256_hex(&v2));
    let third = one_request_cost(&h, &key, &key_id, 3).await;
    assert_eq!(third, second, "still the last good table");

    // A refresh on demand without PRICING_URL re-reads the file (still broken: 502).
    let (status, body) = h
        .admin(reqwest::Method::POST, "/admin/pricing/refresh", None)
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["data"]["sha256"], sha256_hex(&v2));
    std::fs::write(&file, table(3.0, 2)).unwrap();
    let (status, body) = h
        .admin(reqwest::Method::POST, "/admin/pricing/refresh", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["models"], 3);
    assert!(body["data"]["lastError"].is_null());
}

type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A local HTTP server answering the paths in `files` (404 for the others).
async fn file_server() -> (String, Files) {
    let files: Files = Arc::default();
    let app = Router::new()
        .fallback(|State(files): State<Files>, uri: Uri| async move {
            match files.lock().unwrap().get(uri.path()) {
                Some(b) => (StatusCode::OK, Bytes::from(b.clone())),
                None => (StatusCode::NOT_FOUND, Bytes::new()),
            }
        })
        .with_state(files.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, files)
}

fn publish(files: &Files, table: &[u8], digest_of: &[u8]) {
    let mut f = files.lock().unwrap();
    f.insert("/prices.json".into(), table.to_vec());
    f.insert(
        "/prices.json.sha256".into(),
        format!("{}  prices.json\n", sha256_hex(digest_of)).into_bytes(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pricing_url_is_used_only_with_a_matching_digest() {
    let (base, files) = file_server().await;
    let v1 = table(4.0, 3);
    publish(&files, &v1, &v1);
    let url = format!("{base}/prices.json");
    let configured = url.clone();
    let h = Harness::with_config(Engine::Embedded, move |c| {
        c.pricing_url = Some(configured);
    })
    .await;
    // Downloaded at start (the bundled file was in force until then).
    let s = wait_status(&h, "the download", |s| s["sha256"] == sha256_hex(&v1)).await;
    assert_eq!(s["source"], format!("url:{url}"));
    assert_eq!(s["models"], 4);
    assert_eq!(s["sha256Url"], format!("{url}.sha256"));
    let price = |h: &Harness| h.relay().state.pricing.load().price(MODEL).unwrap().input;
    assert_eq!(price(&h), 4_000.0);

    // A new table with its digest: refreshed on demand.
    let v2 = table(5.0, 0);
    publish(&files, &v2, &v2);
    let (status, body) = h
        .admin(reqwest::Method::POST, "/admin/pricing/refresh", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sha256"], sha256_hex(&v2));
    assert_eq!(price(&h), 5_000.0);

    // The table changed but the digest did not: refused, the current table kept.
    let v3 = table(50.0, 0);
    publish(&files, &v3, &v2);
    let (status, body) = h
        .admin(reqwest::Method::POST, "/admin/pricing/refresh", None)
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("does not match its SHA-256"),
        "{body}"
    );
    assert_eq!(body["data"]["sha256"], sha256_hex(&v2));
    assert_eq!(price(&h), 5_000.0);
    // No digest published at all: refused too.
    files.lock().unwrap().remove("/prices.json.sha256");
    let (status, body) = h
        .admin(reqwest::Method::POST, "/admin/pricing/refresh", None)
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("HTTP 404"),
        "{body}"
    );
    let s = pricing_status(&h).await;
    assert_eq!(s["sha256"], sha256_hex(&v2));
    assert!(s["lastError"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pricing_endpoints_need_an_admin_session() {
    let h = Harness::new(Engine::Embedded).await;
    for (method, path) in [
        (reqwest::Method::GET, "/admin/pricing"),
        (reqwest::Method::POST, "/admin/pricing/refresh"),
    ] {
        let r = h
            .http
            .request(method.clone(), h.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without a session");
        let r = h
            .http
            .request(method.clone(), h.url(path))
            .bearer_auth("0".repeat(64))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with a made-up token");
    }
    let s = pricing_status(&h).await;
    assert!(s["models"].as_u64().unwrap() > 1000, "the bundled table");
    assert_eq!(s["sha256"].as_str().unwrap().len(), 64);
    assert!(s["loadedAt"].is_string());
}

fn crs_pricing(file: &Path, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_crs"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PRICING_FILE", file)
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crs_pricing_update_checks_before_replacing_the_file() {
    let (base, files) = file_server().await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("prices.json");
    std::fs::write(&target, table(1.0, 0)).unwrap();
    let url = format!("{base}/prices.json");
    let run = |args: Vec<String>| {
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crs_pricing(&target, &args)
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // From a URL with a matching digest: replaced.
    let v2 = table(2.0, 1);
    publish(&files, &v2, &v2);
    let out = run(s(&["pricing", "update", "--url", &url])).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&target).unwrap(), v2);

    // A mismatching digest: exit 1, the file untouched.
    publish(&files, &table(9.0, 0), &v2);
    let out = run(s(&["pricing", "update", "--url", &url])).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
    assert_eq!(std::fs::read(&target).unwrap(), v2);
    // …unless the expected digest is given and matches.
    let v9 = table(9.0, 0);
    let hex = sha256_hex(&v9);
    let out = run(s(&["pricing", "update", "--url", &url, "--sha256", &hex]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&target).unwrap(), v9);

    // From a file: a bad one is refused, a good one replaces the table.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"[1, 2]").unwrap();
    let out = run(s(&["pricing", "update", "--file", bad.to_str().unwrap()]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&target).unwrap(), v9);
    let good = dir.path().join("good.json");
    std::fs::write(&good, table(7.0, 2)).unwrap();
    let out = run(s(&["pricing", "update", "--file", good.to_str().unwrap()]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&target).unwrap(), table(7.0, 2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 models"));
}
