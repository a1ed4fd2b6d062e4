//! One module per account type: which URL, which headers, how the credential is presented.
//! Shared here: the sealed credentials of an account, and one HTTP client per distinct proxy.

pub mod azure;
pub mod bedrock;
pub mod claude_console;
pub mod claude_oauth;
pub mod gemini;
pub mod openai;

use std::{collections::HashMap, time::Duration};

use app::domain::ProxyConfig;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{config::Config, crypto::Crypto, scheduler::health::Marks, store::StoredAccount};

/// What is sent upstream for one account, whatever the client's protocol: the relay's `Call`
/// converts into it.
pub struct Outgoing<'a> {
    /// `/v1/messages`, `/v1/responses`, `/v1/chat/completions`, for Gemini `<model>:<action>`.
    pub upstream_path: &'a str,
    pub model: &'a str,
    pub stream: bool,
    pub headers: &'a axum::http::HeaderMap,
    pub query: Option<&'a str>,
    pub body: bytes::Bytes,
}

/// Why the request for an account could not be built. The relay answers each as the
/// `RelayError` of the same name (`relay/error.rs`, which also gives it `message()`).
#[derive(Debug)]
pub enum UpstreamError {
    /// The account cannot serve: its credential or configuration is unusable.
    NoAccount(String),
    /// The client's request cannot be sent upstream as it is.
    BadRequest(String),
    NotFound(String),
    /// The account's proxy cannot be used.
    Unreachable,
    Store(crate::store::StoreError),
}

impl From<crate::store::StoreError> for UpstreamError {
    fn from(e: crate::store::StoreError) -> Self {
        // Logged where it happens, as the relay logs its own store errors: a token refresh the
        // admin starts drops the error.
        if !matches!(e, crate::store::StoreError::KeyChanged) {
            tracing::error!(error = %e, "store error on the relay path");
        }
        UpstreamError::Store(e)
    }
}

/// What building an upstream request uses: the key that opens the credentials, the pooled
/// clients, the configuration, and the store and account marks of a token refresh. The
/// running service (`AppState`) is one.
pub trait Deps: Marks {
    fn crypto(&self) -> &Crypto;
    fn clients(&self) -> &Clients;
    fn config(&self) -> &Config;
}

/// Everything secret about an account, stored as one AES-GCM ciphertext.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountSecrets {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub proxy_password: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
}

impl std::fmt::Debug for AccountSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountSecrets(..)")
    }
}

impl AccountSecrets {
    pub fn open(
        crypto: &Crypto,
        account: &StoredAccount,
    ) -> Result<Self, crate::crypto::CryptoError> {
        if account.secret.is_empty() {
            return Ok(Self::default());
        }
        let plain = crypto.decrypt(&account.secret)?;
        // Early records sealed the bare API key.
        Ok(serde_json::from_str(&plain).unwrap_or(AccountSecrets {
            api_key: Some(plain),
            ..Default::default()
        }))
    }

    pub fn seal(&self, crypto: &Crypto) -> String {
        crypto.encrypt(&serde_json::to_string(self).unwrap_or_default())
    }
}

/// Pooled HTTP clients: one without proxy, and one per distinct proxy, built once and reused.
pub struct Clients {
    direct: reqwest::Client,
    connect_timeout: Duration,
    proxied: Mutex<HashMap<String, reqwest::Client>>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid proxy configuration: {0}")]
pub struct ProxyError(String);

impl Clients {
    pub fn new(connect_timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Clients {
            direct: Self::builder(connect_timeout).build()?,
            connect_timeout,
            proxied: Mutex::new(HashMap::new()),
        })
    }

    fn builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            // A redirect is never followed: it would carry the account's credential headers
            // (`x-api-key`, `x-goog-api-key`, `api-key`) to whatever host it names. A 3xx is an
            // upstream error (`relay::passthrough`).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
    }

    pub fn direct(&self) -> &reqwest::Client {
        &self.direct
    }

    /// The client for an account's proxy (or the direct one).
    pub fn for_proxy(
        &self,
        proxy: Option<&ProxyConfig>,
        password: Option<&str>,
    ) -> Result<reqwest::Client, ProxyError> {
        let Some(p) = proxy.filter(|p| !p.host.is_empty()) else {
            return Ok(self.direct.clone());
        };
        let url = proxy_url(p, password)?;
        if let Some(c) = self.proxied.lock().get(&url) {
            return Ok(c.clone());
        }
        let proxy =
            reqwest::Proxy::all(&url).map_err(|e| ProxyError(e.without_url().to_string()))?;
        let client = Self::builder(self.connect_timeout)
            .proxy(proxy)
            .build()
            .map_err(|e| ProxyError(e.without_url().to_string()))?;
        self.proxied.lock().insert(url, client.clone());
        Ok(client)
    }
}

