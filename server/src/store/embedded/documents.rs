//! The embedded engine's admin documents: `<kind>\u{0}<id>` → JSON.

use super::*;

#[async_trait::async_trait]
impl DocumentStore for EmbeddedStore {
    async fn put_doc(&self, kind: &str, id: &str, json: &str) -> Result<(), StoreError> {
        let (key, json) = (format!("{kind}\u{0}{id}"), json.to_string());
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            w.open_table(DOCS)
                .map_err(e)?
                .insert(key.as_str(), json.as_bytes())
                .map_err(e)?;
            w.commit().map_err(e)
        })
        .await
    }

    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        let raw = self.get_bytes(DOCS, format!("{kind}\u{0}{id}")).await?;
        Ok(raw.map(|r| String::from_utf8_lossy(&r).into_owned()))
    }

    async fn list_docs(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        let (lo, hi) = (format!("{kind}\u{0}"), format!("{kind}\u{1}"));
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(DOCS).map_err(e)?;
            let mut out = Vec::new();
            for row in t.range(lo.as_str()..hi.as_str()).map_err(e)? {
                let (_, v) = row.map_err(e)?;
                out.push(String::from_utf8_lossy(v.value()).into_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let key = format!("{kind}\u{0}{id}");
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            let existed = w
                .open_table(DOCS)
                .map_err(e)?
                .remove(key.as_str())
                .map_err(e)?
                .is_some();
            w.commit().map_err(e)?;
            Ok(existed)
        })
        .await
    }
}
