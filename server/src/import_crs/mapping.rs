//! From the original's records (§2, §4.1) to ours: keys with their limits, accounts with their
//! credentials opened by the original's scheme, groups. Whatever has no counterpart here is
//! said in a note, never silently dropped.

use std::collections::{BTreeMap, HashMap};

use app::domain::{
    Account, AccountGroup, AccountType, ApiKey, ExpirationMode, Platform, ProxyConfig,
};
use serde_json::Value;

use super::{
    legacy_crypto::{cbc_decrypt, salts, LegacyCrypto},
    source::{Fields, SourceKind},
};
use crate::{auth::api_key::format_time, upstream::AccountSecrets};

fn get<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name).map(|s| s.trim()).unwrap_or("")
}

fn truthy(v: &str) -> bool {
    v.eq_ignore_ascii_case("true") || v == "1"
}

fn number(v: &str) -> f64 {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .unwrap_or(0.0)
}

fn whole(v: &str) -> u64 {
    number(v).floor() as u64
}

fn small(v: &str) -> u32 {
    whole(v).min(u64::from(u32::MAX)) as u32
}

/// A JSON array of strings, a comma-separated list, or nothing.
fn list(v: &str) -> Vec<String> {
    if v.is_empty() || v == "null" {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(v) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .filter(|s| !s.trim().is_empty())
            .collect(),
        Ok(Value::String(s)) => list(&s),
        _ => v
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// An ISO time or epoch milliseconds, as our RFC 3339; `None` when empty or unreadable.
fn time(v: &str) -> Option<String> {
    if v.is_empty() || v == "null" {
        return None;
    }
    if let Some(t) = crate::auth::api_key::parse_time(v) {
        return Some(format_time(t));
    }
    v.parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(format_time)
}

/// Something the import could not bring over as it was.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Unmapped {
    /// What it concerns: `key <id> (<name>)`, `account <type> <id> (<name>)`, …
    pub item: String,
    pub reason: String,
}

pub fn key_label(f: &Fields) -> String {
    format!("key {} ({})", get(f, "id"), get(f, "name"))
}

/// An original key record and its stored hash (`sha256(key + ENCRYPTION_KEY)`).
pub fn key(
    f: &Fields,
    hash_of: &HashMap<String, String>,
    notes: &mut Vec<Unmapped>,
) -> Option<(ApiKey, String)> {
    let label = key_label(f);
    let mut note = |reason: String| {
        notes.push(Unmapped {
            item: label.clone(),
            reason,
        })
    };
    let id = get(f, "id");
    if id.is_empty() {
        note("record without an id: skipped".into());
        return None;
    }
    let hash = Some(get(f, "apiKey"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .or_else(|| hash_of.get(id).cloned());
    let Some(hash) = hash else {
        note("no stored key hash: skipped (the key could not authenticate)".into());
        return None;
    };
    let mut k = ApiKey {
        id: id.to_string(),
        name: get(f, "name").to_string(),
        description: get(f, "description").to_string(),
        is_active: truthy(get(f, "isActive")),
        is_deleted: truthy(get(f, "isDeleted")),
        tags: list(get(f, "tags")),
        created_at: time(get(f, "createdAt")).unwrap_or_else(|| format_time(chrono::Utc::now())),
        last_used_at: time(get(f, "lastUsedAt")),
        key_preview: "cr_…".into(),
        concurrency_limit: small(get(f, "concurrencyLimit")),
        rate_limit_window: small(get(f, "rateLimitWindow")),
        rate_limit_requests: whole(get(f, "rateLimitRequests")),
        token_limit: whole(get(f, "tokenLimit")),
        rate_limit_cost: number(get(f, "rateLimitCost")),
        daily_cost_limit: number(get(f, "dailyCostLimit")),
        total_cost_limit: number(get(f, "totalCostLimit")),
        weekly_opus_cost_limit: number(get(f, "weeklyOpusCostLimit")),
        weekly_reset_day: (whole(get(f, "weeklyResetDay")) as u8).clamp(1, 7),
        weekly_reset_hour: (whole(get(f, "weeklyResetHour")) as u8).min(23),
        enable_model_restriction: truthy(get(f, "enableModelRestriction")),
        restricted_models: list(get(f, "restrictedModels")),
        enable_client_restriction: truthy(get(f, "enableClientRestriction")),
        ..Default::default()
    };

    // Permissions: a JSON array, or the legacy single value (`all` = everything).
    let mut perms = Vec::new();
    for p in list(get(f, "permissions")) {
        match p.as_str() {
            "all" => {
                perms.clear();
                break;
            }
            "claude" | "gemini" | "openai" => perms.push(p),
            other => note(format!(
                "permission {other:?} has no counterpart here: dropped"
            )),
        }
    }
    k.permissions = perms;

    for c in list(get(f, "allowedClients")) {
        if ["claude_code", "gemini_cli", "codex_cli"].contains(&c.as_str()) {
            k.allowed_clients.push(c);
        } else {
            note(format!(
                "allowed client {c:?} has no counterpart here: dropped"
            ));
        }
    }

    // Expiry.
    k.expiration_mode = if get(f, "expirationMode") == "activation" {
        ExpirationMode::Activation
    } else {
        ExpirationMode::Fixed
    };
    let amount = small(get(f, "activationDays"));
    k.activation_days = if get(f, "activationUnit") == "hours" {
        if amount > 0 && k.expiration_mode == ExpirationMode::Activation {
            note(format!(
                "activation period of {amount} hours rounded up to whole days"
            ));
        }
        amount.div_ceil(24)
    } else {
        amount
    };
    k.is_activated = truthy(get(f, "isActivated"));
    k.activated_at = time(get(f, "activatedAt"));
    k.expires_at = time(get(f, "expiresAt"));

    // Service rates: claude and gemini as they are, the original's codex is our openai.
    if let Ok(Value::Object(rates)) = serde_json::from_str::<Value>(get(f, "serviceRates")) {
        let mut out = BTreeMap::new();
        for (service, rate) in rates {
            let rate = rate
                .as_f64()
                .or_else(|| rate.as_str().and_then(|s| s.parse().ok()));
            let Some(rate) = rate.filter(|r| r.is_finite() && *r >= 0.0) else {
                continue;
            };
            match service.as_str() {
                "claude" | "gemini" => {
                    out.insert(service, rate);
                }
                "codex" | "openai" => {
                    out.insert("openai".to_string(), rate);
                }
                other if (rate - 1.0).abs() > f64::EPSILON => note(format!(
                    "service rate for {other:?} ({rate}) has no counterpart here: dropped"
                )),
                _ => {}
            }
        }
        k.service_rates = out;
    }

    // Bindings. `responses:<id>` and `api:<id>` are kept (the scheduler reads them); bare
    // OpenAI and Gemini ids are the original's OAuth accounts, which have no counterpart.
    let bind = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
    k.claude_account_id = bind(get(f, "claudeAccountId"));
    k.claude_console_account_id = bind(get(f, "claudeConsoleAccountId"));
    k.openai_account_id = bind(get(f, "openaiAccountId"));
    k.gemini_account_id = bind(get(f, "geminiAccountId"));
    if let Some(o) = k.openai_account_id.clone() {
        if !o.starts_with("responses:") && !o.starts_with("group:") {
            note(format!(
                "bound to OpenAI OAuth account {o}, which has no counterpart here: binding dropped"
            ));
            k.openai_account_id = None;
        }
    }
    if let Some(g) = k.gemini_account_id.clone() {
        if !g.starts_with("api:") && !g.starts_with("group:") {
            note(format!(
                "bound to Gemini OAuth account {g}, which has no counterpart here: binding dropped"
            ));
            k.gemini_account_id = None;
        }
    }
    if let Some(a) = bind(get(f, "azureOpenaiAccountId")) {
        if k.openai_account_id.is_none() {
            k.openai_account_id = Some(a);
        } else {
            note(format!(
                "also bound to Azure OpenAI account {a}; one OpenAI binding is kept here"
            ));
        }
    }
    if let Some(b) = bind(get(f, "bedrockAccountId")) {
        if k.claude_account_id.is_none() && k.claude_console_account_id.is_none() {
            k.claude_account_id = Some(b);
        } else {
            note(format!(
                "also bound to Bedrock account {b}; one Claude binding is kept here"
            ));
        }
    }
    if let Some(d) = bind(get(f, "droidAccountId")) {
        note(format!(
            "bound to Droid account {d}, which has no counterpart here: binding dropped"
        ));
    }
    if !get(f, "userId").is_empty() {
        note(format!(
            "owned by user {:?}; users are not imported, so the key has no owner here",
            get(f, "userUsername")
        ));
    }
    Some((k, hash))
}

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
            "blocked" => "blocked".into(),
            "error" | "unauthorized" => "error".into(),
            _ => "active".into(),
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

/// An original group and its members (only those imported are kept).
pub fn group(
    f: &Fields,
    members: &[String],
    imported: &std::collections::HashSet<String>,
    notes: &mut Vec<Unmapped>,
) -> Option<AccountGroup> {
    let item = format!("group {} ({})", get(f, "id"), get(f, "name"));
    let platform = get(f, "platform");
    if get(f, "id").is_empty() {
        return None;
    }
    if !["claude", "openai", "gemini"].contains(&platform) {
        notes.push(Unmapped {
            item,
            reason: format!("{platform:?} groups have no counterpart here: skipped"),
        });
        return None;
    }
    let mut kept: Vec<String> = Vec::new();
    for m in members {
        if imported.contains(m) {
            kept.push(m.clone());
        } else {
            notes.push(Unmapped {
                item: item.clone(),
                reason: format!("member {m} was not imported: left out of the group"),
            });
        }
    }
    kept.sort();
    let created = time(get(f, "createdAt")).unwrap_or_else(|| format_time(chrono::Utc::now()));
    Some(AccountGroup {
        id: get(f, "id").to_string(),
        name: get(f, "name").to_string(),
        platform: platform.to_string(),
        description: get(f, "description").to_string(),
        members: kept,
        updated_at: time(get(f, "updatedAt")).unwrap_or_else(|| created.clone()),
        created_at: created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_limits_and_bindings_map() {
        let hash = "ab".repeat(32);
        let f = fields(&[
            ("id", "k1"),
            ("name", "team"),
            ("apiKey", &hash),
            ("isActive", "true"),
            ("tokenLimit", "1000"),
            ("concurrencyLimit", "2"),
            ("rateLimitWindow", "60"),
            ("rateLimitRequests", "30"),
            ("rateLimitCost", "1.5"),
            ("dailyCostLimit", "10"),
            ("totalCostLimit", "100"),
            ("weeklyOpusCostLimit", "20"),
            ("weeklyResetDay", "3"),
            ("weeklyResetHour", "6"),
            ("permissions", r#"["claude","droid"]"#),
            ("enableModelRestriction", "true"),
            ("restrictedModels", r#"["claude-opus-4"]"#),
            ("allowedClients", r#"["claude_code","droid_cli"]"#),
            ("serviceRates", r#"{"claude":1.2,"codex":0.5,"droid":2}"#),
            ("tags", r#"["a","b"]"#),
            ("claudeAccountId", "group:g1"),
            ("openaiAccountId", "oauth-id"),
            ("azureOpenaiAccountId", "az1"),
            ("expirationMode", "activation"),
            ("activationDays", "36"),
            ("activationUnit", "hours"),
            ("createdAt", "2025-01-02T03:04:05.000Z"),
        ]);
        let mut notes = Vec::new();
        let (k, h) = key(&f, &HashMap::new(), &mut notes).unwrap();
        assert_eq!(h, hash);
        assert!(k.is_active && !k.is_deleted);
        assert_eq!(
            (
                k.token_limit,
                k.concurrency_limit,
                k.rate_limit_window,
                k.rate_limit_requests
            ),
            (1000, 2, 60, 30)
        );
        assert_eq!(
            (
                k.rate_limit_cost,
                k.daily_cost_limit,
                k.total_cost_limit,
                k.weekly_opus_cost_limit
            ),
            (1.5, 10.0, 100.0, 20.0)
        );
        assert_eq!((k.weekly_reset_day, k.weekly_reset_hour), (3, 6));
        assert_eq!(k.permissions, vec!["claude"]);
        assert_eq!(k.allowed_clients, vec!["claude_code"]);
        assert_eq!(k.service_rates.get("openai"), Some(&0.5));
        assert_eq!(k.claude_account_id.as_deref(), Some("group:g1"));
        // The OAuth binding has no counterpart; the Azure one takes the OpenAI slot.
        assert_eq!(k.openai_account_id.as_deref(), Some("az1"));
        assert_eq!(k.activation_days, 2);
        assert_eq!(k.created_at, "2025-01-02T03:04:05.000Z");
        let reasons: Vec<&str> = notes.iter().map(|n| n.reason.as_str()).collect();
        assert!(reasons.iter().any(|r| r.contains("droid")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("droid_cli")));
        assert!(reasons.iter().any(|r| r.contains("OpenAI OAuth")));
        assert!(reasons.iter().any(|r| r.contains("hours")));
        // Legacy "all" permission means every service.
        let f = fields(&[("id", "k2"), ("apiKey", &hash), ("permissions", "all")]);
        assert!(key(&f, &HashMap::new(), &mut notes)
            .unwrap()
            .0
            .permissions
            .is_empty());
        // Without a hash a key cannot authenticate: skipped, said so.
        let f = fields(&[("id", "k3")]);
        assert!(key(&f, &HashMap::new(), &mut notes).is_none());
        let by_map = HashMap::from([("k3".to_string(), hash.clone())]);
        assert_eq!(key(&f, &by_map, &mut notes).unwrap().1, hash);
    }

    #[test]
    fn console_account_opens_its_key_and_oauth_types_are_refused() {
        let legacy = LegacyCrypto::new("test-encryption-key-0123456789abcdef");
        let f = fields(&[
            ("id", "c1"),
            ("name", "console"),
            ("apiUrl", "https://api.example.com"),
            ("apiKey", "000102030405060708090a0b0c0d0e0f:39ad2bd6de15f2a00e2463c7bdce10a687ddc7c50de60116abfcc73ca0c77721"),
            ("priority", "30"),
            ("isActive", "true"),
            ("schedulable", "true"),
            ("accountType", "group"),
            ("maxConcurrentTasks", "3"),
            ("supportedModels", r#"{"claude-a":"claude-a","claude-b":"upstream-b"}"#),
            ("proxy", r#"{"type":"socks5","host":"p.example","port":"1080","username":"u","password":"pw"}"#),
            ("dailyQuota", "5"),
        ]);
        let (a, s, notes) = account(SourceKind::ClaudeConsole, &f, &legacy).unwrap();
        assert_eq!(a.platform, Platform::ClaudeConsole);
        assert_eq!(s.api_key.as_deref(), Some("sk-ant-api03-secret-ünï"));
        assert_eq!((a.priority, a.max_concurrency), (30, 3));
        assert_eq!(a.account_type, AccountType::Dedicated);
        assert_eq!(a.supported_models, vec!["claude-a", "claude-b"]);
        assert_eq!(a.proxy.as_ref().map(|p| p.port), Some(1080));
        assert_eq!(s.proxy_password.as_deref(), Some("pw"));
        assert_eq!(notes.len(), 2, "{notes:?}");
        let wrong = LegacyCrypto::new("another-encryption-key-0123456789ab");
        assert!(matches!(
            account(SourceKind::ClaudeConsole, &f, &wrong),
            Err(Skip::Undecryptable(_))
        ));
        assert!(matches!(
            account(SourceKind::Gemini, &f, &legacy),
            Err(Skip::Unsupported(_))
        ));
    }

    #[test]
    fn bedrock_credentials_in_current_and_plain_forms() {
        let legacy = LegacyCrypto::new("test-encryption-key-0123456789abcdef");
        let stored = r#"{"encrypted":"80557febf040c93fa2310d7c9db745fc66556c9391aee68aea8ff02aeac43b26f89a963b22f8e8762e2b7a466d16ce69025fcef0eb0f6e88389d2c1f7b12d305","iv":"000102030405060708090a0b0c0d0e0f"}"#;
        let f = fields(&[
            ("id", "b1"),
            ("region", "us-east-1"),
            ("awsCredentials", stored),
            ("credentialType", "access_key"),
        ]);
        let (a, s, _) = account(SourceKind::Bedrock, &f, &legacy).unwrap();
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(s.aws_access_key_id.as_deref(), Some("AKIA1"));
        assert_eq!(s.aws_secret_access_key.as_deref(), Some("s3cr3t"));
        let f = fields(&[
            ("id", "b2"),
            (
                "awsCredentials",
                r#"{"accessKeyId":"AK","secretAccessKey":"SK"}"#,
            ),
        ]);
        let (_, s, _) = account(SourceKind::Bedrock, &f, &legacy).unwrap();
        assert_eq!(s.aws_access_key_id.as_deref(), Some("AK"));
    }
}
