//! The pages' forms as the admin actions' typed inputs, and an account as its form. The
//! fields stay text here; the rules (numbers, bounds, names) are applied by `crate::admin`.

use app::domain::{
    Account, AccountForm, AccountGroup, AccountType, ExpirationMode, KeyForm, Platform,
};
use serde::{de::IntoDeserializer, Deserialize};

use crate::admin::{
    account_input::{AccountInput, AwsCredentialsInput, Models, ProxyInput},
    key_input::{Amount, ByName, CostLimitsInput, KeyInput, Services},
    split_list, AdminError,
};

/// A trimmed field, `None` when blank.
fn filled(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The key form as a `KeyInput`.
pub fn key_input(f: &KeyForm) -> Result<KeyInput, AdminError> {
    let ticked = |v: &Option<String>| v.is_some();
    let permissions: Vec<String> = [
        ("claude", &f.perm_claude),
        ("openai", &f.perm_openai),
        ("gemini", &f.perm_gemini),
    ]
    .into_iter()
    .filter(|(_, v)| ticked(v))
    .map(|(p, _)| p.to_string())
    .collect();
    let clients: Vec<String> = [
        ("claude_code", &f.client_claude_code),
        ("gemini_cli", &f.client_gemini_cli),
        ("codex_cli", &f.client_codex_cli),
    ]
    .into_iter()
    .filter(|(_, v)| ticked(v))
    .map(|(c, _)| c.to_string())
    .collect();
    let mut platform_limits = std::collections::BTreeMap::new();
    for (p, d, t) in [
        ("claude", &f.claude_daily, &f.claude_total),
        ("openai", &f.openai_daily, &f.openai_total),
        ("gemini", &f.gemini_daily, &f.gemini_total),
    ] {
        if !d.trim().is_empty() || !t.trim().is_empty() {
            let limits = CostLimitsInput {
                daily_cost: Amount::from(d.trim()),
                total_cost: Amount::from(t.trim()),
            };
            platform_limits.insert(p.to_string(), limits);
        }
    }
    let mut model_limits = std::collections::BTreeMap::new();
    for (n, line) in f.model_limits.lines().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (model, daily, total) = match parts.as_slice() {
            [] => continue,
            [model, daily] => (model, Amount::from(*daily), Amount::Blank),
            [model, daily, total] => (model, Amount::from(*daily), Amount::from(*total)),
            _ => {
                return Err(AdminError::BadRequest(format!(
                    "modelLimits: line {} should be `model daily [total]`",
                    n + 1
                )))
            }
        };
        let limits = CostLimitsInput {
            daily_cost: daily,
            total_cost: total,
        };
        model_limits.insert(model.to_string(), limits);
    }
    let restricted = split_list(&f.restricted_models);
    let text = |s: &String| Some(Amount::from(s));
    let mut input = KeyInput {
        name: Some(f.name.clone()),
        description: Some(f.description.clone()),
        tags: Some(split_list(&f.tags)),
        permissions: Some(Services::List(permissions)),
        concurrency_limit: text(&f.concurrency_limit),
        rate_limit_window: text(&f.rate_limit_window),
        rate_limit_requests: text(&f.rate_limit_requests),
        token_limit: text(&f.token_limit),
        rate_limit_cost: text(&f.rate_limit_cost),
        daily_cost_limit: text(&f.daily_cost_limit),
        total_cost_limit: text(&f.total_cost_limit),
        weekly_cost_limit: text(&f.weekly_cost_limit),
        weekly_opus_cost_limit: text(&f.weekly_opus_cost_limit),
        platform_limits: Some(ByName::Map(platform_limits)),
        model_limits: Some(ByName::Map(model_limits)),
        enable_model_restriction: Some(!restricted.is_empty()),
        restricted_models: Some(restricted),
        enable_client_restriction: Some(!clients.is_empty()),
        allowed_clients: Some(clients),
        // A blank binding leaves the key's binding as it is.
        claude_account_id: filled(&f.claude_account_id).map(Some),
        claude_console_account_id: filled(&f.claude_console_account_id).map(Some),
        ..Default::default()
    };
    match f.activation_days.trim() {
        "" => {
            input.expiration_mode = Some(ExpirationMode::Fixed);
            // A date alone means the end of that day; a blank one leaves the expiry as it is.
            input.expires_at = match f.expires_at.trim() {
                "" => None,
                d if d.len() == 10 => Some(Some(format!("{d}T23:59:59Z"))),
                t => Some(Some(t.to_string())),
            };
        }
        days => {
            let days: u32 = days.parse().map_err(|_| {
                AdminError::BadRequest("activationDays must be a whole number of days".into())
            })?;
            input.expiration_mode = Some(ExpirationMode::Activation);
            input.activation_days = Some(days);
        }
    }
    Ok(input)
}

