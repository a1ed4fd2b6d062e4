//! The embedded engine: a redb database file under `DATA_DIR`, so one binary is enough to run
//! the relay. Every write is a committed, fsynced transaction; sticky mappings and concurrency
//! leases are process-local on purpose (they describe live traffic of this one process).

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use app::domain::{RequestRecord, UsageCounters};
use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};

use super::*;
use crate::scheduler::pick;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const KEYHASH: TableDefinition<&str, &str> = TableDefinition::new("key_hash");
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("usage");
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const LASTUSED: TableDefinition<&str, i64> = TableDefinition::new("last_used");
const COOLDOWNS: TableDefinition<&str, &[u8]> = TableDefinition::new("cooldowns");
const ERRORS: TableDefinition<&str, &[u8]> = TableDefinition::new("account_errors");
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const OAUTH: TableDefinition<&str, &[u8]> = TableDefinition::new("oauth_sessions");
/// Admin documents: `<kind>\u{0}<id>` → JSON.
const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs");
/// Cost spent per key limiter counter: `<key id>|<counter id>` → (nano-dollars, expiry s).
const LIMITS: TableDefinition<&str, &[u8]> = TableDefinition::new("limits");

/// Entries kept in an account's error history.
const ERROR_HISTORY: u64 = 100;
const FAMILIES: [&str; 4] = ["opus", "sonnet", "haiku", "fable"];

pub struct EmbeddedStore {
    db: Arc<Database>,
    records_per_key: usize,
    /// Records kept in the list of every key's requests.
    records_kept: usize,
    /// State of live traffic, one lock so that scheduling steps are atomic.
    live: Mutex<Live>,
    /// Serialises admissions with settlements, so an admission never sees a reservation
    /// released before its cost is written.
    admission: tokio::sync::Mutex<()>,
    /// Bumped by every key write (this engine serves one process).
    keys_version: std::sync::atomic::AtomicU64,
    /// Login throttle counters: in memory, bounded.
    login_failures: super::login_failures::FailureMap,
}

#[derive(Default)]
struct Live {
    sticky: HashMap<String, (String, Instant)>,
    /// The sticky map's size that triggers the next sweep of expired mappings.
    sticky_sweep_at: usize,
    leases: HashMap<String, HashMap<String, Instant>>,
    /// Each account's last pick stamp (ms), the scheduler's "least recently used" order (see
    /// `scheduler::pick`); shown as its last use when newer than its last usage record.
    picked: HashMap<String, i64>,
    /// The newest of those stamps.
    newest_pick_ms: i64,
    locks: HashMap<String, (String, Instant)>,
    /// Admission reservations not settled yet, per `<scope>|<counter id>`.
    reserved: HashMap<String, u64>,
    windows: HashMap<String, Win>,
}

/// Sweeps of expired sticky mappings start at this size, and after each sweep at twice what
/// is left (amortised: a sweep per doubling).
const STICKY_SWEEP_FLOOR: usize = 256;
/// Sticky mappings kept at most: past it (all live) the map starts over, which costs a
/// session its preferred account once.
const STICKY_CAP: usize = 200_000;

impl Live {
    /// Sets a sticky mapping, sweeping expired ones now and then, so that the map holds at
    /// most about twice the live mappings (and never more than `STICKY_CAP`).
    fn put_sticky(&mut self, key: &str, account: &str, until: Instant, now: Instant) {
        if self.sticky.len() >= self.sticky_sweep_at {
            self.sticky.retain(|_, (_, u)| *u > now);
            if self.sticky.len() >= STICKY_CAP {
                self.sticky.clear();
            }
            self.sticky_sweep_at = (self.sticky.len() * 2).max(STICKY_SWEEP_FLOOR);
        }
        self.sticky
            .insert(key.to_string(), (account.to_string(), until));
    }
}

#[derive(Clone, Copy, Default)]
struct Win {
    start_ms: i64,
    req: u64,
    tok: u64,
    cost: u64,
    reserved: u64,
}

/// A cost counter's row: `<scope>|<counter id>` (the scope is the key, or `u:<user>`).
fn limit_key(scope: &str, counter: &str) -> String {
    format!("{scope}|{counter}")
}

