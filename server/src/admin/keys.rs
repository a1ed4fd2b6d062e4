//! API keys: create (one, a batch, or a user's own), edit, and the actions on one key
//! (enable, disable, delete, restore, purge), for an admin or for the key's owner.

use std::str::FromStr;

use app::{
    backend::KeyScope,
    domain::{ApiKey, ExpirationMode, UserKeyDefaults},
};
use chrono::Utc;
use serde::Deserialize;

use super::{
    key_input::{self, Amount, KeyInput, Services},
    AdminError,
};
use crate::{
    auth::api_key::{format_time, generate},
    state::AppState,
    store::StoredKey,
};

/// A key just created, with the key itself: the only time it is ever shown.
pub struct Created {
    pub stored: StoredKey,
    pub secret: String,
}

/// Creates a key (owned by a local user when `owner` is set).
pub async fn create(
    state: &AppState,
    input: KeyInput,
    owner: Option<String>,
) -> Result<Created, AdminError> {
    if input.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(AdminError::BadRequest("name is required".into()));
    }
    let secret = generate(&state.config.api_key_prefix);
    let mut key = ApiKey {
        id: uuid::Uuid::new_v4().to_string(),
        is_active: true,
        created_at: format_time(Utc::now()),
        key_preview: format!(
            "{}…",
            &secret[..secret.len().min(state.config.api_key_prefix.len() + 6)]
        ),
        user_id: owner,
        ..Default::default()
    };
    key_input::apply(&mut key, input)?;
    // A user's key carries their budget (and state) from the start.
    crate::users::stamp_owner(&state.store, &mut key).await?;
    let mut stored = StoredKey::new(key, state.crypto.hash_api_key(&secret));
    state.store.insert_key(&stored).await?;
    // Had the owner's budget changed meanwhile, the change may have missed this key: read again.
    if crate::users::stamp_owner(&state.store, &mut stored.key).await? {
        let (budget, disabled) = (stored.key.owner_budget, stored.key.owner_disabled);
        crate::store::modify_key(&*state.store, &stored.key.id, |k| {
            k.key.owner_budget = budget;
            k.key.owner_disabled = disabled;
            true
        })
        .await?;
    }
    Ok(Created { stored, secret })
}

/// The most keys one batch creates.
pub const BATCH_MAX: u32 = 500;

/// `count` keys named `<baseName>_<n>` with the same fields (the JSON API's body, the pages'
/// key form with a count).
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub base_name: String,
    pub count: u32,
    #[serde(flatten)]
    pub fields: KeyInput,
}

impl Batch {
    /// The name of the `n`th key (from 1).
    pub fn name(&self, n: u32) -> String {
        format!("{}_{n}", self.base_name.trim())
    }
}

/// Creates a batch; every key is checked by the same rules as one created alone.
pub async fn create_batch(state: &AppState, batch: Batch) -> Result<Vec<Created>, AdminError> {
    if batch.base_name.trim().is_empty() {
        return Err(AdminError::BadRequest("baseName is required".into()));
    }
    if !(1..=BATCH_MAX).contains(&batch.count) {
        return Err(AdminError::BadRequest(format!(
            "count must be between 1 and {BATCH_MAX}"
        )));
    }
    let mut created = Vec::with_capacity(batch.count as usize);
    for n in 1..=batch.count {
        let mut input = batch.fields.clone();
        input.name = Some(batch.name(n));
        created.push(create(state, input, None).await?);
    }
    tracing::info!(count = batch.count, "API keys created in a batch");
    Ok(created)
}

/// One user's key creation at a time (on this instance): the allowance is counted and the key
/// written without another creation in between.
static USER_KEY_CREATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A key a user creates for themselves: their name and description, everything else from the
/// admin's defaults, within the allowance the settings give.
pub async fn create_for_user(
    state: &AppState,
    user_id: &str,
    name: &str,
    description: &str,
) -> Result<Created, AdminError> {
    let _one_at_a_time = USER_KEY_CREATION.lock().await;
    let settings = state.settings.get();
    if !settings.user_keys_enabled {
        return Err(AdminError::Forbidden(
            "Creating keys is turned off by the administrator".into(),
        ));
    }
    // Deleted keys count: deleting never frees a slot (an admin's permanent delete does).
    let (mut held, mut deleted) = (0usize, 0usize);
    for k in state.all_keys().await?.iter() {
        if k.key.user_id.as_deref() == Some(user_id) {
            held += 1;
            deleted += usize::from(k.key.is_deleted);
        }
    }
    if held >= settings.max_keys_per_user as usize {
        let of_which = match deleted {
            0 => String::new(),
            1 => " (1 of them deleted: deleted keys count too)".to_string(),
            n => format!(" ({n} of them deleted: deleted keys count too)"),
        };
        return Err(AdminError::Forbidden(format!(
            "name: you already have the maximum of {} keys{of_which}; ask an administrator to remove one",
            settings.max_keys_per_user
        )));
    }
    let input = user_key_input(&settings.user_key_defaults, name, description, Utc::now());
    create(state, input, Some(user_id.to_string())).await
}

