//! The most a request can cost: the size of its reservation.

use super::{CostAsk, MAX_OUTPUT_PER_KTOK, MAX_OUTPUT_TOKENS};

/// Input tokens a body can hold at most, for the reservation: one token per three bytes.
/// Tokenizers make about one token of four bytes of English (and of the JSON around it) and
/// about one of three bytes of Chinese, so this is an overestimate for real prompts; the
/// model's context window (from the pricing table) caps it.
pub fn input_tokens_estimate(body_len: usize, max_input_tokens: Option<u64>) -> u64 {
    let estimate = (body_len as u64).div_ceil(3);
    max_input_tokens.map_or(estimate, |m| estimate.min(m))
}

/// The most a request can cost, in rated nano-dollars (see `admission`): its input estimate at
/// the model's highest input-side rate (input, cache writes), and its output at the output
/// rate, long-context rates when the estimate passes 200k tokens.
pub fn cost_ask(
    price: &crate::accounting::ModelPrice,
    rate: f64,
    body_len: usize,
    requested_output: Option<u64>,
    config: &crate::config::Config,
) -> CostAsk {
    let input_tokens = input_tokens_estimate(body_len, price.max_input_tokens);
    let rates = price.rates_for(input_tokens);
    let input_rate = rates
        .input
        .max(rates.cache_write_5m)
        .max(rates.cache_write_1h)
        .max(rates.cache_read);
    let rate = if rate.is_finite() && rate >= 0.0 {
        rate
    } else {
        1.0
    };
    let input_nanos = (input_tokens as f64 * input_rate * rate).ceil();
    let per_ktok = (rates.output * 1000.0 * rate).ceil();
    CostAsk {
        input_nanos: if input_nanos.is_finite() {
            input_nanos.min(1e15) as u64
        } else {
            0
        },
        output_per_ktok: if per_ktok.is_finite() {
            (per_ktok as u64).min(MAX_OUTPUT_PER_KTOK)
        } else {
            MAX_OUTPUT_PER_KTOK
        },
        max_output: requested_output
            .or(price.max_output_tokens)
            .unwrap_or(config.default_max_output_tokens)
            .min(MAX_OUTPUT_TOKENS),
        min_output: config.min_output_tokens,
    }
}
