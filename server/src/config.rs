//! Typed configuration from the environment (and an optional `.env`), validated once at start.
//! Every problem is reported as one line naming the variable.

use std::{net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

#[derive(Clone, Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// `None`: the embedded store under `data_dir`.
    pub redis_url: Option<String>,
    /// How long a start waits for Redis to become reachable (`REDIS_CONNECT_WAIT_SECS`).
    pub redis_connect_wait: Duration,
    pub data_dir: PathBuf,
    /// `None` only with the embedded store, which then keeps a generated key in `data_dir`.
    pub encryption_key: Option<String>,
    pub admin_username: String,
    /// When set, `GET /metrics` wants `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// OpenTelemetry collector (OTLP over HTTP) for traces; none = tracing stays local.
    pub otel_endpoint: Option<String>,
    pub admin_password: Option<String>,
    pub log_level: String,
    pub log_json: bool,
    /// Connect + response headers from upstream.
    pub upstream_first_byte_timeout: Duration,
    /// Longest silence inside an upstream body (between two chunks of a stream).
    pub upstream_idle_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Where the built site (pkg/, favicon, …) is served from.
    pub site_root: PathBuf,
    pub pricing_file: PathBuf,
    /// A pricing table downloaded at start and every `pricing_refresh` (see `accounting::pricing`).
    pub pricing_url: Option<String>,
    /// Where the download's SHA-256 is published; `None` = `<pricing_url>.sha256`.
    pub pricing_sha256_url: Option<String>,
    pub pricing_refresh: Duration,
    /// How often `pricing_file` is checked for a change (zero = never).
    pub pricing_watch_interval: Duration,
    /// Overrides merged over every table; `None` = `overrides.json` beside `pricing_file`, if any.
    pub pricing_overrides_file: Option<PathBuf>,
    /// What happens to a model without a price (`UNPRICED_MODEL_POLICY`).
    pub unpriced_policy: UnpricedAction,
    /// Whose price an unpriced model is billed at; `None` = a current Sonnet.
    pub unpriced_fallback_model: Option<String>,
    /// Hours east of UTC for day/month/hour buckets (the original's `TIMEZONE_OFFSET`).
    pub timezone_offset_hours: i32,
    pub usage_records_per_key: usize,
    /// The newest request records of all keys together, browsable in the admin.
    pub request_records_kept: usize,
    /// How long finished requests' usage is gathered before one aggregated write (0 = at once).
    pub accounting_flush: Duration,
    /// Characters of a redacted request preview kept with each record; 0 = none.
    pub record_body_preview_chars: usize,
    pub request_max_bytes: usize,
    /// A session unused this long ends (`ADMIN_SESSION_IDLE_SECS`, or the older name
    /// `ADMIN_SESSION_TTL_SECS`).
    pub admin_session_ttl: Duration,
    /// A session ends this long after sign-in however much it is used (`ADMIN_SESSION_MAX_SECS`).
    pub admin_session_max: Duration,
    /// Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The address people use (`PUBLIC_URL`); an https one makes the session cookie `Secure`.
    pub public_url: Option<String>,
    pub api_key_prefix: String,
    /// Rest periods after upstream errors.
    pub cooldowns: CooldownPolicy,
    /// Accounts tried for one request before the client sees the last error.
    pub failover_max_attempts: u32,
    pub sticky_ttl: Duration,
    /// A sticky mapping is renewed when less than this is left (0 = never).
    pub sticky_renew_below: Duration,
    /// Lifetime of a concurrency lease; refreshed while its request runs.
    pub lease_ttl: Duration,
    /// How long a request may wait for a free concurrency slot of its key (0 = refuse at once).
    pub concurrency_queue_timeout: Duration,
    /// A client that takes nothing of a stream for this long is dropped (its upstream
    /// cancelled, its slots released, what it received billed); zero = never.
    pub client_write_timeout: Duration,
    /// Near the end of a cost limit, a request's output limit is lowered rather than refused
    /// while at least this many output tokens fit (`MIN_OUTPUT_TOKENS`).
    pub min_output_tokens: u64,
    /// The output limit assumed for a request that names none, when the pricing table does not
    /// know the model's (`DEFAULT_MAX_OUTPUT_TOKENS`).
    pub default_max_output_tokens: u64,
    /// Keys bound to an unavailable account fall back to the pool (a key can opt in alone).
    pub dedicated_fallback: bool,
    /// The official Claude API (OAuth accounts) and its OAuth endpoints.
    pub claude_api_url: String,
    pub claude_oauth_authorize_url: String,
    pub claude_oauth_token_url: String,
    pub claude_oauth_client_id: String,
    pub claude_oauth_redirect_uri: String,
}

