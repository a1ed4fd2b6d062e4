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

async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    if let Some(token) = &state.config.metrics_token {
        let sent = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok =
            sent.is_some_and(|s| crate::crypto::constant_time_eq(s.as_bytes(), token.as_bytes()));
        if !ok {
            return (StatusCode::UNAUTHORIZED, "metrics need the bearer token\n").into_response();
        }
    }
    // Account states are read at scrape time, so the gauge is never stale.
    if let Ok(accounts) = state.store.list_accounts().await {
        if let Ok(described) = crate::routes::admin::accounts::describe(&state, accounts).await {
            let counts: Vec<(String, u64)> = app::domain::ACCOUNT_STATES
                .iter()
                .map(|st| {
                    let n = described.iter().filter(|a| a["state"] == *st).count() as u64;
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
