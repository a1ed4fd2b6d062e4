//! Domain types shared by the relay, the admin API, the server functions and the pages.
//!
//! Field names are camelCase on the wire, as in the original service's admin API, so existing
//! scripts and the original's exports keep working. Timestamps are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};

pub use crate::model_name::{is_valid_model_name, model_matches, normalize_model};

/// The kinds of upstream account, with the original's wire names. More arrive with their issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// Claude subscription (OAuth or setup token) against the official API.
    ClaudeOfficial,
    /// Claude Console: a base URL and an API key.
    ClaudeConsole,
    /// An OpenAI-compatible API (Responses and Chat Completions): a base URL and an API key.
    OpenaiResponses,
    /// Google AI Studio (Gemini API): a base URL and an API key.
    GeminiApi,
    /// Azure OpenAI: an endpoint, a deployment, an API version and a key.
    AzureOpenai,
    /// AWS Bedrock (Claude models): AWS keys or a Bedrock API key, and a region.
    Bedrock,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::ClaudeOfficial => "claude-official",
            Platform::ClaudeConsole => "claude-console",
            Platform::OpenaiResponses => "openai-responses",
            Platform::GeminiApi => "gemini-api",
            Platform::AzureOpenai => "azure-openai",
            Platform::Bedrock => "bedrock",
        }
    }

    /// The service a key needs permission for to reach this platform.
    pub fn service(self) -> &'static str {
        match self {
            Platform::ClaudeOfficial | Platform::ClaudeConsole | Platform::Bedrock => "claude",
            Platform::OpenaiResponses | Platform::AzureOpenai => "openai",
            Platform::GeminiApi => "gemini",
        }
    }
}

/// `shared` accounts serve the pool; `dedicated` ones only the keys bound to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    #[default]
    Shared,
    Dedicated,
}

/// An outbound proxy of one account. The password is a secret: it is stored encrypted with the
/// account's credentials and never returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyConfig {
    /// `socks5`, `http` or `https`.
    #[serde(rename = "type")]
    pub kind: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
}

/// A named set of accounts a key can be bound to (`group:<id>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountGroup {
    pub id: String,
    pub name: String,
    /// The original's group platform: `claude` (more with their issues).
    pub platform: String,
    pub description: String,
    pub members: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Why an account is resting, and until when (ms since the epoch).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Cooldown {
    /// `service_unavailable`, `server_error`, `overload`, `auth_error`, `timeout`, `rate_limit`,
    /// `unreachable`.
    pub class: String,
    pub status: u16,
    pub until_ms: i64,
    /// Set when only one model family (opus, sonnet, haiku) is limited.
    pub family: Option<String>,
    pub message: String,
}

