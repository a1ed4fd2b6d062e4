//! The state every handler shares, built once at start.

use std::{ops::Deref, sync::Arc, time::Instant};

use tokio_util::task::TaskTracker;

use crate::{
    accounting::Pricing,
    auth::admin::AdminAuth,
    config::Config,
    crypto::Crypto,
    scheduler::{leases::LeaseKeeper, Scheduler, Settings},
    store::DynStore,
    upstream::Clients,
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: DynStore,
    pub crypto: Crypto,
    /// The pricing table in force, hot-reloaded (`pricing.load()` on the hot path).
    pub pricing: Arc<crate::accounting::pricing::LivePricing>,
    /// Pooled clients (one per distinct proxy): no per-request client construction.
    pub clients: Clients,
    pub scheduler: Scheduler,
    pub leases: Arc<LeaseKeeper>,
    pub admin: AdminAuth,
    /// Service-wide settings, read from memory.
    pub settings: Arc<crate::settings::SettingsCache>,
    /// Webhook notifications, sent off the request path.
    pub notifier: crate::notify::Notifier,
    /// Settlements spawned off the response path; drained on shutdown.
    pub background: TaskTracker,
    /// Finished requests' usage, coalesced into batched writes; flushed on shutdown.
    pub recorder: crate::accounting::Recorder,
    pub started: Instant,
    /// Key copies the relay authenticates from (checked by each request's first store step).
    pub auth_keys: crate::auth::key_cache::KeyCache,
    /// Every key, as of a store key version (the admin pages read it often; keys change rarely).
    key_cache: parking_lot::Mutex<Option<(u64, Arc<Vec<crate::store::StoredKey>>)>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl crate::accounting::unpriced::Bookkeeping for AppState {
    fn pricing(&self) -> &crate::accounting::pricing::LivePricing {
        &self.pricing
    }
    fn store(&self) -> &DynStore {
        &self.store
    }
}

impl crate::scheduler::health::Marks for AppState {
    fn store(&self) -> &DynStore {
        &self.store
    }
    fn notifier(&self) -> &crate::notify::Notifier {
        &self.notifier
    }
    fn background(&self) -> &TaskTracker {
        &self.background
    }
}

impl crate::upstream::Deps for AppState {
    fn crypto(&self) -> &Crypto {
        &self.crypto
    }
    fn clients(&self) -> &Clients {
        &self.clients
    }
    fn config(&self) -> &Config {
        &self.config
    }
}

impl AppState {
    /// Every stored key (deleted ones too): one version read while nothing changed.
    pub async fn all_keys(
        &self,
    ) -> Result<Arc<Vec<crate::store::StoredKey>>, crate::store::StoreError> {
        // The version is read first: a list fetched after it is at least that new.
        let version = self.store.keys_version().await?;
        if let Some((cached, keys)) = &*self.key_cache.lock() {
            if *cached == version {
                return Ok(keys.clone());
            }
        }
        let keys = Arc::new(self.store.list_keys().await?);
        *self.key_cache.lock() = Some((version, keys.clone()));
        Ok(keys)
    }

    /// What authenticating a client's key reads (`auth::api_key`).
    pub fn key_lookup(&self) -> crate::auth::api_key::KeyLookup<'_> {
        crate::auth::api_key::KeyLookup {
            store: &self.store,
            crypto: &self.crypto,
            copies: &self.auth_keys,
            prefix: &self.config.api_key_prefix,
        }
    }

    pub fn scheduling(&self) -> Settings {
        Settings {
            sticky_ttl: self.config.sticky_ttl,
            sticky_renew_below: self.config.sticky_renew_below,
            lease_ttl: self.config.lease_ttl,
            dedicated_fallback: self.config.dedicated_fallback,
        }
    }

    pub fn new(
        config: Config,
        store: DynStore,
        crypto: Crypto,
        pricing: Pricing,
    ) -> Result<Self, reqwest::Error> {
        let clients = Clients::new(config.upstream_connect_timeout)?;
        let pricing = crate::accounting::pricing::LivePricing::new(
            pricing,
            crate::accounting::pricing::PricingSources::from_config(&config),
        )?;
        pricing.spawn_refreshers();
        let leases = Arc::new(LeaseKeeper::default());
        leases.spawn_refresher(store.clone(), config.lease_ttl);
        let admin = AdminAuth::new(
            store.clone(),
            config.admin_session_ttl,
            config.admin_session_max,
        );
        let settings = Arc::new(crate::settings::SettingsCache::default());
        settings.spawn_refresher(store.clone(), crypto.clone());
        let source = settings.clone();
        let notifier = crate::notify::Notifier::start(
            Arc::new(move || source.get()),
            crate::notify::NotifyConfig::default(),
        );
        let recorder = crate::accounting::Recorder::start(
            store.clone(),
            config.timezone_offset_hours,
            config.accounting_flush,
        );
        Ok(AppState(Arc::new(Inner {
            config,
            store,
            crypto,
            pricing,
            clients,
            scheduler: Scheduler::default(),
            leases,
            admin,
            settings,
            notifier,
            background: TaskTracker::new(),
            recorder,
            started: Instant::now(),
            auth_keys: Default::default(),
            key_cache: parking_lot::Mutex::new(None),
        })))
    }
}
