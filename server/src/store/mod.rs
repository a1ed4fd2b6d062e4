//! The domain storage interface: what the relay and the admin need (keys, accounts, usage,
//! sessions, sticky mappings, leases), with two engines: Redis (shared by any number of relay
//! instances) and an embedded store under `DATA_DIR` (one binary, nothing else to run).
//! One conformance suite (`conformance.rs`) runs against both.

pub mod embedded;
pub mod login_failures;
pub mod redis;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod equivalence;
#[cfg(test)]
mod pick_equivalence;

use std::{collections::HashMap, sync::Arc, time::Duration};

use app::domain::{
    Account, AccountError, AccountGroup, ApiKey, Cooldown, RequestRecord, TokenUsage, UsageCounters,
};
use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, Utc};

pub use crate::limits::{Plan, Refusal, Reservation, Settlement};
pub use crate::scheduler::pick::Refused;
use serde::{Deserialize, Serialize};

pub type DynStore = Arc<dyn Store>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("bad store configuration: {0}")]
    Config(String),
    /// The API key record changed after the copy a request holds was read (see
    /// `auth::key_cache`): the request starts again with a fresh copy.
    #[error("the API key changed since it was read")]
    KeyChanged,
}

/// An API key as stored: the admin-visible record plus the key's hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub key_hash: String,
    /// For a copy served from memory: the keys version it was read at. The request's first
    /// store step (admission or scheduling) checks it and answers `KeyChanged` if a key was
    /// written since. `None` for a copy just read from the store. Never stored.
    #[serde(skip)]
    pub cached_at: Option<u64>,
}

impl StoredKey {
    pub fn new(key: ApiKey, key_hash: String) -> Self {
        StoredKey {
            key,
            key_hash,
            cached_at: None,
        }
    }
}

/// Two copies of a key are equal when their records are: where a copy came from is not part
/// of it.
impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.key_hash == other.key_hash
    }
}

/// An account as stored: the admin-visible record plus its encrypted credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAccount {
    #[serde(flatten)]
    pub account: Account,
    /// AES-256-GCM ciphertext of the upstream credential (see `crypto`).
    pub secret: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminCredentials {
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub updated_at: String,
    /// Bumped by every password change or reset; sessions of another generation are void.
    #[serde(default)]
    pub session_generation: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminSession {
    pub username: String,
    pub login_time: String,
    /// A local user's id; `None` for the built-in admin.
    #[serde(default)]
    pub user_id: Option<String>,
    /// When it was issued (ms since the epoch; 0 in sessions older than the field, whose
    /// `login_time` is read instead): the absolute lifetime counts from here.
    #[serde(default)]
    pub issued_ms: u64,
    /// The owner's `session_generation` when issued: a password change bumps it, which ends
    /// every older session at once.
    #[serde(default)]
    pub generation: u64,
}

/// The schedulable view of the accounts and groups. `accounts` and `groups` are `None` when
/// the caller's cached copy (`known_version`) is still current.
#[derive(Clone, Debug, Default)]
pub struct AccountSnapshot {
    pub version: u64,
    pub accounts: Option<Vec<StoredAccount>>,
    pub groups: Option<Vec<AccountGroup>>,
    /// Last use per account id, in ms since the epoch.
    pub last_used_ms: HashMap<String, i64>,
}

/// One account the scheduler may pick, in the caller's preference order.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub priority: u32,
    /// 0 = unlimited.
    pub max_concurrency: u32,
}

#[derive(Clone, Debug)]
pub struct StickyRequest {
    pub key: String,
    pub ttl: Duration,
    /// The mapping's lifetime is renewed when less than this is left.
    pub renew_below: Duration,
}

