//! Service-wide settings (site name, service rates, webhook channels, relay toggles).
//!
//! Stored as one document; every instance reads them from an in-memory snapshot, which a save
//! replaces at once and a background task refreshes so that other instances follow.

use std::{sync::Arc, time::Duration};

use app::domain::{Settings, WEBHOOK_KINDS};
use arc_swap::ArcSwap;

use crate::{
    crypto::Crypto,
    store::{from_json, to_json, DynStore, StoreError},
};

const KIND: &str = "settings";
const ID: &str = "global";
/// How soon a change made on another instance is seen here.
const REFRESH: Duration = Duration::from_secs(10);

pub struct SettingsCache {
    current: ArcSwap<Settings>,
}

impl Default for SettingsCache {
    fn default() -> Self {
        SettingsCache {
            current: ArcSwap::from_pointee(Settings::default()),
        }
    }
}

impl SettingsCache {
    /// The current snapshot (no lock, no store read).
    pub fn get(&self) -> Arc<Settings> {
        self.current.load_full()
    }

    pub async fn reload(&self, store: &DynStore, crypto: &Crypto) -> Result<(), StoreError> {
        let mut loaded: Settings = match store.get_doc(KIND, ID).await? {
            Some(json) => from_json(json.as_bytes())?,
            None => Settings::default(),
        };
        // Channel secrets are stored encrypted; in memory they are clear for the sender.
        for w in &mut loaded.webhooks {
            if !w.secret.is_empty() {
                w.secret = crypto.decrypt(&w.secret).unwrap_or_default();
            }
        }
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// Validates and saves; the snapshot changes at once.
    pub async fn save(
        &self,
        store: &DynStore,
        crypto: &Crypto,
        settings: Settings,
    ) -> Result<(), SettingsError> {
        validate(&settings)?;
        let mut sealed = settings.clone();
        for w in &mut sealed.webhooks {
            if !w.secret.is_empty() {
                w.secret = crypto.encrypt(&w.secret);
            }
        }
        store.put_doc(KIND, ID, &to_json(&sealed)?).await?;
        self.current.store(Arc::new(settings));
        Ok(())
    }

    pub fn spawn_refresher(self: &Arc<Self>, store: DynStore, crypto: Crypto) {
        // Weak references: the refresher must not keep a stopped relay's store open.
        let this = Arc::downgrade(self);
        let store = Arc::downgrade(&store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let (Some(cache), Some(store)) = (this.upgrade(), store.upgrade()) else {
                    return;
                };
                if let Err(e) = cache.reload(&store, &crypto).await {
                    tracing::warn!(error = %e, "settings refresh failed; keeping the last ones");
                }
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A field is wrong: (field, message).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn validate(s: &Settings) -> Result<(), SettingsError> {
    let bad = |f, m: &str| Err(SettingsError::Invalid(f, m.to_string()));
    if s.site_name.trim().is_empty() || s.site_name.chars().count() > 60 {
        return bad("siteName", "must be 1 to 60 characters");
    }
    if !s.logo_url.is_empty() && !is_http_url(&s.logo_url) && !s.logo_url.starts_with('/') {
        return bad("logoUrl", "must be an http(s) URL or a path");
    }
    for (service, rate) in &s.service_rates {
        if !["claude", "openai", "gemini"].contains(&service.as_str()) {
            return bad("serviceRates", "services are claude, openai and gemini");
        }
        if !rate.is_finite() || *rate < 0.0 || *rate > 100.0 {
            return bad("serviceRates", "a rate is a number from 0 to 100");
        }
    }
    if s.max_keys_per_user > 1000 {
        return bad("maxKeysPerUser", "must be at most 1000");
    }
    let d = &s.user_key_defaults;
    for (field, v) in [
        ("userKeyDefaults.dailyCostLimit", d.daily_cost_limit),
        ("userKeyDefaults.totalCostLimit", d.total_cost_limit),
        ("userKeyDefaults.weeklyCostLimit", d.weekly_cost_limit),
        ("userKeyDefaults.rateLimitCost", d.rate_limit_cost),
    ] {
        if !v.is_finite() || v < 0.0 {
            return bad(field, "must be a number ≥ 0");
        }
    }
    if let Some(p) = d
        .permissions
        .iter()
        .find(|p| !["claude", "openai", "gemini"].contains(&p.as_str()))
    {
        return Err(SettingsError::Invalid(
            "userKeyDefaults.permissions",
            format!("unknown service {p:?}; use claude, gemini or openai"),
        ));
    }
    let windowed = d.rate_limit_requests > 0 || d.token_limit > 0 || d.rate_limit_cost > 0.0;
    if windowed && d.rate_limit_window == 0 {
        return bad(
            "userKeyDefaults.rateLimitWindow",
            "set the window's minutes to limit requests, tokens or cost per window",
        );
    }
    if d.expiry_days > 36_500 {
        return bad("userKeyDefaults.expiryDays", "must be at most 36500 days");
    }
    for w in &s.webhooks {
        if !WEBHOOK_KINDS.contains(&w.kind.as_str()) {
            return bad("webhooks", "unknown channel type");
        }
        let url_ok = if w.kind == "smtp" {
            w.url.starts_with("smtp://") || w.url.starts_with("smtps://")
        } else {
            is_http_url(&w.url)
        };
        if !url_ok {
            return bad(
                "webhooks",
                "a channel needs an http(s) URL (smtp:// or smtps:// for mail)",
            );
        }
    }
    Ok(())
}

fn is_http_url(u: &str) -> bool {
    reqwest::Url::parse(u)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::WebhookChannel;

    #[test]
    fn validation_names_the_field() {
        let mut s = Settings::default();
        assert!(validate(&s).is_ok());
        s.service_rates.insert("claude".into(), -1.0);
        assert!(matches!(
            validate(&s),
            Err(SettingsError::Invalid("serviceRates", _))
        ));
        s.service_rates.clear();
        s.webhooks.push(WebhookChannel {
            kind: "slack".into(),
            url: "not a url".into(),
            ..Default::default()
        });
        assert!(matches!(
            validate(&s),
            Err(SettingsError::Invalid("webhooks", _))
        ));
        s.webhooks[0].url = "https://hooks.slack.example/T1".into();
        assert!(validate(&s).is_ok());
        s.site_name = " ".into();
        assert!(matches!(
            validate(&s),
            Err(SettingsError::Invalid("siteName", _))
        ));
        s.site_name = "relay".into();
        s.user_key_defaults.daily_cost_limit = -1.0;
        assert!(matches!(
            validate(&s),
            Err(SettingsError::Invalid("userKeyDefaults.dailyCostLimit", _))
        ));
        s.user_key_defaults.daily_cost_limit = f64::NAN;
        assert!(validate(&s).is_err());
        s.user_key_defaults.daily_cost_limit = 1.0;
        s.user_key_defaults.rate_limit_requests = 10;
        assert!(matches!(
            validate(&s),
            Err(SettingsError::Invalid("userKeyDefaults.rateLimitWindow", _))
        ));
        s.user_key_defaults.rate_limit_window = 1;
        s.user_key_defaults.permissions = vec!["claude".into(), "mistral".into()];
        assert!(matches!(
            validate(&s),
            Err(SettingsError::Invalid("userKeyDefaults.permissions", _))
        ));
        s.user_key_defaults.permissions = vec!["claude".into()];
        assert!(validate(&s).is_ok());
    }

    #[tokio::test]
    async fn saved_settings_reach_another_instance_on_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: DynStore =
            Arc::new(crate::store::embedded::EmbeddedStore::open(dir.path(), 10).expect("open"));
        let crypto = Crypto::new("test-encryption-key-0123456789abcdef");
        let (a, b) = (SettingsCache::default(), SettingsCache::default());
        let s = Settings {
            site_name: "Team relay".into(),
            webhooks: vec![WebhookChannel {
                kind: "dingtalk".into(),
                url: "https://oapi.dingtalk.example/robot/send?access_token=t".into(),
                secret: "SEC-signing-secret".into(),
                enabled: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        a.save(&store, &crypto, s).await.expect("save");
        assert_eq!(a.get().site_name, "Team relay");
        assert_eq!(b.get().site_name, "Claude Relay Service");
        // At rest the secret is sealed; after a reload it is usable again.
        let raw = store.get_doc(KIND, ID).await.expect("doc").expect("saved");
        assert!(!raw.contains("SEC-signing-secret"));
        b.reload(&store, &crypto).await.expect("reload");
        assert_eq!(b.get().site_name, "Team relay");
        assert_eq!(b.get().webhooks[0].secret, "SEC-signing-secret");
    }
}