fn decode_spent(raw: &[u8], now_secs: u64) -> u64 {
    let get = |i: usize| {
        raw.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    let expires = get(1);
    if expires != 0 && expires <= now_secs {
        0
    } else {
        get(0)
    }
}

/// Adds a settled cost to each limiter row (inside the caller's transaction).
fn add_spent(
    w: &redb::WriteTransaction,
    rows: &[(String, Option<Duration>)],
    actual: u64,
    now_secs: u64,
) -> Result<(), StoreError> {
    let mut limits = w.open_table(LIMITS).map_err(e)?;
    for (row, ttl) in rows {
        let old = limits
            .get(row.as_str())
            .map_err(e)?
            .map(|v| decode_spent(v.value(), now_secs))
            .unwrap_or(0);
        let expires = ttl.map(|t| now_secs + t.as_secs()).unwrap_or(0);
        limits
            .insert(row.as_str(), encode_spent(old + actual, expires).as_slice())
            .map_err(e)?;
    }
    Ok(())
}

fn encode_spent(spent: u64, expires: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&spent.to_le_bytes());
    out[8..].copy_from_slice(&expires.to_le_bytes());
    out
}

impl Live {
    fn lease_count(&mut self, scope: &str, now: Instant) -> usize {
        match self.leases.get_mut(scope) {
            Some(l) => {
                l.retain(|_, until| *until > now);
                l.len()
            }
            None => 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Expiring<T> {
    value: T,
    expires_at_ms: i64,
}

fn e<E: Into<redb::Error>>(err: E) -> StoreError {
    StoreError::Unavailable(err.into().to_string())
}

/// Counters plus an expiry (seconds since the epoch, 0 = never), little-endian.
fn encode_counters(c: &UsageCounters, expires_at: u64) -> [u8; 64] {
    let vals = [
        c.requests,
        c.input_tokens,
        c.output_tokens,
        c.cache_create_5m_tokens,
        c.cache_create_1h_tokens,
        c.cache_read_tokens,
        c.cost_nanos,
        expires_at,
    ];
    let mut out = [0u8; 64];
    for (i, v) in vals.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_counters(raw: &[u8]) -> (UsageCounters, u64) {
    let get = |i: usize| {
        raw.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    (
        UsageCounters {
            requests: get(0),
            input_tokens: get(1),
            output_tokens: get(2),
            cache_create_5m_tokens: get(3),
            cache_create_1h_tokens: get(4),
            cache_read_tokens: get(5),
            cost_nanos: get(6),
        },
        get(7),
    )
}

fn all_rows<T: for<'de> Deserialize<'de>>(
    r: &redb::ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, StoreError> {
    let t = r.open_table(table).map_err(e)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(e)? {
        let (_, v) = row.map_err(e)?;
        out.push(from_json(v.value())?);
    }
    Ok(out)
}

fn read_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, StoreError> {
    Ok(meta
        .get(key)
        .map_err(e)?
        .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
        .unwrap_or(0))
}

fn cooldown_key(account_id: &str, family: Option<&str>) -> String {
    match family {
        Some(f) => format!("{account_id}:{f}"),
        None => account_id.to_string(),
    }
}

/// Appends to an owner's bounded list (request records, error history), dropping the oldest
/// entry beyond `keep`.
fn append_bounded(
    w: &redb::WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    seq_prefix: &str,
    owner: &str,
    value: &[u8],
    keep: u64,
) -> Result<(), StoreError> {
    let mut meta = w.open_table(META).map_err(e)?;
    let seq_key = format!("{seq_prefix}:{owner}");
    let seq = read_u64(&meta, &seq_key)?;
    meta.insert(seq_key.as_str(), (seq + 1).to_le_bytes().as_slice())
        .map_err(e)?;
    let mut list = w.open_table(table).map_err(e)?;
    list.insert(record_key(owner, seq).as_str(), value)
        .map_err(e)?;
    if seq >= keep {
        list.remove(record_key(owner, seq - keep).as_str())
            .map_err(e)?;
    }
    Ok(())
}

/// The newest `limit` entries of an owner's list, newest first.
fn newest<T: for<'de> Deserialize<'de>>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    owner: &str,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let (lo, hi) = (format!("{owner}\u{0}"), format!("{owner}\u{1}"));
    let r = db.begin_read().map_err(e)?;
    let t = r.open_table(table).map_err(e)?;
    let mut out = Vec::new();
    for row in t
        .range(lo.as_str()..hi.as_str())
        .map_err(e)?
        .rev()
        .take(limit)
    {
        let (_, v) = row.map_err(e)?;
        out.push(from_json(v.value())?);
    }
    Ok(out)
}

/// Adds each delta to its bucket (an expired bucket starts again from zero) and renews its TTL.
fn add_to_buckets(
    usage: &mut redb::Table<&str, &[u8]>,
    buckets: &HashMap<String, (UsageCounters, Option<Duration>)>,
    now_secs: u64,
) -> Result<(), StoreError> {
    for (name, (delta, ttl)) in buckets {
        let (mut counters, mut expires) = usage
            .get(name.as_str())
            .map_err(e)?
            .map(|v| decode_counters(v.value()))
            .unwrap_or_default();
        if expires != 0 && expires <= now_secs {
            counters = UsageCounters::default();
        }
        counters.add(delta);
        if let Some(ttl) = ttl {
            expires = now_secs + ttl.as_secs();
        }
        usage
            .insert(
                name.as_str(),
                encode_counters(&counters, expires).as_slice(),
            )
            .map_err(e)?;
    }
    Ok(())
}

/// The embedded database's page cache.
const EMBEDDED_CACHE_BYTES: usize = 32 << 20;

fn record_key(key_id: &str, seq: u64) -> String {
    format!("{key_id}\u{0}{seq:020}")
}

impl EmbeddedStore {
    /// `key_write.lua` (store/, beside this file) in one write transaction: the record replaced
    /// if it exists and (with `read` non-empty) is still stored as `read`; the keys version
    /// bumped before this returns. 1 written, 0 no such record, -1 changed since read.
    async fn write_key(&self, key: &StoredKey, read: Vec<u8>) -> Result<i64, StoreError> {
        let json = to_json(key)?;
        let id = key.key.id.clone();
        let result = self
            .run(move |db| {
                let w = db.begin_write().map_err(e)?;
                {
                    let mut keys = w.open_table(KEYS).map_err(e)?;
                    let current = keys
                        .get(id.as_str())
                        .map_err(e)?
                        .map(|v| v.value().to_vec());
                    match current {
                        None => return Ok(0),
                        Some(cur) if !read.is_empty() && cur != read => return Ok(-1),
                        Some(_) => {}
                    }
                    keys.insert(id.as_str(), json.as_bytes()).map_err(e)?;
                }
                w.commit().map_err(e)?;
                Ok(1)
            })
            .await;
        // Any key write makes cached key lists (and key copies) stale.
        if matches!(result, Ok(1)) {
            self.keys_version
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        result
    }

    /// A request's key copy from memory is still current (see `PickRequest::keys_version`).
    fn check_key_copy(&self, copy_version: Option<u64>) -> Result<(), StoreError> {
        match copy_version {
            Some(v) if v != self.keys_version.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(StoreError::KeyChanged)
            }
            _ => Ok(()),
        }
    }
    pub fn open(dir: &Path, records_per_key: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|err| {
            StoreError::Unavailable(format!("cannot create DATA_DIR {}: {err}", dir.display()))
        })?;
        let path = dir.join("crs.redb");
        // redb's default page cache grows to 1 GiB; the hot set (keys, accounts, today's
        // buckets) is far smaller, and the relay's memory should stay flat under load.
        let db = redb::Builder::new()
            .set_cache_size(EMBEDDED_CACHE_BYTES)
            .create(&path)
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot open {}: {err}", path.display()))
            })?;
        let txn = db.begin_write().map_err(e)?;
        {
            txn.open_table(META).map_err(e)?;
            txn.open_table(KEYS).map_err(e)?;
            txn.open_table(KEYHASH).map_err(e)?;
            txn.open_table(ACCOUNTS).map_err(e)?;
            txn.open_table(SESSIONS).map_err(e)?;
            txn.open_table(USAGE).map_err(e)?;
            txn.open_table(RECORDS).map_err(e)?;
            txn.open_table(LASTUSED).map_err(e)?;
            txn.open_table(COOLDOWNS).map_err(e)?;
            txn.open_table(ERRORS).map_err(e)?;
            txn.open_table(GROUPS).map_err(e)?;
            txn.open_table(OAUTH).map_err(e)?;
            txn.open_table(DOCS).map_err(e)?;
            txn.open_table(LIMITS).map_err(e)?;
        }
        txn.commit().map_err(e)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            records_per_key: records_per_key.max(1),
            records_kept: 10_000,
            live: Mutex::new(Live::default()),
            login_failures: Default::default(),
            admission: tokio::sync::Mutex::new(()),
            keys_version: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// How many of the newest records of all keys together are kept.
    pub fn keep_records(mut self, n: usize) -> Self {
        self.records_kept = n.max(1);
        self
    }

    /// Runs blocking database work off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|err| StoreError::Unavailable(err.to_string()))?
    }

    async fn get_bytes(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(table).map_err(e)?;
            Ok(t.get(key.as_str()).map_err(e)?.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// A row that reads as absent once `ttl` has passed.
    async fn put_expiring<T: Serialize + Clone>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let row = Expiring {
            value: value.clone(),
            expires_at_ms: now_ms() + ttl.as_millis() as i64,
        };
        self.put_bytes(table, key.into(), to_json(&row)?.into_bytes())
            .await
    }

    async fn get_expiring<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let Some(raw) = self.get_bytes(table, key.into()).await? else {
            return Ok(None);
        };
        let row: Expiring<T> = from_json(&raw)?;
        Ok((row.expires_at_ms > now_ms()).then_some(row.value))
    }

    async fn put_bytes(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            w.open_table(table)
                .map_err(e)?
                .insert(key.as_str(), value.as_slice())
                .map_err(e)?;
            w.commit().map_err(e)
        })
        .await
    }

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