/// The fields of a key a user creates: their name and description, everything else from the
/// admin's defaults.
pub fn user_key_input(
    d: &UserKeyDefaults,
    name: &str,
    description: &str,
    now: chrono::DateTime<Utc>,
) -> KeyInput {
    let expires_at = (d.expiry_days > 0)
        .then(|| format_time(now + chrono::Duration::days(i64::from(d.expiry_days))));
    let number = |x: f64| Some(Amount::Number(x));
    KeyInput {
        name: Some(name.to_string()),
        description: Some(description.to_string()),
        permissions: Some(Services::List(d.permissions.clone())),
        concurrency_limit: number(f64::from(d.concurrency_limit)),
        rate_limit_window: number(f64::from(d.rate_limit_window)),
        rate_limit_requests: number(d.rate_limit_requests as f64),
        token_limit: number(d.token_limit as f64),
        rate_limit_cost: number(d.rate_limit_cost),
        daily_cost_limit: number(d.daily_cost_limit),
        total_cost_limit: number(d.total_cost_limit),
        weekly_cost_limit: number(d.weekly_cost_limit),
        expiration_mode: Some(ExpirationMode::Fixed),
        expires_at: expires_at.map(Some),
        ..Default::default()
    }
}

/// Whether `scope` may see this key.
pub fn in_scope(k: &ApiKey, scope: &KeyScope) -> bool {
    match scope {
        KeyScope::All => true,
        KeyScope::OwnedBy(uid) => k.user_id.as_deref() == Some(uid.as_str()),
    }
}

/// A key `scope` may see (deleted ones included).
pub async fn get(state: &AppState, scope: &KeyScope, id: &str) -> Result<StoredKey, AdminError> {
    state
        .store
        .get_key(id)
        .await?
        .filter(|k| in_scope(&k.key, scope))
        .ok_or(AdminError::NotFound("API key"))
}

/// Why a deleted key is not edited.
fn deleted() -> AdminError {
    AdminError::KeyDeleted
}