/// One entry of an account's error history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountError {
    pub at: String,
    pub class: String,
    pub status: u16,
    pub message: String,
    /// Seconds of cooldown applied (0 when auto-protection is off).
    pub cooldown_secs: u64,
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
    /// A dedicated Claude OAuth account, or `group:<id>` for an account group.
    pub claude_account_id: Option<String>,
    /// A dedicated Claude Console account for this key (served only by it).
    pub claude_console_account_id: Option<String>,
    /// A dedicated OpenAI-compatible account (`responses:<id>` as the original, or the bare id).
    pub openai_account_id: Option<String>,
    /// A dedicated Gemini account (`api:<id>` as the original, or the bare id).
    pub gemini_account_id: Option<String>,
    /// When the bound account is unavailable, fall back to the shared pool instead of failing.
    pub allow_dedicated_fallback: bool,
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

    // Limits (0 = none). Money in USD, as the original's fields.
    /// Requests in flight at once.
    pub concurrency_limit: u32,
    /// Rate window length in minutes, and what it allows.
    pub rate_limit_window: u32,
    pub rate_limit_requests: u64,
    /// Tokens per window (the original's `tokenLimit`).
    pub token_limit: u64,
    pub rate_limit_cost: f64,
    pub daily_cost_limit: f64,
    pub total_cost_limit: f64,
    /// All models, reset weekly at `weekly_reset_day` (1 = Monday … 7) and `weekly_reset_hour`.
    pub weekly_cost_limit: f64,
    /// The original's weekly limit for Claude-family models only.
    pub weekly_opus_cost_limit: f64,
    pub weekly_reset_day: u8,
    pub weekly_reset_hour: u8,
    /// Per platform (`claude`, `openai`, `gemini`): daily and total cost.
    pub platform_limits: std::collections::BTreeMap<String, CostLimits>,
    /// Per model (exact name, or a family pattern ending in `*`): daily and total cost.
    pub model_limits: std::collections::BTreeMap<String, CostLimits>,
    /// A blacklist, despite the original's name.
    pub enable_model_restriction: bool,
    pub restricted_models: Vec<String>,
    pub enable_client_restriction: bool,
    /// `claude_code`, `gemini_cli`, `codex_cli`.
    pub allowed_clients: Vec<String>,
    /// Cost multipliers per service for this key (rated cost = real × rate).
    pub service_rates: std::collections::BTreeMap<String, f64>,
    /// The local user who owns this key (created from their page), if any.
    pub user_id: Option<String>,
    /// Set while the owning user is disabled: the key is refused without losing its own state.
    pub owner_disabled: bool,
    /// The owning user's budget, shared by all their keys (a copy of the user's, kept in step
    /// by the user's updates, so the hot path reads nothing more than the key).
    pub owner_budget: Budget,
    /// Disabled by an administrator: its owner cannot enable it again (only an admin can).
    pub disabled_by_admin: bool,
}

/// A daily and a monthly cost budget in USD across all of a user's keys (0 = none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Budget {
    pub daily_cost: f64,
    pub monthly_cost: f64,
}

impl Budget {
    pub fn is_set(&self) -> bool {
        self.daily_cost > 0.0 || self.monthly_cost > 0.0
    }
}

/// A daily and a total cost limit in USD (0 = none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CostLimits {
    pub daily_cost: f64,
    pub total_cost: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpirationMode {
    #[default]
    Fixed,
    Activation,
}

impl ApiKey {
    /// Whether any admission limit applies (keys without one skip the admission round trip).
    pub fn has_limits(&self) -> bool {
        self.concurrency_limit > 0
            || (self.rate_limit_window > 0
                && (self.rate_limit_requests > 0
                    || self.token_limit > 0
                    || self.rate_limit_cost > 0.0))
            || self.daily_cost_limit > 0.0
            || self.total_cost_limit > 0.0
            || self.weekly_cost_limit > 0.0
            || self.weekly_opus_cost_limit > 0.0
            || self
                .platform_limits
                .values()
                .any(|l| l.daily_cost > 0.0 || l.total_cost > 0.0)
            || self
                .model_limits
                .values()
                .any(|l| l.daily_cost > 0.0 || l.total_cost > 0.0)
            || (self.user_id.is_some() && self.owner_budget.is_set())
    }

    /// The key's own multiplier for a service (1 when unset).
    pub fn service_rate(&self, service: &str) -> f64 {
        self.service_rates
            .get(service)
            .copied()
            .filter(|r| *r >= 0.0)
            .unwrap_or(1.0)
    }

    /// Whether the model is on the key's blacklist: entries and the model compared by their
    /// normalised names (`crate::model_name`), an entry ending in `*` a prefix of it.
    pub fn model_blocked(&self, model: &str) -> bool {
        self.enable_model_restriction
            && self
                .restricted_models
                .iter()
                .any(|m| model_matches(m, model))
    }
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
    pub account_type: AccountType,
    /// Concurrent requests this account may serve; 0 = unlimited.
    pub max_concurrency: u32,
    /// Never cooled down or paused automatically: errors only go to the history.
    pub disable_auto_protection: bool,
    pub proxy: Option<ProxyConfig>,
    /// AWS region (Bedrock).
    pub region: Option<String>,
    /// Azure OpenAI: the deployment and API version.
    pub deployment_name: Option<String>,
    pub api_version: Option<String>,
    /// OAuth accounts: when the access token expires (ms since the epoch), and its scopes.
    pub token_expires_at: Option<i64>,
    pub scopes: Vec<String>,
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
            account_type: AccountType::Shared,
            max_concurrency: 0,
            disable_auto_protection: false,
            proxy: None,
            region: None,
            deployment_name: None,
            api_version: None,
            token_expires_at: None,
            scopes: Vec::new(),
            created_at: String::new(),
            last_used_at: None,
        }
    }
}

