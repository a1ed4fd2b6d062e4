//! The admin account and local users' sign-in: argon2 password hashes (`crypto::password`),
//! opaque session tokens (stored only as hashes) with idle and absolute lifetimes, ended all at
//! once by a password change, and the login throttle (`throttle` decides, the store counts).

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::Duration,
};

use app::{
    backend::{ChangeRefusal, LoginGrant, LoginRefusal, PasswordChange},
    bounds,
    domain::{SessionInfo, UserRole},
};
use chrono::Utc;

// Password hashing is re-exported for the callers that still reach it through here.
pub use crate::crypto::password::{hash_password, verify_password};
use crate::{
    auth::throttle,
    crypto::{password, random_hex, sha256_hex},
    store::{AdminCredentials, AdminSession, DynStore, StoreError},
    timestamps::{format_time, parse_time},
};

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
            session_generation: 0,
        })
        .await?;
    Ok(generated)
}

pub struct AdminAuth {
    store: DynStore,
    /// A session unused this long ends.
    idle: Duration,
    /// A session ends this long after sign-in, however much it is used.
    max: Duration,
    /// argon2 verifications run by sign-ins (an unknown name costs one too).
    verifications: AtomicU64,
}

/// A hash no password matches in practice, verified against when the name is unknown so that
/// both paths cost one argon2 verification (no user enumeration by timing).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
}

fn now_ms() -> u64 {
    Utc::now().timestamp_millis().max(0) as u64
}

/// Seconds to tell a throttled client (at least 1).
fn whole_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

/// Whose password a sign-in checks.
enum Candidate {
    Admin(AdminCredentials),
    User(crate::users::StoredUser),
    Unknown,
}

impl Candidate {
    fn hash(&self) -> &str {
        match self {
            Candidate::Admin(a) => &a.password_hash,
            Candidate::User(u) => &u.password_hash,
            Candidate::Unknown => dummy_hash(),
        }
    }
}

impl AdminAuth {
    pub fn new(store: DynStore, idle: Duration, max: Duration) -> Self {
        AdminAuth {
            store,
            idle,
            max: max.max(Duration::from_secs(1)),
            verifications: AtomicU64::new(0),
        }
    }

