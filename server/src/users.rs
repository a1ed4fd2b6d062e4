//! Local users: a username and an argon2 password, a role, a budget, and the keys they create
//! for themselves. Disabling a user stops their keys at once, and a budget holds across all of
//! them (the keys carry an `ownerDisabled` flag and a copy of the `ownerBudget`, so the hot
//! path reads nothing more than the key).

use app::domain::{ApiKey, Budget, User, UserRole};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::{
    crypto::password::{hash_password, verify_password},
    store::{from_json, to_json, DynStore, StoreError},
    timestamps::format_time,
};

const KIND: &str = "user";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredUser {
    #[serde(flatten)]
    pub user: User,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Bumped by a password change; sessions of another generation are void.
    #[serde(default)]
    pub session_generation: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// (field, message)
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("user not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn list(store: &DynStore) -> Result<Vec<StoredUser>, StoreError> {
    let mut users = store
        .list_docs(KIND)
        .await?
        .iter()
        .map(|j| from_json::<StoredUser>(j.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    users.sort_by(|a, b| a.user.username.cmp(&b.user.username));
    Ok(users)
}

pub async fn get(store: &DynStore, id: &str) -> Result<Option<StoredUser>, StoreError> {
    match store.get_doc(KIND, id).await? {
        Some(j) => Ok(Some(from_json(j.as_bytes())?)),
        None => Ok(None),
    }
}

/// Users are few (a team), so a name lookup scans them.
pub async fn by_name(store: &DynStore, username: &str) -> Result<Option<StoredUser>, StoreError> {
    Ok(list(store)
        .await?
        .into_iter()
        .find(|u| u.user.username.eq_ignore_ascii_case(username)))
}

pub async fn save(store: &DynStore, user: &StoredUser) -> Result<(), StoreError> {
    store.put_doc(KIND, &user.user.id, &to_json(user)?).await
}

fn check_username(name: &str) -> Result<(), UserError> {
    let ok = (3..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(
            "username",
            "3 to 32 letters, digits, '_', '-' or '.'".into(),
        ))
    }
}

fn check_password(pw: &str) -> Result<(), UserError> {
    if let Err(e) = app::bounds::password("password", pw) {
        return Err(UserError::Invalid("password", e.to_string()));
    }
    if pw.chars().count() < 8 {
        return Err(UserError::Invalid(
            "password",
            "at least 8 characters".into(),
        ));
    }
    Ok(())
}

pub async fn create(
    store: &DynStore,
    admin_username: &str,
    username: &str,
    password: &str,
    role: UserRole,
) -> Result<User, UserError> {
    let username = username.trim();
    check_username(username)?;
    check_password(password)?;
    if username.eq_ignore_ascii_case(admin_username) || by_name(store, username).await?.is_some() {
        return Err(UserError::Invalid("username", "already taken".into()));
    }
    let pw = password.to_string();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| UserError::Invalid("password", e.to_string()))?
        .map_err(|e| UserError::Invalid("password", e))?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        display_name: username.to_string(),
        role,
        is_active: true,
        created_at: format_time(Utc::now()),
        last_login_at: None,
        budget: Budget::default(),
    };
    save(
        store,
        &StoredUser {
            user: user.clone(),
            password_hash,
            session_generation: 0,
        },
    )
    .await?;
    tracing::info!(user = %user.id, role = role.as_str(), "local user created");
    Ok(user)
}

/// The user if the password is theirs and they are enabled.
pub async fn verify(
    store: &DynStore,
    username: &str,
    password: &str,
) -> Result<Option<StoredUser>, StoreError> {
    let Some(mut u) = by_name(store, username).await? else {
        return Ok(None);
    };
    let (pw, phc) = (password.to_string(), u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &phc))
        .await
        .unwrap_or(false);
    if !ok || !u.user.is_active {
        return Ok(None);
    }
    u.user.last_login_at = Some(format_time(Utc::now()));
    save(store, &u).await?;
    Ok(Some(u))
}

/// Enables or disables a user and, with them, every key they own.
pub async fn set_active(store: &DynStore, id: &str, active: bool) -> Result<User, UserError> {
    let mut u = get(store, id).await?.ok_or(UserError::NotFound)?;
    u.user.is_active = active;
    save(store, &u).await?;
    for k in store.list_keys().await? {
        if k.key.user_id.as_deref() == Some(id) && k.key.owner_disabled == active {
            // On the record as it is now: an admin's concurrent change stays.
            crate::store::modify_key(&**store, &k.key.id, |k| {
                let change = k.key.owner_disabled == active;
                k.key.owner_disabled = !active;
                change
            })
            .await?;
        }
    }
    tracing::info!(user = %id, active, "local user changed");
    Ok(u.user)
}

/// A budget from the users page's text fields (USD, empty = none), each checked on its own.
pub fn parse_budget(daily_cost: &str, monthly_cost: &str) -> Result<Budget, UserError> {
    let usd = |field: &'static str, v: &str| -> Result<f64, UserError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(0.0);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(UserError::Invalid(
                field,
                "must be a number ≥ 0 (USD; empty or 0 = no budget)".into(),
            )),
        }
    };
    Ok(Budget {
        daily_cost: usd("dailyCost", daily_cost)?,
        monthly_cost: usd("monthlyCost", monthly_cost)?,
    })
}

