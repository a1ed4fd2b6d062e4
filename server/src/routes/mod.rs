//! Every route table in one place: the relay surfaces, the admin API, the public stats, health,
//! and the Leptos admin pages with their server functions.

pub mod admin;
pub mod api_stats;
mod auth_body;
pub mod claude;
pub mod client;
pub mod csrf;
pub mod gemini;
pub mod health;
pub(crate) mod key_first;
pub mod openai;
mod oversized;

use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{header, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Json, Router,
};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use serde_json::json;
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    services::ServeDir,
    set_header::SetResponseHeaderLayer,
};

use crate::{admin_backend::AdminPages, state::AppState};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A short random request id, unless the client sent one.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&crate::crypto::random_hex(8))
            .ok()
            .map(RequestId::new)
    }
}

/// Leptos' options from its environment (`cargo leptos watch` sets the reload port and
/// friends there), with the site root from our own configuration.
pub fn leptos_options(state: &AppState) -> LeptosOptions {
    let site_root = Arc::<str>::from(state.config.site_root.to_string_lossy().as_ref());
    match leptos::config::get_configuration(None) {
        Ok(conf) => {
            let mut options = conf.leptos_options;
            options.site_root = site_root;
            options
        }
        Err(e) => {
            tracing::warn!(error = %e, "LEPTOS_* environment ignored");
            LeptosOptions::builder()
                .output_name(Arc::<str>::from("crs"))
                .site_root(site_root)
                .site_pkg_dir(Arc::<str>::from("pkg"))
                .build()
        }
    }
}

/// The whole application: relay, admin API, pages and static files.
pub fn app(state: AppState) -> Router {
    let options = leptos_options(&state);
    let backend = app::backend::Backend(Arc::new(AdminPages(state.clone())));
    let pages = Router::new()
        .leptos_routes_with_context(
            &options,
            generate_route_list(app::App),
            move || provide_context(backend.clone()),
            {
                let options = options.clone();
                move || app::shell(options.clone())
            },
        )
        .with_state(options);

    let static_files =
        ServeDir::new(&state.config.site_root).not_found_service(axum::routing::any(not_found));
    let body_limit = state.config.request_max_bytes;
    let client_policy = Arc::new(client::ClientPolicy {
        proxies: state.config.trusted_proxies.clone(),
        public_https: state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
    });

    // The relay routes: API keys, never cookies or sign-in bodies, so the admin surface's
    // layers (sign-in body cap, client address, CSRF) stay off their hot path.
    let relay = Router::new()
        .merge(claude::routes(&state))
        .merge(openai::routes(&state))
        .merge(gemini::routes(&state))
        .with_state(state.clone());
    let web = Router::new()
        .merge(admin::routes())
        .merge(api_stats::routes())
        .merge(health::routes())
        // As the original: the root is the public stats page.
        .route("/", get(|| async { Redirect::to("/admin-next/api-stats") }))
        .with_state(state)
        .merge(pages)
        .fallback_service(static_files)
        .layer(axum::middleware::from_fn(auth_body::limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            client::attach(client_policy.clone(), req, next)
        }))
        .layer(axum::middleware::from_fn(csrf::refuse_cross_site));

    relay
        .merge(web)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            oversized::refuse_oversize(body_limit, req, next)
        }))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // No script-src: the hydration and theme scripts are inline and Leptos gives them no
        // nonce, so the policy is limited to what cannot break the app.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; form-action 'self'",
            ),
        ))
        // Same-origin only: a form posted without WASM returns to its page (Leptos redirects
        // to the Referer), and no other site ever sees our URLs.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), NewRequestId))
}

async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "Not Found", "message": format!("Route {} not found", req.uri().path())})),
    )
        .into_response()
}
