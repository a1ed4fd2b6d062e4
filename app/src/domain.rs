//! Domain types shared by the relay, the admin API, the server functions and the pages.
//!
//! Field names are camelCase on the wire, as in the original service's admin API, so existing
//! scripts and the original's exports keep working. Timestamps are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};

/// The kinds of upstream account. Only Claude Console is served so far; the others arrive with
/// their own issues and keep these wire names (the original's `accountType` strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    ClaudeConsole,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::ClaudeConsole => "claude-console",
        }
    }
}

/// A client API key as the admin sees it. The key itself is never part of this type: only its
/// hash is stored, next to this record, by the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    pub is_deleted: bool,
    /// Services this key may use (`claude`, `gemini`, `openai`); empty means all.
    pub permissions: Vec<String>,
    pub tags: Vec<String>,
    /// A dedicated Claude Console account for this key (served only by it).
    pub claude_console_account_id: Option<String>,
    /// `fixed` (expiresAt set at creation) or `activation` (expiry starts at first use).
    pub expiration_mode: ExpirationMode,
    pub activation_days: u32,
    pub is_activated: bool,
    pub activated_at: Option<String>,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// First characters of the key, safe to show (`cr_1a2b…`).
    pub key_preview: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpirationMode {
    #[default]
    Fixed,
    Activation,
}

impl ApiKey {
    /// Whether the key may use a service (`claude`, `gemini`, `openai`).
    pub fn allows_service(&self, service: &str) -> bool {
        self.permissions.is_empty() || self.permissions.iter().any(|p| p == service || p == "all")
    }
}

/// An upstream account as the admin sees it: never its credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Account {
    pub id: String,
    pub platform: Platform,
    pub name: String,
    pub description: String,
    /// Upstream base URL (Claude Console: `apiUrl`).
    pub api_url: String,
    /// 1–100, lower is preferred.
    pub priority: u32,
    pub is_active: bool,
    pub schedulable: bool,
    pub status: String,
    pub error_message: String,
    /// Models this account serves; empty means any.
    pub supported_models: Vec<String>,
    pub user_agent: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            id: String::new(),
            platform: Platform::ClaudeConsole,
            name: String::new(),
            description: String::new(),
            api_url: String::new(),
            priority: 50,
            is_active: true,
            schedulable: true,
            status: "active".into(),
            error_message: String::new(),
            supported_models: Vec::new(),
            user_agent: None,
            created_at: String::new(),
            last_used_at: None,
        }
    }
}

impl Account {
    pub fn supports_model(&self, model: &str) -> bool {
        self.supported_models.is_empty() || self.supported_models.iter().any(|m| m == model)
    }
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
    /// The model was missing from the pricing table and a fallback price was used.
    pub used_fallback_pricing: bool,
    pub duration_ms: u64,
}

/// The dashboard's first cards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DashboardSummary {
    pub username: String,
    pub total_keys: u64,
    pub active_keys: u64,
    pub total_accounts: u64,
    pub schedulable_accounts: u64,
    pub today: UsageCounters,
    pub store_engine: String,
}

/// Format nano-dollars as `$0.001234` for display.
pub fn format_usd(cost_nanos: u64) -> String {
    let usd = cost_nanos as f64 / 1e9;
    if usd >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_empty_means_all() {
        let mut key = ApiKey::default();
        assert!(key.allows_service("claude"));
        key.permissions = vec!["gemini".into()];
        assert!(!key.allows_service("claude"));
        assert!(key.allows_service("gemini"));
    }

    #[test]
    fn counters_add_and_totals() {
        let usage = TokenUsage {
            input_tokens: 10,
            output_tokens: 20,
            cache_create_5m_tokens: 3,
            cache_create_1h_tokens: 4,
            cache_read_tokens: 5,
        };
        let mut c = UsageCounters::of_request(&usage, 1_500);
        c.add(&UsageCounters::of_request(&usage, 500));
        assert_eq!(c.requests, 2);
        assert_eq!(c.all_tokens(), 84);
        assert_eq!(c.cost_nanos, 2_000);
        assert_eq!(format_usd(c.cost_nanos), "$0.000002");
    }

    #[test]
    fn account_wire_names_are_camel_case() {
        let json = serde_json::to_value(Account::default()).unwrap();
        assert_eq!(json["platform"], "claude-console");
        assert!(json.get("apiUrl").is_some());
        assert!(json.get("isActive").is_some());
    }
}
