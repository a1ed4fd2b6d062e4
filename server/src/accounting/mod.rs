//! What a request cost, and writing it down: the pricing table, the cost formula, and the
//! recorder that adds finished requests to every counter in coalesced batches.

pub mod pricing;
pub mod recorder;

use app::domain::TokenUsage;

pub use pricing::{ModelPrice, Pricing, FALLBACK_PRICE};
pub use recorder::Recorder;

/// The price of a model: exact name first, then the documented normalisations
/// (see [`pricing::candidates`]); never a loose match.
pub fn lookup<'a>(pricing: &'a Pricing, model: &str) -> Option<&'a ModelPrice> {
    pricing.price(model)
}

pub fn price_or_fallback(pricing: &Pricing, model: &str) -> ModelPrice {
    lookup(pricing, model).copied().unwrap_or(FALLBACK_PRICE)
}

/// The cost of one request in nano-dollars, and whether the fallback price was used.
pub fn cost_nanos(pricing: &Pricing, model: &str, usage: &TokenUsage) -> (u64, bool) {
    let (price, fallback) = match lookup(pricing, model) {
        Some(p) => (p, false),
        None => (&FALLBACK_PRICE, true),
    };
    let part = |tokens: u64, per_token: f64| (tokens as f64 * per_token).round() as u64;
    let cost = part(usage.input_tokens, price.input)
        + part(usage.output_tokens, price.output)
        + part(usage.cache_create_5m_tokens, price.cache_write_5m)
        + part(usage.cache_create_1h_tokens, price.cache_write_1h)
        + part(usage.cache_read_tokens, price.cache_read);
    (cost, fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_adds_every_token_kind() {
        let p = Pricing::from_json(
            br#"{"claude-m":{"input_cost_per_token":3e-6,"output_cost_per_token":1.5e-5,
                 "cache_creation_input_token_cost":3.75e-6,"cache_creation_input_token_cost_above_1hr":6e-6,
                 "cache_read_input_token_cost":3e-7}}"#,
        )
        .unwrap();
        let usage = TokenUsage {
            input_tokens: 100,
            output_tokens: 10,
            cache_create_5m_tokens: 1000,
            cache_create_1h_tokens: 2000,
            cache_read_tokens: 10_000,
        };
        // 100*3000 + 10*15000 + 1000*3750 + 2000*6000 + 10000*300
        assert_eq!(cost_nanos(&p, "claude-m", &usage), (19_200_000, false));
        assert_eq!(
            cost_nanos(&p, "us.anthropic.claude-m-v1:0", &usage),
            (19_200_000, false)
        );
        assert_eq!(
            cost_nanos(&p, "anthropic.claude-m", &usage),
            (19_200_000, false)
        );
        let (fallback_cost, flagged) = cost_nanos(&p, "unknown-model", &usage);
        assert!(flagged);
        assert_eq!(fallback_cost, 19_200_000, "fallback is Sonnet pricing");
    }
}
