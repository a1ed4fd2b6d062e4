//! Soak: mixed traffic with injected faults against the `crs` binary for a long while, then the
//! books are checked — leases in use at the end (must be 0), requests recorded versus requests
//! answered (must be equal), and the relay's RSS at the start and the end (should be flat).
//!
//! `cargo bench -p server --bench soak` (options after `--`: `--minutes N` (default 10),
//! `--seconds N` (overrides minutes), `--workers N` (default 32), `--engine redis|embedded`).
//!
//! Traffic, chosen per request at random, through four keys:
//! - non-stream and stream requests whose first account always answers 529 (auto-protection
//!   off, so every request fails over to the healthy one);
//! - streams the client drops after the first chunk;
//! - streams bound to an account whose upstream resets mid-stream (partial usage);
//! - requests bound to an account that is unreachable (an error, nothing to record).

use std::{
    collections::HashMap,
    process::Command,
    time::{Duration, Instant},
};

mod support;

use crs::{
    mock_upstream::MockUpstream,
    testing::{free_port, RedisServer},
};
use serde_json::{json, Value};
use support::{rss_kb, Proc};

const PASSWORD: &str = "soak-admin-password-1";

struct Args {
    duration: Duration,
    workers: usize,
    engine: String,
}

fn args() -> Args {
    let f = support::Flags::from_env(&["minutes", "seconds", "workers", "engine"], &[]);
    let minutes: u64 = f.get("minutes").unwrap_or(10);
    Args {
        duration: Duration::from_secs(f.get("seconds").unwrap_or(minutes * 60)),
        workers: f.get("workers").unwrap_or(32),
        engine: f.str("engine").unwrap_or("redis").to_string(),
    }
}

fn rss_mb(pid: u32) -> f64 {
    rss_kb(pid).0 as f64 / 1024.0
}

