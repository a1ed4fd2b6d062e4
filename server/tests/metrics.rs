//! `/metrics` after known traffic: counters and histogram counts move by exactly what was
//! sent; the overhead and request-id headers; the optional bearer token. One test function runs
//! both engines in turn, since the metrics recorder is shared by the whole process.

mod common;

use common::{body, Engine, Harness, MODEL};
use serde_json::json;

/// The value of one sample line (`name{labels} value`) whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (n, rest) = match head.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (head, ""),
            };
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

async fn scrape(h: &Harness) -> String {
    let resp = reqwest::get(h.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

async fn traffic_moves_the_metrics(engine: Engine) {
    let h = Harness::new(engine).await;
    h.account("metrics account", None, 10).await;
    let (_, key) = h.key(json!({})).await;
    let (_, limited) = h
        .key(json!({"rateLimitWindow": 1, "rateLimitRequests": 1}))
        .await;
    let before = scrape(&h).await;

    for _ in 0..3 {
        let r = h.messages(&key, body(false)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // The relay's own time, as a header on every relayed answer.
        let overhead: f64 = r.headers()["x-crs-overhead-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..1000.0).contains(&overhead), "{overhead}");
        assert!(r.headers().contains_key("x-request-id"));
        r.bytes().await.unwrap();
    }
    for _ in 0..2 {
        let r = h.messages(&key, body(true)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-crs-overhead-ms"));
        r.bytes().await.unwrap();
    }
    assert_eq!(
        h.messages(&limited, body(false))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        h.messages(&limited, body(false))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    h.wait_requests(&crs::store::buckets::global_total(), 6)
        .await;

    let after = scrape(&h).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let engine_name = h.relay().state.store.engine();
    let base = [
        ("route", "/v1/messages"),
        ("platform", "claude"),
        ("model", MODEL),
        ("status", "200"),
    ];
    let mut non_stream = base.to_vec();
    non_stream.push(("stream", "false"));
    let mut stream = base.to_vec();
    stream.push(("stream", "true"));
    assert_eq!(
        delta("crs_relay_requests_total", &non_stream),
        4.0,
        "{engine_name}"
    );
    assert_eq!(
        delta("crs_relay_requests_total", &stream),
        2.0,
        "{engine_name}"
    );
    let claude = [("platform", "claude")];
    for histogram in [
        "crs_upstream_duration_seconds_count",
        "crs_upstream_first_byte_seconds_count",
        "crs_relay_overhead_seconds_count",
        "crs_request_duration_seconds_count",
    ] {
        assert_eq!(
            delta(histogram, &claude),
            6.0,
            "{histogram} on {engine_name}"
        );
    }
    let input = [("model", MODEL), ("kind", "input")];
    assert_eq!(
        delta("crs_tokens_total", &input),
        6.0 * crs::mock_upstream::INPUT_TOKENS as f64
    );
    assert!(delta("crs_cost_nanodollars_total", &[("model", MODEL)]) > 0.0);
    assert_eq!(
        delta("crs_limit_rejections_total", &[("kind", "window_requests")]),
        1.0
    );
    let rt = [("engine", engine_name), ("op", "pick")];
    assert_eq!(delta("crs_store_round_trip_seconds_count", &rt), 6.0);
    assert_eq!(
        delta(
            "crs_store_round_trip_seconds_count",
            &[("engine", engine_name), ("op", "authenticate")]
        ),
        2.0,
        "7 requests with 2 keys: each key read once, then served from memory"
    );
    assert_eq!(sample(&after, "crs_accounts", &[("state", "normal")]), 1.0);
    // Nothing is in flight once every answer ended.
    assert!(after
        .lines()
        .filter(|l| l.starts_with("crs_upstream_in_flight"))
        .all(|l| l.ends_with(" 0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_on_both_engines() {
    traffic_moves_the_metrics(Engine::Embedded).await;
    traffic_moves_the_metrics(Engine::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_and_request_ids() {
    let h = Harness::with_config(Engine::Embedded, |c| {
        c.metrics_token = Some("scrape-token-123".into())
    })
    .await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(h.url("/metrics")).send().await.unwrap().status(),
        401
    );
    let wrong = http
        .get(h.url("/metrics"))
        .bearer_auth("scrape-token-124")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http
        .get(h.url("/metrics"))
        .bearer_auth("scrape-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Every response carries a request id, errors and pages included; a client's own is kept.
    for path in [
        "/health",
        "/v1/messages",
        "/no/such/route",
        "/admin-next/login",
    ] {
        let r = http.get(h.url(path)).send().await.unwrap();
        assert!(r.headers().contains_key("x-request-id"), "{path}");
    }
    let r = http
        .get(h.url("/health"))
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-id");
}