/// `socks5h://user:pass@host:port` (names resolved by the proxy) or `http(s)://…`.
fn proxy_url(p: &ProxyConfig, password: Option<&str>) -> Result<String, ProxyError> {
    let scheme = match p.kind.as_str() {
        "socks5" | "socks5h" => "socks5h",
        "http" => "http",
        "https" => "https",
        other => return Err(ProxyError(format!("unknown proxy type {other:?}"))),
    };
    if p.port == 0 {
        return Err(ProxyError("proxy port is required".into()));
    }
    let mut url = reqwest::Url::parse(&format!("{scheme}://{}:{}", p.host, p.port))
        .map_err(|e| ProxyError(e.to_string()))?;
    if let Some(user) = p.username.as_deref().filter(|u| !u.is_empty()) {
        let _ = url.set_username(user);
        let _ = url.set_password(password);
    }
    Ok(url.to_string())
}

/// The upstream request of `call` for one account: its URL, its headers, its credential.
pub async fn request<'a>(
    state: &impl Deps,
    account: &StoredAccount,
    call: impl Into<Outgoing<'a>>,
) -> Result<reqwest::RequestBuilder, UpstreamError> {
    use app::domain::Platform;
    let call: Outgoing<'a> = call.into();
    let unreadable =
        || UpstreamError::NoAccount("The selected account's credential cannot be read".into());
    let secrets = AccountSecrets::open(state.crypto(), account).map_err(|e| {
        tracing::error!(account = %account.account.id, error = %e, "account credential unreadable");
        unreadable()
    })?;
    let http = state
        .clients()
        .for_proxy(
            account.account.proxy.as_ref(),
            secrets.proxy_password.as_deref(),
        )
        .map_err(|e| {
            tracing::error!(account = %account.account.id, error = %e, "account proxy unusable");
            UpstreamError::Unreachable
        })?;
    let body = call.body;
    match account.account.platform {
        Platform::ClaudeConsole => {
            let key = secrets.api_key.as_deref().ok_or_else(unreadable)?;
            let beta = call
                .query
                .is_some_and(|q| q.split('&').any(|p| p == "beta=true"));
            Ok(claude_console::build(
                &http,
                account,
                key,
                call.upstream_path,
                beta,
                call.headers,
                body,
            ))
        }
        Platform::ClaudeOfficial => {
            let token = claude_oauth::access_token(state, account).await?;
            Ok(claude_oauth::build(
                &http,
                state.config(),
                &token,
                call.upstream_path,
                call.model,
                call.headers,
                body,
            ))
        }
        Platform::OpenaiResponses => {
            let key = secrets.api_key.as_deref().ok_or_else(unreadable)?;
            Ok(openai::build(
                &http,
                account,
                key,
                call.upstream_path,
                call.headers,
                body,
            ))
        }
        Platform::Bedrock => {
            if call.upstream_path != "/v1/messages" {
                return Err(UpstreamError::NotFound(
                    "Bedrock accounts do not count tokens".into(),
                ));
            }
            bedrock::build(&http, account, &secrets, call.model, call.stream, &body)
        }
        Platform::AzureOpenai => {
            let key = secrets.api_key.as_deref().ok_or_else(unreadable)?;
            azure::build(&http, account, key, call.upstream_path, call.headers, body)
        }
        Platform::GeminiApi => {
            let key = secrets.api_key.as_deref().ok_or_else(unreadable)?;
            gemini::build(
                &http,
                account,
                key,
                call.upstream_path,
                call.query,
                call.headers,
                body,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = ProxyConfig {
            kind: "socks5".into(),
            host: "127.0.0.1".into(),
            port: 1080,
            username: Some("u".into()),
        };
        assert_eq!(
            proxy_url(&p, Some("p@ss")).unwrap(),
            "socks5h://u:p%40ss@127.0.0.1:1080"
        );
        let p = ProxyConfig {
            kind: "http".into(),
            host: "proxy.test".into(),
            port: 8080,
            username: None,
        };
        assert_eq!(proxy_url(&p, None).unwrap(), "http://proxy.test:8080/");
        let bad = ProxyConfig {
            kind: "ftp".into(),
            host: "x".into(),
            port: 1,
            username: None,
        };
        assert!(proxy_url(&bad, None).is_err());
    }

    #[test]
    fn secrets_round_trip_and_legacy_form() {
        let crypto = Crypto::new("k".repeat(32).as_str());
        let s = AccountSecrets {
            access_token: Some("at".into()),
            refresh_token: Some("rt".into()),
            ..Default::default()
        };
        let account = StoredAccount {
            account: Default::default(),
            secret: s.seal(&crypto),
        };
        let back = AccountSecrets::open(&crypto, &account).unwrap();
        assert_eq!(back.refresh_token.as_deref(), Some("rt"));
        assert_eq!(format!("{back:?}"), "AccountSecrets(..)");
        let legacy = StoredAccount {
            account: Default::default(),
            secret: crypto.encrypt("sk-ant-old"),
        };
        assert_eq!(
            AccountSecrets::open(&crypto, &legacy)
                .unwrap()
                .api_key
                .as_deref(),
            Some("sk-ant-old")
        );
    }
}
