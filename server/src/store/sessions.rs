//! Sign-in storage: the admin's credentials, admin sessions, the login throttle's counters
//! (which `auth::throttle` reads and decides on; the engines only count, by its rule handed to
//! them in their [`Rules`](super::Rules)), and OAuth authorizations in progress.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminCredentials {
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub updated_at: String,
    /// Bumped by every password change or reset; sessions of another generation are void.
    #[serde(default)]
    pub session_generation: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminSession {
    pub username: String,
    pub login_time: String,
    /// A local user's id; `None` for the built-in admin.
    #[serde(default)]
    pub user_id: Option<String>,
    /// When it was issued (ms since the epoch; 0 in sessions older than the field, whose
    /// `login_time` is read instead): the absolute lifetime counts from here.
    #[serde(default)]
    pub issued_ms: u64,
    /// The owner's `session_generation` when issued: a password change bumps it, which ends
    /// every older session at once.
    #[serde(default)]
    pub generation: u64,
}

/// A PKCE authorization in progress (10 minutes), and its result once exchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuthSession {
    pub code_verifier: String,
    pub state: String,
    pub scopes: String,
    pub proxy: Option<app::domain::ProxyConfig>,
    /// AES-GCM ciphertext of the proxy password, if any.
    pub proxy_secret: Option<String>,
    /// AES-GCM ciphertext of the exchanged tokens, once the code was exchanged.
    pub tokens: Option<String>,
    pub expires_at: Option<i64>,
    pub granted_scopes: Vec<String>,
}

/// What the store keeps per login-throttle key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub failures: u32,
    /// Milliseconds since the epoch of the last failure.
    pub last_ms: u64,
}

/// Admin credentials and sessions, login throttle counters, OAuth authorizations.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    // Admin credentials and sessions (sessions are keyed by the token's hash).
    async fn get_admin(&self) -> Result<Option<AdminCredentials>, StoreError>;
    async fn put_admin(&self, admin: &AdminCredentials) -> Result<(), StoreError>;
    async fn put_session(
        &self,
        token_hash: &str,
        session: &AdminSession,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn get_session(&self, token_hash: &str) -> Result<Option<AdminSession>, StoreError>;
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;

    // Login throttle counters, by `auth::throttle::keys` (which also decides; these count).
    async fn login_failures(
        &self,
        keys: &[String],
        now_ms: u64,
    ) -> Result<Vec<Option<Counter>>, StoreError>;
    /// One more failure on each key (`auth::throttle::after_failure`), forgotten after
    /// `auth::throttle::FORGET_AFTER`.
    async fn record_login_failure(&self, keys: &[String], now_ms: u64) -> Result<(), StoreError>;
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;
    /// How many counters are held (the attack battery checks the bound).
    async fn login_failure_entries(&self) -> Result<usize, StoreError>;

    // OAuth authorizations in progress.
    async fn put_oauth_session(
        &self,
        id: &str,
        session: &OAuthSession,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn get_oauth_session(&self, id: &str) -> Result<Option<OAuthSession>, StoreError>;
    async fn delete_oauth_session(&self, id: &str) -> Result<(), StoreError>;
}
