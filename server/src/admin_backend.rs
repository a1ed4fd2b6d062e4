//! The server side of the admin pages' server functions (`app::backend::AdminBackend`).
//!
//! Forms are turned into the admin JSON API's inputs and go through the same functions, so a
//! page and a script are held to the same rules and get the same messages.

use std::{collections::HashMap, net::IpAddr};

use app::{
    backend::{AdminBackend, KeyScope, LoginGrant, LoginRefusal},
    domain::{
        AccountDetail, AccountForm, AccountGroup, AccountRow, AccountTest, ApiKey,
        DashboardSummary, KeyForm, KeyPage, KeyQuery, KeyRow, KeyStats, OAuthStart, Platform,
        RecordPage, RecordQuery, SessionInfo, Settings, SettingsForm, UserKeyDefaults, UserRole,
        UserRow, WebhookChannel, KEYS_PER_PAGE,
    },
};
use axum::{extract::State, Json};
use chrono::Utc;
use serde_json::{json, Value};

use crate::{
    auth::api_key::{format_time, parse_time},
    routes::admin::{accounts, groups, keys, AdminError, AdminUser},
    state::AppState,
    store::{buckets, StoreError, StoredKey},
};

pub struct AdminPages(pub AppState);

/// Store failures stay in the log; the page says what the admin can do about it.
fn unavailable(e: StoreError) -> String {
    tracing::error!(error = %e, "admin pages: store error");
    "The store is unavailable; retry shortly".to_string()
}

fn admin_error(e: AdminError) -> String {
    e.message()
}

/// The admin API handlers take an `AdminUser`; the pages' session was checked already.
fn pages_user() -> AdminUser {
    AdminUser("admin-pages".into())
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn blank_to_null(s: &str) -> Value {
    match s.trim() {
        "" => Value::Null,
        v => Value::String(v.to_string()),
    }
}

/// The key form as the admin API's `KeyInput`.
pub fn key_input(f: &KeyForm) -> Result<Value, String> {
    let ticked = |v: &Option<String>| v.is_some();
    let permissions: Vec<&str> = [
        ("claude", &f.perm_claude),
        ("openai", &f.perm_openai),
        ("gemini", &f.perm_gemini),
    ]
    .into_iter()
    .filter(|(_, v)| ticked(v))
    .map(|(p, _)| p)
    .collect();
    let clients: Vec<&str> = [
        ("claude_code", &f.client_claude_code),
        ("gemini_cli", &f.client_gemini_cli),
        ("codex_cli", &f.client_codex_cli),
    ]
    .into_iter()
    .filter(|(_, v)| ticked(v))
    .map(|(c, _)| c)
    .collect();
    let mut platform_limits = serde_json::Map::new();
    for (p, d, t) in [
        ("claude", &f.claude_daily, &f.claude_total),
        ("openai", &f.openai_daily, &f.openai_total),
        ("gemini", &f.gemini_daily, &f.gemini_total),
    ] {
        if !d.trim().is_empty() || !t.trim().is_empty() {
            platform_limits.insert(
                p.into(),
                json!({"dailyCost": d.trim(), "totalCost": t.trim()}),
            );
        }
    }
    let mut model_limits = serde_json::Map::new();
    for (n, line) in f.model_limits.lines().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [] => {}
            [model, daily] => {
                model_limits.insert(model.to_string(), json!({"dailyCost": daily}));
            }
            [model, daily, total] => {
                model_limits.insert(
                    model.to_string(),
                    json!({"dailyCost": daily, "totalCost": total}),
                );
            }
            _ => {
                return Err(format!(
                    "modelLimits: line {} should be `model daily [total]`",
                    n + 1
                ))
            }
        }
    }
    let restricted = split_list(&f.restricted_models);
    let activation = f.activation_days.trim();
    let expires_at = match f.expires_at.trim() {
        "" => Value::Null,
        d if d.len() == 10 => json!(format!("{d}T23:59:59Z")),
        t => json!(t),
    };
    let mut input = json!({
        "name": f.name,
        "description": f.description,
        "tags": split_list(&f.tags),
        "permissions": permissions,
        "concurrencyLimit": f.concurrency_limit,
        "rateLimitWindow": f.rate_limit_window,
        "rateLimitRequests": f.rate_limit_requests,
        "tokenLimit": f.token_limit,
        "rateLimitCost": f.rate_limit_cost,
        "dailyCostLimit": f.daily_cost_limit,
        "totalCostLimit": f.total_cost_limit,
        "weeklyCostLimit": f.weekly_cost_limit,
        "weeklyOpusCostLimit": f.weekly_opus_cost_limit,
        "platformLimits": platform_limits,
        "modelLimits": model_limits,
        "enableModelRestriction": !restricted.is_empty(),
        "restrictedModels": restricted,
        "enableClientRestriction": !clients.is_empty(),
        "allowedClients": clients,
        "claudeAccountId": blank_to_null(&f.claude_account_id),
        "claudeConsoleAccountId": blank_to_null(&f.claude_console_account_id),
    });
    if activation.is_empty() {
        input["expirationMode"] = json!("fixed");
        input["expiresAt"] = expires_at;
    } else {
        let days: u32 = activation
            .parse()
            .map_err(|_| "activationDays must be a whole number of days".to_string())?;
        input["expirationMode"] = json!("activation");
        input["activationDays"] = json!(days);
        input["expiresAt"] = Value::Null;
    }
    Ok(input)
}

