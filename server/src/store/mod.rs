//! The domain storage interface: what the relay and the admin need, one trait per concern —
//! [`KeyStore`], [`AccountStore`], [`SchedulingStore`], [`LimitStore`], [`UsageStore`],
//! [`SessionStore`], [`DocumentStore`] — and [`Store`], all of them together, with two engines:
//! Redis (shared by any number of relay instances) and an embedded store under `DATA_DIR` (one
//! binary, nothing else to run). Engines store; the decisions they apply atomically arrive in
//! their [`Rules`]. One conformance suite (`conformance.rs`) runs against both.
//!
//! The store imports nothing of the layers above it (limits, scheduler, auth, config): the
//! types it keeps for them are defined here, and they re-export what they use.

pub mod accounts;
pub mod documents;
pub mod embedded;
pub mod keys;
pub mod limits;
pub mod login_failures;
pub mod redis;
pub mod rules;
pub mod scheduling;
pub mod sessions;
pub mod usage;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod equivalence;
#[cfg(test)]
mod pick_equivalence;

use std::{path::PathBuf, sync::Arc, time::Duration};

use chrono::Utc;
use serde::{Deserialize, Serialize};

pub use accounts::{AccountSnapshot, AccountStore, StoredAccount};
pub use documents::DocumentStore;
pub use keys::{modify_key, KeyStore, StoredKey};
pub use limits::{LimitStore, Plan, Refusal, Reservation, Settlement};
pub use rules::Rules;
pub use scheduling::{
    account_lease_scope, key_lease_scope, Candidate, Pick, PickRequest, Refused, SchedulingStore,
    StickyRequest,
};
pub use sessions::{AdminCredentials, AdminSession, OAuthSession, SessionStore};
pub use usage::{
    buckets, Bucket, Periods, UsageBatch, UsageEvent, UsageImport, UsageStore, ALL_RECORDS,
};

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

/// Every concern together: what an engine is. Code that needs one concern may take the narrow
/// trait (`&dyn KeyStore`); a `&dyn Store` turns into any of them.
#[async_trait::async_trait]
pub trait Store:
    KeyStore + AccountStore + SchedulingStore + LimitStore + UsageStore + SessionStore + DocumentStore
{
    /// `"redis"` or `"embedded"`.
    fn engine(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Where the store is and how it keeps records: what [`open`] needs. `crate::rules` builds it
/// from the configuration (`From<&Config>`), with the rules.
#[derive(Clone)]
pub struct OpenOptions {
    /// `None`: the embedded store under `data_dir`.
    pub redis_url: Option<String>,
    /// How long to wait for Redis at start.
    pub redis_connect_wait: Duration,
    pub data_dir: PathBuf,
    /// Request records kept per key.
    pub records_per_key: usize,
    /// Records kept in the list of every key's requests.
    pub records_kept: usize,
    pub rules: Rules,
}

/// Opens the engine the options ask for.
pub async fn open(options: impl Into<OpenOptions>) -> Result<DynStore, StoreError> {
    let o = options.into();
    match &o.redis_url {
        Some(url) => Ok(Arc::new(
            connect_redis(url, &o).await?.keep_records(o.records_kept),
        )),
        None => Ok(Arc::new(
            embedded::EmbeddedStore::open_with(&o.data_dir, o.records_per_key, o.rules)?
                .keep_records(o.records_kept),
        )),
    }
}

/// Redis may come up after the relay (a compose file, a restart of both): tries again with a
/// growing pause for `REDIS_CONNECT_WAIT_SECS`, then gives up with the last error and how long
/// it tried.
async fn connect_redis(url: &str, o: &OpenOptions) -> Result<redis::RedisStore, StoreError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match redis::RedisStore::connect_with(url, o.records_per_key, o.rules).await {
            Ok(store) => return Ok(store),
            // A malformed URL will not get better by waiting.
            Err(StoreError::Unavailable(cause))
                if started.elapsed() + pause <= o.redis_connect_wait =>
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
