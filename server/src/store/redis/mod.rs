//! The Redis engine: shared state for any number of relay instances. Multi-step changes are
//! Lua scripts or MULTI pipelines; every hot-path operation is one round trip.
//!
//! One file per concern implements that concern's trait (`keys`, `accounts`, `scheduling`,
//! `limits`, `usage`, `sessions`, `documents`); this one holds the connection, the scripts and
//! the helpers they share. Decisions run as the Lua mirrors in the [`Rules`] the engine was
//! connected with.

mod accounts;
mod documents;
mod keys;
mod limits;
mod scheduling;
mod sessions;
mod usage;

use std::{collections::HashMap, time::Duration};

use ::redis::{aio::ConnectionManager, AsyncCommands, Script, Value};
use app::domain::{AccountError, AccountGroup, Cooldown, RequestRecord, UsageCounters};

use super::*;

const P: &str = "crs:";

pub struct RedisStore {
    conn: ConnectionManager,
    records_per_key: usize,
    /// Records kept in the list of every key's requests.
    records_kept: usize,
    scripts: Scripts,
    /// The Lua mirrors of the decisions (admission, settlement, the pick, login failures).
    rules: Rules,
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
    login_failure: Script,
}

impl Scripts {
    fn new(rules: &Rules) -> Self {
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
            pick: Script::new(rules.pick_lua),
            admit: Script::new(rules.admit_lua),
            settle: Script::new(rules.settle_lua),
            login_failure: Script::new(rules.login_failure_lua),
            unlock: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
                  return 0",
            ),
        }
    }
}

/// The store's own compare-and-set of a key record (beside this file).
const KEY_WRITE_LUA: &str = include_str!("key_write.lua");

fn is_noscript(e: &::redis::RedisError) -> bool {
    e.code() == Some("NOSCRIPT") || e.to_string().contains("NOSCRIPT")
}

fn err(e: ::redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects to `url`, running the Lua mirrors in `rules`. `RedisStore::connect` (in
    /// `crate::rules`) connects with the domain's rules.
    pub async fn connect_with(
        url: &str,
        records_per_key: usize,
        rules: Rules,
    ) -> Result<Self, StoreError> {
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
            scripts: Scripts::new(&rules),
            rules,
        };
        // Scripts that ride inside pipelines must be cached before their first use.
        let _: String = ::redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(store.rules.settle_lua)
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

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(|v| ::redis::from_redis_value_ref::<String>(v).ok())
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
}
