//! An original account: our record, its credentials opened by the original's scheme, and
//! notes on what has no counterpart here.

use app::domain::AccountStatus;
use app::domain::{Account, AccountType, Platform, ProxyConfig};
use serde_json::Value;

use super::{get, list, number, small, time, truthy, whole};
use crate::{
    import_crs::{
        legacy_crypto::{cbc_decrypt, salts, LegacyCrypto},
        source::{Fields, SourceKind},
    },
    timestamps::format_time,
    upstream::AccountSecrets,
};

pub fn account_label(kind: SourceKind, f: &Fields) -> String {
    format!(
        "account {} {} ({})",
        kind.name(),
        get(f, "id"),
        get(f, "name")
    )
}

/// Why an account was not imported.
#[derive(Debug, PartialEq)]
pub enum Skip {
    /// No counterpart for the type.
    Unsupported(String),
    /// A credential the key does not open.
    Undecryptable(String),
    Invalid(String),
}

fn platform(kind: SourceKind) -> Result<Platform, Skip> {
    Ok(match kind {
        SourceKind::ClaudeOfficial => Platform::ClaudeOfficial,
        SourceKind::ClaudeConsole => Platform::ClaudeConsole,
        SourceKind::Bedrock => Platform::Bedrock,
        SourceKind::GeminiApi => Platform::GeminiApi,
        SourceKind::OpenAiResponses => Platform::OpenaiResponses,
        SourceKind::AzureOpenAi => Platform::AzureOpenai,
        SourceKind::Gemini => {
            return Err(Skip::Unsupported(
                "Gemini OAuth (Code Assist) accounts have no counterpart here".into(),
            ))
        }
        SourceKind::OpenAi => {
            return Err(Skip::Unsupported(
                "OpenAI OAuth (ChatGPT/Codex) accounts have no counterpart here".into(),
            ))
        }
        SourceKind::Ccr => {
            return Err(Skip::Unsupported(
                "CCR accounts have no counterpart here".into(),
            ))
        }
        SourceKind::Droid => {
            return Err(Skip::Unsupported(
                "Droid (Factory.ai) accounts have no counterpart here".into(),
            ))
        }
    })
}

