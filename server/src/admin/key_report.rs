//! What a key has used against each of its limits (the admin's list, the pages' progress
//! bars, the key holder's stats page), and its usage per model.

use app::domain::{ApiKey, ModelUsage, UsageCounters};
use chrono::Utc;
use serde_json::{json, Value};

use super::AdminError;
use crate::{
    auth::api_key::format_time,
    state::AppState,
    store::{buckets, Periods, StoreError},
};

/// A live key as the admin's list shows it: its record (last use filled in), its usage all
/// time and today, and its limits report.
pub struct Listed {
    pub key: ApiKey,
    pub total: UsageCounters,
    pub daily: UsageCounters,
    pub limits: Value,
}

/// The live keys, newest first.
pub async fn list(state: &AppState) -> Result<Vec<Listed>, AdminError> {
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
    let mut out = Vec::with_capacity(keys.len());
    for (i, mut k) in keys.into_iter().enumerate() {
        if let Some(ms) = last_used.get(&k.id) {
            k.last_used_at = chrono::DateTime::from_timestamp_millis(*ms).map(format_time);
        }
        let limits = limits_report(state, &k).await?;
        out.push(Listed {
            key: k,
            total: usage.get(i * 2).copied().unwrap_or_default(),
            daily: usage.get(i * 2 + 1).copied().unwrap_or_default(),
            limits,
        });
    }
    Ok(out)
}

/// A key's all-time usage per model, largest cost first.
pub async fn model_usage(state: &AppState, key_id: &str) -> Result<Vec<ModelUsage>, StoreError> {
    let models = state.store.key_models(key_id).await?;
    let names: Vec<String> = models
        .iter()
        .map(|m| buckets::key_model_total(key_id, m))
        .collect();
    let usage = state.store.usage(&names).await?;
    let mut out: Vec<ModelUsage> = models
        .into_iter()
        .zip(usage)
        .map(|(model, usage)| ModelUsage { model, usage })
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
pub async fn limits_report(state: &AppState, k: &ApiKey) -> Result<Value, StoreError> {
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

/// The typed stats of a key for the public page: usage today, this month and in all, and a
/// progress bar per limit.
pub async fn key_stats(
    state: &AppState,
    key: &str,
) -> Result<app::domain::KeyStats, (axum::http::StatusCode, &'static str)> {
    use axum::http::StatusCode;
    if !crate::auth::api_key::well_formed(key, &state.config.api_key_prefix) {
        return Err((StatusCode::UNAUTHORIZED, "Invalid API key format"));
    }
    let unavailable = (
        StatusCode::SERVICE_UNAVAILABLE,
        "The store is unavailable; retry shortly",
    );
    let stored = state
        .store
        .key_by_hash(&state.crypto.hash_api_key(key))
        .await
        .map_err(|_| unavailable)?
        .filter(|k| !k.key.is_deleted)
        .ok_or((StatusCode::UNAUTHORIZED, "API key not found"))?;
    let k = &stored.key;
    let p = Periods::at(Utc::now(), state.config.timezone_offset_hours);
    let names = [
        buckets::key_day(&k.id, &p.day),
        buckets::key_month(&k.id, &p.month),
        buckets::key_total(&k.id),
    ];
    let usage = state.store.usage(&names).await.map_err(|_| unavailable)?;
    let models = model_usage(state, &k.id).await.map_err(|_| unavailable)?;
    let report = limits_report(state, k).await.map_err(|_| unavailable)?;
    Ok(app::domain::KeyStats {
        name: k.name.clone(),
        is_active: k.is_active,
        expires_at: k.expires_at.clone(),
        today: usage[0],
        month: usage[1],
        total: usage[2],
        limits: limit_bars(&report),
        models,
    })
}

/// The limits report (see `limits_report`) as progress bars.
pub fn limit_bars(report: &serde_json::Value) -> Vec<app::domain::LimitBar> {
    use app::domain::LimitBar;
    use serde_json::Value;
    let bar = |label: String, v: &Value, unit: &str, reset: Option<&Value>| LimitBar {
        label,
        current: v["current"].as_f64().unwrap_or(0.0),
        limit: v["limit"].as_f64().unwrap_or(0.0),
        unit: unit.into(),
        reset_at: reset
            .or(v.get("resetAt"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let money = [
        ("dailyCost", "Daily cost"),
        ("totalCost", "Total cost"),
        ("weeklyCost", "Weekly cost"),
        ("weeklyOpusCost", "Weekly Claude cost"),
    ];
    let mut out = Vec::new();
    for (key, label) in money {
        if let Some(v) = report.get(key) {
            out.push(bar(label.into(), v, "$", None));
        }
    }
    for (group, what) in [("platformLimits", "Platform"), ("modelLimits", "Model")] {
        if let Some(Value::Object(map)) = report.get(group) {
            for (name, limits) in map {
                for (key, label) in &money[..2] {
                    if let Some(v) = limits.get(*key) {
                        out.push(bar(
                            format!("{what} {name} · {}", label.to_lowercase()),
                            v,
                            "$",
                            None,
                        ));
                    }
                }
            }
        }
    }
    if let Some(v) = report.get("concurrency") {
        out.push(bar("Concurrent requests".into(), v, "", None));
    }
    if let Some(w) = report.get("window") {
        let minutes = w["minutes"].as_u64().unwrap_or(0);
        for (key, label, unit) in [
            ("requests", "requests", ""),
            ("tokens", "tokens", ""),
            ("cost", "cost", "$"),
        ] {
            if w[key]["limit"].as_f64().unwrap_or(0.0) > 0.0 {
                out.push(bar(
                    format!("Window ({minutes} min) · {label}"),
                    &w[key],
                    unit,
                    w.get("resetAt"),
                ));
            }
        }
    }
    out
}
