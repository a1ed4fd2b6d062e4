//! The pricing table: LiteLLM's `model_prices_and_context_window.json` format, held in memory
//! (never read from the store on the hot path) as a snapshot that can be replaced at any time.
//!
//! Sources, in the order they change the table:
//! - `PRICING_FILE`, loaded at start and polled for changes (modification time and size, every
//!   `PRICING_WATCH_SECONDS`); a changed file that does not parse, or prices no model, is refused
//!   with a log line and the current table is kept;
//! - `PRICING_URL` (optional), downloaded at start, every `PRICING_REFRESH_HOURS` and on demand
//!   (`POST /admin/pricing/refresh`). The download must match a SHA-256 published beside it: the
//!   hex digest at `PRICING_SHA256_URL`, or at `<PRICING_URL>.sha256` when that is unset (the
//!   original's mirror layout; `sha256sum` output is accepted). No digest, or another digest: the
//!   download is refused and the current table kept.
//!
//! Whichever changed last is in force. Lookups are exact, then the documented normalisations
//! of [`Pricing::price`]; never a substring match.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::{ArcSwap, Guard};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prices of one model in nano-dollars per token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

/// Used, and flagged, when a model is not in the table: Claude Sonnet's prices, as the original.
pub const FALLBACK_PRICE: ModelPrice = ModelPrice {
    input: 3_000.0,
    output: 15_000.0,
    cache_write_5m: 3_750.0,
    cache_write_1h: 6_000.0,
    cache_read: 300.0,
};

#[derive(Debug, Default)]
pub struct Pricing {
    models: HashMap<String, ModelPrice>,
    /// Anthropic chat models, for `GET /v1/models`.
    claude_models: Arc<[String]>,
    /// OpenAI chat models and Gemini API models, for their models lists.
    openai_models: Arc<[String]>,
    gemini_models: Arc<[String]>,
    /// Where the table came from: `file:<path>`, `url:<url>` or `inline`.
    origin: String,
    loaded_at: Option<DateTime<Utc>>,
    /// SHA-256 of the bytes the table was parsed from, lowercase hex.
    sha256: String,
}

#[derive(Deserialize)]
struct Entry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_creation_input_token_cost: Option<f64>,
    cache_creation_input_token_cost_above_1hr: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    litellm_provider: Option<String>,
    mode: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("cannot read pricing file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("pricing file {0} is not valid JSON: {1}")]
    Parse(String, serde_json::Error),
    #[error("pricing table from {0} prices no model")]
    Empty(String),
    #[error("cannot download {0}: {1}")]
    Fetch(String, String),
    #[error("{0} does not hold a SHA-256 digest (64 hex digits)")]
    BadDigest(String),
    #[error("pricing from {url} does not match its SHA-256: expected {expected}, got {actual}")]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("cannot write pricing file {0}: {1}")]
    Write(String, std::io::Error),
}

const NANOS: f64 = 1e9;

/// The largest pricing download accepted (LiteLLM's table is about 1.5 MB).
const MAX_DOWNLOAD: usize = 32 << 20;

/// Bedrock cross-region inference prefixes (`us.anthropic.claude-…`).
const BEDROCK_REGIONS: [&str; 8] = [
    "us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.",
];