/// One original account: our record, its opened credentials, and notes on what was lost.
pub fn account(
    kind: SourceKind,
    f: &Fields,
    legacy: &LegacyCrypto,
) -> Result<(Account, AccountSecrets, Vec<String>), Skip> {
    let platform = platform(kind)?;
    let id = get(f, "id");
    if id.is_empty() {
        return Err(Skip::Invalid("record without an id".into()));
    }
    let mut notes = Vec::new();
    let mut a = Account {
        id: id.to_string(),
        platform,
        name: get(f, "name").to_string(),
        description: get(f, "description").to_string(),
        priority: match whole(get(f, "priority")) {
            0 => 50,
            p => p.min(100) as u32,
        },
        is_active: get(f, "isActive").is_empty() || truthy(get(f, "isActive")),
        schedulable: get(f, "schedulable") != "false",
        status: match get(f, "status") {
            "blocked" => AccountStatus::Blocked,
            "error" | "unauthorized" => AccountStatus::Error,
            _ => AccountStatus::Active,
        },
        error_message: get(f, "errorMessage").to_string(),
        account_type: match get(f, "accountType") {
            // The original's `group` accounts serve only through their groups: ours do so
            // when they stay out of the shared pool.
            "dedicated" | "group" => AccountType::Dedicated,
            _ => AccountType::Shared,
        },
        max_concurrency: small(
            Some(get(f, "maxConcurrentTasks"))
                .filter(|v| !v.is_empty())
                .unwrap_or(get(f, "maxConcurrency")),
        ),
        disable_auto_protection: truthy(get(f, "disableAutoProtection")),
        user_agent: Some(get(f, "userAgent").to_string()).filter(|u| !u.is_empty()),
        created_at: time(get(f, "createdAt")).unwrap_or_else(|| format_time(chrono::Utc::now())),
        last_used_at: time(get(f, "lastUsedAt")),
        ..Default::default()
    };
    let mut secrets = AccountSecrets::default();

    // Models: an array, or a mapping {requested: upstream} of which only the names are kept.
    match serde_json::from_str::<Value>(get(f, "supportedModels")) {
        Ok(Value::Array(models)) => {
            a.supported_models = models
                .into_iter()
                .filter_map(|m| m.as_str().map(String::from))
                .filter(|m| !m.is_empty())
                .collect();
        }
        Ok(Value::Object(map)) => {
            for (from, to) in &map {
                if to.as_str().is_some_and(|t| !t.is_empty() && t != from) {
                    notes.push(format!(
                        "model mapping {from} → {} is not supported here: {from} is served as requested",
                        to.as_str().unwrap_or_default()
                    ));
                }
            }
            a.supported_models = map.into_iter().map(|(k, _)| k).collect();
        }
        _ => {}
    }

    // Proxy: JSON with the password in clear in the original.
    if let Ok(Value::Object(p)) = serde_json::from_str::<Value>(get(f, "proxy")) {
        let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let port = p
            .get("port")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0);
        let kind = text("type");
        if !text("host").is_empty() && port > 0 && port <= 65535 {
            if ["socks5", "http", "https"].contains(&kind.as_str()) {
                a.proxy = Some(ProxyConfig {
                    kind,
                    host: text("host"),
                    port: port as u16,
                    username: Some(text("username")).filter(|u| !u.is_empty()),
                });
                secrets.proxy_password = Some(text("password")).filter(|p| !p.is_empty());
            } else {
                notes.push(format!(
                    "proxy type {kind:?} is not supported: proxy dropped"
                ));
            }
        }
    }

    let quota = number(get(f, "dailyQuota"));
    if quota > 0.0 {
        notes.push(format!(
            "daily quota ${quota} has no per-account counterpart here: not enforced"
        ));
    }

    let open = |salt: &str, field: &str| -> Result<Option<String>, Skip> {
        let stored = get(f, field);
        if stored.is_empty() {
            return Ok(None);
        }
        legacy
            .decrypt_field(salt, stored)
            .map(|s| Some(s).filter(|s| !s.is_empty()))
            .map_err(|e| Skip::Undecryptable(format!("{field} {e}")))
    };
    let needs = |v: Option<String>, what: &str| -> Result<String, Skip> {
        v.ok_or_else(|| Skip::Invalid(format!("no {what}")))
    };

    match kind {
        SourceKind::ClaudeConsole => {
            a.api_url = get(f, "apiUrl").to_string();
            secrets.api_key = Some(needs(open(salts::CLAUDE_CONSOLE, "apiKey")?, "apiKey")?);
            if a.api_url.is_empty() {
                return Err(Skip::Invalid("no apiUrl".into()));
            }
        }
        SourceKind::OpenAiResponses => {
            a.api_url = get(f, "baseApi").to_string();
            secrets.api_key = Some(needs(open(salts::OPENAI_RESPONSES, "apiKey")?, "apiKey")?);
            if a.api_url.is_empty() {
                return Err(Skip::Invalid("no baseApi".into()));
            }
        }
        SourceKind::GeminiApi => {
            a.api_url = get(f, "baseUrl").to_string();
            secrets.api_key = Some(needs(open(salts::GEMINI_API, "apiKey")?, "apiKey")?);
        }
        SourceKind::AzureOpenAi => {
            a.api_url = get(f, "azureEndpoint").to_string();
            a.api_version = Some(get(f, "apiVersion").to_string()).filter(|v| !v.is_empty());
            a.deployment_name =
                Some(get(f, "deploymentName").to_string()).filter(|v| !v.is_empty());
            secrets.api_key = Some(needs(open(salts::AZURE_OPENAI, "apiKey")?, "apiKey")?);
            if a.api_url.is_empty() {
                return Err(Skip::Invalid("no azureEndpoint".into()));
            }
        }
        SourceKind::ClaudeOfficial => {
            let mut access = open(salts::CLAUDE, "accessToken")?;
            let mut refresh = open(salts::CLAUDE, "refreshToken")?;
            let mut expires = get(f, "expiresAt").parse::<i64>().ok();
            let mut scopes = list(get(f, "scopes"));
            if let Some(blob) = open(salts::CLAUDE, "claudeAiOauth")? {
                if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&blob) {
                    let text = |k: &str| {
                        o.get(k)
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                    };
                    access = access.or_else(|| text("accessToken"));
                    refresh = refresh.or_else(|| text("refreshToken"));
                    expires = expires.or_else(|| o.get("expiresAt").and_then(Value::as_i64));
                    if scopes.is_empty() {
                        scopes = match o.get("scopes") {
                            Some(Value::Array(s)) => s
                                .iter()
                                .filter_map(|v| v.as_str().map(String::from))
                                .collect(),
                            Some(Value::String(s)) => list(s),
                            _ => Vec::new(),
                        };
                    }
                }
            }
            secrets.access_token = Some(needs(access, "accessToken")?);
            secrets.refresh_token = refresh;
            a.token_expires_at = expires;
            a.scopes = scopes;
        }
        SourceKind::Bedrock => {
            a.region = Some(get(f, "region").to_string()).filter(|r| !r.is_empty());
            let mut found = false;
            if let Some(creds) = bedrock_secret(legacy, get(f, "awsCredentials"))? {
                let text = |k: &str| {
                    creds
                        .get(k)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                };
                secrets.aws_access_key_id = text("accessKeyId");
                secrets.aws_secret_access_key = text("secretAccessKey");
                secrets.aws_session_token = text("sessionToken");
                found =
                    secrets.aws_access_key_id.is_some() && secrets.aws_secret_access_key.is_some();
            }
            if let Some(token) = bedrock_secret(legacy, get(f, "bearerToken"))? {
                let t = token
                    .get("token")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(String::from);
                if get(f, "credentialType") == "bearer_token" || !found {
                    found |= t.is_some();
                    secrets.api_key = t;
                }
            }
            if !found {
                return Err(Skip::Invalid("no AWS credentials or bearer token".into()));
            }
        }
        SourceKind::Gemini | SourceKind::OpenAi | SourceKind::Ccr | SourceKind::Droid => {
            return Err(Skip::Unsupported(format!(
                "{} accounts have no counterpart here",
                kind.name()
            )))
        }
    }
    Ok((a, secrets, notes))
}

