//! Page forms and view models: what the admin pages send and show, apart from the core types.

use serde::{Deserialize, Serialize};

use super::*;

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
