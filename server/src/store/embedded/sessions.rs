//! The embedded engine's admin credentials and sessions, OAuth sessions (rows that expire),
//! and login-throttle counters (in memory, bounded: `store::login_failures`).

use super::*;
use crate::store::sessions::Counter;

#[async_trait::async_trait]
impl SessionStore for EmbeddedStore {
    async fn get_admin(&self) -> Result<Option<AdminCredentials>, StoreError> {
        let raw = self.get_bytes(META, "admin".into()).await?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn put_admin(&self, admin: &AdminCredentials) -> Result<(), StoreError> {
        self.put_bytes(META, "admin".into(), to_json(admin)?.into_bytes())
            .await
    }

    async fn put_session(
        &self,
        token_hash: &str,
        session: &AdminSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_expiring(SESSIONS, token_hash, session, ttl).await
    }

    async fn get_session(&self, token_hash: &str) -> Result<Option<AdminSession>, StoreError> {
        self.get_expiring(SESSIONS, token_hash).await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let key = token_hash.to_string();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            w.open_table(SESSIONS)
                .map_err(e)?
                .remove(key.as_str())
                .map_err(e)?;
            w.commit().map_err(e)
        })
        .await
    }

    async fn login_failures(
        &self,
        keys: &[String],
        now_ms: u64,
    ) -> Result<Vec<Option<Counter>>, StoreError> {
        Ok(self.login_failures.get(keys, now_ms))
    }

    async fn record_login_failure(&self, keys: &[String], now_ms: u64) -> Result<(), StoreError> {
        self.login_failures.record(keys, now_ms);
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.login_failures.clear(key);
        Ok(())
    }

    async fn login_failure_entries(&self) -> Result<usize, StoreError> {
        Ok(self.login_failures.len())
    }

    async fn put_oauth_session(
        &self,
        id: &str,
        session: &OAuthSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_expiring(OAUTH, id, session, ttl).await
    }

    async fn get_oauth_session(&self, id: &str) -> Result<Option<OAuthSession>, StoreError> {
        self.get_expiring(OAUTH, id).await
    }

    async fn delete_oauth_session(&self, id: &str) -> Result<(), StoreError> {
        let key = id.to_string();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            w.open_table(OAUTH)
                .map_err(e)?
                .remove(key.as_str())
                .map_err(e)?;
            w.commit().map_err(e)
        })
        .await
    }
}
