//! Claude subscription accounts (OAuth or setup token) on the official API: the PKCE
//! authorization, token refresh under a lock shared by every relay instance, and request
//! shaping (behaviour reference §1.4, §2.1).

use app::domain::AccountStatus;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bytes::Bytes;
use chrono::Utc;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{claude_console, AccountSecrets, Deps, UpstreamError};
use crate::{config::Config, store::StoredAccount};

pub const SCOPES_FULL: &str =
    "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload";
/// Setup tokens: long-lived, inference only, no refresh.
pub const SCOPES_SETUP: &str = "user:inference";

/// Refresh this long before the token expires.
const REFRESH_MARGIN_MS: i64 = 60_000;
const LOCK_TTL: Duration = Duration::from_secs(60);

/// `(verifier, challenge)`: 32 random bytes, and their SHA-256, base64url.
pub fn pkce() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let verifier = URL_SAFE_NO_PAD.encode(raw);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn random_state() -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

pub fn authorize_url(config: &Config, challenge: &str, state: &str, scopes: &str) -> String {
    let mut url = reqwest::Url::parse(&config.claude_oauth_authorize_url).unwrap_or_else(|_| {
        reqwest::Url::parse("https://claude.ai/oauth/authorize").expect("static URL")
    });
    url.query_pairs_mut()
        .append_pair("code", "true")
        .append_pair("client_id", &config.claude_oauth_client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &config.claude_oauth_redirect_uri)
        .append_pair("scope", scopes)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state);
    url.to_string()
}

/// The authorization code from what the admin pasted: the bare code (`code#state`), or the
/// whole callback URL.
pub fn parse_code(input: &str) -> Option<String> {
    let input = input.trim();
    if input.is_empty() {
        return None;
    }
    if let Ok(url) = reqwest::Url::parse(input) {
        return url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| clean(&v))
            .filter(|c| !c.is_empty());
    }
    Some(clean(input)).filter(|c| !c.is_empty())
}

fn clean(code: &str) -> String {
    code.split(['#', '&'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Tokens from the token endpoint.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
    scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the token endpoint cannot be reached")]
    Unreachable,
    #[error("the token endpoint refused: HTTP {0}")]
    Refused(u16),
    #[error("the token endpoint answered something unexpected")]
    BadAnswer,
}

async fn token_request(
    http: &reqwest::Client,
    config: &Config,
    body: serde_json::Value,
) -> Result<Tokens, OAuthError> {
    let resp = http
        .post(&config.claude_oauth_token_url)
        .header("user-agent", "claude-cli/1.0.56 (external, cli)")
        .header("origin", "https://claude.ai")
        .header("referer", "https://claude.ai/")
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|_| OAuthError::Unreachable)?;
    if !resp.status().is_success() {
        return Err(OAuthError::Refused(resp.status().as_u16()));
    }
    let t: TokenResponse = resp.json().await.map_err(|_| OAuthError::BadAnswer)?;
    Ok(Tokens {
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        expires_at_ms: t
            .expires_in
            .map(|s| Utc::now().timestamp_millis() + s * 1000),
        scopes: t
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    })
}

pub async fn exchange_code(
    http: &reqwest::Client,
    config: &Config,
    code: &str,
    verifier: &str,
    state: &str,
) -> Result<Tokens, OAuthError> {
    token_request(
        http,
        config,
        json!({
            "grant_type": "authorization_code",
            "client_id": config.claude_oauth_client_id,
            "code": code,
            "redirect_uri": config.claude_oauth_redirect_uri,
            "code_verifier": verifier,
            "state": state,
        }),
    )
    .await
}

pub async fn refresh(
    http: &reqwest::Client,
    config: &Config,
    refresh_token: &str,
) -> Result<Tokens, OAuthError> {
    token_request(
        http,
        config,
        json!({"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": config.claude_oauth_client_id}),
    )
    .await
}

fn needs_refresh(account: &StoredAccount, secrets: &AccountSecrets) -> bool {
    secrets.refresh_token.is_some()
        && account
            .account
            .token_expires_at
            .is_some_and(|exp| exp - REFRESH_MARGIN_MS <= Utc::now().timestamp_millis())
}

/// A usable access token for the account, refreshed first when it expires within a minute.
/// One instance refreshes (under a shared lock); the others wait for its result.
pub async fn access_token(
    state: &impl Deps,
    account: &StoredAccount,
) -> Result<String, UpstreamError> {
    let unreadable =
        || UpstreamError::NoAccount("The selected account's credential cannot be read".into());
    let secrets = AccountSecrets::open(state.crypto(), account).map_err(|_| unreadable())?;
    let current = secrets.access_token.clone().ok_or_else(unreadable)?;
    if !needs_refresh(account, &secrets) {
        return Ok(current);
    }
    let id = &account.account.id;
    let lock = format!("refresh:{id}");
    let owner = uuid::Uuid::new_v4().to_string();
    if state.store().try_lock(&lock, &owner, LOCK_TTL).await? {
        let result = refresh_locked(state, id).await;
        let _ = state.store().unlock(&lock, &owner).await;
        return Ok(result.unwrap_or(current));
    }
    // Another instance is refreshing: wait for its result, else carry on with what we have.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(fresh) = state.store().get_account(id).await? {
            if fresh.account.token_expires_at != account.account.token_expires_at {
                if let Some(token) = AccountSecrets::open(state.crypto(), &fresh)
                    .ok()
                    .and_then(|s| s.access_token)
                {
                    return Ok(token);
                }
            }
        }
    }
    Ok(current)
}

