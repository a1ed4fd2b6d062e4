//! What a refusal tells the client: the original's message and extra fields.

use chrono::{DateTime, Utc};

use super::{capitalise, usd, Refusal};

fn iso_ms(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(crate::auth::api_key::format_time)
}

/// The refusal's message, after the original's (in English).
pub fn refusal_message(r: &Refusal) -> String {
    match r {
        Refusal::Concurrency { limit, .. } => {
            format!("Concurrency limit exceeded: too many concurrent requests. Limit: {limit} concurrent requests")
        }
        Refusal::WindowRequests { limit, .. } => {
            format!("Rate limit exceeded: request limit reached ({limit} requests)")
        }
        Refusal::WindowTokens { limit, .. } => {
            format!("Rate limit exceeded: token limit reached ({limit} tokens)")
        }
        Refusal::WindowCost { limit_nanos, .. } => {
            format!(
                "Rate limit exceeded: cost limit reached (${:.2})",
                usd(*limit_nanos)
            )
        }
        Refusal::Cost {
            kind,
            current_nanos,
            limit_nanos,
            needed_nanos,
            ..
        } => format!(
            "{} reached (${:.2}): ${:.4} remains, and the smallest answer needs ${:.4}",
            capitalise(&kind.describe()),
            usd(*limit_nanos),
            usd(limit_nanos.saturating_sub(*current_nanos)),
            usd(*needed_nanos)
        ),
    }
}

/// The original's extra fields of a refusal (`code` goes inside `error`).
pub fn refusal_fields(r: &Refusal) -> serde_json::Value {
    use serde_json::json;
    match r {
        Refusal::Concurrency { current, limit } => {
            json!({"currentConcurrency": current, "concurrencyLimit": limit})
        }
        Refusal::WindowRequests {
            current,
            limit,
            reset_at_ms,
        } => {
            json!({"currentRequests": current, "requestLimit": limit, "resetAt": iso_ms(*reset_at_ms),
                   "remainingMinutes": ((reset_at_ms - Utc::now().timestamp_millis()).max(0) + 59_999) / 60_000})
        }
        Refusal::WindowTokens {
            current,
            limit,
            reset_at_ms,
        } => {
            json!({"currentTokens": current, "tokenLimit": limit, "resetAt": iso_ms(*reset_at_ms)})
        }
        Refusal::WindowCost {
            current_nanos,
            limit_nanos,
            reset_at_ms,
        } => {
            json!({"currentCost": usd(*current_nanos), "costLimit": usd(*limit_nanos), "resetAt": iso_ms(*reset_at_ms)})
        }
        Refusal::Cost {
            kind,
            current_nanos,
            limit_nanos,
            reset_at,
            needed_nanos,
        } => json!({
            "code": kind.code(),
            "currentCost": usd(*current_nanos),
            "costLimit": usd(*limit_nanos),
            "remainingCost": usd(limit_nanos.saturating_sub(*current_nanos)),
            "minimumRequestCost": usd(*needed_nanos),
            "resetAt": reset_at.map(crate::auth::api_key::format_time),
        }),
    }
}