impl Account {
    pub fn supports_model(&self, model: &str) -> bool {
        self.supported_models.is_empty() || self.supported_models.iter().any(|m| m == model)
    }

    /// Active, schedulable and not blocked or in error: may be picked (cooldowns and
    /// concurrency are checked by the scheduler against live state).
    pub fn is_schedulable(&self) -> bool {
        self.is_active && self.schedulable && !matches!(self.status.as_str(), "blocked" | "error")
    }
}

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

/// A local user's role. Admins see the admin pages; users only their own keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    #[default]
    User,
    Admin,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::User => "user",
            UserRole::Admin => "admin",
        }
    }
}

/// A local user (username and argon2 password). Never carries the password hash.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: UserRole,
    pub is_active: bool,
    pub created_at: String,
    pub last_login_at: Option<String>,
    /// Daily and monthly cost across all the user's keys, set by an admin (0 = none). Every
    /// key of the user carries a copy (`ApiKey::owner_budget`).
    pub budget: Budget,
}

/// A row of the admin's user table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserRow {
    pub user: User,
    pub key_count: u64,
    /// Keys the user deleted: they still count against the allowance.
    pub deleted_key_count: u64,
    pub total: UsageCounters,
}

/// Who is signed in to the pages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionInfo {
    pub username: String,
    pub role: UserRole,
    /// Set for local users; the built-in admin has none.
    pub user_id: Option<String>,
}

/// What every page's frame shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ShellInfo {
    pub site_name: String,
    pub logo_url: String,
    pub session: Option<SessionInfo>,
}

/// One webhook channel of the settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookChannel {
    pub id: String,
    /// `slack`, `discord`, `telegram`, `dingtalk`, `feishu`, `wecom`, `bark`, `smtp`, `custom`.
    pub kind: String,
    pub name: String,
    pub url: String,
    /// Signing secret (DingTalk, Feishu) or SMTP password; stored encrypted, never shown.
    pub secret: String,
    pub enabled: bool,
}

/// Service-wide settings edited on the settings page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub site_name: String,
    /// An image URL shown next to the site name (empty = none).
    pub logo_url: String,
    /// Cost multipliers per service for every key (a key's own rate multiplies with it).
    pub service_rates: std::collections::BTreeMap<String, f64>,
    pub webhooks: Vec<WebhookChannel>,
    /// Local users may create their own keys.
    pub user_keys_enabled: bool,
    /// Keys one local user may hold (deleted ones count too, until an admin removes them).
    pub max_keys_per_user: u32,
    /// Webhook notifications on or off as a whole.
    pub webhooks_enabled: bool,
    /// What every key a local user creates gets: users only name and describe their keys.
    pub user_key_defaults: UserKeyDefaults,
}

/// The limits, services and expiry of the keys local users create for themselves (0 = none,
/// no permission = every service). Set by an admin; a user cannot change them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserKeyDefaults {
    pub daily_cost_limit: f64,
    pub total_cost_limit: f64,
    pub weekly_cost_limit: f64,
    pub concurrency_limit: u32,
    /// Rate window length in minutes, and what it allows.
    pub rate_limit_window: u32,
    pub rate_limit_requests: u64,
    pub token_limit: u64,
    pub rate_limit_cost: f64,
    /// Services (`claude`, `gemini`, `openai`); empty means all.
    pub permissions: Vec<String>,
    /// Days from creation until the key expires (0 = never).
    pub expiry_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            site_name: "Claude Relay Service".into(),
            logo_url: String::new(),
            service_rates: Default::default(),
            webhooks: Vec::new(),
            user_keys_enabled: true,
            max_keys_per_user: 3,
            webhooks_enabled: false,
            user_key_defaults: UserKeyDefaults::default(),
        }
    }
}

