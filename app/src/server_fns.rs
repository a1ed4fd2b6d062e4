//! Server functions of the admin pages. Each checks the admin session itself.

use leptos::prelude::*;

use crate::domain::{DashboardSummary, KeyStats};

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