/// The scheduling step, atomic in the store: the engine reads the candidates' rests, slots and
/// pick stamps and the session's mapping, lets `scheduler::pick` decide (on Redis its mirror,
/// `pick.lua`), then takes the slot, stamps the pick and maps the session.
#[derive(Clone, Debug)]
pub struct PickRequest {
    /// The accounts version the candidates were computed from; a newer one answers `Stale`.
    pub known_version: u64,
    /// The keys version the request's key copy was read at (a copy from memory): a newer one
    /// fails the pick with `StoreError::KeyChanged` before anything is taken.
    pub keys_version: Option<u64>,
    pub candidates: Vec<Candidate>,
    pub sticky: Option<StickyRequest>,
    pub family: Option<String>,
    pub lease_id: String,
    pub lease_ttl: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pick {
    /// Accounts changed since the candidates were computed: reload and ask again.
    Stale,
    Chosen {
        account_id: String,
        sticky: bool,
    },
    /// Nothing free: why the first candidate was refused, or that there was none.
    Unavailable(Refused),
}

/// A PKCE authorization in progress (10 minutes), and its result once exchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuthSession {
    pub code_verifier: String,
    pub state: String,
    pub scopes: String,
    pub proxy: Option<app::domain::ProxyConfig>,
    /// AES-GCM ciphertext of the proxy password, if any.
    pub proxy_secret: Option<String>,
    /// AES-GCM ciphertext of the exchanged tokens, once the code was exchanged.
    pub tokens: Option<String>,
    pub expires_at: Option<i64>,
    pub granted_scopes: Vec<String>,
}

/// The lease scope of an account's concurrency slots.
pub fn account_lease_scope(account_id: &str) -> String {
    format!("acct:{account_id}")
}

/// The lease scope of a key's concurrency slots. The braces are a Redis Cluster hash tag: all
/// of one key's limiter state lives in one slot.
pub fn key_lease_scope(key_id: &str) -> String {
    format!("key{{{key_id}}}")
}

/// Everything accounting writes for one finished request.
#[derive(Clone, Debug)]
pub struct UsageEvent {
    pub key_id: String,
    pub account_id: String,
    /// The service (`claude`, `openai`, `gemini`): the key's per-platform usage.
    pub service: String,
    pub model: String,
    pub usage: TokenUsage,
    pub cost_nanos: u64,
    pub at: DateTime<Utc>,
    pub record: RequestRecord,
}

/// The counter buckets one request adds to. Day, month and hour are in the configured offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub name: String,
    /// `None`: kept forever.
    pub ttl: Option<Duration>,
}

const DAY: u64 = 86_400;

/// Period names for a moment in the configured UTC offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Periods {
    pub day: String,
    pub month: String,
    pub hour: String,
    /// `YYYY-MM-DD:HH:MM`, for the realtime RPM/TPM buckets.
    pub minute: String,
}

impl Periods {
    pub fn at(at: DateTime<Utc>, offset_hours: i32) -> Self {
        let offset = FixedOffset::east_opt(offset_hours * 3600)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
        let local = at.with_timezone(&offset).naive_local();
        // Plain integer formatting: chrono's strftime parser was visible in the hot path.
        use chrono::{Datelike, Timelike};
        let month = format!("{:04}-{:02}", local.year(), local.month());
        let day = format!("{month}-{:02}", local.day());
        let hour = format!("{day}:{:02}", local.hour());
        let minute = format!("{hour}:{:02}", local.minute());
        Periods {
            day,
            month,
            hour,
            minute,
        }
    }

    pub fn yesterday(at: DateTime<Utc>, offset_hours: i32) -> Self {
        Self::at(at - ChronoDuration::days(1), offset_hours)
    }
}

/// Bucket names, in one place so both engines and the readers agree.
pub mod buckets {
    pub fn key_total(key: &str) -> String {
        format!("key:{key}:total")
    }
    pub fn key_day(key: &str, day: &str) -> String {
        format!("key:{key}:d:{day}")
    }
    pub fn key_month(key: &str, month: &str) -> String {
        format!("key:{key}:m:{month}")
    }
    pub fn key_hour(key: &str, hour: &str) -> String {
        format!("key:{key}:h:{hour}")
    }
    pub fn key_model_total(key: &str, model: &str) -> String {
        format!("keymodel:{key}:{model}:total")
    }
    pub fn key_model_day(key: &str, model: &str, day: &str) -> String {
        format!("keymodel:{key}:{model}:d:{day}")
    }
    pub fn model_day(model: &str, day: &str) -> String {
        format!("model:{model}:d:{day}")
    }
    pub fn model_month(model: &str, month: &str) -> String {
        format!("model:{model}:m:{month}")
    }
    pub fn key_platform_total(key: &str, platform: &str) -> String {
        format!("keyplat:{key}:{platform}:total")
    }
    pub fn key_platform_day(key: &str, platform: &str, day: &str) -> String {
        format!("keyplat:{key}:{platform}:d:{day}")
    }
    pub fn account_total(account: &str) -> String {
        format!("account:{account}:total")
    }
    pub fn account_day(account: &str, day: &str) -> String {
        format!("account:{account}:d:{day}")
    }
    pub fn global_total() -> String {
        "global:total".into()
    }
    pub fn global_day(day: &str) -> String {
        format!("global:d:{day}")
    }
    pub fn global_hour(hour: &str) -> String {
        format!("global:h:{hour}")
    }
    pub fn global_minute(minute: &str) -> String {
        format!("global:min:{minute}")
    }
}

