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

// --- Prices of every Claude id, long context, unpriced models ---

/// The table a relay starts with (bundled table and overrides), as `Config::for_tests` sets it.
fn relay_table() -> crs::accounting::Pricing {
    let dir = tempfile::tempdir().unwrap();
    crs::accounting::pricing::load_at_start(&crs::config::Config::for_tests(
        dir.path().to_path_buf(),
    ))
    .unwrap()
}

/// USD per million tokens: input, output, 5-minute cache write, 1-hour cache write, cache read.
type Usd = [f64; 5];

fn usd(r: crs::accounting::Rates) -> Usd {
    // nano-dollars per token = USD per thousand tokens: ×1000 for USD per million.
    [
        r.input,
        r.output,
        r.cache_write_5m,
        r.cache_write_1h,
        r.cache_read,
    ]
    .map(|n| n / 1000.0)
}

fn assert_usd(model: &str, got: Usd, want: Usd) {
    let close = got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9);
    assert!(
        close,
        "{model}: got {got:?} USD/MTok, Anthropic's price is {want:?}"
    );
}

/// Anthropic's published prices (USD per million tokens; 5-minute cache writes 1.25x input,
/// 1-hour 2x, reads 0.1x; Haiku 3's writes are $0.30), and every id of each model that Claude
/// Code, the Anthropic SDKs, Bedrock and Vertex send.
const KNOWN: &[(Usd, &[&str])] = &[
    (
        [5.0, 25.0, 6.25, 10.0, 0.5], // Opus 4.5
        &[
            "claude-opus-4-5-20251101",
            "claude-opus-4-5",
            "claude-opus-4-5@20251101",
            "vertex_ai/claude-opus-4-5@20251101",
            "anthropic.claude-opus-4-5-20251101-v1:0",
            "global.anthropic.claude-opus-4-5-20251101-v1:0",
            "arn:aws:bedrock:us-east-1:111122223333:inference-profile/global.anthropic.claude-opus-4-5-20251101-v1:0",
        ],
    ),
    (
        [5.5, 27.5, 6.875, 11.0, 0.55], // Opus 4.5 in a Bedrock region (LiteLLM lists a premium)
        &[
            "us.anthropic.claude-opus-4-5-20251101-v1:0",
            "eu.anthropic.claude-opus-4-5-20251101-v1:0",
            "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-opus-4-5-20251101-v1:0",
        ],
    ),
    (
        [15.0, 75.0, 18.75, 30.0, 1.5], // Opus 4.1 (dropped from LiteLLM's Anthropic entries)
        &[
            "claude-opus-4-1-20250805",
            "claude-opus-4-1",
            "claude-opus-4-1@20250805",
            "vertex_ai/claude-opus-4-1@20250805",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            "eu.anthropic.claude-opus-4-1-20250805-v1:0",
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-opus-4-1-20250805-v1:0",
        ],
    ),
    (
        [15.0, 75.0, 18.75, 30.0, 1.5], // Opus 4
        &[
            "claude-opus-4-20250514",
            "claude-opus-4-0",
            "claude-opus-4@20250514",
            "anthropic.claude-opus-4-20250514-v1:0",
            "us.anthropic.claude-opus-4-20250514-v1:0",
        ],
    ),
    (
        [3.0, 15.0, 3.75, 6.0, 0.3], // Sonnet 4.5
        &[
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5",
            "claude-sonnet-4-5@20250929",
            "vertex_ai/claude-sonnet-4-5@20250929",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ],
    ),
    (
        [3.3, 16.5, 4.125, 6.6, 0.33], // Sonnet 4.5 in a Bedrock region
        &[
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "jp.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "au.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:eu-west-1:111122223333:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ],
    ),
    (
        [3.0, 15.0, 3.75, 6.0, 0.3], // Sonnet 4 (dropped from LiteLLM's Anthropic entries)
        &[
            "claude-sonnet-4-20250514",
            "claude-sonnet-4-0",
            "claude-sonnet-4@20250514",
            "vertex_ai/claude-sonnet-4@20250514",
            "anthropic.claude-sonnet-4-20250514-v1:0",
            "global.anthropic.claude-sonnet-4-20250514-v1:0",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "eu.anthropic.claude-sonnet-4-20250514-v1:0",
            "apac.anthropic.claude-sonnet-4-20250514-v1:0",
        ],
    ),
    (
        [3.0, 15.0, 3.75, 6.0, 0.3], // Sonnet 3.7
        &[
            "claude-3-7-sonnet-20250219",
            "claude-3-7-sonnet-latest",
            "claude-3-7-sonnet@20250219",
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
        ],
    ),
    (
        [1.0, 5.0, 1.25, 2.0, 0.1], // Haiku 4.5
        &[
            "claude-haiku-4-5-20251001",
            "claude-haiku-4-5",
            "claude-haiku-4-5@20251001",
            "vertex_ai/claude-haiku-4-5@20251001",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        ],
    ),
    (
        [1.1, 5.5, 1.375, 2.2, 0.11], // Haiku 4.5 in a Bedrock region
        &[
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            "apac.anthropic.claude-haiku-4-5-20251001-v1:0",
            "jp.anthropic.claude-haiku-4-5-20251001-v1:0",
            "au.anthropic.claude-haiku-4-5-20251001-v1:0",
        ],
    ),
    (
        [0.8, 4.0, 1.0, 1.6, 0.08], // Haiku 3.5 (dropped from LiteLLM's Anthropic entries)
        &[
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku-latest",
            "claude-3-5-haiku@20241022",
            "vertex_ai/claude-3-5-haiku@20241022",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "eu.anthropic.claude-3-5-haiku-20241022-v1:0",
        ],
    ),
    (
        [0.25, 1.25, 0.3, 0.5, 0.03], // Haiku 3
        &[
            "claude-3-haiku-20240307",
            "claude-3-haiku@20240307",
            "vertex_ai/claude-3-haiku@20240307",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "us.anthropic.claude-3-haiku-20240307-v1:0",
        ],
    ),
];

