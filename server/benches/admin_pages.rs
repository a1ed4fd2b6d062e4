//! How fast the admin pages answer with a big store: 10,000 keys and 1,000,000 recorded
//! requests (100 records per key, usage counters over 14 days and 5 models), on the embedded
//! store and on a throwaway Redis. Full server-rendered pages are fetched over HTTP with an
//! admin session, as a browser would.
//!
//! `cargo bench -p server --bench admin_pages` (options after `--`: `--keys N`,
//! `--requests N`, `--samples N`, `--engine embedded|redis`). Prints p50/p95/max per page.
//! A benchmark, not a test: nothing here asserts a time.

mod support;

use std::time::{Duration, Instant};

use app::domain::{ApiKey, RequestRecord, TokenUsage};
use chrono::Utc;
use crs::{
    config::Config,
    store::{StoredKey, UsageEvent},
    testing::RedisServer,
};

struct Args {
    keys: usize,
    requests: usize,
    samples: usize,
    engines: Vec<&'static str>,
}

fn args() -> Args {
    let f = support::Flags::from_env(&["keys", "requests", "samples", "engine"], &[]);
    Args {
        keys: f.get("keys").unwrap_or(10_000),
        requests: f.get("requests").unwrap_or(1_000_000),
        samples: f.get("samples").unwrap_or(20),
        engines: f.engines(),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
        .expect("runtime");
    rt.block_on(run(args()));
}

async fn run(a: Args) {
    println!(
        "admin pages with {} keys and {} recorded requests, {} samples per page\n",
        a.keys, a.requests, a.samples
    );
    println!("| store | page | p50 ms | p95 ms | max ms |");
    println!("|---|---|---:|---:|---:|");
    for engine in &a.engines {
        bench_engine(engine, &a).await;
    }
}

const MODELS: [&str; 5] = [
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
    "gpt-5",
    "gemini-2.5-pro",
];

async fn bench_engine(engine: &str, a: &Args) {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = (engine == "redis").then(RedisServer::start);
    let mut config = Config::for_tests(dir.path().to_path_buf());
    config.redis_url = redis.as_ref().map(|r| r.url());
    config.usage_records_per_key = 200;
    let running = crs::start(config).await.expect("relay starts");
    let store = running.state.store.clone();

    let t = Instant::now();
    let now = Utc::now();
    let mut ids = Vec::with_capacity(a.keys);
    for i in 0..a.keys {
        let id = uuid::Uuid::new_v4().to_string();
        let mut key = ApiKey {
            id: id.clone(),
            name: format!("key {i}"),
            is_active: i % 10 != 0,
            tags: vec![format!("team-{}", i % 20)],
            created_at: crs::auth::api_key::format_time(now - chrono::Duration::seconds(i as i64)),
            key_preview: format!("cr_{i:06}…"),
            ..Default::default()
        };
        if i % 3 == 0 {
            key.daily_cost_limit = 5.0;
            key.total_cost_limit = 100.0;
        }
        store
            .insert_key(&StoredKey::new(key, format!("bench-hash-{i}")))
            .await
            .expect("insert key");
        ids.push(id);
    }
    let keys_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let chunk = 50_000;
    let mut n = 0;
    while n < a.requests {
        let events: Vec<UsageEvent> = (n..(n + chunk).min(a.requests))
            .map(|j| {
                let key_id = ids[j % ids.len()].clone();
                let model = MODELS[j % MODELS.len()].to_string();
                let at = now - chrono::Duration::days((j / ids.len() % 14) as i64);
                let usage = TokenUsage {
                    input_tokens: 100 + (j % 50) as u64,
                    output_tokens: 200,
                    cache_read_tokens: 50,
                    ..Default::default()
                };
                UsageEvent {
                    account_id: format!("acc-{}", j % 20),
                    service: "claude".into(),
                    usage,
                    cost_nanos: 1_000_000 + (j % 1000) as u64,
                    at,
                    record: RequestRecord {
                        request_id: format!("req-{j}"),
                        timestamp: crs::auth::api_key::format_time(at),
                        key_id: key_id.clone(),
                        model: model.clone(),
                        endpoint: "/v1/messages".into(),
                        status: 200,
                        usage,
                        cost_nanos: 1_000_000,
                        duration_ms: 900,
                        ..Default::default()
                    },
                    key_id,
                    model,
                }
            })
            .collect();
        store
            .record_usage_batch(&events, 0)
            .await
            .expect("record usage");
        n += chunk;
    }
    eprintln!(
        "[{engine}] loaded {} keys in {keys_s:.1} s and {} requests in {:.1} s",
        a.keys,
        a.requests,
        t.elapsed().as_secs_f64()
    );

    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{}/web/auth/login", running.url()))
        .json(&serde_json::json!({"username": "admin", "password": "admin-password-1"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login answer");
    let token = login["token"].as_str().expect("token").to_string();
    for (page, marker) in [
        ("/admin-next/dashboard", "trend-chart"),
        ("/admin-next/keys", "keys-table"),
        ("/admin-next/keys?sort=cost", "keys-table"),
        ("/admin-next/keys?search=key+99&state=active", "keys-table"),
        ("/admin-next/accounts", "accounts-table"),
    ] {
        let mut times = Vec::with_capacity(a.samples);
        for i in 0..a.samples + 2 {
            let t = Instant::now();
            let resp = http
                .get(format!("{}{page}", running.url()))
                .header("accept", "text/html")
                .header("cookie", format!("crs_admin={token}"))
                .send()
                .await
                .expect("page");
            let status = resp.status();
            let body = resp.text().await.expect("body");
            let took = t.elapsed();
            // A wrong answer would make the figure meaningless.
            assert!(
                status.is_success() && body.contains(marker),
                "{page}: {status}"
            );
            if i >= 2 {
                times.push(took);
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p = |q: f64| ms(times[((times.len() - 1) as f64 * q).round() as usize]);
        println!(
            "| {engine} | `{page}` | {:.1} | {:.1} | {:.1} |",
            p(0.5),
            p(0.95),
            ms(*times.last().expect("samples"))
        );
    }
    running.stop().await;
    drop(redis);
}