impl UsageEvent {
    /// Every bucket this request adds to.
    pub fn buckets(&self, offset_hours: i32) -> Vec<Bucket> {
        use buckets::*;
        let p = Periods::at(self.at, offset_hours);
        let (k, m, a) = (&self.key_id, &self.model, &self.account_id);
        let days = |n| Some(Duration::from_secs(n * DAY));
        let mut out = vec![
            Bucket {
                name: key_total(k),
                ttl: None,
            },
            Bucket {
                name: key_day(k, &p.day),
                ttl: days(32),
            },
            Bucket {
                name: key_month(k, &p.month),
                ttl: days(400),
            },
            Bucket {
                name: key_hour(k, &p.hour),
                ttl: days(8),
            },
            Bucket {
                name: key_model_total(k, m),
                ttl: None,
            },
            Bucket {
                name: key_model_day(k, m, &p.day),
                ttl: days(32),
            },
            Bucket {
                name: model_day(m, &p.day),
                ttl: days(32),
            },
            Bucket {
                name: model_month(m, &p.month),
                ttl: days(400),
            },
            Bucket {
                name: global_total(),
                ttl: None,
            },
            Bucket {
                name: global_day(&p.day),
                ttl: days(32),
            },
            Bucket {
                name: global_hour(&p.hour),
                ttl: days(8),
            },
            Bucket {
                name: global_minute(&p.minute),
                ttl: Some(Duration::from_secs(3600)),
            },
        ];
        if !self.service.is_empty() {
            out.push(Bucket {
                name: key_platform_total(k, &self.service),
                ttl: None,
            });
            out.push(Bucket {
                name: key_platform_day(k, &self.service, &p.day),
                ttl: days(32),
            });
        }
        if !a.is_empty() {
            out.push(Bucket {
                name: account_total(a),
                ttl: None,
            });
            out.push(Bucket {
                name: account_day(a, &p.day),
                ttl: days(32),
            });
        }
        out
    }

    pub fn counters(&self) -> UsageCounters {
        UsageCounters::of_request(&self.usage, self.cost_nanos)
    }
}

/// The owner of the list of every key's newest records (key ids are UUIDs: no clash).
pub const ALL_RECORDS: &str = "~all";

/// A batch of usage events folded together: each bucket once, records per key in order.
#[derive(Default)]
pub struct UsageBatch {
    /// Bucket name → (summed counters, TTL).
    pub buckets: HashMap<String, (UsageCounters, Option<Duration>)>,
    /// Key id → record JSON, oldest first.
    pub records: HashMap<String, Vec<String>>,
    /// Every record in event order, for the list of all keys' requests.
    pub all_records: Vec<String>,
    pub key_last_used: HashMap<String, i64>,
    pub account_last_used: HashMap<String, i64>,
    /// Day → models used that day.
    pub models_by_day: HashMap<String, std::collections::BTreeSet<String>>,
    /// Key id → models it used.
    pub key_models: HashMap<String, std::collections::BTreeSet<String>>,
}

