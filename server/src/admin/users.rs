//! Local users: list with their keys and usage, create, enable or disable, make admin or
//! user, set their budget.

use std::str::FromStr;

use app::domain::{UsageCounters, UserRole, UserRow};

use super::AdminError;
use crate::{
    state::AppState,
    store::{buckets, StoredKey},
    users::UserError,
};

impl From<UserError> for AdminError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Store(e) => AdminError::Store(e),
            UserError::NotFound => AdminError::NotFound("user"),
            UserError::Invalid(field, m) => AdminError::Invalid(field, format!("{field}: {m}")),
        }
    }
}

/// Every user with their live and deleted key counts and their keys' usage all time.
pub async fn rows(state: &AppState) -> Result<Vec<UserRow>, AdminError> {
    let users = crate::users::list(&state.store).await?;
    let keys = state.all_keys().await?;
    let mut rows = Vec::with_capacity(users.len());
    for u in users {
        let all_own = keys
            .iter()
            .filter(|k| k.key.user_id.as_deref() == Some(&u.user.id));
        let deleted = all_own.clone().filter(|k| k.key.is_deleted).count();
        let own: Vec<&StoredKey> = all_own.filter(|k| !k.key.is_deleted).collect();
        let names: Vec<String> = own.iter().map(|k| buckets::key_total(&k.key.id)).collect();
        let mut total = UsageCounters::default();
        for c in state.store.usage(&names).await? {
            total.add(&c);
        }
        rows.push(UserRow {
            key_count: own.len() as u64,
            deleted_key_count: deleted as u64,
            user: u.user,
            total,
        });
    }
    Ok(rows)
}

/// Creates a user (a name the admin holds is taken).
pub async fn create(
    state: &AppState,
    username: &str,
    password: &str,
    role: UserRole,
) -> Result<(), AdminError> {
    let admin = state
        .store
        .get_admin()
        .await?
        .map(|a| a.username)
        .unwrap_or_else(|| state.config.admin_username.clone());
    crate::users::create(&state.store, &admin, username, password, role).await?;
    Ok(())
}

/// What can be done to one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAction {
    Enable,
    Disable,
    MakeAdmin,
    MakeUser,
}

impl FromStr for UserAction {
    type Err = AdminError;

    fn from_str(s: &str) -> Result<Self, AdminError> {
        Ok(match s {
            "enable" => UserAction::Enable,
            "disable" => UserAction::Disable,
            "make-admin" => UserAction::MakeAdmin,
            "make-user" => UserAction::MakeUser,
            other => return Err(AdminError::BadRequest(format!("unknown action {other:?}"))),
        })
    }
}

pub async fn act(state: &AppState, id: &str, action: UserAction) -> Result<(), AdminError> {
    let store = &state.store;
    match action {
        UserAction::Enable => crate::users::set_active(store, id, true).await?,
        UserAction::Disable => crate::users::set_active(store, id, false).await?,
        UserAction::MakeAdmin => crate::users::set_role(store, id, UserRole::Admin).await?,
        UserAction::MakeUser => crate::users::set_role(store, id, UserRole::User).await?,
    };
    Ok(())
}

/// Sets a user's daily and monthly budget in USD (blank: none).
pub async fn set_budget(
    state: &AppState,
    id: &str,
    daily_cost: &str,
    monthly_cost: &str,
) -> Result<(), AdminError> {
    let budget = crate::users::parse_budget(daily_cost, monthly_cost)?;
    crate::users::set_budget(&state.store, id, budget).await?;
    Ok(())
}
