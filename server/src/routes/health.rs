//! `GET /health`: the relay and its store.

use std::time::Instant;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
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
