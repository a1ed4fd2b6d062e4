//! The settings: the settings form as saved settings (rates, webhook channels one per line,
//! users' keys and their defaults), and a test message to a saved webhook channel.

use app::domain::{ApiKey, Settings, SettingsForm, UserKeyDefaults, WebhookChannel};

use super::{
    key_input::{self, Amount, KeyInput, Services},
    AdminError,
};
use crate::{settings::SettingsError, state::AppState};

impl From<SettingsError> for AdminError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Store(e) => AdminError::Store(e),
            SettingsError::Invalid(field, m) => AdminError::Invalid(field, format!("{field}: {m}")),
        }
    }
}

/// The settings in force.
pub fn current(state: &AppState) -> Settings {
    (*state.settings.get()).clone()
}

/// The defaults of user-created keys from the settings form, checked by the key limits' own
/// rules (a refused value is named `userKeyDefaults.<field>`).
pub fn user_key_defaults(f: &SettingsForm) -> Result<UserKeyDefaults, AdminError> {
    let permissions: Vec<String> = [
        ("claude", &f.user_key_perm_claude),
        ("openai", &f.user_key_perm_openai),
        ("gemini", &f.user_key_perm_gemini),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(p, _)| p.to_string())
    .collect();
    let text = |s: &String| Some(Amount::from(s));
    let input = KeyInput {
        permissions: Some(Services::List(permissions)),
        concurrency_limit: text(&f.user_key_concurrency_limit),
        rate_limit_window: text(&f.user_key_rate_limit_window),
        rate_limit_requests: text(&f.user_key_rate_limit_requests),
        token_limit: text(&f.user_key_token_limit),
        rate_limit_cost: text(&f.user_key_rate_limit_cost),
        daily_cost_limit: text(&f.user_key_daily_cost_limit),
        total_cost_limit: text(&f.user_key_total_cost_limit),
        weekly_cost_limit: text(&f.user_key_weekly_cost_limit),
        ..Default::default()
    };
    let mut k = ApiKey::default();
    key_input::apply(&mut k, input)
        .map_err(|e| AdminError::BadRequest(format!("userKeyDefaults.{}", e.message())))?;
    let expiry_days = match f.user_key_expiry_days.trim() {
        "" => 0,
        v => v.parse::<u32>().map_err(|_| {
            AdminError::BadRequest(
                "userKeyDefaults.expiryDays must be a whole number of days ≥ 0".into(),
            )
        })?,
    };
    Ok(UserKeyDefaults {
        daily_cost_limit: k.daily_cost_limit,
        total_cost_limit: k.total_cost_limit,
        weekly_cost_limit: k.weekly_cost_limit,
        concurrency_limit: k.concurrency_limit,
        rate_limit_window: k.rate_limit_window,
        rate_limit_requests: k.rate_limit_requests,
        token_limit: k.token_limit,
        rate_limit_cost: k.rate_limit_cost,
        permissions: k.permissions,
        expiry_days,
    })
}

/// The webhook channels of the form, one per line: `type url [name] [secret=…] [(off)]`;
/// `secret=***` keeps the secret stored for the same type and URL.
fn webhooks(text: &str, previous: &[WebhookChannel]) -> Result<Vec<WebhookChannel>, AdminError> {
    let mut hooks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (line, enabled) = match line.strip_suffix("(off)") {
            Some(rest) => (rest.trim(), false),
            None => (line, true),
        };
        // `secret=…` anywhere on the line.
        let mut secret = None;
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| match w.strip_prefix("secret=") {
                Some(v) => {
                    secret = Some(v.to_string());
                    false
                }
                None => true,
            })
            .collect();
        let (Some(kind), Some(url)) = (words.first(), words.get(1)) else {
            return Err(AdminError::BadRequest(format!(
                "webhooks: line {} should be `type url [name] [secret=…]`",
                n + 1
            )));
        };
        let kind = kind.to_lowercase();
        let secret = match secret.as_deref() {
            Some("***") => previous
                .iter()
                .find(|w| w.kind == kind && w.url == *url)
                .map(|w| w.secret.clone())
                .unwrap_or_default(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let name = if words.len() > 2 {
            words[2..].join(" ")
        } else {
            kind.clone()
        };
        hooks.push(WebhookChannel {
            id: format!("wh{}", n + 1),
            kind,
            url: url.to_string(),
            name,
            secret,
            enabled,
        });
    }
    Ok(hooks)
}

