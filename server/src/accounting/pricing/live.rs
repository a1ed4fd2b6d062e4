//! The table in force under a running relay: `PRICING_FILE` watched for changes, `PRICING_URL`
//! downloaded against its published SHA-256, refreshes on demand, and what the admin sees of it.
//! Every new table gets the overrides and the unpriced-model policy of the one it replaces.
//!
//! - `PRICING_FILE`, loaded at start and polled for changes (modification time and size, every
//!   `PRICING_WATCH_SECONDS`); a changed file that does not parse, or prices no model, is refused
//!   with a log line and the current table is kept;
//! - `PRICING_URL` (optional), downloaded at start, every `PRICING_REFRESH_HOURS` and on demand
//!   (`POST /admin/pricing/refresh`). The download must match a SHA-256 published beside it: the
//!   hex digest at `PRICING_SHA256_URL`, or at `<PRICING_URL>.sha256` when that is unset (the
//!   original's mirror layout; `sha256sum` output is accepted). No digest, or another digest: the
//!   download is refused and the current table kept.
//!
//! Whichever changed last is in force.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::{ArcSwap, Guard};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{sha256_hex, Pricing, PricingError};
use crate::accounting::unpriced::UnpricedModels;
use crate::error_chain;

/// The largest pricing download accepted (LiteLLM's table is about 1.5 MB).
const MAX_DOWNLOAD: usize = 32 << 20;

/// Where reloads come from (see the module documentation).
#[derive(Clone, Debug)]
pub struct PricingSources {
    pub file: PathBuf,
    pub url: Option<String>,
    /// Defaults to `<url>.sha256`.
    pub sha256_url: Option<String>,
    pub refresh_every: Duration,
    /// How often the file is checked for a change; zero = never.
    pub watch_every: Duration,
}

impl PricingSources {
    pub fn from_config(c: &crate::config::Config) -> Self {
        PricingSources {
            file: c.pricing_file.clone(),
            url: c.pricing_url.clone(),
            sha256_url: c.pricing_sha256_url.clone(),
            refresh_every: c.pricing_refresh,
            watch_every: c.pricing_watch_interval,
        }
    }

    pub fn digest_url(&self) -> Option<String> {
        let url = self.url.as_ref()?;
        Some(
            self.sha256_url
                .clone()
                .unwrap_or_else(|| format!("{url}.sha256")),
        )
    }
}

/// What the admin sees of the table in force.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PricingStatus {
    /// Models the table itself prices (the overrides and aliases not counted).
    pub models: usize,
    /// `file:<path>`, `url:<url>`.
    pub source: String,
    pub loaded_at: Option<String>,
    pub sha256: String,
    pub file: String,
    pub url: Option<String>,
    pub sha256_url: Option<String>,
    pub refresh_hours: f64,
    pub watch_seconds: f64,
    /// The last refused reload or failed download, while no later one succeeded.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// The overrides file merged over the table, and how many models it sets.
    pub overrides_file: Option<String>,
    pub override_models: usize,
    /// `fallback` or `refuse` (`UNPRICED_MODEL_POLICY`).
    pub unpriced_policy: String,
    /// The model whose price an unpriced model is billed at.
    pub fallback_model: String,
}

