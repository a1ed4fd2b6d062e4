//! Server functions of the admin pages. Each checks the admin session itself.

use leptos::prelude::*;

use crate::domain::{
    AccountDetail, AccountForm, AccountGroup, AccountRow, AccountTest, DashboardSummary, KeyForm,
    KeyPage, KeyQuery, KeyStats, OAuthStart, RecordPage, RecordQuery, SettingsForm, ShellInfo,
    UserRow,
};

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
            let secure = if client().secure { "; Secure" } else { "" };
            let cookie = format!(
                "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
            );
            if let Ok(v) = http::HeaderValue::from_str(&cookie) {
                resp.append_header(http::header::SET_COOKIE, v);
            }
        }
    }

    /// Server-function failures default to 500; a refused login is the caller's problem.
    /// A plain form post (no WASM) keeps Leptos' redirect back to the page, which then shows
    /// the error: a status here would replace that redirect with a bare error body.
    pub fn set_status(code: u16) {
        if is_plain_form_post() {
            return;
        }
        if let (Some(resp), Ok(status)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            http::StatusCode::from_u16(code),
        ) {
            resp.set_status(status);
        }
    }

    fn is_plain_form_post() -> bool {
        use_context::<http::request::Parts>().is_some_and(|parts| {
            parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"))
        })
    }

    /// Who sent the request, as the server resolved it (its address behind trusted proxies,
    /// whether it came over HTTPS).
    pub fn client() -> crate::backend::ClientInfo {
        use_context::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::backend::ClientInfo>().copied())
            .unwrap_or_default()
    }
}