/// Models newer than the published list above: the bundled table's Anthropic entry is the
/// published figure, and every other form must resolve to it. (name, dated id, global Bedrock
/// id where the table lists one.)
const NEWER: &[(&str, Option<&str>, Option<&str>)] = &[
    (
        "claude-opus-4-6",
        Some("claude-opus-4-6-20260205"),
        Some("global.anthropic.claude-opus-4-6-v1"),
    ),
    (
        "claude-opus-4-7",
        Some("claude-opus-4-7-20260416"),
        Some("global.anthropic.claude-opus-4-7"),
    ),
    (
        "claude-opus-4-8",
        None,
        Some("global.anthropic.claude-opus-4-8"),
    ),
    (
        "claude-opus-5",
        None,
        Some("global.anthropic.claude-opus-5"),
    ),
    (
        "claude-opus-5-5",
        None,
        Some("global.anthropic.claude-opus-5-5"),
    ),
    (
        "claude-sonnet-4-6",
        None,
        Some("global.anthropic.claude-sonnet-4-6"),
    ),
    (
        "claude-sonnet-5",
        None,
        Some("global.anthropic.claude-sonnet-5"),
    ),
    (
        "claude-sonnet-5-5",
        None,
        Some("global.anthropic.claude-sonnet-5-5"),
    ),
    (
        "claude-haiku-5-5",
        None,
        Some("global.anthropic.claude-haiku-5-5"),
    ),
    (
        "claude-fable-5",
        None,
        Some("global.anthropic.claude-fable-5"),
    ),
    (
        "claude-fable-5-1",
        None,
        Some("global.anthropic.claude-fable-5-1"),
    ),
    ("claude-mythos-5", None, None),
    (
        "claude-mythos-5-1",
        None,
        Some("global.anthropic.claude-mythos-5-1"),
    ),
    // LiteLLM prices Mythos Preview on Bedrock apart (an exact Bedrock entry of its own).
    ("claude-mythos-preview", None, None),
];

#[test]
fn every_claude_id_resolves_to_anthropics_price() {
    let p = relay_table();
    for (want, ids) in KNOWN {
        for id in *ids {
            let price = p.price(id).unwrap_or_else(|| panic!("{id} has no price"));
            assert_usd(id, usd(price.base()), *want);
        }
    }
    for (name, dated, bedrock) in NEWER {
        let published = *p
            .exact(name)
            .unwrap_or_else(|| panic!("{name} not in the table"));
        let mut forms = vec![
            format!("{name}@default"),
            format!("vertex_ai/{name}"),
            format!("vertex_ai/{name}@default"),
        ];
        forms.extend(dated.map(str::to_string));
        if let Some(global) = bedrock {
            forms.push(global.to_string());
            forms.push(global.trim_start_matches("global.").to_string());
            forms.push(format!(
                "arn:aws:bedrock:us-east-1:111122223333:inference-profile/{global}"
            ));
        }
        for id in forms {
            let price = p.price(&id).unwrap_or_else(|| panic!("{id} has no price"));
            assert_usd(&id, usd(price.base()), usd(published.base()));
        }
    }
    // Family aliases follow LiteLLM's `alias_of`.
    assert_eq!(p.price("claude-opus-latest"), p.exact("claude-opus-5-5"));
    assert_eq!(
        p.price("claude-sonnet-latest"),
        p.exact("claude-sonnet-5-5")
    );
    // Every Claude model the table lists for Anthropic's API is in this test.
    let covered: Vec<&str> = KNOWN
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .chain(
            NEWER
                .iter()
                .flat_map(|(n, d, _)| std::iter::once(*n).chain(*d)),
        )
        .collect();
    for m in p.claude_models() {
        assert!(
            covered.contains(&m.as_str()),
            "{m} is not covered by this test"
        );
    }
}

