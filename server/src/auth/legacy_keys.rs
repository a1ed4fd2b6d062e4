//! Keys issued by an original deployment keep working after the import.
//!
//! The original stores `sha256(key ‖ ENCRYPTION_KEY)`, as we do. When the imported data's
//! `ENCRYPTION_KEY` equals ours the hashes are the same scheme and the key is stored under its
//! hash as it is. Otherwise it is stored under `legacy:<original hash>` (the marker names the
//! scheme) and the original's key (sealed with ours) is remembered in a small document.
//!
//! Authentication stays one store lookup for every key of ours: only when that lookup misses,
//! and only if some legacy salt exists, is the key hashed with each legacy salt and looked up
//! again. The salt list is held in memory per store and re-read at most every few seconds on
//! that miss path (an import in this process drops it at once).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{
    crypto::{sha256_hex, Crypto},
    store::{DynStore, StoreError, StoredKey},
};

/// The document kind of everything the import remembers.
pub const KIND: &str = "import_crs";
const SALTS_ID: &str = "legacy_key_salts";
/// The stored-hash prefix of keys hashed with another deployment's `ENCRYPTION_KEY`.
pub const HASH_MARKER: &str = "legacy:";
/// How long a read of the salt list is trusted on the miss path.
const FRESH: Duration = Duration::from_secs(5);

#[derive(Default, Serialize, Deserialize)]
struct SaltsDoc {
    /// Each one sealed with our `Crypto`.
    salts: Vec<String>,
}

type Cache = HashMap<usize, (Instant, Arc<Vec<String>>)>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn store_id(store: &DynStore) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// Forgets every cached salt list (after an import in this process).
pub fn invalidate() {
    cache().lock().clear();
}

/// The stored hash of a key the original hashed as `original_hash` with its own key.
pub fn stored_hash(original_hash: &str, same_key_as_ours: bool) -> String {
    if same_key_as_ours {
        original_hash.to_string()
    } else {
        format!("{HASH_MARKER}{original_hash}")
    }
}

/// The stored hash a presented key has under a legacy salt.
pub fn legacy_hash(salt: &str, key: &str) -> String {
    format!("{HASH_MARKER}{}", sha256_hex(&format!("{key}{salt}")))
}

/// Every legacy salt, opened.
pub async fn salts(store: &DynStore, crypto: &Crypto) -> Result<Vec<String>, StoreError> {
    let Some(json) = store.get_doc(KIND, SALTS_ID).await? else {
        return Ok(Vec::new());
    };
    let doc: SaltsDoc = crate::store::from_json(json.as_bytes())?;
    Ok(doc
        .salts
        .iter()
        .filter_map(|s| match crypto.decrypt(s) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "an imported key salt cannot be opened; its keys are refused");
                None
            }
        })
        .collect())
}

/// Adds a legacy salt (once).
pub async fn remember_salt(
    store: &DynStore,
    crypto: &Crypto,
    salt: &str,
) -> Result<(), StoreError> {
    let existing = salts(store, crypto).await?;
    if existing.iter().any(|s| s == salt) {
        return Ok(());
    }
    let mut sealed: Vec<String> = existing.iter().map(|s| crypto.encrypt(s)).collect();
    sealed.push(crypto.encrypt(salt));
    store
        .put_doc(
            KIND,
            SALTS_ID,
            &crate::store::to_json(&SaltsDoc { salts: sealed })?,
        )
        .await?;
    invalidate();
    Ok(())
}

/// Replaces the salt list (restoring a backup).
pub async fn replace_salts(
    store: &DynStore,
    crypto: &Crypto,
    plain: &[String],
) -> Result<(), StoreError> {
    let doc = SaltsDoc {
        salts: plain.iter().map(|s| crypto.encrypt(s)).collect(),
    };
    if plain.is_empty() {
        store.delete_doc(KIND, SALTS_ID).await?;
    } else {
        store
            .put_doc(KIND, SALTS_ID, &crate::store::to_json(&doc)?)
            .await?;
    }
    invalidate();
    Ok(())
}

async fn cached_salts(store: &DynStore, crypto: &Crypto) -> Result<Arc<Vec<String>>, StoreError> {
    let id = store_id(store);
    if let Some((at, salts)) = cache().lock().get(&id) {
        if at.elapsed() < FRESH {
            return Ok(salts.clone());
        }
    }
    let fresh = Arc::new(salts(store, crypto).await?);
    cache().lock().insert(id, (Instant::now(), fresh.clone()));
    Ok(fresh)
}

/// The miss path of authentication: the key under each legacy salt, if there are any.
pub async fn find(
    store: &DynStore,
    crypto: &Crypto,
    key: &str,
) -> Result<Option<StoredKey>, StoreError> {
    for salt in cached_salts(store, crypto).await?.iter() {
        if let Some(found) = store.key_by_hash(&legacy_hash(salt, key)).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}
