//! The state every handler shares, built once at start.

use std::{ops::Deref, sync::Arc, time::Instant};

use tokio_util::task::TaskTracker;

use crate::{
    accounting::Pricing, auth::admin::AdminAuth, config::Config, crypto::Crypto,
    scheduler::Scheduler, store::DynStore,
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: DynStore,
    pub crypto: Crypto,
    pub pricing: Arc<Pricing>,
    /// One pooled client for every upstream call: no per-request client construction.
    pub http: reqwest::Client,
    pub scheduler: Scheduler,
    pub admin: AdminAuth,
    /// Accounting writes spawned off the response path; drained on shutdown.
    pub background: TaskTracker,
    pub started: Instant,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: Config,
        store: DynStore,
        crypto: Crypto,
        pricing: Pricing,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.upstream_connect_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        let admin = AdminAuth::new(store.clone(), config.admin_session_ttl);
        Ok(AppState(Arc::new(Inner {
            config,
            store,
            crypto,
            pricing: Arc::new(pricing),
            http,
            scheduler: Scheduler::default(),
            admin,
            background: TaskTracker::new(),
            started: Instant::now(),
        })))
    }
}
