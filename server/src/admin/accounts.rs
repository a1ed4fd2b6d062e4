//! Upstream accounts: list with their state, create (with what each kind requires), edit,
//! delete (and with it every group membership), schedule or pause, reset, refresh a Claude
//! OAuth token, send a test request, read the error history.

use app::domain::AccountStatus;
use std::str::FromStr;

use app::domain::{Account, AccountError, AccountRow, Cooldown, Platform};
use chrono::Utc;
use serde::Serialize;

use super::{
    account_input::{self, AccountInput, OAuthInput, ProxyInput},
    AdminError,
};
use crate::{
    auth::api_key::format_time,
    scheduler::health,
    state::AppState,
    store::{buckets, Periods, StoredAccount},
    upstream::{claude_oauth, AccountSecrets},
};

pub use super::account_test::{test, TestOutcome};

/// An account as listed: its record, its live rests and a one-word state.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    #[serde(flatten)]
    pub account: Account,
    /// One of `app::domain::ACCOUNT_STATES`.
    pub state: &'static str,
    pub cooldowns: Vec<Cooldown>,
    pub has_refresh_token: bool,
}

/// Each account with its state (last use filled in from the scheduler's record).
pub async fn describe(
    state: &AppState,
    accounts: Vec<StoredAccount>,
) -> Result<Vec<AccountView>, AdminError> {
    let snap = state.store.account_snapshot(None).await?;
    let ids: Vec<String> = accounts.iter().map(|a| a.account.id.clone()).collect();
    let rests = state.store.cooldowns(&ids).await?;
    let mut out = Vec::with_capacity(accounts.len());
    for mut a in accounts {
        if let Some(ms) = snap.last_used_ms.get(&a.account.id) {
            a.account.last_used_at = chrono::DateTime::from_timestamp_millis(*ms).map(format_time);
        }
        let cooldowns = rests.get(&a.account.id).cloned().unwrap_or_default();
        let acct = &a.account;
        let state_word = if acct.status == AccountStatus::Blocked {
            "blocked"
        } else if acct.status == AccountStatus::Error {
            "error"
        } else if !acct.is_active || !acct.schedulable {
            "paused"
        } else if cooldowns.iter().any(|c| c.class == "rate_limit") {
            "rate_limited"
        } else if !cooldowns.is_empty() {
            "cooling_down"
        } else {
            "normal"
        };
        let has_refresh_token = AccountSecrets::open(&state.crypto, &a)
            .map(|s| s.refresh_token.is_some())
            .unwrap_or(false);
        out.push(AccountView {
            account: a.account,
            state: state_word,
            cooldowns,
            has_refresh_token,
        });
    }
    Ok(out)
}

/// The accounts of one platform, by priority then name.
pub async fn list(state: &AppState, platform: Platform) -> Result<Vec<AccountView>, AdminError> {
    let mut accounts: Vec<StoredAccount> = state
        .store
        .list_accounts()
        .await?
        .into_iter()
        .filter(|a| a.account.platform == platform)
        .collect();
    accounts.sort_by(|a, b| {
        (a.account.priority, &a.account.name).cmp(&(b.account.priority, &b.account.name))
    });
    describe(state, accounts).await
}

/// Every account as the pages and `crs accounts list` show it: why it is not serving, and
/// today's usage; by priority then name.
pub async fn rows(state: &AppState) -> Result<Vec<AccountRow>, AdminError> {
    let described = describe(state, state.store.list_accounts().await?).await?;
    let day = Periods::at(Utc::now(), state.config.timezone_offset_hours).day;
    let names: Vec<String> = described
        .iter()
        .map(|v| buckets::account_day(&v.account.id, &day))
        .collect();
    let today = state.store.usage(&names).await?;
    let mut rows: Vec<AccountRow> = described
        .into_iter()
        .zip(today)
        .map(|(v, today)| {
            let a = v.account;
            let reason = match v.state {
                "normal" => String::new(),
                "paused" if !a.is_active => "disabled".into(),
                "paused" => "not schedulable (paused by an admin)".into(),
                "blocked" | "error" if !a.error_message.is_empty() => a.error_message.clone(),
                "blocked" | "error" => v.state.to_string(),
                _ => v
                    .cooldowns
                    .first()
                    .map(|c| match &c.family {
                        Some(f) => format!("{} ({f} models, HTTP {})", c.class, c.status),
                        None => format!("{} (HTTP {})", c.class, c.status),
                    })
                    .unwrap_or_default(),
            };
            AccountRow {
                resting_until: v
                    .cooldowns
                    .iter()
                    .map(|c| c.until_ms)
                    .max()
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(format_time),
                platform: a.platform.as_str().to_string(),
                schedulable: a.schedulable,
                state: v.state.to_string(),
                reason,
                today,
                priority: a.priority,
                last_used_at: a.last_used_at,
                id: a.id,
                name: a.name,
            }
        })
        .collect();
    rows.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    Ok(rows)
}