/// A name of a serde enum (`shared`, `claude-console`) as its value.
fn variant<T: for<'de> Deserialize<'de>>(name: &str) -> Result<T, serde::de::value::Error> {
    T::deserialize(name.into_deserializer())
}

/// The form's account type (`claude-console` …).
pub fn platform(f: &AccountForm) -> Result<Platform, AdminError> {
    variant(&f.platform)
        .map_err(|_| AdminError::BadRequest("platform: choose an account type".into()))
}

/// The account form as an `AccountInput` (on an edit, no proxy type removes the proxy).
pub fn account_input(f: &AccountForm, editing: bool) -> Result<AccountInput, AdminError> {
    let bad = |m: &str| AdminError::BadRequest(m.to_string());
    let account_type: AccountType = match f.account_type.as_str() {
        "" => AccountType::Shared,
        t => variant(t).map_err(|e| AdminError::BadRequest(format!("invalid form: {e}")))?,
    };
    let mut input = AccountInput {
        name: Some(f.name.clone()),
        description: Some(f.description.clone()),
        account_type: Some(account_type),
        supported_models: Some(Models::List(split_list(&f.supported_models))),
        disable_auto_protection: Some(f.disable_auto_protection.is_some()),
        api_url: filled(&f.api_url),
        api_key: filled(&f.api_key),
        user_agent: filled(&f.user_agent),
        deployment_name: filled(&f.deployment_name),
        api_version: filled(&f.api_version),
        region: filled(&f.region),
        bearer_token: filled(&f.bearer_token),
        oauth_session_id: filled(&f.oauth_session_id),
        ..Default::default()
    };
    if !f.priority.trim().is_empty() {
        match f.priority.trim().parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) => input.priority = Some(p),
            _ => return Err(bad("priority must be a whole number from 1 to 100")),
        }
    }
    if !f.max_concurrency.trim().is_empty() {
        let n: u32 = f
            .max_concurrency
            .trim()
            .parse()
            .map_err(|_| bad("maxConcurrency must be a whole number ≥ 0"))?;
        input.max_concurrency = Some(n);
    }
    if !f.aws_access_key_id.trim().is_empty() {
        input.aws_credentials = Some(AwsCredentialsInput {
            access_key_id: f.aws_access_key_id.trim().to_string(),
            secret_access_key: f.aws_secret_access_key.trim().to_string(),
            session_token: None,
        });
    }
    match f.proxy_type.trim() {
        "" if editing => input.proxy = Some(None),
        "" => {}
        kind => {
            let port: u16 = f
                .proxy_port
                .trim()
                .parse()
                .map_err(|_| bad("proxy port must be a number from 1 to 65535"))?;
            if f.proxy_host.trim().is_empty() {
                return Err(bad("proxy host is required with a proxy type"));
            }
            input.proxy = Some(Some(ProxyInput {
                kind: kind.to_string(),
                host: f.proxy_host.trim().to_string(),
                port,
                username: filled(&f.proxy_username),
                password: filled(&f.proxy_password),
            }));
        }
    }
    Ok(input)
}

