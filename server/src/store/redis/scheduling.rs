//! The Redis engine's live coordination: the pick step (`rules.pick_lua`, the mirror of the
//! pick decision), sticky sessions and leases (sorted sets scored by expiry), and locks.

use super::*;

#[async_trait::async_trait]
impl SchedulingStore for RedisStore {
    async fn pick_account(&self, req: &PickRequest) -> Result<Pick, StoreError> {
        let mut inv = self.scripts.pick.prepare_invoke();
        let (key, ttl, renew) = match &req.sticky {
            Some(s) => (
                s.key.as_str(),
                s.ttl.as_secs().max(1),
                s.renew_below.as_millis() as u64,
            ),
            None => ("", 0, 0),
        };
        inv.arg(P)
            .arg(req.known_version)
            .arg(key)
            .arg(ttl)
            .arg(renew)
            .arg(req.family.as_deref().unwrap_or(""))
            .arg(&req.lease_id)
            .arg(req.lease_ttl.as_millis().max(1) as u64)
            .arg(req.candidates.len());
        for c in &req.candidates {
            inv.arg(&c.id).arg(c.priority).arg(c.max_concurrency);
        }
        inv.arg(req.keys_version.map(|v| v.to_string()).unwrap_or_default());
        let v: Value = inv.invoke_async(&mut self.conn()).await.map_err(err)?;
        let Value::Array(parts) = v else {
            return Err(StoreError::Corrupt("unexpected pick reply".into()));
        };
        match text(parts.first()).as_deref() {
            Some("keys") => Err(StoreError::KeyChanged),
            Some("stale") => Ok(Pick::Stale),
            Some("ok") => Ok(Pick::Chosen {
                account_id: text(parts.get(1)).unwrap_or_default(),
                sticky: text(parts.get(2)).as_deref() == Some("1"),
            }),
            _ => {
                let why = match (text(parts.get(1)), text(parts.get(2)).as_deref()) {
                    (Some(account_id), Some("rest")) => {
                        let c = text(parts.get(3)).unwrap_or_default();
                        Refused::Resting {
                            account_id,
                            cooldown: from_json(c.as_bytes())?,
                        }
                    }
                    (Some(account_id), Some("full")) => Refused::Busy { account_id },
                    _ => Refused::NoCandidate,
                };
                Ok(Pick::Unavailable(why))
            }
        }
    }

    async fn get_sticky(&self, session: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .get(format!("{P}sticky:{session}"))
            .await
            .map_err(err)
    }

    async fn set_sticky(
        &self,
        session: &str,
        account_id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .set_ex(
                format!("{P}sticky:{session}"),
                account_id,
                ttl.as_secs().max(1),
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_sticky(&self, session: &str) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .del(format!("{P}sticky:{session}"))
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        scope: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ok: i64 = self
            .scripts
            .acquire
            .key(format!("{P}lease:{scope}"))
            .arg(lease_id)
            .arg(limit)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(ok == 1)
    }

    async fn release_lease(&self, scope: &str, lease_id: &str) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .zrem(format!("{P}lease:{scope}"), lease_id)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn count_leases(&self, scope: &str) -> Result<u32, StoreError> {
        let now = now_ms();
        let n: u32 = self
            .conn()
            .zcount(format!("{P}lease:{scope}"), now, "+inf")
            .await
            .map_err(err)?;
        Ok(n)
    }

    async fn refresh_leases(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let until = now_ms() + ttl.as_millis() as i64;
        let mut pipe = ::redis::pipe();
        for (scope, lease) in leases {
            let key = format!("{P}lease:{scope}");
            // XX: a lease that was released (or expired) is not brought back.
            pipe.cmd("ZADD")
                .arg(&key)
                .arg("XX")
                .arg(until)
                .arg(lease)
                .ignore();
            pipe.pexpire(&key, ttl.as_millis() as i64).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await.map_err(err)?;
        Ok(())
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = ::redis::cmd("SET")
            .arg(format!("{P}lock:{name}"))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(set.is_some())
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .unlock
            .key(format!("{P}lock:{name}"))
            .arg(owner)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }
}
