//! `/admin/api-keys`: create (the key is shown once), list with usage, edit, soft delete.

use app::domain::{ApiKey, ExpirationMode};
use axum::{
    extract::{rejection::JsonRejection, Path, State},
    Json,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminError, AdminUser};
use crate::{
    auth::api_key::{format_time, generate, parse_time},
    state::AppState,
    store::{buckets, Periods, StoredKey},
};

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct KeyInput {
    name: Option<String>,
    description: Option<String>,
    is_active: Option<bool>,
    /// A list, or the original's legacy string (`"all"`, `"claude"`).
    permissions: Option<Value>,
    tags: Option<Vec<String>>,
    claude_account_id: Option<Option<String>>,
    claude_console_account_id: Option<Option<String>>,
    allow_dedicated_fallback: Option<bool>,
    expiration_mode: Option<ExpirationMode>,
    activation_days: Option<u32>,
    expires_at: Option<Option<String>>,
    // Limits: numbers are checked here (a negative one is a 400 naming the field).
    concurrency_limit: Option<Value>,
    rate_limit_window: Option<Value>,
    rate_limit_requests: Option<Value>,
    token_limit: Option<Value>,
    rate_limit_cost: Option<Value>,
    daily_cost_limit: Option<Value>,
    total_cost_limit: Option<Value>,
    weekly_cost_limit: Option<Value>,
    weekly_opus_cost_limit: Option<Value>,
    weekly_reset_day: Option<Value>,
    weekly_reset_hour: Option<Value>,
    platform_limits: Option<Value>,
    model_limits: Option<Value>,
    enable_model_restriction: Option<bool>,
    restricted_models: Option<Vec<String>>,
    enable_client_restriction: Option<bool>,
    allowed_clients: Option<Vec<String>>,
    service_rates: Option<Value>,
}

const CLIENTS: [&str; 3] = ["claude_code", "gemini_cli", "codex_cli"];

/// A non-negative number (`null` = 0).
fn money(field: &str, v: &Value) -> Result<f64, AdminError> {
    match v {
        Value::Null => Ok(0.0),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(AdminError::BadRequest(format!(
                "{field} must be a number ≥ 0"
            ))),
        },
        Value::String(s) if s.trim().is_empty() => Ok(0.0),
        Value::String(s) => money(
            field,
            &s.trim()
                .parse::<f64>()
                .map(Value::from)
                .unwrap_or(Value::Bool(false)),
        ),
        _ => Err(AdminError::BadRequest(format!(
            "{field} must be a number ≥ 0"
        ))),
    }
}

fn whole(field: &str, v: &Value) -> Result<u64, AdminError> {
    let x = money(field, v)?;
    if x.fract() != 0.0 {
        return Err(AdminError::BadRequest(format!(
            "{field} must be a whole number ≥ 0"
        )));
    }
    Ok(x as u64)
}

fn cost_limits(
    field: &str,
    v: &Value,
) -> Result<std::collections::BTreeMap<String, app::domain::CostLimits>, AdminError> {
    let Value::Object(map) = v else {
        return if v.is_null() {
            Ok(Default::default())
        } else {
            Err(AdminError::BadRequest(format!("{field} must be an object")))
        };
    };
    let mut out = std::collections::BTreeMap::new();
    for (name, l) in map {
        let get = |k: &str| {
            money(
                &format!("{field}.{name}.{k}"),
                l.get(k).unwrap_or(&Value::Null),
            )
        };
        out.insert(
            name.clone(),
            app::domain::CostLimits {
                daily_cost: get("dailyCost")?,
                total_cost: get("totalCost")?,
            },
        );
    }
    Ok(out)
}

const SERVICES: [&str; 3] = ["claude", "gemini", "openai"];