#[test]
fn sonnet_4_and_4_5_have_long_context_rates() {
    let p = relay_table();
    let long: Usd = [6.0, 22.5, 7.5, 12.0, 0.6];
    for id in [
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5@20250929",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-20250514",
        "claude-sonnet-4-0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
    ] {
        let price = p.price(id).unwrap();
        let rates = price.above_200k.unwrap_or_else(|| panic!("{id}"));
        assert_usd(id, usd(rates), long);
        assert_eq!(price.rates_for(200_000), price.base(), "{id}");
        assert_eq!(price.rates_for(200_001), rates, "{id}");
        assert_eq!(price.max_output_tokens, Some(64_000), "{id}");
    }
    // Anthropic's names accept the 1M context (LiteLLM's provider entries say 200k).
    for id in ["claude-sonnet-4-5", "claude-sonnet-4-20250514"] {
        assert_eq!(
            p.price(id).unwrap().max_input_tokens,
            Some(1_000_000),
            "{id}"
        );
    }
    // Models Anthropic bills at one rate have none.
    for id in [
        "claude-opus-4-1-20250805",
        "claude-haiku-4-5",
        "claude-3-5-haiku-latest",
    ] {
        assert_eq!(p.price(id).unwrap().above_200k, None, "{id}");
    }
}

#[test]
fn a_250k_token_request_pays_long_context_rates() {
    let p = relay_table();
    let usage = |input| app::domain::TokenUsage {
        input_tokens: input,
        output_tokens: 1_000,
        cache_create_5m_tokens: 10_000,
        cache_create_1h_tokens: 20_000,
        cache_read_tokens: 20_000,
    };
    let cost = |input| crs::accounting::cost_nanos(&p, "claude-sonnet-4-5-20250929", &usage(input));
    // 250k prompt tokens (input + cache writes + reads): every kind at the long rates, in
    // nano-dollars per token ($6 / $22.50 / $7.50 / $12 / $0.60 per million).
    assert_eq!(
        cost(200_000),
        (
            200_000 * 6_000 + 1_000 * 22_500 + 10_000 * 7_500 + 20_000 * 12_000 + 20_000 * 600,
            false
        )
    );
    // 199k: the base rates ($3 / $15 / $3.75 / $6 / $0.30).
    assert_eq!(
        cost(149_000),
        (
            149_000 * 3_000 + 1_000 * 15_000 + 10_000 * 3_750 + 20_000 * 6_000 + 20_000 * 300,
            false
        )
    );
}

