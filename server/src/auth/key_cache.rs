//! API keys served from memory, so that a relayed request costs no store round trip to
//! authenticate — without ever serving a key that changed.
//!
//! Each copy remembers the store's *keys version* it was read at (every key write bumps it,
//! on any relay instance). A request that authenticated from a copy hands that version to its
//! first store step — admission for a key with limits, else scheduling — which refuses with
//! `StoreError::KeyChanged` before taking anything if a key was written since. The request
//! then starts over once with a copy read from the store ([`run_again`]): a key
//! disabled, deleted or given new limits takes effect on the very next request, on every
//! instance. A copy read from the store for the request itself is not checked (it is as
//! fresh as a lookup can be).

use std::collections::HashMap;

use axum::{http::HeaderMap, response::Response};
use parking_lot::RwLock;

use crate::store::StoredKey;

/// Copies kept at most (about 2 KB each); past it the cache starts over, which costs one
/// lookup per key.
const CAPACITY: usize = 20_000;

#[derive(Default)]
pub struct KeyCache {
    /// By key hash.
    copies: RwLock<HashMap<String, StoredKey>>,
}

impl KeyCache {
    /// A copy for `hash`, marked with the version it was read at.
    pub fn get(&self, hash: &str) -> Option<StoredKey> {
        self.copies.read().get(hash).cloned()
    }

    /// Keeps `key`, read from the store at `version`, unless a newer copy is already here.
    pub fn put(&self, hash: &str, key: &StoredKey, version: u64) {
        let mut copies = self.copies.write();
        if copies
            .get(hash)
            .and_then(|c| c.cached_at)
            .is_some_and(|v| v > version)
        {
            return;
        }
        if copies.len() >= CAPACITY {
            copies.clear();
        }
        let mut copy = key.clone();
        copy.cached_at = Some(version);
        copies.insert(hash.to_string(), copy);
    }

    pub fn forget(&self, hash: &str) {
        self.copies.write().remove(hash);
    }

    pub fn len(&self) -> usize {
        self.copies.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Marks a response whose request found its key copy out of date: run it again.
#[derive(Clone, Copy, Debug)]
pub struct KeyChanged;

/// What a relayed request's first run answered, as far as a rerun is concerned.
#[derive(Clone, Copy, Debug)]
pub struct FirstRun {
    /// The request found its key copy out of date (the answer carries [`KeyChanged`]).
    pub key_changed: bool,
    pub succeeded: bool,
}

impl FirstRun {
    pub fn of(answer: &Response) -> Self {
        FirstRun {
            key_changed: answer.extensions().get::<KeyChanged>().is_some(),
            succeeded: answer.status().is_success(),
        }
    }
}

/// Whether a relayed request whose first run went as `first` must run again (the relay layer,
/// `routes::key_first`, runs it): its key copy turned out to be out of date. The copy is then
/// forgotten, so the second run reads the key from the store and cannot be refused the same
/// way. What the first run held was released when it returned.
///
/// A refusal is also decided again on a fresh read if the copy behind it is out of date:
/// permission, model, client and dedicated-account checks refuse before any store step could
/// tell (one version read, on the error path only).
pub async fn run_again(
    keys: &super::api_key::KeyLookup<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
    first: FirstRun,
) -> bool {
    let changed = first.key_changed;
    if !changed && first.succeeded {
        return false;
    }
    let Some(hash) =
        super::api_key::extract(headers, query).map(|raw| keys.crypto.hash_api_key(&raw))
    else {
        return false;
    };
    if !changed {
        let copy = keys.copies.get(&hash).and_then(|c| c.cached_at);
        let current = match copy {
            Some(_) => keys.store.keys_version().await.ok(),
            None => None,
        };
        if copy.is_none() || current.is_none() || copy == current {
            return false;
        }
    }
    keys.copies.forget(&hash);
    if changed {
        crate::telemetry::key_copy_outdated();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::ApiKey;

    fn key(name: &str) -> StoredKey {
        StoredKey::new(
            ApiKey {
                id: "k".into(),
                name: name.into(),
                ..Default::default()
            },
            "h".into(),
        )
    }

    #[test]
    fn copies_carry_their_version_and_never_go_back() {
        let cache = KeyCache::default();
        assert!(cache.get("h").is_none());
        cache.put("h", &key("new"), 7);
        let copy = cache.get("h").expect("cached");
        assert_eq!(copy.cached_at, Some(7));
        assert_eq!(copy.key.name, "new");
        // A slower lookup that read an older version does not replace the newer copy.
        cache.put("h", &key("old"), 6);
        assert_eq!(cache.get("h").expect("cached").key.name, "new");
        cache.put("h", &key("newer"), 8);
        assert_eq!(cache.get("h").expect("cached").cached_at, Some(8));
        cache.forget("h");
        assert!(cache.get("h").is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = KeyCache::default();
        for i in 0..CAPACITY + 5 {
            cache.put(&format!("h{i}"), &key("k"), 1);
        }
        assert!(cache.len() <= CAPACITY);
        assert!(cache.get(&format!("h{}", CAPACITY + 4)).is_some());
    }
}