/// The table in force, replaced whole by a reload (readers never wait).
pub struct LivePricing {
    current: ArcSwap<Pricing>,
    sources: PricingSources,
    /// The file's (modification time, size) last looked at.
    file_seen: parking_lot::Mutex<Option<(SystemTime, u64)>>,
    last_error: parking_lot::Mutex<Option<(DateTime<Utc>, String)>>,
    /// One download at a time.
    fetching: tokio::sync::Mutex<()>,
    client: reqwest::Client,
    /// Unpriced models seen by this instance, on their way to the store.
    unpriced: UnpricedModels,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl LivePricing {
    /// `initial` was loaded from `sources.file` (its current stamp is taken as seen).
    pub fn new(initial: Pricing, sources: PricingSources) -> Result<Arc<Self>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Arc::new(LivePricing {
            current: ArcSwap::from_pointee(initial),
            file_seen: parking_lot::Mutex::new(stamp(&sources.file)),
            sources,
            last_error: parking_lot::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            client,
            unpriced: UnpricedModels::default(),
        }))
    }

    /// The table in force (no lock; cheap enough for every request).
    pub fn load(&self) -> Guard<Arc<Pricing>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Pricing> {
        self.current.load_full()
    }

    pub fn claude_models(&self) -> Arc<[String]> {
        self.current.load().claude_models.clone()
    }

    pub fn openai_models(&self) -> Arc<[String]> {
        self.current.load().openai_models.clone()
    }

    pub fn gemini_models(&self) -> Arc<[String]> {
        self.current.load().gemini_models.clone()
    }

    pub fn sources(&self) -> &PricingSources {
        &self.sources
    }

    pub fn unpriced(&self) -> &UnpricedModels {
        &self.unpriced
    }

    pub fn status(&self) -> PricingStatus {
        let p = self.current.load();
        let err = self.last_error.lock().clone();
        let policy = p.unpriced_policy();
        PricingStatus {
            models: p.source_models(),
            source: p.origin.clone(),
            loaded_at: p.loaded_at.map(|t| t.to_rfc3339()),
            sha256: p.sha256.clone(),
            file: self.sources.file.display().to_string(),
            url: self.sources.url.clone(),
            sha256_url: self.sources.digest_url(),
            refresh_hours: self.sources.refresh_every.as_secs_f64() / 3600.0,
            watch_seconds: self.sources.watch_every.as_secs_f64(),
            last_error: err.as_ref().map(|e| e.1.clone()),
            last_error_at: err.map(|e| e.0.to_rfc3339()),
            overrides_file: p.setup().overrides.origin.clone(),
            override_models: p.setup().overrides.len(),
            unpriced_policy: policy.action.as_str().to_string(),
            fallback_model: policy.fallback_model.clone(),
        }
    }

    fn install(&self, p: Pricing) {
        tracing::info!(models = p.len(), source = %p.origin, sha256 = %p.sha256, "pricing table loaded");
        self.current.store(Arc::new(p));
        *self.last_error.lock() = None;
    }

    fn refused(&self, e: &PricingError) {
        tracing::warn!(error = %e, "pricing reload refused; keeping the current table");
        *self.last_error.lock() = Some((Utc::now(), e.to_string()));
    }

    /// Reloads the file if it changed since last looked at. `Ok(true)`: a new table is in
    /// force. A bad file is refused (logged, the current table kept) and not retried until it
    /// changes again.
    pub fn check_file(&self) -> Result<bool, PricingError> {
        let now = stamp(&self.sources.file);
        {
            let mut seen = self.file_seen.lock();
            if now.is_none() || *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        self.reload_file(false)
    }

    /// Reads the file; with `force`, installs it even when its content is the table in force.
    pub fn reload_file(&self, force: bool) -> Result<bool, PricingError> {
        let path = &self.sources.file;
        let origin = format!("file:{}", path.display());
        let result = std::fs::read(path)
            .map_err(|e| PricingError::Read(path.display().to_string(), e))
            .and_then(|raw| {
                let current = self.current.load();
                if !force && current.sha256 == sha256_hex(&raw) && current.origin == origin {
                    return Ok(None);
                }
                Pricing::reload(&raw, &origin, &current).map(Some)
            });
        match result {
            Ok(Some(p)) => {
                self.install(p);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                self.refused(&e);
                Err(e)
            }
        }
    }

    /// Downloads `PRICING_URL` and installs it if its digest matches.
    pub async fn refresh_url(&self) -> Result<(), PricingError> {
        let (Some(url), Some(digest_url)) = (self.sources.url.clone(), self.sources.digest_url())
        else {
            return Ok(());
        };
        let _one = self.fetching.lock().await;
        let result = async {
            let raw = download_verified(&self.client, &url, Expected::At(&digest_url)).await?;
            Pricing::reload(&raw, &format!("url:{url}"), &self.current.load())
        }
        .await;
        match result {
            Ok(p) => {
                self.install(p);
                Ok(())
            }
            Err(e) => {
                self.refused(&e);
                Err(e)
            }
        }
    }

    /// On demand: the URL when one is configured, else the file (re-read even if unchanged).
    pub async fn refresh(self: &Arc<Self>) -> Result<PricingStatus, PricingError> {
        if self.sources.url.is_some() {
            self.refresh_url().await?;
        } else {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.reload_file(true))
                .await
                .map_err(|e| {
                    PricingError::Read(
                        self.sources.file.display().to_string(),
                        std::io::Error::other(e.to_string()),
                    )
                })??;
        }
        Ok(self.status())
    }

    /// The file watcher and the daily download, for as long as this table is used.
    pub fn spawn_refreshers(self: &Arc<Self>) {
        if !self.sources.watch_every.is_zero() {
            let this = Arc::downgrade(self);
            let every = self.sources.watch_every;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(live) = this.upgrade() else {
                        return;
                    };
                    // Errors are logged and kept for the admin by `check_file`.
                    let _ = tokio::task::spawn_blocking(move || live.check_file()).await;
                }
            });
        }
        if self.sources.url.is_some() {
            let this = Arc::downgrade(self);
            let every = self.sources.refresh_every.max(Duration::from_secs(60));
            // A failed download is retried sooner than the next daily refresh.
            let retry = every.min(Duration::from_secs(15 * 60));
            tokio::spawn(async move {
                loop {
                    let Some(live) = this.upgrade() else {
                        return;
                    };
                    let wait = match live.refresh_url().await {
                        Ok(()) => every,
                        Err(_) => retry,
                    };
                    drop(live);
                    tokio::time::sleep(wait).await;
                }
            });
        }
    }
}

