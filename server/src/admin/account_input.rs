//! The fields of an upstream account as the admin sets them, and the rules they are held to:
//! one [`AccountInput`] from the JSON API and the pages' account form, checked by [`apply`].
//! Credentials are sealed as they are applied; no answer ever carries one.

use app::domain::{AccountType, ProxyConfig};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{too_long, AdminError};
use crate::{state::AppState, store::StoredAccount, upstream::AccountSecrets};

/// `supportedModels`: a list, or the original's mapping object `{requested: upstream}` (its
/// keys are taken).
#[derive(Clone, Debug, PartialEq)]
pub enum Models {
    List(Vec<String>),
    NotStrings,
    NotAList,
}

impl<'de> Deserialize<'de> for Models {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Models::List(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map_or(Models::NotStrings, Models::List),
            Value::Object(map) => Models::List(map.keys().cloned().collect()),
            _ => Models::NotAList,
        })
    }
}

/// Create and update body. Every field is optional on update.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AccountInput {
    pub name: Option<String>,
    pub description: Option<String>,
    /// The upstream base URL (`baseApi` for OpenAI-compatible, `baseUrl` for Gemini,
    /// `azureEndpoint` for Azure accounts).
    #[serde(alias = "baseApi", alias = "baseUrl", alias = "azureEndpoint")]
    pub api_url: Option<String>,
    pub deployment_name: Option<String>,
    pub api_version: Option<String>,
    /// Bedrock: the region, and AWS keys (or `bearerToken`, a Bedrock API key).
    pub region: Option<String>,
    pub aws_credentials: Option<AwsCredentialsInput>,
    pub bearer_token: Option<String>,
    pub api_key: Option<String>,
    pub priority: Option<u32>,
    pub is_active: Option<bool>,
    pub schedulable: Option<bool>,
    pub supported_models: Option<Models>,
    pub user_agent: Option<String>,
    pub account_type: Option<AccountType>,
    pub max_concurrency: Option<u32>,
    /// The original's name for Console accounts' concurrency limit.
    pub max_concurrent_tasks: Option<u32>,
    pub disable_auto_protection: Option<bool>,
    /// `null` removes the proxy.
    pub proxy: Option<Option<ProxyInput>>,
    /// OAuth accounts: tokens from `exchange-code` (kept server-side) …
    pub oauth_session_id: Option<String>,
    /// … or given directly, as the original accepts them.
    pub claude_ai_oauth: Option<OAuthInput>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ProxyInput {
    #[serde(rename = "type")]
    pub kind: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentialsInput {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct OAuthInput {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// ms since the epoch.
    pub expires_at: Option<i64>,
    pub scopes: Option<Vec<String>>,
}

/// Applies `input` to `a`, field by field, refusing the first field that breaks a rule.
pub fn apply(
    state: &AppState,
    a: &mut StoredAccount,
    input: AccountInput,
) -> Result<(), AdminError> {
    if let Some(name) = &input.name {
        app::bounds::name("name", name.trim()).map_err(too_long)?;
    }
    if let Some(d) = &input.description {
        app::bounds::description("description", d).map_err(too_long)?;
    }
    let mut secrets = AccountSecrets::open(&state.crypto, a).map_err(|_| {
        AdminError::BadRequest(
            "the stored credential cannot be read with this ENCRYPTION_KEY".into(),
        )
    })?;
    if let Some(name) = input.name {
        if name.trim().is_empty() {
            return Err(AdminError::BadRequest("name must not be empty".into()));
        }
        a.account.name = name.trim().to_string();
    }
    if let Some(d) = input.description {
        a.account.description = d;
    }
    if let Some(url) = input.api_url {
        let url = url.trim().trim_end_matches('/').to_string();
        if reqwest::Url::parse(&url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            return Err(AdminError::BadRequest(
                "apiUrl must be an http(s) URL".into(),
            ));
        }
        a.account.api_url = url;
    }
    if let Some(key) = input.api_key.filter(|k| !k.trim().is_empty()) {
        secrets.api_key = Some(key.trim().to_string());
    }
    if let Some(p) = input.priority {
        if !(1..=100).contains(&p) {
            return Err(AdminError::BadRequest(
                "priority must be between 1 and 100".into(),
            ));
        }
        a.account.priority = p;
    }
    if let Some(v) = input.is_active {
        a.account.is_active = v;
    }
    if let Some(v) = input.schedulable {
        a.account.schedulable = v;
    }
    if let Some(m) = input.supported_models {
        a.account.supported_models = match m {
            Models::List(list) => list,
            Models::NotStrings => {
                return Err(AdminError::BadRequest(
                    "supportedModels must hold strings".into(),
                ))
            }
            Models::NotAList => {
                return Err(AdminError::BadRequest(
                    "supportedModels must be a list or an object".into(),
                ))
            }
        };
    }
    if let Some(ua) = input.user_agent {
        a.account.user_agent = Some(ua).filter(|u| !u.trim().is_empty());
    }
    // These three go into upstream URLs: only plain values are stored.
    if let Some(d) = input.deployment_name {
        let d = d.trim();
        if !d.is_empty() && !crate::upstream::azure::valid_deployment(d) {
            return Err(AdminError::BadRequest(
                "deploymentName must be letters, digits, '.', '_' or '-' (at most 64)".into(),
            ));
        }
        a.account.deployment_name = Some(d.to_string()).filter(|d| !d.is_empty());
    }
    if let Some(v) = input.api_version {
        let v = v.trim();
        if !v.is_empty() && !crate::upstream::azure::valid_api_version(v) {
            return Err(AdminError::BadRequest(
                "apiVersion must be letters, digits, '.' or '-' (at most 32), e.g. 2024-10-21"
                    .into(),
            ));
        }
        a.account.api_version = Some(v.to_string()).filter(|v| !v.is_empty());
    }
    if let Some(r) = input.region {
        let r = r.trim();
        if !r.is_empty() && !crate::upstream::bedrock::valid_region(r) {
            return Err(AdminError::BadRequest(
                "region must be an AWS region such as us-east-1".into(),
            ));
        }
        a.account.region = Some(r.to_string()).filter(|r| !r.is_empty());
    }
    if let Some(c) = input.aws_credentials {
        if c.access_key_id.trim().is_empty() || c.secret_access_key.trim().is_empty() {
            return Err(AdminError::BadRequest(
                "awsCredentials needs accessKeyId and secretAccessKey".into(),
            ));
        }
        secrets.aws_access_key_id = Some(c.access_key_id.trim().to_string());
        secrets.aws_secret_access_key = Some(c.secret_access_key.trim().to_string());
        secrets.aws_session_token = c.session_token.filter(|t| !t.is_empty());
        secrets.api_key = None;
    }
    if let Some(t) = input.bearer_token.filter(|t| !t.trim().is_empty()) {
        secrets.api_key = Some(t.trim().to_string());
    }
    if let Some(t) = input.account_type {
        a.account.account_type = t;
    }
    if let Some(m) = input.max_concurrency.or(input.max_concurrent_tasks) {
        a.account.max_concurrency = m;
    }
    if let Some(v) = input.disable_auto_protection {
        a.account.disable_auto_protection = v;
    }
    match input.proxy {
        Some(None) => {
            a.account.proxy = None;
            secrets.proxy_password = None;
        }
        Some(Some(p)) => {
            if !matches!(p.kind.as_str(), "socks5" | "http" | "https") {
                return Err(AdminError::BadRequest(
                    "proxy.type must be socks5, http or https".into(),
                ));
            }
            if p.host.trim().is_empty() || p.port == 0 {
                return Err(AdminError::BadRequest(
                    "proxy.host and proxy.port are required".into(),
                ));
            }
            a.account.proxy = Some(ProxyConfig {
                kind: p.kind,
                host: p.host.trim().to_string(),
                port: p.port,
                username: p.username.filter(|u| !u.is_empty()),
            });
            if p.password.is_some() {
                secrets.proxy_password = p.password.filter(|pw| !pw.is_empty());
            }
        }
        None => {}
    }
    if let Some(o) = input.claude_ai_oauth {
        if o.access_token.trim().is_empty() {
            return Err(AdminError::BadRequest(
                "claudeAiOauth.accessToken is required".into(),
            ));
        }
        secrets.access_token = Some(o.access_token);
        secrets.refresh_token = o.refresh_token.filter(|r| !r.is_empty());
        a.account.token_expires_at = o.expires_at;
        a.account.scopes = o.scopes.unwrap_or_default();
    }
    a.secret = secrets.seal(&state.crypto);
    Ok(())
}
