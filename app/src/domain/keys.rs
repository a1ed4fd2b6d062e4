//! API keys and their limits.

use serde::{Deserialize, Serialize};

use super::*;

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