/// Rest periods by error class; the original's defaults, overridable by configuration.
#[derive(Clone, Debug)]
pub struct CooldownPolicy {
    pub service_unavailable: Duration,
    pub server_error: Duration,
    pub overload: Duration,
    pub auth: Duration,
    pub timeout: Duration,
    pub rate_limit_default: Duration,
    /// Cap for rest periods the upstream asks for (`retry-after`, reset headers).
    pub max_custom: Duration,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            service_unavailable: Duration::from_secs(60),
            server_error: Duration::from_secs(300),
            overload: Duration::from_secs(600),
            auth: Duration::from_secs(1800),
            timeout: Duration::from_secs(300),
            rate_limit_default: Duration::from_secs(300),
            max_custom: Duration::from_secs(1800),
        }
    }
}

/// `UNPRICED_MODEL_POLICY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnpricedAction {
    #[default]
    Fallback,
    Refuse,
}

impl UnpricedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            UnpricedAction::Fallback => "fallback",
            UnpricedAction::Refuse => "refuse",
        }
    }
}

impl std::str::FromStr for UnpricedAction {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "fallback" => Ok(UnpricedAction::Fallback),
            "refuse" => Ok(UnpricedAction::Refuse),
            _ => Err(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `.env` (if present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let redis_url = var("REDIS_URL");
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                return Err(ConfigError(
                    "REDIS_URL must start with redis://, rediss:// or unix://".into(),
                ));
            }
        }
        let encryption_key = var("ENCRYPTION_KEY");
        if let Some(key) = &encryption_key {
            if key.len() < 32 {
                return Err(ConfigError(
                    "ENCRYPTION_KEY must be at least 32 characters".into(),
                ));
            }
        } else if redis_url.is_some() {
            return Err(ConfigError(
                "ENCRYPTION_KEY is required with REDIS_URL (every instance must share it)".into(),
            ));
        }
        let admin_password = var("ADMIN_PASSWORD");
        if let Some(p) = &admin_password {
            if p.len() < 8 {
                return Err(ConfigError(
                    "ADMIN_PASSWORD must be at least 8 characters".into(),
                ));
            }
        }
        let log_format = var("LOG_FORMAT").unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "json" => true,
            "text" | "human" => false,
            _ => return Err(ConfigError("LOG_FORMAT must be text or json".into())),
        };
        let tz: i32 = parse(&var, "TIMEZONE_OFFSET", 8)?;
        if !(-12..=14).contains(&tz) {
            return Err(ConfigError(
                "TIMEZONE_OFFSET must be between -12 and 14".into(),
            ));
        }
        let ms = |name: &str, default: u64| -> Result<Duration, ConfigError> {
            let v: u64 = parse(&var, name, default)?;
            if v == 0 {
                return Err(ConfigError(format!("{name} must be greater than 0")));
            }
            Ok(Duration::from_millis(v))
        };
        let max_mb: usize = parse(&var, "REQUEST_MAX_SIZE_MB", 60)?;
        let secs = |name: &str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(parse(&var, name, default)?))
        };
        let cooldowns = CooldownPolicy {
            service_unavailable: secs("UPSTREAM_ERROR_503_TTL_SECONDS", 60)?,
            server_error: secs("UPSTREAM_ERROR_5XX_TTL_SECONDS", 300)?,
            overload: secs("UPSTREAM_ERROR_OVERLOAD_TTL_SECONDS", 600)?,
            auth: secs("UPSTREAM_ERROR_AUTH_TTL_SECONDS", 1800)?,
            timeout: secs("UPSTREAM_ERROR_TIMEOUT_TTL_SECONDS", 300)?,
            rate_limit_default: secs("UPSTREAM_ERROR_RATE_LIMIT_TTL_SECONDS", 300)?,
            max_custom: secs("UPSTREAM_ERROR_MAX_CUSTOM_TTL_SECONDS", 1800)?,
        };
        let failover_max_attempts: u32 = parse(&var, "FAILOVER_MAX_ATTEMPTS", 3)?;
        if failover_max_attempts == 0 {
            return Err(ConfigError(
                "FAILOVER_MAX_ATTEMPTS must be at least 1".into(),
            ));
        }
        let sticky_hours: u64 = parse(&var, "STICKY_SESSION_TTL_HOURS", 1)?;
        if sticky_hours == 0 {
            return Err(ConfigError(
                "STICKY_SESSION_TTL_HOURS must be at least 1".into(),
            ));
        }
        let url = |name: &str, default: &str| -> Result<String, ConfigError> {
            let v = var(name).unwrap_or_else(|| default.to_string());
            match reqwest::Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {
                    Ok(v.trim_end_matches('/').to_string())
                }
                _ => Err(ConfigError(format!("{name}={v:?} is not an http(s) URL"))),
            }
        };
        let lease_ttl = secs("CONCURRENCY_LEASE_TTL_SECONDS", 300)?;
        if lease_ttl.as_secs() < 3 {
            return Err(ConfigError(
                "CONCURRENCY_LEASE_TTL_SECONDS must be at least 3".into(),
            ));
        }
        let http_url = |name: &str| -> Result<Option<String>, ConfigError> {
            match var(name) {
                None => Ok(None),
                Some(v) => match reqwest::Url::parse(&v) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(v)),
                    _ => Err(ConfigError(format!("{name}={v:?} is not an http(s) URL"))),
                },
            }
        };
        let pricing_url = http_url("PRICING_URL")?;
        let pricing_sha256_url = http_url("PRICING_SHA256_URL")?;
        let pricing_refresh_hours: u64 = parse(&var, "PRICING_REFRESH_HOURS", 24)?;
        if pricing_refresh_hours == 0 {
            return Err(ConfigError(
                "PRICING_REFRESH_HOURS must be at least 1".into(),
            ));
        }
        let min_output_tokens: u64 = parse(&var, "MIN_OUTPUT_TOKENS", 1024)?;
        let default_max_output_tokens: u64 = parse(&var, "DEFAULT_MAX_OUTPUT_TOKENS", 16_384)?;
        if min_output_tokens == 0 || default_max_output_tokens == 0 {
            return Err(ConfigError(
                "MIN_OUTPUT_TOKENS and DEFAULT_MAX_OUTPUT_TOKENS must be at least 1".into(),
            ));
        }
        if default_max_output_tokens > crate::store::limits::MAX_OUTPUT_TOKENS {
            return Err(ConfigError(format!(
                "DEFAULT_MAX_OUTPUT_TOKENS must be at most {}",
                crate::store::limits::MAX_OUTPUT_TOKENS
            )));
        }
        let unpriced_policy = match var("UNPRICED_MODEL_POLICY") {
            None => UnpricedAction::Fallback,
            Some(v) => v.parse().map_err(|_| {
                ConfigError(format!(
                    "UNPRICED_MODEL_POLICY={v:?} must be fallback or refuse"
                ))
            })?,
        };
        let trusted_proxies = var("TRUSTED_PROXIES")
            .map(|v| parse_cidrs(&v))
            .transpose()?
            .unwrap_or_default();
        let public_url = http_url("PUBLIC_URL")?;
        let idle_secs: u64 = match var("ADMIN_SESSION_IDLE_SECS") {
            Some(_) => parse(&var, "ADMIN_SESSION_IDLE_SECS", 86_400)?,
            None => parse(&var, "ADMIN_SESSION_TTL_SECS", 86_400)?,
        };
        let max_secs: u64 = parse(&var, "ADMIN_SESSION_MAX_SECS", 7 * 86_400)?;
        if idle_secs == 0 || max_secs == 0 {
            return Err(ConfigError(
                "ADMIN_SESSION_IDLE_SECS and ADMIN_SESSION_MAX_SECS must be at least 1".into(),
            ));
        }
        Ok(Config {
            host: parse(&var, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parse(&var, "PORT", 3000)?,
            redis_url,
            redis_connect_wait: secs("REDIS_CONNECT_WAIT_SECS", 30)?,
            data_dir: var("DATA_DIR").unwrap_or_else(|| "./data".into()).into(),
            encryption_key,
            admin_username: var("ADMIN_USERNAME").unwrap_or_else(|| "admin".into()),
            metrics_token: var("METRICS_TOKEN").filter(|t| !t.is_empty()),
            otel_endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|t| !t.is_empty()),
            admin_password,
            log_level: var("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_json,
            upstream_first_byte_timeout: ms("UPSTREAM_TIMEOUT_MS", 600_000)?,
            upstream_idle_timeout: ms("UPSTREAM_IDLE_TIMEOUT_MS", 300_000)?,
            upstream_connect_timeout: ms("UPSTREAM_CONNECT_TIMEOUT_MS", 10_000)?,
            site_root: var("SITE_ROOT")
                .or_else(|| var("LEPTOS_SITE_ROOT"))
                .unwrap_or_else(|| "target/site".into())
                .into(),
            pricing_file: var("PRICING_FILE")
                .unwrap_or_else(|| {
                    "resources/model-pricing/model_prices_and_context_window.json".into()
                })
                .into(),
            pricing_url,
            pricing_sha256_url,
            pricing_refresh: Duration::from_secs(pricing_refresh_hours.saturating_mul(3600)),
            pricing_watch_interval: secs("PRICING_WATCH_SECONDS", 3)?,
            pricing_overrides_file: var("PRICING_OVERRIDES_FILE").map(PathBuf::from),
            unpriced_policy,
            unpriced_fallback_model: var("UNPRICED_FALLBACK_MODEL"),
            timezone_offset_hours: tz,
            usage_records_per_key: parse(&var, "USAGE_RECORDS_PER_KEY", 200)?,
            request_records_kept: parse(&var, "REQUEST_RECORDS_KEPT", 10_000)?,
            record_body_preview_chars: parse(&var, "RECORD_BODY_PREVIEW_CHARS", 0)?,
            accounting_flush: Duration::from_millis(parse(&var, "ACCOUNTING_FLUSH_MS", 25)?),
            request_max_bytes: max_mb.saturating_mul(1024 * 1024),
            admin_session_ttl: Duration::from_secs(idle_secs),
            admin_session_max: Duration::from_secs(max_secs),
            trusted_proxies,
            public_url,
            api_key_prefix: var("API_KEY_PREFIX").unwrap_or_else(|| "cr_".into()),
            cooldowns,
            failover_max_attempts,
            sticky_ttl: Duration::from_secs(sticky_hours * 3600),
            sticky_renew_below: secs("STICKY_SESSION_RENEWAL_THRESHOLD_MINUTES", 15)? * 60,
            lease_ttl,
            concurrency_queue_timeout: Duration::from_millis(parse(
                &var,
                "CONCURRENCY_QUEUE_TIMEOUT_MS",
                0,
            )?),
            min_output_tokens,
            default_max_output_tokens,
            client_write_timeout: secs("CLIENT_WRITE_TIMEOUT_SECS", 60)?,
            dedicated_fallback: parse(&var, "CLAUDE_DEDICATED_ACCOUNT_FALLBACK", false)?,
            claude_api_url: url("CLAUDE_API_URL", "https://api.anthropic.com")?,
            claude_oauth_authorize_url: url(
                "CLAUDE_OAUTH_AUTHORIZE_URL",
                "https://claude.ai/oauth/authorize",
            )?,
            claude_oauth_token_url: url(
                "CLAUDE_OAUTH_TOKEN_URL",
                "https://platform.claude.com/v1/oauth/token",
            )?,
            claude_oauth_client_id: var("CLAUDE_OAUTH_CLIENT_ID")
                .unwrap_or_else(|| "9d1c250a-e61b-44d9-88ed-5944d1962f5e".into()),
            claude_oauth_redirect_uri: url(
                "CLAUDE_OAUTH_REDIRECT_URI",
                "https://platform.claude.com/oauth/code/callback",
            )?,
        })
    }

    /// A configuration for tests: embedded store in `data_dir`, short timeouts.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut c = Self::from_lookup(|_| None).expect("defaults are valid");
        c.data_dir = data_dir;
        c.host = IpAddr::from([127, 0, 0, 1]);
        c.port = 0;
        c.encryption_key = Some("test-encryption-key-0123456789abcdef".into());
        c.admin_password = Some("admin-password-1".into());
        c.upstream_first_byte_timeout = Duration::from_secs(5);
        c.upstream_idle_timeout = Duration::from_secs(5);
        c.upstream_connect_timeout = Duration::from_secs(2);
        // A test without Redis fails at once.
        c.redis_connect_wait = Duration::ZERO;
        c.pricing_file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../resources/model-pricing/model_prices_and_context_window.json"
        )
        .into();
        c
    }
}

