//! `crs`: the relay, its scheduler, limits, accounting and store, and the server side of the
//! admin app. `main.rs` only parses the command line and calls [`start`].

// The admin pages' view types nest deeply.
#![recursion_limit = "256"]

pub mod accounting;
pub mod admin;
pub mod admin_backend;
pub mod auth;
pub mod backup;
pub mod config;
pub mod crypto;
pub mod import_crs;
pub mod limits;
#[cfg(any(test, feature = "test-support"))]
pub mod mock_upstream;
pub mod notify;
pub mod relay;
pub mod routes;
pub mod rules;
pub mod scheduler;
pub mod settings;
pub mod state;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod timestamps;
pub mod upstream;
pub mod users;

use std::{future::Future, net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{config::Config, crypto::Crypto, state::AppState};

/// Opens the store, creates the admin on first start, loads pricing: everything a server
/// needs before it accepts a connection. Errors are one line each.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let encryption_key = match &config.encryption_key {
        Some(k) => k.clone(),
        None => embedded_encryption_key(&config.data_dir)?,
    };
    let store = store::open(&config)
        .await
        .with_context(|| match &config.redis_url {
            Some(url) => format!("cannot connect to Redis at {}", redis_address(url)),
            None => format!(
                "cannot open the embedded store in {}",
                config.data_dir.display()
            ),
        })?;
    store.ping().await.context("the store does not answer")?;
    if let Some(password) = auth::admin::ensure_admin(
        &store,
        &config.admin_username,
        config.admin_password.as_deref(),
    )
    .await?
    {
        // Printed once, on the console only: it is never logged or stored in clear.
        eprintln!(
            "crs: created admin user {:?} with generated password: {password}\ncrs: change it after signing in; it will not be shown again",
            config.admin_username
        );
    }
    crate::telemetry::install();
    let pricing = accounting::pricing::load_at_start(&config)?;
    let state = AppState::new(config, store, Crypto::new(&encryption_key), pricing)?;
    state
        .settings
        .reload(&state.store, &state.crypto)
        .await
        .context("cannot read the settings")?;
    Ok(state)
}

/// The host and port (or socket path) of a Redis URL, without its credentials, for messages.
fn redis_address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    if url.starts_with("unix://") {
        return rest.split('?').next().unwrap_or(rest);
    }
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// With the embedded store and no `ENCRYPTION_KEY`, a key is generated once and kept next to
/// the data it protects, so a first run needs no set-up.
fn embedded_encryption_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("encryption.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let k = existing.trim().to_string();
        anyhow::ensure!(
            k.len() >= 32,
            "{} holds a key shorter than 32 characters",
            path.display()
        );
        return Ok(k);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create DATA_DIR {}", dir.display()))?;
    let key = crypto::random_hex(32);
    std::fs::write(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    tracing::warn!(path = %path.display(), "ENCRYPTION_KEY not set: generated one for the embedded store");
    Ok(key)
}

/// A running relay (used by `main` and by the tests).
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: no new connections, in-flight requests finish, accounting is flushed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

/// Binds `HOST:PORT` (port 0 picks a free one) and serves until `stop`.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let bind = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let state = build_state(config).await?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(serve(listener, state.clone(), async {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        state,
        shutdown: Some(tx),
        handle,
    })
}

/// An error and its causes on one line (reqwest and hyper hide the useful part in `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// How long in-flight requests (long streams included) may run after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = routes::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // Without TCP_NODELAY, small SSE writes wait for the client's delayed ACK (~40 ms each).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let server = async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "server error");
        }
    };
    tokio::pin!(server);
    tokio::select! {
        _ = &mut server => {}
        _ = async { let _ = stop_rx.wait_for(|s| *s).await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("drain timeout: closing remaining connections");
        }
    }
    // Settlements first (they may still queue usage), then the usage they queued.
    state.background.close();
    let drained = async {
        state.background.wait().await;
        state.recorder.close().await;
    };
    if tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .is_err()
    {
        tracing::error!("accounting did not finish within 10 s of shutdown");
    }
}
