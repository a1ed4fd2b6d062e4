//! The embedded engine's accounts, groups (both bump the accounts version), rests and error
//! history.

use super::*;

/// Entries kept in an account's error history.
const ERROR_HISTORY: u64 = 100;
const FAMILIES: [&str; 4] = ["opus", "sonnet", "haiku", "fable"];

pub(super) fn cooldown_key(account_id: &str, family: Option<&str>) -> String {
    match family {
        Some(f) => format!("{account_id}:{f}"),
        None => account_id.to_string(),
    }
}

impl EmbeddedStore {
    fn all_accounts(db: &Database) -> Result<Vec<StoredAccount>, StoreError> {
        let r = db.begin_read().map_err(e)?;
        let t = r.open_table(ACCOUNTS).map_err(e)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(e)? {
            let (_, v) = row.map_err(e)?;
            out.push(from_json(v.value())?);
        }
        Ok(out)
    }

    fn bump_version(meta: &mut redb::Table<&str, &[u8]>) -> Result<(), StoreError> {
        let current = meta
            .get("accounts:version")
            .map_err(e)?
            .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(0);
        meta.insert("accounts:version", (current + 1).to_le_bytes().as_slice())
            .map_err(e)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl AccountStore for EmbeddedStore {
    async fn put_account(&self, account: &StoredAccount) -> Result<(), StoreError> {
        let json = to_json(account)?;
        let id = account.account.id.clone();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                w.open_table(ACCOUNTS)
                    .map_err(e)?
                    .insert(id.as_str(), json.as_bytes())
                    .map_err(e)?;
                Self::bump_version(&mut w.open_table(META).map_err(e)?)?;
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn get_account(&self, id: &str) -> Result<Option<StoredAccount>, StoreError> {
        let raw = self.get_bytes(ACCOUNTS, id.into()).await?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn list_accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        self.run(Self::all_accounts).await
    }

    async fn delete_account(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            let existed = {
                let existed = w
                    .open_table(ACCOUNTS)
                    .map_err(e)?
                    .remove(id.as_str())
                    .map_err(e)?
                    .is_some();
                w.open_table(LASTUSED)
                    .map_err(e)?
                    .remove(format!("a:{id}").as_str())
                    .map_err(e)?;
                Self::bump_version(&mut w.open_table(META).map_err(e)?)?;
                existed
            };
            w.commit().map_err(e)?;
            Ok(existed)
        })
        .await
    }

    async fn account_snapshot(
        &self,
        known_version: Option<u64>,
    ) -> Result<AccountSnapshot, StoreError> {
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let version = r
                .open_table(META)
                .map_err(e)?
                .get("accounts:version")
                .map_err(e)?
                .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
                .unwrap_or(0);
            let mut last_used_ms = HashMap::new();
            let lu = r.open_table(LASTUSED).map_err(e)?;
            for row in lu.range("a:".."a;").map_err(e)? {
                let (k, v) = row.map_err(e)?;
                last_used_ms.insert(k.value()[2..].to_string(), v.value());
            }
            let (accounts, groups) = if known_version == Some(version) {
                (None, None)
            } else {
                (Some(all_rows(&r, ACCOUNTS)?), Some(all_rows(&r, GROUPS)?))
            };
            Ok(AccountSnapshot {
                version,
                accounts,
                groups,
                last_used_ms,
            })
        })
        .await
        .map(|mut snap| {
            for (id, ms) in &self.live.lock().picked {
                let e = snap.last_used_ms.entry(id.clone()).or_insert(*ms);
                *e = (*e).max(*ms);
            }
            snap
        })
    }

    async fn put_group(&self, group: &AccountGroup) -> Result<(), StoreError> {
        let json = to_json(group)?;
        let id = group.id.clone();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                w.open_table(GROUPS)
                    .map_err(e)?
                    .insert(id.as_str(), json.as_bytes())
                    .map_err(e)?;
                Self::bump_version(&mut w.open_table(META).map_err(e)?)?;
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn delete_group(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            let existed = {
                let existed = w
                    .open_table(GROUPS)
                    .map_err(e)?
                    .remove(id.as_str())
                    .map_err(e)?
                    .is_some();
                Self::bump_version(&mut w.open_table(META).map_err(e)?)?;
                existed
            };
            w.commit().map_err(e)?;
            Ok(existed)
        })
        .await
    }

    async fn mark_account(
        &self,
        account_id: &str,
        cooldown: Option<(&Cooldown, Duration)>,
        error: &AccountError,
    ) -> Result<(), StoreError> {
        let cool = cooldown
            .map(|(c, _)| (cooldown_key(account_id, c.family.as_deref()), to_json(c)))
            .map(|(k, j)| j.map(|j| (k, j)))
            .transpose()?;
        let entry = to_json(error)?;
        let id = account_id.to_string();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                if let Some((key, json)) = &cool {
                    w.open_table(COOLDOWNS)
                        .map_err(e)?
                        .insert(key.as_str(), json.as_bytes())
                        .map_err(e)?;
                }
                append_bounded(
                    &w,
                    ERRORS,
                    "errors_seq",
                    &id,
                    entry.as_bytes(),
                    ERROR_HISTORY,
                )?;
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn clear_cooldowns(&self, account_id: &str) -> Result<(), StoreError> {
        let id = account_id.to_string();
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                let mut t = w.open_table(COOLDOWNS).map_err(e)?;
                t.remove(id.as_str()).map_err(e)?;
                for f in FAMILIES {
                    t.remove(cooldown_key(&id, Some(f)).as_str()).map_err(e)?;
                }
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn cooldowns(
        &self,
        account_ids: &[String],
    ) -> Result<HashMap<String, Vec<Cooldown>>, StoreError> {
        let ids = account_ids.to_vec();
        let now = now_ms();
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(COOLDOWNS).map_err(e)?;
            let mut out: HashMap<String, Vec<Cooldown>> = HashMap::new();
            for id in &ids {
                let keys = std::iter::once(cooldown_key(id, None))
                    .chain(FAMILIES.iter().map(|f| cooldown_key(id, Some(f))));
                for key in keys {
                    if let Some(v) = t.get(key.as_str()).map_err(e)? {
                        let c: Cooldown = from_json(v.value())?;
                        if c.until_ms > now {
                            out.entry(id.clone()).or_default().push(c);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn error_history(
        &self,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<AccountError>, StoreError> {
        let owner = account_id.to_string();
        self.run(move |db| newest(db, ERRORS, &owner, limit)).await
    }
}