impl UsageBatch {
    pub fn of(events: &[UsageEvent], offset_hours: i32) -> Result<Self, StoreError> {
        let mut b = UsageBatch::default();
        for ev in events {
            let delta = ev.counters();
            for bucket in ev.buckets(offset_hours) {
                b.buckets
                    .entry(bucket.name)
                    .or_insert((UsageCounters::default(), bucket.ttl))
                    .0
                    .add(&delta);
            }
            let record = to_json(&ev.record)?;
            b.all_records.push(record.clone());
            b.records.entry(ev.key_id.clone()).or_default().push(record);
            let ms = ev.at.timestamp_millis();
            let newer = |m: &mut HashMap<String, i64>, id: &str| {
                let e = m.entry(id.to_string()).or_insert(ms);
                *e = (*e).max(ms);
            };
            newer(&mut b.key_last_used, &ev.key_id);
            if !ev.account_id.is_empty() {
                newer(&mut b.account_last_used, &ev.account_id);
            }
            b.models_by_day
                .entry(Periods::at(ev.at, offset_hours).day)
                .or_default()
                .insert(ev.model.clone());
            b.key_models
                .entry(ev.key_id.clone())
                .or_default()
                .insert(ev.model.clone());
        }
        Ok(b)
    }
}

/// Counters brought in from another deployment (`crs import-crs`): added to usage buckets and
/// to keys' limit counters, with no request records, leases or per-request estimates.
#[derive(Clone, Debug, Default)]
pub struct UsageImport {
    /// Bucket name → (counters to add, TTL).
    pub buckets: HashMap<String, (UsageCounters, Option<Duration>)>,
    /// (key id, limit counter id as `limits::plan` names it, TTL, nano-dollars to add).
    pub spent: Vec<(String, String, Option<Duration>, u64)>,
    /// Day → models used that day.
    pub models_by_day: HashMap<String, std::collections::BTreeSet<String>>,
    /// Key id → models it used.
    pub key_models: HashMap<String, std::collections::BTreeSet<String>>,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"redis"` or `"embedded"`.
    fn engine(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;

    // Admin credentials and sessions (sessions are keyed by the token's hash).
    async fn get_admin(&self) -> Result<Option<AdminCredentials>, StoreError>;
    async fn put_admin(&self, admin: &AdminCredentials) -> Result<(), StoreError>;
    async fn put_session(
        &self,
        token_hash: &str,
        session: &AdminSession,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn get_session(&self, token_hash: &str) -> Result<Option<AdminSession>, StoreError>;
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;

    // Login throttle counters, by `auth::throttle::keys` (which also decides; these count).
    async fn login_failures(
        &self,
        keys: &[String],
        now_ms: u64,
    ) -> Result<Vec<Option<crate::auth::throttle::Counter>>, StoreError>;
    /// One more failure on each key (`auth::throttle::after_failure`), forgotten after
    /// `auth::throttle::FORGET_AFTER`.
    async fn record_login_failure(&self, keys: &[String], now_ms: u64) -> Result<(), StoreError>;
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;
    /// How many counters are held (the attack battery checks the bound).
    async fn login_failure_entries(&self) -> Result<usize, StoreError>;

    // API keys.
    /// Fails with `Conflict` if the id or the hash exists already.
    async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Replaces an existing key record (its hash must not change).
    async fn update_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    async fn get_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;
    /// A key record with the bytes it was read as, for [`Store::update_key_if`].
    async fn get_key_for_update(
        &self,
        id: &str,
    ) -> Result<Option<(StoredKey, Vec<u8>)>, StoreError>;
    /// Compare-and-set: replaces the record only if it is still stored as `read`, with the
    /// keys version bumped in the same step. `Ok(false)`: it changed since it was read (nothing
    /// written); `Conflict` if it is gone. See [`modify_key`].
    async fn update_key_if(&self, key: &StoredKey, read: &[u8]) -> Result<bool, StoreError>;
    /// The authentication lookup: one round trip.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<StoredKey>, StoreError>;
    /// The lookup with the keys version it is current for (an engine that cannot read both at
    /// once reads the version first: a write in between only makes the copy look older).
    async fn key_by_hash_versioned(
        &self,
        hash: &str,
    ) -> Result<(Option<StoredKey>, u64), StoreError> {
        let version = self.keys_version().await?;
        Ok((self.key_by_hash(hash).await?, version))
    }
    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Changes whenever a key is written: a cached key list is current while it holds.
    async fn keys_version(&self) -> Result<u64, StoreError>;
    async fn delete_key(&self, id: &str) -> Result<bool, StoreError>;

    // Upstream accounts.
    async fn put_account(&self, account: &StoredAccount) -> Result<(), StoreError>;
    async fn get_account(&self, id: &str) -> Result<Option<StoredAccount>, StoreError>;
    async fn list_accounts(&self) -> Result<Vec<StoredAccount>, StoreError>;
    async fn delete_account(&self, id: &str) -> Result<bool, StoreError>;
    /// The scheduling read: one round trip.
    async fn account_snapshot(
        &self,
        known_version: Option<u64>,
    ) -> Result<AccountSnapshot, StoreError>;
    /// The scheduling step: one round trip.
    async fn pick_account(&self, request: &PickRequest) -> Result<Pick, StoreError>;
    /// Rests an account (or one model family of it) for `rest`, and appends to its error history.
    async fn mark_account(
        &self,
        account_id: &str,
        cooldown: Option<(&Cooldown, Duration)>,
        error: &AccountError,
    ) -> Result<(), StoreError>;
    async fn clear_cooldowns(&self, account_id: &str) -> Result<(), StoreError>;
    /// Live rests per account (account-wide and per family).
    async fn cooldowns(
        &self,
        account_ids: &[String],
    ) -> Result<HashMap<String, Vec<Cooldown>>, StoreError>;
    /// Newest first.
    async fn error_history(
        &self,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<AccountError>, StoreError>;

    // Account groups (part of the scheduling snapshot: changing one bumps the version).
    async fn put_group(&self, group: &AccountGroup) -> Result<(), StoreError>;
    async fn delete_group(&self, id: &str) -> Result<bool, StoreError>;

    // Small admin documents (local users, settings), as JSON by kind and id.
    async fn put_doc(&self, kind: &str, id: &str, json: &str) -> Result<(), StoreError>;
    async fn get_doc(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError>;
    async fn list_docs(&self, kind: &str) -> Result<Vec<String>, StoreError>;
    async fn delete_doc(&self, kind: &str, id: &str) -> Result<bool, StoreError>;

    /// The models that recorded usage on a day (for the dashboard's model distribution).
    async fn models_used(&self, day: &str) -> Result<Vec<String>, StoreError>;
    /// The models a key has ever used (for its per-model table).
    async fn key_models(&self, key_id: &str) -> Result<Vec<String>, StoreError>;

    // OAuth authorizations in progress.
    async fn put_oauth_session(
        &self,
        id: &str,
        session: &OAuthSession,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn get_oauth_session(&self, id: &str) -> Result<Option<OAuthSession>, StoreError>;
    async fn delete_oauth_session(&self, id: &str) -> Result<(), StoreError>;

    /// A lock shared by every relay instance (token refresh): `true` if `owner` holds it now.
    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError>;

    // Usage.
    /// Many finished requests at once (history imports, benchmarks): the same counters,
    /// records and indexes as `record_usage` one by one, without settlements, aggregated
    /// first so each bucket is written once.
    async fn record_usage_batch(
        &self,
        events: &[UsageEvent],
        offset_hours: i32,
    ) -> Result<(), StoreError>;
    /// Imported history: adds counters to buckets and spending to limit counters.
    async fn import_usage(&self, import: &UsageImport) -> Result<(), StoreError>;
    /// All counters, the request record and last-used times of one request, and its
    /// settlement (leases released, reservation replaced by the actual cost): one round trip.
    async fn record_usage(
        &self,
        event: &UsageEvent,
        offset_hours: i32,
        settlement: &Settlement,
    ) -> Result<(), StoreError>;
    /// The settlement of a request that ends without usage to record.
    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError>;
    /// Admission: every limit of the plan checked and the estimate reserved, atomically.
    async fn admit(
        &self,
        plan: &Plan,
        lease_id: &str,
        lease_ttl: Duration,
    ) -> Result<Result<Reservation, Refusal>, StoreError>;
    /// What was spent on each counter `(scope, id)` (reserved amounts excluded), and the key's
    /// rate window `(started ms, requests, tokens, cost)` if one is running.
    async fn limit_usage(
        &self,
        key_id: &str,
        counters: &[(String, String)],
    ) -> Result<(Vec<u64>, Option<(i64, u64, u64, u64)>), StoreError>;
    /// Counters of several buckets (missing ones are zero), in one round trip.
    async fn usage(&self, buckets: &[String]) -> Result<Vec<UsageCounters>, StoreError>;
    /// Newest first.
    async fn recent_records(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError>;
    /// Last use of keys, in ms since the epoch.
    async fn keys_last_used(&self) -> Result<HashMap<String, i64>, StoreError>;
    /// The newest request records of every key together (bounded by `REQUEST_RECORDS_KEPT`).
    async fn all_records(&self, limit: usize) -> Result<Vec<RequestRecord>, StoreError>;

    // Sticky sessions.
    async fn get_sticky(&self, session: &str) -> Result<Option<String>, StoreError>;
    async fn set_sticky(
        &self,
        session: &str,
        account_id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn delete_sticky(&self, session: &str) -> Result<(), StoreError>;
    /// Sticky mappings this process holds in memory (the embedded engine; Redis expires its
    /// own keys): a bound the attack battery checks.
    fn sticky_in_memory(&self) -> Option<usize> {
        None
    }

    // Concurrency leases: at most `limit` live leases per scope; a lease expires after `ttl`
    // so a crashed instance cannot hold a slot forever.
    async fn acquire_lease(
        &self,
        scope: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    async fn release_lease(&self, scope: &str, lease_id: &str) -> Result<(), StoreError>;
    async fn count_leases(&self, scope: &str) -> Result<u32, StoreError>;
    /// Extends live leases (long streams), in one round trip.
    async fn refresh_leases(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), StoreError>;
}

/// Read-modify-write of a key record that never overwrites a concurrent write (an admin's
/// disable, say): `change` gets the newest record and says whether it changed it; on a
/// conflict it runs again on the record as it is now. `None` if there is no such key; else the
/// record as written (or as found, when `change` changed nothing).
pub async fn modify_key<F>(
    store: &dyn Store,
    id: &str,
    mut change: F,
) -> Result<Option<StoredKey>, StoreError>
where
    F: FnMut(&mut StoredKey) -> bool + Send,
{
    for attempt in 0..MODIFY_ATTEMPTS {
        let Some((mut key, read)) = store.get_key_for_update(id).await? else {
            return Ok(None);
        };
        if !change(&mut key) {
            return Ok(Some(key));
        }
        match store.update_key_if(&key, &read).await {
            Ok(true) => return Ok(Some(key)),
            Ok(false) => {}
            Err(StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        // Writers racing for one key: spread them out a little.
        let pause = rand::random::<u64>() % (1 + attempt as u64).min(8);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Err(StoreError::Conflict(
        "the key kept changing; try again".into(),
    ))
}

/// Compare-and-set rounds before [`modify_key`] gives up.
const MODIFY_ATTEMPTS: u32 = 200;

/// Opens the engine the configuration asks for.
pub async fn open(config: &crate::config::Config) -> Result<DynStore, StoreError> {
    match &config.redis_url {
        Some(url) => Ok(Arc::new(
            connect_redis(url, config)
                .await?
                .keep_records(config.request_records_kept),
        )),
        None => Ok(Arc::new(
            embedded::EmbeddedStore::open(&config.data_dir, config.usage_records_per_key)?
                .keep_records(config.request_records_kept),
        )),
    }
}

/// Redis may come up after the relay (a compose file, a restart of both): tries again with a
/// growing pause for `REDIS_CONNECT_WAIT_SECS`, then gives up with the last error and how long
/// it tried.
async fn connect_redis(
    url: &str,
    config: &crate::config::Config,
) -> Result<redis::RedisStore, StoreError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match redis::RedisStore::connect(url, config.usage_records_per_key).await {
            Ok(store) => return Ok(store),
            // A malformed URL will not get better by waiting.
            Err(StoreError::Unavailable(cause))
                if started.elapsed() + pause <= config.redis_connect_wait =>
            {
                tracing::warn!(attempt = attempts, error = %cause, "Redis is not reachable yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(StoreError::Unavailable(cause)) if attempts > 1 => {
                return Err(StoreError::Unavailable(format!(
                    "{cause} ({attempts} attempts in {:.0} s)",
                    started.elapsed().as_secs_f64()
                )))
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(s: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn periods_follow_the_offset() {
        let at = Utc.with_ymd_and_hms(2026, 1, 31, 20, 30, 0).unwrap();
        let p = Periods::at(at, 8);
        assert_eq!(p.day, "2026-02-01");
        assert_eq!(p.month, "2026-02");
        assert_eq!(p.hour, "2026-02-01:04");
        let p = Periods::at(at, 0);
        assert_eq!(p.day, "2026-01-31");
    }
}
