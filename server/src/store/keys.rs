//! API keys' storage: the key records, the authentication lookup by hash, and the keys
//! version that tells a cached key copy it is out of date.

use std::time::Duration;

use app::domain::ApiKey;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// An API key as stored: the admin-visible record plus the key's hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub key_hash: String,
    /// For a copy served from memory: the keys version it was read at. The request's first
    /// store step (admission or scheduling) checks it and answers `KeyChanged` if a key was
    /// written since. `None` for a copy just read from the store. Never stored.
    #[serde(skip)]
    pub cached_at: Option<u64>,
}

impl StoredKey {
    pub fn new(key: ApiKey, key_hash: String) -> Self {
        StoredKey {
            key,
            key_hash,
            cached_at: None,
        }
    }
}

/// Two copies of a key are equal when their records are: where a copy came from is not part
/// of it.
impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.key_hash == other.key_hash
    }
}

/// The key records.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Fails with `Conflict` if the id or the hash exists already.
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Replaces an existing key record (its hash must not change).
    async fn update_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;
    /// A key record with the bytes it was read as, for [`KeyStore::update_key_if`].
    async fn get_key_for_update(
        &self,
        id: &str,
    ) -> Result<Option<(StoredKey, Vec<u8>)>, StoreError>;
    /// Compare-and-set: replaces the record only if it is still stored as `read`, with the
    /// keys version bumped in the same step. `Ok(false)`: it changed since it was read (nothing
    /// written); `Conflict` if it is gone. See [`modify_key`].
    async fn update_key_if(&self, key: &StoredKey, read: &[u8]) -> Result<bool, StoreError>;
    /// The authentication lookup: one round trip.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<StoredKey>, StoreError>;
    /// The lookup with the keys version it is current for (an engine that cannot read both at
    /// once reads the version first: a write in between only makes the copy look older).
    async fn key_by_hash_versioned(
        &self,
        hash: &str,
    ) -> Result<(Option<StoredKey>, u64), StoreError> {
        let version = self.keys_version().await?;
        Ok((self.key_by_hash(hash).await?, version))
    }
    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Changes whenever a key is written: a cached key list is current while it holds.
    async fn keys_version(&self) -> Result<u64, StoreError>;
    async fn delete_key(&self, id: &str) -> Result<bool, StoreError>;
}

/// Read-modify-write of a key record that never overwrites a concurrent write (an admin's
/// disable, say): `change` gets the newest record and says whether it changed it; on a
/// conflict it runs again on the record as it is now. `None` if there is no such key; else the
/// record as written (or as found, when `change` changed nothing).
pub async fn modify_key<F>(
    store: &dyn KeyStore,
    id: &str,
    mut change: F,
) -> Result<Option<StoredKey>, StoreError>
where
    F: FnMut(&mut StoredKey) -> bool + Send,
{
    for attempt in 0..MODIFY_ATTEMPTS {
        let Some((mut key, read)) = store.get_key_for_update(id).await? else {
            return Ok(None);
        };
        if !change(&mut key) {
            return Ok(Some(key));
        }
        match store.update_key_if(&key, &read).await {
            Ok(true) => return Ok(Some(key)),
            Ok(false) => {}
            Err(StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        // Writers racing for one key: spread them out a little.
        let pause = rand::random::<u64>() % (1 + attempt as u64).min(8);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Err(StoreError::Conflict(
        "the key kept changing; try again".into(),
    ))
}

/// Compare-and-set rounds before [`modify_key`] gives up.
const MODIFY_ATTEMPTS: u32 = 200;
