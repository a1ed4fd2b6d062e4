//! The Redis engine: shared state for any number of relay instances. Multi-step changes are
//! Lua scripts or MULTI pipelines; every hot-path operation is one round trip.

use std::{collections::HashMap, time::Duration};

use ::redis::{aio::ConnectionManager, AsyncCommands, Script, Value};
use app::domain::{RequestRecord, UsageCounters};

use super::*;

const P: &str = "crs:";
/// Entries kept in an account's error history.
const ERROR_HISTORY: usize = 100;

pub struct RedisStore {
    conn: ConnectionManager,
    records_per_key: usize,
    /// Records kept in the list of every key's requests.
    records_kept: usize,
    scripts: Scripts,
}

struct Scripts {
    key_by_hash: Script,
    key_by_hash_versioned: Script,
    insert_key: Script,
    key_write: Script,
    snapshot: Script,
    acquire: Script,
    pick: Script,
    unlock: Script,
    admit: Script,
    settle: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            key_by_hash: Script::new(
                r"local id = redis.call('GET', KEYS[1])
                  if not id then return false end
                  return redis.call('GET', ARGV[1] .. id)",
            ),
            key_by_hash_versioned: Script::new(
                r"local v = redis.call('GET', ARGV[2]) or '0'
                  local id = redis.call('GET', KEYS[1])
                  if not id then return {v, false} end
                  return {v, redis.call('GET', ARGV[1] .. id)}",
            ),
            key_write: Script::new(KEY_WRITE_LUA),
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
                  local function all(set, prefix)
                    local out = {}
                    for _, id in ipairs(redis.call('SMEMBERS', set)) do
                      local r = redis.call('GET', prefix .. id)
                      if r then out[#out + 1] = r end
                    end
                    return out
                  end
                  return {v, lu, all(KEYS[2], ARGV[2]), all(KEYS[4], ARGV[3])}",
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
            pick: Script::new(PICK_LUA),
            admit: Script::new(ADMIT_LUA),
            settle: Script::new(SETTLE_LUA),
            unlock: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
                  return 0",
            ),
        }
    }
}

/// The account pick: the rules of `scheduler::pick`, as Lua kept beside them.
const PICK_LUA: &str = include_str!("../scheduler/pick.lua");

const FAMILIES: [&str; 4] = ["opus", "sonnet", "haiku", "fable"];

/// Admission and settlement: the rules of `limits::admission`, as Lua kept beside them.
const KEY_WRITE_LUA: &str = include_str!("key_write.lua");
const ADMIT_LUA: &str = include_str!("../limits/admit.lua");
const SETTLE_LUA: &str = include_str!("../limits/settle.lua");

/// The Redis keys of a key's limiter: its leases, its window, then each cost counter (under
/// its scope: the key, or its owner's budget).
fn limiter_keys<'a>(
    key_id: &str,
    counters: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut keys = vec![
        format!("{P}lease:{}", crate::store::key_lease_scope(key_id)),
        format!("{P}lim:{{{key_id}}}:win"),
    ];
    keys.extend(counters.map(|(scope, id)| counter_key(scope, id)));
    keys
}

fn counter_key(scope: &str, id: &str) -> String {
    format!("{P}lim:{{{scope}}}:c:{id}")
}

/// EVALSHA for the settlement, to ride in a pipeline.
fn settle_cmd(script: &Script, s: &Settlement) -> Option<::redis::Cmd> {
    let r = s.reservation.as_ref()?;
    let keys = limiter_keys(
        &r.key_id,
        r.counters
            .iter()
            .map(|(scope, id, _)| (scope.as_str(), id.as_str())),
    );
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for k in &keys {
        cmd.arg(k);
    }
    let lease = r.lease.as_ref().map(|l| l.1.as_str()).unwrap_or("");
    cmd.arg(lease)
        .arg(r.reserved_nanos)
        .arg(s.actual_nanos)
        .arg(s.tokens)
        .arg(if r.window { r.window_start_ms } else { 0 });
    for (_, _, ttl) in &r.counters {
        cmd.arg(ttl.map(|t| t.as_secs()).unwrap_or(0));
    }
    Some(cmd)
}

