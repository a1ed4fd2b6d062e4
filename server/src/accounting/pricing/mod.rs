//! The pricing table: LiteLLM's `model_prices_and_context_window.json` format, held in memory
//! (never read from the store on the hot path) as a snapshot that can be replaced at any time.
//!
//! Sources (README, "Prices"): the bundled table at `PRICING_FILE`, then the overrides file
//! (`overrides.json` beside it, or `PRICING_OVERRIDES_FILE`) merged field by field over it, then
//! reloads of `PRICING_FILE` and downloads of `PRICING_URL` ([`live`]), each with the same
//! overrides merged.
//!
//! Lookup ([`Pricing::price`]): the exact name, then the name inside what a client sent (ARN,
//! `models/`, `[1m]`), then its provider-neutral form ([`names::canonical`]) among the table's
//! own names and the provider-prefixed entries that carry Anthropic's prices (Bedrock without a
//! regional premium, then Vertex), then an undated or `-latest` alias as the newest dated
//! snapshot of that exact name, then a dated name as its undated entry. The names are indexed
//! when a table is loaded; never a substring or prefix match.

mod build;
mod live;
mod lookup;
pub mod names;
mod overrides;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, path::Path, sync::Arc};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub use live::{
    download_verified, write_atomically, Expected, LivePricing, PricingSources, PricingStatus,
};
pub use overrides::{Entry, Overrides};

use crate::accounting::unpriced::{UnpricedAction, UnpricedPolicy};

/// Nano-dollars per token of each kind, for one band of prompt sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

/// Prices of one model in nano-dollars per token: the base rates (flat, as other code reads
/// them), the long-context rates, and the model's token limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
    /// Every token of a request whose prompt passes [`LONG_CONTEXT_TOKENS`] is billed at these
    /// (LiteLLM's `*_above_200k_tokens` fields).
    pub above_200k: Option<Rates>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
}

/// Prompts (input + cache writes + cache reads) above this many tokens are long-context.
pub const LONG_CONTEXT_TOKENS: u64 = 200_000;

impl ModelPrice {
    pub fn base(&self) -> Rates {
        Rates {
            input: self.input,
            output: self.output,
            cache_write_5m: self.cache_write_5m,
            cache_write_1h: self.cache_write_1h,
            cache_read: self.cache_read,
        }
    }

    /// The rates a request with `prompt_tokens` (input + cache writes + cache reads) pays.
    pub fn rates_for(&self, prompt_tokens: u64) -> Rates {
        match self.above_200k {
            Some(long) if prompt_tokens > LONG_CONTEXT_TOKENS => long,
            _ => self.base(),
        }
    }
}

/// Used, and flagged, when a model is not in the table and the fallback model is not either:
/// Claude Sonnet 4.5's prices, as the original.
pub const FALLBACK_PRICE: ModelPrice = ModelPrice {
    input: 3_000.0,
    output: 15_000.0,
    cache_write_5m: 3_750.0,
    cache_write_1h: 6_000.0,
    cache_read: 300.0,
    above_200k: Some(Rates {
        input: 6_000.0,
        output: 22_500.0,
        cache_write_5m: 7_500.0,
        cache_write_1h: 12_000.0,
        cache_read: 600.0,
    }),
    max_input_tokens: Some(1_000_000),
    max_output_tokens: Some(64_000),
};

/// Whose price an unpriced model gets when `UNPRICED_FALLBACK_MODEL` is unset.
pub const DEFAULT_FALLBACK_MODEL: &str = "claude-sonnet-4-5-20250929";

/// What every table of a running relay is built with: the overrides and the unpriced policy.
#[derive(Clone, Debug, Default)]
pub struct PricingSetup {
    pub overrides: Overrides,
    pub unpriced: UnpricedAction,
    /// `UNPRICED_FALLBACK_MODEL`; unset: [`DEFAULT_FALLBACK_MODEL`] when the table prices it,
    /// else [`FALLBACK_PRICE`].
    pub fallback_model: Option<String>,
}

impl PricingSetup {
    /// Reads the overrides: `PRICING_OVERRIDES_FILE` (must exist), else `overrides.json` beside
    /// `PRICING_FILE` (optional).
    pub fn from_config(c: &crate::config::Config) -> Result<Self, PricingError> {
        let overrides = match &c.pricing_overrides_file {
            Some(path) => Overrides::load(path, true),
            None => Overrides::load(&c.pricing_file.with_file_name("overrides.json"), false),
        }
        .map_err(PricingError::Overrides)?;
        Ok(PricingSetup {
            overrides,
            unpriced: c.unpriced_policy,
            fallback_model: c.unpriced_fallback_model.clone(),
        })
    }
}