/// The defaults of user-created keys from the settings form, checked by the key limits' own
/// rules (a refused value is named `userKeyDefaults.<field>`).
pub fn user_key_defaults(f: &SettingsForm) -> Result<UserKeyDefaults, String> {
    let permissions: Vec<&str> = [
        ("claude", &f.user_key_perm_claude),
        ("openai", &f.user_key_perm_openai),
        ("gemini", &f.user_key_perm_gemini),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(p, _)| p)
    .collect();
    let input = json!({
        "permissions": permissions,
        "concurrencyLimit": f.user_key_concurrency_limit,
        "rateLimitWindow": f.user_key_rate_limit_window,
        "rateLimitRequests": f.user_key_rate_limit_requests,
        "tokenLimit": f.user_key_token_limit,
        "rateLimitCost": f.user_key_rate_limit_cost,
        "dailyCostLimit": f.user_key_daily_cost_limit,
        "totalCostLimit": f.user_key_total_cost_limit,
        "weeklyCostLimit": f.user_key_weekly_cost_limit,
    });
    let input: keys::KeyInput =
        serde_json::from_value(input).map_err(|e| format!("invalid form: {e}"))?;
    let mut k = ApiKey::default();
    keys::apply_key(&mut k, input).map_err(|e| format!("userKeyDefaults.{}", e.message()))?;
    let expiry_days = match f.user_key_expiry_days.trim() {
        "" => 0,
        v => v.parse::<u32>().map_err(|_| {
            "userKeyDefaults.expiryDays must be a whole number of days ≥ 0".to_string()
        })?,
    };
    Ok(UserKeyDefaults {
        daily_cost_limit: k.daily_cost_limit,
        total_cost_limit: k.total_cost_limit,
        weekly_cost_limit: k.weekly_cost_limit,
        concurrency_limit: k.concurrency_limit,
        rate_limit_window: k.rate_limit_window,
        rate_limit_requests: k.rate_limit_requests,
        token_limit: k.token_limit,
        rate_limit_cost: k.rate_limit_cost,
        permissions: k.permissions,
        expiry_days,
    })
}

/// The admin API's `KeyInput` of a key a user creates: their name and description, and
/// everything else from the admin's defaults.
pub fn user_key_input(
    d: &UserKeyDefaults,
    name: &str,
    description: &str,
    now: chrono::DateTime<Utc>,
) -> Value {
    let expires_at = (d.expiry_days > 0)
        .then(|| format_time(now + chrono::Duration::days(i64::from(d.expiry_days))));
    json!({
        "name": name,
        "description": description,
        "permissions": d.permissions,
        "concurrencyLimit": d.concurrency_limit,
        "rateLimitWindow": d.rate_limit_window,
        "rateLimitRequests": d.rate_limit_requests,
        "tokenLimit": d.token_limit,
        "rateLimitCost": d.rate_limit_cost,
        "dailyCostLimit": d.daily_cost_limit,
        "totalCostLimit": d.total_cost_limit,
        "weeklyCostLimit": d.weekly_cost_limit,
        "expirationMode": "fixed",
        "expiresAt": expires_at,
    })
}

/// One user's key creation at a time (on this instance): the allowance is counted and the key
/// written without another creation in between.
static USER_KEY_CREATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The account form as the admin API's `AccountInput`.
pub fn account_input(f: &AccountForm, editing: bool) -> Result<Value, String> {
    let mut input = json!({
        "name": f.name,
        "description": f.description,
        "accountType": if f.account_type.is_empty() { "shared" } else { f.account_type.as_str() },
        "supportedModels": split_list(&f.supported_models),
        "disableAutoProtection": f.disable_auto_protection.is_some(),
    });
    let set = |input: &mut Value, field: &str, v: &str| {
        if !v.trim().is_empty() {
            input[field] = json!(v.trim());
        }
    };
    set(&mut input, "apiUrl", &f.api_url);
    set(&mut input, "apiKey", &f.api_key);
    set(&mut input, "userAgent", &f.user_agent);
    set(&mut input, "deploymentName", &f.deployment_name);
    set(&mut input, "apiVersion", &f.api_version);
    set(&mut input, "region", &f.region);
    set(&mut input, "bearerToken", &f.bearer_token);
    set(&mut input, "oauthSessionId", &f.oauth_session_id);
    if !f.priority.trim().is_empty() {
        match f.priority.trim().parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) => input["priority"] = json!(p),
            _ => return Err("priority must be a whole number from 1 to 100".into()),
        }
    }
    if !f.max_concurrency.trim().is_empty() {
        let n: u32 = f
            .max_concurrency
            .trim()
            .parse()
            .map_err(|_| "maxConcurrency must be a whole number ≥ 0".to_string())?;
        input["maxConcurrency"] = json!(n);
    }
    if !f.aws_access_key_id.trim().is_empty() {
        input["awsCredentials"] = json!({
            "accessKeyId": f.aws_access_key_id.trim(),
            "secretAccessKey": f.aws_secret_access_key.trim(),
        });
    }
    match f.proxy_type.trim() {
        // On an edit, no proxy type removes the proxy; on a create it is simply absent.
        "" if editing => input["proxy"] = Value::Null,
        "" => {}
        kind => {
            let port: u16 = f
                .proxy_port
                .trim()
                .parse()
                .map_err(|_| "proxy port must be a number from 1 to 65535".to_string())?;
            if f.proxy_host.trim().is_empty() {
                return Err("proxy host is required with a proxy type".into());
            }
            input["proxy"] = json!({
                "type": kind,
                "host": f.proxy_host.trim(),
                "port": port,
                "username": blank_to_null(&f.proxy_username),
                "password": blank_to_null(&f.proxy_password),
            });
        }
    }
    Ok(input)
}

