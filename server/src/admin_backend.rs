//! The server side of the admin pages' server functions (`app::backend::AdminBackend`).

use std::net::IpAddr;

use app::{
    backend::{AdminBackend, LoginGrant, LoginRefusal},
    domain::{DashboardSummary, KeyStats},
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
