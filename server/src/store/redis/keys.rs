//! The Redis engine's API keys: `key:<id>` records, the `keyhash:<hash>` index, the `keys` set
//! and the keys version, written together by scripts.

use super::*;

impl RedisStore {
    /// `key_write.lua`: the record and the keys version in one step (`read` empty: any record).
    async fn write_key(&self, key: &StoredKey, read: &[u8]) -> Result<i64, StoreError> {
        self.scripts
            .key_write
            .key(format!("{P}key:{}", key.key.id))
            .key(format!("{P}keys:version"))
            .arg(to_json(key)?)
            .arg(read)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)
    }

    async fn bump_keys_version(&self) -> Result<(), StoreError> {
        let _: u64 = self
            .conn()
            .incr(format!("{P}keys:version"), 1)
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl KeyStore for RedisStore {
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let inserted: i64 = self
            .scripts
            .insert_key
            .key(format!("{P}key:{}", key.key.id))
            .key(format!("{P}keyhash:{}", key.key_hash))
            .key(format!("{P}keys"))
            .arg(to_json(key)?)
            .arg(&key.key.id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        if inserted == 1 {
            self.bump_keys_version().await
        } else {
            Err(StoreError::Conflict("key exists".into()))
        }
    }

    async fn update_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        match self.write_key(key, b"").await? {
            1 => Ok(()),
            _ => Err(StoreError::Conflict("no such key".into())),
        }
    }

    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.get_json(format!("{P}key:{id}")).await
    }

    async fn get_key_for_update(
        &self,
        id: &str,
    ) -> Result<Option<(StoredKey, Vec<u8>)>, StoreError> {
        let raw: Option<Vec<u8>> = self.conn().get(format!("{P}key:{id}")).await.map_err(err)?;
        raw.map(|r| Ok((from_json(&r)?, r))).transpose()
    }

    async fn update_key_if(&self, key: &StoredKey, read: &[u8]) -> Result<bool, StoreError> {
        match self.write_key(key, read).await? {
            1 => Ok(true),
            0 => Err(StoreError::Conflict("no such key".into())),
            _ => Ok(false),
        }
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<StoredKey>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .scripts
            .key_by_hash
            .key(format!("{P}keyhash:{hash}"))
            .arg(format!("{P}key:"))
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn key_by_hash_versioned(
        &self,
        hash: &str,
    ) -> Result<(Option<StoredKey>, u64), StoreError> {
        // The version and the record in one atomic step: the copy is current for it.
        let (version, raw): (String, Option<Vec<u8>>) = self
            .scripts
            .key_by_hash_versioned
            .key(format!("{P}keyhash:{hash}"))
            .arg(format!("{P}key:"))
            .arg(format!("{P}keys:version"))
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        let version = version
            .parse()
            .map_err(|_| StoreError::Corrupt("keys version is not a number".into()))?;
        Ok((raw.map(|r| from_json(&r)).transpose()?, version))
    }

    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn.smembers(format!("{P}keys")).await.map_err(err)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| format!("{P}key:{id}")).collect();
        let raws: Vec<Option<Vec<u8>>> = conn.mget(keys).await.map_err(err)?;
        raws.into_iter().flatten().map(|r| from_json(&r)).collect()
    }

    async fn keys_version(&self) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .conn()
            .get(format!("{P}keys:version"))
            .await
            .map_err(err)?;
        Ok(v.unwrap_or(0))
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let Some(existing) = self.get_key(id).await? else {
            return Ok(false);
        };
        let _: () = ::redis::pipe()
            .atomic()
            .del(format!("{P}key:{id}"))
            .del(format!("{P}keyhash:{}", existing.key_hash))
            .srem(format!("{P}keys"), id)
            .hdel(format!("{P}lastused:keys"), id)
            .incr(format!("{P}keys:version"), 1)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(true)
    }
}
