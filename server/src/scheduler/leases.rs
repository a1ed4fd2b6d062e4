//! Concurrency leases held by requests in flight. A lease expires on its own (so a crashed
//! instance frees its slots); while its request runs, this keeper extends it, in one store
//! round trip for all of them.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;

use crate::store::DynStore;

pub use crate::store::scheduling::Lease;

#[derive(Default)]
pub struct LeaseKeeper {
    live: Mutex<HashMap<Lease, ()>>,
}

impl LeaseKeeper {
    pub fn hold(&self, lease: Lease) {
        self.live.lock().insert(lease, ());
    }

    pub fn forget(&self, lease: &Lease) {
        self.live.lock().remove(lease);
    }

    pub fn held(&self) -> Vec<Lease> {
        self.live.lock().keys().cloned().collect()
    }

    /// Extends every held lease each third of its lifetime, until the process ends.
    pub fn spawn_refresher(self: &Arc<Self>, store: DynStore, ttl: Duration) {
        // Weak references: the refresher must not keep a stopped relay's store open.
        let keeper = Arc::downgrade(self);
        let store = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                let (Some(keeper), Some(store)) = (keeper.upgrade(), store.upgrade()) else {
                    return;
                };
                let held = keeper.held();
                if held.is_empty() {
                    continue;
                }
                if let Err(e) = store.refresh_leases(&held, ttl).await {
                    tracing::warn!(error = %e, leases = held.len(), "lease refresh failed");
                }
            }
        });
    }
}
