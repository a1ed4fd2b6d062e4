//! The Claude OAuth (PKCE) and setup-token flows: start an authorization, then exchange the
//! pasted code for tokens that stay on the server until an account is created from them.

use std::time::Duration;

use app::domain::ProxyConfig;

use super::{account_input::ProxyInput, AdminError};
use crate::{
    state::AppState,
    store::OAuthSession,
    upstream::{claude_oauth, AccountSecrets},
};

/// How long a PKCE authorization may take.
const OAUTH_SESSION_TTL: Duration = Duration::from_secs(600);

/// An authorization in progress: open `auth_url`, then exchange the code under `session_id`.
pub struct Started {
    pub auth_url: String,
    pub session_id: String,
}

/// Starts an authorization (a setup token's narrower scopes when `setup_token`), through
/// `proxy` when given.
pub async fn start(
    state: &AppState,
    proxy: Option<ProxyInput>,
    setup_token: bool,
) -> Result<Started, AdminError> {
    let scopes = if setup_token {
        claude_oauth::SCOPES_SETUP
    } else {
        claude_oauth::SCOPES_FULL
    };
    let (verifier, challenge) = claude_oauth::pkce();
    let oauth_state = claude_oauth::random_state();
    let session_id = uuid::Uuid::new_v4().to_string();
    let session = OAuthSession {
        code_verifier: verifier,
        state: oauth_state.clone(),
        scopes: scopes.to_string(),
        proxy_secret: proxy
            .as_ref()
            .and_then(|p| p.password.as_ref())
            .map(|pw| state.crypto.encrypt(pw)),
        proxy: proxy.map(|p| ProxyConfig {
            kind: p.kind,
            host: p.host,
            port: p.port,
            username: p.username,
        }),
        ..Default::default()
    };
    state
        .store
        .put_oauth_session(&session_id, &session, OAUTH_SESSION_TTL)
        .await?;
    let auth_url = claude_oauth::authorize_url(&state.config, &challenge, &oauth_state, scopes);
    Ok(Started {
        auth_url,
        session_id,
    })
}

/// The tokens of an exchanged session, described (the tokens themselves stay on the server).
pub struct Exchanged {
    pub session_id: String,
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
    pub has_refresh_token: bool,
}

/// Exchanges the pasted code (or the whole callback URL) of session `session_id` for tokens.
pub async fn exchange(
    state: &AppState,
    session_id: &str,
    pasted: &str,
) -> Result<Exchanged, AdminError> {
    let mut session = state
        .store
        .get_oauth_session(session_id)
        .await?
        .ok_or_else(|| AdminError::BadRequest("sessionId is unknown or expired".into()))?;
    let code = claude_oauth::parse_code(pasted).ok_or_else(|| {
        AdminError::BadRequest("authorizationCode or callbackUrl is required".into())
    })?;
    let password = session
        .proxy_secret
        .as_ref()
        .and_then(|s| state.crypto.decrypt(s).ok());
    let http = state
        .clients
        .for_proxy(session.proxy.as_ref(), password.as_deref())
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let tokens = claude_oauth::exchange_code(
        &http,
        &state.config,
        &code,
        &session.code_verifier,
        &session.state,
    )
    .await
    .map_err(|e| AdminError::BadRequest(format!("code exchange failed: {e}")))?;
    let sealed = AccountSecrets {
        access_token: Some(tokens.access_token.clone()),
        refresh_token: tokens.refresh_token.clone(),
        ..Default::default()
    };
    session.tokens = Some(
        state
            .crypto
            .encrypt(&serde_json::to_string(&sealed).unwrap_or_default()),
    );
    session.expires_at = tokens.expires_at_ms;
    session.granted_scopes = tokens.scopes.clone();
    state
        .store
        .put_oauth_session(session_id, &session, OAUTH_SESSION_TTL)
        .await?;
    Ok(Exchanged {
        session_id: session_id.to_string(),
        expires_at: tokens.expires_at_ms,
        scopes: tokens.scopes,
        has_refresh_token: tokens.refresh_token.is_some(),
    })
}