impl Settings {
    /// The service-wide multiplier for a service (1 when unset).
    pub fn service_rate(&self, service: &str) -> f64 {
        self.service_rates
            .get(service)
            .copied()
            .filter(|r| *r >= 0.0)
            .unwrap_or(1.0)
    }
}

/// The webhook channel kinds the settings accept.
pub const WEBHOOK_KINDS: [&str; 9] = [
    "slack", "discord", "telegram", "dingtalk", "feishu", "wecom", "bark", "smtp", "custom",
];

/// What the keys table shows: search, filters, sort and page, all from the URL's query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyQuery {
    /// Matches the name, the preview or a tag (case-insensitive).
    pub search: String,
    pub tag: String,
    /// `active`, `disabled`, `expired`, `deleted`, or empty for all but deleted.
    pub state: String,
    /// `created` (default, newest first), `name`, `last_used`, `cost`.
    pub sort: String,
    /// 1-based.
    pub page: u32,
}

pub const KEYS_PER_PAGE: usize = 25;

/// One page of the keys table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyPage {
    pub rows: Vec<KeyRow>,
    /// Rows matching the query, over every page.
    pub matching: u64,
    pub page: u32,
    pub pages: u32,
    /// Every tag in use, for the filter.
    pub tags: Vec<String>,
}

/// One limit of a key and how much of it is used, for a progress bar.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LimitBar {
    /// `Daily cost`, `Platform claude · daily cost`, `Model claude-opus-* · total cost`, …
    pub label: String,
    pub current: f64,
    pub limit: f64,
    /// `$` for money, empty for counts.
    pub unit: String,
    pub reset_at: Option<String>,
}

impl LimitBar {
    /// Used share in percent, capped at 100.
    pub fn percent(&self) -> f64 {
        if self.limit > 0.0 {
            (self.current / self.limit * 100.0).clamp(0.0, 100.0)
        } else {
            0.0
        }
    }
}

/// What a key holder sees on the public stats page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyStats {
    pub name: String,
    pub is_active: bool,
    pub expires_at: Option<String>,
    pub today: UsageCounters,
    pub month: UsageCounters,
    pub total: UsageCounters,
    pub limits: Vec<LimitBar>,
    /// All-time usage per model, largest cost first.
    pub models: Vec<ModelUsage>,
}

/// A row of the admin's key table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub key_preview: String,
    pub is_active: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub is_deleted: bool,
    pub tags: Vec<String>,
    /// The owning local user's name, if any.
    pub owner: Option<String>,
    /// Disabled by an administrator (its owner cannot enable it).
    pub disabled_by_admin: bool,
    pub total: UsageCounters,
    pub limits: Vec<LimitBar>,
}

/// A row of the admin's account table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub platform: String,
    /// normal, cooling_down, rate_limited, blocked, error, paused.
    pub state: String,
    pub priority: u32,
    pub last_used_at: Option<String>,
    /// The end of the longest rest, if resting.
    pub resting_until: Option<String>,
    /// Why it is not schedulable (empty when it is).
    pub reason: String,
    pub schedulable: bool,
    pub today: UsageCounters,
}

/// The key form of the admin pages: every field as the browser posts it (text), checked by
/// the server with the admin API's own rules. Empty means "none" / "no limit".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyForm {
    pub name: String,
    pub description: String,
    /// Comma-separated.
    pub tags: String,
    /// Keys to create at once (batch), 1 when empty.
    pub count: String,
    /// Checkboxes: present ("on") when ticked. None ticked = every service.
    pub perm_claude: Option<String>,
    pub perm_openai: Option<String>,
    pub perm_gemini: Option<String>,
    pub concurrency_limit: String,
    pub rate_limit_window: String,
    pub rate_limit_requests: String,
    pub token_limit: String,
    pub rate_limit_cost: String,
    pub daily_cost_limit: String,
    pub total_cost_limit: String,
    pub weekly_cost_limit: String,
    pub weekly_opus_cost_limit: String,
    /// Per-platform daily and total cost limits.
    pub claude_daily: String,
    pub claude_total: String,
    pub openai_daily: String,
    pub openai_total: String,
    pub gemini_daily: String,
    pub gemini_total: String,
    /// One per line: `model-or-prefix* daily total`.
    pub model_limits: String,
    /// Blacklisted models, comma- or newline-separated (restriction is on when not empty).
    pub restricted_models: String,
    /// Allowed clients (restriction is on when any is ticked).
    pub client_claude_code: Option<String>,
    pub client_gemini_cli: Option<String>,
    pub client_codex_cli: Option<String>,
    /// A dedicated Claude account or `group:<id>`; empty = shared pool.
    pub claude_account_id: String,
    pub claude_console_account_id: String,
    /// `YYYY-MM-DD` (end of that day, UTC) or an RFC 3339 time; empty = never.
    pub expires_at: String,
    /// Days from first use (activation mode) when set.
    pub activation_days: String,
}

