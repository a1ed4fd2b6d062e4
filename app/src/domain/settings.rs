//! Settings an admin changes at run time (webhooks, defaults for user keys).

use serde::{Deserialize, Serialize};

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
