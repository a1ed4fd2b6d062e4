//! An original key record: its limits, restrictions and expiry, and its stored hash.

use std::collections::{BTreeMap, HashMap};

use app::domain::{ApiKey, ExpirationMode};
use serde_json::Value;

use super::{get, list, number, small, time, truthy, whole, Unmapped};
use crate::{import_crs::source::Fields, timestamps::format_time};

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
