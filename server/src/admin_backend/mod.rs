//! The server side of the admin pages' server functions (`app::backend::AdminBackend`): each
//! method turns its form into the typed input of an action in `crate::admin` and the refusal
//! into the message the page shows, so a page, a script and the command line are held to the
//! same rules.

pub mod forms;

use std::net::IpAddr;

use app::{
    backend::{AdminBackend, KeyScope, LoginGrant, LoginRefusal},
    domain::{
        AccountDetail, AccountForm, AccountGroup, AccountRow, AccountTest, DashboardSummary,
        KeyForm, KeyPage, KeyQuery, KeyStats, OAuthStart, Platform, RecordPage, RecordQuery,
        SessionInfo, Settings, SettingsForm, UserRole, UserRow,
    },
};

use crate::{
    admin::{self, keys::Batch, split_list, AdminError},
    state::AppState,
};

pub struct AdminPages(pub AppState);

/// What the page shows (store details stay in the log).
fn shown(e: AdminError) -> String {
    e.message()
}

#[async_trait::async_trait]
impl AdminBackend for AdminPages {
    async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<LoginGrant, LoginRefusal> {
        self.0.admin.login(username, password, client).await
    }

    async fn session(&self, token: &str) -> Option<SessionInfo> {
        self.0.admin.session(token).await
    }

    async fn logout(&self, token: &str) {
        self.0.admin.logout(token).await
    }

    async fn change_password(
        &self,
        token: &str,
        change: app::backend::PasswordChange,
        client: Option<IpAddr>,
    ) -> Result<String, app::backend::ChangeRefusal> {
        self.0.admin.change_password(token, &change, client).await
    }

    async fn dashboard(&self) -> Result<DashboardSummary, String> {
        admin::dashboard::summary(&self.0).await.map_err(shown)
    }

    async fn keys(&self, scope: KeyScope, q: KeyQuery) -> Result<KeyPage, String> {
        admin::key_list::page(&self.0, &scope, &q)
            .await
            .map_err(shown)
    }

    async fn key_form(&self, scope: KeyScope, id: &str) -> Result<KeyForm, String> {
        let stored = admin::keys::get(&self.0, &scope, id).await.map_err(shown)?;
        Ok(KeyForm::of(&stored.key))
    }

    /// An admin creates one key, or a batch when the form has a count; a user creates one of
    /// their own, from the admin's defaults.
    async fn create_keys(&self, scope: KeyScope, form: KeyForm) -> Result<Vec<String>, String> {
        let state = &self.0;
        let created = match &scope {
            KeyScope::OwnedBy(uid) => {
                vec![admin::keys::create_for_user(state, uid, &form.name, &form.description).await]
            }
            KeyScope::All => {
                let fields = forms::key_input(&form).map_err(shown)?;
                match form.count.trim() {
                    "" => vec![admin::keys::create(state, fields, None).await],
                    n => {
                        let batch = Batch {
                            base_name: form.name.clone(),
                            // Not a count: refused by the batch's own bounds.
                            count: n.parse().unwrap_or(0),
                            fields,
                        };
                        match admin::keys::create_batch(state, batch).await {
                            Ok(all) => all.into_iter().map(Ok).collect(),
                            Err(e) => vec![Err(e)],
                        }
                    }
                }
            }
        };
        created
            .into_iter()
            .map(|c| c.map(|c| c.secret).map_err(shown))
            .collect()
    }

    async fn update_key(&self, scope: KeyScope, id: &str, form: KeyForm) -> Result<(), String> {
        // Only an admin edits a key: a user hears that before anything about the form.
        let input = match scope {
            KeyScope::All => forms::key_input(&form).map_err(shown)?,
            KeyScope::OwnedBy(_) => Default::default(),
        };
        admin::keys::update(&self.0, &scope, id, input)
            .await
            .map(|_| ())
            .map_err(shown)
    }

    async fn key_action(&self, scope: KeyScope, id: &str, action: &str) -> Result<(), String> {
        let action = action.parse().map_err(shown)?;
        admin::keys::act(&self.0, &scope, id, action)
            .await
            .map_err(shown)
    }

    async fn accounts(&self) -> Result<Vec<AccountRow>, String> {
        admin::accounts::rows(&self.0).await.map_err(shown)
    }

