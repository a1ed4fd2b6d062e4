//! The Redis engine's accounts and groups (read together by one snapshot script, cached by the
//! accounts version), rests (keys that expire) and error history (a capped list).

use super::*;

/// Entries kept in an account's error history.
const ERROR_HISTORY: usize = 100;

pub(super) const FAMILIES: [&str; 4] = ["opus", "sonnet", "haiku", "fable"];

/// A list of JSON records from a script reply; `None` when the reply has no such part.
fn records<T: for<'de> Deserialize<'de>>(v: Option<&Value>) -> Result<Option<Vec<T>>, StoreError> {
    let Some(Value::Array(items)) = v else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(items.len());
    for r in items {
        let raw: Vec<u8> =
            ::redis::from_redis_value_ref(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        out.push(from_json(&raw)?);
    }
    Ok(Some(out))
}

fn parse_lastused(v: &Value) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    if let Value::Array(items) = v {
        for pair in items.chunks(2) {
            if let [k, val] = pair {
                if let (Ok(k), Ok(val)) = (
                    ::redis::from_redis_value_ref::<String>(k),
                    ::redis::from_redis_value_ref::<i64>(val),
                ) {
                    out.insert(k, val);
                }
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl AccountStore for RedisStore {
    async fn put_account(&self, account: &StoredAccount) -> Result<(), StoreError> {
        let id = &account.account.id;
        let _: () = ::redis::pipe()
            .atomic()
            .set(format!("{P}account:{id}"), to_json(account)?)
            .sadd(format!("{P}accounts"), id)
            .incr(format!("{P}accounts:version"), 1)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_account(&self, id: &str) -> Result<Option<StoredAccount>, StoreError> {
        self.get_json(format!("{P}account:{id}")).await
    }

    async fn list_accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        Ok(self
            .account_snapshot(None)
            .await?
            .accounts
            .unwrap_or_default())
    }

    async fn delete_account(&self, id: &str) -> Result<bool, StoreError> {
        let (removed,): (i64,) = ::redis::pipe()
            .atomic()
            .del(format!("{P}account:{id}"))
            .srem(format!("{P}accounts"), id)
            .ignore()
            .hdel(format!("{P}lastused:accounts"), id)
            .ignore()
            .hdel(format!("{P}pick:last"), id)
            .ignore()
            .incr(format!("{P}accounts:version"), 1)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(removed > 0)
    }

    async fn account_snapshot(
        &self,
        known_version: Option<u64>,
    ) -> Result<AccountSnapshot, StoreError> {
        let v: Value = self
            .scripts
            .snapshot
            .key(format!("{P}accounts:version"))
            .key(format!("{P}accounts"))
            .key(format!("{P}lastused:accounts"))
            .key(format!("{P}groups"))
            .arg(
                known_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
            .arg(format!("{P}account:"))
            .arg(format!("{P}group:"))
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        let Value::Array(parts) = v else {
            return Err(StoreError::Corrupt("unexpected snapshot reply".into()));
        };
        let version = parts
            .first()
            .and_then(|v| ::redis::from_redis_value_ref::<u64>(v).ok())
            .unwrap_or(0);
        let last_used_ms = parts.get(1).map(parse_lastused).unwrap_or_default();
        let accounts = records(parts.get(2))?;
        let groups = records(parts.get(3))?;
        Ok(AccountSnapshot {
            version,
            accounts,
            groups,
            last_used_ms,
        })
    }

    async fn put_group(&self, group: &AccountGroup) -> Result<(), StoreError> {
        let _: () = ::redis::pipe()
            .atomic()
            .set(format!("{P}group:{}", group.id), to_json(group)?)
            .sadd(format!("{P}groups"), &group.id)
            .incr(format!("{P}accounts:version"), 1)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_group(&self, id: &str) -> Result<bool, StoreError> {
        let (removed,): (i64,) = ::redis::pipe()
            .atomic()
            .del(format!("{P}group:{id}"))
            .srem(format!("{P}groups"), id)
            .ignore()
            .incr(format!("{P}accounts:version"), 1)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(removed > 0)
    }

    async fn mark_account(
        &self,
        account_id: &str,
        cooldown: Option<(&Cooldown, Duration)>,
        error: &AccountError,
    ) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        if let Some((c, rest)) = cooldown {
            let key = match &c.family {
                Some(f) => format!("{P}cool:{account_id}:{f}"),
                None => format!("{P}cool:{account_id}"),
            };
            pipe.cmd("SET")
                .arg(key)
                .arg(to_json(c)?)
                .arg("PX")
                .arg(rest.as_millis().max(1) as u64)
                .ignore();
        }
        let history = format!("{P}errors:{account_id}");
        pipe.lpush(&history, to_json(error)?).ignore();
        pipe.ltrim(&history, 0, ERROR_HISTORY as isize - 1).ignore();
        pipe.expire(&history, 3 * 86_400).ignore();
        let _: () = pipe.query_async(&mut self.conn()).await.map_err(err)?;
        Ok(())
    }

    async fn clear_cooldowns(&self, account_id: &str) -> Result<(), StoreError> {
        let mut keys = vec![format!("{P}cool:{account_id}")];
        keys.extend(FAMILIES.iter().map(|f| format!("{P}cool:{account_id}:{f}")));
        let _: () = self.conn().del(keys).await.map_err(err)?;
        Ok(())
    }

    async fn cooldowns(
        &self,
        account_ids: &[String],
    ) -> Result<HashMap<String, Vec<Cooldown>>, StoreError> {
        if account_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut keys = Vec::new();
        for id in account_ids {
            keys.push((id, format!("{P}cool:{id}")));
            keys.extend(FAMILIES.iter().map(|f| (id, format!("{P}cool:{id}:{f}"))));
        }
        let raws: Vec<Option<Vec<u8>>> = self
            .conn()
            .mget(keys.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>())
            .await
            .map_err(err)?;
        let mut out: HashMap<String, Vec<Cooldown>> = HashMap::new();
        for ((id, _), raw) in keys.iter().zip(raws) {
            if let Some(raw) = raw {
                out.entry((*id).clone()).or_default().push(from_json(&raw)?);
            }
        }
        Ok(out)
    }

    async fn error_history(
        &self,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<AccountError>, StoreError> {
        self.newest(format!("{P}errors:{account_id}"), limit).await
    }
}
