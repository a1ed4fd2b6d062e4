//! What a request cost, and writing it down: the pricing table, the cost formula, models
//! without a price, and the recorder that adds finished requests to every counter in coalesced
//! batches.

pub mod pricing;
pub mod recorder;
pub mod unpriced;

use app::domain::TokenUsage;

pub use pricing::{ModelPrice, Pricing, Rates, FALLBACK_PRICE};
pub use recorder::Recorder;
pub use unpriced::{price_for, Priced, Unpriced, UnpricedAction, UnpricedPolicy};

/// The price of a model: exact name first, then the documented normalisations
/// (see [`pricing`]); never a loose match.
pub fn lookup<'a>(pricing: &'a Pricing, model: &str) -> Option<&'a ModelPrice> {
    pricing.price(model)
}

/// The model's price, or the unpriced policy's fallback price.
pub fn price_or_fallback(pricing: &Pricing, model: &str) -> ModelPrice {
    lookup(pricing, model)
        .copied()
        .unwrap_or(pricing.unpriced_policy().fallback_price)
}

/// The cost of one request in nano-dollars, and whether the fallback price was used (the
/// model has no price; under `refuse` this happens only when the answering model differs from
/// the one admitted). Prompts above 200k tokens pay the long-context rates; 5-minute and
/// 1-hour cache writes each pay their own.
pub fn cost_nanos(pricing: &Pricing, model: &str, usage: &TokenUsage) -> (u64, bool) {
    let (price, fallback) = match lookup(pricing, model) {
        Some(p) => (p, false),
        None => (&pricing.unpriced_policy().fallback_price, true),
    };
    let prompt = usage.input_tokens
        + usage.cache_create_5m_tokens
        + usage.cache_create_1h_tokens
        + usage.cache_read_tokens;
    let r = price.rates_for(prompt);
    let part = |tokens: u64, per_token: f64| (tokens as f64 * per_token).round() as u64;
    let cost = part(usage.input_tokens, r.input)
        + part(usage.output_tokens, r.output)
        + part(usage.cache_create_5m_tokens, r.cache_write_5m)
        + part(usage.cache_create_1h_tokens, r.cache_write_1h)
        + part(usage.cache_read_tokens, r.cache_read);
    (cost, fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, w5: u64, w1: u64, read: u64) -> TokenUsage {
        TokenUsage {
            input_tokens: input,
            output_tokens: 10,
            cache_create_5m_tokens: w5,
            cache_create_1h_tokens: w1,
            cache_read_tokens: read,
        }
    }

    #[test]
    fn cost_adds_every_token_kind() {
        let p = Pricing::from_json(
            br#"{"claude-m":{"input_cost_per_token":3e-6,"output_cost_per_token":1.5e-5,
                 "cache_creation_input_token_cost":3.75e-6,"cache_creation_input_token_cost_above_1hr":6e-6,
                 "cache_read_input_token_cost":3e-7}}"#,
        )
        .unwrap();
        let usage = usage(100, 1000, 2000, 10_000);
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

    #[test]
    fn long_prompts_pay_long_context_rates() {
        let p = Pricing::from_json(
            br#"{"claude-l":{"input_cost_per_token":3e-6,"output_cost_per_token":1.5e-5,
                 "input_cost_per_token_above_200k_tokens":6e-6}}"#,
        )
        .unwrap();
        // Exactly 200k prompt tokens (input and every cache kind counted): base rates.
        let (base, _) = cost_nanos(&p, "claude-l", &usage(170_000, 10_000, 10_000, 10_000));
        assert_eq!(
            base,
            170_000 * 3_000 + 10 * 15_000 + 10_000 * 3_750 + 10_000 * 6_000 + 10_000 * 300
        );
        // One more: every kind at the long rates (derived with Anthropic's ratios).
        let (long, _) = cost_nanos(&p, "claude-l", &usage(170_001, 10_000, 10_000, 10_000));
        assert_eq!(
            long,
            170_001 * 6_000 + 10 * 22_500 + 10_000 * 7_500 + 10_000 * 12_000 + 10_000 * 600
        );
    }

    #[test]
    fn price_for_follows_the_policy() {
        let p = Pricing::from_json(
            br#"{"claude-sonnet-4-5-20250929":{"input_cost_per_token":1e-6,"output_cost_per_token":2e-6},
                 "m":{"input_cost_per_token":5e-6,"output_cost_per_token":5e-6}}"#,
        )
        .unwrap();
        let fallback = p.unpriced_policy().clone();
        assert_eq!(fallback.action, UnpricedAction::Fallback);
        assert_eq!(fallback.fallback_model, "claude-sonnet-4-5-20250929");
        let priced = price_for(&p, "m", &fallback).unwrap();
        assert!(!priced.fallback);
        assert_eq!(priced.price.input, 5_000.0);
        let flagged = price_for(&p, "nope", &fallback).unwrap();
        assert!(flagged.fallback);
        assert_eq!(
            flagged.price.input, 1_000.0,
            "the named fallback model's price"
        );
        let refuse = UnpricedPolicy {
            action: UnpricedAction::Refuse,
            ..fallback
        };
        assert!(price_for(&p, "m", &refuse).is_ok());
        assert_eq!(
            price_for(&p, "nope", &refuse),
            Err(Unpriced {
                model: "nope".into()
            })
        );
        // The cost of an unpriced model follows the table's fallback model.
        assert_eq!(
            cost_nanos(&p, "nope", &usage(1000, 0, 0, 0)),
            (1_020_000, true)
        );
    }
}
