//! How many Redis round trips and commands one relayed request costs, measured on the wire: a
//! counting TCP proxy sits between the relay and its throwaway `redis-server`, and
//! `INFO commandstats` gives the commands.

mod common;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use common::{body, Engine, Harness};
use crs::{store::buckets, testing::RedisServer};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Counts client→server bursts: each time the client speaks after the server did (or first),
/// that is one round trip.
#[derive(Default)]
struct Counter {
    round_trips: AtomicU64,
    /// 0 = nobody yet, 1 = client spoke last, 2 = server spoke last.
    last: AtomicU64,
}

async fn proxy(target: u16) -> (u16, Arc<Counter>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counter = Arc::new(Counter::default());
    let c = counter.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    // Counted before forwarding, so the answer cannot overtake the count.
                    if up.last.swap(1, Ordering::SeqCst) != 1 {
                        up.round_trips.fetch_add(1, Ordering::SeqCst);
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let down = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    down.last.store(2, Ordering::SeqCst);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, counter)
}

async fn commands(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter(|l| {
            l.starts_with("cmdstat_")
                && !l.starts_with("cmdstat_info")
                && !l.starts_with("cmdstat_config")
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_request_costs_one_redis_round_trip_and_a_share_of_one_write() {
    // The key comes from memory (checked by the scheduling script): scheduling is the trip.
    measure(json!({}), 1).await;
}

/// A key with limits: admission (which checks the key copy), scheduling, and settlement of
/// the reservation after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_limits_costs_one_more_round_trip() {
    measure(
        json!({"dailyCostLimit": 100, "concurrencyLimit": 10, "rateLimitWindow": 60, "rateLimitRequests": 1000,
               "platformLimits": {"claude": {"totalCost": 100}}, "modelLimits": {"claude-sonnet-*": {"dailyCost": 100}}}),
        3,
    )
    .await;
}

async fn measure(limits: serde_json::Value, expected: u64) {
    let redis = RedisServer::start();
    let (port, counter) = proxy(redis.port).await;
    // Usage is written in coalesced batches; here one batch per measured run, written when
    // the test asks, so the count is exact: per-request trips × n + 1.
    let h = Harness::with_config(Engine::Embedded, |c| {
        c.redis_url = Some(format!("redis://127.0.0.1:{port}/"));
        c.accounting_flush = std::time::Duration::from_secs(600);
    })
    .await;
    let recorder = h.relay().state.recorder.clone();
    let account = h.account("main", None, 50).await;
    let (key_id, key) = h.key(limits).await;
    // Warm-up: scripts get loaded and the account list cached.
    for stream in [false, true] {
        assert_eq!(
            h.messages(&key, body(stream))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // A request's usage is queued as its body ends, possibly just after the client has it.
    let total = buckets::key_total(&key_id);
    for _ in 0..200 {
        recorder.flush().await;
        let c = h
            .relay()
            .state
            .store
            .usage(std::slice::from_ref(&total))
            .await
            .unwrap()[0];
        if c.requests == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.wait_requests(&total, 2).await;

    // The test reads counters on its own connection, so the proxy sees only the relay.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut direct = client.get_multiplexed_async_connection().await.unwrap();
    let requests_key = format!("crs:usage:{}", buckets::key_total(&key_id));
    for stream in [false, true] {
        let n = 20u64;
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut direct)
            .await
            .unwrap();
        let before = counter.round_trips.load(Ordering::SeqCst);
        let writes_before = recorder.writes();
        let done: u64 = redis::cmd("HGET")
            .arg(&requests_key)
            .arg("r")
            .query_async(&mut direct)
            .await
            .unwrap();
        for _ in 0..n {
            let resp = h.messages(&key, body(stream)).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        }
        // Settlements run off the response path: let them land (the lease set empties).
        let leases = format!("crs:lease:acct:{account}");
        let mut polls = 0u64;
        for _ in 0..200 {
            polls += 1;
            let held: u64 = redis::cmd("ZCARD")
                .arg(&leases)
                .query_async(&mut direct)
                .await
                .unwrap();
            if held == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The last usage is queued as its body ends, maybe just after the client has it.
        let mut now = done;
        for _ in 0..200 {
            recorder.flush().await;
            now = redis::cmd("HGET")
                .arg(&requests_key)
                .arg("r")
                .query_async(&mut direct)
                .await
                .unwrap();
            polls += 1;
            if now == done + n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(now, done + n, "every request recorded");
        let writes = recorder.writes() - writes_before;
        assert!(
            (1..=2).contains(&writes),
            "{n} requests' usage in {writes} writes"
        );
        let rts = counter.round_trips.load(Ordering::SeqCst) - before;
        let per_request = (rts - writes) as f64 / n as f64;
        let cmds = commands(&redis).await - 1 - polls; // minus the test's own reads
        let cmds_per_request = cmds as f64 / n as f64;
        eprintln!(
            "redis per relayed request (stream={stream}, expected {expected}): {per_request:.2} round trips + {writes} batched write(s) for {n}, {cmds_per_request:.1} commands"
        );
        // Scheduling reaches Redis once (admission and settlement once more each, for a key
        // with limits), and the usage of all n requests is one write. A settlement runs off
        // the response path, so it may share its trip with the next request's admission (the
        // connection is multiplexed): the count is at most, not exactly, this.
        let most = expected * n + writes;
        assert!(rts <= most, "round trips for {n} requests: {rts} > {most}");
        assert!(
            rts + n >= most,
            "round trips for {n} requests: {rts}, far below {most}: was something not sent?"
        );
    }
}