fn is_noscript(e: &::redis::RedisError) -> bool {
    e.code() == Some("NOSCRIPT") || e.to_string().contains("NOSCRIPT")
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
        let client = ::redis::Client::open(url)
            .map_err(|e| StoreError::Config(format!("REDIS_URL: {e}")))?;
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        let store = RedisStore {
            conn,
            records_per_key: records_per_key.max(1),
            records_kept: 10_000,
            scripts: Scripts::new(),
        };
        // Scripts that ride inside pipelines must be cached before their first use.
        let _: String = ::redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(SETTLE_LUA)
            .query_async(&mut store.conn())
            .await
            .map_err(err)?;
        Ok(store)
    }

    /// The newest `limit` JSON entries of a list kept newest first.
    async fn newest<T: for<'de> Deserialize<'de>>(
        &self,
        list: String,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let raws: Vec<Vec<u8>> = self
            .conn()
            .lrange(list, 0, limit as isize - 1)
            .await
            .map_err(err)?;
        raws.iter().map(|r| from_json(r)).collect()
    }

    async fn set_json_ex<T: Serialize>(
        &self,
        key: String,
        value: &T,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let _: () = self
            .conn()
            .set_ex(key, to_json(value)?, ttl.as_secs().max(1))
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn del(&self, key: String) -> Result<(), StoreError> {
        let _: () = self.conn().del(key).await.map_err(err)?;
        Ok(())
    }

    /// How many of the newest records of all keys together are kept.
    pub fn keep_records(mut self, n: usize) -> Self {
        self.records_kept = n.max(1);
        self
    }

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

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(|v| ::redis::from_redis_value_ref::<String>(v).ok())
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
        self.set_json_ex(format!("{P}session:{token_hash}"), s, ttl)
            .await
    }

    async fn get_session(&self, token_hash: &str) -> Result<Option<AdminSession>, StoreError> {
        self.get_json(format!("{P}session:{token_hash}")).await
    }

    async fn login_failures(
        &self,
        keys: &[String],
        _now_ms: u64,
    ) -> Result<Vec<Option<crate::auth::throttle::Counter>>, StoreError> {
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
                n.map(|failures| crate::auth::throttle::Counter {
                    failures,
                    last_ms: t.unwrap_or(0),
                })
            })
            .collect())
    }

    async fn record_login_failure(&self, keys: &[String], now_ms: u64) -> Result<(), StoreError> {
        static SCRIPT: std::sync::LazyLock<Script> =
            std::sync::LazyLock::new(|| Script::new(include_str!("login_failure.lua")));
        let mut inv = SCRIPT.prepare_invoke();
        for k in keys {
            inv.key(format!("{P}loginfail:{k}"));
        }
        inv.arg(now_ms)
            .arg(crate::auth::throttle::FORGET_AFTER.as_millis() as u64);
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

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.del(format!("{P}session:{token_hash}")).await
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

    async fn keys_version(&self) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .conn()
            .get(format!("{P}keys:version"))
            .await
            .map_err(err)?;
        Ok(v.unwrap_or(0))
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

    async fn import_usage(&self, import: &UsageImport) -> Result<(), StoreError> {
        if import.buckets.is_empty() && import.spent.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for (name, (delta, ttl)) in &import.buckets {
            let key = format!("{P}usage:{name}");
            for (field, value) in FIELDS.iter().zip(counter_values(delta)) {
                if value > 0 {
                    pipe.hincr(&key, *field, value).ignore();
                }
            }
            if let Some(ttl) = ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
            }
        }
        for (key_id, counter, ttl, nanos) in &import.spent {
            let key = format!("{P}lim:{{{key_id}}}:c:{counter}");
            pipe.hincr(&key, "s", *nanos).ignore();
            if let Some(ttl) = ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
            }
        }
        for (day, models) in &import.models_by_day {
            let set = format!("{P}models:d:{day}");
            pipe.sadd(&set, models).ignore();
            pipe.expire(&set, 32 * 86_400).ignore();
        }
        for (key_id, models) in &import.key_models {
            pipe.sadd(format!("{P}keymodels:{key_id}"), models).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(err)
    }

    async fn record_usage(
        &self,
        ev: &UsageEvent,
        offset_hours: i32,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
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
        // The day's model index, for the dashboard's model distribution.
        let models = format!("{P}models:d:{}", Periods::at(ev.at, offset_hours).day);
        pipe.sadd(&models, &ev.model).ignore();
        pipe.expire(&models, 32 * 86_400).ignore();
        pipe.sadd(format!("{P}keymodels:{}", ev.key_id), &ev.model)
            .ignore();
        let records = format!("{P}records:{}", ev.key_id);
        pipe.lpush(&records, to_json(&ev.record)?).ignore();
        pipe.ltrim(&records, 0, self.records_per_key as isize - 1)
            .ignore();
        let all = format!("{P}records:{ALL_RECORDS}");
        pipe.lpush(&all, to_json(&ev.record)?).ignore();
        pipe.ltrim(&all, 0, self.records_kept as isize - 1).ignore();
        let ms = ev.at.timestamp_millis();
        pipe.hset(format!("{P}lastused:keys"), &ev.key_id, ms)
            .ignore();
        if !ev.account_id.is_empty() {
            pipe.hset(format!("{P}lastused:accounts"), &ev.account_id, ms)
                .ignore();
        }
        for (scope, lease) in &settlement.leases {
            pipe.zrem(format!("{P}lease:{scope}"), lease).ignore();
        }
        if let Some(cmd) = settle_cmd(&self.scripts.settle, settlement) {
            pipe.add_command(cmd).ignore();
        }
        match pipe.query_async::<()>(&mut self.conn()).await {
            Ok(()) => Ok(()),
            // The settle script was not cached (Redis restarted). The transaction's other
            // commands did run (MULTI does not roll back), so only the settlement is sent again.
            Err(e) if is_noscript(&e) => {
                let _: String = ::redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(SETTLE_LUA)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(err)?;
                match settle_cmd(&self.scripts.settle, settlement) {
                    Some(cmd) => cmd.query_async::<()>(&mut self.conn()).await.map_err(err),
                    None => Ok(()),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn record_usage_batch(
        &self,
        events: &[UsageEvent],
        offset_hours: i32,
    ) -> Result<(), StoreError> {
        let batch = UsageBatch::of(events, offset_hours)?;
        let mut conn = self.conn();
        let mut pipe = ::redis::pipe();
        let mut queued = 0usize;
        // Sent in chunks: one round trip per few thousand commands, bounded memory.
        async fn flush(
            conn: &mut ConnectionManager,
            pipe: &mut ::redis::Pipeline,
            queued: &mut usize,
        ) -> Result<(), StoreError> {
            if *queued > 0 {
                pipe.query_async::<()>(conn).await.map_err(err)?;
                *pipe = ::redis::pipe();
                *queued = 0;
            }
            Ok(())
        }
        for (name, (delta, ttl)) in &batch.buckets {
            let key = format!("{P}usage:{name}");
            for (field, value) in FIELDS.iter().zip(counter_values(delta)) {
                if value > 0 {
                    pipe.hincr(&key, *field, value).ignore();
                    queued += 1;
                }
            }
            if let Some(ttl) = ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
                queued += 1;
            }
            if queued >= 5_000 {
                flush(&mut conn, &mut pipe, &mut queued).await?;
            }
        }
        for (key_id, records) in &batch.records {
            let list = format!("{P}records:{key_id}");
            let skip = records.len().saturating_sub(self.records_per_key);
            pipe.lpush(&list, &records[skip..]).ignore();
            pipe.ltrim(&list, 0, self.records_per_key as isize - 1)
                .ignore();
            queued += 2;
            if queued >= 5_000 {
                flush(&mut conn, &mut pipe, &mut queued).await?;
            }
        }
        let all = format!("{P}records:{ALL_RECORDS}");
        let skip = batch.all_records.len().saturating_sub(self.records_kept);
        for chunk in batch.all_records[skip..].chunks(1_000) {
            pipe.lpush(&all, chunk).ignore();
            queued += 1;
        }
        pipe.ltrim(&all, 0, self.records_kept as isize - 1).ignore();
        queued += 1;
        for (hash, map) in [
            ("keys", &batch.key_last_used),
            ("accounts", &batch.account_last_used),
        ] {
            for (id, ms) in map {
                pipe.hset(format!("{P}lastused:{hash}"), id, ms).ignore();
                queued += 1;
            }
        }
        for (day, models) in &batch.models_by_day {
            let set = format!("{P}models:d:{day}");
            pipe.sadd(&set, models).ignore();
            pipe.expire(&set, 32 * 86_400).ignore();
            queued += 2;
        }
        for (key_id, models) in &batch.key_models {
            pipe.sadd(format!("{P}keymodels:{key_id}"), models).ignore();
            queued += 1;
            if queued >= 5_000 {
                flush(&mut conn, &mut pipe, &mut queued).await?;
            }
        }
        flush(&mut conn, &mut pipe, &mut queued).await
    }

    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        for (scope, lease) in &settlement.leases {
            pipe.zrem(format!("{P}lease:{scope}"), lease).ignore();
        }
        if let Some(cmd) = settle_cmd(&self.scripts.settle, settlement) {
            pipe.add_command(cmd).ignore();
        }
        match pipe.query_async::<()>(&mut self.conn()).await {
            Ok(()) => Ok(()),
            // Not cached (Redis restarted): load the script and settle again. The lease
            // releases already ran; releasing twice is harmless.
            Err(e) if is_noscript(&e) => {
                let _: String = ::redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(SETTLE_LUA)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(err)?;
                pipe.query_async::<()>(&mut self.conn()).await.map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn admit(
        &self,
        plan: &Plan,
        lease_id: &str,
        lease_ttl: Duration,
    ) -> Result<Result<Reservation, Refusal>, StoreError> {
        let keys = limiter_keys(
            &plan.key_id,
            plan.counters
                .iter()
                .map(|c| (c.scope.as_str(), c.id.as_str())),
        );
        let mut inv = self.scripts.admit.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        let w = plan.window.as_ref();
        let cost = plan.cost.as_ref();
        inv.arg(lease_id)
            .arg(plan.concurrency)
            .arg(lease_ttl.as_millis().max(1) as u64)
            .arg(w.map(|w| w.length.as_millis() as u64).unwrap_or(0))
            .arg(w.map(|w| w.max_requests).unwrap_or(0))
            .arg(w.map(|w| w.max_tokens).unwrap_or(0))
            .arg(w.map(|w| w.max_cost_nanos).unwrap_or(0))
            .arg(if cost.is_some() { 1 } else { 0 })
            .arg(cost.map(|c| c.input_nanos).unwrap_or(0))
            .arg(cost.map(|c| c.output_per_ktok).unwrap_or(0))
            .arg(cost.map(|c| c.max_output).unwrap_or(0))
            .arg(cost.map(|c| c.min_output).unwrap_or(0));
        for c in &plan.counters {
            inv.arg(c.limit_nanos);
        }
        inv.arg(format!("{P}keys:version"))
            .arg(plan.keys_version.map(|v| v.to_string()).unwrap_or_default());
        let v: Value = inv.invoke_async(&mut self.conn()).await.map_err(err)?;
        let Value::Array(parts) = v else {
            return Err(StoreError::Corrupt("unexpected admission reply".into()));
        };
        let num = |i: usize| {
            parts
                .get(i)
                .and_then(|v| ::redis::from_redis_value_ref::<i64>(v).ok())
                .unwrap_or(0)
        };
        match text(parts.first()).as_deref() {
            Some("keys") => Err(StoreError::KeyChanged),
            Some("ok") => {
                let grant = crate::limits::admission::Grant {
                    reserve_nanos: num(1).max(0) as u64,
                    output_limit: u64::try_from(num(3)).ok(),
                    window_start_ms: num(2),
                    window_reset: false,
                };
                Ok(Ok(Reservation::of(plan, &grant, lease_id)))
            }
            _ => Ok(Err(crate::limits::refusal_from(
                plan,
                text(parts.get(1)).as_deref().unwrap_or(""),
                num(2),
                num(3),
                num(4),
                num(5),
            ))),
        }
    }

    async fn limit_usage(
        &self,
        key_id: &str,
        counters: &[(String, String)],
    ) -> Result<(Vec<u64>, Option<(i64, u64, u64, u64)>), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("HMGET")
            .arg(format!("{P}lim:{{{key_id}}}:win"))
            .arg("start")
            .arg("req")
            .arg("tok")
            .arg("cost");
        for (scope, id) in counters {
            pipe.hget(counter_key(scope, id), "s");
        }
        let (win, spent): (Vec<Option<i64>>, Vec<Option<u64>>) = {
            let v: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(err)?;
            let mut it = v.into_iter();
            let win: Vec<Option<i64>> = it
                .next()
                .and_then(|w| ::redis::from_redis_value::<Vec<Option<i64>>>(w).ok())
                .unwrap_or_default();
            let spent = it
                .map(|v| ::redis::from_redis_value::<Option<u64>>(v).ok().flatten())
                .collect();
            (win, spent)
        };
        let window = match win.as_slice() {
            [Some(start), req, tok, cost] => Some((
                *start,
                req.unwrap_or(0) as u64,
                tok.unwrap_or(0) as u64,
                cost.unwrap_or(0) as u64,
            )),
            _ => None,
        };
        Ok((spent.into_iter().map(|s| s.unwrap_or(0)).collect(), window))
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
        self.newest(format!("{P}records:{key_id}"), limit).await
    }

    async fn all_records(&self, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        self.newest(format!("{P}records:{ALL_RECORDS}"), limit)
            .await
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

    async fn models_used(&self, day: &str) -> Result<Vec<String>, StoreError> {
        self.conn()
            .smembers(format!("{P}models:d:{day}"))
            .await
            .map_err(err)
    }

    async fn key_models(&self, key_id: &str) -> Result<Vec<String>, StoreError> {
        self.conn()
            .smembers(format!("{P}keymodels:{key_id}"))
            .await
            .map_err(err)
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
