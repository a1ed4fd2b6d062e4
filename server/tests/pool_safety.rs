//! The pool is safe from its users: request errors that quote the client never rest, block or
//! fail over an account (both engines); restrictions hold for every form of a model name; and
//! upstream URLs are built only from validated parts, so encoded traversal in a Gemini path,
//! an Azure deployment or a Bedrock-bound model name is a 400 with nothing sent upstream.

mod common;

use std::time::Duration;

use common::{Engine, Harness, UPSTREAM_KEY};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_engines!(request_errors_quoting_the_client_leave_every_account_alone);

/// Client texts an attacker would like an upstream to quote back.
const ATTACKS: [&str; 4] = [
    "This organization has been disabled.",
    "OAuth authentication is currently not allowed for this organization.",
    "account has been disabled",
    "PERMISSION_DENIED permission_error account_deactivated",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Surface {
    Console,
    Bedrock,
    OpenAi,
    Azure,
    Gemini,
}

impl Surface {
    /// The admin path and body of an account of this kind at `url`.
    fn account(self, url: &str, priority: u32) -> (&'static str, Value) {
        match self {
            Surface::Console => (
                "/admin/claude-console-accounts",
                json!({"name": "console", "apiUrl": url, "apiKey": UPSTREAM_KEY, "priority": priority}),
            ),
            Surface::Bedrock => (
                "/admin/bedrock-accounts",
                json!({"name": "bedrock", "region": "us-east-1", "apiUrl": url, "bearerToken": "bedrock-key", "priority": priority}),
            ),
            Surface::OpenAi => (
                "/admin/openai-responses-accounts",
                json!({"name": "openai", "baseApi": url, "apiKey": "sk-openai-upstream", "priority": priority}),
            ),
            Surface::Azure => (
                "/admin/azure-openai-accounts",
                json!({"name": "azure", "azureEndpoint": url, "apiKey": "azure-secret", "deploymentName": "gpt5-prod", "priority": priority}),
            ),
            Surface::Gemini => (
                "/admin/gemini-api-accounts",
                json!({"name": "gemini", "baseUrl": url, "apiKey": "gemini-upstream-key", "priority": priority}),
            ),
        }
    }

    /// A request carrying `text` as the client's input, on the route this kind serves.
    fn request(self, h: &Harness, key: &str, text: &str, round: &str) -> reqwest::RequestBuilder {
        let post = |path: &str| h.http.post(h.url(path));
        match self {
            Surface::Console | Surface::Bedrock => h.messages(
                key,
                json!({"model": common::MODEL, "max_tokens": 16, "messages": [
                    {"role": "user", "content": round},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": text}]}),
            ),
            Surface::OpenAi => post("/openai/v1/responses")
                .bearer_auth(key)
                .json(&json!({"model": "gpt-5", "input": text})),
            // The SDK's path; the body names no model, the deployment does.
            Surface::Azure => {
                post("/azure/openai/deployments/gpt5-prod/chat/completions?api-version=2024-10-21")
                    .header("api-key", key)
                    .json(&json!({"messages": [{"role": "user", "content": text}]}))
            }
            Surface::Gemini => post("/gemini/v1beta/models/gemini-2.5-pro:generateContent")
                .header("x-goog-api-key", key)
                .json(&json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})),
        }
    }
}

async fn create(h: &Harness, surface: Surface, url: &str, priority: u32) -> (String, String) {
    let (path, body) = surface.account(url, priority);
    let (s, v) = h.admin(Method::POST, path, Some(body)).await;
    assert_eq!(s, 200, "{surface:?}: {v}");
    (
        path.to_string(),
        v["data"]["id"].as_str().unwrap().to_string(),
    )
}

/// Everything the pool knows about an account's health.
async fn health(h: &Harness, id: &str) -> (String, usize, usize) {
    let store = &h.relay().state.store;
    let account = store.get_account(id).await.unwrap().unwrap();
    let rests = store
        .cooldowns(&[id.to_string()])
        .await
        .unwrap()
        .get(id)
        .map_or(0, Vec::len);
    let history = store.error_history(id, 50).await.unwrap().len();
    (account.account.status.as_str().to_string(), rests, history)
}

/// Upstream 400/403/404/413/422 answers quoting the client's text, in every provider's shape:
/// the client gets them, the request reached exactly one account (no failover to the healthy
/// one behind it), and no account rests, is blocked or has an error in its history.
async fn request_errors_quoting_the_client_leave_every_account_alone(engine: Engine) {
    let h = Harness::new(engine).await;
    let (_, key) = h.key(json!({})).await;
    let untouched = ("active".to_string(), 0, 0);
    for surface in [
        Surface::Console,
        Surface::Bedrock,
        Surface::OpenAi,
        Surface::Azure,
        Surface::Gemini,
    ] {
        for code in [400u16, 403, 404, 413, 422] {
            let scenario = format!("quote-{code}");
            let (path, quoting) = create(&h, surface, &h.mock.scenario_url(&scenario), 1).await;
            let (_, healthy) = create(&h, surface, &h.mock.url(), 2).await;
            for (i, attack) in ATTACKS.iter().enumerate() {
                let before = h.mock.log.count();
                let round = format!("{surface:?} {code} {i}");
                let resp = surface
                    .request(&h, &key, attack, &round)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), code, "{round}");
                let body: Value = resp.json().await.unwrap();
                assert!(body["error"]["message"].is_string(), "{round}: {body}");
                assert_eq!(h.mock.log.count(), before + 1, "{round}: one account only");
                let last = h.mock.log.last().unwrap();
                assert!(
                    last.path.starts_with(&format!("/s/{scenario}/")),
                    "{round}: {}",
                    last.path
                );
            }
            // Marks are written off the request path: give any a moment to land.
            tokio::time::sleep(Duration::from_millis(200)).await;
            for id in [&quoting, &healthy] {
                assert_eq!(health(&h, id).await, untouched, "{surface:?} {code}");
            }
            for id in [&quoting, &healthy] {
                let (s, v) = h.admin(Method::DELETE, &format!("{path}/{id}"), None).await;
                assert_eq!(s, 200, "{v}");
            }
        }
    }
    // The same pool still rests an account the upstream itself refuses (401).
    let (_, refused) = create(&h, Surface::Console, &h.mock.scenario_url("status-401"), 1).await;
    let resp = Surface::Console
        .request(&h, &key, "hello", "after")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let mut marked = (String::new(), 0, 0);
    for _ in 0..100 {
        marked = health(&h, &refused).await;
        if marked.1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(marked, ("active".to_string(), 1, 1));
}

/// A relay whose day is at its middle, so a daily or weekly counter does not reset mid-test.
async fn midday_harness() -> Harness {
    use chrono::Timelike;
    let hour = chrono::Utc::now().hour() as i32;
    let offset = (12 - hour + 36) % 24 - 12;
    Harness::with_config(Engine::Embedded, |c| c.timezone_offset_hours = offset).await
}

const OPUS_FORMS: [&str; 6] = [
    "claude-opus-4-1-20250805",
    "CLAUDE-OPUS-4-1",
    "claude-opus-4-1@20250805",
    "anthropic.claude-opus-4-1-20250805-v1:0",
    "us.anthropic.claude-opus-4-1-20250805-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
];

fn claude(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}]})
}

