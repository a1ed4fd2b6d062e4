//! The pricing table: LiteLLM's `model_prices_and_context_window.json` format, loaded once into
//! memory (never read from the store on the hot path).

use std::{collections::HashMap, path::Path};

use serde::Deserialize;

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
    claude_models: Vec<String>,
    /// OpenAI chat models and Gemini API models, for their models lists.
    openai_models: Vec<String>,
    gemini_models: Vec<String>,
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
}

const NANOS: f64 = 1e9;

impl Pricing {
    pub fn load(path: &Path) -> Result<Self, PricingError> {
        let raw =
            std::fs::read(path).map_err(|e| PricingError::Read(path.display().to_string(), e))?;
        Self::from_json(&raw).map_err(|e| PricingError::Parse(path.display().to_string(), e))
    }

    pub fn from_json(raw: &[u8]) -> Result<Self, serde_json::Error> {
        let entries: HashMap<String, serde_json::Value> = serde_json::from_slice(raw)?;
        let mut models = HashMap::with_capacity(entries.len());
        let mut claude_models = Vec::new();
        let mut openai_models = Vec::new();
        let mut gemini_models = Vec::new();
        for (name, value) in entries {
            // Entries that do not parse (like LiteLLM's `sample_spec`) are skipped, not fatal.
            let Ok(e) = serde_json::from_value::<Entry>(value) else {
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
            claude_models,
            openai_models,
            gemini_models,
        })
    }

    /// Exact lookup only: a loose match could price one model as another.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