fn new_account(platform: Platform) -> StoredAccount {
    StoredAccount {
        account: Account {
            id: uuid::Uuid::new_v4().to_string(),
            platform,
            created_at: format_time(Utc::now()),
            ..Default::default()
        },
        secret: String::new(),
    }
}

async fn save(state: &AppState, a: &StoredAccount) -> Result<AccountView, AdminError> {
    state.store.put_account(a).await?;
    state.scheduler.invalidate();
    describe(state, vec![a.clone()])
        .await?
        .into_iter()
        .next()
        .ok_or(AdminError::NotFound("Account"))
}

/// An account, of `platform` when given.
pub async fn get(
    state: &AppState,
    id: &str,
    platform: Option<Platform>,
) -> Result<StoredAccount, AdminError> {
    state
        .store
        .get_account(id)
        .await?
        .filter(|a| platform.is_none_or(|p| a.account.platform == p))
        .ok_or(AdminError::NotFound("Account"))
}

fn required(field: &str) -> AdminError {
    AdminError::BadRequest(format!("{field} is required"))
}

fn blank(v: Option<&str>) -> bool {
    v.is_none_or(|s| s.trim().is_empty())
}

async fn create_keyed(
    state: &AppState,
    platform: Platform,
    mut input: AccountInput,
    default_url: Option<&str>,
) -> Result<AccountView, AdminError> {
    if blank(input.name.as_deref()) {
        return Err(required("name"));
    }
    if input.api_url.is_none() {
        match default_url {
            Some(u) => input.api_url = Some(u.to_string()),
            None => return Err(required("apiUrl")),
        }
    }
    if blank(input.api_key.as_deref()) {
        return Err(required("apiKey"));
    }
    let mut a = new_account(platform);
    account_input::apply(state, &mut a, input)?;
    save(state, &a).await
}

/// Creates an account of `platform`, with what that kind requires.
pub async fn create(
    state: &AppState,
    platform: Platform,
    input: AccountInput,
) -> Result<AccountView, AdminError> {
    match platform {
        Platform::ClaudeConsole => create_keyed(state, platform, input, None).await,
        Platform::OpenaiResponses => {
            create_keyed(state, platform, input, Some("https://api.openai.com")).await
        }
        Platform::GeminiApi => {
            let default = Some(crate::upstream::gemini::DEFAULT_BASE);
            create_keyed(state, platform, input, default).await
        }
        Platform::AzureOpenai => {
            if blank(input.deployment_name.as_deref()) {
                return Err(required("deploymentName"));
            }
            create_keyed(state, platform, input, None).await
        }
        Platform::Bedrock => create_bedrock(state, input).await,
        Platform::ClaudeOfficial => create_official(state, input).await,
    }
}

async fn create_bedrock(state: &AppState, input: AccountInput) -> Result<AccountView, AdminError> {
    if blank(input.name.as_deref()) {
        return Err(required("name"));
    }
    if input.aws_credentials.is_none() && blank(input.bearer_token.as_deref()) {
        return Err(required("awsCredentials or bearerToken"));
    }
    let mut a = new_account(Platform::Bedrock);
    a.account.region = Some("us-east-1".into());
    account_input::apply(state, &mut a, input)?;
    save(state, &a).await
}

