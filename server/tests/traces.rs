//! OpenTelemetry traces over OTLP/HTTP: a collector receives, for a relayed request, the
//! request's span and its scheduling, upstream and accounting children.

mod common;

use std::sync::{Arc, Mutex};

use axum::{body::Bytes, routing::post, Router};
use common::{body, Engine, Harness};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_requests_are_traced_to_the_collector() {
    let got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = got.clone();
    let collector = Router::new().route(
        "/v1/traces",
        post(move |b: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().extend_from_slice(&b);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let provider = crs::telemetry::otlp_tracer_provider(&endpoint).unwrap();
    tracing_subscriber::registry()
        .with(crs::telemetry::otel_layer(&provider))
        .init();

    let h = Harness::new(Engine::Embedded).await;
    h.account("traced", None, 10).await;
    let (_, key) = h.key(serde_json::json!({})).await;
    for stream in [false, true] {
        let r = h.messages(&key, body(stream)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    h.wait_requests(&crs::store::buckets::global_total(), 2)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    assert!(flushed.is_ok(), "{flushed:?}");

    // OTLP/protobuf carries span names and attributes as plain UTF-8 strings.
    let bytes = got.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&bytes);
    for name in [
        "relay",
        "schedule",
        "upstream",
        "account",
        "crs",
        "/v1/messages",
    ] {
        assert!(text.contains(name), "no {name:?} in the exported spans");
    }
    assert!(text.matches("account").count() >= 2);
}
