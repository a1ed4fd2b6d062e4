//! What happens to an account after its upstream failed: a rest by error class (or a block
//! until an admin resets it), always an entry in its error history. A failure the request
//! caused (a verdict without a class, `cooldown`) changes nothing here, not even the history.

use app::domain::AccountStatus;
use std::time::Duration;

use app::domain::{AccountError, Cooldown};
use chrono::Utc;

use super::cooldown::{CooldownClass, Verdict};
use tokio_util::task::TaskTracker;

use crate::{
    notify::{Event, EventKind, Notifier},
    store::{DynStore, StoredAccount},
    timestamps::format_time,
};

/// What marking an account uses: the store, the webhook notifier, and the tracker that keeps
/// marks off the request path (drained on shutdown). The running service (`AppState`) is one.
pub trait Marks: Clone + Send + Sync + 'static {
    fn store(&self) -> &DynStore;
    fn notifier(&self) -> &Notifier;
    fn background(&self) -> &TaskTracker;
}

/// Records a failed attempt on `account`, off the request path.
pub fn report(
    state: &impl Marks,
    account: &StoredAccount,
    verdict: &Verdict,
    status: u16,
    message: &str,
) {
    let Some(class) = verdict.class else { return };
    let state = state.clone();
    let account = account.clone();
    let verdict = verdict.clone();
    let message: String = message.chars().take(500).collect();
    state.background().clone().spawn(async move {
        let protect = !account.account.disable_auto_protection;
        let rest = verdict.rest.filter(|_| protect);
        let entry = AccountError {
            at: format_time(Utc::now()),
            class: class.as_str().to_string(),
            status,
            message: message.clone(),
            cooldown_secs: rest.map(|r| r.as_secs()).unwrap_or(0),
        };
        let cooldown = rest.map(|r| {
            (
                Cooldown {
                    class: class.as_str().to_string(),
                    status,
                    until_ms: Utc::now().timestamp_millis() + r.as_millis() as i64,
                    family: verdict.family.map(str::to_string),
                    message: message.clone(),
                },
                r,
            )
        });
        let id = &account.account.id;
        tracing::warn!(account = %id, class = class.as_str(), status, rest_secs = rest.map(|r| r.as_secs()), family = ?verdict.family, "account marked");
        if let Err(e) = state.store().mark_account(id, cooldown.as_ref().map(|(c, r)| (c, *r)), &entry).await {
            tracing::error!(account = %id, error = %e, "account mark could not be stored");
        }
        let event = if verdict.block && protect {
            Some(EventKind::Blocked)
        } else {
            match class {
                CooldownClass::RateLimit => Some(EventKind::RateLimited),
                CooldownClass::AuthError => Some(EventKind::AuthError),
                _ => None,
            }
        };
        if let Some(kind) = event {
            state.notifier().notify(Event::new(
                kind,
                id.clone(),
                account.account.name.clone(),
                account.account.platform.as_str(),
                format!("HTTP {status}: {message}"),
            ));
        }
        if verdict.block && protect {
            block(&state, id, &message).await;
        }
    });
}

async fn block(state: &impl Marks, id: &str, message: &str) {
    match state.store().get_account(id).await {
        Ok(Some(mut a)) => {
            a.account.status = AccountStatus::Blocked;
            a.account.error_message = message.to_string();
            if let Err(e) = state.store().put_account(&a).await {
                tracing::error!(account = %id, error = %e, "block could not be stored");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(account = %id, error = %e, "block: store unavailable"),
    }
}

/// A failed token refresh: the account goes to `error` (unless auto-protection is off) and the
/// failure enters its history.
pub async fn refresh_failed(state: &impl Marks, account: &mut StoredAccount, message: &str) {
    let entry = AccountError {
        at: format_time(Utc::now()),
        class: "refresh_failed".into(),
        status: 0,
        message: message.to_string(),
        cooldown_secs: 0,
    };
    let id = account.account.id.clone();
    let _ = state.store().mark_account(&id, None, &entry).await;
    state.notifier().notify(Event::new(
        EventKind::RefreshFailed,
        id.clone(),
        account.account.name.clone(),
        account.account.platform.as_str(),
        message,
    ));
    if !account.account.disable_auto_protection {
        account.account.status = AccountStatus::Error;
        account.account.error_message = format!("token refresh failed: {message}");
        let _ = state.store().put_account(account).await;
    }
}

/// The admin's "reset status": active again, rests lifted.
pub async fn reset(
    state: &impl Marks,
    account: &mut StoredAccount,
) -> Result<(), crate::store::StoreError> {
    let was_resting = account.account.status != AccountStatus::Active
        || !state
            .store()
            .cooldowns(std::slice::from_ref(&account.account.id))
            .await?
            .is_empty();
    account.account.status = AccountStatus::Active;
    account.account.error_message.clear();
    state.store().clear_cooldowns(&account.account.id).await?;
    state.store().put_account(account).await?;
    if was_resting {
        state.notifier().notify(Event::new(
            EventKind::Recovered,
            account.account.id.clone(),
            account.account.name.clone(),
            account.account.platform.as_str(),
            "reset by an administrator",
        ));
    }
    Ok(())
}

/// How long until a rest ends, for messages.
pub fn remaining(c: &Cooldown) -> Duration {
    Duration::from_millis((c.until_ms - Utc::now().timestamp_millis()).max(0) as u64)
}