pub fn sha256_hex(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

impl Pricing {
    pub fn load(path: &Path) -> Result<Self, PricingError> {
        let raw =
            std::fs::read(path).map_err(|e| PricingError::Read(path.display().to_string(), e))?;
        let mut p = Self::from_json(&raw)
            .map_err(|e| PricingError::Parse(path.display().to_string(), e))?;
        p.origin = format!("file:{}", path.display());
        Ok(p)
    }

    /// Parses a table for a reload: it must be valid and price at least one model.
    pub fn parse_table(raw: &[u8], origin: &str) -> Result<Self, PricingError> {
        let mut p = Self::from_json(raw).map_err(|e| PricingError::Parse(origin.to_string(), e))?;
        if p.is_empty() {
            return Err(PricingError::Empty(origin.to_string()));
        }
        p.origin = origin.to_string();
        Ok(p)
    }

    pub fn from_json(raw: &[u8]) -> Result<Self, serde_json::Error> {
        // Entries stay raw slices of the file until parsed one by one: a tree of
        // `serde_json::Value`s for the 3.4 MB LiteLLM file was most of the relay's peak memory.
        let entries: HashMap<String, &serde_json::value::RawValue> = serde_json::from_slice(raw)?;
        let mut models = HashMap::with_capacity(entries.len());
        let mut claude_models = Vec::new();
        let mut openai_models = Vec::new();
        let mut gemini_models = Vec::new();
        for (name, value) in entries {
            // Entries that do not parse (like LiteLLM's `sample_spec`) are skipped, not fatal.
            let Ok(e) = serde_json::from_str::<Entry>(value.get()) else {
                continue;
            };
            let (Some(input), Some(output)) = (e.input_cost_per_token, e.output_cost_per_token)
            else {
                continue;
            };
            let is_claude = name.starts_with("claude");
            // Claude prices missing cache figures derive them from input (Anthropic's ratios);
            // other providers bill cache writes as input and reads at input price.
            let (w5, w1, r) = if is_claude {
                (1.25, 2.0, 0.1)
            } else {
                (1.0, 1.0, 1.0)
            };
            let write_5m = e.cache_creation_input_token_cost.unwrap_or(input * w5);
            let price = ModelPrice {
                input: input * NANOS,
                output: output * NANOS,
                cache_write_5m: write_5m * NANOS,
                cache_write_1h: e
                    .cache_creation_input_token_cost_above_1hr
                    .unwrap_or(if is_claude { input * w1 } else { write_5m })
                    * NANOS,
                cache_read: e.cache_read_input_token_cost.unwrap_or(input * r) * NANOS,
            };
            let chat = e.mode.as_deref().unwrap_or("chat") == "chat";
            match e.litellm_provider.as_deref() {
                Some("anthropic") if is_claude && chat => claude_models.push(name.clone()),
                Some("openai") if chat && !name.contains('/') => openai_models.push(name.clone()),
                Some("gemini") if chat => {
                    if let Some(m) = name.strip_prefix("gemini/") {
                        gemini_models.push(m.to_string());
                    }
                }
                _ => {}
            }
            models.insert(name, price);
        }
        claude_models.sort();
        openai_models.sort();
        gemini_models.sort();
        Ok(Pricing {
            models,
            claude_models: claude_models.into(),
            openai_models: openai_models.into(),
            gemini_models: gemini_models.into(),
            origin: "inline".into(),
            loaded_at: Some(Utc::now()),
            sha256: sha256_hex(raw),
        })
    }

    /// The price of a model: its exact name first; when that is absent, the names of the
    /// documented normalisations, each looked up exactly (see [`candidates`]). Never a
    /// substring or prefix match, which could price one model as another.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        candidates(model)
            .iter()
            .find_map(|name| self.models.get(name.as_str()))
    }

    /// The exact name only.
    pub fn exact(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn claude_models(&self) -> &[String] {
        &self.claude_models
    }

    pub fn openai_models(&self) -> &[String] {
        &self.openai_models
    }

    pub fn gemini_models(&self) -> &[String] {
        &self.gemini_models
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn loaded_at(&self) -> Option<DateTime<Utc>> {
        self.loaded_at
    }
}

/// The names a model is also looked up under, most specific first (the name itself excluded):
///
/// 1. a `models/` prefix (Gemini API paths) is dropped;
/// 2. Bedrock ids: a cross-region prefix (`us.`, `eu.`, `apac.`, `global.`, …) is dropped
///    (`us.anthropic.claude-x-v1:0` → `anthropic.claude-x-v1:0`, as LiteLLM lists Bedrock
///    models), then the `anthropic.` provider prefix and the `-vN:M` version suffix
///    (→ `claude-x`, the Anthropic name);
/// 3. Gemini: a bare `gemini-…` name is also tried as `gemini/gemini-…` (LiteLLM's Gemini API
///    entries) and `gemini/…` as the bare name;
/// 4. a release-date suffix (`-20250514`, `-2024-08-06`, Vertex's `@20240620`) is dropped last,
///    so the undated alias prices a model only when the exact dated name is absent.
pub fn candidates(model: &str) -> Vec<String> {
    fn push(out: &mut Vec<String>, original: &str, name: &str) {
        if !name.is_empty() && name != original && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    let mut out = Vec::new();
    let name = model.trim();
    let name = name.strip_prefix("models/").unwrap_or(name);
    push(&mut out, model, name);
    let unregioned = BEDROCK_REGIONS
        .iter()
        .find_map(|r| name.strip_prefix(r))
        .unwrap_or(name);
    push(&mut out, model, unregioned);
    if let Some(core) = unregioned.strip_prefix("anthropic.") {
        push(&mut out, model, strip_bedrock_version(core));
    }
    if let Some(bare) = name.strip_prefix("gemini/") {
        push(&mut out, model, bare);
    } else if name.starts_with("gemini-") {
        push(&mut out, model, &format!("gemini/{name}"));
    }
    let dated: Vec<String> = std::iter::once(name.to_string())
        .chain(out.iter().cloned())
        .collect();
    for d in dated {
        if let Some(undated) = strip_date(&d) {
            push(&mut out, model, undated);
        }
    }
    out
}

/// `claude-x-v1:0` → `claude-x` (Bedrock versions always carry the `:N` revision; a bare
/// `-v2` is part of a model's name, as in `claude-3-5-sonnet-v2`).
fn strip_bedrock_version(core: &str) -> &str {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match core.rsplit_once("-v") {
        Some((head, v)) if !head.is_empty() => match v.split_once(':') {
            Some((major, rev)) if number(major) && number(rev) => head,
            _ => core,
        },
        _ => core,
    }
}

/// A trailing release date: `-YYYYMMDD`, `-YYYY-MM-DD` or `@YYYYMMDD`.
fn strip_date(name: &str) -> Option<&str> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let plausible = |y: &str| y.starts_with("20");
    if let Some((head, tail)) = name.rsplit_once('@') {
        if tail.len() == 8 && digits(tail) && plausible(tail) && !head.is_empty() {
            return Some(head);
        }
    }
    let b = name.as_bytes();
    if b.len() > 9 && b[b.len() - 9] == b'-' {
        let tail = name.get(name.len() - 8..).unwrap_or_default();
        if digits(tail) && plausible(tail) {
            return name.get(..name.len() - 9);
        }
    }
    if b.len() > 11 && b[b.len() - 11] == b'-' {
        let tail = name.get(name.len() - 10..).unwrap_or_default();
        let parts: Vec<&str> = tail.split('-').collect();
        if let [y, m, d] = parts.as_slice() {
            if y.len() == 4
                && m.len() == 2
                && d.len() == 2
                && digits(y)
                && digits(m)
                && digits(d)
                && plausible(y)
            {
                return name.get(..name.len() - 11);
            }
        }
    }
    None
}

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

    pub fn status(&self) -> PricingStatus {
        let p = self.current.load();
        let err = self.last_error.lock().clone();
        PricingStatus {
            models: p.len(),
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
                Pricing::parse_table(&raw, &origin).map(Some)
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
            Pricing::parse_table(&raw, &format!("url:{url}"))
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

use crate::error_chain;

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

    fn table(names: &[&str]) -> Pricing {
        let entries: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.to_string(),
                    serde_json::json!({"input_cost_per_token": (i + 1) as f64 * 1e-6, "output_cost_per_token": 1e-5}),
                )
            })
            .collect();
        Pricing::from_json(serde_json::to_string(&entries).unwrap().as_bytes()).unwrap()
    }

    fn priced_as<'a>(p: &'a Pricing, model: &str, names: &[&'a str]) -> Option<&'a str> {
        let found = p.price(model)?;
        names.iter().copied().find(|n| p.exact(n) == Some(found))
    }

    #[test]
    fn derives_missing_claude_cache_prices() {
        let p = Pricing::from_json(
            br#"{"claude-test":{"input_cost_per_token":1e-6,"output_cost_per_token":5e-6,"litellm_provider":"anthropic","mode":"chat"},
                 "gpt-x":{"input_cost_per_token":2e-6,"output_cost_per_token":8e-6,"cache_read_input_token_cost":5e-7},
                 "sample_spec":{"input_cost_per_token":"nope"}}"#,
        )
        .unwrap();
        let c = p.price("claude-test").unwrap();
        assert_eq!((c.input, c.output), (1000.0, 5000.0));
        assert_eq!(
            (c.cache_write_5m, c.cache_write_1h, c.cache_read),
            (1250.0, 2000.0, 100.0)
        );
        let g = p.price("gpt-x").unwrap();
        assert_eq!((g.cache_write_5m, g.cache_read), (2000.0, 500.0));
        assert!(p.price("sample_spec").is_none());
        assert!(p.price("claude-tes").is_none(), "no substring matches");
        assert_eq!(p.claude_models(), &["claude-test".to_string()]);
        assert_eq!(p.sha256().len(), 64);
    }

    #[test]
    fn bundled_table_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../resources/model-pricing/model_prices_and_context_window.json"
        );
        let p = Pricing::load(Path::new(path)).unwrap();
        assert!(p.len() > 1000);
        let s = p.price("claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(s.input, 3000.0);
        assert_eq!(s.cache_write_1h, 6000.0);
        assert!(p
            .claude_models()
            .iter()
            .any(|m| m == "claude-sonnet-4-5-20250929"));
        assert!(p.origin().starts_with("file:"));
        // Bedrock ids of the bundled table resolve without any loose matching.
        assert!(p
            .price("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
            .is_some());
    }

    #[test]
    fn bedrock_ids_normalise_to_their_entries() {
        let names = [
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "claude-sonnet-4-20250514",
            "claude-opus-4",
        ];
        let p = table(&names);
        // LiteLLM's own Bedrock entry, under any region prefix.
        for m in [
            "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "apac.anthropic.claude-3-5-sonnet-20240620-v1:0",
        ] {
            assert_eq!(priced_as(&p, m, &names), Some(names[0]), "{m}");
        }
        // No Bedrock entry: the Anthropic name without prefix and version suffix.
        assert_eq!(
            priced_as(&p, "global.anthropic.claude-sonnet-4-20250514-v1:0", &names),
            Some("claude-sonnet-4-20250514")
        );
        assert_eq!(
            priced_as(&p, "anthropic.claude-sonnet-4-20250514-v2:0", &names),
            Some("claude-sonnet-4-20250514")
        );
        // A `-v2` without revision is part of the name, not a Bedrock version.
        assert!(p.price("anthropic.claude-sonnet-4-20250514-v2").is_none());
        // …and its date dropped only because no dated entry exists.
        assert_eq!(
            priced_as(&p, "us.anthropic.claude-opus-4-20250514-v1:0", &names),
            Some("claude-opus-4")
        );
    }

    #[test]
    fn gemini_prefix_and_models_path() {
        let names = ["gemini/gemini-2.5-pro", "gemini-1.5-flash"];
        let p = table(&names);
        assert_eq!(
            priced_as(&p, "gemini-2.5-pro", &names),
            Some("gemini/gemini-2.5-pro")
        );
        assert_eq!(
            priced_as(&p, "models/gemini-2.5-pro", &names),
            Some("gemini/gemini-2.5-pro")
        );
        assert_eq!(
            priced_as(&p, "gemini/gemini-1.5-flash", &names),
            Some("gemini-1.5-flash")
        );
        assert!(p.price("gemini-2.5-pro-preview").is_none());
    }

    #[test]
    fn date_suffix_falls_back_only_when_the_dated_name_is_absent() {
        let names = [
            "claude-sonnet-4",
            "claude-sonnet-4-20250514",
            "gpt-4o",
            "claude-3-5-sonnet-v2",
        ];
        let p = table(&names);
        // The exact dated name wins over its alias.
        assert_eq!(
            priced_as(&p, "claude-sonnet-4-20250514", &names),
            Some("claude-sonnet-4-20250514")
        );
        // Another date of the same model: the undated alias.
        assert_eq!(
            priced_as(&p, "claude-sonnet-4-20260101", &names),
            Some("claude-sonnet-4")
        );
        assert_eq!(priced_as(&p, "gpt-4o-2024-08-06", &names), Some("gpt-4o"));
        assert_eq!(
            priced_as(&p, "claude-3-5-sonnet-v2@20241022", &names),
            Some("claude-3-5-sonnet-v2")
        );
        // Not a date: a version number stays.
        assert!(p.price("gpt-4o-1234").is_none());
        assert!(p.price("claude-sonnet-4-12345678").is_none());
    }

    #[test]
    fn never_a_loose_match() {
        let names = [
            "claude-sonnet-4-5-20250929",
            "claude-opus-4-1-20250805",
            "gpt-4o",
            "gpt-4",
        ];
        let p = table(&names);
        for m in [
            // Prefixes, suffixes and substrings of priced names, and names containing them:
            "claude-sonnet-4-5",
            "claude-sonnet",
            "sonnet",
            "claude-opus-4-20250514",
            "claude-opus-4-1",
            "my-claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5-20250929-fast",
            "gpt-4o-mini",
            "gpt-4-turbo",
            "gpt",
            "",
        ] {
            assert!(p.price(m).is_none(), "{m:?} must not be priced");
        }
        // Any name, however odd, is looked up without panicking.
        for m in [
            "模型-20250101",
            "é-2025-01-01",
            "ü@20250101",
            "us.",
            "anthropic.-v1:0",
            "-v:",
        ] {
            assert!(p.price(m).is_none(), "{m:?}");
        }
        // gpt-4o and gpt-4 stay apart.
        assert_eq!(priced_as(&p, "gpt-4o", &names), Some("gpt-4o"));
        assert_eq!(priced_as(&p, "gpt-4", &names), Some("gpt-4"));
    }

    #[test]
    fn reload_refuses_an_empty_or_bad_table() {
        assert!(matches!(
            Pricing::parse_table(b"{}", "t"),
            Err(PricingError::Empty(_))
        ));
        assert!(matches!(
            Pricing::parse_table(b"{\"a\":", "t"),
            Err(PricingError::Parse(..))
        ));
        assert!(Pricing::parse_table(
            br#"{"m":{"input_cost_per_token":1e-6,"output_cost_per_token":1e-6}}"#,
            "t"
        )
        .is_ok());
    }

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
