//! Which account serves a request. For now: the key's dedicated account if it has one,
//! otherwise the shared pool of active, schedulable accounts that support the model, by
//! priority (lower first) and then least recently used. One store round trip: the account
//! records are cached and re-read only when their version changes.

use std::{collections::HashMap, sync::Arc};

use app::domain::{ApiKey, Platform};
use parking_lot::Mutex;

use crate::{
    relay::error::RelayError,
    store::{DynStore, StoredAccount},
};

#[derive(Default)]
pub struct Scheduler {
    cache: Mutex<Option<(u64, Arc<Vec<StoredAccount>>)>>,
    /// Picks made by this instance, so concurrent requests rotate even before their
    /// last-used times reach the store.
    local_picks: Mutex<HashMap<String, i64>>,
}

impl Scheduler {
    pub async fn select(
        &self,
        store: &DynStore,
        key: &ApiKey,
        platform: Platform,
        model: &str,
    ) -> Result<StoredAccount, RelayError> {
        let known = self.cache.lock().as_ref().map(|(v, _)| *v);
        let snap = store.account_snapshot(known).await?;
        let accounts = {
            let mut cache = self.cache.lock();
            match (snap.accounts, cache.as_ref()) {
                (Some(fresh), _) => {
                    let fresh = Arc::new(fresh);
                    *cache = Some((snap.version, fresh.clone()));
                    fresh
                }
                (None, Some((_, cached))) => cached.clone(),
                (None, None) => Arc::new(Vec::new()),
            }
        };
        let usable = |a: &StoredAccount| {
            a.account.platform == platform
                && a.account.is_active
                && a.account.schedulable
                && a.account.supports_model(model)
        };

        if let Some(id) = key
            .claude_console_account_id
            .as_deref()
            .filter(|id| !id.is_empty())
        {
            return match accounts.iter().find(|a| a.account.id == id) {
                Some(a) if usable(a) => {
                    self.mark_picked(&a.account.id);
                    Ok(a.clone())
                }
                _ => Err(RelayError::DedicatedUnavailable(format!(
                    "The dedicated account of this API key is unavailable for model {model}"
                ))),
            };
        }

        let picks = self.local_picks.lock();
        let last_used = |a: &StoredAccount| {
            let stored = snap.last_used_ms.get(&a.account.id).copied().unwrap_or(0);
            let local = picks.get(&a.account.id).copied().unwrap_or(0);
            stored.max(local)
        };
        let chosen = accounts
            .iter()
            .filter(|a| usable(a))
            .min_by_key(|a| (a.account.priority, last_used(a)))
            .cloned();
        drop(picks);
        match chosen {
            Some(a) => {
                self.mark_picked(&a.account.id);
                Ok(a)
            }
            None => Err(RelayError::NoAccount(format!(
                "No available Claude accounts support the requested model: {model}"
            ))),
        }
    }

    fn mark_picked(&self, id: &str) {
        let now = chrono::Utc::now().timestamp_millis();
        let mut picks = self.local_picks.lock();
        // Strictly increasing, so two picks in the same millisecond still order.
        let next = picks
            .values()
            .copied()
            .max()
            .map_or(now, |m| m.max(now - 1) + 1)
            .max(now);
        picks.insert(id.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use app::domain::Account;

    fn acc(id: &str, priority: u32) -> StoredAccount {
        StoredAccount {
            account: Account {
                id: id.into(),
                priority,
                ..Default::default()
            },
            secret: String::new(),
        }
    }

    #[tokio::test]
    async fn priority_then_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
        store.put_account(&acc("low", 10)).await.unwrap();
        store.put_account(&acc("a", 50)).await.unwrap();
        store.put_account(&acc("b", 50)).await.unwrap();
        let s = Scheduler::default();
        let key = ApiKey::default();
        let pick = |_: ()| s.select(&store, &key, Platform::ClaudeConsole, "m");
        assert_eq!(pick(()).await.unwrap().account.id, "low");
        assert_eq!(pick(()).await.unwrap().account.id, "low");

        let mut low = store.get_account("low").await.unwrap().unwrap();
        low.account.schedulable = false;
        store.put_account(&low).await.unwrap();
        let first = pick(()).await.unwrap().account.id;
        let second = pick(()).await.unwrap().account.id;
        let third = pick(()).await.unwrap().account.id;
        assert_ne!(first, second, "equal priority rotates");
        assert_eq!(first, third);

        let mut only_x = acc("x-only", 1);
        only_x.account.supported_models = vec!["model-x".into()];
        store.put_account(&only_x).await.unwrap();
        assert_eq!(
            s.select(&store, &key, Platform::ClaudeConsole, "model-x")
                .await
                .unwrap()
                .account
                .id,
            "x-only"
        );
        assert_ne!(pick(()).await.unwrap().account.id, "x-only");
    }

    #[tokio::test]
    async fn dedicated_binding_never_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
        store.put_account(&acc("pool", 1)).await.unwrap();
        let mut ded = acc("ded", 90);
        ded.account.is_active = false;
        store.put_account(&ded).await.unwrap();
        let s = Scheduler::default();
        let key = ApiKey {
            claude_console_account_id: Some("ded".into()),
            ..Default::default()
        };
        let err = s
            .select(&store, &key, Platform::ClaudeConsole, "m")
            .await
            .unwrap_err();
        assert!(matches!(err, RelayError::DedicatedUnavailable(_)));
        ded.account.is_active = true;
        store.put_account(&ded).await.unwrap();
        assert_eq!(
            s.select(&store, &key, Platform::ClaudeConsole, "m")
                .await
                .unwrap()
                .account
                .id,
            "ded"
        );
        let empty = Scheduler::default();
        store.delete_account("pool").await.unwrap();
        store.delete_account("ded").await.unwrap();
        let err = empty
            .select(&store, &ApiKey::default(), Platform::ClaudeConsole, "m")
            .await
            .unwrap_err();
        assert!(matches!(err, RelayError::NoAccount(_)));
    }
}