/// A Claude OAuth account, from the tokens of an exchanged session or given directly.
async fn create_official(
    state: &AppState,
    mut input: AccountInput,
) -> Result<AccountView, AdminError> {
    if blank(input.name.as_deref()) {
        return Err(required("name"));
    }
    let mut a = new_account(Platform::ClaudeOfficial);
    a.account.api_url = state.config.claude_api_url.clone();
    if let Some(sid) = input.oauth_session_id.take() {
        let session =
            state.store.get_oauth_session(&sid).await?.ok_or_else(|| {
                AdminError::BadRequest("oauthSessionId is unknown or expired".into())
            })?;
        let sealed = session.tokens.ok_or_else(|| {
            AdminError::BadRequest(
                "the authorization code of this session was not exchanged yet".into(),
            )
        })?;
        let unreadable = || AdminError::BadRequest("session tokens unreadable".into());
        let tokens: AccountSecrets =
            serde_json::from_str(&state.crypto.decrypt(&sealed).map_err(|_| unreadable())?)
                .map_err(|_| unreadable())?;
        input.claude_ai_oauth = Some(OAuthInput {
            access_token: tokens.access_token.unwrap_or_default(),
            refresh_token: tokens.refresh_token,
            expires_at: session.expires_at,
            scopes: Some(session.granted_scopes),
        });
        if input.proxy.is_none() {
            if let Some(p) = session.proxy {
                let password = session
                    .proxy_secret
                    .and_then(|s| state.crypto.decrypt(&s).ok());
                input.proxy = Some(Some(ProxyInput {
                    kind: p.kind,
                    host: p.host,
                    port: p.port,
                    username: p.username,
                    password,
                }));
            }
        }
        state.store.delete_oauth_session(&sid).await?;
    }
    if input.claude_ai_oauth.is_none() {
        return Err(required(
            "oauthSessionId (from exchange-code) or claudeAiOauth",
        ));
    }
    account_input::apply(state, &mut a, input)?;
    save(state, &a).await
}

/// Edits an account (of `platform` when given).
pub async fn update(
    state: &AppState,
    id: &str,
    platform: Option<Platform>,
    input: AccountInput,
) -> Result<AccountView, AdminError> {
    let mut a = get(state, id, platform).await?;
    account_input::apply(state, &mut a, input)?;
    save(state, &a).await
}

/// Deletes an account (of `platform` when given) and its memberships of every group.
pub async fn delete(
    state: &AppState,
    id: &str,
    platform: Option<Platform>,
) -> Result<(), AdminError> {
    get(state, id, platform).await?;
    state.store.delete_account(id).await?;
    super::groups::set_membership(state, id, &[]).await?;
    state.scheduler.invalidate();
    tracing::info!(account = %id, "account deleted");
    Ok(())
}

/// What can be done to one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountAction {
    ToggleSchedulable,
    /// Active again, every rest lifted (the way out of `blocked` and `error`).
    ResetStatus,
    Delete,
}

impl FromStr for AccountAction {
    type Err = AdminError;

    fn from_str(s: &str) -> Result<Self, AdminError> {
        Ok(match s {
            "toggle-schedulable" => AccountAction::ToggleSchedulable,
            "reset-status" => AccountAction::ResetStatus,
            "delete" => AccountAction::Delete,
            other => return Err(AdminError::BadRequest(format!("unknown action {other:?}"))),
        })
    }
}

/// Takes an account out of scheduling or puts it back; returns whether it is schedulable.
pub async fn toggle_schedulable(state: &AppState, id: &str) -> Result<bool, AdminError> {
    let mut a = get(state, id, None).await?;
    a.account.schedulable = !a.account.schedulable;
    state.store.put_account(&a).await?;
    state.scheduler.invalidate();
    Ok(a.account.schedulable)
}

/// Active again, every rest lifted.
pub async fn reset_status(state: &AppState, id: &str) -> Result<AccountView, AdminError> {
    let mut a = get(state, id, None).await?;
    health::reset(state, &mut a).await?;
    state.scheduler.invalidate();
    tracing::info!(account = %id, "account status reset");
    save(state, &a).await
}

/// Applies `action` to account `id`.
pub async fn act(state: &AppState, id: &str, action: AccountAction) -> Result<(), AdminError> {
    match action {
        AccountAction::ToggleSchedulable => toggle_schedulable(state, id).await.map(|_| ()),
        AccountAction::ResetStatus => reset_status(state, id).await.map(|_| ()),
        AccountAction::Delete => delete(state, id, None).await,
    }
}

/// Refreshes a Claude OAuth account's access token now.
pub async fn refresh_official(state: &AppState, id: &str) -> Result<AccountView, AdminError> {
    let mut a = get(state, id, Some(Platform::ClaudeOfficial)).await?;
    // Expire it now, so the shared refresh path (with its lock) does the work.
    a.account.token_expires_at = Some(0);
    state.store.put_account(&a).await?;
    let before = a.account.token_expires_at;
    let _ = claude_oauth::access_token(state, &a).await;
    let after = get(state, id, None).await?;
    if after.account.token_expires_at == before {
        return Err(AdminError::BadRequest(format!(
            "refresh failed: {}",
            after.account.error_message
        )));
    }
    save(state, &after).await
}

/// The newest `limit` upstream errors of an account.
pub async fn error_history(
    state: &AppState,
    id: &str,
    limit: usize,
) -> Result<Vec<AccountError>, AdminError> {
    get(state, id, None).await?;
    Ok(state.store.error_history(id, limit).await?)
}
