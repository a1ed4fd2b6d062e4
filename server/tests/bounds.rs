//! Bounds a trusted proxy keeps: a body over REQUEST_MAX_SIZE_MB is refused with 413 in the
//! caller's protocol (before anything reaches an upstream), whether or not the client said
//! how long it was; oversized headers are refused, not buffered, and the relay keeps serving.

mod common;

use common::{body, Engine, Harness, MODEL};
use futures_util::stream;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 4096;

/// (path, extra headers, body, the shape to expect)
fn surfaces() -> Vec<(&'static str, &'static str, Value)> {
    let pad = "x".repeat(2 * LIMIT);
    let mut claude = body(false);
    claude["messages"][0]["content"] = json!(pad);
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": pad}]});
    let responses = json!({"model": "gpt-5", "input": pad});
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": pad}]}]});
    vec![
        ("/v1/messages", "anthropic", claude.clone()),
        ("/api/v1/messages", "anthropic", claude.clone()),
        ("/v1/messages/count_tokens", "anthropic", claude),
        ("/api/v1/chat/completions", "openai", chat.clone()),
        ("/openai/claude/v1/chat/completions", "openai", chat.clone()),
        ("/openai/v1/chat/completions", "openai", chat),
        ("/openai/v1/responses", "openai", responses),
        (
            "/gemini/v1beta/models/gemini-2.5-pro:generateContent",
            "gemini",
            gemini.clone(),
        ),
        (
            "/gemini/v1/models/gemini-2.5-pro:streamGenerateContent",
            "gemini",
            gemini,
        ),
    ]
}

fn assert_shape(path: &str, shape: &str, v: &Value) {
    match shape {
        "anthropic" => {
            assert_eq!(v["type"], "error", "{path}: {v}");
            assert_eq!(v["error"]["type"], "request_too_large", "{path}: {v}");
            assert!(v["error"]["message"].is_string(), "{path}: {v}");
        }
        "openai" => {
            assert_eq!(v["error"]["type"], "request_too_large", "{path}: {v}");
            assert!(v["error"]["message"].is_string(), "{path}: {v}");
            assert!(v.get("type").is_none(), "{path}: {v}");
        }
        "gemini" => {
            assert_eq!(v["error"]["code"], 413, "{path}: {v}");
            assert!(v["error"]["status"].is_string(), "{path}: {v}");
            assert!(v["error"]["message"].is_string(), "{path}: {v}");
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_in_the_callers_protocol() {
    let h = Harness::with_config(Engine::Embedded, |c| c.request_max_bytes = LIMIT).await;
    h.account("main", None, 50).await;
    let (_, key) = h.key(json!({})).await;
    for (path, shape, payload) in surfaces() {
        // With a Content-Length …
        let r = h
            .http
            .post(h.url(path))
            .header("x-api-key", &key)
            .header("x-goog-api-key", &key)
            .header("authorization", format!("Bearer {key}"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
        assert!(
            r.headers()[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        assert_shape(path, shape, &r.json().await.unwrap());
        // … and streamed without one (chunked): the limit holds while reading.
        let bytes = serde_json::to_vec(&payload).unwrap();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
        let r = h
            .http
            .post(h.url(path))
            .header("x-api-key", &key)
            .header("x-goog-api-key", &key)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path} (chunked)");
        assert_shape(path, shape, &r.json().await.unwrap());
    }
    assert_eq!(h.mock.log.count(), 0, "nothing oversized went upstream");
    // A body under the limit goes through.
    let r = h.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Sends raw bytes on a fresh connection; what came back (possibly nothing, if the server
/// closed the connection while we were still writing).
async fn raw(h: &Harness, request: &[u8]) -> String {
    let addr = h.url("").trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_relay_keeps_serving() {
    let h = Harness::new(Engine::Embedded).await;
    let huge = "a".repeat(1 << 20);
    let many: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
    for (what, request) in [
        (
            "one 1 MiB header",
            format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n"),
        ),
        (
            "500 headers",
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{many}\r\n"),
        ),
        (
            "a 1 MiB request line",
            format!("GET /health?{huge} HTTP/1.1\r\nhost: x\r\n\r\n"),
        ),
    ] {
        let answer = raw(&h, request.as_bytes()).await;
        let status_line = answer.lines().next().unwrap_or_default().to_string();
        assert!(
            // Empty only if the reset after the 431 overtook it on the wire.
            status_line.is_empty() || status_line.contains(" 431 "),
            "{what}: {status_line}"
        );
        assert!(!status_line.contains(" 200 "), "{what} was accepted");
        // Still serving.
        let ok = h.http.get(h.url("/health")).send().await.unwrap();
        assert_eq!(ok.status(), 200, "after {what}");
    }
    // A sane request on a raw connection is answered (the check above is not vacuous).
    let answer = raw(
        &h,
        b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
