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

mod live;
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

const NANOS: f64 = 1e9;

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

    /// Parses `raw`, merges the overrides, resolves aliases and builds the lookup indexes. The
    /// unpriced policy is left built-in (see [`Self::resolve_unpriced`]).
    pub fn build(raw: &[u8], setup: Arc<PricingSetup>) -> Result<Self, serde_json::Error> {
        // Entries stay raw slices of the file until parsed one by one: a tree of
        // `serde_json::Value`s for the 3.4 MB LiteLLM file was most of the relay's peak memory.
        let entries: HashMap<String, &serde_json::value::RawValue> = serde_json::from_slice(raw)?;
        let over = &setup.overrides.entries;
        let mut t = Tables::default();
        t.models.reserve(entries.len() + over.len());
        for (name, value) in &entries {
            // Entries that do not parse (like LiteLLM's `sample_spec`) are skipped, not fatal.
            let parsed = serde_json::from_str::<Entry>(value.get()).ok();
            if parsed.as_ref().is_some_and(Entry::is_priced) {
                t.source_models += 1;
            }
            let entry = match (parsed, over.get(name)) {
                (Some(mut e), Some(o)) => {
                    e.merge(o);
                    e
                }
                (Some(e), None) => e,
                (None, Some(o)) => o.clone(),
                (None, None) => continue,
            };
            t.add(name, &entry);
        }
        for (name, o) in over {
            if !entries.contains_key(name) {
                t.add(name, o);
            }
        }
        drop(entries);
        t.claude_models.sort();
        t.openai_models.sort();
        t.gemini_models.sort();
        let (index, undated) = index(&t.models);
        let mut p = Pricing {
            models: t.models,
            index,
            undated,
            claude_models: t.claude_models.into(),
            openai_models: t.openai_models.into(),
            gemini_models: t.gemini_models.into(),
            origin: "inline".into(),
            loaded_at: Some(Utc::now()),
            sha256: sha256_hex(raw),
            source_models: t.source_models,
            unpriced: UnpricedPolicy::built_in(setup.unpriced),
            setup,
        };
        p.resolve_aliases(t.aliases);
        Ok(p)
    }

    /// Prices LiteLLM's `alias_of` entries as their targets (aliases of aliases too).
    fn resolve_aliases(&mut self, mut aliases: Vec<(String, String)>) {
        for _ in 0..4 {
            let before = aliases.len();
            aliases.retain(|(name, target)| match self.price(target).copied() {
                Some(price) => {
                    self.models.insert(name.clone(), price);
                    false
                }
                None => true,
            });
            if aliases.is_empty() || aliases.len() == before {
                break;
            }
        }
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

    /// The price of a model (see the module documentation for the rules). An exact name costs
    /// one hash lookup; other names a few, with at most one small allocation.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        let id = names::surface(model);
        self.find(id)
            .or_else(|| self.find(names::strip_latest(id)?))
    }

    fn find(&self, id: &str) -> Option<&ModelPrice> {
        if id.is_empty() {
            return None;
        }
        let at = |n: &str| {
            self.models
                .get(n)
                .or_else(|| self.index.get(n))
                .or_else(|| self.undated.get(n))
        };
        let c = names::canonical(id);
        self.models
            .get(id)
            .or_else(|| at(&c))
            // Another date of a model: its undated entry (or newest snapshot).
            .or_else(|| at(names::strip_date(&c)?.0))
    }

    /// The model's label on metrics: the table's own name for it (found as [`Pricing::price`]
    /// finds prices), else `other`. Labels come only from the table, so clients sending
    /// random model names cannot grow the series count (bounded by the table's names).
    pub fn metric_label(&self, model: &str) -> &str {
        if let Some((name, _)) = self.models.get_key_value(model) {
            return name;
        }
        let in_table = |n: &str| {
            self.models
                .get_key_value(n)
                .or_else(|| self.index.get_key_value(n))
                .or_else(|| self.undated.get_key_value(n))
                .map(|(k, _)| k.as_str())
        };
        let id = names::surface(model);
        let found = |id: &str| {
            if id.is_empty() {
                return None;
            }
            let c = names::canonical(id);
            in_table(id)
                .or_else(|| in_table(&c))
                .or_else(|| in_table(names::strip_date(&c)?.0))
        };
        found(id)
            .or_else(|| found(names::strip_latest(id)?))
            .unwrap_or("other")
    }

    /// The exact name only.
    pub fn exact(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
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

/// What a table is built into.
#[derive(Default)]
struct Tables {
    models: HashMap<String, ModelPrice>,
    aliases: Vec<(String, String)>,
    claude_models: Vec<String>,
    openai_models: Vec<String>,
    gemini_models: Vec<String>,
    source_models: usize,
}

impl Tables {
    fn add(&mut self, name: &str, e: &Entry) {
        let claude = names::is_claude(&names::canonical(name));
        let Some(price) = price_of(e, claude) else {
            if let Some(target) = &e.alias_of {
                self.aliases.push((name.to_string(), target.clone()));
            }
            return;
        };
        let chat = e.mode.as_deref().unwrap_or("chat") == "chat";
        match e.litellm_provider.as_deref() {
            Some("anthropic") if name.starts_with("claude") && chat => {
                self.claude_models.push(name.to_string())
            }
            Some("openai") if chat && !name.contains('/') => {
                self.openai_models.push(name.to_string())
            }
            Some("gemini") if chat => {
                if let Some(m) = name.strip_prefix("gemini/") {
                    self.gemini_models.push(m.to_string());
                }
            }
            _ => {}
        }
        self.models.insert(name.to_string(), price);
    }
}

/// An entry's prices in nano-dollars per token. Claude prices missing cache figures derive them
/// from input with Anthropic's ratios (5-minute writes 1.25x, 1-hour writes 2x, reads 0.1x;
/// long-context output 1.5x); other providers bill cache writes as input, reads at input price,
/// and missing long-context figures scale with the long input price.
fn price_of(e: &Entry, claude: bool) -> Option<ModelPrice> {
    let (input, output) = (e.input_cost_per_token?, e.output_cost_per_token?);
    let write_5m =
        e.cache_creation_input_token_cost
            .unwrap_or(if claude { input * 1.25 } else { input });
    let base = Rates {
        input,
        output,
        cache_write_5m: write_5m,
        cache_write_1h: e
            .cache_creation_input_token_cost_above_1hr
            .unwrap_or(if claude { input * 2.0 } else { write_5m }),
        cache_read: e.cache_read_input_token_cost.unwrap_or(if claude {
            input * 0.1
        } else {
            input
        }),
    };
    let above_200k = e.input_cost_per_token_above_200k_tokens.map(|long| {
        let scale = if input > 0.0 { long / input } else { 1.0 };
        let (w5, w1, r) = if claude {
            (long * 1.25, long * 2.0, long * 0.1)
        } else {
            (
                base.cache_write_5m * scale,
                base.cache_write_1h * scale,
                base.cache_read * scale,
            )
        };
        nanos(Rates {
            input: long,
            output: e
                .output_cost_per_token_above_200k_tokens
                .unwrap_or(if claude { output * 1.5 } else { output }),
            cache_write_5m: e
                .cache_creation_input_token_cost_above_200k_tokens
                .unwrap_or(w5),
            cache_write_1h: e
                .cache_creation_input_token_cost_above_1hr_above_200k_tokens
                .unwrap_or(w1),
            cache_read: e.cache_read_input_token_cost_above_200k_tokens.unwrap_or(r),
        })
    });
    let b = nanos(base);
    Some(ModelPrice {
        input: b.input,
        output: b.output,
        cache_write_5m: b.cache_write_5m,
        cache_write_1h: b.cache_write_1h,
        cache_read: b.cache_read,
        above_200k,
        max_input_tokens: e.max_input_tokens,
        max_output_tokens: e.max_output_tokens.or(e.max_tokens),
    })
}

/// Dollars to nano-dollars per token, to a millionth of a nano-dollar (`6e-6 * 0.1` is
/// 600.0000000000001 nano-dollars otherwise).
fn nanos(r: Rates) -> Rates {
    let n = |usd: f64| (usd * NANOS * 1e6).round() / 1e6;
    Rates {
        input: n(r.input),
        output: n(r.output),
        cache_write_5m: n(r.cache_write_5m),
        cache_write_1h: n(r.cache_write_1h),
        cache_read: n(r.cache_read),
    }
}

type Index = HashMap<String, ModelPrice>;

/// Candidates for one index name: the lowest rank wins.
struct Best<R>(HashMap<String, (R, ModelPrice)>);

impl<R: Ord> Best<R> {
    fn offer(&mut self, name: &str, rank: R, price: ModelPrice) {
        match self.0.get(name) {
            Some((best, _)) if *best <= rank => {}
            _ => {
                self.0.insert(name.to_string(), (rank, price));
            }
        }
    }

    fn into_index(self) -> Index {
        self.0.into_iter().map(|(k, (_, p))| (k, p)).collect()
    }
}

/// The lookup indexes of a table's priced names: provider-neutral names of provider-prefixed
/// entries (best source first, then the smaller name, so the choice never depends on hash
/// order), and Claude names without their date (newest date first, then best source).
fn index(models: &HashMap<String, ModelPrice>) -> (Index, Index) {
    use std::cmp::Reverse;
    let mut by_name = Best(HashMap::new());
    let mut by_undated = Best(HashMap::new());
    for (name, price) in models {
        let Some(source) = names::source(name) else {
            continue;
        };
        let c = names::canonical(name);
        if c != name.as_str() {
            by_name.offer(&c, (source, name.clone()), *price);
        }
        if names::is_claude(&c) {
            if let Some((undated, date)) = names::strip_date(&c) {
                by_undated.offer(undated, (Reverse(date), source, name.clone()), *price);
            }
        }
    }
    (by_name.into_index(), by_undated.into_index())
}
