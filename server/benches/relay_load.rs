//! Relay overhead under load: the `crs` binary relaying Anthropic Messages to the project's
//! own `mock-upstream` (zero delay), compared with the same requests sent straight at the
//! mock. Both run as separate processes; the load generator runs here, on one shared
//! HTTP/1.1 client with a fixed number of back-to-back workers per cell.
//!
//! `cargo bench -p server --bench relay_load` (options after `--`: `--seconds N` (default 10;
//! a default run takes about 5 minutes),
//! `--concurrency 1,16,64`, `--engine embedded|redis`, `--quick` = 2 s per cell at 1,16).
//! Prints a markdown table, the relay's RSS and, for Redis, commands per relayed request.
//! A benchmark, not a test: nothing here asserts a time; only non-200 answers are counted
//! (and reported) as errors.

use std::{
    collections::HashMap,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod support;

use crs::testing::{free_port, RedisServer};
use serde_json::json;
use support::{mb, rss_kb, Proc};

const BODY: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}"#;
const STREAM_BODY: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
const WARM_UP: Duration = Duration::from_secs(1);
const PASSWORD: &str = "bench-admin-password";

struct Args {
    seconds: f64,
    concurrency: Vec<usize>,
    engines: Vec<&'static str>,
}

fn args() -> Args {
    let f = support::Flags::from_env(&["seconds", "concurrency", "engine"], &["quick"]);
    let quick = f.has("quick");
    Args {
        seconds: f.get("seconds").unwrap_or(if quick { 2.0 } else { 10.0 }),
        concurrency: match f.str("concurrency") {
            Some(list) => list
                .split(',')
                .map(|c| c.trim().parse().expect("--concurrency 1,16,64"))
                .collect(),
            None if quick => vec![1, 16],
            None => vec![1, 16, 64, 256],
        },
        engines: f.engines(),
    }
}

fn wait_port(child: &mut Child, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within 10 s");
}

#[derive(Default)]
struct Stats {
    ok: usize,
    errors: usize,
    first_errors: Vec<String>,
    elapsed: Duration,
    /// Whole request (body read to its end), sorted.
    total: Vec<Duration>,
    /// Time to the first body chunk (streams), sorted.
    ttfb: Vec<Duration>,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Percentile in ms of a sorted list (nearest rank).
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// One request; `Ok((ttfb, total))` only for a 200 with a complete body.
async fn one(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    stream: bool,
) -> Result<(Duration, Duration), String> {
    let start = Instant::now();
    let mut resp = client
        .post(url)
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(if stream { STREAM_BODY } else { BODY })
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let mut body = Vec::new();
    let mut ttfb = None;
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("body: {e}"))? {
        ttfb.get_or_insert_with(|| start.elapsed());
        body.extend_from_slice(&chunk);
    }
    let total = start.elapsed();
    if status != 200 {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    // A stream cut short would look fast; only a complete answer counts.
    if stream && !body.windows(12).any(|w| w == b"message_stop") {
        return Err("stream without message_stop".into());
    }
    Ok((ttfb.unwrap_or(total), total))
}

/// `concurrency` workers sending back to back for `duration`; a request started before the
/// deadline is finished and counted.
async fn load(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    stream: bool,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.to_string(), key.to_string());
            tokio::spawn(async move {
                let mut s = Stats::default();
                while Instant::now() < deadline {
                    match one(&client, &url, &key, stream).await {
                        Ok((ttfb, total)) => {
                            s.ok += 1;
                            s.ttfb.push(ttfb);
                            s.total.push(total);
                        }
                        Err(e) => {
                            s.errors += 1;
                            if s.first_errors.len() < 3 {
                                s.first_errors.push(e);
                            }
                        }
                    }
                }
                s
            })
        })
        .collect();
    let mut all = Stats::default();
    for w in workers {
        let s = w.await.expect("load worker panicked");
        all.ok += s.ok;
        all.errors += s.errors;
        all.first_errors.extend(s.first_errors);
        all.total.extend(s.total);
        all.ttfb.extend(s.ttfb);
    }
    all.first_errors.truncate(5);
    all.elapsed = start.elapsed();
    all.total.sort_unstable();
    all.ttfb.sort_unstable();
    all
}

/// `calls` per command from `INFO commandstats`, and `total_commands_processed`.
type Counts = (HashMap<String, u64>, u64);

async fn redis_counts(con: &mut redis::aio::MultiplexedConnection) -> Counts {
    let cmdstats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .expect("INFO commandstats");
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(con)
        .await
        .expect("INFO stats");
    // Lines like `cmdstat_hincrby:calls=12,usec=34,...`.
    let calls = cmdstats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), n))
        })
        .collect();
    let total = stats
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed in INFO stats");
    (calls, total)
}