fn num(v: f64) -> String {
    if v == 0.0 {
        String::new()
    } else {
        format!("{v}")
    }
}

fn whole_num(v: u64) -> String {
    if v == 0 {
        String::new()
    } else {
        v.to_string()
    }
}

impl KeyForm {
    /// The form pre-filled from a key, for editing.
    pub fn of(k: &ApiKey) -> Self {
        let tick = |on: bool| on.then(|| "on".to_string());
        let plat = |p: &str| k.platform_limits.get(p).copied().unwrap_or_default();
        let has = |p: &str| k.permissions.iter().any(|x| x == p);
        let client = |c: &str| tick(k.allowed_clients.iter().any(|x| x == c));
        KeyForm {
            name: k.name.clone(),
            description: k.description.clone(),
            tags: k.tags.join(", "),
            count: String::new(),
            perm_claude: tick(has("claude")),
            perm_openai: tick(has("openai")),
            perm_gemini: tick(has("gemini")),
            concurrency_limit: whole_num(u64::from(k.concurrency_limit)),
            rate_limit_window: whole_num(u64::from(k.rate_limit_window)),
            rate_limit_requests: whole_num(k.rate_limit_requests),
            token_limit: whole_num(k.token_limit),
            rate_limit_cost: num(k.rate_limit_cost),
            daily_cost_limit: num(k.daily_cost_limit),
            total_cost_limit: num(k.total_cost_limit),
            weekly_cost_limit: num(k.weekly_cost_limit),
            weekly_opus_cost_limit: num(k.weekly_opus_cost_limit),
            claude_daily: num(plat("claude").daily_cost),
            claude_total: num(plat("claude").total_cost),
            openai_daily: num(plat("openai").daily_cost),
            openai_total: num(plat("openai").total_cost),
            gemini_daily: num(plat("gemini").daily_cost),
            gemini_total: num(plat("gemini").total_cost),
            model_limits: k
                .model_limits
                .iter()
                .map(|(m, l)| format!("{m} {} {}", l.daily_cost, l.total_cost))
                .collect::<Vec<_>>()
                .join("\n"),
            restricted_models: if k.enable_model_restriction {
                k.restricted_models.join(", ")
            } else {
                String::new()
            },
            client_claude_code: client("claude_code").filter(|_| k.enable_client_restriction),
            client_gemini_cli: client("gemini_cli").filter(|_| k.enable_client_restriction),
            client_codex_cli: client("codex_cli").filter(|_| k.enable_client_restriction),
            claude_account_id: k.claude_account_id.clone().unwrap_or_default(),
            claude_console_account_id: k.claude_console_account_id.clone().unwrap_or_default(),
            expires_at: if k.expiration_mode == ExpirationMode::Activation {
                String::new()
            } else {
                k.expires_at.clone().unwrap_or_default()
            },
            activation_days: if k.expiration_mode == ExpirationMode::Activation {
                k.activation_days.to_string()
            } else {
                String::new()
            },
        }
    }
}