/// The digest a download must match.
pub enum Expected<'a> {
    /// Published at this URL (hex, optionally followed by a file name as `sha256sum` prints).
    At(&'a str),
    /// Given directly.
    Hex(&'a str),
}

fn parse_digest(text: &str, from: &str) -> Result<String, PricingError> {
    let token = text.split_whitespace().next().unwrap_or_default();
    if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(token.to_ascii_lowercase())
    } else {
        Err(PricingError::BadDigest(from.to_string()))
    }
}

async fn get_limited(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, PricingError> {
    let fail = |m: String| PricingError::Fetch(url.to_string(), m);
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(error_chain(&e.without_url())))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status().as_u16())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(error_chain(&e.without_url())))?
    {
        if body.len() + chunk.len() > limit {
            return Err(fail(format!("larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Downloads `url` and checks it against its SHA-256.
pub async fn download_verified(
    client: &reqwest::Client,
    url: &str,
    expected: Expected<'_>,
) -> Result<Vec<u8>, PricingError> {
    let expected = match expected {
        Expected::Hex(h) => parse_digest(h, "the given digest")?,
        Expected::At(digest_url) => {
            let text = get_limited(client, digest_url, 4096).await?;
            parse_digest(&String::from_utf8_lossy(&text), digest_url)?
        }
    };
    let raw = get_limited(client, url, MAX_DOWNLOAD).await?;
    let actual = sha256_hex(&raw);
    if actual != expected {
        return Err(PricingError::HashMismatch {
            url: url.to_string(),
            expected,
            actual,
        });
    }
    Ok(raw)
}

/// Replaces `path` with `raw` at once (a temporary file beside it, renamed), so a watcher never
/// reads half a table.
pub fn write_atomically(path: &Path, raw: &[u8]) -> Result<(), PricingError> {
    let fail = |e| PricingError::Write(path.display().to_string(), e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "pricing.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, raw).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_files_are_parsed_strictly() {
        let h = sha256_hex(b"x");
        assert_eq!(parse_digest(&h, "u").unwrap(), h);
        assert_eq!(
            parse_digest(&format!("{}  prices.json\n", h.to_uppercase()), "u").unwrap(),
            h
        );
        assert!(parse_digest("not a digest", "u").is_err());
        assert!(parse_digest("", "u").is_err());
    }

    #[tokio::test]
    async fn changed_file_is_picked_up_and_a_bad_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let v1 = br#"{"m":{"input_cost_per_token":1e-6,"output_cost_per_token":1e-6}}"#;
        std::fs::write(&path, v1).unwrap();
        let live = LivePricing::new(
            Pricing::load(&path).unwrap(),
            PricingSources {
                file: path.clone(),
                url: None,
                sha256_url: None,
                refresh_every: Duration::from_secs(3600),
                watch_every: Duration::ZERO,
            },
        )
        .unwrap();
        assert!(!live.check_file().unwrap(), "unchanged");
        write_atomically(
            &path,
            br#"{"m":{"input_cost_per_token":2e-6,"output_cost_per_token":1e-6}, "n":{"input_cost_per_token":1e-6,"output_cost_per_token":1e-6}}"#,
        )
        .unwrap();
        assert!(live.check_file().unwrap());
        assert_eq!(live.load().price("m").unwrap().input, 2000.0);
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(live.check_file().is_err());
        assert_eq!(live.load().len(), 2, "old table kept");
        assert!(live.status().last_error.is_some());
        assert!(
            !live.check_file().unwrap(),
            "a refused file is not retried until it changes"
        );
    }
}