/// Edits a key's settings (an admin only; a deleted key must be restored first). Written on
/// the record as it is now: a concurrent write (a disable) is never overwritten.
pub async fn update(
    state: &AppState,
    scope: &KeyScope,
    id: &str,
    input: KeyInput,
) -> Result<StoredKey, AdminError> {
    if *scope != KeyScope::All {
        return Err(AdminError::Forbidden(
            "Only an administrator can change a key's settings".into(),
        ));
    }
    let mut failed = None;
    let written = crate::store::modify_key(&*state.store, id, |k| {
        if k.key.is_deleted {
            failed = Some(deleted());
            return false;
        }
        match key_input::apply(&mut k.key, input.clone()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    let stored = written.ok_or(AdminError::NotFound("API key"))?;
    tracing::info!(key = %id, "API key edited");
    Ok(stored)
}

/// The same changes to many keys; all are checked before any is written. Returns how many.
pub async fn update_many(
    state: &AppState,
    ids: &[String],
    input: KeyInput,
) -> Result<usize, AdminError> {
    for id in ids {
        let mut stored = get(state, &KeyScope::All, id).await?;
        if stored.key.is_deleted {
            return Err(deleted());
        }
        key_input::apply(&mut stored.key, input.clone())?;
    }
    for id in ids {
        update(state, &KeyScope::All, id, input.clone()).await?;
    }
    Ok(ids.len())
}

/// What can be done to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    Enable,
    Disable,
    /// Soft delete: the key stops working and leaves the list, its usage stays.
    Delete,
    Restore,
    /// Permanent: the record goes (its usage stays in the counters).
    Purge,
}

impl FromStr for KeyAction {
    type Err = AdminError;

    fn from_str(s: &str) -> Result<Self, AdminError> {
        Ok(match s {
            "enable" => KeyAction::Enable,
            "disable" => KeyAction::Disable,
            "delete" => KeyAction::Delete,
            "restore" => KeyAction::Restore,
            "purge" => KeyAction::Purge,
            other => return Err(AdminError::BadRequest(format!("unknown action {other:?}"))),
        })
    }
}

/// What an action does to a key record.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Write,
    Purge,
}

/// The rule of every key action, by an admin or by the key's owner.
fn step(key: &mut ApiKey, action: KeyAction, admin: bool) -> Result<Step, AdminError> {
    use KeyAction::*;
    match (action, key.is_deleted) {
        (Enable, false) if admin => {
            key.is_active = true;
            key.disabled_by_admin = false;
        }
        (Enable, false) if key.disabled_by_admin => return Err(AdminError::Forbidden(
            "This key was disabled by an administrator; only an administrator can enable it again"
                .into(),
        )),
        (Enable, false) => key.is_active = true,
        (Disable, false) => {
            key.is_active = false;
            // An owner's own disable leaves an admin's mark as it is.
            key.disabled_by_admin |= admin;
        }
        (Delete, false) => {
            key.is_deleted = true;
            key.is_active = false;
        }
        (Restore, true) if admin => {
            key.is_deleted = false;
            key.is_active = true;
            key.disabled_by_admin = false;
        }
        // With the record goes the slot it held in its owner's allowance.
        (Purge, true) if admin => return Ok(Step::Purge),
        (Enable | Disable | Delete, true) => return Err(AdminError::NotFound("API key")),
        (Restore, _) => {
            return Err(AdminError::Conflict(
                "Only a deleted key can be restored, by an administrator".into(),
            ))
        }
        (Purge, _) => {
            return Err(AdminError::Conflict(
                "Only a deleted key can be removed permanently, by an administrator".into(),
            ))
        }
    }
    Ok(Step::Write)
}

/// Applies `action` to key `id` as `scope` (an admin, or the key's owner).
pub async fn act(
    state: &AppState,
    scope: &KeyScope,
    id: &str,
    action: KeyAction,
) -> Result<(), AdminError> {
    let stored = get(state, scope, id).await?;
    let admin = *scope == KeyScope::All;
    if step(&mut stored.key.clone(), action, admin)? == Step::Purge {
        state.store.delete_key(id).await?;
        tracing::info!(key = %id, "API key removed permanently");
        return Ok(());
    }
    // On the record as it is now: a concurrent write (an admin's disable) is never undone.
    let mut failed = None;
    let written = crate::store::modify_key(&*state.store, id, |k| {
        match step(&mut k.key, action, admin) {
            Ok(Step::Write) => true,
            Ok(Step::Purge) => false,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    written.ok_or(AdminError::NotFound("API key"))?;
    tracing::info!(key = %id, ?action, admin, "API key changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_admin_re_enables_what_an_admin_disabled() {
        let mut k = ApiKey::default();
        step(&mut k, KeyAction::Disable, true).expect("admin disables");
        assert!(!k.is_active && k.disabled_by_admin);
        let err = step(&mut k, KeyAction::Enable, false).expect_err("owner refused");
        assert!(err.message().contains("only an administrator"));
        // The owner's own disable keeps the admin's mark; the admin lifts it.
        step(&mut k, KeyAction::Disable, false).expect("owner disables");
        assert!(k.disabled_by_admin);
        step(&mut k, KeyAction::Enable, true).expect("admin enables");
        assert!(k.is_active && !k.disabled_by_admin);
    }

    #[test]
    fn deleted_keys_are_restored_or_purged_by_an_admin_only() {
        let mut k = ApiKey::default();
        step(&mut k, KeyAction::Delete, false).expect("delete");
        assert!(k.is_deleted && !k.is_active);
        assert!(matches!(
            step(&mut k, KeyAction::Delete, true),
            Err(AdminError::NotFound(_))
        ));
        assert!(step(&mut k, KeyAction::Restore, false).is_err());
        assert!(step(&mut k, KeyAction::Purge, false).is_err());
        assert_eq!(step(&mut k, KeyAction::Purge, true).ok(), Some(Step::Purge));
        step(&mut k, KeyAction::Restore, true).expect("restore");
        assert!(!k.is_deleted && k.is_active);
        assert!(step(&mut k, KeyAction::Restore, true).is_err());
        assert!("wipe".parse::<KeyAction>().is_err());
    }
}