fn account_form(a: &app::domain::Account, groups: &[AccountGroup]) -> AccountForm {
    let proxy = a.proxy.clone().unwrap_or_default();
    AccountForm {
        platform: a.platform.as_str().into(),
        name: a.name.clone(),
        description: a.description.clone(),
        api_url: a.api_url.clone(),
        priority: a.priority.to_string(),
        max_concurrency: a.max_concurrency.to_string(),
        account_type: match a.account_type {
            app::domain::AccountType::Shared => "shared".into(),
            app::domain::AccountType::Dedicated => "dedicated".into(),
        },
        supported_models: a.supported_models.join(", "),
        user_agent: a.user_agent.clone().unwrap_or_default(),
        disable_auto_protection: a.disable_auto_protection.then(|| "on".into()),
        proxy_type: proxy.kind,
        proxy_host: proxy.host,
        proxy_port: if proxy.port == 0 {
            String::new()
        } else {
            proxy.port.to_string()
        },
        proxy_username: proxy.username.unwrap_or_default(),
        deployment_name: a.deployment_name.clone().unwrap_or_default(),
        api_version: a.api_version.clone().unwrap_or_default(),
        region: a.region.clone().unwrap_or_default(),
        groups: groups
            .iter()
            .filter(|g| g.members.contains(&a.id))
            .map(|g| g.id.clone())
            .collect::<Vec<_>>()
            .join(","),
        ..Default::default()
    }
}

fn key_state_matches(k: &ApiKey, state: &str, now: chrono::DateTime<Utc>) -> bool {
    let expired = k
        .expires_at
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|t| t <= now);
    match state {
        "deleted" => k.is_deleted,
        "active" => !k.is_deleted && k.is_active && !k.owner_disabled && !expired,
        "disabled" => !k.is_deleted && (!k.is_active || k.owner_disabled),
        "expired" => !k.is_deleted && expired,
        _ => !k.is_deleted,
    }
}

fn in_scope(k: &ApiKey, scope: &KeyScope) -> bool {
    match scope {
        KeyScope::All => true,
        KeyScope::OwnedBy(uid) => k.user_id.as_deref() == Some(uid.as_str()),
    }
}

impl AdminPages {
    async fn scoped_key(&self, scope: &KeyScope, id: &str) -> Result<StoredKey, String> {
        self.0
            .store
            .get_key(id)
            .await
            .map_err(unavailable)?
            .filter(|k| in_scope(&k.key, scope))
            .ok_or_else(|| "API key not found".to_string())
    }

    async fn usernames(&self) -> Result<HashMap<String, String>, String> {
        Ok(crate::users::list(&self.0.store)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|u| (u.user.id, u.user.username))
            .collect())
    }

    async fn set_groups(&self, account_id: &str, wanted: &[String]) -> Result<(), String> {
        let state = &self.0;
        let snap = state
            .store
            .account_snapshot(None)
            .await
            .map_err(unavailable)?;
        for mut g in snap.groups.unwrap_or_default() {
            let member = g.members.iter().any(|m| m == account_id);
            let want = wanted.contains(&g.id);
            if member == want {
                continue;
            }
            if want {
                g.members.push(account_id.to_string());
            } else {
                g.members.retain(|m| m != account_id);
            }
            g.updated_at = format_time(Utc::now());
            state.store.put_group(&g).await.map_err(unavailable)?;
        }
        state.scheduler.invalidate();
        Ok(())
    }
}

#[async_trait::async_trait]
impl AdminBackend for AdminPages {
    async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginGrant, LoginRefusal> {
        self.0.admin.login(username, password, client).await
    }

    async fn session(&self, token: &str) -> Option<SessionInfo> {
        self.0.admin.session(token).await
    }

    async fn logout(&self, token: &str) {
        self.0.admin.logout(token).await
    }

    async fn change_password(
        &self,
        token: &str,
        change: app::backend::PasswordChange,
        client: Option<IpAddr>,
    ) -> Result<String, app::backend::ChangeRefusal> {
        self.0.admin.change_password(token, &change, client).await
    }

    async fn dashboard(&self) -> Result<DashboardSummary, String> {
        crate::routes::admin::dashboard_summary(&self.0)
            .await
            .map_err(admin_error)
    }

    async fn keys(&self, scope: KeyScope, q: KeyQuery) -> Result<KeyPage, String> {
        let state = &self.0;
        let now = Utc::now();
        let all = state.all_keys().await.map_err(unavailable)?;
        let scoped: Vec<&StoredKey> = all.iter().filter(|k| in_scope(&k.key, &scope)).collect();
        let mut tags: Vec<String> = scoped
            .iter()
            .flat_map(|k| k.key.tags.iter().cloned())
            .collect();
        tags.sort();
        tags.dedup();
        let needle = q.search.trim().to_lowercase();
        let mut rows: Vec<&ApiKey> = scoped
            .into_iter()
            .map(|k| &k.key)
            .filter(|k| key_state_matches(k, &q.state, now))
            .filter(|k| q.tag.is_empty() || k.tags.contains(&q.tag))
            .filter(|k| {
                needle.is_empty()
                    || k.name.to_lowercase().contains(&needle)
                    || k.key_preview.to_lowercase().contains(&needle)
                    || k.id.contains(&needle)
                    || k.tags.iter().any(|t| t.to_lowercase().contains(&needle))
            })
            .collect();
        let last_used = state.store.keys_last_used().await.map_err(unavailable)?;
        match q.sort.as_str() {
            "name" => rows.sort_by_key(|k| k.name.to_lowercase()),
            "last_used" => rows.sort_by_key(|k| std::cmp::Reverse(last_used.get(&k.id).copied())),
            "cost" => {
                let names: Vec<String> = rows.iter().map(|k| buckets::key_total(&k.id)).collect();
                let totals = state.store.usage(&names).await.map_err(unavailable)?;
                let mut paired: Vec<(&ApiKey, u64)> = rows
                    .into_iter()
                    .zip(totals)
                    .map(|(k, t)| (k, t.cost_nanos))
                    .collect();
                paired.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
                rows = paired.into_iter().map(|(k, _)| k).collect();
            }
            _ => rows.sort_by(|a, b| b.created_at.cmp(&a.created_at)),
        }
        let matching = rows.len();
        let pages = matching.div_ceil(KEYS_PER_PAGE).max(1);
        let page = (q.page.max(1) as usize).min(pages);
        let shown: Vec<ApiKey> = rows
            .into_iter()
            .skip((page - 1) * KEYS_PER_PAGE)
            .take(KEYS_PER_PAGE)
            .cloned()
            .collect();
        // Usage and limits only for the rows on this page.
        let names: Vec<String> = shown.iter().map(|k| buckets::key_total(&k.id)).collect();
        let totals = state.store.usage(&names).await.map_err(unavailable)?;
        let owners = if shown.iter().any(|k| k.user_id.is_some()) {
            self.usernames().await?
        } else {
            HashMap::new()
        };
        let mut out = Vec::with_capacity(shown.len());
        for (k, total) in shown.into_iter().zip(totals) {
            let report = keys::limits_report(state, &k).await.map_err(unavailable)?;
            out.push(KeyRow {
                last_used_at: last_used
                    .get(&k.id)
                    .and_then(|ms| chrono::DateTime::from_timestamp_millis(*ms))
                    .map(format_time),
                owner: k.user_id.as_ref().and_then(|u| owners.get(u).cloned()),
                disabled_by_admin: k.disabled_by_admin && !k.is_active,
                is_active: k.is_active && !k.owner_disabled,
                limits: crate::routes::api_stats::limit_bars(&report),
                id: k.id,
                name: k.name,
                key_preview: k.key_preview,
                created_at: k.created_at,
                expires_at: k.expires_at,
                is_deleted: k.is_deleted,
                tags: k.tags,
                total,
            });
        }
        Ok(KeyPage {
            rows: out,
            matching: matching as u64,
            page: page as u32,
            pages: pages as u32,
            tags,
        })
    }

