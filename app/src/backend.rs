//! What the server functions need from the server, as a trait the `server` crate implements.
//! This keeps the store, crypto and HTTP clients out of `app` (and out of the WASM build).

use std::{net::IpAddr, sync::Arc};

use crate::domain::{AccountRow, DashboardSummary, KeyRow, KeyStats};

/// A successful admin login.
pub struct LoginGrant {
    pub token: String,
    pub expires_in_secs: u64,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    InvalidCredentials,
    /// Too many failures from this address or for this user; retry after this many seconds.
    TooManyAttempts(u64),
    Unavailable,
}

#[async_trait::async_trait]
pub trait AdminBackend: Send + Sync + 'static {
    async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginGrant, LoginRefusal>;
    /// The username of a live session, renewing it.
    async fn session_user(&self, token: &str) -> Option<String>;
    async fn logout(&self, token: &str);
    async fn dashboard(&self) -> Result<DashboardSummary, String>;
    async fn keys(&self) -> Result<Vec<KeyRow>, String>;
    /// Creates a key; the answer is the key itself, shown once.
    async fn create_key(&self, name: &str, daily_cost_limit: f64) -> Result<String, String>;
    async fn accounts(&self) -> Result<Vec<AccountRow>, String>;
    /// Admin actions on one account (`toggle-schedulable`, `reset-status`) and one key
    /// (`enable`, `disable`, `delete`).
    async fn account_action(&self, id: &str, action: &str) -> Result<(), String>;
    async fn key_action(&self, id: &str, action: &str) -> Result<(), String>;
    /// The public stats of the key itself (never of a bare key id).
    async fn key_stats(&self, key: &str) -> Result<KeyStats, String>;
}

/// Provided as Leptos context to every server function.
#[derive(Clone)]
pub struct Backend(pub Arc<dyn AdminBackend>);
