//! May this key make this request? Admission is one atomic step in the store that checks every
//! applicable limit — the key's concurrency, its rate window, daily, total and weekly cost, cost
//! per platform and per model, and its owner's budget — and reserves the most the request can
//! cost, all or nothing; when only a shorter answer fits, the request's output limit is lowered
//! to it. When the request ends (completed, failed or abandoned), the settlement replaces the
//! reservation with what it actually cost. Spent plus reserved never passes a limit.
//!
//! - `plan`: which limits apply to a request (its counters, window and periods);
//! - `cost`: the most a request can cost (its reservation's size);
//! - `admission`: the decision, a pure function (`admit.lua` mirrors it for Redis);
//! - `request`: a relay request's admission, and the guard that gives its reservation back;
//! - `refusal`: what a refusal tells the client;
//! - `client`: client restrictions (Claude Code, Gemini CLI, Codex CLI);
//! - `settlement`: the end of a request — its slots released, its reservation settled.
//!
//! The types admission exchanges with the store (plan, reservation, refusal, settlement) are
//! the store's (`store::limits`), re-exported here.

pub mod admission;
pub mod client;
mod cost;
mod plan;
mod refusal;
mod request;
mod settlement;

pub use crate::store::limits::{
    CostAsk, Counter, HeldCounter, LimitKind, Plan, Refusal, Reservation, Settlement, Window,
    MAX_OUTPUT_PER_KTOK, MAX_OUTPUT_TOKENS,
};
pub use cost::{cost_ask, input_tokens_estimate};
pub use plan::{
    next_midnight, next_month, pattern_matches, plan, user_scope, visible_counters, week_start,
    Facts,
};
pub use refusal::{refusal_fields, refusal_message};
pub use request::{admit_request, Admission, Denied, RequestFacts, Reserved};
pub use settlement::{release, settle};

pub const NANOS_PER_USD: f64 = 1e9;

pub fn usd_to_nanos(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * NANOS_PER_USD).round() as u64
    } else {
        0
    }
}

fn usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