/// What one request of the mock (which reports `input` input tokens) cost through a relay.
async fn relayed_cost(input: u64) -> u64 {
    let h = Harness::new(Engine::Embedded).await;
    h.account("a", Some(&format!("usage-{input}")), 1).await;
    let (key_id, key) = h.key(json!({})).await;
    one_request_cost(&h, &key, &key_id, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_context_through_the_relay() {
    use crs::mock_upstream as mock;
    let cached =
        mock::CACHE_CREATE_5M_TOKENS + mock::CACHE_CREATE_1H_TOKENS + mock::CACHE_READ_TOKENS;
    let kinds = |input: u64, r: [u64; 5]| {
        input * r[0]
            + mock::OUTPUT_TOKENS * r[1]
            + mock::CACHE_CREATE_5M_TOKENS * r[2]
            + mock::CACHE_CREATE_1H_TOKENS * r[3]
            + mock::CACHE_READ_TOKENS * r[4]
    };
    let long = 250_000 - cached;
    assert_eq!(
        relayed_cost(long).await,
        kinds(long, [6_000, 22_500, 7_500, 12_000, 600])
    );
    let short = 199_000 - cached;
    assert_eq!(
        relayed_cost(short).await,
        kinds(short, [3_000, 15_000, 3_750, 6_000, 300])
    );
}

const UNPRICED: &str = "claude-imaginary-9-20990101";

fn unpriced_body() -> Value {
    let mut b = body(false);
    b["model"] = json!(UNPRICED);
    b
}

async fn unpriced_metric(h: &Harness, outcome: &str) -> u64 {
    let text = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("crs_unpriced_requests_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn dashboard_unpriced(h: &Harness) -> Vec<Value> {
    let (status, body) = h
        .admin(reqwest::Method::GET, "/admin/dashboard", None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["unpricedModels"].as_array().unwrap().clone()
}

/// Waits for this instance's sightings to reach the store (written every 2 s).
async fn stored_unpriced(h: &Harness) -> Vec<Value> {
    let store = &h.relay().state.store;
    for _ in 0..100 {
        let docs = store
            .list_docs(crs::accounting::unpriced::DOC_KIND)
            .await
            .unwrap();
        if !docs.is_empty() {
            return docs
                .iter()
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no unpriced model reached the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_model_is_billed_at_the_fallback_and_flagged() {
    let h = Harness::new(Engine::Embedded).await;
    h.account("a", None, 1).await;
    let (key_id, key) = h.key(json!({})).await;
    let before = unpriced_metric(&h, "fallback").await;
    let r = h.messages(&key, unpriced_body()).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let bucket = crs::store::buckets::key_total(&key_id);
    let usage = h.wait_requests(&bucket, 1).await;
    // The fallback model's (Sonnet 4.5's) price for the mock's usage.
    use crs::mock_upstream as mock;
    assert_eq!(
        usage.cost_nanos,
        mock::INPUT_TOKENS * 3_000
            + mock::OUTPUT_TOKENS * 15_000
            + mock::CACHE_CREATE_5M_TOKENS * 3_750
            + mock::CACHE_CREATE_1H_TOKENS * 6_000
            + mock::CACHE_READ_TOKENS * 300
    );
    let records = h.relay().state.store.all_records(10).await.unwrap();
    let record = records.iter().find(|r| r.model == UNPRICED).unwrap();
    assert!(record.used_fallback_pricing, "the record is flagged");
    assert!(unpriced_metric(&h, "fallback").await > before, "counted");
    let listed = dashboard_unpriced(&h).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["model"], UNPRICED);
    assert_eq!(listed[0]["requests"], 1);
    assert!(listed[0]["lastSeen"].is_string());
    // A priced model is not listed; the sighting reaches the store.
    let r = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.wait_requests(&bucket, 2).await;
    let stored = stored_unpriced(&h).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0]["model"].as_str(), stored[0]["requests"].as_u64()),
        (Some(UNPRICED), Some(1))
    );
    assert_eq!(dashboard_unpriced(&h).await.len(), 1);
    let s = pricing_status(&h).await;
    assert_eq!(s["unpricedPolicy"], "fallback");
    assert_eq!(s["fallbackModel"], "claude-sonnet-4-5-20250929");
    assert!(s["overridesFile"]
        .as_str()
        .unwrap()
        .ends_with("overrides.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_model_is_refused_before_going_upstream() {
    let h = Harness::with_config(Engine::Embedded, |c| {
        c.unpriced_policy = crs::accounting::UnpricedAction::Refuse;
    })
    .await;
    h.account("a", None, 1).await;
    let (_, key) = h.key(json!({})).await;
    let before = unpriced_metric(&h, "refused").await;
    let r = h.messages(&key, unpriced_body()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(UNPRICED) && message.contains("no price"),
        "{message}"
    );
    // The OpenAI shape on an OpenAI route.
    let r = h
        .http
        .post(h.url("/openai/claude/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": UNPRICED, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("no price"),
        "{v}"
    );
    assert!(v.get("type").is_none(), "OpenAI's shape: {v}");
    assert_eq!(h.mock.log.count(), 0, "nothing went upstream");
    assert!(unpriced_metric(&h, "refused").await >= before + 2);
    let listed = dashboard_unpriced(&h).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["model"].as_str(), listed[0]["refused"].as_u64()),
        (Some(UNPRICED), Some(2))
    );
    // Priced models still pass.
    let r = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.mock.log.count(), 1);
    assert_eq!(pricing_status(&h).await["unpricedPolicy"], "refuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_fallback_model_or_overrides_file_stops_the_start() {
    // Each start on its own data directory (a failed start may hold its store a moment).
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let config = |i: usize| crs::config::Config::for_tests(dirs[i].path().to_path_buf());
    let mut c = config(0);
    c.unpriced_fallback_model = Some("claude-nonexistent".into());
    let e = format!("{:#}", crs::start(c).await.err().unwrap());
    assert!(
        e.contains("UNPRICED_FALLBACK_MODEL=\"claude-nonexistent\""),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    let overrides = dirs[1].path().join("o.json");
    std::fs::write(
        &overrides,
        br#"{"claude-x": {"input_cost_per_token": "cheap"}}"#,
    )
    .unwrap();
    let mut c = config(1);
    c.pricing_overrides_file = Some(overrides);
    let e = format!("{:#}", crs::start(c).await.err().unwrap());
    assert!(
        e.contains("invalid pricing overrides") && e.contains("claude-x"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    let mut c = config(2);
    c.pricing_overrides_file = Some(dirs[2].path().join("missing.json"));
    let e = format!("{:#}", crs::start(c).await.err().unwrap());
    assert!(e.contains("missing.json"), "{e}");
}
