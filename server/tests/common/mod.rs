//! A relay on a free port, the mock upstream, and (for the Redis engine) a throwaway
//! `redis-server`: the real parts, wired together for one test.
#![allow(dead_code)]

use std::time::Duration;

use crs::{config::Config, mock_upstream::MockUpstream, testing::RedisServer, Running};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Engine {
    Embedded,
    Redis,
}

pub struct Harness {
    pub relay: Option<Running>,
    pub mock: MockUpstream,
    pub redis: Option<RedisServer>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub token: String,
    pub engine: Engine,
}

pub const UPSTREAM_KEY: &str = "sk-ant-api03-upstream-secret";
pub const MODEL: &str = "claude-sonnet-4-5-20250929";

impl Harness {
    pub async fn new(engine: Engine) -> Self {
        Self::with_config(engine, |_| {}).await
    }

    pub async fn with_config(engine: Engine, tweak: impl FnOnce(&mut Config)) -> Self {
        let mock = MockUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let redis = (engine == Engine::Redis).then(RedisServer::start);
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.redis_url = redis.as_ref().map(|r| r.url());
        tweak(&mut config);
        let relay = crs::start(config).await.unwrap();
        let http = reqwest::Client::new();
        let mut h = Harness {
            relay: Some(relay),
            mock,
            redis,
            dir,
            http,
            token: String::new(),
            engine,
        };
        h.token = h.login().await;
        h
    }

    pub fn relay(&self) -> &Running {
        self.relay.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.relay().url())
    }

    /// Stops the relay and starts a new one on the same data (a restart).
    pub async fn restart(&mut self) {
        let old = self.relay.take().unwrap();
        let mut config = old.state.config.clone();
        old.stop().await;
        config.port = 0;
        self.relay = Some(start_again(config).await);
        self.token = self.login().await;
    }

    /// Restarts the relay on the same data with another configuration.
    pub async fn reconfigure(&mut self, mut config: Config) {
        let old = self.relay.take().unwrap();
        old.stop().await;
        config.port = 0;
        self.relay = Some(start_again(config).await);
        self.token = self.login().await;
    }

    pub async fn login(&self) -> String {
        let r: Value = self
            .http
            .post(self.url("/web/auth/login"))
            .json(&json!({"username": "admin", "password": "admin-password-1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["success"], true, "{r}");
        r["token"].as_str().unwrap().to_string()
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A Claude Console account on the mock (optionally behaving as `scenario`).
    pub async fn account(&self, name: &str, scenario: Option<&str>, priority: u32) -> String {
        let api_url = match scenario {
            Some(s) => self.mock.scenario_url(s),
            None => self.mock.url(),
        };
        self.account_at(name, &api_url, priority).await
    }

    pub async fn account_at(&self, name: &str, api_url: &str, priority: u32) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/admin/claude-console-accounts",
                Some(json!({"name": name, "apiUrl": api_url, "apiKey": UPSTREAM_KEY, "priority": priority})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["id"].as_str().unwrap().to_string()
    }

    /// A new client key: (id, key).
    pub async fn key(&self, extra: Value) -> (String, String) {
        let mut body = json!({"name": "test key"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, resp) = self
            .admin(reqwest::Method::POST, "/admin/api-keys", Some(body))
            .await;
        assert_eq!(status, 200, "{resp}");
        (
            resp["data"]["id"].as_str().unwrap().into(),
            resp["data"]["apiKey"].as_str().unwrap().into(),
        )
    }

    pub fn messages(&self, key: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
    }

    /// Waits until `bucket` counts `requests` requests (accounting runs off the response path).
    pub async fn wait_requests(&self, bucket: &str, requests: u64) -> app::domain::UsageCounters {
        let store = &self.relay().state.store;
        for _ in 0..200 {
            let c = store.usage(&[bucket.to_string()]).await.unwrap()[0];
            if c.requests >= requests {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("bucket {bucket} never reached {requests} requests");
    }
}

/// Starts a relay on data a stopped one used; its last connection tasks may hold the embedded
/// database for a moment after the stop.
async fn start_again(config: Config) -> Running {
    for _ in 0..100 {
        match crs::start(config.clone()).await {
            Ok(r) => return r,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    crs::start(config).await.unwrap()
}

pub fn body(stream: bool) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
}

/// Generates one test per engine from `async fn name(engine: Engine)`.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod embedded { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Engine::Embedded).await } )* }
        mod redis { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Engine::Redis).await } )* }
    };
}
