//! The Redis engine: shared state for any number of relay instances. Multi-step changes are
//! Lua scripts or MULTI pipelines; every hot-path operation is one round trip.

use std::{collections::HashMap, time::Duration};

use ::redis::{aio::ConnectionManager, AsyncCommands, Script, Value};
use app::domain::{RequestRecord, UsageCounters};

use super::*;

const P: &str = "crs:";

pub struct RedisStore {
    conn: ConnectionManager,
    records_per_key: usize,
    scripts: Scripts,
}

struct Scripts {
    key_by_hash: Script,
    insert_key: Script,
    snapshot: Script,
    acquire: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            key_by_hash: Script::new(
                r"local id = redis.call('GET', KEYS[1])
                  if not id then return false end
                  return redis.call('GET', ARGV[1] .. id)",
            ),
            insert_key: Script::new(
                r"if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
                    return 0
                  end
                  redis.call('SET', KEYS[1], ARGV[1])
                  redis.call('SET', KEYS[2], ARGV[2])
                  redis.call('SADD', KEYS[3], ARGV[2])
                  return 1",
            ),
            snapshot: Script::new(
                r"local v = redis.call('GET', KEYS[1]) or '0'
                  local lu = redis.call('HGETALL', KEYS[3])
                  if v == ARGV[1] then return {v, lu} end
                  local ids = redis.call('SMEMBERS', KEYS[2])
                  local recs = {}
                  for _, id in ipairs(ids) do
                    local r = redis.call('GET', ARGV[2] .. id)
                    if r then recs[#recs + 1] = r end
                  end
                  return {v, lu, recs}",
            ),
            // Leases live in a sorted set scored by expiry (server time, so instances agree).
            acquire: Script::new(
                r"local t = redis.call('TIME')
                  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
                  local ttl = tonumber(ARGV[3])
                  if redis.call('ZSCORE', KEYS[1], ARGV[1]) or
                     redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
                    redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
                    redis.call('PEXPIRE', KEYS[1], ttl)
                    return 1
                  end
                  return 0",
            ),
        }
    }
}

fn err(e: ::redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

const FIELDS: [&str; 7] = ["r", "i", "o", "c5", "c1", "cr", "n"];

fn counter_values(c: &UsageCounters) -> [u64; 7] {
    [
        c.requests,
        c.input_tokens,
        c.output_tokens,
        c.cache_create_5m_tokens,
        c.cache_create_1h_tokens,
        c.cache_read_tokens,
        c.cost_nanos,
    ]
}

fn counters_from(map: &HashMap<String, u64>) -> UsageCounters {
    let g = |f: &str| map.get(f).copied().unwrap_or(0);
    UsageCounters {
        requests: g("r"),
        input_tokens: g("i"),
        output_tokens: g("o"),
        cache_create_5m_tokens: g("c5"),
        cache_create_1h_tokens: g("c1"),
        cache_read_tokens: g("cr"),
        cost_nanos: g("n"),
    }
}

impl RedisStore {
    pub async fn connect(url: &str, records_per_key: usize) -> Result<Self, StoreError> {
        let client = ::redis::Client::open(url).map_err(err)?;
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        Ok(RedisStore {
            conn,
            records_per_key: records_per_key.max(1),
            scripts: Scripts::new(),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        let raw: Option<Vec<u8>> = self.conn().get(key).await.map_err(err)?;
        raw.map(|r| from_json(&r)).transpose()
    }
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
impl Store for RedisStore {
    fn engine(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = ::redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(())
    }

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
        let _: () = self
            .conn()
            .set_ex(
                format!("{P}session:{token_hash}"),
                to_json(s)?,
                ttl.as_secs().max(1),
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_session(&self, token_hash: &str) -> Result<Option<AdminSession>, StoreError> {
        self.get_json(format!("{P}session:{token_hash}")).await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .del(format!("{P}session:{token_hash}"))
            .await
            .map_err(err)?;
        Ok(())
    }

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
            Ok(())
        } else {
            Err(StoreError::Conflict("key exists".into()))
        }
    }

    async fn update_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        // SET XX: only an existing record is replaced.
        let done: Option<String> = ::redis::cmd("SET")
            .arg(format!("{P}key:{}", key.key.id))
            .arg(to_json(key)?)
            .arg("XX")
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        done.map(|_| ())
            .ok_or_else(|| StoreError::Conflict("no such key".into()))
    }

    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.get_json(format!("{P}key:{id}")).await
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
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(true)
    }

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
            .arg(
                known_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
            .arg(format!("{P}account:"))
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
        let accounts = match parts.get(2) {
            Some(Value::Array(recs)) => {
                let mut out = Vec::with_capacity(recs.len());
                for r in recs {
                    let raw: Vec<u8> = ::redis::from_redis_value_ref(r)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    out.push(from_json(&raw)?);
                }
                Some(out)
            }
            _ => None,
        };
        Ok(AccountSnapshot {
            version,
            accounts,
            last_used_ms,
        })
    }

    async fn record_usage(&self, ev: &UsageEvent, offset_hours: i32) -> Result<(), StoreError> {
        let values = counter_values(&ev.counters());
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for bucket in ev.buckets(offset_hours) {
            let key = format!("{P}usage:{}", bucket.name);
            for (field, value) in FIELDS.iter().zip(values) {
                if value > 0 {
                    pipe.hincr(&key, *field, value).ignore();
                }
            }
            if let Some(ttl) = bucket.ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
            }
        }
        let records = format!("{P}records:{}", ev.key_id);
        pipe.lpush(&records, to_json(&ev.record)?).ignore();
        pipe.ltrim(&records, 0, self.records_per_key as isize - 1)
            .ignore();
        let ms = ev.at.timestamp_millis();
        pipe.hset(format!("{P}lastused:keys"), &ev.key_id, ms)
            .ignore();
        if !ev.account_id.is_empty() {
            pipe.hset(format!("{P}lastused:accounts"), &ev.account_id, ms)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await.map_err(err)?;
        Ok(())
    }

    async fn usage(&self, buckets: &[String]) -> Result<Vec<UsageCounters>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for b in buckets {
            pipe.hgetall(format!("{P}usage:{b}"));
        }
        let maps: Vec<HashMap<String, u64>> =
            pipe.query_async(&mut self.conn()).await.map_err(err)?;
        Ok(maps.iter().map(counters_from).collect())
    }

    async fn recent_records(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let raws: Vec<Vec<u8>> = self
            .conn()
            .lrange(format!("{P}records:{key_id}"), 0, limit as isize - 1)
            .await
            .map_err(err)?;
        raws.iter().map(|r| from_json(r)).collect()
    }

    async fn keys_last_used(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.conn()
            .hgetall(format!("{P}lastused:keys"))
            .await
            .map_err(err)
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
}
