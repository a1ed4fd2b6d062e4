//! Upstream accounts: platforms, account types, proxies, groups, rests and errors.

use serde::{Deserialize, Serialize};

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

/// An account's health as the relay last saw it, with the original's wire names: `blocked`
/// (the upstream disabled or refused the account: an admin must act), `error` (its
/// credentials failed, e.g. a refresh token that no longer works), else `active`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    #[default]
    Active,
    Blocked,
    Error,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Blocked => "blocked",
            AccountStatus::Error => "error",
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
    pub status: AccountStatus,
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
            status: AccountStatus::Active,
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
        self.is_active && self.schedulable && self.status == AccountStatus::Active
    }
}