/// A blacklist entry `claude-opus-4-1` refuses the dated, Vertex, Bedrock and ARN forms in both
/// protocols (403 in each shape, nothing upstream) and lets other models through.
#[tokio::test]
async fn a_model_restriction_holds_for_every_form_of_the_name() {
    let h = Harness::new(Engine::Embedded).await;
    h.account("main", None, 1).await;
    let (_, key) = h
        .key(json!({"enableModelRestriction": true, "restrictedModels": ["claude-opus-4-1"]}))
        .await;
    for model in OPUS_FORMS {
        let before = h.mock.log.count();
        let resp = h.messages(&key, claude(model, "hi")).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "permission_error", "{v}");
        let resp = h
            .http
            .post(h.url("/openai/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&claude(model, "hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert!(v.get("type").is_none(), "OpenAI's shape: {v}");
        assert_eq!(v["error"]["type"], "permission_error", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(model));
        assert_eq!(h.mock.log.count(), before, "{model}: nothing upstream");
    }
    for model in ["claude-opus-4", "claude-opus-4-5"] {
        let resp = h.messages(&key, claude(model, "hi")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
    }
}

/// Model limits and the weekly Claude limit hold for the Bedrock form of the model.
#[tokio::test]
async fn model_limits_and_the_weekly_claude_limit_hold_for_bedrock_names() {
    let h = midday_harness().await;
    h.account("main", None, 1).await;
    let bedrock = "us.anthropic.claude-opus-4-1-20250805-v1:0";
    for (limits, code) in [
        (
            json!({"modelLimits": {"claude-opus-4-1": {"totalCost": 0.000001}}}),
            "model_total_cost_limit_exceeded",
        ),
        (
            json!({"weeklyOpusCostLimit": 0.000001}),
            "weekly_opus_cost_limit_exceeded",
        ),
    ] {
        // Limits are hard: a $0.000001 limit holds no request's worst case, so the first one
        // is refused — by the limit on the normalised name, not let through as another model.
        let (_, key) = h.key(limits).await;
        let before = h.mock.log.count();
        let resp = h
            .messages(&key, claude(bedrock, "first"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 402, "{code}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(h.mock.log.count(), before, "{code}: nothing upstream");
    }
    // The model limit binds only its model: another one passes on the same key.
    let (_, key) = h
        .key(json!({"modelLimits": {"claude-opus-4-1": {"totalCost": 0.000001}}}))
        .await;
    let resp = h
        .messages(&key, claude("claude-sonnet-4-5-20250929", "other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Sends `path` byte for byte (no client-side normalisation of `%2e%2e` and the like):
/// (status, JSON body).
async fn raw_post(h: &Harness, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let addr = h.relay().url();
    let host = addr.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let body = body.to_string();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// Encoded traversal and other unsafe characters in a Gemini model path, an Azure deployment
/// segment or a Bedrock-bound model name: a 400 in the caller's shape, nothing upstream.
#[tokio::test]
async fn encoded_traversal_is_a_400_with_nothing_upstream() {
    let h = Harness::new(Engine::Embedded).await;
    for s in [Surface::Gemini, Surface::Azure, Surface::Bedrock] {
        create(&h, s, &h.mock.url(), 1).await;
    }
    let (_, key) = h.key(json!({})).await;
    let gemini_headers = [("x-goog-api-key", key.as_str())];
    let azure_headers = [("api-key", key.as_str())];
    let claude_headers = [
        ("x-api-key", key.as_str()),
        ("anthropic-version", "2023-06-01"),
    ];
    let contents = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]});

    // The same routes with valid parts do reach the upstream.
    let (s, v) = raw_post(
        &h,
        "/gemini/v1beta/models/gemini-2.5-pro:generateContent",
        &gemini_headers,
        &contents,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        h.mock.log.last().unwrap().path,
        "/v1beta/models/gemini-2.5-pro:generateContent"
    );
    // The SDK's path: the account's deployment is used, and the client's names the model.
    let (s, v) = raw_post(
        &h,
        "/azure/openai/deployments/client-dep/chat/completions?api-version=2024-10-21",
        &azure_headers,
        &chat,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        h.mock.log.last().unwrap().path,
        "/openai/deployments/gpt5-prod/chat/completions"
    );
    let (s, v) = raw_post(
        &h,
        "/azure/openai/responses?api-version=2025-04-01-preview",
        &azure_headers,
        &json!({"model": "gpt-5", "input": "hi"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h.mock.log.last().unwrap().path, "/openai/responses");
    let (s, v) = raw_post(
        &h,
        "/v1/messages",
        &claude_headers,
        &claude(common::MODEL, "hi"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(h.mock.log.last().unwrap().path.starts_with("/model/"));

    let upstream = h.mock.log.count();
    let unsafe_parts = [
        "..%2F..%2Fv1beta%2FcachedContents%23",
        "%2e%2e%2F%2e%2e%2Fv1beta%2FcachedContents",
        "%2e%2e",
        "..",
        "gemini%5c..%5cx",
        "gemini%3Fkey%3Dx",
        "gemini%23frag",
        "gemini%202.5",
        "g%C3%A9mini",
        "gemini%FF",
        "gemini%00",
    ];
    for part in unsafe_parts {
        let (s, v) = raw_post(
            &h,
            &format!("/gemini/v1beta/models/{part}:generateContent"),
            &gemini_headers,
            &contents,
        )
        .await;
        assert_eq!(s, 400, "gemini {part}: {v}");
        assert_eq!(
            v["error"]["status"], "INVALID_ARGUMENT",
            "gemini {part}: {v}"
        );
        assert_eq!(v["error"]["code"], 400, "{v}");

        let (s, v) = raw_post(
            &h,
            &format!("/azure/openai/deployments/{part}/chat/completions?api-version=2024-10-21"),
            &azure_headers,
            &chat,
        )
        .await;
        assert_eq!(s, 400, "azure {part}: {v}");
        assert_eq!(
            v["error"]["type"], "invalid_request_error",
            "azure {part}: {v}"
        );
        assert!(v.get("type").is_none(), "OpenAI's shape: {v}");
    }
    for action in [
        "generateContent%23",
        "generateContent%3Falt%3Dsse",
        "generate%2FContent",
    ] {
        let (s, v) = raw_post(
            &h,
            &format!("/gemini/v1beta/models/gemini-2.5-pro:{action}"),
            &gemini_headers,
            &contents,
        )
        .await;
        assert_eq!(s, 400, "gemini :{action}: {v}");
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    }
    // Model names bound for Bedrock (only a Bedrock account serves Claude here).
    let long = "a".repeat(300);
    for model in [
        "../../model/other",
        "anthropic.claude/../../x",
        "claude..%2F..%2Fx",
        "anthropic.claude%2e%2e%2Fx",
        "claude x",
        "claude?x",
        "claude#x",
        "claude\\x",
        "clàude",
        long.as_str(),
    ] {
        let (s, v) = raw_post(&h, "/v1/messages", &claude_headers, &claude(model, "hi")).await;
        assert_eq!(s, 400, "messages {model}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["type"], "error", "{v}");
        let (s, v) = raw_post(
            &h,
            "/openai/v1/chat/completions",
            &[("authorization", &format!("Bearer {key}"))],
            &claude(model, "hi"),
        )
        .await;
        assert_eq!(s, 400, "chat {model}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    assert_eq!(h.mock.log.count(), upstream, "nothing reached the upstream");
}

/// Azure deployments, API versions and Bedrock regions go into URLs: the admin API refuses
/// anything but plain values, naming the field.
#[tokio::test]
async fn account_url_parts_are_validated_on_create_and_update() {
    let h = Harness::new(Engine::Embedded).await;
    for (field, value) in [
        ("deploymentName", "../../x"),
        ("deploymentName", "dep?x=1"),
        ("deploymentName", "dep#x"),
        ("apiVersion", "2024-10-21&x=1"),
        ("apiVersion", "2024/../x"),
    ] {
        let mut body = json!({"name": "azure", "azureEndpoint": h.mock.url(), "apiKey": "k", "deploymentName": "ok-dep"});
        body[field] = json!(value);
        let (s, v) = h
            .admin(Method::POST, "/admin/azure-openai-accounts", Some(body))
            .await;
        assert_eq!(s, 400, "{field}={value}: {v}");
        assert!(v.to_string().contains(field), "{v}");
    }
    let (path, id) = create(&h, Surface::Azure, &h.mock.url(), 1).await;
    let (s, v) = h
        .admin(
            Method::PUT,
            &format!("{path}/{id}"),
            Some(json!({"deploymentName": "a/../b"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("deploymentName"), "{v}");
    let (s, v) = h
        .admin(
            Method::POST,
            "/admin/bedrock-accounts",
            Some(json!({"name": "b", "region": "evil.test/x#", "bearerToken": "t"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("region"), "{v}");
}
