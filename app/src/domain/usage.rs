//! Tokens, counters, request records and what the dashboard shows of them.

use serde::{Deserialize, Serialize};

use super::*;

/// The model family a Claude model belongs to, for family-only rate limits (by its
/// normalised name).
pub fn model_family(model: &str) -> Option<&'static str> {
    let m = normalize_model(model);
    ["opus", "sonnet", "haiku", "fable"]
        .into_iter()
        .find(|f| m.contains(f))
}

/// Tokens one request used, as the upstream reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cache writes with the 5-minute TTL.
    pub cache_create_5m_tokens: u64,
    /// Cache writes with the 1-hour TTL.
    pub cache_create_1h_tokens: u64,
    pub cache_read_tokens: u64,
}

impl TokenUsage {
    pub fn cache_create_tokens(&self) -> u64 {
        self.cache_create_5m_tokens + self.cache_create_1h_tokens
    }
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_create_tokens() + self.cache_read_tokens
    }
    pub fn is_empty(&self) -> bool {
        self.total_tokens() == 0
    }
}

/// Aggregated counters of one bucket (a key's day, a model's month, an account's total, …).
/// Cost is kept in integer nano-dollars so that sums are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UsageCounters {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_create_5m_tokens: u64,
    pub cache_create_1h_tokens: u64,
    pub cache_read_tokens: u64,
    pub cost_nanos: u64,
}

impl UsageCounters {
    pub fn add(&mut self, other: &UsageCounters) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_create_5m_tokens += other.cache_create_5m_tokens;
        self.cache_create_1h_tokens += other.cache_create_1h_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cost_nanos += other.cost_nanos;
    }
    pub fn of_request(usage: &TokenUsage, cost_nanos: u64) -> Self {
        UsageCounters {
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_create_5m_tokens: usage.cache_create_5m_tokens,
            cache_create_1h_tokens: usage.cache_create_1h_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            cost_nanos,
        }
    }
    pub fn cache_create_tokens(&self) -> u64 {
        self.cache_create_5m_tokens + self.cache_create_1h_tokens
    }
    pub fn all_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_create_tokens() + self.cache_read_tokens
    }
    pub fn cost_usd(&self) -> f64 {
        self.cost_nanos as f64 / 1e9
    }
}

/// One relayed request, kept in a bounded list per key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestRecord {
    pub request_id: String,
    pub timestamp: String,
    pub key_id: String,
    pub account_id: String,
    pub model: String,
    pub endpoint: String,
    pub status: u16,
    pub stream: bool,
    pub usage: TokenUsage,
    pub cost_nanos: u64,
    /// What the key's limits were charged: the cost times the key's service rate.
    pub rated_cost_nanos: u64,
    /// The model was missing from the pricing table and a fallback price was used.
    pub used_fallback_pricing: bool,
    /// Admission lowered the request's output limit to this many tokens to fit a cost limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_limit_lowered_to: Option<u64>,
    /// The stream was cut before the upstream reported its final usage: the output billed is
    /// the documented estimate of what the client received.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    pub duration_ms: u64,
    /// A redacted preview of the request (only with `RECORD_BODY_PREVIEW_CHARS` > 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_preview: Option<String>,
}

/// The dashboard: counts, today's usage, realtime rates and the two charts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DashboardSummary {
    pub username: String,
    pub total_keys: u64,
    pub active_keys: u64,
    pub total_accounts: u64,
    pub schedulable_accounts: u64,
    /// Accounts per state (`normal`, `cooling_down`, `rate_limited`, `blocked`, `error`,
    /// `paused`), every state present even at zero.
    pub accounts_by_state: Vec<(String, u64)>,
    pub today: UsageCounters,
    /// Requests and tokens per minute over the last five minutes.
    pub rpm: f64,
    pub tpm: f64,
    /// One point per day, oldest first.
    pub trend: Vec<UsagePoint>,
    /// Today's usage per model, largest cost first.
    pub models: Vec<ModelUsage>,
    pub store_engine: String,
    /// Models requested without a price in the table, most recently seen first.
    pub unpriced_models: Vec<UnpricedModel>,
}

/// A model requested without a price (billed at the fallback price, or refused).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnpricedModel {
    pub model: String,
    /// Requests billed at the fallback price (their records are flagged).
    pub requests: u64,
    /// Requests refused (`UNPRICED_MODEL_POLICY=refuse`).
    pub refused: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Usage over one period of a chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UsagePoint {
    /// `2026-11-26` or `2026-11-26:14`.
    pub period: String,
    pub usage: UsageCounters,
}

/// One model's usage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ModelUsage {
    pub model: String,
    pub usage: UsageCounters,
}

/// The account states the dashboard counts, in display order.
pub const ACCOUNT_STATES: [&str; 6] = [
    "normal",
    "cooling_down",
    "rate_limited",
    "blocked",
    "error",
    "paused",
];

/// Format nano-dollars as `$0.001234` for display.
pub fn format_usd(cost_nanos: u64) -> String {
    let usd = cost_nanos as f64 / 1e9;
    if usd >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.6}")
    }
}
