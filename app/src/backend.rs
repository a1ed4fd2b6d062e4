//! What the server functions need from the server, as a trait the `server` crate implements.
//! This keeps the store, crypto and HTTP clients out of `app` (and out of the WASM build).

use std::{net::IpAddr, sync::Arc};

use crate::domain::{
    AccountDetail, AccountForm, AccountGroup, AccountRow, AccountTest, DashboardSummary, KeyForm,
    KeyPage, KeyQuery, KeyStats, OAuthStart, RecordPage, RecordQuery, SessionInfo, Settings,
    SettingsForm, UserRole, UserRow,
};

/// Who sent the request, as the server resolved it (`TRUSTED_PROXIES`): a request extension
/// set on every request, read by sign-in (throttling) and by the session cookie (`Secure`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    /// The session cookie gets `Secure`: the request came over HTTPS (through a trusted
    /// proxy) or the public URL is https.
    pub secure: bool,
}

/// A successful login.
pub struct LoginGrant {
    pub token: String,
    /// The idle lifetime (renewed on use).
    pub expires_in_secs: u64,
    /// The absolute lifetime: the cookie's `Max-Age`.
    pub max_age_secs: u64,
    pub username: String,
    pub role: UserRole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// A field over its size limit (see `bounds`): (field, message).
    Invalid(&'static str, String),
    InvalidCredentials,
    /// Too many failures from this address or for this user; retry after this many seconds.
    TooManyAttempts(u64),
    Unavailable,
}

/// `POST /web/auth/change-password`'s body (the original's fields).
#[derive(Clone, Debug, Default)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
    pub new_username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRefusal {
    Unauthorized,
    /// (field, message)
    Invalid(&'static str, String),
    WrongPassword,
    TooManyAttempts(u64),
    Unavailable,
}

/// Whose keys an operation may touch: every key (an admin) or one user's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyScope {
    All,
    OwnedBy(String),
}

#[async_trait::async_trait]
pub trait AdminBackend: Send + Sync + 'static {
    async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginGrant, LoginRefusal>;
    /// Who holds a live session, renewing it.
    async fn session(&self, token: &str) -> Option<SessionInfo>;
    async fn logout(&self, token: &str);
    /// Changes the signed-in user's password (and the built-in admin's name, if given); every
    /// session of theirs ends, this one too.
    async fn change_password(
        &self,
        token: &str,
        change: PasswordChange,
        client: Option<IpAddr>,
    ) -> Result<String, ChangeRefusal>;
    async fn dashboard(&self) -> Result<DashboardSummary, String>;

    // Keys. Errors are messages that name the field at fault.
    async fn keys(&self, scope: KeyScope, query: KeyQuery) -> Result<KeyPage, String>;
    async fn key_form(&self, scope: KeyScope, id: &str) -> Result<KeyForm, String>;
    /// Creates `form.count` keys (1 by default); the answer is the keys themselves, shown once.
    async fn create_keys(&self, scope: KeyScope, form: KeyForm) -> Result<Vec<String>, String>;
    async fn update_key(&self, scope: KeyScope, id: &str, form: KeyForm) -> Result<(), String>;
    /// `enable`, `disable`, `delete` (soft), `restore`, `purge` (an admin's permanent delete
    /// of a deleted key). A key an admin disabled cannot be enabled by its owner.
    async fn key_action(&self, scope: KeyScope, id: &str, action: &str) -> Result<(), String>;

    // Accounts and groups.
    async fn accounts(&self) -> Result<Vec<AccountRow>, String>;
    async fn account(&self, id: &str) -> Result<AccountDetail, String>;
    /// Creates (no id) or updates an account; answers its id.
    async fn save_account(&self, id: Option<&str>, form: AccountForm) -> Result<String, String>;
    /// `toggle-schedulable`, `reset-status`, `delete`.
    async fn account_action(&self, id: &str, action: &str) -> Result<(), String>;
    async fn test_account(&self, id: &str) -> Result<AccountTest, String>;
    async fn oauth_start(&self, setup_token: bool) -> Result<OAuthStart, String>;
    async fn oauth_exchange(&self, session_id: &str, code: &str) -> Result<(), String>;
    async fn groups(&self) -> Result<Vec<AccountGroup>, String>;
    async fn create_group(&self, name: &str, platform: &str) -> Result<(), String>;
    async fn delete_group(&self, id: &str) -> Result<(), String>;

    // Local users.
    async fn users(&self) -> Result<Vec<UserRow>, String>;
    async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: UserRole,
    ) -> Result<(), String>;
    /// `enable`, `disable`, `make-admin`, `make-user`.
    async fn user_action(&self, id: &str, action: &str) -> Result<(), String>;
    /// Sets a user's daily and monthly budget (USD as typed; empty = none) and copies it into
    /// every key they own.
    async fn set_user_budget(
        &self,
        id: &str,
        daily_cost: &str,
        monthly_cost: &str,
    ) -> Result<(), String>;

    /// The request log: every key's newest requests, filtered and paginated.
    async fn records(&self, query: RecordQuery) -> Result<RecordPage, String>;

    // Settings.
    async fn settings(&self) -> Settings;
    async fn save_settings(&self, form: SettingsForm) -> Result<(), String>;
    /// Sends a test notification through the saved channel at `index`.
    async fn test_webhook(&self, index: usize) -> Result<(), String>;

    /// The public stats of the key itself (never of a bare key id).
    async fn key_stats(&self, key: &str) -> Result<KeyStats, String>;
}

/// Provided as Leptos context to every server function.
#[derive(Clone)]
pub struct Backend(pub Arc<dyn AdminBackend>);
