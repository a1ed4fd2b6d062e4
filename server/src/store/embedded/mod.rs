//! The embedded engine: a redb database file under `DATA_DIR`, so one binary is enough to run
//! the relay. Every write is a committed, fsynced transaction; sticky mappings and concurrency
//! leases are process-local on purpose (they describe live traffic of this one process).
//!
//! One file per concern implements that concern's trait (`keys`, `accounts`, `scheduling`,
//! `limits`, `usage`, `sessions`, `documents`); this one holds the database, its tables, the
//! in-memory state of live traffic and the row helpers they share. Decisions (admission, the
//! pick) are the [`Rules`] the engine was opened with, called under the `live` lock.

mod accounts;
mod documents;
mod keys;
mod limits;
mod scheduling;
mod sessions;
mod usage;

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use app::domain::{AccountError, AccountGroup, Cooldown, RequestRecord, UsageCounters};
use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};

use super::*;
use limits::Win;

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
    /// The decisions applied under the lock (admission, the pick).
    rules: Rules,
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

/// The embedded database's page cache.
const EMBEDDED_CACHE_BYTES: usize = 32 << 20;

fn record_key(key_id: &str, seq: u64) -> String {
    format!("{key_id}\u{0}{seq:020}")
}

impl EmbeddedStore {
    /// A request's key copy from memory is still current (see `PickRequest::keys_version`).
    fn check_key_copy(&self, copy_version: Option<u64>) -> Result<(), StoreError> {
        match copy_version {
            Some(v) if v != self.keys_version.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(StoreError::KeyChanged)
            }
            _ => Ok(()),
        }
    }

    /// Opens (or creates) the database under `dir`, applying `rules`. `EmbeddedStore::open`
    /// (in `crate::rules`) opens it with the domain's rules.
    pub fn open_with(dir: &Path, records_per_key: usize, rules: Rules) -> Result<Self, StoreError> {
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
            login_failures: super::login_failures::FailureMap::new(&rules),
            rules,
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
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn engine(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|db| db.begin_read().map(|_| ()).map_err(e)).await
    }
}