/// A Bedrock credential: `{encrypted, iv}` under `sha256(ENCRYPTION_KEY)` (current versions),
/// `iv:cipher` under the scrypt `salt` key (older ones), or plain JSON.
fn bedrock_secret(legacy: &LegacyCrypto, stored: &str) -> Result<Option<Value>, Skip> {
    if stored.is_empty() {
        return Ok(None);
    }
    let undecryptable = || {
        Skip::Undecryptable("AWS credentials cannot be decrypted with this encryption key".into())
    };
    let plain = match serde_json::from_str::<Value>(stored) {
        Ok(Value::Object(o)) => {
            match (
                o.get("encrypted").and_then(Value::as_str),
                o.get("iv").and_then(Value::as_str),
            ) {
                (Some(ct), Some(iv)) => {
                    let ct = hex::decode(ct).map_err(|_| undecryptable())?;
                    let iv = hex::decode(iv).map_err(|_| undecryptable())?;
                    let bytes = cbc_decrypt(&legacy.bedrock_key(), &iv, &ct)
                        .or_else(|_| cbc_decrypt(&legacy.key_for(salts::BEDROCK), &iv, &ct))
                        .map_err(|_| undecryptable())?;
                    String::from_utf8(bytes).map_err(|_| undecryptable())?
                }
                _ => return Ok(Some(Value::Object(o))),
            }
        }
        _ => legacy
            .decrypt_field(salts::BEDROCK, stored)
            .map_err(|_| undecryptable())?,
    };
    serde_json::from_str(&plain)
        .map(Some)
        .map_err(|_| undecryptable())
}
