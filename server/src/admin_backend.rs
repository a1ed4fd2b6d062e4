//! The server side of the admin pages' server functions (`app::backend::AdminBackend`).

use std::net::IpAddr;

use app::{
    backend::{AdminBackend, LoginGrant, LoginRefusal},
    domain::{AccountRow, DashboardSummary, KeyRow, KeyStats},
};

use crate::state::AppState;

pub struct AdminPages(pub AppState);

#[async_trait::async_trait]
impl AdminBackend for AdminPages {
    async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginGrant, LoginRefusal> {
        self.0.admin.login(username, password, client).await
    }

    async fn session_user(&self, token: &str) -> Option<String> {
        self.0.admin.session_user(token).await
    }

    async fn logout(&self, token: &str) {
        self.0.admin.logout(token).await
    }

    async fn keys(&self) -> Result<Vec<KeyRow>, String> {
        let state = &self.0;
        let fail = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "keys page: store error");
            "The store is unavailable; retry shortly".to_string()
        };
        let mut keys: Vec<_> = state
            .store
            .list_keys()
            .await
            .map_err(fail)?
            .into_iter()
            .filter(|k| !k.key.is_deleted)
            .collect();
        keys.sort_by(|a, b| b.key.created_at.cmp(&a.key.created_at));
        let names: Vec<String> = keys
            .iter()
            .map(|k| crate::store::buckets::key_total(&k.key.id))
            .collect();
        let totals = state.store.usage(&names).await.map_err(fail)?;
        let last_used = state.store.keys_last_used().await.map_err(fail)?;
        let mut rows = Vec::with_capacity(keys.len());
        for (k, total) in keys.into_iter().zip(totals) {
            let report = crate::routes::admin::keys::limits_report(state, &k.key)
                .await
                .map_err(fail)?;
            rows.push(KeyRow {
                last_used_at: last_used
                    .get(&k.key.id)
                    .and_then(|ms| chrono::DateTime::from_timestamp_millis(*ms))
                    .map(crate::auth::api_key::format_time),
                id: k.key.id,
                name: k.key.name,
                key_preview: k.key.key_preview,
                is_active: k.key.is_active,
                created_at: k.key.created_at,
                total,
                limits: crate::routes::api_stats::limit_bars(&report),
            });
        }
        Ok(rows)
    }

    async fn create_key(&self, name: &str, daily_cost_limit: f64) -> Result<String, String> {
        let input = serde_json::from_value(
            serde_json::json!({"name": name, "dailyCostLimit": daily_cost_limit}),
        )
        .map_err(|e| e.to_string())?;
        crate::routes::admin::keys::new_key(&self.0, input)
            .await
            .map(|(_, secret)| secret)
            .map_err(|e| e.message())
    }

    async fn accounts(&self) -> Result<Vec<AccountRow>, String> {
        let state = &self.0;
        let accounts = state
            .store
            .list_accounts()
            .await
            .map_err(|e| e.to_string())?;
        let described = crate::routes::admin::accounts::describe(state, accounts)
            .await
            .map_err(|e| e.message())?;
        let mut rows: Vec<AccountRow> = described
            .iter()
            .map(|v| AccountRow {
                id: v["id"].as_str().unwrap_or_default().to_string(),
                name: v["name"].as_str().unwrap_or_default().to_string(),
                platform: v["platform"].as_str().unwrap_or_default().to_string(),
                state: v["state"].as_str().unwrap_or_default().to_string(),
                priority: v["priority"].as_u64().unwrap_or(0) as u32,
                last_used_at: v["lastUsedAt"].as_str().map(str::to_string),
                resting_until: v["cooldowns"]
                    .as_array()
                    .and_then(|c| c.iter().filter_map(|c| c["untilMs"].as_i64()).max())
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(crate::auth::api_key::format_time),
            })
            .collect();
        rows.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        Ok(rows)
    }

    async fn account_action(&self, id: &str, action: &str) -> Result<(), String> {
        let state = &self.0;
        let mut account = state
            .store
            .get_account(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("Account not found")?;
        match action {
            "toggle-schedulable" => {
                account.account.schedulable = !account.account.schedulable;
                state
                    .store
                    .put_account(&account)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "reset-status" => crate::scheduler::health::reset(state, &mut account)
                .await
                .map_err(|e| e.to_string())?,
            other => return Err(format!("unknown action {other:?}")),
        }
        state.scheduler.invalidate();
        tracing::info!(account = %id, action, "account changed from the admin pages");
        Ok(())
    }

    async fn key_action(&self, id: &str, action: &str) -> Result<(), String> {
        let state = &self.0;
        let mut stored = state
            .store
            .get_key(id)
            .await
            .map_err(|e| e.to_string())?
            .filter(|k| !k.key.is_deleted)
            .ok_or("API key not found")?;
        match action {
            "enable" => stored.key.is_active = true,
            "disable" => stored.key.is_active = false,
            // Soft delete, as the admin API: the key stops working, its usage stays.
            "delete" => {
                stored.key.is_deleted = true;
                stored.key.is_active = false;
            }
            other => return Err(format!("unknown action {other:?}")),
        }
        state
            .store
            .update_key(&stored)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(key = %id, action, "key changed from the admin pages");
        Ok(())
    }

    async fn key_stats(&self, key: &str) -> Result<KeyStats, String> {
        crate::routes::api_stats::key_stats(&self.0, key)
            .await
            .map_err(|(_, m)| m.to_string())
    }

    async fn dashboard(&self) -> Result<DashboardSummary, String> {
        crate::routes::admin::dashboard_summary(&self.0)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "dashboard: store error");
                "The store is unavailable; retry shortly".to_string()
            })
    }
}