/// Commands between two snapshots without the first snapshot's own INFO calls: the total,
/// and per command, most first.
fn delta(before: &Counts, after: &Counts) -> (u64, Vec<(String, u64)>) {
    let was = |n: &str| before.0.get(n).copied().unwrap_or(0);
    let mut by: Vec<(String, u64)> = after
        .0
        .iter()
        .map(|(n, &v)| (n.clone(), v - was(n)))
        .filter(|(n, d)| *d > 0 && n != "info")
        .collect();
    by.sort_by_key(|d| std::cmp::Reverse(d.1));
    let info = after.0.get("info").copied().unwrap_or(0) - was("info");
    (after.1 - before.1 - info, by)
}

/// The relay process with a bench admin, one Claude Console account on the mock, one key.
struct Relay {
    proc: Proc,
    port: u16,
    key: String,
    _dir: tempfile::TempDir,
}

async fn start_relay(
    engine: &str,
    redis_url: &str,
    mock_port: u16,
    client: &reqwest::Client,
) -> Relay {
    let dir = tempfile::tempdir().expect("temp dir for the relay");
    let port = free_port();
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let log = std::fs::File::create(dir.path().join("relay.log")).expect("relay log file");
    let child = Command::new(env!("CARGO_BIN_EXE_crs"))
        // Not the crate dir: the relay reads a `.env` from its working directory upwards.
        .current_dir(dir.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path().join("data"))
        .env("ADMIN_USERNAME", "admin")
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("ENCRYPTION_KEY", "bench-encryption-key-0123456789abcdef")
        .env("LOG_LEVEL", "warn")
        .env(
            "PRICING_FILE",
            Path::new(workspace)
                .join("resources/model-pricing/model_prices_and_context_window.json"),
        )
        .env("SITE_ROOT", dir.path())
        .env("REDIS_URL", redis_url)
        .stdout(log.try_clone().expect("relay log handle"))
        .stderr(log)
        .spawn()
        .expect("start the crs binary");
    let mut proc = Proc(child);
    wait_port(&mut proc.0, port, "the relay");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.get(format!("{base}/health")).send().await;
        if matches!(&r, Ok(r) if r.status() == 200) {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default();
            panic!("relay ({engine}) /health never answered 200: {r:?}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login = support::admin_post(
        client,
        &base,
        "/web/auth/login",
        json!({"username": "admin", "password": PASSWORD}),
        None,
    )
    .await;
    let token = login["token"].as_str().expect("login token").to_string();
    support::admin_post(
        client,
        &base,
        "/admin/claude-console-accounts",
        json!({"name": "bench", "apiUrl": format!("http://127.0.0.1:{mock_port}"),
               "apiKey": "sk-ant-bench", "priority": 1}),
        Some(&token),
    )
    .await;
    let created = support::admin_post(
        client,
        &base,
        "/admin/api-keys",
        json!({"name": "bench"}),
        Some(&token),
    )
    .await;
    let key = created["data"]["apiKey"]
        .as_str()
        .expect("data.apiKey")
        .to_string();
    assert!(key.starts_with("cr_"), "unexpected key {key}");
    Relay {
        proc,
        port,
        key,
        _dir: dir,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(args()));
}

async fn run(a: Args) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let modes = [("non-stream", false), ("stream", true)];
    // Per mode and concurrency: the direct baseline and one relay run per engine.
    let cells = a.engines.len() + 1;
    println!(
        "machine: {cores} cores (load generator, relay and mock share them); {} s per cell after a {} s warm-up; concurrency {:?}; engines {:?}; ~{:.0} s of load in all\n",
        a.seconds,
        WARM_UP.as_secs(),
        a.concurrency,
        a.engines,
        (a.seconds + WARM_UP.as_secs_f64()) * (cells * a.concurrency.len() * 2) as f64
    );
    let max_c = a.concurrency.iter().copied().max().unwrap_or(1);
    let breakdown_c = if a.concurrency.contains(&16) {
        16
    } else {
        a.concurrency[0]
    };
    let secs = Duration::from_secs_f64(a.seconds);
    // One client for everything; enough idle connections that no worker reconnects.
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(max_c * 2)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client");

    let mock_port = free_port();
    let mut mock = start_mock(mock_port);
    let mut mock_peak = 0;
    let direct_url = format!("http://127.0.0.1:{mock_port}/v1/messages");

    // The baseline once per mode and concurrency, reused for every engine.
    let mut direct = HashMap::new();
    for (mode, stream) in modes {
        for &c in &a.concurrency {
            restart_mock(&mut mock, mock_port, &mut mock_peak);
            load(&client, &direct_url, "sk-ant-direct", stream, c, WARM_UP).await;
            let s = load(&client, &direct_url, "sk-ant-direct", stream, c, secs).await;
            report_errors("direct", mode, c, &s);
            direct.insert((mode, c), s);
        }
    }

    println!("| engine | mode | concurrency | relay req/s | direct req/s | relay p50 ms | p90 | p99 | direct p50 | p99 | added p50 ms | added p99 ms | added TTFB p50 ms | errors relay/direct |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    for engine in &a.engines {
        // Kept alive for the whole engine run; `None` for the embedded store.
        let redis_server = (*engine == "redis").then(RedisServer::start);
        let redis_url = redis_server.as_ref().map(|r| r.url()).unwrap_or_default();
        let mut redis_con = match &redis_server {
            Some(r) => Some(
                redis::Client::open(r.url())
                    .expect("redis url")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect to the bench redis-server"),
            ),
            None => None,
        };
        let relay = start_relay(engine, &redis_url, mock_port, &client).await;
        let pid = relay.proc.0.id();
        let relay_url = format!("http://127.0.0.1:{}/v1/messages", relay.port);
        let (idle_rss, _) = rss_kb(pid);
        let mut stream_max_rss = 0;
        for (mode, stream) in modes {
            for &c in &a.concurrency {
                restart_mock(&mut mock, mock_port, &mut mock_peak);
                load(&client, &relay_url, &relay.key, stream, c, WARM_UP).await;
                // Let the warm-up's background writes land before the "before" snapshot.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let before = match redis_con.as_mut() {
                    Some(con) => Some(redis_counts(con).await),
                    None => None,
                };
                let r = load(&client, &relay_url, &relay.key, stream, c, secs).await;
                report_errors(engine, mode, c, &r);
                if let (Some(con), Some(before)) = (redis_con.as_mut(), before) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let (total, by) = delta(&before, &redis_counts(con).await);
                    let per_req = |n: u64| n as f64 / r.ok.max(1) as f64;
                    notes.push(format!(
                        "- redis, {mode}, c={c}: {:.1} commands per relayed request",
                        per_req(total)
                    ));
                    if !stream && c == breakdown_c {
                        let top: Vec<String> = by
                            .iter()
                            .take(8)
                            .map(|(n, d)| format!("{n} {:.2}", per_req(*d)))
                            .collect();
                        notes.push(format!(
                            "  - top commands per request (non-stream, c={c}): {}",
                            top.join(", ")
                        ));
                    }
                }
                if stream && c == max_c {
                    stream_max_rss = rss_kb(pid).0;
                }
                print_row(engine, mode, c, stream, &r, &direct[&(mode, c)]);
            }
        }
        let (_, peak) = rss_kb(pid);
        notes.push(format!(
            "- {engine}: relay RSS idle {}, after stream c={max_c} {}, peak (VmHWM) {}",
            mb(idle_rss),
            mb(stream_max_rss),
            mb(peak)
        ));
        drop(relay);
    }
    println!();
    for n in notes {
        println!("{n}");
    }
    println!("- mock upstream: peak RSS in one cell {}", mb(mock_peak));
    println!("(Redis figures: INFO deltas over each measured run, INFO calls removed; they include the relay's background work during the run.)");
    drop(mock);
}