    async fn account(&self, id: &str) -> Result<AccountDetail, String> {
        let state = &self.0;
        let groups = self.groups().await?;
        if id.is_empty() {
            return Ok(AccountDetail {
                account: None,
                form: AccountForm {
                    platform: Platform::ClaudeConsole.as_str().into(),
                    priority: "50".into(),
                    account_type: "shared".into(),
                    ..Default::default()
                },
                errors: Vec::new(),
                groups,
            });
        }
        let stored = admin::accounts::get(state, id, None).await.map_err(shown)?;
        let errors = admin::accounts::error_history(state, id, 20)
            .await
            .map_err(shown)?;
        Ok(AccountDetail {
            form: forms::account_form(&stored.account, &groups),
            account: Some(stored.account),
            errors,
            groups,
        })
    }

    async fn save_account(&self, id: Option<&str>, form: AccountForm) -> Result<String, String> {
        let state = &self.0;
        let input = forms::account_input(&form, id.is_some()).map_err(shown)?;
        let saved = match id {
            None => {
                let platform = forms::platform(&form).map_err(shown)?;
                admin::accounts::create(state, platform, input).await
            }
            Some(id) => admin::accounts::update(state, id, None, input).await,
        }
        .map_err(shown)?;
        let account_id = saved.account.id;
        admin::groups::set_membership(state, &account_id, &split_list(&form.groups))
            .await
            .map_err(shown)?;
        Ok(account_id)
    }

    async fn account_action(&self, id: &str, action: &str) -> Result<(), String> {
        let action = action.parse().map_err(shown)?;
        admin::accounts::act(&self.0, id, action)
            .await
            .map_err(shown)
    }

    async fn test_account(&self, id: &str) -> Result<AccountTest, String> {
        let t = admin::accounts::test(&self.0, id, None)
            .await
            .map_err(shown)?;
        Ok(AccountTest {
            ok: t.ok(),
            status: t.status,
            latency_ms: t.latency_ms,
            excerpt: t.response.chars().take(300).collect(),
        })
    }

    async fn oauth_start(&self, setup_token: bool) -> Result<OAuthStart, String> {
        let started = admin::oauth::start(&self.0, None, setup_token)
            .await
            .map_err(shown)?;
        Ok(OAuthStart {
            session_id: started.session_id,
            auth_url: started.auth_url,
        })
    }

    async fn oauth_exchange(&self, session_id: &str, code: &str) -> Result<(), String> {
        admin::oauth::exchange(&self.0, session_id, code)
            .await
            .map(|_| ())
            .map_err(shown)
    }

    async fn groups(&self) -> Result<Vec<AccountGroup>, String> {
        admin::groups::list_by_name(&self.0).await.map_err(shown)
    }

    async fn create_group(&self, name: &str, platform: &str) -> Result<(), String> {
        let input = admin::groups::GroupInput {
            name: Some(name.to_string()),
            platform: Some(
                if platform.is_empty() {
                    "claude"
                } else {
                    platform
                }
                .to_string(),
            ),
            ..Default::default()
        };
        admin::groups::create(&self.0, input)
            .await
            .map(|_| ())
            .map_err(shown)
    }

    async fn delete_group(&self, id: &str) -> Result<(), String> {
        admin::groups::delete(&self.0, id).await.map_err(shown)
    }

    async fn users(&self) -> Result<Vec<UserRow>, String> {
        admin::users::rows(&self.0).await.map_err(shown)
    }

    async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: UserRole,
    ) -> Result<(), String> {
        admin::users::create(&self.0, username, password, role)
            .await
            .map_err(shown)
    }

    async fn user_action(&self, id: &str, action: &str) -> Result<(), String> {
        let action = action.parse().map_err(shown)?;
        admin::users::act(&self.0, id, action).await.map_err(shown)
    }

    async fn set_user_budget(
        &self,
        id: &str,
        daily_cost: &str,
        monthly_cost: &str,
    ) -> Result<(), String> {
        admin::users::set_budget(&self.0, id, daily_cost, monthly_cost)
            .await
            .map_err(shown)
    }

    async fn records(&self, query: RecordQuery) -> Result<RecordPage, String> {
        admin::records::page(&self.0, &query).await.map_err(shown)
    }

    async fn settings(&self) -> Settings {
        admin::settings::current(&self.0)
    }

    async fn save_settings(&self, form: SettingsForm) -> Result<(), String> {
        admin::settings::save(&self.0, &form).await.map_err(shown)
    }

    async fn test_webhook(&self, index: usize) -> Result<(), String> {
        admin::settings::test_webhook(&self.0, index)
            .await
            .map_err(shown)
    }

    async fn key_stats(&self, key: &str) -> Result<KeyStats, String> {
        admin::key_report::key_stats(&self.0, key)
            .await
            .map_err(|(_, m)| m.to_string())
    }
}