/// Holding the lock: re-read (someone may have just refreshed), refresh, store.
async fn refresh_locked(state: &impl Deps, id: &str) -> Option<String> {
    let mut account = state.store().get_account(id).await.ok()??;
    let mut secrets = AccountSecrets::open(state.crypto(), &account).ok()?;
    if !needs_refresh(&account, &secrets) {
        return secrets.access_token;
    }
    let http = state
        .clients()
        .for_proxy(
            account.account.proxy.as_ref(),
            secrets.proxy_password.as_deref(),
        )
        .ok()?;
    let refresh_token = secrets.refresh_token.clone()?;
    match refresh(&http, state.config(), &refresh_token).await {
        Ok(tokens) => {
            secrets.access_token = Some(tokens.access_token.clone());
            if tokens.refresh_token.is_some() {
                secrets.refresh_token = tokens.refresh_token;
            }
            account.secret = secrets.seal(state.crypto());
            account.account.token_expires_at = tokens.expires_at_ms;
            if !tokens.scopes.is_empty() {
                account.account.scopes = tokens.scopes;
            }
            if account.account.status == AccountStatus::Error {
                account.account.status = AccountStatus::Active;
                account.account.error_message.clear();
            }
            if let Err(e) = state.store().put_account(&account).await {
                tracing::error!(account = %id, error = %e, "refreshed token could not be stored");
            }
            tracing::info!(account = %id, "OAuth token refreshed");
            Some(tokens.access_token)
        }
        Err(e) => {
            tracing::error!(account = %id, error = %e, "OAuth token refresh failed");
            crate::scheduler::health::refresh_failed(state, &mut account, &e.to_string()).await;
            None
        }
    }
}

/// Betas the official API needs for subscription traffic, before the client's own.
fn base_betas(model: &str) -> &'static [&'static str] {
    if model.to_ascii_lowercase().contains("haiku") {
        &["oauth-2025-04-20", "interleaved-thinking-2025-05-14"]
    } else {
        &[
            "claude-code-20250219",
            "oauth-2025-04-20",
            "interleaved-thinking-2025-05-14",
            "fine-grained-tool-streaming-2025-05-14",
        ]
    }
}

pub fn merged_betas(model: &str, client: Option<&str>) -> String {
    let mut out: Vec<&str> = base_betas(model).to_vec();
    for b in client
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out.join(",")
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    http: &reqwest::Client,
    config: &Config,
    access_token: &str,
    endpoint: &str,
    model: &str,
    client_headers: &HeaderMap,
    body: Bytes,
) -> reqwest::RequestBuilder {
    let mut headers = claude_console::forwarded_headers(client_headers, None);
    let client_betas = client_headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok());
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&merged_betas(model, client_betas)) {
        headers.insert("anthropic-beta", v);
    }
    if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {access_token}")) {
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    http.post(format!("{}{endpoint}?beta=true", config.claude_api_url))
        .headers(headers)
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_and_authorize_url() {
        let (verifier, challenge) = pkce();
        assert_eq!(verifier.len(), 43);
        assert_eq!(
            challenge,
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        );
        let config = Config::for_tests(std::env::temp_dir());
        let url = authorize_url(&config, &challenge, "st", SCOPES_FULL);
        let parsed = reqwest::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge"], challenge);
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], SCOPES_FULL);
        assert_eq!(q["state"], "st");
        assert_eq!(q["client_id"], config.claude_oauth_client_id);
    }

    #[test]
    fn codes_from_what_admins_paste() {
        assert_eq!(parse_code("abc123#state-xyz").as_deref(), Some("abc123"));
        assert_eq!(
            parse_code("https://platform.claude.com/oauth/code/callback?code=zz9&state=s")
                .as_deref(),
            Some("zz9")
        );
        assert_eq!(parse_code("  "), None);
        assert_eq!(parse_code("https://x.test/cb?state=s"), None);
    }

    #[test]
    fn betas_merge_without_duplicates() {
        assert_eq!(
            merged_betas("claude-sonnet-4-5", Some("oauth-2025-04-20, context-1m-2025-08-07")),
            "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-1m-2025-08-07"
        );
        assert_eq!(
            merged_betas("claude-haiku-4-5", None),
            "oauth-2025-04-20,interleaved-thinking-2025-05-14"
        );
    }
}