/// The account form of the admin pages (one for every platform; fields a platform does not
/// use are ignored). Secrets left empty on an edit keep the stored ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountForm {
    /// A `Platform` wire name.
    pub platform: String,
    pub name: String,
    pub description: String,
    pub api_url: String,
    pub api_key: String,
    pub priority: String,
    pub max_concurrency: String,
    /// `shared` or `dedicated`.
    pub account_type: String,
    /// Comma-separated; empty = any model.
    pub supported_models: String,
    pub user_agent: String,
    pub disable_auto_protection: Option<String>,
    /// Proxy: empty type = none.
    pub proxy_type: String,
    pub proxy_host: String,
    pub proxy_port: String,
    pub proxy_username: String,
    pub proxy_password: String,
    /// Azure OpenAI.
    pub deployment_name: String,
    pub api_version: String,
    /// Bedrock: region, and AWS keys or a Bedrock API key (`bearer_token`).
    pub region: String,
    pub aws_access_key_id: String,
    pub aws_secret_access_key: String,
    pub bearer_token: String,
    /// Claude OAuth: the authorization session whose code was exchanged.
    pub oauth_session_id: String,
    /// Comma-separated group ids this account belongs to.
    pub groups: String,
}

/// An account with what its edit page shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountDetail {
    pub account: Option<Account>,
    pub form: AccountForm,
    pub errors: Vec<AccountError>,
    pub groups: Vec<AccountGroup>,
}

/// The result of an account test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountTest {
    pub ok: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub excerpt: String,
}

/// A Claude OAuth authorization in progress: open `auth_url`, then paste the code.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuthStart {
    pub session_id: String,
    pub auth_url: String,
}

/// The settings form (webhook channels one per line: `kind url [name]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsForm {
    pub site_name: String,
    pub logo_url: String,
    pub rate_claude: String,
    pub rate_openai: String,
    pub rate_gemini: String,
    pub webhooks: String,
    pub webhooks_enabled: Option<String>,
    pub user_keys_enabled: Option<String>,
    pub max_keys_per_user: String,
    /// Defaults of user-created keys (empty = none).
    pub user_key_daily_cost_limit: String,
    pub user_key_total_cost_limit: String,
    pub user_key_weekly_cost_limit: String,
    pub user_key_concurrency_limit: String,
    pub user_key_rate_limit_window: String,
    pub user_key_rate_limit_requests: String,
    pub user_key_token_limit: String,
    pub user_key_rate_limit_cost: String,
    /// None ticked = every service.
    pub user_key_perm_claude: Option<String>,
    pub user_key_perm_openai: Option<String>,
    pub user_key_perm_gemini: Option<String>,
    pub user_key_expiry_days: String,
}

impl SettingsForm {
    pub fn of(s: &Settings) -> Self {
        let rate = |k: &str| {
            s.service_rates
                .get(k)
                .map(|r| r.to_string())
                .unwrap_or_default()
        };
        let d = &s.user_key_defaults;
        let perm = |p: &str| {
            d.permissions
                .iter()
                .any(|x| x == p)
                .then(|| "on".to_string())
        };
        SettingsForm {
            site_name: s.site_name.clone(),
            logo_url: s.logo_url.clone(),
            rate_claude: rate("claude"),
            rate_openai: rate("openai"),
            rate_gemini: rate("gemini"),
            webhooks: s
                .webhooks
                .iter()
                .map(|w| {
                    let secret = if w.secret.is_empty() {
                        ""
                    } else {
                        " secret=***"
                    };
                    let state = if w.enabled { "" } else { " (off)" };
                    format!("{} {} {}{secret}{state}", w.kind, w.url, w.name)
                })
                .collect::<Vec<_>>()
                .join("\n"),
            webhooks_enabled: s.webhooks_enabled.then(|| "on".into()),
            user_keys_enabled: s.user_keys_enabled.then(|| "on".into()),
            max_keys_per_user: s.max_keys_per_user.to_string(),
            user_key_daily_cost_limit: num(d.daily_cost_limit),
            user_key_total_cost_limit: num(d.total_cost_limit),
            user_key_weekly_cost_limit: num(d.weekly_cost_limit),
            user_key_concurrency_limit: whole_num(u64::from(d.concurrency_limit)),
            user_key_rate_limit_window: whole_num(u64::from(d.rate_limit_window)),
            user_key_rate_limit_requests: whole_num(d.rate_limit_requests),
            user_key_token_limit: whole_num(d.token_limit),
            user_key_rate_limit_cost: num(d.rate_limit_cost),
            user_key_perm_claude: perm("claude"),
            user_key_perm_openai: perm("openai"),
            user_key_perm_gemini: perm("gemini"),
            user_key_expiry_days: whole_num(u64::from(d.expiry_days)),
        }
    }
}