/// Sign in; on success the session cookie is set and the browser goes to the dashboard (an
/// admin) or to the user's own keys.
#[server(prefix = "/admin-next/api", endpoint = "login")]
pub async fn admin_login(username: String, password: String) -> Result<(), ServerFnError> {
    use crate::backend::LoginRefusal;
    let backend = session::backend()?;
    let ip = session::client().ip;
    match backend.0.login(&username, &password, ip).await {
        Ok(grant) => {
            session::set_cookie(&grant.token, grant.max_age_secs);
            leptos_axum::redirect(match grant.role {
                crate::domain::UserRole::Admin => "/admin-next/dashboard",
                crate::domain::UserRole::User => "/admin-next/my-keys",
            });
            Ok(())
        }
        Err(refusal) => {
            let (status, message) = match refusal {
                LoginRefusal::Invalid(_, message) => (400, message),
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

/// Changes the signed-in user's password (the original's `change-password`). As there, every
/// session ends, this one too: the browser goes back to the sign-in page.
#[server(prefix = "/admin-next/api", endpoint = "change-password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
    confirm_password: String,
) -> Result<(), ServerFnError> {
    use crate::backend::{ChangeRefusal, PasswordChange};
    let backend = session::backend()?;
    if new_password != confirm_password {
        return Err(invalid(
            "confirmPassword: the new password and its confirmation differ".into(),
        ));
    }
    let token = session::token().await.unwrap_or_default();
    let change = PasswordChange {
        current_password,
        new_password,
        new_username: None,
    };
    match backend
        .0
        .change_password(&token, change, session::client().ip)
        .await
    {
        Ok(_) => {
            session::set_cookie("", 0);
            leptos_axum::redirect("/admin-next/login");
            Ok(())
        }
        Err(refusal) => {
            let (status, message) = match refusal {
                ChangeRefusal::Unauthorized => {
                    leptos_axum::redirect("/admin-next/login");
                    (401, UNAUTHORIZED.to_string())
                }
                ChangeRefusal::Invalid(_, message) => (400, message),
                ChangeRefusal::WrongPassword => (
                    401,
                    "currentPassword: the current password is wrong".to_string(),
                ),
                ChangeRefusal::TooManyAttempts(secs) => (
                    429,
                    format!("Too many failed attempts; try again in {secs} s"),
                ),
                ChangeRefusal::Unavailable => (
                    503,
                    "Changing the password is unavailable right now".to_string(),
                ),
            };
            session::set_status(status);
            Err(ServerFnError::new(message))
        }
    }
}

/// Who is signed in (any role); signed out: `UNAUTHORIZED` and a redirect to the login.
#[server(prefix = "/admin-next/api", endpoint = "whoami")]
pub async fn whoami() -> Result<crate::domain::SessionInfo, ServerFnError> {
    signed_in().await.map(|(_, who)| who)
}

/// The message of a server-function error, without the framework's prefix.
pub fn error_text_of(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// The error text the pages use to recognise a missing or expired session.
pub const UNAUTHORIZED: &str = "unauthorized";
/// The error text of a signed-in user who may not do this.
pub const FORBIDDEN: &str = "forbidden";

#[cfg(feature = "ssr")]
async fn signed_in() -> Result<(crate::backend::Backend, crate::domain::SessionInfo), ServerFnError>
{
    let backend = session::backend()?;
    let who = match session::token().await {
        Some(token) => backend.0.session(&token).await,
        None => None,
    };
    match who {
        Some(s) => Ok((backend, s)),
        None => {
            // A 302 during server rendering, a client-side navigation after hydration.
            leptos_axum::redirect("/admin-next/login");
            session::set_status(401);
            Err(ServerFnError::new(UNAUTHORIZED))
        }
    }
}

#[cfg(feature = "ssr")]
async fn require_admin() -> Result<(crate::backend::Backend, String), ServerFnError> {
    let (backend, who) = signed_in().await?;
    if who.role != crate::domain::UserRole::Admin {
        session::set_status(403);
        return Err(ServerFnError::new(FORBIDDEN));
    }
    Ok((backend, who.username))
}

/// Admins act on every key, users on their own.
#[cfg(feature = "ssr")]
async fn key_scope() -> Result<(crate::backend::Backend, crate::backend::KeyScope), ServerFnError> {
    use crate::backend::KeyScope;
    let (backend, who) = signed_in().await?;
    let scope = match (who.role, who.user_id) {
        (crate::domain::UserRole::Admin, _) => KeyScope::All,
        (_, Some(id)) => KeyScope::OwnedBy(id),
        (_, None) => {
            session::set_status(403);
            return Err(ServerFnError::new(FORBIDDEN));
        }
    };
    Ok((backend, scope))
}

/// A refused input: a 400 with the message naming the field.
#[cfg(feature = "ssr")]
fn invalid(message: String) -> ServerFnError {
    session::set_status(400);
    ServerFnError::new(message)
}

/// What every page's frame shows: site name, logo and who is signed in (public).
#[server(prefix = "/admin-next/api", endpoint = "shell")]
pub async fn get_shell() -> Result<ShellInfo, ServerFnError> {
    let backend = session::backend()?;
    let settings = backend.0.settings().await;
    let who = match session::token().await {
        Some(token) => backend.0.session(&token).await,
        None => None,
    };
    Ok(ShellInfo {
        site_name: settings.site_name,
        logo_url: settings.logo_url,
        session: who,
    })
}

#[server(prefix = "/admin-next/api", endpoint = "dashboard")]
pub async fn get_dashboard() -> Result<DashboardSummary, ServerFnError> {
    let (backend, username) = require_admin().await?;
    let mut summary = backend.0.dashboard().await.map_err(ServerFnError::new)?;
    summary.username = username;
    Ok(summary)
}

#[server(prefix = "/admin-next/api", endpoint = "keys")]
pub async fn get_keys(query: KeyQuery) -> Result<KeyPage, ServerFnError> {
    let (backend, scope) = key_scope().await?;
    backend
        .0
        .keys(scope, query)
        .await
        .map_err(ServerFnError::new)
}

#[server(prefix = "/admin-next/api", endpoint = "key-form")]
pub async fn get_key_form(id: String) -> Result<KeyForm, ServerFnError> {
    let (backend, scope) = key_scope().await?;
    backend
        .0
        .key_form(scope, &id)
        .await
        .map_err(ServerFnError::new)
}

/// Creates one key or a batch from the form; the keys come back once.
#[server(prefix = "/admin-next/api", endpoint = "create-keys")]
pub async fn create_keys(form: KeyForm) -> Result<Vec<String>, ServerFnError> {
    let (backend, scope) = key_scope().await?;
    backend.0.create_keys(scope, form).await.map_err(invalid)
}

#[server(prefix = "/admin-next/api", endpoint = "update-key")]
pub async fn update_key(id: String, form: KeyForm) -> Result<(), ServerFnError> {
    let (backend, scope) = key_scope().await?;
    backend
        .0
        .update_key(scope, &id, form)
        .await
        .map_err(invalid)?;
    leptos_axum::redirect("/admin-next/keys");
    Ok(())
}

#[server(prefix = "/admin-next/api", endpoint = "key-action")]
pub async fn key_action(id: String, action: String) -> Result<(), ServerFnError> {
    let (backend, scope) = key_scope().await?;
    backend
        .0
        .key_action(scope, &id, &action)
        .await
        .map_err(invalid)
}

#[server(prefix = "/admin-next/api", endpoint = "accounts")]
pub async fn get_accounts() -> Result<Vec<AccountRow>, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.accounts().await.map_err(ServerFnError::new)
}

/// An account's form, error history and the groups (an empty id: a new account's).
#[server(prefix = "/admin-next/api", endpoint = "account")]
pub async fn get_account(id: String) -> Result<AccountDetail, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.account(&id).await.map_err(ServerFnError::new)
}

/// Creates (empty id) or updates an account, then goes back to the accounts table.
#[server(prefix = "/admin-next/api", endpoint = "save-account")]
pub async fn save_account(id: String, form: AccountForm) -> Result<String, ServerFnError> {
    let (backend, _) = require_admin().await?;
    let id = (!id.is_empty()).then_some(id);
    let saved = backend
        .0
        .save_account(id.as_deref(), form)
        .await
        .map_err(invalid)?;
    leptos_axum::redirect("/admin-next/accounts");
    Ok(saved)
}

#[server(prefix = "/admin-next/api", endpoint = "account-action")]
pub async fn account_action(id: String, action: String) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend
        .0
        .account_action(&id, &action)
        .await
        .map_err(invalid)
}

#[server(prefix = "/admin-next/api", endpoint = "test-account")]
pub async fn test_account(id: String) -> Result<AccountTest, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.test_account(&id).await.map_err(invalid)
}

