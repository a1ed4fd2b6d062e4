//! The domain's rules, handed to the store's engines. Each decision the engines apply
//! atomically is a pure function with its Lua mirror beside it — admission
//! (`limits/admission.rs`, `admit.lua`, `settle.lua`), the account pick (`scheduler/pick.rs`,
//! `pick.lua`) and the login throttle's count (`auth/throttle.rs`, `login_failure.lua`). The
//! store sits below those layers and imports none of them; this module, above them all, puts
//! them into one [`Rules`] and opens the engines with it. Nothing imports this module: the
//! constructors below are methods of the engines and an `Into` for [`crate::store::open`].

use std::path::Path;

use crate::{
    auth::throttle,
    config::Config,
    limits::admission,
    scheduler::pick,
    store::{embedded::EmbeddedStore, redis::RedisStore, OpenOptions, Rules, StoreError},
};

/// The rules every engine applies.
pub fn rules() -> Rules {
    Rules {
        admit: admission::decide,
        admit_lua: include_str!("limits/admit.lua"),
        settle_lua: include_str!("limits/settle.lua"),
        pick: pick::decide,
        pick_lua: include_str!("scheduler/pick.lua"),
        after_login_failure: throttle::after_failure,
        login_failure_lua: include_str!("auth/login_failure.lua"),
        forget_login_failures_after: throttle::FORGET_AFTER,
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database under `dir` with the domain's rules.
    pub fn open(dir: &Path, records_per_key: usize) -> Result<Self, StoreError> {
        Self::open_with(dir, records_per_key, rules())
    }
}

impl RedisStore {
    /// Connects to Redis at `url` with the domain's rules.
    pub async fn connect(url: &str, records_per_key: usize) -> Result<Self, StoreError> {
        Self::connect_with(url, records_per_key, rules()).await
    }
}

/// What `store::open(&config)` opens: the configured engine with the domain's rules.
impl From<&Config> for OpenOptions {
    fn from(config: &Config) -> Self {
        OpenOptions {
            redis_url: config.redis_url.clone(),
            redis_connect_wait: config.redis_connect_wait,
            data_dir: config.data_dir.clone(),
            records_per_key: config.usage_records_per_key,
            records_kept: config.request_records_kept,
            rules: rules(),
        }
    }
}
