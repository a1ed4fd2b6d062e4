//! The embedded engine's API keys: records by id, an index by hash, and the keys version in
//! memory (this engine serves one process).

use super::*;

impl EmbeddedStore {
    /// `key_write.lua` (the Redis engine's, `store/redis/`) in one write transaction: the record replaced
    /// if it exists and (with `read` non-empty) is still stored as `read`; the keys version
    /// bumped before this returns. 1 written, 0 no such record, -1 changed since read.
    async fn write_key(&self, key: &StoredKey, read: Vec<u8>) -> Result<i64, StoreError> {
        let json = to_json(key)?;
        let id = key.key.id.clone();
        let result = self
            .run(move |db| {
                let w = db.begin_write().map_err(e)?;
                {
                    let mut keys = w.open_table(KEYS).map_err(e)?;
                    let current = keys
                        .get(id.as_str())
                        .map_err(e)?
                        .map(|v| v.value().to_vec());
                    match current {
                        None => return Ok(0),
                        Some(cur) if !read.is_empty() && cur != read => return Ok(-1),
                        Some(_) => {}
                    }
                    keys.insert(id.as_str(), json.as_bytes()).map_err(e)?;
                }
                w.commit().map_err(e)?;
                Ok(1)
            })
            .await;
        // Any key write makes cached key lists (and key copies) stale.
        if matches!(result, Ok(1)) {
            self.keys_version
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        result
    }
}

#[async_trait::async_trait]
impl KeyStore for EmbeddedStore {
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let json = to_json(key)?;
        let (id, hash) = (key.key.id.clone(), key.key_hash.clone());
        let result = self
            .run(move |db| {
                let w = db.begin_write().map_err(e)?;
                {
                    let mut keys = w.open_table(KEYS).map_err(e)?;
                    let mut hashes = w.open_table(KEYHASH).map_err(e)?;
                    if keys.get(id.as_str()).map_err(e)?.is_some()
                        || hashes.get(hash.as_str()).map_err(e)?.is_some()
                    {
                        return Err(StoreError::Conflict("key exists".into()));
                    }
                    keys.insert(id.as_str(), json.as_bytes()).map_err(e)?;
                    hashes.insert(hash.as_str(), id.as_str()).map_err(e)?;
                }
                w.commit().map_err(e)
            })
            .await;
        // Any key write makes cached key lists stale.
        self.keys_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        result
    }

    async fn update_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        match self.write_key(key, Vec::new()).await? {
            1 => Ok(()),
            _ => Err(StoreError::Conflict("no such key".into())),
        }
    }

    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let raw = self.get_bytes(KEYS, id.into()).await?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn get_key_for_update(
        &self,
        id: &str,
    ) -> Result<Option<(StoredKey, Vec<u8>)>, StoreError> {
        let raw = self.get_bytes(KEYS, id.into()).await?;
        raw.map(|r| Ok((from_json(&r)?, r))).transpose()
    }

    async fn update_key_if(&self, key: &StoredKey, read: &[u8]) -> Result<bool, StoreError> {
        match self.write_key(key, read.to_vec()).await? {
            1 => Ok(true),
            0 => Err(StoreError::Conflict("no such key".into())),
            _ => Ok(false),
        }
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<StoredKey>, StoreError> {
        let hash = hash.to_string();
        let raw = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let hashes = r.open_table(KEYHASH).map_err(e)?;
                let Some(id) = hashes.get(hash.as_str()).map_err(e)? else {
                    return Ok(None);
                };
                let keys = r.open_table(KEYS).map_err(e)?;
                let raw = keys.get(id.value()).map_err(e)?.map(|v| v.value().to_vec());
                Ok(raw)
            })
            .await?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.run(|db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(KEYS).map_err(e)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(e)? {
                let (_, v) = row.map_err(e)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn keys_version(&self) -> Result<u64, StoreError> {
        Ok(self.keys_version.load(std::sync::atomic::Ordering::SeqCst))
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        let result = self
            .run(move |db| {
                let w = db.begin_write().map_err(e)?;
                let existed = {
                    let mut keys = w.open_table(KEYS).map_err(e)?;
                    let removed = keys
                        .remove(id.as_str())
                        .map_err(e)?
                        .map(|v| v.value().to_vec());
                    match removed {
                        Some(raw) => {
                            let key: StoredKey = from_json(&raw)?;
                            w.open_table(KEYHASH)
                                .map_err(e)?
                                .remove(key.key_hash.as_str())
                                .map_err(e)?;
                            w.open_table(LASTUSED)
                                .map_err(e)?
                                .remove(format!("k:{id}").as_str())
                                .map_err(e)?;
                            true
                        }
                        None => false,
                    }
                };
                w.commit().map_err(e)?;
                Ok(existed)
            })
            .await;
        // Any key write makes cached key lists stale.
        self.keys_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        result
    }
}
