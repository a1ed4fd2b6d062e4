//! The Redis engine's admin documents: `doc:<kind>:<id>` → JSON, and a set of ids per kind.

use super::*;

#[async_trait::async_trait]
impl DocumentStore for RedisStore {
    async fn put_doc(&self, kind: &str, id: &str, json: &str) -> Result<(), StoreError> {
        let _: () = ::redis::pipe()
            .atomic()
            .set(format!("{P}doc:{kind}:{id}"), json)
            .sadd(format!("{P}docs:{kind}"), id)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .get(format!("{P}doc:{kind}:{id}"))
            .await
            .map_err(err)
    }

    async fn list_docs(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .smembers(format!("{P}docs:{kind}"))
            .await
            .map_err(err)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = ids.iter().map(|id| format!("{P}doc:{kind}:{id}")).collect();
        let raws: Vec<Option<String>> = conn.mget(names).await.map_err(err)?;
        Ok(raws.into_iter().flatten().collect())
    }

    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let (removed,): (i64,) = ::redis::pipe()
            .atomic()
            .del(format!("{P}doc:{kind}:{id}"))
            .srem(format!("{P}docs:{kind}"), id)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(removed > 0)
    }
}