    async fn key_form(&self, scope: KeyScope, id: &str) -> Result<KeyForm, String> {
        Ok(KeyForm::of(&self.scoped_key(&scope, id).await?.key))
    }

    async fn create_keys(&self, scope: KeyScope, form: KeyForm) -> Result<Vec<String>, String> {
        let state = &self.0;
        let _one_at_a_time = match &scope {
            KeyScope::OwnedBy(_) => Some(USER_KEY_CREATION.lock().await),
            KeyScope::All => None,
        };
        let (input, owner, count) = match &scope {
            KeyScope::All => {
                let count = match form.count.trim() {
                    "" => 1,
                    n => match n.parse::<u32>() {
                        Ok(c) if (1..=100).contains(&c) => c,
                        _ => return Err("count must be a whole number from 1 to 100".into()),
                    },
                };
                (key_input(&form)?, None, count)
            }
            // A user names and describes their key; limits, services and expiry are the
            // admin's defaults, bindings the admin's to set.
            KeyScope::OwnedBy(uid) => {
                let settings = state.settings.get();
                if !settings.user_keys_enabled {
                    return Err("Creating keys is turned off by the administrator".into());
                }
                // Deleted keys count: deleting never frees a slot (an admin's permanent
                // delete does).
                let (mut held, mut deleted) = (0usize, 0usize);
                for k in state.all_keys().await.map_err(unavailable)?.iter() {
                    if k.key.user_id.as_deref() == Some(uid) {
                        held += 1;
                        deleted += usize::from(k.key.is_deleted);
                    }
                }
                if held >= settings.max_keys_per_user as usize {
                    let of_which = match deleted {
                        0 => String::new(),
                        1 => " (1 of them deleted: deleted keys count too)".to_string(),
                        n => format!(" ({n} of them deleted: deleted keys count too)"),
                    };
                    return Err(format!(
                        "name: you already have the maximum of {} keys{of_which}; ask an administrator to remove one",
                        settings.max_keys_per_user
                    ));
                }
                let input = user_key_input(
                    &settings.user_key_defaults,
                    &form.name,
                    &form.description,
                    Utc::now(),
                );
                (input, Some(uid.clone()), 1)
            }
        };
        let mut created = Vec::with_capacity(count as usize);
        for i in 0..count {
            let mut one = input.clone();
            if count > 1 {
                one["name"] = json!(format!("{}-{}", form.name.trim(), i + 1));
            }
            let parsed: keys::KeyInput =
                serde_json::from_value(one).map_err(|e| format!("invalid form: {e}"))?;
            let (_, secret) = keys::new_key(state, parsed, owner.clone())
                .await
                .map_err(admin_error)?;
            created.push(secret);
        }
        tracing::info!(
            count,
            owned = owner.is_some(),
            "keys created from the admin pages"
        );
        Ok(created)
    }