pub(crate) fn apply_key(k: &mut ApiKey, input: KeyInput) -> Result<(), AdminError> {
    let too_long = |e: app::bounds::TooLong| AdminError::Invalid(e.field, e.to_string());
    if let Some(name) = &input.name {
        app::bounds::name("name", name.trim()).map_err(too_long)?;
    }
    if let Some(d) = &input.description {
        app::bounds::description("description", d).map_err(too_long)?;
    }
    if let Some(name) = input.name {
        if name.trim().is_empty() {
            return Err(AdminError::BadRequest("name must not be empty".into()));
        }
        k.name = name.trim().to_string();
    }
    if let Some(d) = input.description {
        k.description = d;
    }
    // Only admins set `isActive` (the API, the batch, the pages' admin actions): a key they
    // disable stays disabled for its owner.
    if let Some(v) = input.is_active {
        k.is_active = v;
        k.disabled_by_admin = !v;
    }
    if let Some(p) = input.permissions {
        let list: Vec<String> = match p {
            Value::String(s) if s == "all" || s.is_empty() => Vec::new(),
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            Value::Null => Vec::new(),
            _ => return Err(AdminError::BadRequest("permissions must be a list".into())),
        };
        if let Some(bad) = list.iter().find(|p| !SERVICES.contains(&p.as_str())) {
            return Err(AdminError::BadRequest(format!(
                "unknown permission {bad:?}; use claude, gemini or openai"
            )));
        }
        k.permissions = list;
    }
    if let Some(tags) = input.tags {
        k.tags = tags;
    }
    if let Some(acc) = input.claude_account_id {
        k.claude_account_id = acc.filter(|a| !a.is_empty());
    }
    if let Some(v) = input.allow_dedicated_fallback {
        k.allow_dedicated_fallback = v;
    }
    if let Some(acc) = input.claude_console_account_id {
        k.claude_console_account_id = acc.filter(|a| !a.is_empty());
    }
    if let Some(m) = input.expiration_mode {
        k.expiration_mode = m;
    }
    if let Some(d) = input.activation_days {
        k.activation_days = d;
    }
    if let Some(exp) = input.expires_at {
        match exp.filter(|e| !e.is_empty()) {
            None => k.expires_at = None,
            Some(e) => {
                let t = parse_time(&e).ok_or_else(|| {
                    AdminError::BadRequest("expiresAt must be an RFC 3339 time".into())
                })?;
                k.expires_at = Some(format_time(t));
            }
        }
    }
    let set_money = |field: &str, v: &Option<Value>, target: &mut f64| -> Result<(), AdminError> {
        if let Some(v) = v {
            *target = money(field, v)?;
        }
        Ok(())
    };
    set_money(
        "rateLimitCost",
        &input.rate_limit_cost,
        &mut k.rate_limit_cost,
    )?;
    set_money(
        "dailyCostLimit",
        &input.daily_cost_limit,
        &mut k.daily_cost_limit,
    )?;
    set_money(
        "totalCostLimit",
        &input.total_cost_limit,
        &mut k.total_cost_limit,
    )?;
    set_money(
        "weeklyCostLimit",
        &input.weekly_cost_limit,
        &mut k.weekly_cost_limit,
    )?;
    set_money(
        "weeklyOpusCostLimit",
        &input.weekly_opus_cost_limit,
        &mut k.weekly_opus_cost_limit,
    )?;
    if let Some(v) = &input.concurrency_limit {
        k.concurrency_limit = whole("concurrencyLimit", v)?.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(v) = &input.rate_limit_window {
        k.rate_limit_window = whole("rateLimitWindow", v)?.min(u64::from(u32::MAX)) as u32;
    }
    if let Some(v) = &input.rate_limit_requests {
        k.rate_limit_requests = whole("rateLimitRequests", v)?;
    }
    if let Some(v) = &input.token_limit {
        k.token_limit = whole("tokenLimit", v)?;
    }
    if let Some(v) = &input.weekly_reset_day {
        let d = whole("weeklyResetDay", v)?;
        if !(1..=7).contains(&d) {
            return Err(AdminError::BadRequest(
                "weeklyResetDay must be 1 (Monday) to 7 (Sunday)".into(),
            ));
        }
        k.weekly_reset_day = d as u8;
    }
    if let Some(v) = &input.weekly_reset_hour {
        let h = whole("weeklyResetHour", v)?;
        if h > 23 {
            return Err(AdminError::BadRequest(
                "weeklyResetHour must be 0 to 23".into(),
            ));
        }
        k.weekly_reset_hour = h as u8;
    }
    if let Some(v) = &input.platform_limits {
        let limits = cost_limits("platformLimits", v)?;
        if let Some(bad) = limits.keys().find(|p| !SERVICES.contains(&p.as_str())) {
            return Err(AdminError::BadRequest(format!(
                "platformLimits: unknown platform {bad:?}; use claude, gemini or openai"
            )));
        }
        k.platform_limits = limits;
    }
    if let Some(v) = &input.model_limits {
        let limits = cost_limits("modelLimits", v)?;
        if let Some(bad) = limits
            .keys()
            .find(|m| m.trim().is_empty() || m.trim_end_matches('*').is_empty())
        {
            return Err(AdminError::BadRequest(format!(
                "modelLimits: {bad:?} is not a model name or pattern"
            )));
        }
        k.model_limits = limits;
    }
    if let Some(v) = input.enable_model_restriction {
        k.enable_model_restriction = v;
    }
    if let Some(v) = input.restricted_models {
        k.restricted_models = v;
    }
    if let Some(v) = input.enable_client_restriction {
        k.enable_client_restriction = v;
    }
    if let Some(v) = input.allowed_clients {
        if let Some(bad) = v.iter().find(|c| !CLIENTS.contains(&c.as_str())) {
            return Err(AdminError::BadRequest(format!(
                "allowedClients: unknown client {bad:?}; use claude_code, gemini_cli or codex_cli"
            )));
        }
        k.allowed_clients = v;
    }
    if let Some(v) = &input.service_rates {
        let Value::Object(map) = v else {
            return Err(AdminError::BadRequest(
                "serviceRates must be an object".into(),
            ));
        };
        let mut rates = std::collections::BTreeMap::new();
        for (service, rate) in map {
            if !SERVICES.contains(&service.as_str()) {
                return Err(AdminError::BadRequest(format!(
                    "serviceRates: unknown service {service:?}"
                )));
            }
            rates.insert(
                service.clone(),
                money(&format!("serviceRates.{service}"), rate)?,
            );
        }
        k.service_rates = rates;
    }
    if k.expiration_mode == ExpirationMode::Activation && k.activation_days == 0 {
        return Err(AdminError::BadRequest(
            "activationDays must be at least 1 in activation mode".into(),
        ));
    }
    Ok(())
}

pub async fn list_keys(
    _: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, AdminError> {
    let mut keys: Vec<ApiKey> = state
        .store
        .list_keys()
        .await?
        .into_iter()
        .map(|k| k.key)
        .filter(|k| !k.is_deleted)
        .collect();
    keys.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let last_used = state.store.keys_last_used().await?;
    let day = Periods::at(Utc::now(), state.config.timezone_offset_hours).day;
    let mut names = Vec::with_capacity(keys.len() * 2);
    for k in &keys {
        names.push(buckets::key_total(&k.id));
        names.push(buckets::key_day(&k.id, &day));
    }
    let usage = state.store.usage(&names).await?;
    let mut data = Vec::with_capacity(keys.len());
    for (i, mut k) in keys.into_iter().enumerate() {
        if let Some(ms) = last_used.get(&k.id) {
            k.last_used_at = chrono::DateTime::from_timestamp_millis(*ms).map(format_time);
        }
        let mut v = serde_json::to_value(&k).unwrap_or(Value::Null);
        v["usage"] = json!({
            "total": crate::routes::claude::usage_json(&usage[i * 2]),
            "daily": crate::routes::claude::usage_json(&usage[i * 2 + 1]),
        });
        v["limits"] = limits_report(&state, &k).await?;
        data.push(v);
    }
    Ok(Json(json!({"success": true, "data": data})))
}

/// A key's all-time usage per model, largest cost first.
pub async fn model_usage(
    state: &AppState,
    key_id: &str,
) -> Result<Vec<app::domain::ModelUsage>, crate::store::StoreError> {
    let models = state.store.key_models(key_id).await?;
    let names: Vec<String> = models
        .iter()
        .map(|m| buckets::key_model_total(key_id, m))
        .collect();
    let usage = state.store.usage(&names).await?;
    let mut out: Vec<app::domain::ModelUsage> = models
        .into_iter()
        .zip(usage)
        .map(|(model, usage)| app::domain::ModelUsage { model, usage })
        .collect();
    out.sort_by(|a, b| {
        (b.usage.cost_nanos, b.usage.requests).cmp(&(a.usage.cost_nanos, a.usage.requests))
    });
    Ok(out)
}

fn usd(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Each limit of a key with its current usage and reset time, for progress bars: global,
/// per platform and per model.
pub async fn limits_report(
    state: &AppState,
    k: &ApiKey,
) -> Result<Value, crate::store::StoreError> {
    use crate::limits::{next_midnight, usd_to_nanos, week_start};
    let now = Utc::now();
    let tz = state.config.timezone_offset_hours;
    let p = Periods::at(now, tz);
    let week = week_start(now, tz, k.weekly_reset_day.max(1), k.weekly_reset_hour);
    let week_id = week
        .with_timezone(
            &chrono::FixedOffset::east_opt(tz * 3600)
                .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("UTC")),
        )
        .format("%Y-%m-%dT%H")
        .to_string();
    let midnight = format_time(next_midnight(now, tz));
    let next_week = format_time(week + chrono::Duration::days(7));
    // (path in the report, counter id, limit in USD, reset time)
    let mut rows: Vec<(Vec<String>, String, f64, Option<String>)> = vec![
        (
            vec!["dailyCost".into()],
            format!("d:{}", p.day),
            k.daily_cost_limit,
            Some(midnight.clone()),
        ),
        (
            vec!["totalCost".into()],
            "t".into(),
            k.total_cost_limit,
            None,
        ),
        (
            vec!["weeklyCost".into()],
            format!("w:{week_id}"),
            k.weekly_cost_limit,
            Some(next_week.clone()),
        ),
        (
            vec!["weeklyOpusCost".into()],
            format!("wo:{week_id}"),
            k.weekly_opus_cost_limit,
            Some(next_week),
        ),
    ];
    for (platform, l) in &k.platform_limits {
        rows.push((
            vec![
                "platformLimits".into(),
                platform.clone(),
                "dailyCost".into(),
            ],
            format!("pd:{platform}:{}", p.day),
            l.daily_cost,
            Some(midnight.clone()),
        ));
        rows.push((
            vec![
                "platformLimits".into(),
                platform.clone(),
                "totalCost".into(),
            ],
            format!("pt:{platform}"),
            l.total_cost,
            None,
        ));
    }
    for (model, l) in &k.model_limits {
        rows.push((
            vec!["modelLimits".into(), model.clone(), "dailyCost".into()],
            format!("md:{model}:{}", p.day),
            l.daily_cost,
            Some(midnight.clone()),
        ));
        rows.push((
            vec!["modelLimits".into(), model.clone(), "totalCost".into()],
            format!("mt:{model}"),
            l.total_cost,
            None,
        ));
    }
    // The owner's budget, shared by all their keys.
    let mut owner_rows: Vec<(Vec<String>, String, f64, Option<String>)> = Vec::new();
    if k.user_id.is_some() {
        owner_rows.push((
            vec!["ownerBudget".into(), "dailyCost".into()],
            format!("ud:{}", p.day),
            k.owner_budget.daily_cost,
            Some(midnight.clone()),
        ));
        owner_rows.push((
            vec!["ownerBudget".into(), "monthlyCost".into()],
            format!("um:{}", p.month),
            k.owner_budget.monthly_cost,
            Some(format_time(crate::limits::next_month(now, tz))),
        ));
    }
    rows.retain(|r| usd_to_nanos(r.2) > 0);
    owner_rows.retain(|r| usd_to_nanos(r.2) > 0);
    let owner_scope = k
        .user_id
        .as_deref()
        .map(crate::limits::user_scope)
        .unwrap_or_default();
    let ids: Vec<(String, String)> = rows
        .iter()
        .map(|r| (k.id.clone(), r.1.clone()))
        .chain(
            owner_rows
                .iter()
                .map(|r| (owner_scope.clone(), r.1.clone())),
        )
        .collect();
    rows.extend(owner_rows);
    let (spent, window) = state.store.limit_usage(&k.id, &ids).await?;
    let mut report = json!({});
    for (row, spent) in rows.iter().zip(spent) {
        let entry = json!({"limit": row.2, "current": usd(spent), "resetAt": row.3});
        let mut at = &mut report;
        for (i, part) in row.0.iter().enumerate() {
            if i + 1 == row.0.len() {
                at[part.as_str()] = entry.clone();
            } else {
                if at.get(part.as_str()).is_none() {
                    at[part.as_str()] = json!({});
                }
                at = &mut at[part.as_str()];
            }
        }
    }
    if k.concurrency_limit > 0 {
        let current = state
            .store
            .count_leases(&crate::store::key_lease_scope(&k.id))
            .await?;
        report["concurrency"] = json!({"limit": k.concurrency_limit, "current": current});
    }
    if k.rate_limit_window > 0 {
        let len_ms = i64::from(k.rate_limit_window) * 60_000;
        let live = window.filter(|w| now.timestamp_millis() - w.0 < len_ms);
        let (req, tok, cost) = live.map(|w| (w.1, w.2, w.3)).unwrap_or_default();
        report["window"] = json!({
            "minutes": k.rate_limit_window,
            "requests": {"limit": k.rate_limit_requests, "current": req},
            "tokens": {"limit": k.token_limit, "current": tok},
            "cost": {"limit": k.rate_limit_cost, "current": usd(cost)},
            "resetAt": live.and_then(|w| chrono::DateTime::from_timestamp_millis(w.0 + len_ms)).map(format_time),
        });
    }
    Ok(report)
}

pub async fn create_key(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<KeyInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let (stored, secret) = new_key(&state, body?.0, None).await?;
    let mut data = serde_json::to_value(&stored.key).unwrap_or(Value::Null);
    // The only time the key itself is ever returned.
    data["apiKey"] = Value::String(secret);
    Ok(Json(json!({"success": true, "data": data})))
}

/// Creates a key (owned by a local user when `owner` is set); the answer carries the key
/// itself, which is never stored.
pub async fn new_key(
    state: &AppState,
    input: KeyInput,
    owner: Option<String>,
) -> Result<(StoredKey, String), AdminError> {
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    let secret = generate(&state.config.api_key_prefix);
    let mut key = ApiKey {
        id: uuid::Uuid::new_v4().to_string(),
        is_active: true,
        created_at: format_time(Utc::now()),
        key_preview: format!(
            "{}…",
            &secret[..secret.len().min(state.config.api_key_prefix.len() + 6)]
        ),
        user_id: owner,
        ..Default::default()
    };
    apply_key(&mut key, input)?;
    // A user's key carries their budget (and state) from the start.
    crate::users::stamp_owner(&state.store, &mut key).await?;
    let mut stored = StoredKey::new(key, state.crypto.hash_api_key(&secret));
    state.store.insert_key(&stored).await?;
    // Had the owner's budget changed meanwhile, the change may have missed this key: read again.
    if crate::users::stamp_owner(&state.store, &mut stored.key).await? {
        let (budget, disabled) = (stored.key.owner_budget, stored.key.owner_disabled);
        crate::store::modify_key(&*state.store, &stored.key.id, |k| {
            k.key.owner_budget = budget;
            k.key.owner_disabled = disabled;
            true
        })
        .await?;
    }
    Ok((stored, secret))
}

pub async fn update_key(
    _: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<KeyInput>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(input) = body?;
    // On the record as it is now: a concurrent write (a disable) is never overwritten.
    let mut failed = None;
    let written = crate::store::modify_key(&*state.store, &id, |k| {
        if k.key.is_deleted {
            return false;
        }
        match apply_key(&mut k.key, input.clone()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    let stored = written
        .filter(|k| !k.key.is_deleted)
        .ok_or(AdminError::NotFound("API key"))?;
    Ok(Json(json!({"success": true, "data": stored.key})))
}

/// Soft delete, as the original: the key stops working and leaves the list, its usage stays.
pub async fn delete_key(
    AdminUser(user): AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let mut deleted = false;
    crate::store::modify_key(&*state.store, &id, |k| {
        deleted = !k.key.is_deleted;
        k.key.is_deleted = true;
        k.key.is_active = false;
        deleted
    })
    .await?;
    if !deleted {
        return Err(AdminError::NotFound("API key"));
    }
    tracing::info!(key = %id, by = %user, "API key deleted");
    Ok(Json(json!({"success": true, "message": "API key deleted"})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchCreate {
    base_name: String,
    count: u32,
    #[serde(flatten)]
    fields: KeyInput,
}

/// `POST /admin/api-keys/batch`: `count` keys named `<baseName>_<n>`, each shown once.
pub async fn batch_create(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<BatchCreate>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(batch) = body?;
    if batch.base_name.trim().is_empty() {
        return Err(AdminError::BadRequest("baseName is required".into()));
    }
    if !(1..=500).contains(&batch.count) {
        return Err(AdminError::BadRequest(
            "count must be between 1 and 500".into(),
        ));
    }
    let mut created = Vec::with_capacity(batch.count as usize);
    for n in 1..=batch.count {
        let mut input = batch.fields.clone();
        input.name = Some(format!("{}_{n}", batch.base_name.trim()));
        let Json(one) = create_key(
            AdminUser(String::new()),
            State(state.clone()),
            Ok(Json(input)),
        )
        .await?;
        created.push(one["data"].clone());
    }
    Ok(Json(json!({"success": true, "data": created})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchUpdate {
    key_ids: Vec<String>,
    updates: KeyInput,
}

/// `PUT /admin/api-keys/batch`: the same changes to many keys; all are validated first.
pub async fn batch_update(
    _: AdminUser,
    State(state): State<AppState>,
    body: Result<Json<BatchUpdate>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    let Json(batch) = body?;
    let mut changed = Vec::new();
    for id in &batch.key_ids {
        let mut stored = state
            .store
            .get_key(id)
            .await?
            .filter(|k| !k.key.is_deleted)
            .ok_or(AdminError::NotFound("API key"))?;
        apply_key(&mut stored.key, batch.updates.clone())?;
        changed.push(stored);
    }
    // Validated above; written on each record as it is now.
    for stored in &changed {
        let mut failed = None;
        crate::store::modify_key(&*state.store, &stored.key.id, |k| {
            match apply_key(&mut k.key, batch.updates.clone()) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .await?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(Json(
        json!({"success": true, "data": {"successCount": changed.len(), "failedCount": 0}}),
    ))
}