/// An account as its form, for editing (credentials are never filled in).
pub fn account_form(a: &Account, groups: &[AccountGroup]) -> AccountForm {
    let proxy = a.proxy.clone().unwrap_or_default();
    AccountForm {
        platform: a.platform.as_str().into(),
        name: a.name.clone(),
        description: a.description.clone(),
        api_url: a.api_url.clone(),
        priority: a.priority.to_string(),
        max_concurrency: a.max_concurrency.to_string(),
        account_type: match a.account_type {
            AccountType::Shared => "shared".into(),
            AccountType::Dedicated => "dedicated".into(),
        },
        supported_models: a.supported_models.join(", "),
        user_agent: a.user_agent.clone().unwrap_or_default(),
        disable_auto_protection: a.disable_auto_protection.then(|| "on".into()),
        proxy_type: proxy.kind,
        proxy_host: proxy.host,
        proxy_port: if proxy.port == 0 {
            String::new()
        } else {
            proxy.port.to_string()
        },
        proxy_username: proxy.username.unwrap_or_default(),
        deployment_name: a.deployment_name.clone().unwrap_or_default(),
        api_version: a.api_version.clone().unwrap_or_default(),
        region: a.region.clone().unwrap_or_default(),
        groups: groups
            .iter()
            .filter(|g| g.members.contains(&a.id))
            .map(|g| g.id.clone())
            .collect::<Vec<_>>()
            .join(","),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::key_input::apply;
    use app::domain::{ApiKey, CostLimits};

    fn text(s: &str) -> Amount {
        Amount::Text(s.into())
    }

    #[test]
    fn key_form_becomes_the_key_input() {
        let form = KeyForm {
            name: "team".into(),
            tags: "a, b".into(),
            perm_claude: Some("on".into()),
            daily_cost_limit: "5".into(),
            claude_daily: "2".into(),
            model_limits: "claude-opus-* 1 10\n\nclaude-haiku-4 0.5".into(),
            restricted_models: "gpt-4o\nclaude-2".into(),
            client_claude_code: Some("on".into()),
            expires_at: "2030-01-31".into(),
            ..Default::default()
        };
        let v = key_input(&form).expect("input");
        assert_eq!(v.tags, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(v.permissions, Some(Services::List(vec!["claude".into()])));
        let Some(ByName::Map(platforms)) = &v.platform_limits else {
            panic!("platform limits")
        };
        assert_eq!(platforms["claude"].daily_cost, text("2"));
        let Some(ByName::Map(models)) = &v.model_limits else {
            panic!("model limits")
        };
        assert_eq!(models["claude-opus-*"].total_cost, text("10"));
        assert_eq!(models["claude-haiku-4"].daily_cost, text("0.5"));
        assert_eq!(
            v.restricted_models,
            Some(vec!["gpt-4o".to_string(), "claude-2".to_string()])
        );
        assert_eq!(v.enable_client_restriction, Some(true));
        assert_eq!(v.expires_at, Some(Some("2030-01-31T23:59:59Z".to_string())));
        // The admin's own rules then apply, field named in the message.
        let mut key = ApiKey::default();
        apply(&mut key, v).expect("apply");
        assert_eq!(
            key.model_limits["claude-opus-*"],
            CostLimits {
                daily_cost: 1.0,
                total_cost: 10.0
            }
        );
        let bad = KeyForm {
            name: "x".into(),
            daily_cost_limit: "-1".into(),
            ..Default::default()
        };
        let err =
            apply(&mut ApiKey::default(), key_input(&bad).expect("input")).expect_err("negative");
        assert!(
            err.message().contains("dailyCostLimit"),
            "{}",
            err.message()
        );
        let broken = KeyForm {
            model_limits: "a b c d".into(),
            ..Default::default()
        };
        assert!(key_input(&broken)
            .expect_err("line")
            .message()
            .starts_with("modelLimits"));
    }

    #[test]
    fn round_trip_of_a_key_through_its_form() {
        let mut key = ApiKey {
            name: "k".into(),
            daily_cost_limit: 3.5,
            concurrency_limit: 2,
            tags: vec!["x".into()],
            ..Default::default()
        };
        key.platform_limits.insert(
            "openai".into(),
            CostLimits {
                daily_cost: 1.0,
                total_cost: 0.0,
            },
        );
        let input = key_input(&KeyForm::of(&key)).expect("input");
        let mut again = ApiKey::default();
        apply(&mut again, input).expect("apply");
        assert_eq!(again.daily_cost_limit, 3.5);
        assert_eq!(again.concurrency_limit, 2);
        assert_eq!(again.tags, key.tags);
        assert_eq!(again.platform_limits, key.platform_limits);
    }

    #[test]
    fn account_form_checks_numbers_and_proxy() {
        let mut f = AccountForm {
            name: "a".into(),
            priority: "0".into(),
            ..Default::default()
        };
        let message = |r: Result<AccountInput, AdminError>| r.expect_err("refused").message();
        assert!(message(account_input(&f, false)).starts_with("priority"));
        f.priority = "10".into();
        f.proxy_type = "socks5".into();
        f.proxy_host = "127.0.0.1".into();
        f.proxy_port = "x".into();
        assert!(message(account_input(&f, false)).starts_with("proxy port"));
        f.proxy_port = "1080".into();
        let v = account_input(&f, false).expect("ok");
        assert_eq!(v.proxy.flatten().map(|p| p.port), Some(1080));
        f.proxy_type.clear();
        assert!(matches!(
            account_input(&f, true).expect("edit").proxy,
            Some(None)
        ));
        assert!(account_input(&f, false).expect("create").proxy.is_none());
    }
}