/// Step 1 of a Claude OAuth account: the authorization URL (PKCE) to open.
#[server(prefix = "/admin-next/api", endpoint = "oauth-start")]
pub async fn oauth_start(setup_token: Option<String>) -> Result<OAuthStart, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend
        .0
        .oauth_start(setup_token.is_some())
        .await
        .map_err(invalid)
}

/// Step 2: the pasted code (or callback URL) is exchanged; the tokens stay on the server.
#[server(prefix = "/admin-next/api", endpoint = "oauth-exchange")]
pub async fn oauth_exchange(session_id: String, code: String) -> Result<String, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend
        .0
        .oauth_exchange(&session_id, &code)
        .await
        .map_err(invalid)?;
    Ok(session_id)
}

#[server(prefix = "/admin-next/api", endpoint = "groups")]
pub async fn get_groups() -> Result<Vec<AccountGroup>, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.groups().await.map_err(ServerFnError::new)
}

#[server(prefix = "/admin-next/api", endpoint = "create-group")]
pub async fn create_group(name: String, platform: String) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend
        .0
        .create_group(&name, &platform)
        .await
        .map_err(invalid)
}

#[server(prefix = "/admin-next/api", endpoint = "delete-group")]
pub async fn delete_group(id: String) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.delete_group(&id).await.map_err(invalid)
}

#[server(prefix = "/admin-next/api", endpoint = "users")]
pub async fn get_users() -> Result<Vec<UserRow>, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.users().await.map_err(ServerFnError::new)
}

#[server(prefix = "/admin-next/api", endpoint = "create-user")]
pub async fn create_user(
    username: String,
    password: String,
    role: String,
) -> Result<(), ServerFnError> {
    use crate::domain::UserRole;
    let (backend, _) = require_admin().await?;
    let role = match role.as_str() {
        "admin" => UserRole::Admin,
        "" | "user" => UserRole::User,
        _ => return Err(invalid("role: user or admin".into())),
    };
    backend
        .0
        .create_user(&username, &password, role)
        .await
        .map_err(invalid)
}

#[server(prefix = "/admin-next/api", endpoint = "user-action")]
pub async fn user_action(id: String, action: String) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.user_action(&id, &action).await.map_err(invalid)
}

/// A user's budget (USD across all their keys; empty = none), from the users page.
#[server(prefix = "/admin-next/api", endpoint = "user-budget")]
pub async fn set_user_budget(
    id: String,
    daily_cost: String,
    monthly_cost: String,
) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend
        .0
        .set_user_budget(&id, &daily_cost, &monthly_cost)
        .await
        .map_err(invalid)
}

/// The settings page's test button for one saved webhook channel.
#[server(prefix = "/admin-next/api", endpoint = "test-webhook")]
pub async fn test_webhook(index: usize) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.test_webhook(index).await.map_err(invalid)
}

#[server(prefix = "/admin-next/api", endpoint = "records")]
pub async fn get_records(query: RecordQuery) -> Result<RecordPage, ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.records(query).await.map_err(ServerFnError::new)
}

#[server(prefix = "/admin-next/api", endpoint = "settings")]
pub async fn get_settings() -> Result<SettingsForm, ServerFnError> {
    let (backend, _) = require_admin().await?;
    Ok(SettingsForm::of(&backend.0.settings().await))
}

#[server(prefix = "/admin-next/api", endpoint = "save-settings")]
pub async fn save_settings(form: SettingsForm) -> Result<(), ServerFnError> {
    let (backend, _) = require_admin().await?;
    backend.0.save_settings(form).await.map_err(invalid)
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
