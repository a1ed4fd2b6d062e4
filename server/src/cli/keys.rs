//! `crs keys create|list|disable|enable`: API keys, through the admin's own actions
//! (`crs::admin::keys`).

use app::{backend::KeyScope, domain::ApiKey};
use chrono::Utc;
use clap::{Args, Subcommand};
use crs::{
    admin::{
        key_input::{Amount, KeyInput, Services},
        keys::{self, KeyAction},
    },
    auth::api_key::parse_time,
    config::Config,
    state::AppState,
    store::{buckets, Periods},
};
use serde_json::{json, Value};

use super::{open, print_json, print_table, usd, usd_limit, Failure, Outcome};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key. The key itself is printed once and never stored: keep it now.
    Create(CreateArgs),
    /// List the keys (deleted ones left out unless --all), with today's cost.
    List(ListArgs),
    /// Disable a key: every request with it is refused from now on (its usage stays).
    Disable(KeyRef),
    /// Enable a disabled key again.
    Enable(KeyRef),
}

/// A USD amount ≥ 0.
fn usd_amount(s: &str) -> Result<f64, String> {
    match s.trim().trim_start_matches('$').parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not an amount in USD ≥ 0")),
    }
}

#[derive(Args)]
pub struct CreateArgs {
    /// The key's name, as the admin shows it.
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Daily cost limit in USD (0 = none).
    #[arg(long, value_name = "USD", value_parser = usd_amount)]
    pub daily_cost: Option<f64>,
    /// Total (all-time) cost limit in USD.
    #[arg(long, value_name = "USD", value_parser = usd_amount)]
    pub total_cost: Option<f64>,
    /// Weekly cost limit in USD.
    #[arg(long, value_name = "USD", value_parser = usd_amount)]
    pub weekly_cost: Option<f64>,
    /// Requests it may have in flight at once (0 = no limit).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// A rate-limit window in minutes, for --rate-requests and --rate-cost.
    #[arg(long, value_name = "MINUTES")]
    pub rate_window: Option<u32>,
    /// Requests allowed per rate-limit window.
    #[arg(long, value_name = "N", requires = "rate_window")]
    pub rate_requests: Option<u64>,
    /// Cost allowed per rate-limit window, USD.
    #[arg(long, value_name = "USD", value_parser = usd_amount, requires = "rate_window")]
    pub rate_cost: Option<f64>,
    /// Services it may use: claude, gemini, openai (repeat or comma-separate; default: all).
    #[arg(long = "permission", value_name = "SERVICE", value_delimiter = ',')]
    pub permissions: Vec<String>,
    /// Tags (repeat or comma-separate).
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Expiry: an RFC 3339 time, or a duration from now such as 30d or 12h.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// Print {"id", "name", "key", …} as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// JSON (an array of keys with their limits and usage) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Include deleted keys.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args)]
pub struct KeyRef {
    /// The key's id, or its exact name when that is unique.
    pub key: String,
}

pub async fn run(command: KeysCommand, config: Config) -> Outcome {
    match command {
        KeysCommand::Create(a) => {
            // Checked before the store is opened: bad usage never touches it.
            let input = create_input(&a)?;
            let state = open(config).await?;
            create(&state, input, a.json).await
        }
        KeysCommand::List(a) => list(&open(config).await?, &a).await,
        KeysCommand::Disable(r) => set_active(&open(config).await?, &r.key, false).await,
        KeysCommand::Enable(r) => set_active(&open(config).await?, &r.key, true).await,
    }
}

fn expiry(s: &str) -> Result<String, Failure> {
    let bad = || {
        Failure::Usage(format!(
            "--expires {s:?}: use an RFC 3339 time or a duration such as 30d or 12h"
        ))
    };
    if let Some(t) = parse_time(s) {
        return Ok(t.to_rfc3339());
    }
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let d = match unit {
        'd' => chrono::Duration::try_days(n),
        'h' => chrono::Duration::try_hours(n),
        'm' => chrono::Duration::try_minutes(n),
        _ => None,
    }
    .filter(|_| n > 0)
    .ok_or_else(bad)?;
    Ok((Utc::now() + d).to_rfc3339())
}

/// The key's fields from these arguments (checked by the admin's rules on creation).
pub fn create_input(a: &CreateArgs) -> Result<KeyInput, Failure> {
    let number = |x: f64| Some(Amount::Number(x));
    Ok(KeyInput {
        name: Some(a.name.clone()),
        description: Some(a.description.clone()),
        daily_cost_limit: a.daily_cost.and_then(number),
        total_cost_limit: a.total_cost.and_then(number),
        weekly_cost_limit: a.weekly_cost.and_then(number),
        concurrency_limit: a.concurrency.map(f64::from).and_then(number),
        rate_limit_window: a.rate_window.map(f64::from).and_then(number),
        rate_limit_requests: a.rate_requests.map(|n| n as f64).and_then(number),
        rate_limit_cost: a.rate_cost.and_then(number),
        permissions: (!a.permissions.is_empty()).then(|| Services::List(a.permissions.clone())),
        tags: (!a.tags.is_empty()).then(|| a.tags.clone()),
        expires_at: a.expires.as_deref().map(expiry).transpose()?.map(Some),
        ..Default::default()
    })
}

async fn create(state: &AppState, input: KeyInput, as_json: bool) -> Outcome {
    let created = keys::create(state, input, None).await?;
    let (k, secret) = (&created.stored.key, created.secret);
    if as_json {
        let mut v = serde_json::to_value(k).map_err(|e| Failure::Failed(e.to_string()))?;
        v["key"] = json!(secret);
        return print_json(&v);
    }
    eprintln!(
        "Created API key {:?} (id {}). The key is shown once; store it now:",
        k.name, k.id
    );
    println!("{secret}");
    let limits = limits_summary(k);
    if !limits.is_empty() {
        eprintln!("Limits: {limits}");
    }
    Ok(())
}

fn limits_summary(k: &ApiKey) -> String {
    let mut parts = Vec::new();
    if k.daily_cost_limit > 0.0 {
        parts.push(format!("daily {}", usd_limit(k.daily_cost_limit)));
    }
    if k.total_cost_limit > 0.0 {
        parts.push(format!("total {}", usd_limit(k.total_cost_limit)));
    }
    if k.weekly_cost_limit > 0.0 {
        parts.push(format!("weekly {}", usd_limit(k.weekly_cost_limit)));
    }
    if k.concurrency_limit > 0 {
        parts.push(format!("concurrency {}", k.concurrency_limit));
    }
    if k.rate_limit_window > 0 {
        parts.push(format!(
            "{} requests / {} per {} min",
            k.rate_limit_requests,
            usd_limit(k.rate_limit_cost),
            k.rate_limit_window
        ));
    }
    parts.join(", ")
}

fn key_state(k: &ApiKey) -> &'static str {
    let expired = k
        .expires_at
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|t| t <= Utc::now());
    if k.is_deleted {
        "deleted"
    } else if !k.is_active || k.owner_disabled {
        "disabled"
    } else if expired {
        "expired"
    } else {
        "active"
    }
}

