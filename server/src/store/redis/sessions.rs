//! The Redis engine's admin credentials and sessions, OAuth sessions (keys that expire) and
//! login-throttle counters (hashes that expire `FORGET_AFTER` after their last failure).

use super::*;
use crate::store::sessions::Counter;

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn get_admin(&self) -> Result<Option<AdminCredentials>, StoreError> {
        self.get_json(format!("{P}admin")).await
    }

    async fn put_admin(&self, admin: &AdminCredentials) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .set(format!("{P}admin"), to_json(admin)?)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn put_session(
        &self,
        token_hash: &str,
        s: &AdminSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.set_json_ex(format!("{P}session:{token_hash}"), s, ttl)
            .await
    }

    async fn get_session(&self, token_hash: &str) -> Result<Option<AdminSession>, StoreError> {
        self.get_json(format!("{P}session:{token_hash}")).await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.del(format!("{P}session:{token_hash}")).await
    }

    async fn login_failures(
        &self,
        keys: &[String],
        _now_ms: u64,
    ) -> Result<Vec<Option<Counter>>, StoreError> {
        // Expired counters are gone (their TTL is the forgetting).
        let mut pipe = ::redis::pipe();
        for k in keys {
            pipe.cmd("HMGET")
                .arg(format!("{P}loginfail:{k}"))
                .arg("n")
                .arg("t");
        }
        let rows: Vec<(Option<u32>, Option<u64>)> =
            pipe.query_async(&mut self.conn()).await.map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(n, t)| {
                n.map(|failures| Counter {
                    failures,
                    last_ms: t.unwrap_or(0),
                })
            })
            .collect())
    }

    async fn record_login_failure(&self, keys: &[String], now_ms: u64) -> Result<(), StoreError> {
        let mut inv = self.scripts.login_failure.prepare_invoke();
        for k in keys {
            inv.key(format!("{P}loginfail:{k}"));
        }
        inv.arg(now_ms)
            .arg(self.rules.forget_login_failures_after.as_millis() as u64);
        let _: i64 = inv.invoke_async(&mut self.conn()).await.map_err(err)?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.del(format!("{P}loginfail:{key}")).await
    }

    async fn login_failure_entries(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let mut n = 0;
        let mut iter: ::redis::AsyncIter<String> = conn
            .scan_match(format!("{P}loginfail:*"))
            .await
            .map_err(err)?;
        while let Some(_key) = iter.next_item().await {
            n += 1;
        }
        Ok(n)
    }

    async fn put_oauth_session(
        &self,
        id: &str,
        session: &OAuthSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.set_json_ex(format!("{P}oauth:{id}"), session, ttl)
            .await
    }

    async fn get_oauth_session(&self, id: &str) -> Result<Option<OAuthSession>, StoreError> {
        self.get_json(format!("{P}oauth:{id}")).await
    }

    async fn delete_oauth_session(&self, id: &str) -> Result<(), StoreError> {
        self.del(format!("{P}oauth:{id}")).await
    }
}
