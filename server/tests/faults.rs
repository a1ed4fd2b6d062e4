//! The fault matrix (issue 10, part 1): what goes wrong upstream, at the client, and in the
//! store, through the real server on both store engines. Every case checks what the client
//! gets (status and error shape in its protocol), the account's state afterwards, the
//! concurrency leases (back to zero) and the usage (recorded exactly once; partial usage kept
//! for streams cut short).

mod common;

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Engine, Harness, MODEL, UPSTREAM_KEY};
use crs::{
    mock_upstream as mock,
    store::{account_lease_scope, buckets, key_lease_scope},
    testing::free_port,
};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_engines!(
    failures_at_the_first_request,
    failures_after_a_failover,
    every_account_failing_gives_the_last_error,
    reset_mid_stream_keeps_partial_usage,
    malformed_sse_is_relayed_and_accounted_once,
    stream_without_message_stop_is_accounted_once,
    client_disconnects_at_every_stage,
);

/// Accounts and keys carry concurrency limits, so that every request holds leases.
const SLOTS: u32 = 4;
/// The first-byte timeout of the harnesses that test it.
const FIRST_BYTE: Duration = Duration::from_millis(500);

async fn console(h: &Harness, name: &str, api_url: &str, priority: u32) -> String {
    let (status, body) = h
        .admin(
            Method::POST,
            "/admin/claude-console-accounts",
            Some(
                json!({"name": name, "apiUrl": api_url, "apiKey": UPSTREAM_KEY,
                "priority": priority, "maxConcurrency": SLOTS}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["id"].as_str().unwrap().to_string()
}

async fn delete_account(h: &Harness, id: &str) {
    let (s, v) = h
        .admin(
            Method::DELETE,
            &format!("/admin/claude-console-accounts/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// A key with a concurrency limit (so admission takes a lease and a reservation).
async fn limited_key(h: &Harness) -> (String, String) {
    h.key(json!({"concurrencyLimit": SLOTS})).await
}

/// A new conversation each time: no session stickiness between cases.
fn claude_body(stream: bool, n: usize) -> Value {
    let mut b = common::body(stream);
    b["messages"][0]["content"] = json!(format!("fault case {n}"));
    b
}

fn openai(h: &Harness, key: &str, n: usize) -> reqwest::RequestBuilder {
    h.http
        .post(h.url("/openai/claude/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": MODEL, "max_tokens": 64,
            "messages": [{"role": "user", "content": format!("openai fault case {n}")}]}))
}

/// An Anthropic error: `(status, error.type)`.
async fn anthropic_error(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    (status, v["error"]["type"].as_str().unwrap().into())
}

/// An OpenAI error: `{"error": {"message", "type", …}}`: `(status, error.type)`.
async fn openai_error(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    (
        status,
        v["error"]["type"].as_str().unwrap_or_default().into(),
    )
}

/// Waits until no lease is held on the accounts and the key (settlements run off the response
/// path), then writes the queued usage.
async fn settled(h: &Harness, accounts: &[&str], key_id: &str) {
    let store = &h.relay().state.store;
    let mut scopes: Vec<String> = accounts.iter().map(|a| account_lease_scope(a)).collect();
    scopes.push(key_lease_scope(key_id));
    let mut held = Vec::new();
    for _ in 0..250 {
        held.clear();
        for s in &scopes {
            let n = store.count_leases(s).await.unwrap();
            if n > 0 {
                held.push((s.clone(), n));
            }
        }
        if held.is_empty() {
            h.relay().state.recorder.flush().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("leases never went back to zero: {held:?}");
}

async fn usage(h: &Harness, bucket: String) -> app::domain::UsageCounters {
    h.relay().state.store.usage(&[bucket]).await.unwrap()[0]
}

/// The account's rests, once its mark (written off the request path) has landed.
async fn rests_of(h: &Harness, id: &str) -> Vec<app::domain::Cooldown> {
    for _ in 0..150 {
        let r = h
            .relay()
            .state
            .store
            .cooldowns(&[id.to_string()])
            .await
            .unwrap();
        if let Some(list) = r.get(id) {
            return list.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("account {id} never marked");
}

async fn rests_nothing(h: &Harness, id: &str) {
    let r = h
        .relay()
        .state
        .store
        .cooldowns(&[id.to_string()])
        .await
        .unwrap();
    assert!(r.get(id).is_none_or(|l| l.is_empty()), "{r:?}");
}

/// A plain TCP listener that answers anything with bytes that are not TLS.
struct GarbageListener {
    url: String,
    handle: tokio::task::JoinHandle<()>,
}

impl GarbageListener {
    async fn start() -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", l.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nthis is not a TLS server\r\n\r\n")
                        .await;
                });
            }
        });
        GarbageListener { url, handle }
    }
}

impl Drop for GarbageListener {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The upstream faults that fail a request before any byte reached the client: the base URL
/// of the account, and what the client and the account get.
struct Fault {
    name: &'static str,
    url: String,
    status: u16,
    kind: &'static str,
    rest: &'static str,
}

fn faults(h: &Harness, tls: &GarbageListener) -> Vec<Fault> {
    let refused = format!("http://127.0.0.1:{}", free_port());
    let f = |name, url: String, status, kind, rest| Fault {
        name,
        url,
        status,
        kind,
        rest,
    };
    vec![
        f("refused", refused, 502, "api_error", "unreachable"),
        f("tls", tls.url.clone(), 502, "api_error", "unreachable"),
        f(
            "slow",
            h.mock.scenario_url("slow-3000"),
            504,
            "timeout_error",
            "timeout",
        ),
        f(
            "429",
            h.mock.scenario_url("status-429"),
            429,
            "rate_limit_error",
            "rate_limit",
        ),
        f(
            "529",
            h.mock.scenario_url("status-529"),
            529,
            "overloaded_error",
            "overload",
        ),
        f(
            "500",
            h.mock.scenario_url("status-500"),
            500,
            "api_error",
            "server_error",
        ),
        f(
            "401",
            h.mock.scenario_url("status-401"),
            401,
            "authentication_error",
            "auth_error",
        ),
    ]
}

/// One account, failing: the client gets the upstream's failure in its own protocol, the
/// account rests, nothing stays leased and no usage is recorded.
async fn failures_at_the_first_request(engine: Engine) {
    let h = Harness::with_config(engine, |c| c.upstream_first_byte_timeout = FIRST_BYTE).await;
    let tls = GarbageListener::start().await;
    let (key_id, key) = limited_key(&h).await;
    for (n, f) in faults(&h, &tls).into_iter().enumerate() {
        for openai_route in [false, true] {
            let id = console(&h, f.name, &f.url, 10).await;
            let (status, kind) = if openai_route {
                openai_error(openai(&h, &key, n).send().await.unwrap()).await
            } else {
                anthropic_error(
                    h.messages(&key, claude_body(n % 2 == 0, n))
                        .send()
                        .await
                        .unwrap(),
                )
                .await
            };
            assert_eq!(status, f.status, "{} (openai: {openai_route})", f.name);
            if !openai_route {
                assert_eq!(kind, f.kind, "{}", f.name);
            }
            let rests = rests_of(&h, &id).await;
            assert_eq!(rests.len(), 1, "{}: {rests:?}", f.name);
            assert_eq!(rests[0].class, f.rest, "{}", f.name);
            settled(&h, &[&id], &key_id).await;
            assert_eq!(usage(&h, buckets::account_total(&id)).await.requests, 0);
            delete_account(&h, &id).await;
        }
    }
    assert_eq!(usage(&h, buckets::key_total(&key_id)).await.requests, 0);
    assert_eq!(usage(&h, buckets::global_total()).await.requests, 0);
}

/// A failing account, then a healthy one: the client gets the healthy answer, the failing
/// account rests, the usage is recorded once, on the account that answered.
async fn failures_after_a_failover(engine: Engine) {
    let h = Harness::with_config(engine, |c| c.upstream_first_byte_timeout = FIRST_BYTE).await;
    let tls = GarbageListener::start().await;
    let good = console(&h, "good", &h.mock.url(), 90).await;
    let (key_id, key) = limited_key(&h).await;
    let mut answered = 0;
    for (n, f) in faults(&h, &tls).into_iter().enumerate() {
        let bad = console(&h, f.name, &f.url, 10).await;
        let stream = n % 2 == 1;
        let resp = h
            .messages(&key, claude_body(stream, n))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", f.name);
        let text = resp.text().await.unwrap();
        assert!(text.contains("upstream."), "{}: {text}", f.name);
        answered += 1;
        let rests = rests_of(&h, &bad).await;
        assert_eq!(rests[0].class, f.rest, "{}", f.name);
        settled(&h, &[&bad, &good], &key_id).await;
        assert_eq!(usage(&h, buckets::account_total(&bad)).await.requests, 0);
        let on_good = usage(&h, buckets::account_total(&good)).await;
        assert_eq!(on_good.requests, answered, "{}", f.name);
        assert_eq!(on_good.input_tokens, answered * mock::INPUT_TOKENS);
        assert_eq!(on_good.output_tokens, answered * mock::OUTPUT_TOKENS);
        delete_account(&h, &bad).await;
    }
    rests_nothing(&h, &good).await;
    let total = usage(&h, buckets::key_total(&key_id)).await;
    assert_eq!(total.requests, answered);
    let records = h
        .relay()
        .state
        .store
        .recent_records(&key_id, 100)
        .await
        .unwrap();
    assert_eq!(records.len() as u64, answered);
    assert!(records
        .iter()
        .all(|r| r.account_id == good && r.status == 200));
}

/// Every account fails: the client sees the last failure; all of them rest.
async fn every_account_failing_gives_the_last_error(engine: Engine) {
    let h = Harness::new(engine).await;
    let first = console(&h, "429", &h.mock.scenario_url("status-429"), 10).await;
    let second = console(&h, "529", &h.mock.scenario_url("status-529"), 20).await;
    let (key_id, key) = limited_key(&h).await;
    let resp = h.messages(&key, claude_body(true, 0)).send().await.unwrap();
    assert_eq!(
        anthropic_error(resp).await,
        (529, "overloaded_error".into())
    );
    assert_eq!(rests_of(&h, &first).await[0].class, "rate_limit");
    assert_eq!(rests_of(&h, &second).await[0].class, "overload");
    settled(&h, &[&first, &second], &key_id).await;
    assert_eq!(usage(&h, buckets::key_total(&key_id)).await.requests, 0);
    // Both rest: the next request finds no account, 503 in the caller's shape.
    let resp = h
        .messages(&key, claude_body(false, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "10");
    assert_eq!(
        anthropic_error(resp).await,
        (503, "overloaded_error".into())
    );
    let (s, _) = openai_error(openai(&h, &key, 2).send().await.unwrap()).await;
    assert_eq!(s, 503);
    settled(&h, &[&first, &second], &key_id).await;
}

/// One streamed answer from an account behaving as `scenario`: its text, the account, the key.
async fn one_stream(h: &Harness, scenario: &str) -> (String, String, String) {
    let id = console(h, scenario, &h.mock.scenario_url(scenario), 10).await;
    let (key_id, key) = limited_key(h).await;
    let resp = h.messages(&key, claude_body(true, 0)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    settled(h, &[&id], &key_id).await;
    rests_nothing(h, &id).await;
    (text, id, key_id)
}

/// The connection is reset after the first events: the client is told inside the stream, and
/// what was streamed is billed by the documented estimate: message_start's input and cache
/// figures, and one output token per byte of delivered text ("Hello").
async fn reset_mid_stream_keeps_partial_usage(engine: Engine) {
    let h = Harness::new(engine).await;
    let (text, id, key_id) = one_stream(&h, "reset").await;
    assert!(text.contains("event: message_start"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    assert!(text.contains("event: error\ndata: "), "{text}");
    assert!(text.contains("\"api_error\""), "{text}");
    for bucket in [buckets::key_total(&key_id), buckets::account_total(&id)] {
        let c = usage(&h, bucket).await;
        assert_eq!(c.requests, 1);
        assert_eq!(c.input_tokens, mock::INPUT_TOKENS);
        assert_eq!(c.cache_read_tokens, mock::CACHE_READ_TOKENS);
        assert_eq!(c.output_tokens, mock::REPLY[0].len() as u64);
    }
    let r = h
        .relay()
        .state
        .store
        .recent_records(&key_id, 1)
        .await
        .unwrap();
    assert!(r[0].usage_estimated);
}

/// Junk lines between the events are relayed as they are; the usage is read around them.
async fn malformed_sse_is_relayed_and_accounted_once(engine: Engine) {
    let h = Harness::new(engine).await;
    let (text, id, key_id) = one_stream(&h, "malformed").await;
    assert!(text.contains("garbage without colon"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    for bucket in [buckets::key_total(&key_id), buckets::account_total(&id)] {
        let c = usage(&h, bucket).await;
        assert_eq!(c.requests, 1);
        assert_eq!(c.input_tokens, mock::INPUT_TOKENS);
        assert_eq!(c.output_tokens, mock::OUTPUT_TOKENS);
    }
}

/// A stream that ends without `message_stop` (but after `message_delta`): relayed as it came,
/// billed once with everything it reported.
async fn stream_without_message_stop_is_accounted_once(engine: Engine) {
    let h = Harness::new(engine).await;
    let (text, id, key_id) = one_stream(&h, "no-stop").await;
    assert!(text.contains("event: message_delta"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    for bucket in [buckets::key_total(&key_id), buckets::account_total(&id)] {
        let c = usage(&h, bucket).await;
        assert_eq!(c.requests, 1);
        assert_eq!(c.input_tokens, mock::INPUT_TOKENS);
        assert_eq!(c.output_tokens, mock::OUTPUT_TOKENS);
    }
}

/// The client goes away while the relay waits for the upstream's headers (plain and stream
/// requests), right after the response headers, and in the middle of the stream.
async fn client_disconnects_at_every_stage(engine: Engine) {
    let h = Harness::new(engine).await;
    let store = h.relay().state.store.clone();

    // 1. Before headers: the upstream is slow, the client gives up (its request is dropped).
    let slow = console(&h, "slow", &h.mock.scenario_url("slow-1500"), 10).await;
    let (key_id, key) = limited_key(&h).await;
    for (n, stream) in [(0, false), (1, true)] {
        let seen = h.mock.log.count();
        let req = h.messages(&key, claude_body(stream, n));
        let pending = tokio::spawn(async move { req.send().await });
        for _ in 0..250 {
            if h.mock.log.count() > seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(h.mock.log.count(), seen + 1, "the request reached upstream");
        // In flight: the request holds its account slot and its key slot.
        assert_eq!(
            store
                .count_leases(&account_lease_scope(&slow))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store.count_leases(&key_lease_scope(&key_id)).await.unwrap(),
            1
        );
        pending.abort();
        assert!(pending.await.unwrap_err().is_cancelled());
        settled(&h, &[&slow], &key_id).await;
        rests_nothing(&h, &slow).await;
    }
    assert_eq!(usage(&h, buckets::key_total(&key_id)).await.requests, 0);
    delete_account(&h, &slow).await;

    // 2. Mid-stream: the client reads message_start, then leaves. What was streamed is billed.
    let drip = console(&h, "drip", &h.mock.scenario_url("drip-200"), 10).await;
    let (key_id, key) = limited_key(&h).await;
    let resp = h.messages(&key, claude_body(true, 2)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("message_start") {
        got.extend_from_slice(&stream.next().await.unwrap().unwrap());
    }
    drop(stream);
    settled(&h, &[&drip], &key_id).await;
    rests_nothing(&h, &drip).await;
    let c = usage(&h, buckets::key_total(&key_id)).await;
    assert_eq!(c.requests, 1);
    assert_eq!(c.input_tokens, mock::INPUT_TOKENS);
    assert_eq!(c.output_tokens, 1);

    // 3. Right after the headers, before any event was read: the relay may or may not have
    // read the first event when it notices, so the input billed is message_start's or, when
    // the upstream had said nothing yet, the prompt's estimate (a token per three bytes of
    // the body the upstream got), once.
    let (key_id, key) = limited_key(&h).await;
    let body = claude_body(true, 3);
    let estimate = (serde_json::to_vec(&body).unwrap().len() as u64).div_ceil(3);
    let resp = h.messages(&key, body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    settled(&h, &[&drip], &key_id).await;
    let c = usage(&h, buckets::key_total(&key_id)).await;
    assert!(c.requests <= 1, "{c:?}");
    assert!(
        c.requests == 0 || [mock::INPUT_TOKENS, estimate].contains(&c.input_tokens),
        "{c:?}"
    );
    assert!(c.output_tokens <= 1, "{c:?}");
    assert!(
        h.mock
            .log
            .streams_completed
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0,
        "no abandoned stream ran to its end"
    );
}

// ---------------------------------------------------------------------------------------------
// The store.

/// Redis cannot be reached at start: the start tries again for `REDIS_CONNECT_WAIT_SECS`,
/// then fails with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unavailable_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crs::config::Config::for_tests(dir.path().to_path_buf());
    let port = free_port();
    config.redis_url = Some(format!("redis://127.0.0.1:{port}/"));
    config.redis_connect_wait = Duration::from_millis(1500);
    let started = Instant::now();
    let err = match crs::start(config).await {
        Ok(_) => panic!("started without Redis"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("Redis"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(
        err.contains("attempts in"),
        "it tried more than once: {err}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited"
    );
}

/// Redis comes up after the relay started (a compose file, a reboot): the start waits for it
/// and then serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_redis_to_come_up() {
    let mut redis = RestartableRedis::start();
    redis.kill();
    let dir = tempfile::tempdir().unwrap();
    let mut config = crs::config::Config::for_tests(dir.path().to_path_buf());
    config.redis_url = Some(redis.url());
    config.redis_connect_wait = Duration::from_secs(30);
    let starting = tokio::spawn(crs::start(config));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!starting.is_finished(), "the start waits for Redis");
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    let relay = tokio::time::timeout(Duration::from_secs(20), starting)
        .await
        .expect("started soon after Redis came up")
        .unwrap()
        .expect("started");
    let health = reqwest::get(format!("{}/health", relay.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    relay.stop().await;
    drop(redis);
}

/// A `redis-server` that keeps its data across a kill (append-only file, fsync on every
/// write) and can be started again on the same port.
struct RestartableRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RestartableRedis {
    fn start() -> Self {
        let mut r = RestartableRedis {
            child: None,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
        };
        for _ in 0..5 {
            r.port = free_port();
            if r.spawn() {
                return r;
            }
        }
        panic!("could not start redis-server");
    }

    fn spawn(&mut self) -> bool {
        let bin = std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
        let mut child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not start again on port {}", self.port);
    }
}

impl Drop for RestartableRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Redis dies under a running relay: requests fail fast with 503 in the caller's shape; once
/// it is back on the same port, they succeed again without a relay restart, and the leases
/// and counters are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_during_traffic() {
    let mut redis = RestartableRedis::start();
    let url = redis.url();
    let h = Harness::with_config(Engine::Redis, |c| c.redis_url = Some(url)).await;
    let account = console(&h, "main", &h.mock.url(), 10).await;
    let (key_id, key) = limited_key(&h).await;
    let mut answered = 0;
    for n in 0..2 {
        let resp = h
            .messages(&key, claude_body(n == 1, n))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
        answered += 1;
    }
    settled(&h, &[&account], &key_id).await;
    assert_eq!(usage(&h, buckets::key_total(&key_id)).await.requests, 2);

    redis.kill();
    for n in 0..3 {
        let t = Instant::now();
        let resp = h
            .messages(&key, claude_body(n == 1, 10 + n))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["retry-after"], "10");
        assert_eq!(
            anthropic_error(resp).await,
            (503, "overloaded_error".into())
        );
        let (s, kind) = openai_error(openai(&h, &key, 10 + n).send().await.unwrap()).await;
        assert_eq!((s, kind.as_str()), (503, "overloaded_error"));
        eprintln!("503 while Redis is down after {:?}", t.elapsed());
    }
    assert_eq!(
        h.mock.log.count(),
        2,
        "nothing reached upstream while Redis was down"
    );

    redis.restart();
    let mut recovered = false;
    for n in 0..100 {
        let resp = h
            .messages(&key, claude_body(false, 20 + n))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => {
                resp.text().await.unwrap();
                answered += 1;
                recovered = true;
                break;
            }
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            s => panic!("unexpected {s} while Redis comes back"),
        }
    }
    assert!(recovered, "requests never succeeded after Redis came back");
    for n in 0..3 {
        let resp = h
            .messages(&key, claude_body(n == 1, 200 + n))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
        answered += 1;
    }
    settled(&h, &[&account], &key_id).await;
    for bucket in [
        buckets::key_total(&key_id),
        buckets::account_total(&account),
    ] {
        let c = usage(&h, bucket).await;
        assert_eq!(c.requests, answered);
        assert_eq!(c.input_tokens, answered * mock::INPUT_TOKENS);
        assert_eq!(c.output_tokens, answered * mock::OUTPUT_TOKENS);
    }
    // The relay's own writes work again (an admin write, a read back).
    let (s, v) = h.admin(Method::GET, "/admin/api-keys", None).await;
    assert_eq!(s, 200, "{v}");
}

/// Runs the built `crs` binary on `data_dir` and waits until it answers.
async fn spawn_crs(data_dir: &std::path::Path, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crs"))
        .current_dir(data_dir)
        .env_clear()
        .env("DATA_DIR", data_dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("ENCRYPTION_KEY", "fault-matrix-encryption-key-0123456789")
        .env("ADMIN_PASSWORD", "admin-password-1")
        .env(
            "PRICING_FILE",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../resources/model-pricing/model_prices_and_context_window.json"
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run crs");
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("crs exited: {status}");
        }
        let health = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await;
        if health.is_ok_and(|r| r.status() == 200) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("crs did not answer on port {port}");
}

async fn admin_token(http: &reqwest::Client, base: &str) -> String {
    let r: Value = http
        .post(format!("{base}/web/auth/login"))
        .json(&json!({"username": "admin", "password": "admin-password-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

/// The embedded store's process is killed (SIGKILL) while key creations are in flight; on the
/// next start, every creation that was acknowledged is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_acknowledged_writes_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_crs(dir.path(), port).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let token = admin_token(&http, &base).await;
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (http, base, token, acked) = (http.clone(), base.clone(), token.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let sent = http
                    .post(format!("{base}/admin/api-keys"))
                    .bearer_auth(&token)
                    .json(&json!({"name": format!("writer {w} key {i}")}))
                    .send()
                    .await;
                let Ok(resp) = sent else { return };
                if resp.status() != 200 {
                    return;
                }
                let Ok(v) = resp.json::<Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .push(v["data"]["id"].as_str().unwrap().to_string());
            }
        }));
    }
    for _ in 0..1500 {
        if acked.lock().len() >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL, writes in flight
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() >= 30,
        "only {} writes acknowledged",
        acked.len()
    );

    let port = free_port();
    let mut child = spawn_crs(dir.path(), port).await;
    let base = format!("http://127.0.0.1:{port}");
    let token = admin_token(&http, &base).await;
    let list: Value = http
        .get(format!("{base}/admin/api-keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let stored: std::collections::HashSet<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost",
        lost.len(),
        acked.len()
    );
}
