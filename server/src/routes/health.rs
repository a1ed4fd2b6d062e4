//! `GET /health`: the relay and its store. `GET /metrics`: Prometheus metrics.

use std::time::Instant;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let t = Instant::now();
    let store = state.store.ping().await;
    let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (status, healthy) = match store {
        Ok(()) => (StatusCode::OK, true),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, false),
    };
    (
        status,
        Json(json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "service": "crs",
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": state.started.elapsed().as_secs(),
            "store": {
                "engine": state.store.engine(),
                "status": if healthy { "ok" } else { "unavailable" },
                "latencyMs": latency_ms,
            },
        })),
    )
}

/// Who may read `/metrics` (it names accounts and shows costs).
#[derive(Debug, PartialEq)]
enum MetricsAccess {
    Open,
    /// A token is configured and the request did not carry it.
    NeedToken,
    /// Reachable from other hosts and no token configured: off.
    Off,
}

/// With `METRICS_TOKEN` the bearer token is required; without one the metrics are open only
/// when the relay listens on loopback (nobody else can reach them), else off (404).
fn metrics_access(
    host: std::net::IpAddr,
    token: Option<&str>,
    sent: Option<&str>,
) -> MetricsAccess {
    match token {
        Some(token) => {
            let ok = sent
                .is_some_and(|s| crate::crypto::constant_time_eq(s.as_bytes(), token.as_bytes()));
            if ok {
                MetricsAccess::Open
            } else {
                MetricsAccess::NeedToken
            }
        }
        None if host.is_loopback() => MetricsAccess::Open,
        None => MetricsAccess::Off,
    }
}

async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let sent = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match metrics_access(
        state.config.host,
        state.config.metrics_token.as_deref(),
        sent,
    ) {
        MetricsAccess::Open => {}
        MetricsAccess::NeedToken => {
            return (StatusCode::UNAUTHORIZED, "metrics need the bearer token\n").into_response()
        }
        MetricsAccess::Off => {
            return (
                StatusCode::NOT_FOUND,
                "metrics are off: set METRICS_TOKEN (sent as a bearer token) to serve them, \
                 or listen on loopback only (HOST=127.0.0.1)\n",
            )
                .into_response()
        }
    }
    // Account states are read at scrape time, so the gauge is never stale.
    if let Ok(accounts) = state.store.list_accounts().await {
        if let Ok(described) = crate::admin::accounts::describe(&state, accounts).await {
            let counts: Vec<(String, u64)> = app::domain::ACCOUNT_STATES
                .iter()
                .map(|st| {
                    let n = described.iter().filter(|a| a.state == *st).count() as u64;
                    (st.to_string(), n)
                })
                .collect();
            crate::telemetry::accounts_by_state(&counts);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn metrics_need_a_token_unless_only_loopback_can_reach_them() {
        let any = IpAddr::from([0, 0, 0, 0]);
        let lan = IpAddr::from([10, 0, 0, 5]);
        let lo = IpAddr::from([127, 0, 0, 1]);
        let lo6: IpAddr = "::1".parse().unwrap();
        assert_eq!(metrics_access(lo, None, None), MetricsAccess::Open);
        assert_eq!(metrics_access(lo6, None, None), MetricsAccess::Open);
        assert_eq!(metrics_access(any, None, None), MetricsAccess::Off);
        assert_eq!(metrics_access(lan, None, Some("x")), MetricsAccess::Off);
        for host in [any, lo] {
            assert_eq!(
                metrics_access(host, Some("t"), None),
                MetricsAccess::NeedToken
            );
            assert_eq!(
                metrics_access(host, Some("t"), Some("u")),
                MetricsAccess::NeedToken
            );
            assert_eq!(
                metrics_access(host, Some("t"), Some("t")),
                MetricsAccess::Open
            );
        }
    }
}