fn start_mock(port: u16) -> Proc {
    let mut mock = Proc(
        Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start the mock-upstream binary"),
    );
    wait_port(&mut mock.0, port, "the mock upstream");
    mock
}

/// A fresh mock on the same port for every cell: the mock keeps every request it saw in
/// memory (gigabytes over a full run), which would slow it down as the run goes on. The
/// connections to the old one die; the warm-up that follows absorbs the reconnects.
fn restart_mock(mock: &mut Proc, port: u16, peak: &mut u64) {
    *peak = (*peak).max(rss_kb(mock.0.id()).1);
    let _ = mock.0.kill();
    let _ = mock.0.wait();
    *mock = start_mock(port);
}

fn report_errors(who: &str, mode: &str, c: usize, s: &Stats) {
    if s.errors > 0 {
        eprintln!(
            "{who} {mode} c={c}: {} errors, e.g. {:?}",
            s.errors, s.first_errors
        );
    }
}

fn print_row(engine: &str, mode: &str, c: usize, stream: bool, r: &Stats, d: &Stats) {
    let f = |v: f64| format!("{v:.2}");
    let ttfb = if stream {
        f(pct(&r.ttfb, 50.0) - pct(&d.ttfb, 50.0))
    } else {
        "–".into()
    };
    println!(
        "| {engine} | {mode} | {c} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {ttfb} | {}/{} |",
        r.rps(),
        d.rps(),
        f(pct(&r.total, 50.0)),
        f(pct(&r.total, 90.0)),
        f(pct(&r.total, 99.0)),
        f(pct(&d.total, 50.0)),
        f(pct(&d.total, 99.0)),
        f(pct(&r.total, 50.0) - pct(&d.total, 50.0)),
        f(pct(&r.total, 99.0) - pct(&d.total, 99.0)),
        r.errors,
        d.errors,
    );
}
