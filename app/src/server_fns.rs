//! Server functions of the admin pages. Each checks the admin session itself.

use leptos::prelude::*;

use crate::domain::{AccountRow, DashboardSummary, KeyRow, KeyStats};

#[cfg(feature = "ssr")]
mod session {
    use crate::{backend::Backend, SESSION_COOKIE};
    use leptos::prelude::*;

    pub fn backend() -> Result<Backend, ServerFnError> {
        use_context::<Backend>().ok_or_else(|| ServerFnError::new("admin backend unavailable"))
    }

    /// The session token from the request's cookie, if any.
    pub async fn token() -> Option<String> {
        let headers: http::HeaderMap = leptos_axum::extract().await.ok()?;
        cookie_value(&headers, SESSION_COOKIE)
    }

    pub fn cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    pub fn set_cookie(value: &str, max_age: u64) {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            let cookie = format!(
                "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
            );
            if let Ok(v) = http::HeaderValue::from_str(&cookie) {
                resp.append_header(http::header::SET_COOKIE, v);
            }
        }
    }

    /// Server-function failures default to 500; a refused login is the caller's problem.
    pub fn set_status(code: u16) {
        if let (Some(resp), Ok(status)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            http::StatusCode::from_u16(code),
        ) {
            resp.set_status(status);
        }
    }

    pub async fn client_ip() -> Option<std::net::IpAddr> {
        let info: axum::extract::ConnectInfo<std::net::SocketAddr> =
            leptos_axum::extract().await.ok()?;
        Some(info.0.ip())
    }
}

/// Sign in; on success the session cookie is set and the browser goes to the dashboard.
#[server(prefix = "/admin-next/api", endpoint = "login")]
pub async fn admin_login(username: String, password: String) -> Result<(), ServerFnError> {
    use crate::backend::LoginRefusal;
    let backend = session::backend()?;
    let ip = session::client_ip().await;
    match backend.0.login(&username, &password, ip).await {
        Ok(grant) => {
            session::set_cookie(&grant.token, grant.expires_in_secs);
            leptos_axum::redirect("/admin-next/dashboard");
            Ok(())
        }
        Err(refusal) => {
            let (status, message) = match refusal {
                LoginRefusal::InvalidCredentials => {
                    (401, "Invalid username or password".to_string())
                }
                LoginRefusal::TooManyAttempts(secs) => (
                    429,
                    format!("Too many failed attempts; try again in {secs} s"),
                ),
                LoginRefusal::Unavailable => (503, "Login is unavailable right now".to_string()),
            };
            session::set_status(status);
            Err(ServerFnError::new(message))
        }
    }
}

#[server(prefix = "/admin-next/api", endpoint = "logout")]
pub async fn admin_logout() -> Result<(), ServerFnError> {
    let backend = session::backend()?;
    if let Some(token) = session::token().await {
        backend.0.logout(&token).await;
    }
    session::set_cookie("", 0);
    leptos_axum::redirect("/admin-next/login");
    Ok(())
}

/// The error text the pages use to recognise a missing or expired session.
pub const UNAUTHORIZED: &str = "unauthorized";

#[cfg(feature = "ssr")]
async fn require_admin() -> Result<(crate::backend::Backend, String), ServerFnError> {
    let backend = session::backend()?;
    let user = match session::token().await {
        Some(token) => backend.0.session_user(&token).await,
        None => None,
    };
    match user {
        Some(u) => Ok((backend, u)),
        None => {
            leptos_axum::redirect("/admin-next/login");
            Err(ServerFnError::new(UNAUTHORIZED))
        }
    }
}

#[server(prefix = "/admin-next/api", endpoint = "keys")]
pub async fn get_keys() -> Result<Vec<KeyRow>, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.keys().await.map_err(ServerFnError::new)
}

/// Creates a key from the page's form; the key comes back once.
#[server(prefix = "/admin-next/api", endpoint = "create-key")]
pub async fn create_api_key(
    name: String,
    daily_cost_limit: String,
) -> Result<String, ServerFnError> {
    let (backend, _) = require_admin().await?;
    if name.trim().is_empty() {
        session::set_status(400);
        return Err(ServerFnError::new("name is required"));
    }
    let limit = match daily_cost_limit.trim() {
        "" => 0.0,
        v => match v.parse::<f64>() {
            Ok(x) if x >= 0.0 && x.is_finite() => x,
            _ => {
                session::set_status(400);
                return Err(ServerFnError::new("daily cost limit must be a number ≥ 0"));
            }
        },
    };
    backend
        .0
        .create_key(name.trim(), limit)
        .await
        .map_err(ServerFnError::new)
}

#[server(prefix = "/admin-next/api", endpoint = "accounts")]
pub async fn get_accounts() -> Result<Vec<AccountRow>, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.accounts().await.map_err(ServerFnError::new)
}

#[server(prefix = "/admin-next/api", endpoint = "account-action")]
pub async fn account_action(id: String, action: String) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.account_action(&id, &action).await.map_err(|e| {
        session::set_status(400);
        ServerFnError::new(e)
    })
}

#[server(prefix = "/admin-next/api", endpoint = "key-action")]
pub async fn key_action(id: String, action: String) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.key_action(&id, &action).await.map_err(|e| {
        session::set_status(400);
        ServerFnError::new(e)
    })
}

#[server(prefix = "/admin-next/api", endpoint = "dashboard")]
pub async fn get_dashboard() -> Result<DashboardSummary, ServerFnError> {
    let backend = session::backend()?;
    let user = match session::token().await {
        Some(token) => backend.0.session_user(&token).await,
        None => None,
    };
    let Some(username) = user else {
        // A 302 during server rendering, a client-side navigation after hydration.
        leptos_axum::redirect("/admin-next/login");
        return Err(ServerFnError::new(UNAUTHORIZED));
    };
    let mut summary = backend.0.dashboard().await.map_err(ServerFnError::new)?;
    summary.username = username;
    Ok(summary)
}

/// The key holder's stats. The key travels in the POST body only, never in a URL.
#[server(prefix = "/admin-next/api", endpoint = "key-stats")]
pub async fn lookup_key_stats(api_key: String) -> Result<KeyStats, ServerFnError> {
    let backend = session::backend()?;
    match backend.0.key_stats(api_key.trim()).await {
        Ok(stats) => Ok(stats),
        Err(message) => {
            session::set_status(401);
            Err(ServerFnError::new(message))
        }
    }
}