    /// The in-memory part of a settlement: leases, reservations, window.
    fn settle_live(&self, s: &Settlement) {
        let mut live = self.live.lock();
        for (scope, lease) in &s.leases {
            if let Some(l) = live.leases.get_mut(scope) {
                l.remove(lease);
            }
        }
        let Some(r) = &s.reservation else { return };
        if let Some((scope, lease)) = &r.lease {
            if let Some(l) = live.leases.get_mut(scope) {
                l.remove(lease);
            }
        }
        if r.reserved_nanos > 0 {
            for (scope, c, _) in &r.counters {
                if let Some(v) = live.reserved.get_mut(&limit_key(scope, c)) {
                    *v = v.saturating_sub(r.reserved_nanos);
                }
            }
        }
        if r.window {
            if let Some(w) = live
                .windows
                .get_mut(&r.key_id)
                .filter(|w| w.start_ms == r.window_start_ms)
            {
                w.reserved = w.reserved.saturating_sub(r.reserved_nanos);
                w.tok += s.tokens;
                w.cost += s.actual_nanos;
            }
        }
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
impl Store for EmbeddedStore {
    fn engine(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|db| db.begin_read().map(|_| ()).map_err(e)).await
    }

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

    async fn login_failures(
        &self,
        keys: &[String],
        now_ms: u64,
    ) -> Result<Vec<Option<crate::auth::throttle::Counter>>, StoreError> {
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

    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let json = to_json(key)?;
        let (id, hash) = (key.key.id.clone(), key.key_hash.clone());
        let result = self
            .run(move |db| {
                let w = db.begin_write().map_err(e)?;
                {
                    let mut keys = w.open_table(KEYS).map_err(e)?;
                    let mut hashes = w.open_table(KEYHASH).map_err(e)?;
                    if keys.get(id.as_str()).map_err(e)?.is_some()
                        || hashes.get(hash.as_str()).map_err(e)?.is_some()
                    {
                        return Err(StoreError::Conflict("key exists".into()));
                    }
                    keys.insert(id.as_str(), json.as_bytes()).map_err(e)?;
                    hashes.insert(hash.as_str(), id.as_str()).map_err(e)?;
                }
                w.commit().map_err(e)
            })
            .await;
        // Any key write makes cached key lists stale.
        self.keys_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        result
    }

    async fn update_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        match self.write_key(key, Vec::new()).await? {
            1 => Ok(()),
            _ => Err(StoreError::Conflict("no such key".into())),
        }
    }