    async fn update_key(&self, scope: KeyScope, id: &str, form: KeyForm) -> Result<(), String> {
        if scope != KeyScope::All {
            return Err("Only an administrator can change a key's settings".into());
        }
        let stored = self.scoped_key(&scope, id).await?;
        if stored.key.is_deleted {
            return Err("Restore the key before editing it".into());
        }
        let input: keys::KeyInput =
            serde_json::from_value(key_input(&form)?).map_err(|e| format!("invalid form: {e}"))?;
        // On the record as it is now: a concurrent disable is never overwritten.
        let mut failed = None;
        let written = crate::store::modify_key(&*self.0.store, id, |k| {
            if k.key.is_deleted {
                failed = Some("Restore the key before editing it".to_string());
                return false;
            }
            match keys::apply_key(&mut k.key, input.clone()) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(admin_error(e));
                    false
                }
            }
        })
        .await
        .map_err(unavailable)?;
        if let Some(e) = failed {
            return Err(e);
        }
        written.ok_or_else(|| "API key not found".to_string())?;
        tracing::info!(key = %id, "key edited from the admin pages");
        Ok(())
    }

    async fn key_action(&self, scope: KeyScope, id: &str, action: &str) -> Result<(), String> {
        let stored = self.scoped_key(&scope, id).await?;
        let admin = scope == KeyScope::All;
        if let KeyStep::Purge = key_step(&mut stored.key.clone(), action, admin)? {
            self.0.store.delete_key(id).await.map_err(unavailable)?;
            tracing::info!(key = %id, "key removed permanently from the admin pages");
            return Ok(());
        }
        // On the record as it is now: a concurrent write (an admin's disable) is never undone.
        let mut failed = None;
        let written = crate::store::modify_key(&*self.0.store, id, |k| {
            match key_step(&mut k.key, action, admin) {
                Ok(KeyStep::Write) => true,
                Ok(KeyStep::Purge) => false,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .await
        .map_err(unavailable)?;
        if let Some(e) = failed {
            return Err(e);
        }
        written.ok_or_else(|| "API key not found".to_string())?;
        tracing::info!(key = %id, action, "key changed from the admin pages");
        Ok(())
    }

    async fn accounts(&self) -> Result<Vec<AccountRow>, String> {
        let state = &self.0;
        let stored = state.store.list_accounts().await.map_err(unavailable)?;
        let described = accounts::describe(state, stored)
            .await
            .map_err(admin_error)?;
        let day = crate::store::Periods::at(Utc::now(), state.config.timezone_offset_hours).day;
        let names: Vec<String> = described
            .iter()
            .map(|v| buckets::account_day(v["id"].as_str().unwrap_or_default(), &day))
            .collect();
        let today = state.store.usage(&names).await.map_err(unavailable)?;
        let mut rows: Vec<AccountRow> = described
            .iter()
            .zip(today)
            .map(|(v, today)| {
                let state_word = v["state"].as_str().unwrap_or_default().to_string();
                let cooldown = v["cooldowns"].as_array().and_then(|c| c.first()).cloned();
                let reason = match state_word.as_str() {
                    "normal" => String::new(),
                    "paused" if v["isActive"] == false => "disabled".into(),
                    "paused" => "not schedulable (paused by an admin)".into(),
                    "blocked" | "error" => v["errorMessage"]
                        .as_str()
                        .filter(|m| !m.is_empty())
                        .unwrap_or(state_word.as_str())
                        .to_string(),
                    _ => cooldown
                        .map(|c| {
                            let class = c["class"].as_str().unwrap_or("cooldown");
                            match c["family"].as_str() {
                                Some(f) => format!("{class} ({f} models, HTTP {})", c["status"]),
                                None => format!("{class} (HTTP {})", c["status"]),
                            }
                        })
                        .unwrap_or_default(),
                };
                AccountRow {
                    id: v["id"].as_str().unwrap_or_default().to_string(),
                    name: v["name"].as_str().unwrap_or_default().to_string(),
                    platform: v["platform"].as_str().unwrap_or_default().to_string(),
                    priority: v["priority"].as_u64().unwrap_or(0) as u32,
                    last_used_at: v["lastUsedAt"].as_str().map(str::to_string),
                    resting_until: v["cooldowns"]
                        .as_array()
                        .and_then(|c| c.iter().filter_map(|c| c["untilMs"].as_i64()).max())
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .map(format_time),
                    schedulable: v["schedulable"] == true,
                    state: state_word,
                    reason,
                    today,
                }
            })
            .collect();
        rows.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        Ok(rows)
    }

    async fn account(&self, id: &str) -> Result<AccountDetail, String> {
        let state = &self.0;
        let groups = self.groups().await?;
        if id.is_empty() {
            return Ok(AccountDetail {
                account: None,
                form: AccountForm {
                    platform: Platform::ClaudeConsole.as_str().into(),
                    priority: "50".into(),
                    account_type: "shared".into(),
                    ..Default::default()
                },
                errors: Vec::new(),
                groups,
            });
        }
        let stored = state
            .store
            .get_account(id)
            .await
            .map_err(unavailable)?
            .ok_or("Account not found")?;
        let errors = state
            .store
            .error_history(id, 20)
            .await
            .map_err(unavailable)?;
        Ok(AccountDetail {
            form: account_form(&stored.account, &groups),
            account: Some(stored.account),
            errors,
            groups,
        })
    }

    async fn save_account(&self, id: Option<&str>, form: AccountForm) -> Result<String, String> {
        let state = &self.0;
        let input: accounts::AccountInput =
            serde_json::from_value(account_input(&form, id.is_some())?)
                .map_err(|e| format!("invalid form: {e}"))?;
        let saved = match id {
            None => {
                let platform: Platform = serde_json::from_value(json!(form.platform))
                    .map_err(|_| "platform: choose an account type".to_string())?;
                accounts::create(state, platform, input).await
            }
            Some(id) => {
                let existing = state
                    .store
                    .get_account(id)
                    .await
                    .map_err(unavailable)?
                    .ok_or("Account not found")?;
                accounts::update(state, id, existing.account.platform, input).await
            }
        }
        .map_err(admin_error)?;
        let account_id = saved.0["data"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.set_groups(&account_id, &split_list(&form.groups))
            .await?;
        tracing::info!(account = %account_id, "account saved from the admin pages");
        Ok(account_id)
    }

    async fn account_action(&self, id: &str, action: &str) -> Result<(), String> {
        let state = &self.0;
        let mut account = state
            .store
            .get_account(id)
            .await
            .map_err(unavailable)?
            .ok_or("Account not found")?;
        match action {
            "toggle-schedulable" => {
                account.account.schedulable = !account.account.schedulable;
                state
                    .store
                    .put_account(&account)
                    .await
                    .map_err(unavailable)?;
            }
            "reset-status" => crate::scheduler::health::reset(state, &mut account)
                .await
                .map_err(unavailable)?,
            "delete" => {
                state.store.delete_account(id).await.map_err(unavailable)?;
                self.set_groups(id, &[]).await?;
            }
            other => return Err(format!("unknown action {other:?}")),
        }
        state.scheduler.invalidate();
        tracing::info!(account = %id, action, "account changed from the admin pages");
        Ok(())
    }

    async fn test_account(&self, id: &str) -> Result<AccountTest, String> {
        let Json(v) = accounts::test_account(
            pages_user(),
            State(self.0.clone()),
            axum::extract::Path(id.to_string()),
            None,
        )
        .await
        .map_err(admin_error)?;
        let d = &v["data"];
        Ok(AccountTest {
            ok: v["success"] == true,
            status: d["status"].as_u64().unwrap_or(0) as u16,
            latency_ms: d["latencyMs"].as_u64().unwrap_or(0),
            excerpt: d["response"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
        })
    }

    async fn oauth_start(&self, setup_token: bool) -> Result<OAuthStart, String> {
        let state = State(self.0.clone());
        let Json(v) = if setup_token {
            accounts::generate_setup_token_url(pages_user(), state, None).await
        } else {
            accounts::generate_auth_url(pages_user(), state, None).await
        }
        .map_err(admin_error)?;
        Ok(OAuthStart {
            session_id: v["data"]["sessionId"].as_str().unwrap_or_default().into(),
            auth_url: v["data"]["authUrl"].as_str().unwrap_or_default().into(),
        })
    }

    async fn oauth_exchange(&self, session_id: &str, code: &str) -> Result<(), String> {
        let input =
            serde_json::from_value(json!({"sessionId": session_id, "authorizationCode": code}))
                .map_err(|e| format!("invalid form: {e}"))?;
        let _ = accounts::exchange_code(
            pages_user(),
            State(self.0.clone()),
            axum::extract::OriginalUri(axum::http::Uri::from_static("/admin-next")),
            Ok(Json(input)),
        )
        .await
        .map_err(admin_error)?;
        Ok(())
    }

    async fn groups(&self) -> Result<Vec<AccountGroup>, String> {
        let snap = self
            .0
            .store
            .account_snapshot(None)
            .await
            .map_err(unavailable)?;
        let mut groups = snap.groups.unwrap_or_default();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    async fn create_group(&self, name: &str, platform: &str) -> Result<(), String> {
        let platform = if platform.is_empty() {
            "claude"
        } else {
            platform
        };
        let input = serde_json::from_value(json!({"name": name, "platform": platform}))
            .map_err(|e| format!("invalid form: {e}"))?;
        let _ = groups::create(pages_user(), State(self.0.clone()), Ok(Json(input)))
            .await
            .map_err(admin_error)?;
        Ok(())
    }

    async fn delete_group(&self, id: &str) -> Result<(), String> {
        let _ = groups::delete(
            pages_user(),
            State(self.0.clone()),
            axum::extract::Path(id.to_string()),
        )
        .await
        .map_err(admin_error)?;
        Ok(())
    }

    async fn users(&self) -> Result<Vec<UserRow>, String> {
        let state = &self.0;
        let users = crate::users::list(&state.store)
            .await
            .map_err(unavailable)?;
        let keys = state.all_keys().await.map_err(unavailable)?;
        let mut rows = Vec::with_capacity(users.len());
        for u in users {
            let all_own = keys
                .iter()
                .filter(|k| k.key.user_id.as_deref() == Some(&u.user.id));
            let deleted = all_own.clone().filter(|k| k.key.is_deleted).count();
            let own: Vec<&StoredKey> = all_own.filter(|k| !k.key.is_deleted).collect();
            let names: Vec<String> = own.iter().map(|k| buckets::key_total(&k.key.id)).collect();
            let mut total = app::domain::UsageCounters::default();
            for c in state.store.usage(&names).await.map_err(unavailable)? {
                total.add(&c);
            }
            rows.push(UserRow {
                key_count: own.len() as u64,
                deleted_key_count: deleted as u64,
                user: u.user,
                total,
            });
        }
        Ok(rows)
    }

    async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: UserRole,
    ) -> Result<(), String> {
        let state = &self.0;
        let admin = state
            .store
            .get_admin()
            .await
            .map_err(unavailable)?
            .map(|a| a.username)
            .unwrap_or_else(|| state.config.admin_username.clone());
        crate::users::create(&state.store, &admin, username, password, role)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                crate::users::UserError::Store(e) => unavailable(e),
                other => other.to_string(),
            })
    }

    async fn user_action(&self, id: &str, action: &str) -> Result<(), String> {
        let store = &self.0.store;
        let result = match action {
            "enable" => crate::users::set_active(store, id, true).await,
            "disable" => crate::users::set_active(store, id, false).await,
            "make-admin" => crate::users::set_role(store, id, UserRole::Admin).await,
            "make-user" => crate::users::set_role(store, id, UserRole::User).await,
            other => return Err(format!("unknown action {other:?}")),
        };
        result.map(|_| ()).map_err(|e| match e {
            crate::users::UserError::Store(e) => unavailable(e),
            other => other.to_string(),
        })
    }

    async fn set_user_budget(
        &self,
        id: &str,
        daily_cost: &str,
        monthly_cost: &str,
    ) -> Result<(), String> {
        let store = &self.0.store;
        let result = match crate::users::parse_budget(daily_cost, monthly_cost) {
            Ok(budget) => crate::users::set_budget(store, id, budget).await,
            Err(e) => Err(e),
        };
        result.map(|_| ()).map_err(|e| match e {
            crate::users::UserError::Store(e) => unavailable(e),
            other => other.to_string(),
        })
    }

    async fn records(&self, query: RecordQuery) -> Result<RecordPage, String> {
        crate::routes::admin::records::page(&self.0, &query)
            .await
            .map_err(admin_error)
    }

    async fn settings(&self) -> Settings {
        (*self.0.settings.get()).clone()
    }

    async fn save_settings(&self, form: SettingsForm) -> Result<(), String> {
        let mut s = (*self.0.settings.get()).clone();
        s.site_name = form.site_name.trim().to_string();
        s.logo_url = form.logo_url.trim().to_string();
        s.service_rates.clear();
        for (service, v) in [
            ("claude", &form.rate_claude),
            ("openai", &form.rate_openai),
            ("gemini", &form.rate_gemini),
        ] {
            if v.trim().is_empty() {
                continue;
            }
            let rate: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("serviceRates: the {service} rate must be a number"))?;
            s.service_rates.insert(service.into(), rate);
        }
        let previous = s.webhooks.clone();
        let mut hooks = Vec::new();
        for (n, line) in form.webhooks.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (line, enabled) = match line.strip_suffix("(off)") {
                Some(rest) => (rest.trim(), false),
                None => (line, true),
            };
            // `secret=…` anywhere on the line; `secret=***` keeps the stored one.
            let mut secret = None;
            let words: Vec<&str> = line
                .split_whitespace()
                .filter(|w| match w.strip_prefix("secret=") {
                    Some(v) => {
                        secret = Some(v.to_string());
                        false
                    }
                    None => true,
                })
                .collect();
            let (Some(kind), Some(url)) = (words.first(), words.get(1)) else {
                return Err(format!(
                    "webhooks: line {} should be `type url [name] [secret=…]`",
                    n + 1
                ));
            };
            let kind = kind.to_lowercase();
            let secret = match secret.as_deref() {
                Some("***") => previous
                    .iter()
                    .find(|w| w.kind == kind && w.url == *url)
                    .map(|w| w.secret.clone())
                    .unwrap_or_default(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let name = if words.len() > 2 {
                words[2..].join(" ")
            } else {
                kind.clone()
            };
            hooks.push(WebhookChannel {
                id: format!("wh{}", n + 1),
                kind,
                url: url.to_string(),
                name,
                secret,
                enabled,
            });
        }
        s.webhooks = hooks;
        s.webhooks_enabled = form.webhooks_enabled.is_some();
        s.user_keys_enabled = form.user_keys_enabled.is_some();
        s.max_keys_per_user = match form.max_keys_per_user.trim() {
            "" => 0,
            v => v
                .parse()
                .map_err(|_| "maxKeysPerUser must be a whole number".to_string())?,
        };
        s.user_key_defaults = user_key_defaults(&form)?;
        self.0
            .settings
            .save(&self.0.store, &self.0.crypto, s)
            .await
            .map_err(|e| match e {
                crate::settings::SettingsError::Store(e) => unavailable(e),
                other => other.to_string(),
            })?;
        tracing::info!("settings saved from the admin pages");
        Ok(())
    }

    async fn test_webhook(&self, index: usize) -> Result<(), String> {
        let settings = self.0.settings.get();
        let channel = settings
            .webhooks
            .get(index)
            .ok_or("webhooks: no saved channel there; save the settings first")?;
        self.0.notifier.test(channel).await
    }

    async fn key_stats(&self, key: &str) -> Result<KeyStats, String> {
        crate::routes::api_stats::key_stats(&self.0, key)
            .await
            .map_err(|(_, m)| m.to_string())
    }
}

/// What a key action does to a key record (`purge` removes it instead).
enum KeyStep {
    Write,
    Purge,
}

/// A key action of the admin pages applied to `key` (by an admin, or by its owner).
fn key_step(key: &mut app::domain::ApiKey, action: &str, admin: bool) -> Result<KeyStep, String> {
    match (action, key.is_deleted) {
        ("enable", false) if admin => {
            key.is_active = true;
            key.disabled_by_admin = false;
        }
        ("enable", false) if key.disabled_by_admin => return Err(
            "This key was disabled by an administrator; only an administrator can enable it again"
                .into(),
        ),
        ("enable", false) => key.is_active = true,
        ("disable", false) => {
            key.is_active = false;
            // An owner's own disable leaves an admin's mark as it is.
            key.disabled_by_admin |= admin;
        }
        // Soft delete, as the admin API: the key stops working, its usage stays.
        ("delete", false) => {
            key.is_deleted = true;
            key.is_active = false;
        }
        ("restore", true) if admin => {
            key.is_deleted = false;
            key.is_active = true;
            key.disabled_by_admin = false;
        }
        // Permanent: the record goes (its usage stays in the counters), and with it the
        // slot it held in its owner's allowance.
        ("purge", true) if admin => return Ok(KeyStep::Purge),
        ("enable" | "disable" | "delete", true) => return Err("API key not found".into()),
        ("restore", _) => {
            return Err("Only a deleted key can be restored, by an administrator".into())
        }
        ("purge", _) => {
            return Err("Only a deleted key can be removed permanently, by an administrator".into())
        }
        (other, _) => return Err(format!("unknown action {other:?}")),
    }
    Ok(KeyStep::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::CostLimits;

    #[test]
    fn key_form_becomes_the_api_input() {
        let form = KeyForm {
            name: "team".into(),
            tags: "a, b".into(),
            perm_claude: Some("on".into()),
            daily_cost_limit: "5".into(),
            claude_daily: "2".into(),
            model_limits: "claude-opus-* 1 10\n\nclaude-haiku-4 0.5".into(),
            restricted_models: "gpt-4o\nclaude-2".into(),
            client_claude_code: Some("on".into()),
            expires_at: "2030-01-31".into(),
            ..Default::default()
        };
        let v = key_input(&form).expect("input");
        assert_eq!(v["tags"], json!(["a", "b"]));
        assert_eq!(v["permissions"], json!(["claude"]));
        assert_eq!(v["platformLimits"]["claude"]["dailyCost"], "2");
        assert_eq!(v["modelLimits"]["claude-opus-*"]["totalCost"], "10");
        assert_eq!(v["modelLimits"]["claude-haiku-4"]["dailyCost"], "0.5");
        assert_eq!(v["restrictedModels"], json!(["gpt-4o", "claude-2"]));
        assert_eq!(v["enableClientRestriction"], true);
        assert_eq!(v["expiresAt"], "2030-01-31T23:59:59Z");
        // The admin API's own rules then apply, field named in the message.
        let mut key = ApiKey::default();
        let input: keys::KeyInput = serde_json::from_value(v).expect("parse");
        keys::apply_key(&mut key, input).expect("apply");
        assert_eq!(
            key.model_limits["claude-opus-*"],
            CostLimits {
                daily_cost: 1.0,
                total_cost: 10.0
            }
        );
        let bad = KeyForm {
            name: "x".into(),
            daily_cost_limit: "-1".into(),
            ..Default::default()
        };
        let input: keys::KeyInput =
            serde_json::from_value(key_input(&bad).expect("input")).expect("parse");
        let err = keys::apply_key(&mut ApiKey::default(), input).expect_err("negative");
        assert!(
            err.message().contains("dailyCostLimit"),
            "{}",
            err.message()
        );
        let broken = KeyForm {
            model_limits: "a b c d".into(),
            ..Default::default()
        };
        assert!(key_input(&broken)
            .expect_err("line")
            .starts_with("modelLimits"));
    }

    #[test]
    fn round_trip_of_a_key_through_its_form() {
        let mut key = ApiKey {
            name: "k".into(),
            daily_cost_limit: 3.5,
            concurrency_limit: 2,
            tags: vec!["x".into()],
            ..Default::default()
        };
        key.platform_limits.insert(
            "openai".into(),
            CostLimits {
                daily_cost: 1.0,
                total_cost: 0.0,
            },
        );
        let input: keys::KeyInput =
            serde_json::from_value(key_input(&KeyForm::of(&key)).expect("input")).expect("parse");
        let mut again = ApiKey::default();
        keys::apply_key(&mut again, input).expect("apply");
        assert_eq!(again.daily_cost_limit, 3.5);
        assert_eq!(again.concurrency_limit, 2);
        assert_eq!(again.tags, key.tags);
        assert_eq!(again.platform_limits, key.platform_limits);
    }

    #[test]
    fn user_key_defaults_are_checked_and_become_a_users_key() {
        let form = SettingsForm {
            user_key_daily_cost_limit: "1.5".into(),
            user_key_concurrency_limit: "2".into(),
            user_key_rate_limit_window: "10".into(),
            user_key_rate_limit_requests: "5".into(),
            user_key_perm_claude: Some("on".into()),
            user_key_expiry_days: "30".into(),
            ..Default::default()
        };
        let d = user_key_defaults(&form).expect("defaults");
        assert_eq!(d.daily_cost_limit, 1.5);
        assert_eq!(d.concurrency_limit, 2);
        assert_eq!((d.rate_limit_window, d.rate_limit_requests), (10, 5));
        assert_eq!(d.permissions, vec!["claude".to_string()]);
        assert_eq!(d.expiry_days, 30);
        for (bad, field) in [
            (
                SettingsForm {
                    user_key_total_cost_limit: "-1".into(),
                    ..Default::default()
                },
                "userKeyDefaults.totalCostLimit",
            ),
            (
                SettingsForm {
                    user_key_concurrency_limit: "1.5".into(),
                    ..Default::default()
                },
                "userKeyDefaults.concurrencyLimit",
            ),
            (
                SettingsForm {
                    user_key_expiry_days: "soon".into(),
                    ..Default::default()
                },
                "userKeyDefaults.expiryDays",
            ),
        ] {
            let err = user_key_defaults(&bad).expect_err(field);
            assert!(err.starts_with(field), "{err}");
        }

        let now = Utc::now();
        let input: keys::KeyInput =
            serde_json::from_value(user_key_input(&d, "laptop", "mine", now)).expect("parse");
        let mut key = ApiKey::default();
        keys::apply_key(&mut key, input).expect("apply");
        assert_eq!(key.name, "laptop");
        assert_eq!(key.daily_cost_limit, 1.5);
        assert_eq!(key.concurrency_limit, 2);
        assert_eq!(key.rate_limit_requests, 5);
        assert_eq!(key.permissions, vec!["claude".to_string()]);
        let expires = key
            .expires_at
            .as_deref()
            .and_then(parse_time)
            .expect("expiry");
        assert!(
            (expires - now - chrono::Duration::days(30))
                .num_seconds()
                .abs()
                <= 1
        );
        // No expiry by default.
        let input: keys::KeyInput =
            serde_json::from_value(user_key_input(&UserKeyDefaults::default(), "k", "", now))
                .expect("parse");
        let mut key = ApiKey::default();
        keys::apply_key(&mut key, input).expect("apply");
        assert!(key.expires_at.is_none() && !key.has_limits());
    }

    #[test]
    fn account_form_checks_numbers_and_proxy() {
        let mut f = AccountForm {
            name: "a".into(),
            priority: "0".into(),
            ..Default::default()
        };
        assert!(account_input(&f, false)
            .expect_err("priority")
            .starts_with("priority"));
        f.priority = "10".into();
        f.proxy_type = "socks5".into();
        f.proxy_host = "127.0.0.1".into();
        f.proxy_port = "x".into();
        assert!(account_input(&f, false)
            .expect_err("port")
            .starts_with("proxy port"));
        f.proxy_port = "1080".into();
        let v = account_input(&f, false).expect("ok");
        assert_eq!(v["proxy"]["port"], 1080);
        f.proxy_type.clear();
        assert!(account_input(&f, true).expect("edit")["proxy"].is_null());
        assert!(account_input(&f, false)
            .expect("create")
            .get("proxy")
            .is_none());
    }
}