/// `TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
fn parse_cidrs(v: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError(format!(
                        "TRUSTED_PROXIES: {s:?} is not a CIDR (like 10.0.0.0/8) or an address"
                    ))
                })
        })
        .collect()
}

fn parse<T: FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ConfigError(format!("{name}={v:?} is not a valid value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    /// Every variable read here is documented in `.env.example`.
    #[test]
    fn env_example_documents_every_variable() {
        let source = include_str!("config.rs");
        let example = include_str!("../../.env.example");
        let mut missing = Vec::new();
        for part in source.split('"').skip(1).step_by(2) {
            let is_var = part.len() > 3
                && part
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                && part.contains('_');
            if is_var
                && !example.contains(&format!("{part}="))
                && !matches!(part, "LEPTOS_SITE_ROOT" | "CARGO_MANIFEST_DIR")
            {
                missing.push(part.to_string());
            }
        }
        missing.dedup();
        assert!(missing.is_empty(), "not in .env.example: {missing:?}");
    }

    #[test]
    fn trusted_proxies_and_session_lifetimes() {
        let c = from(&[("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8,::1")]).unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert!(c.trusted_proxies[1].contains(&"10.9.8.7".parse::<IpAddr>().unwrap()));
        let e = from(&[("TRUSTED_PROXIES", "10.0.0.0/8,nginx")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("TRUSTED_PROXIES") && e.contains("nginx"), "{e}");
        assert!(!e.contains('\n'));
        assert!(from(&[("TRUSTED_PROXIES", "10.0.0.0/33")]).is_err());
        let c = from(&[]).unwrap();
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.admin_session_ttl, Duration::from_secs(86_400));
        assert_eq!(c.admin_session_max, Duration::from_secs(7 * 86_400));
        // The older name still sets the idle lifetime; the new one wins.
        let c = from(&[("ADMIN_SESSION_TTL_SECS", "600")]).unwrap();
        assert_eq!(c.admin_session_ttl, Duration::from_secs(600));
        let c = from(&[
            ("ADMIN_SESSION_TTL_SECS", "600"),
            ("ADMIN_SESSION_IDLE_SECS", "60"),
            ("ADMIN_SESSION_MAX_SECS", "3600"),
        ])
        .unwrap();
        assert_eq!(c.admin_session_ttl, Duration::from_secs(60));
        assert_eq!(c.admin_session_max, Duration::from_secs(3600));
        assert!(from(&[("ADMIN_SESSION_MAX_SECS", "0")]).is_err());
        assert!(from(&[("PUBLIC_URL", "ftp://x")]).is_err());
        let c = from(&[("PUBLIC_URL", "https://crs.example.com")]).unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://crs.example.com"));
    }

    #[test]
    fn defaults_are_valid() {
        let c = from(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert!(c.redis_url.is_none());
        assert_eq!(c.timezone_offset_hours, 8);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = from(&[("PORT", "abc")]).unwrap_err().to_string();
        assert!(e.contains("PORT"), "{e}");
        let e = from(&[("REDIS_URL", "http://x")]).unwrap_err().to_string();
        assert!(e.contains("REDIS_URL"), "{e}");
        let e = from(&[("REDIS_URL", "redis://127.0.0.1:1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ENCRYPTION_KEY"), "{e}");
        let e = from(&[("ENCRYPTION_KEY", "short")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ENCRYPTION_KEY"), "{e}");
        let e = from(&[("UPSTREAM_TIMEOUT_MS", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("UPSTREAM_TIMEOUT_MS"), "{e}");
        assert!(!e.contains('\n'));
        let e = from(&[("UNPRICED_MODEL_POLICY", "ignore")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("UNPRICED_MODEL_POLICY"), "{e}");
        let c = from(&[
            ("UNPRICED_MODEL_POLICY", "refuse"),
            ("UNPRICED_FALLBACK_MODEL", "claude-opus-4-5"),
        ])
        .unwrap();
        assert_eq!(c.unpriced_policy, UnpricedAction::Refuse);
        assert_eq!(
            c.unpriced_fallback_model.as_deref(),
            Some("claude-opus-4-5")
        );
    }
}
