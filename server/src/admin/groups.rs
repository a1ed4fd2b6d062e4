//! Account groups: named sets of accounts a key can be bound to (`group:<id>`), and an
//! account's memberships.

use app::domain::{Account, AccountGroup};
use chrono::Utc;
use serde::Deserialize;

use super::AdminError;
use crate::{auth::api_key::format_time, state::AppState};

/// Create and update body. Every field is optional on update.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct GroupInput {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub description: Option<String>,
    pub members: Option<Vec<String>>,
}

/// Every group, in the store's order.
pub async fn list(state: &AppState) -> Result<Vec<AccountGroup>, AdminError> {
    let snap = state.store.account_snapshot(None).await?;
    Ok(snap.groups.unwrap_or_default())
}

/// Every group, by name (the pages).
pub async fn list_by_name(state: &AppState) -> Result<Vec<AccountGroup>, AdminError> {
    let mut groups = list(state).await?;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

pub async fn get(state: &AppState, id: &str) -> Result<AccountGroup, AdminError> {
    list(state)
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or(AdminError::NotFound("Account group"))
}

/// The accounts of group `id`.
pub async fn members(state: &AppState, id: &str) -> Result<Vec<Account>, AdminError> {
    let g = get(state, id).await?;
    Ok(state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .filter(|a| g.members.contains(&a.account.id))
        .map(|a| a.account)
        .collect())
}

async fn apply(
    state: &AppState,
    g: &mut AccountGroup,
    input: GroupInput,
) -> Result<(), AdminError> {
    if let Some(name) = input.name {
        if name.trim().is_empty() {
            return Err(AdminError::BadRequest("name must not be empty".into()));
        }
        g.name = name.trim().to_string();
    }
    if let Some(p) = input.platform {
        if p != "claude" {
            return Err(AdminError::BadRequest("platform must be claude".into()));
        }
        g.platform = p;
    }
    if let Some(d) = input.description {
        g.description = d;
    }
    if let Some(members) = input.members {
        let accounts = state.store.list_accounts().await?;
        if let Some(unknown) = members
            .iter()
            .find(|m| !accounts.iter().any(|a| &a.account.id == *m))
        {
            return Err(AdminError::BadRequest(format!(
                "members: unknown account {unknown}"
            )));
        }
        g.members = members;
    }
    g.updated_at = format_time(Utc::now());
    Ok(())
}

pub async fn create(state: &AppState, input: GroupInput) -> Result<AccountGroup, AdminError> {
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    let mut g = AccountGroup {
        id: uuid::Uuid::new_v4().to_string(),
        platform: "claude".into(),
        created_at: format_time(Utc::now()),
        ..Default::default()
    };
    apply(state, &mut g, input).await?;
    state.store.put_group(&g).await?;
    state.scheduler.invalidate();
    Ok(g)
}

pub async fn update(
    state: &AppState,
    id: &str,
    input: GroupInput,
) -> Result<AccountGroup, AdminError> {
    let mut g = get(state, id).await?;
    apply(state, &mut g, input).await?;
    state.store.put_group(&g).await?;
    state.scheduler.invalidate();
    Ok(g)
}

pub async fn delete(state: &AppState, id: &str) -> Result<(), AdminError> {
    get(state, id).await?;
    state.store.delete_group(id).await?;
    state.scheduler.invalidate();
    Ok(())
}

/// Makes account `account_id` a member of exactly the groups `wanted` (none: it leaves them
/// all, as when it is deleted).
pub async fn set_membership(
    state: &AppState,
    account_id: &str,
    wanted: &[String],
) -> Result<(), AdminError> {
    for mut g in list(state).await? {
        let member = g.members.iter().any(|m| m == account_id);
        let want = wanted.contains(&g.id);
        if member == want {
            continue;
        }
        if want {
            g.members.push(account_id.to_string());
        } else {
            g.members.retain(|m| m != account_id);
        }
        g.updated_at = format_time(Utc::now());
        state.store.put_group(&g).await?;
    }
    state.scheduler.invalidate();
    Ok(())
}
