//! The admin account: argon2 password hash, opaque session tokens (stored only as hashes),
//! and a login throttle per address and per user name.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use parking_lot::Mutex;

use app::{
    backend::{LoginGrant, LoginRefusal},
    domain::{SessionInfo, UserRole},
};
use chrono::Utc;

use crate::{
    auth::api_key::format_time,
    crypto::{random_hex, sha256_hex},
    store::{AdminCredentials, AdminSession, DynStore, StoreError},
};

/// Failures allowed per address or user name within `WINDOW` before logins are refused.
const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Creates the admin on first start: from `ADMIN_USERNAME`/`ADMIN_PASSWORD`, or with a random
/// password that is printed once. Returns the generated password, if any.
pub async fn ensure_admin(
    store: &DynStore,
    username: &str,
    password: Option<&str>,
) -> Result<Option<String>, StoreError> {
    if store.get_admin().await?.is_some() {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) => (p.to_string(), None),
        None => {
            let p = random_hex(12);
            (p.clone(), Some(p))
        }
    };
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(StoreError::Corrupt)?;
    store
        .put_admin(&AdminCredentials {
            username: username.to_string(),
            password_hash: hash,
            updated_at: format_time(Utc::now()),
        })
        .await?;
    Ok(generated)
}

#[derive(Default)]
struct Failures {
    count: u32,
    first: Option<Instant>,
}

pub struct AdminAuth {
    store: DynStore,
    session_ttl: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

impl AdminAuth {
    pub fn new(store: DynStore, session_ttl: Duration) -> Self {
        AdminAuth {
            store,
            session_ttl,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `who` may try again, if it is locked out.
    fn locked(&self, who: &str) -> Option<u64> {
        let map = self.failures.lock();
        let f = map.get(who)?;
        let since = f.first?.elapsed();
        (f.count >= MAX_FAILURES && since < WINDOW).then(|| (WINDOW - since).as_secs().max(1))
    }

    fn fail(&self, who: &str) {
        let mut map = self.failures.lock();
        if map.len() > 10_000 {
            map.retain(|_, f| f.first.is_some_and(|t| t.elapsed() < WINDOW));
        }
        let f = map.entry(who.to_string()).or_default();
        if f.first.is_none_or(|t| t.elapsed() >= WINDOW) {
            *f = Failures {
                count: 0,
                first: Some(Instant::now()),
            };
        }
        f.count += 1;
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginGrant, LoginRefusal> {
        let ip_key = client.map(|ip| format!("ip:{ip}"));
        let user_key = format!("user:{username}");
        for who in ip_key.iter().chain(std::iter::once(&user_key)) {
            if let Some(secs) = self.locked(who) {
                return Err(LoginRefusal::TooManyAttempts(secs));
            }
        }
        let admin = match self.store.get_admin().await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "admin login: store unavailable");
                return Err(LoginRefusal::Unavailable);
            }
        };
        // The built-in admin first, then the local users.
        let signed_in = match admin.filter(|a| a.username == username) {
            Some(admin) => {
                let (pw, phc) = (password.to_string(), admin.password_hash.clone());
                tokio::task::spawn_blocking(move || verify_password(&pw, &phc))
                    .await
                    .unwrap_or(false)
                    .then_some((admin.username, None, UserRole::Admin))
            }
            None => match crate::users::verify(&self.store, username, password).await {
                Ok(found) => found.map(|u| (u.user.username, Some(u.user.id), u.user.role)),
                Err(e) => {
                    tracing::error!(error = %e, "login: store unavailable");
                    return Err(LoginRefusal::Unavailable);
                }
            },
        };
        let Some((username, user_id, role)) = signed_in else {
            for who in ip_key.iter().chain(std::iter::once(&user_key)) {
                self.fail(who);
            }
            tracing::warn!(client = ?client, "login failed");
            return Err(LoginRefusal::InvalidCredentials);
        };
        let token = random_hex(32);
        let session = AdminSession {
            username: username.clone(),
            login_time: format_time(Utc::now()),
            user_id,
        };
        self.store
            .put_session(&sha256_hex(&token), &session, self.session_ttl)
            .await
            .map_err(|_| LoginRefusal::Unavailable)?;
        tracing::info!(client = ?client, local_user = session.user_id.is_some(), "signed in");
        Ok(LoginGrant {
            token,
            expires_in_secs: self.session_ttl.as_secs(),
            username,
            role,
        })
    }

    /// The signed-in user of a live session (renewing it). A local user's current role and
    /// state are read each time, so disabling or demoting them takes effect at once.
    pub async fn session(&self, token: &str) -> Option<SessionInfo> {
        if token.len() < 32 || token.len() > 512 {
            return None;
        }
        let hash = sha256_hex(token);
        let session = self.store.get_session(&hash).await.ok()??;
        let info = match &session.user_id {
            None => SessionInfo {
                username: session.username.clone(),
                role: UserRole::Admin,
                user_id: None,
            },
            Some(id) => {
                let user = crate::users::get(&self.store, id).await.ok()??;
                if !user.user.is_active {
                    return None;
                }
                SessionInfo {
                    username: user.user.username,
                    role: user.user.role,
                    user_id: Some(user.user.id),
                }
            }
        };
        let _ = self
            .store
            .put_session(&hash, &session, self.session_ttl)
            .await;
        Some(info)
    }

    /// The name of an admin (built-in or a local user with the admin role) of a live session.
    pub async fn session_user(&self, token: &str) -> Option<String> {
        self.session(token)
            .await
            .filter(|s| s.role == UserRole::Admin)
            .map(|s| s.username)
    }

    pub async fn logout(&self, token: &str) {
        let _ = self.store.delete_session(&sha256_hex(token)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn login_sessions_and_throttle() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
        assert!(ensure_admin(&store, "root", Some("correct horse"))
            .await
            .unwrap()
            .is_none());
        let stored = store.get_admin().await.unwrap().unwrap();
        assert!(stored.password_hash.starts_with("$argon2"));
        assert!(!stored.password_hash.contains("correct horse"));

        let auth = AdminAuth::new(store.clone(), Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let grant = auth.login("root", "correct horse", Some(ip)).await.unwrap();
        assert_eq!(
            auth.session_user(&grant.token).await.as_deref(),
            Some("root")
        );
        auth.logout(&grant.token).await;
        assert!(auth.session_user(&grant.token).await.is_none());

        for _ in 0..MAX_FAILURES {
            assert_eq!(
                auth.login("root", "wrong", Some(ip)).await.err(),
                Some(LoginRefusal::InvalidCredentials)
            );
        }
        // Locked out now, even with the right password.
        assert!(matches!(
            auth.login("root", "correct horse", Some(ip)).await,
            Err(LoginRefusal::TooManyAttempts(_))
        ));
        // The user name is locked from every address too.
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(matches!(
            auth.login("root", "correct horse", Some(other)).await,
            Err(LoginRefusal::TooManyAttempts(_))
        ));
    }

    #[tokio::test]
    async fn generated_password_is_returned_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
        let pw = ensure_admin(&store, "admin", None).await.unwrap().unwrap();
        assert_eq!(pw.len(), 24);
        assert!(ensure_admin(&store, "admin", None).await.unwrap().is_none());
        let auth = AdminAuth::new(store, Duration::from_secs(60));
        assert!(auth.login("admin", &pw, None).await.is_ok());
    }
}