    async fn get_key_for_update(
        &self,
        id: &str,
    ) -> Result<Option<(StoredKey, Vec<u8>)>, StoreError> {
        let raw = self.get_bytes(KEYS, id.into()).await?;
        raw.map(|r| Ok((from_json(&r)?, r))).transpose()
    }

    async fn update_key_if(&self, key: &StoredKey, read: &[u8]) -> Result<bool, StoreError> {
        match self.write_key(key, read.to_vec()).await? {
            1 => Ok(true),
            0 => Err(StoreError::Conflict("no such key".into())),
            _ => Ok(false),
        }
    }

    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let raw = self.get_bytes(KEYS, id.into()).await?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<StoredKey>, StoreError> {
        let hash = hash.to_string();
        let raw = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let hashes = r.open_table(KEYHASH).map_err(e)?;
                let Some(id) = hashes.get(hash.as_str()).map_err(e)? else {
                    return Ok(None);
                };
                let keys = r.open_table(KEYS).map_err(e)?;
                let raw = keys.get(id.value()).map_err(e)?.map(|v| v.value().to_vec());
                Ok(raw)
            })
            .await?;
        raw.map(|r| from_json(&r)).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.run(|db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(KEYS).map_err(e)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(e)? {
                let (_, v) = row.map_err(e)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        let result = self
            .run(move |db| {
                let w = db.begin_write().map_err(e)?;
                let existed = {
                    let mut keys = w.open_table(KEYS).map_err(e)?;
                    let removed = keys
                        .remove(id.as_str())
                        .map_err(e)?
                        .map(|v| v.value().to_vec());
                    match removed {
                        Some(raw) => {
                            let key: StoredKey = from_json(&raw)?;
                            w.open_table(KEYHASH)
                                .map_err(e)?
                                .remove(key.key_hash.as_str())
                                .map_err(e)?;
                            w.open_table(LASTUSED)
                                .map_err(e)?
                                .remove(format!("k:{id}").as_str())
                                .map_err(e)?;
                            true
                        }
                        None => false,
                    }
                };
                w.commit().map_err(e)?;
                Ok(existed)
            })
            .await;
        // Any key write makes cached key lists stale.
        self.keys_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        result
    }

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

    async fn import_usage(&self, import: &UsageImport) -> Result<(), StoreError> {
        let import = import.clone();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                let mut usage = w.open_table(USAGE).map_err(e)?;
                add_to_buckets(&mut usage, &import.buckets, now_secs)?;
            }
            // Models per day and per key are read from the buckets themselves here.
            for (key_id, counter, ttl, nanos) in &import.spent {
                add_spent(&w, &[(limit_key(key_id, counter), *ttl)], *nanos, now_secs)?;
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn record_usage(
        &self,
        ev: &UsageEvent,
        offset_hours: i32,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
        let _turn = match settlement.reservation {
            Some(_) => Some(self.admission.lock().await),
            None => None,
        };
        let spent_rows: Vec<(String, Option<Duration>)> = settlement
            .reservation
            .as_ref()
            .filter(|_| settlement.actual_nanos > 0)
            .map(|r| {
                r.counters
                    .iter()
                    .map(|(scope, c, ttl)| (limit_key(scope, c), *ttl))
                    .collect()
            })
            .unwrap_or_default();
        let actual = settlement.actual_nanos;
        let buckets = ev.buckets(offset_hours);
        let delta = ev.counters();
        let record = to_json(&ev.record)?;
        let (key_id, account_id) = (ev.key_id.clone(), ev.account_id.clone());
        let at_ms = ev.at.timestamp_millis();
        // Like Redis EXPIRE: a bucket lives `ttl` from its last write.
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let keep = self.records_per_key as u64;
        let keep_all = self.records_kept as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                let mut usage = w.open_table(USAGE).map_err(e)?;
                for b in &buckets {
                    let (mut counters, mut expires) = usage
                        .get(b.name.as_str())
                        .map_err(e)?
                        .map(|v| decode_counters(v.value()))
                        .unwrap_or_default();
                    if expires != 0 && expires <= now_secs {
                        counters = UsageCounters::default();
                    }
                    counters.add(&delta);
                    if let Some(ttl) = b.ttl {
                        expires = now_secs + ttl.as_secs();
                    }
                    usage
                        .insert(
                            b.name.as_str(),
                            encode_counters(&counters, expires).as_slice(),
                        )
                        .map_err(e)?;
                }
                append_bounded(&w, RECORDS, "records_seq", &key_id, record.as_bytes(), keep)?;
                append_bounded(
                    &w,
                    RECORDS,
                    "records_seq",
                    ALL_RECORDS,
                    record.as_bytes(),
                    keep_all,
                )?;
                add_spent(&w, &spent_rows, actual, now_secs)?;
                let mut lu = w.open_table(LASTUSED).map_err(e)?;
                lu.insert(format!("k:{key_id}").as_str(), at_ms)
                    .map_err(e)?;
                if !account_id.is_empty() {
                    lu.insert(format!("a:{account_id}").as_str(), at_ms)
                        .map_err(e)?;
                }
            }
            w.commit().map_err(e)
        })
        .await?;
        // Written first, released second: see `admission`.
        self.settle_live(settlement);
        Ok(())
    }

    async fn record_usage_batch(
        &self,
        events: &[UsageEvent],
        offset_hours: i32,
    ) -> Result<(), StoreError> {
        let batch = UsageBatch::of(events, offset_hours)?;
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let keep = self.records_per_key as u64;
        let keep_all = self.records_kept as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                let mut usage = w.open_table(USAGE).map_err(e)?;
                add_to_buckets(&mut usage, &batch.buckets, now_secs)?;
            }
            for (key_id, records) in &batch.records {
                // Only the newest `keep` can survive the bound.
                let skip = records.len().saturating_sub(keep as usize);
                for r in &records[skip..] {
                    append_bounded(&w, RECORDS, "records_seq", key_id, r.as_bytes(), keep)?;
                }
            }
            let skip = batch.all_records.len().saturating_sub(keep_all as usize);
            for r in &batch.all_records[skip..] {
                append_bounded(
                    &w,
                    RECORDS,
                    "records_seq",
                    ALL_RECORDS,
                    r.as_bytes(),
                    keep_all,
                )?;
            }
            {
                let mut lu = w.open_table(LASTUSED).map_err(e)?;
                for (prefix, map) in [("k", &batch.key_last_used), ("a", &batch.account_last_used)]
                {
                    for (id, ms) in map {
                        let name = format!("{prefix}:{id}");
                        let old = lu.get(name.as_str()).map_err(e)?.map(|v| v.value());
                        let newest = old.map_or(*ms, |o| o.max(*ms));
                        lu.insert(name.as_str(), newest).map_err(e)?;
                    }
                }
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn usage(&self, buckets: &[String]) -> Result<Vec<UsageCounters>, StoreError> {
        let buckets = buckets.to_vec();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(USAGE).map_err(e)?;
            buckets
                .iter()
                .map(|b| {
                    Ok(match t.get(b.as_str()).map_err(e)? {
                        Some(v) => {
                            let (c, expires) = decode_counters(v.value());
                            if expires != 0 && expires <= now_secs {
                                UsageCounters::default()
                            } else {
                                c
                            }
                        }
                        None => UsageCounters::default(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn recent_records(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let owner = key_id.to_string();
        self.run(move |db| newest(db, RECORDS, &owner, limit)).await
    }

    async fn all_records(&self, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        self.run(move |db| newest(db, RECORDS, ALL_RECORDS, limit))
            .await
    }

    async fn keys_last_used(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.run(|db| {
            let r = db.begin_read().map_err(e)?;
            let lu = r.open_table(LASTUSED).map_err(e)?;
            let mut out = HashMap::new();
            for row in lu.range("k:".."k;").map_err(e)? {
                let (k, v) = row.map_err(e)?;
                out.insert(k.value()[2..].to_string(), v.value());
            }
            Ok(out)
        })
        .await
    }

    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        let _turn = self.admission.lock().await;
        let rows: Vec<(String, Option<Duration>)> = match &settlement.reservation {
            Some(r) if settlement.actual_nanos > 0 => r
                .counters
                .iter()
                .map(|(scope, c, ttl)| (limit_key(scope, c), *ttl))
                .collect(),
            _ => {
                self.settle_live(settlement);
                return Ok(());
            }
        };
        let actual = settlement.actual_nanos;
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                add_spent(&w, &rows, actual, now_secs)?;
            }
            w.commit().map_err(e)
        })
        .await?;
        self.settle_live(settlement);
        Ok(())
    }

    async fn admit(
        &self,
        plan: &Plan,
        lease_id: &str,
        lease_ttl: Duration,
    ) -> Result<Result<Reservation, Refusal>, StoreError> {
        use crate::limits::admission::{self, CounterState, Snapshot, Verdict, WindowState};
        let _turn = self.admission.lock().await;
        self.check_key_copy(plan.keys_version)?;
        let rows: Vec<String> = plan
            .counters
            .iter()
            .map(|c| limit_key(&c.scope, &c.id))
            .collect();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let read_rows = rows.clone();
        let spent: Vec<u64> = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let t = r.open_table(LIMITS).map_err(e)?;
                read_rows
                    .iter()
                    .map(|row| {
                        Ok(t.get(row.as_str())
                            .map_err(e)?
                            .map(|v| decode_spent(v.value(), now_secs))
                            .unwrap_or(0))
                    })
                    .collect()
            })
            .await?;
        let now = Instant::now();
        let now_ms = now_ms();
        let mut live = self.live.lock();
        let scope = plan.lease_scope();
        let win = live.windows.get(&plan.key_id).copied().unwrap_or_default();
        let snapshot = Snapshot {
            held: if plan.concurrency > 0 {
                live.lease_count(&scope, now) as u64
            } else {
                0
            },
            window: WindowState {
                start_ms: win.start_ms,
                requests: win.req,
                tokens: win.tok,
                cost: win.cost,
                reserved: win.reserved,
            },
            counters: rows
                .iter()
                .zip(&spent)
                .map(|(row, spent)| CounterState {
                    spent: *spent,
                    reserved: live.reserved.get(row).copied().unwrap_or(0),
                })
                .collect(),
        };
        let grant = match admission::decide(plan, &snapshot, now_ms) {
            Verdict::Refuse(refusal) => return Ok(Err(refusal)),
            Verdict::Admit(grant) => grant,
        };
        // The decision's effects, under the same lock.
        if plan.concurrency > 0 {
            live.leases
                .entry(scope)
                .or_default()
                .insert(lease_id.to_string(), now + lease_ttl);
        }
        if plan.window.is_some() {
            let w = live.windows.entry(plan.key_id.clone()).or_default();
            if grant.window_reset {
                *w = Win {
                    start_ms: grant.window_start_ms,
                    ..Default::default()
                };
            }
            w.req += 1;
            w.reserved += grant.reserve_nanos;
        }
        if grant.reserve_nanos > 0 {
            for row in rows {
                *live.reserved.entry(row).or_default() += grant.reserve_nanos;
            }
        }
        Ok(Ok(Reservation::of(plan, &grant, lease_id)))
    }

    async fn limit_usage(
        &self,
        key_id: &str,
        counters: &[(String, String)],
    ) -> Result<(Vec<u64>, Option<(i64, u64, u64, u64)>), StoreError> {
        let rows: Vec<String> = counters
            .iter()
            .map(|(scope, id)| limit_key(scope, id))
            .collect();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let spent = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let t = r.open_table(LIMITS).map_err(e)?;
                rows.iter()
                    .map(|row| {
                        Ok(t.get(row.as_str())
                            .map_err(e)?
                            .map(|v| decode_spent(v.value(), now_secs))
                            .unwrap_or(0))
                    })
                    .collect::<Result<Vec<u64>, StoreError>>()
            })
            .await?;
        let window = self
            .live
            .lock()
            .windows
            .get(key_id)
            .map(|w| (w.start_ms, w.req, w.tok, w.cost));
        Ok((spent, window))
    }

    async fn get_sticky(&self, session: &str) -> Result<Option<String>, StoreError> {
        let mut live = self.live.lock();
        match live.sticky.get(session) {
            Some((account, until)) if *until > Instant::now() => Ok(Some(account.clone())),
            Some(_) => {
                live.sticky.remove(session);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set_sticky(
        &self,
        session: &str,
        account_id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut live = self.live.lock();
        let now = Instant::now();
        live.put_sticky(session, account_id, now + ttl, now);
        Ok(())
    }

    async fn delete_sticky(&self, session: &str) -> Result<(), StoreError> {
        self.live.lock().sticky.remove(session);
        Ok(())
    }

    fn sticky_in_memory(&self) -> Option<usize> {
        Some(self.live.lock().sticky.len())
    }

    async fn acquire_lease(
        &self,
        scope: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut live = self.live.lock();
        let held = live.lease_count(scope, now);
        let leases = live.leases.entry(scope.to_string()).or_default();
        if leases.contains_key(lease_id) || (held as u32) < limit {
            leases.insert(lease_id.to_string(), now + ttl);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn release_lease(&self, scope: &str, lease_id: &str) -> Result<(), StoreError> {
        let mut live = self.live.lock();
        if let Some(leases) = live.leases.get_mut(scope) {
            leases.remove(lease_id);
            if leases.is_empty() {
                live.leases.remove(scope);
            }
        }
        Ok(())
    }

    async fn count_leases(&self, scope: &str) -> Result<u32, StoreError> {
        Ok(self.live.lock().lease_count(scope, Instant::now()) as u32)
    }

    async fn refresh_leases(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let until = Instant::now() + ttl;
        let mut live = self.live.lock();
        for (scope, lease) in leases {
            if let Some(l) = live.leases.get_mut(scope).and_then(|l| l.get_mut(lease)) {
                *l = until;
            }
        }
        Ok(())
    }

    async fn pick_account(&self, req: &PickRequest) -> Result<Pick, StoreError> {
        self.check_key_copy(req.keys_version)?;
        let ids: Vec<String> = req.candidates.iter().map(|c| c.id.clone()).collect();
        let family = req.family.clone();
        let now_ms = now_ms();
        // Read the version and the live rests first (the database), then decide under the lock.
        let (version, resting) = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let version = read_u64(&r.open_table(META).map_err(e)?, "accounts:version")?;
                let t = r.open_table(COOLDOWNS).map_err(e)?;
                let mut resting = HashMap::new();
                for id in &ids {
                    for key in [
                        cooldown_key(id, None),
                        family
                            .as_deref()
                            .map(|f| cooldown_key(id, Some(f)))
                            .unwrap_or_default(),
                    ] {
                        if key.is_empty() {
                            continue;
                        }
                        if let Some(v) = t.get(key.as_str()).map_err(e)? {
                            let c: Cooldown = from_json(v.value())?;
                            if c.until_ms > now_ms {
                                resting.entry(id.clone()).or_insert(c);
                            }
                        }
                    }
                }
                Ok((version, resting))
            })
            .await?;
        if version != req.known_version {
            return Ok(Pick::Stale);
        }
        // The snapshot, the decision and its effects under one lock: picks are atomic.
        let now = Instant::now();
        let mut live = self.live.lock();
        let snapshot = pick::Snapshot {
            candidates: req
                .candidates
                .iter()
                .map(|c| pick::CandidateState {
                    id: c.id.clone(),
                    priority: c.priority,
                    last_pick_ms: live.picked.get(&c.id).copied().unwrap_or(0),
                    resting: resting.get(&c.id).cloned(),
                    max_concurrency: c.max_concurrency,
                    held: if c.max_concurrency > 0 {
                        live.lease_count(&account_lease_scope(&c.id), now) as u32
                    } else {
                        0
                    },
                })
                .collect(),
            sticky: req.sticky.as_ref().map(|s| pick::StickyState {
                mapped: live
                    .sticky
                    .get(&s.key)
                    .filter(|(_, until)| *until > now)
                    .map(|(id, until)| pick::Mapped {
                        account_id: id.clone(),
                        ttl_left_ms: Some(until.saturating_duration_since(now).as_millis() as i64),
                    }),
                renew_below_ms: s.renew_below.as_millis() as i64,
            }),
            newest_pick_ms: live.newest_pick_ms,
        };
        let choice = match pick::decide(&snapshot, now_ms) {
            pick::Decision::Refused { why, drop_sticky } => {
                if let Some(s) = req.sticky.as_ref().filter(|_| drop_sticky) {
                    live.sticky.remove(&s.key);
                }
                return Ok(Pick::Unavailable(why));
            }
            pick::Decision::Chosen(choice) => choice,
        };
        let Some(c) = req.candidates.get(choice.index) else {
            return Ok(Pick::Unavailable(Refused::NoCandidate));
        };
        if c.max_concurrency > 0 {
            live.leases
                .entry(account_lease_scope(&c.id))
                .or_default()
                .insert(req.lease_id.clone(), now + req.lease_ttl);
        }
        live.picked.insert(c.id.clone(), choice.stamp_ms);
        live.newest_pick_ms = choice.stamp_ms;
        if let Some(s) = &req.sticky {
            if choice.sticky != pick::StickyWrite::Keep {
                live.put_sticky(&s.key, &c.id, now + s.ttl, now);
            }
        }
        Ok(Pick::Chosen {
            account_id: c.id.clone(),
            sticky: choice.sticky_hit,
        })
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

    async fn keys_version(&self) -> Result<u64, StoreError> {
        Ok(self.keys_version.load(std::sync::atomic::Ordering::SeqCst))
    }

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

    async fn models_used(&self, day: &str) -> Result<Vec<String>, StoreError> {
        let suffix = format!(":d:{day}");
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(USAGE).map_err(e)?;
            let mut out = Vec::new();
            // Model buckets sort together (`model:` … `model;`); their day ones name the model.
            for row in t.range("model:".."model;").map_err(e)? {
                let (k, v) = row.map_err(e)?;
                let (_, expires) = decode_counters(v.value());
                if expires != 0 && expires <= now_secs {
                    continue;
                }
                if let Some(model) = k
                    .value()
                    .strip_prefix("model:")
                    .and_then(|m| m.strip_suffix(suffix.as_str()))
                {
                    out.push(model.to_string());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn key_models(&self, key_id: &str) -> Result<Vec<String>, StoreError> {
        let (lo, hi) = (format!("keymodel:{key_id}:"), format!("keymodel:{key_id};"));
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(USAGE).map_err(e)?;
            let mut out = Vec::new();
            for row in t.range(lo.as_str()..hi.as_str()).map_err(e)? {
                let (k, _) = row.map_err(e)?;
                if let Some(model) = k
                    .value()
                    .strip_prefix(lo.as_str())
                    .and_then(|m| m.strip_suffix(":total"))
                {
                    out.push(model.to_string());
                }
            }
            Ok(out)
        })
        .await
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

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut live = self.live.lock();
        match live.locks.get(name) {
            Some((holder, until)) if *until > now && holder != owner => Ok(false),
            _ => {
                live.locks
                    .insert(name.to_string(), (owner.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut live = self.live.lock();
        if live
            .locks
            .get(name)
            .is_some_and(|(holder, _)| holder == owner)
        {
            live.locks.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod sticky_tests {
    use super::*;

    /// Expired mappings are swept as the map grows: it holds about twice the live ones, not
    /// every mapping ever made.
    #[test]
    fn the_sticky_map_is_swept() {
        let mut live = Live::default();
        let t0 = Instant::now();
        for round in 0..20u64 {
            // Each round's mappings live 1 s; the next round starts 2 s later.
            let now = t0 + Duration::from_secs(2 * round);
            for i in 0..200 {
                live.put_sticky(
                    &format!("{round}:{i}"),
                    "a",
                    now + Duration::from_secs(1),
                    now,
                );
            }
            assert!(
                live.sticky.len() <= (2 * 200).max(STICKY_SWEEP_FLOOR) + 200,
                "round {round}: {}",
                live.sticky.len()
            );
        }
        // Live mappings are kept.
        let now = t0 + Duration::from_secs(38);
        assert_eq!(live.sticky.get("19:0").map(|(a, _)| a.as_str()), Some("a"));
        assert!(live.sticky.get("19:0").is_some_and(|(_, u)| *u > now));
    }
}
