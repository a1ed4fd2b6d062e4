//! Building a table: LiteLLM's entries with the overrides merged, each priced in nano-dollars
//! per token, `alias_of` entries resolved, and the lookup indexes of provider-neutral and
//! undated names.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;

use super::{names, sha256_hex, Entry, ModelPrice, Pricing, PricingSetup, Rates};
use crate::accounting::unpriced::UnpricedPolicy;

const NANOS: f64 = 1e9;

impl Pricing {
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