/// Sets a user's budget and copies it into every key they own (one write per changed key).
pub async fn set_budget(store: &DynStore, id: &str, budget: Budget) -> Result<User, UserError> {
    for (field, v) in [
        ("dailyCost", budget.daily_cost),
        ("monthlyCost", budget.monthly_cost),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(UserError::Invalid(field, "must be a number ≥ 0".into()));
        }
    }
    let mut u = get(store, id).await?.ok_or(UserError::NotFound)?;
    u.user.budget = budget;
    // The user first: a key created meanwhile either is in the list below or reads this.
    save(store, &u).await?;
    for k in store.list_keys().await? {
        if k.key.user_id.as_deref() == Some(id) && k.key.owner_budget != budget {
            crate::store::modify_key(&**store, &k.key.id, |k| {
                let change = k.key.owner_budget != budget;
                k.key.owner_budget = budget;
                change
            })
            .await?;
        }
    }
    tracing::info!(
        user = %id,
        daily = budget.daily_cost,
        monthly = budget.monthly_cost,
        "local user's budget changed"
    );
    Ok(u.user)
}

/// Gives a key its owner's current state (budget, enabled or not); whether anything changed.
/// A key whose owner is gone is left as it is.
pub async fn stamp_owner(store: &DynStore, key: &mut ApiKey) -> Result<bool, StoreError> {
    let Some(uid) = key.user_id.as_deref() else {
        return Ok(false);
    };
    let Some(u) = get(store, uid).await? else {
        return Ok(false);
    };
    let (budget, disabled) = (u.user.budget, !u.user.is_active);
    let changed = key.owner_budget != budget || key.owner_disabled != disabled;
    key.owner_budget = budget;
    key.owner_disabled = disabled;
    Ok(changed)
}

pub async fn set_role(store: &DynStore, id: &str, role: UserRole) -> Result<User, UserError> {
    let mut u = get(store, id).await?.ok_or(UserError::NotFound)?;
    u.user.role = role;
    save(store, &u).await?;
    Ok(u.user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{embedded::EmbeddedStore, StoredKey};
    use app::domain::ApiKey;
    use std::sync::Arc;

    #[tokio::test]
    async fn create_verify_and_disable_with_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).expect("open"));
        assert!(matches!(
            create(&store, "admin", "ab", "longenough", UserRole::User).await,
            Err(UserError::Invalid("username", _))
        ));
        assert!(matches!(
            create(&store, "admin", "admin", "longenough", UserRole::User).await,
            Err(UserError::Invalid("username", _))
        ));
        assert!(matches!(
            create(&store, "admin", "alice", "short", UserRole::User).await,
            Err(UserError::Invalid("password", _))
        ));
        let alice = create(&store, "admin", "alice", "correct horse", UserRole::User)
            .await
            .expect("create");
        assert!(matches!(
            create(&store, "admin", "Alice", "correct horse", UserRole::User).await,
            Err(UserError::Invalid("username", _))
        ));
        assert!(verify(&store, "alice", "wrong pass")
            .await
            .expect("verify")
            .is_none());
        assert!(verify(&store, "alice", "correct horse")
            .await
            .expect("verify")
            .is_some());

        let key = StoredKey::new(
            ApiKey {
                id: "k1".into(),
                user_id: Some(alice.id.clone()),
                is_active: true,
                ..Default::default()
            },
            "h1".into(),
        );
        store.insert_key(&key).await.expect("insert");
        set_active(&store, &alice.id, false).await.expect("disable");
        let k = store.get_key("k1").await.expect("get").expect("key");
        assert!(k.key.owner_disabled && k.key.is_active);
        assert!(verify(&store, "alice", "correct horse")
            .await
            .expect("verify")
            .is_none());
        // A budget reaches every key of the user, and only theirs.
        let other = StoredKey::new(
            ApiKey {
                id: "k2".into(),
                is_active: true,
                ..Default::default()
            },
            "h2".into(),
        );
        store.insert_key(&other).await.expect("insert");
        assert!(matches!(
            parse_budget("1", "-2"),
            Err(UserError::Invalid("monthlyCost", _))
        ));
        assert!(matches!(
            parse_budget("x", ""),
            Err(UserError::Invalid("dailyCost", _))
        ));
        assert!(matches!(
            parse_budget("inf", ""),
            Err(UserError::Invalid("dailyCost", _))
        ));
        let budget = parse_budget(" 2.5 ", "").expect("budget");
        assert_eq!(
            budget,
            Budget {
                daily_cost: 2.5,
                monthly_cost: 0.0
            }
        );
        set_budget(&store, &alice.id, budget).await.expect("budget");
        let k = store.get_key("k1").await.expect("get").expect("key");
        assert_eq!(k.key.owner_budget, budget);
        let k = store.get_key("k2").await.expect("get").expect("key");
        assert_eq!(k.key.owner_budget, Budget::default());
        assert_eq!(
            get(&store, &alice.id)
                .await
                .expect("get")
                .expect("user")
                .user
                .budget,
            budget
        );
        assert!(matches!(
            set_budget(&store, "nobody", budget).await,
            Err(UserError::NotFound)
        ));
        set_active(&store, &alice.id, true).await.expect("enable");
        assert!(
            !store
                .get_key("k1")
                .await
                .expect("get")
                .expect("key")
                .key
                .owner_disabled
        );
    }
}