/// Saves the settings form (checked as a whole by `settings::validate` before it is kept).
pub async fn save(state: &AppState, form: &SettingsForm) -> Result<(), AdminError> {
    let mut s = current(state);
    s.site_name = form.site_name.trim().to_string();
    s.logo_url = form.logo_url.trim().to_string();
    s.service_rates.clear();
    for (service, v) in [
        ("claude", &form.rate_claude),
        ("openai", &form.rate_openai),
        ("gemini", &form.rate_gemini),
    ] {
        if v.trim().is_empty() {
            continue;
        }
        let rate: f64 = v.trim().parse().map_err(|_| {
            AdminError::BadRequest(format!("serviceRates: the {service} rate must be a number"))
        })?;
        s.service_rates.insert(service.into(), rate);
    }
    s.webhooks = webhooks(&form.webhooks, &s.webhooks)?;
    s.webhooks_enabled = form.webhooks_enabled.is_some();
    s.user_keys_enabled = form.user_keys_enabled.is_some();
    s.max_keys_per_user = match form.max_keys_per_user.trim() {
        "" => 0,
        v => v
            .parse()
            .map_err(|_| AdminError::BadRequest("maxKeysPerUser must be a whole number".into()))?,
    };
    s.user_key_defaults = user_key_defaults(form)?;
    state.settings.save(&state.store, &state.crypto, s).await?;
    tracing::info!("settings saved");
    Ok(())
}

/// Sends a test message to saved webhook channel `index`.
pub async fn test_webhook(state: &AppState, index: usize) -> Result<(), AdminError> {
    let settings = state.settings.get();
    let channel = settings.webhooks.get(index).ok_or_else(|| {
        AdminError::BadRequest("webhooks: no saved channel there; save the settings first".into())
    })?;
    state
        .notifier
        .test(channel)
        .await
        .map_err(AdminError::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{admin::keys::user_key_input, auth::api_key::parse_time};
    use chrono::Utc;

    #[test]
    fn user_key_defaults_are_checked_and_become_a_users_key() {
        let form = SettingsForm {
            user_key_daily_cost_limit: "1.5".into(),
            user_key_concurrency_limit: "2".into(),
            user_key_rate_limit_window: "10".into(),
            user_key_rate_limit_requests: "5".into(),
            user_key_perm_claude: Some("on".into()),
            user_key_expiry_days: "30".into(),
            ..Default::default()
        };
        let d = user_key_defaults(&form).expect("defaults");
        assert_eq!(d.daily_cost_limit, 1.5);
        assert_eq!(d.concurrency_limit, 2);
        assert_eq!((d.rate_limit_window, d.rate_limit_requests), (10, 5));
        assert_eq!(d.permissions, vec!["claude".to_string()]);
        assert_eq!(d.expiry_days, 30);
        for (bad, field) in [
            (
                SettingsForm {
                    user_key_total_cost_limit: "-1".into(),
                    ..Default::default()
                },
                "userKeyDefaults.totalCostLimit",
            ),
            (
                SettingsForm {
                    user_key_concurrency_limit: "1.5".into(),
                    ..Default::default()
                },
                "userKeyDefaults.concurrencyLimit",
            ),
            (
                SettingsForm {
                    user_key_expiry_days: "soon".into(),
                    ..Default::default()
                },
                "userKeyDefaults.expiryDays",
            ),
        ] {
            let err = user_key_defaults(&bad).expect_err(field).message();
            assert!(err.starts_with(field), "{err}");
        }

        let now = Utc::now();
        let mut key = ApiKey::default();
        key_input::apply(&mut key, user_key_input(&d, "laptop", "mine", now)).expect("apply");
        assert_eq!(key.name, "laptop");
        assert_eq!(key.daily_cost_limit, 1.5);
        assert_eq!(key.concurrency_limit, 2);
        assert_eq!(key.rate_limit_requests, 5);
        assert_eq!(key.permissions, vec!["claude".to_string()]);
        let expires = key
            .expires_at
            .as_deref()
            .and_then(parse_time)
            .expect("expiry");
        assert!(
            (expires - now - chrono::Duration::days(30))
                .num_seconds()
                .abs()
                <= 1
        );
        // No expiry by default.
        let mut key = ApiKey::default();
        let input = user_key_input(&UserKeyDefaults::default(), "k", "", now);
        key_input::apply(&mut key, input).expect("apply");
        assert!(key.expires_at.is_none() && !key.has_limits());
    }
}
