//! The fields of a key as the admin sets them, and the rules they are held to: one
//! [`KeyInput`] from the JSON API (camelCase, numbers or texts), the pages' key form and the
//! command line, checked by [`apply`].

use std::collections::BTreeMap;

use app::domain::{ApiKey, CostLimits, ExpirationMode};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{too_long, AdminError};
use crate::auth::api_key::{format_time, parse_time};

/// A limit as it arrives: a JSON number, a text (a form field, or a script's `"5"`), or
/// something else (refused when applied, naming the field).
#[derive(Clone, Debug, PartialEq)]
pub enum Amount {
    /// Absent (a cost-limit entry without this field): no limit.
    Blank,
    Number(f64),
    Text(String),
    NotANumber,
}

impl From<f64> for Amount {
    fn from(x: f64) -> Self {
        Amount::Number(x)
    }
}

impl From<&str> for Amount {
    fn from(s: &str) -> Self {
        Amount::Text(s.to_string())
    }
}

impl From<&String> for Amount {
    fn from(s: &String) -> Self {
        Amount::Text(s.clone())
    }
}

impl Amount {
    fn of(v: &Value) -> Self {
        match v {
            Value::Null => Amount::Blank,
            Value::Number(n) => n.as_f64().map_or(Amount::NotANumber, Amount::Number),
            Value::String(s) => Amount::Text(s.clone()),
            _ => Amount::NotANumber,
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Amount::of(&Value::deserialize(d)?))
    }
}

/// `permissions`: a list, or the original's legacy string (`"all"`, `"claude"`).
#[derive(Clone, Debug, PartialEq)]
pub enum Services {
    List(Vec<String>),
    NotAList,
}

impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) if s == "all" || s.is_empty() => Services::List(Vec::new()),
            Value::String(s) => Services::List(vec![s]),
            Value::Array(items) => Services::List(
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
            ),
            Value::Null => Services::List(Vec::new()),
            _ => Services::NotAList,
        })
    }
}

/// One entry of `platformLimits` / `modelLimits`.
#[derive(Clone, Debug, PartialEq)]
pub struct CostLimitsInput {
    pub daily_cost: Amount,
    pub total_cost: Amount,
}

/// `platformLimits`, `modelLimits` and `serviceRates`: a map by name, or not an object.
#[derive(Clone, Debug, PartialEq)]
pub enum ByName<T> {
    Map(BTreeMap<String, T>),
    NotAnObject,
}

impl<'de> Deserialize<'de> for ByName<CostLimitsInput> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entry = |l: &Value, k: &str| Amount::of(l.get(k).unwrap_or(&Value::Null));
        Ok(match Value::deserialize(d)? {
            Value::Object(map) => ByName::Map(
                map.iter()
                    .map(|(name, l)| {
                        let limits = CostLimitsInput {
                            daily_cost: entry(l, "dailyCost"),
                            total_cost: entry(l, "totalCost"),
                        };
                        (name.clone(), limits)
                    })
                    .collect(),
            ),
            Value::Null => ByName::Map(BTreeMap::new()),
            _ => ByName::NotAnObject,
        })
    }
}

impl<'de> Deserialize<'de> for ByName<Amount> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Object(map) => ByName::Map(
                map.iter()
                    .map(|(name, v)| (name.clone(), Amount::of(v)))
                    .collect(),
            ),
            _ => ByName::NotAnObject,
        })
    }
}