/// Filters of the request log (all optional; times are RFC 3339 or `YYYY-MM-DD`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordQuery {
    pub since: String,
    pub until: String,
    /// A key id or a key name.
    pub key: String,
    /// An account id or name.
    pub account: String,
    /// A model, or a prefix ending in `*`.
    pub model: String,
    /// An HTTP status, or `2xx`, `4xx`, `5xx`.
    pub status: String,
    /// 1-based.
    pub page: u32,
}

impl RecordQuery {
    /// Whether a record passes every filter; `key_name` and `account_name` are its names.
    pub fn matches(&self, r: &RequestRecord, key_name: &str, account_name: &str) -> bool {
        let time_ok = |bound: &str, after: bool| {
            let b = bound.trim();
            if b.is_empty() {
                return true;
            }
            // RFC 3339 strings in UTC compare as text; a date compares by its day.
            let ts = r.timestamp.as_str();
            if b.len() == 10 {
                let day = ts.get(..10).unwrap_or(ts);
                if after {
                    day >= b
                } else {
                    day <= b
                }
            } else if after {
                ts >= b
            } else {
                ts <= b
            }
        };
        let is = |want: &str, id: &str, name: &str| {
            let w = want.trim();
            w.is_empty() || w == id || w.eq_ignore_ascii_case(name)
        };
        let model_ok = match self.model.trim() {
            "" => true,
            m => match m.strip_suffix('*') {
                Some(prefix) => r.model.starts_with(prefix),
                None => r.model == m,
            },
        };
        let status_ok = match self.status.trim() {
            "" => true,
            "2xx" => (200..300).contains(&r.status),
            "4xx" => (400..500).contains(&r.status),
            "5xx" => (500..600).contains(&r.status),
            s => s.parse::<u16>().is_ok_and(|code| code == r.status),
        };
        time_ok(&self.since, true)
            && time_ok(&self.until, false)
            && is(&self.key, &r.key_id, key_name)
            && is(&self.account, &r.account_id, account_name)
            && model_ok
            && status_ok
    }
}

pub const RECORDS_PER_PAGE: usize = 50;

/// A request record with the names of its key and account, for the request log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RecordRow {
    pub record: RequestRecord,
    pub key_name: String,
    pub account_name: String,
}

/// One page of the request log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RecordPage {
    pub rows: Vec<RecordRow>,
    pub matching: u64,
    pub page: u32,
    pub pages: u32,
    /// Their summed usage.
    pub total: UsageCounters,
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
    fn a_restriction_holds_for_every_form_of_the_model() {
        let mut key = ApiKey {
            enable_model_restriction: true,
            restricted_models: vec!["claude-opus-4-1".into()],
            ..Default::default()
        };
        for refused in [
            "claude-opus-4-1",
            "claude-opus-4-1-20250805",
            "CLAUDE-OPUS-4-1",
            "claude-opus-4-1@20250805",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
        ] {
            assert!(key.model_blocked(refused), "{refused}");
        }
        for allowed in ["claude-opus-4", "claude-opus-4-5", "claude-sonnet-4-5"] {
            assert!(!key.model_blocked(allowed), "{allowed}");
        }
        key.restricted_models = vec!["Claude-Opus-*".into()];
        assert!(key.model_blocked("us.anthropic.claude-opus-4-5-20251101-v1:0"));
        assert!(!key.model_blocked("claude-sonnet-4-5"));
        key.enable_model_restriction = false;
        assert!(!key.model_blocked("claude-opus-4-1"));
        assert_eq!(
            model_family("us.anthropic.claude-opus-4-1-20250805-v1:0"),
            Some("opus")
        );
        assert_eq!(model_family("gpt-4o"), None);
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