/// The table and everything computed from it at load time.
#[derive(Debug)]
pub struct Pricing {
    models: HashMap<String, ModelPrice>,
    /// Provider-neutral names of provider-prefixed entries (Bedrock without a regional premium,
    /// Vertex, Gemini API) → the price of the entry closest to Anthropic's own list.
    index: HashMap<String, ModelPrice>,
    /// Claude names without their date → the newest dated snapshot's price (Anthropic's
    /// undated and `-latest` aliases point at the newest snapshot).
    undated: HashMap<String, ModelPrice>,
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
    /// Models the table itself prices (before overrides and aliases).
    source_models: usize,
    setup: Arc<PricingSetup>,
    unpriced: UnpricedPolicy,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            models: HashMap::new(),
            index: HashMap::new(),
            undated: HashMap::new(),
            claude_models: Arc::new([]),
            openai_models: Arc::new([]),
            gemini_models: Arc::new([]),
            origin: "inline".into(),
            loaded_at: None,
            sha256: String::new(),
            source_models: 0,
            setup: Arc::default(),
            unpriced: UnpricedPolicy::built_in(UnpricedAction::Fallback),
        }
    }
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
    #[error("invalid pricing overrides: {0}")]
    Overrides(String),
    #[error("UNPRICED_FALLBACK_MODEL={0:?} is not in the pricing table")]
    FallbackModel(String),
}

pub fn sha256_hex(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// The table a relay starts with: `PRICING_FILE` with the overrides merged, and the unpriced
/// policy resolved (a fallback model named but not priced stops the start).
pub fn load_at_start(config: &crate::config::Config) -> Result<Pricing, PricingError> {
    let setup = Arc::new(PricingSetup::from_config(config)?);
    let path = &config.pricing_file;
    let raw = std::fs::read(path).map_err(|e| PricingError::Read(path.display().to_string(), e))?;
    let origin = format!("file:{}", path.display());
    let mut p = Pricing::build(&raw, setup)
        .map_err(|e| PricingError::Parse(path.display().to_string(), e))?;
    p.origin = origin;
    p.unpriced = p.resolve_unpriced(None)?;
    Ok(p)
}

impl Pricing {
    /// The file alone (no overrides).
    pub fn load(path: &Path) -> Result<Self, PricingError> {
        let raw =
            std::fs::read(path).map_err(|e| PricingError::Read(path.display().to_string(), e))?;
        let mut p = Self::from_json(&raw)
            .map_err(|e| PricingError::Parse(path.display().to_string(), e))?;
        p.origin = format!("file:{}", path.display());
        Ok(p)
    }

    /// Parses a table (no overrides): it must be valid and price at least one model.
    pub fn parse_table(raw: &[u8], origin: &str) -> Result<Self, PricingError> {
        Self::reload(raw, origin, &Pricing::default())
    }

    /// A new table replacing `current`: valid, pricing at least one model, with `current`'s
    /// overrides and policy. A fallback model the new table lacks keeps its last known price.
    pub fn reload(raw: &[u8], origin: &str, current: &Pricing) -> Result<Self, PricingError> {
        let mut p = Self::build(raw, current.setup.clone())
            .map_err(|e| PricingError::Parse(origin.to_string(), e))?;
        if p.source_models == 0 {
            return Err(PricingError::Empty(origin.to_string()));
        }
        p.origin = origin.to_string();
        p.unpriced = p.resolve_unpriced(Some(&current.unpriced))?;
        Ok(p)
    }

    /// A table without overrides, unchecked.
    pub fn from_json(raw: &[u8]) -> Result<Self, serde_json::Error> {
        let mut p = Self::build(raw, Arc::default())?;
        if let Ok(policy) = p.resolve_unpriced(None) {
            p.unpriced = policy;
        }
        Ok(p)
    }

    /// The policy for models without a price, with the fallback model's price from this table.
    /// A fallback model named but absent: the previous table's price for it when there is one
    /// (a reload), else an error (the start).
    pub fn resolve_unpriced(
        &self,
        previous: Option<&UnpricedPolicy>,
    ) -> Result<UnpricedPolicy, PricingError> {
        let action = self.setup.unpriced;
        let named = self.setup.fallback_model.as_deref();
        let name = named.unwrap_or(DEFAULT_FALLBACK_MODEL);
        if let Some(price) = self.price(name) {
            return Ok(UnpricedPolicy {
                action,
                fallback_model: name.to_string(),
                fallback_price: *price,
            });
        }
        match (named, previous) {
            (None, _) => Ok(UnpricedPolicy::built_in(action)),
            (Some(_), Some(prev)) if prev.fallback_model == name => {
                tracing::warn!(model = name, "the new pricing table lacks UNPRICED_FALLBACK_MODEL; keeping its last known price");
                Ok(UnpricedPolicy {
                    action,
                    ..prev.clone()
                })
            }
            (Some(_), _) => Err(PricingError::FallbackModel(name.to_string())),
        }
    }

    /// The policy for models without a price, resolved against this table.
    pub fn unpriced_policy(&self) -> &UnpricedPolicy {
        &self.unpriced
    }

    pub fn setup(&self) -> &PricingSetup {
        &self.setup
    }

    /// Names priced, overrides and aliases included.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Models the table itself prices.
    pub fn source_models(&self) -> usize {
        self.source_models
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
