//! Upstream accounts' storage: the account records and groups (together the schedulable
//! snapshot, cached by version), their rests and error history.

use std::{collections::HashMap, time::Duration};

use app::domain::{Account, AccountError, AccountGroup, Cooldown};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// An account as stored: the admin-visible record plus its encrypted credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAccount {
    #[serde(flatten)]
    pub account: Account,
    /// AES-256-GCM ciphertext of the upstream credential (see `crypto`).
    pub secret: String,
}

/// The schedulable view of the accounts and groups. `accounts` and `groups` are `None` when
/// the caller's cached copy (`known_version`) is still current.
#[derive(Clone, Debug, Default)]
pub struct AccountSnapshot {
    pub version: u64,
    pub accounts: Option<Vec<StoredAccount>>,
    pub groups: Option<Vec<AccountGroup>>,
    /// Last use per account id, in ms since the epoch.
    pub last_used_ms: HashMap<String, i64>,
}

/// Accounts, groups, rests and error history.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn put_account(&self, account: &StoredAccount) -> Result<(), StoreError>;
    async fn get_account(&self, id: &str) -> Result<Option<StoredAccount>, StoreError>;
    async fn list_accounts(&self) -> Result<Vec<StoredAccount>, StoreError>;
    async fn delete_account(&self, id: &str) -> Result<bool, StoreError>;
    /// The scheduling read: one round trip.
    async fn account_snapshot(
        &self,
        known_version: Option<u64>,
    ) -> Result<AccountSnapshot, StoreError>;

    // Account groups (part of the scheduling snapshot: changing one bumps the version).
    async fn put_group(&self, group: &AccountGroup) -> Result<(), StoreError>;
    async fn delete_group(&self, id: &str) -> Result<bool, StoreError>;

    /// Rests an account (or one model family of it) for `rest`, and appends to its error history.
    async fn mark_account(
        &self,
        account_id: &str,
        cooldown: Option<(&Cooldown, Duration)>,
        error: &AccountError,
    ) -> Result<(), StoreError>;
    async fn clear_cooldowns(&self, account_id: &str) -> Result<(), StoreError>;
    /// Live rests per account (account-wide and per family).
    async fn cooldowns(
        &self,
        account_ids: &[String],
    ) -> Result<HashMap<String, Vec<Cooldown>>, StoreError>;
    /// Newest first.
    async fn error_history(
        &self,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<AccountError>, StoreError>;
}