    /// argon2 verifications run by sign-ins so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn verify(&self, password: &str, phc: &str) -> bool {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        password::verify_pooled(password, phc).await
    }

    /// The wait the throttle asks for before this name may be tried from this address.
    async fn throttled(&self, keys: &[String; 2]) -> Result<Option<u64>, StoreError> {
        let now = now_ms();
        let got = self.store.login_failures(keys, now).await?;
        let counters = [
            got.first().copied().flatten(),
            got.get(1).copied().flatten(),
        ];
        Ok(throttle::decide(&counters, now).map(whole_secs))
    }

    async fn failed(&self, keys: &[String; 2], client: Option<IpAddr>) {
        if let Err(e) = self.store.record_login_failure(keys, now_ms()).await {
            tracing::error!(error = %e, "login throttle: store unavailable");
        }
        tracing::warn!(client = ?client, "login failed");
    }

    async fn candidate(&self, username: &str) -> Result<Candidate, StoreError> {
        if let Some(admin) = self.store.get_admin().await? {
            if admin.username == username {
                return Ok(Candidate::Admin(admin));
            }
        }
        Ok(match crate::users::by_name(&self.store, username).await? {
            Some(u) => Candidate::User(u),
            None => Candidate::Unknown,
        })
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginGrant, LoginRefusal> {
        // Bounds before any work: no lookup, no throttle entry, no argon2 on a huge input.
        let too_long = |e: bounds::TooLong| LoginRefusal::Invalid(e.field, e.to_string());
        bounds::username("username", username).map_err(too_long)?;
        bounds::password("password", password).map_err(too_long)?;
        let unavailable = |e: StoreError| {
            tracing::error!(error = %e, "login: store unavailable");
            LoginRefusal::Unavailable
        };
        let keys = throttle::keys(username, client);
        if let Some(secs) = self.throttled(&keys).await.map_err(unavailable)? {
            return Err(LoginRefusal::TooManyAttempts(secs));
        }
        let candidate = self.candidate(username).await.map_err(unavailable)?;
        // One verification whoever it is (a dummy hash for an unknown name).
        let matches = self.verify(password, candidate.hash()).await;
        let signed_in = match candidate {
            Candidate::Admin(a) if matches => {
                Some((a.username, None, UserRole::Admin, a.session_generation))
            }
            Candidate::User(mut u) if matches && u.user.is_active => {
                u.user.last_login_at = Some(format_time(Utc::now()));
                crate::users::save(&self.store, &u)
                    .await
                    .map_err(unavailable)?;
                Some((
                    u.user.username,
                    Some(u.user.id),
                    u.user.role,
                    u.session_generation,
                ))
            }
            _ => None,
        };
        let Some((username, user_id, role, generation)) = signed_in else {
            self.failed(&keys, client).await;
            return Err(LoginRefusal::InvalidCredentials);
        };
        let _ = self.store.clear_login_failures(&keys[0]).await;
        let token = random_hex(32);
        let session = AdminSession {
            username: username.clone(),
            login_time: format_time(Utc::now()),
            user_id,
            issued_ms: now_ms(),
            generation,
        };
        let ttl = self.idle.min(self.max);
        self.store
            .put_session(&sha256_hex(&token), &session, ttl)
            .await
            .map_err(|_| LoginRefusal::Unavailable)?;
        tracing::info!(client = ?client, local_user = session.user_id.is_some(), "signed in");
        Ok(LoginGrant {
            token,
            expires_in_secs: ttl.as_secs(),
            max_age_secs: self.max.as_secs(),
            username,
            role,
        })
    }

    /// The live session of a token and who holds it (not renewed).
    async fn live_session(&self, hash: &str) -> Option<(AdminSession, SessionInfo, Duration)> {
        let session = self.store.get_session(hash).await.ok()??;
        let issued = if session.issued_ms > 0 {
            session.issued_ms
        } else {
            // Sessions stored before `issued_ms` existed.
            parse_time(&session.login_time)?.timestamp_millis().max(0) as u64
        };
        let age = Duration::from_millis(now_ms().saturating_sub(issued));
        let (info, generation) = match &session.user_id {
            None => {
                let admin = self.store.get_admin().await.ok()??;
                let info = SessionInfo {
                    username: admin.username.clone(),
                    role: UserRole::Admin,
                    user_id: None,
                };
                (info, admin.session_generation)
            }
            Some(id) => {
                let user = crate::users::get(&self.store, id).await.ok()??;
                if !user.user.is_active {
                    return None;
                }
                let generation = user.session_generation;
                let info = SessionInfo {
                    username: user.user.username,
                    role: user.user.role,
                    user_id: Some(user.user.id),
                };
                (info, generation)
            }
        };
        if age >= self.max || generation != session.generation {
            // Past its absolute lifetime, or its owner's password changed since.
            let _ = self.store.delete_session(hash).await;
            return None;
        }
        Some((session, info, age))
    }

    /// The signed-in user of a live session (renewing it, never past its absolute lifetime).
    /// A local user's current role and state are read each time, so disabling or demoting
    /// them takes effect at once.
    pub async fn session(&self, token: &str) -> Option<SessionInfo> {
        if token.len() < 32 || token.len() > 512 {
            return None;
        }
        let hash = sha256_hex(token);
        let (session, info, age) = self.live_session(&hash).await?;
        let ttl = self.idle.min(self.max.saturating_sub(age));
        if !ttl.is_zero() {
            let _ = self.store.put_session(&hash, &session, ttl).await;
        }
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

    /// `POST /web/auth/change-password`: the current password is required; every session of
    /// the user ends (this one too, as in the original: sign in again). Answers the username.
    pub async fn change_password(
        &self,
        token: &str,
        change: &PasswordChange,
        client: Option<IpAddr>,
    ) -> Result<String, ChangeRefusal> {
        let too_long = |e: bounds::TooLong| ChangeRefusal::Invalid(e.field, e.to_string());
        bounds::password("currentPassword", &change.current_password).map_err(too_long)?;
        bounds::password("newPassword", &change.new_password).map_err(too_long)?;
        let new_username = change
            .new_username
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if let Some(n) = new_username {
            bounds::username("newUsername", n).map_err(too_long)?;
        }
        if token.len() < 32 || token.len() > 512 {
            return Err(ChangeRefusal::Unauthorized);
        }
        let (session, info, _) = self
            .live_session(&sha256_hex(token))
            .await
            .ok_or(ChangeRefusal::Unauthorized)?;
        if change.current_password.is_empty() || change.new_password.is_empty() {
            return Err(ChangeRefusal::Invalid(
                "currentPassword",
                "Current password and new password are required".into(),
            ));
        }
        if change.new_password.chars().count() < 8 {
            return Err(ChangeRefusal::Invalid(
                "newPassword",
                "New password must be at least 8 characters long".into(),
            ));
        }
        let unavailable = |e: StoreError| {
            tracing::error!(error = %e, "change password: store unavailable");
            ChangeRefusal::Unavailable
        };
        // Guessing the current password is throttled as a sign-in is.
        let keys = throttle::keys(&info.username, client);
        if let Some(secs) = self.throttled(&keys).await.map_err(unavailable)? {
            return Err(ChangeRefusal::TooManyAttempts(secs));
        }
        let candidate = match &session.user_id {
            None => self
                .store
                .get_admin()
                .await
                .map_err(unavailable)?
                .map(Candidate::Admin),
            Some(id) => crate::users::get(&self.store, id)
                .await
                .map_err(unavailable)?
                .map(Candidate::User),
        }
        .ok_or(ChangeRefusal::Unauthorized)?;
        if !self
            .verify(&change.current_password, candidate.hash())
            .await
        {
            self.failed(&keys, client).await;
            return Err(ChangeRefusal::WrongPassword);
        }
        let pw = change.new_password.clone();
        let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(ChangeRefusal::Unavailable)?;
        let username = match candidate {
            Candidate::Admin(a) => {
                let username = new_username.unwrap_or(&a.username).to_string();
                if username != a.username
                    && crate::users::by_name(&self.store, &username)
                        .await
                        .map_err(unavailable)?
                        .is_some()
                {
                    return Err(ChangeRefusal::Invalid(
                        "newUsername",
                        "a local user has this name".into(),
                    ));
                }
                self.store
                    .put_admin(&AdminCredentials {
                        username: username.clone(),
                        password_hash: hash,
                        updated_at: format_time(Utc::now()),
                        session_generation: a.session_generation.wrapping_add(1),
                    })
                    .await
                    .map_err(unavailable)?;
                username
            }
            Candidate::User(mut u) => {
                if new_username.is_some_and(|n| !n.eq_ignore_ascii_case(&u.user.username)) {
                    return Err(ChangeRefusal::Invalid(
                        "newUsername",
                        "local users keep their name (an admin can create another user)".into(),
                    ));
                }
                u.password_hash = hash;
                u.session_generation = u.session_generation.wrapping_add(1);
                crate::users::save(&self.store, &u)
                    .await
                    .map_err(unavailable)?;
                u.user.username
            }
            Candidate::Unknown => return Err(ChangeRefusal::Unauthorized),
        };
        let _ = self.store.clear_login_failures(&keys[0]).await;
        let _ = self.store.delete_session(&sha256_hex(token)).await;
        tracing::info!(client = ?client, local_user = session.user_id.is_some(), "password changed; sessions ended");
        Ok(username)
    }
}

#[cfg(test)]
mod tests;