#[derive(Default)]
struct Tally {
    /// Answered with 200 (the relay records usage for each of them).
    answered: u64,
    /// Refused or failed (nothing to record).
    failed: u64,
    by_kind: HashMap<&'static str, (u64, u64)>,
    /// Why requests failed: (kind, status or "connection") → count.
    failures: HashMap<(&'static str, String), u64>,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(args()));
}

async fn run(a: Args) {
    let mock = MockUpstream::start().await;
    let redis = (a.engine == "redis").then(RedisServer::start);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let log = std::fs::File::create(dir.path().join("relay.log")).expect("relay log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crs"));
    cmd.current_dir(dir.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path().join("data"))
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("ENCRYPTION_KEY", "soak-encryption-key-0123456789abcdef")
        .env("LOG_LEVEL", "error")
        .env("UPSTREAM_CONNECT_TIMEOUT_MS", "500")
        .env(
            "PRICING_FILE",
            format!("{workspace}/resources/model-pricing/model_prices_and_context_window.json"),
        )
        .env("SITE_ROOT", dir.path())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    if let Some(r) = &redis {
        cmd.env("REDIS_URL", r.url());
    }
    let proc = Proc(cmd.spawn().expect("start crs"));
    let pid = proc.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.workers * 2)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http.get(format!("{base}/health")).send().await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < deadline, "the relay did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let post = |path: &'static str, body: Value, token: Option<String>| {
        let (http, base) = (http.clone(), base.clone());
        async move { support::admin_post(&http, &base, path, body, token.as_deref()).await }
    };
    let login = post(
        "/web/auth/login",
        json!({"username": "admin", "password": PASSWORD}),
        None,
    )
    .await;
    let token = login["token"].as_str().expect("token").to_string();
    let account = |name: &str, url: String, priority: u32| {
        post(
            "/admin/claude-console-accounts",
            json!({"name": name, "apiUrl": url, "apiKey": "sk-ant-soak", "priority": priority,
                   "maxConcurrency": 64, "disableAutoProtection": true}),
            Some(token.clone()),
        )
    };
    let id = |v: Value| v["data"]["id"].as_str().expect("id").to_string();
    account("overloaded", mock.scenario_url("status-529"), 1).await;
    account("healthy", mock.url(), 2).await;
    let resets = id(account("resets", mock.scenario_url("reset"), 90).await);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let down = id(account("unreachable", closed, 90).await);
    let key = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "concurrencyLimit": 16});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        post("/admin/api-keys", body, Some(token.clone()))
    };
    let api_key = |v: Value| {
        (
            v["data"]["id"].as_str().expect("id").to_string(),
            v["data"]["apiKey"].as_str().expect("apiKey").to_string(),
        )
    };
    let pool = api_key(key("pool", json!({})).await);
    let dropper = api_key(key("drops", json!({})).await);
    let reset = api_key(key("resets", json!({"claudeConsoleAccountId": resets})).await);
    let unreachable = api_key(key("unreachable", json!({"claudeConsoleAccountId": down})).await);
    let keys = [
        pool.clone(),
        dropper.clone(),
        reset.clone(),
        unreachable.clone(),
    ];

    println!(
        "soak: {} engine, {} workers, {:?}; relay pid {pid}",
        a.engine, a.workers, a.duration
    );
    // Warm-up, then the starting RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = rss_mb(pid);
    let started = Instant::now();
    let url = format!("{base}/v1/messages");
    let workers: Vec<_> = (0..a.workers)
        .map(|w| {
            let http = http.clone();
            let url = url.clone();
            let (pool, dropper, reset, unreachable) = (
                pool.1.clone(),
                dropper.1.clone(),
                reset.1.clone(),
                unreachable.1.clone(),
            );
            let until = started + a.duration;
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut n: u64 = w as u64 * 7919;
                while Instant::now() < until {
                    // A cheap deterministic mix (no RNG dependency): 40/30/10/10/10.
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let pick = (n >> 33) % 10;
                    let (kind, key, stream, drop_early) = match pick {
                        0..=3 => ("failover", &pool, false, false),
                        4..=6 => ("failover stream", &pool, true, false),
                        7 => ("client drop", &dropper, true, true),
                        8 => ("reset stream", &reset, true, false),
                        _ => ("unreachable", &unreachable, false, false),
                    };
                    let body = json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 32,
                                      "stream": stream, "messages": [{"role": "user", "content": "soak"}]});
                    let sent = http
                        .post(&url)
                        .header("x-api-key", key)
                        .header("anthropic-version", "2023-06-01")
                        .json(&body)
                        .send()
                        .await;
                    let mut why = String::new();
                    let ok = match sent {
                        Ok(mut r) if r.status() == 200 => {
                            if drop_early {
                                // The first chunk (message_start) reached us; then we leave.
                                let _ = r.chunk().await;
                            } else {
                                while let Ok(Some(_)) = r.chunk().await {}
                            }
                            true
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            let kind = body["error"]["type"].as_str().unwrap_or("?").to_string();
                            why = format!("{status} {kind}");
                            false
                        }
                        Err(_) => {
                            why = "connection".into();
                            false
                        }
                    };
                    if !ok {
                        *t.failures.entry((kind, why)).or_default() += 1;
                    }
                    let e = t.by_kind.entry(kind).or_default();
                    if ok {
                        t.answered += 1;
                        e.0 += 1;
                    } else {
                        t.failed += 1;
                        e.1 += 1;
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for w in workers {
        let t = w.await.expect("worker");
        all.answered += t.answered;
        all.failed += t.failed;
        for (k, (o, f)) in t.by_kind {
            let e = all.by_kind.entry(k).or_default();
            e.0 += o;
            e.1 += f;
        }
        for (k, n) in t.failures {
            *all.failures.entry(k).or_default() += n;
        }
    }
    let elapsed = started.elapsed();

    // Settlements and the coalesced usage writes land within moments of the last answer.
    let mut redis_con = match &redis {
        Some(r) => Some(
            redis::Client::open(r.url())
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("connect to the soak redis-server"),
        ),
        None => None,
    };
    let (mut recorded, mut key_slots, mut all_slots) = (0, u64::MAX, None);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (recorded, key_slots) = books(&http, &base, &token, &keys).await;
        if let Some(con) = redis_con.as_mut() {
            all_slots = Some(redis_leases(con).await);
        }
        if recorded == all.answered && key_slots == 0 && all_slots.unwrap_or(0) == 0 {
            break;
        }
    }
    let rss_end = rss_mb(pid);

    println!("\n| kind | answered | failed | failures by status |\n|---|---:|---:|---|");
    let mut kinds: Vec<_> = all.by_kind.iter().collect();
    kinds.sort();
    for (k, (o, f)) in kinds {
        let mut why: Vec<String> = all
            .failures
            .iter()
            .filter(|((kind, _), _)| kind == k)
            .map(|((_, s), n)| format!("{s}: {n}"))
            .collect();
        why.sort();
        println!("| {k} | {o} | {f} | {} |", why.join(", "));
    }
    println!(
        "\n{} requests in {:.0} s ({:.0}/s): answered {}, failed {}",
        all.answered + all.failed,
        elapsed.as_secs_f64(),
        (all.answered + all.failed) as f64 / elapsed.as_secs_f64(),
        all.answered,
        all.failed
    );
    println!(
        "usage recorded: {recorded} requests (answered: {})",
        all.answered
    );
    match all_slots {
        Some(n) => {
            println!("leases in use at the end: {n} (every lease set in Redis: keys and accounts)")
        }
        None => {
            println!("leases in use at the end: {key_slots} (the keys' slots, from the admin API)")
        }
    }
    let leases = all_slots.unwrap_or(key_slots);
    println!("relay RSS: {rss_start:.1} MB at the start, {rss_end:.1} MB at the end");
    let ok = recorded == all.answered && leases == 0;
    println!(
        "{}",
        if ok {
            "books balance"
        } else {
            "BOOKS DO NOT BALANCE"
        }
    );
    drop(proc);
    drop(redis);
    if !ok {
        std::process::exit(1);
    }
}

/// Requests recorded for the soak's keys, and the concurrency slots they hold (admin API).
async fn books(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    keys: &[(String, String)],
) -> (u64, u64) {
    let list: Value = http
        .get(format!("{base}/admin/api-keys"))
        .bearer_auth(token)
        .send()
        .await
        .expect("key list")
        .json()
        .await
        .expect("key list body");
    let (mut recorded, mut slots) = (0, 0);
    for k in list["data"].as_array().into_iter().flatten() {
        if keys.iter().any(|(id, _)| k["id"].as_str() == Some(id)) {
            recorded += k["usage"]["total"]["requests"].as_u64().unwrap_or(0);
            slots += k["limits"]["concurrency"]["current"].as_u64().unwrap_or(0);
        }
    }
    (recorded, slots)
}

/// Members of every lease set in Redis (accounts' and keys' concurrency slots).
async fn redis_leases(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let sets: Vec<String> = redis::cmd("KEYS")
        .arg("crs:lease:*")
        .query_async(con)
        .await
        .expect("KEYS crs:lease:*");
    let mut n = 0;
    for set in sets {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Scores are expiry times: only live leases count.
        let live: u64 = redis::cmd("ZCOUNT")
            .arg(&set)
            .arg(now_ms)
            .arg("+inf")
            .query_async(con)
            .await
            .expect("ZCOUNT");
        n += live;
    }
    n
}