async fn list(state: &AppState, a: &ListArgs) -> Outcome {
    let mut keys: Vec<ApiKey> = state
        .all_keys()
        .await?
        .iter()
        .map(|k| k.key.clone())
        .filter(|k| a.all || !k.is_deleted)
        .collect();
    keys.sort_by(|x, y| x.created_at.cmp(&y.created_at));
    let day = Periods::at(Utc::now(), state.config.timezone_offset_hours).day;
    let names: Vec<String> = keys
        .iter()
        .flat_map(|k| [buckets::key_day(&k.id, &day), buckets::key_total(&k.id)])
        .collect();
    let usage = state.store.usage(&names).await?;
    if a.json {
        let mut out = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let mut v = serde_json::to_value(k).map_err(|e| Failure::Failed(e.to_string()))?;
            v["state"] = json!(key_state(k));
            v["usage"] = json!({"today": usage[i * 2], "total": usage[i * 2 + 1]});
            out.push(v);
        }
        return print_json(&Value::Array(out));
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            vec![
                k.id.clone(),
                k.name.clone(),
                key_state(k).to_string(),
                k.key_preview.clone(),
                usd_limit(k.daily_cost_limit),
                if k.concurrency_limit > 0 {
                    k.concurrency_limit.to_string()
                } else {
                    "-".into()
                },
                format!(
                    "{} req {}",
                    usage[i * 2].requests,
                    usd(usage[i * 2].cost_nanos)
                ),
                usd(usage[i * 2 + 1].cost_nanos),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "NAME",
            "STATE",
            "KEY",
            "DAILY LIMIT",
            "CONCURRENCY",
            "TODAY",
            "TOTAL COST",
        ],
        &rows,
    );
    Ok(())
}

/// A key by id, or by its exact name when exactly one live key has it.
pub async fn resolve(state: &AppState, wanted: &str) -> Result<ApiKey, Failure> {
    let keys = state.all_keys().await?;
    if let Some(k) = keys
        .iter()
        .find(|k| k.key.id == wanted && !k.key.is_deleted)
    {
        return Ok(k.key.clone());
    }
    let named: Vec<&ApiKey> = keys
        .iter()
        .map(|k| &k.key)
        .filter(|k| !k.is_deleted && k.name == wanted)
        .collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::Failed(format!(
            "no API key with id or name {wanted:?}"
        ))),
        _ => Err(Failure::Failed(format!(
            "{} keys are named {wanted:?}: give the id",
            named.len()
        ))),
    }
}

async fn set_active(state: &AppState, wanted: &str, active: bool) -> Outcome {
    let k = resolve(state, wanted).await?;
    let (action, word) = if active {
        (KeyAction::Enable, "enable")
    } else {
        (KeyAction::Disable, "disable")
    };
    keys::act(state, &KeyScope::All, &k.id, action)
        .await
        .map_err(|e| Failure::Failed(e.message()))?;
    println!("API key {:?} ({}) {word}d", k.name, k.id);
    Ok(())
}