/// The fields of a key an admin sets; `None` leaves a field as it is.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct KeyInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_active: Option<bool>,
    pub permissions: Option<Services>,
    pub tags: Option<Vec<String>>,
    pub claude_account_id: Option<Option<String>>,
    pub claude_console_account_id: Option<Option<String>>,
    pub allow_dedicated_fallback: Option<bool>,
    pub expiration_mode: Option<ExpirationMode>,
    pub activation_days: Option<u32>,
    pub expires_at: Option<Option<String>>,
    // Limits: numbers are checked when applied (a negative one is a 400 naming the field).
    pub concurrency_limit: Option<Amount>,
    pub rate_limit_window: Option<Amount>,
    pub rate_limit_requests: Option<Amount>,
    pub token_limit: Option<Amount>,
    pub rate_limit_cost: Option<Amount>,
    pub daily_cost_limit: Option<Amount>,
    pub total_cost_limit: Option<Amount>,
    pub weekly_cost_limit: Option<Amount>,
    pub weekly_opus_cost_limit: Option<Amount>,
    pub weekly_reset_day: Option<Amount>,
    pub weekly_reset_hour: Option<Amount>,
    pub platform_limits: Option<ByName<CostLimitsInput>>,
    pub model_limits: Option<ByName<CostLimitsInput>>,
    pub enable_model_restriction: Option<bool>,
    pub restricted_models: Option<Vec<String>>,
    pub enable_client_restriction: Option<bool>,
    pub allowed_clients: Option<Vec<String>>,
    pub service_rates: Option<ByName<Amount>>,
}

const CLIENTS: [&str; 3] = ["claude_code", "gemini_cli", "codex_cli"];
const SERVICES: [&str; 3] = ["claude", "gemini", "openai"];

/// A non-negative number (blank = 0).
fn money(field: &str, v: &Amount) -> Result<f64, AdminError> {
    let refused = || AdminError::BadRequest(format!("{field} must be a number ≥ 0"));
    match v {
        Amount::Blank => Ok(0.0),
        Amount::Number(x) if x.is_finite() && *x >= 0.0 => Ok(*x),
        Amount::Text(s) if s.trim().is_empty() => Ok(0.0),
        Amount::Text(s) => match s.trim().parse::<f64>() {
            // A text that parses to NaN or infinity has always counted as blank (JSON has
            // no such number, so it read as `null`).
            Ok(x) if !x.is_finite() => Ok(0.0),
            Ok(x) => money(field, &Amount::Number(x)),
            Err(_) => Err(refused()),
        },
        Amount::Number(_) | Amount::NotANumber => Err(refused()),
    }
}

fn whole(field: &str, v: &Amount) -> Result<u64, AdminError> {
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
    v: &ByName<CostLimitsInput>,
) -> Result<BTreeMap<String, CostLimits>, AdminError> {
    let ByName::Map(map) = v else {
        return Err(AdminError::BadRequest(format!("{field} must be an object")));
    };
    let mut out = BTreeMap::new();
    for (name, l) in map {
        out.insert(
            name.clone(),
            CostLimits {
                daily_cost: money(&format!("{field}.{name}.dailyCost"), &l.daily_cost)?,
                total_cost: money(&format!("{field}.{name}.totalCost"), &l.total_cost)?,
            },
        );
    }
    Ok(out)
}

/// Applies `input` to `k`, field by field, refusing the first field that breaks a rule.
pub fn apply(k: &mut ApiKey, input: KeyInput) -> Result<(), AdminError> {
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
        let Services::List(list) = p else {
            return Err(AdminError::BadRequest("permissions must be a list".into()));
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
    for (field, v, target) in [
        (
            "rateLimitCost",
            &input.rate_limit_cost,
            &mut k.rate_limit_cost,
        ),
        (
            "dailyCostLimit",
            &input.daily_cost_limit,
            &mut k.daily_cost_limit,
        ),
        (
            "totalCostLimit",
            &input.total_cost_limit,
            &mut k.total_cost_limit,
        ),
        (
            "weeklyCostLimit",
            &input.weekly_cost_limit,
            &mut k.weekly_cost_limit,
        ),
        (
            "weeklyOpusCostLimit",
            &input.weekly_opus_cost_limit,
            &mut k.weekly_opus_cost_limit,
        ),
    ] {
        if let Some(v) = v {
            *target = money(field, v)?;
        }
    }
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
        let ByName::Map(map) = v else {
            return Err(AdminError::BadRequest(
                "serviceRates must be an object".into(),
            ));
        };
        let mut rates = BTreeMap::new();
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
