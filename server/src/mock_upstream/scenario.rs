//! What a request's path asks of the answer: `/s/<scenario>/…` parsed into a failure to
//! play ([`Behaviour`]) and the shape of a normal answer (tokens, text pieces, pauses).

use std::time::Duration;

use axum::body::Bytes;
use serde_json::Value;

use super::{INPUT_TOKENS, OUTPUT_TOKENS, REPLY};

#[derive(Clone, Copy, Debug)]
pub(super) enum Scenario {
    Ok,
    FromPath,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Behaviour {
    Ok,
    Status(u16),
    Html(u16),
    Slow(u64),
    Drip(u64),
    Reset,
    NoStop,
    Malformed,
    FamilyLimit,
    Quote(u16),
    Redirect(u16),
}

pub(super) fn behaviour(s: Scenario, path: &str) -> Behaviour {
    if matches!(s, Scenario::Ok) {
        return Behaviour::Ok;
    }
    let full = path
        .strip_prefix("/s/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    // Scenarios that only shape the answer combine with another: `usage-100000+drip-20`.
    let name = full
        .split('+')
        .find(|p| {
            !["usage-", "out-", "long-", "big-"]
                .iter()
                .any(|s| p.starts_with(s))
        })
        .unwrap_or("");
    let num = |p: &str| name.strip_prefix(p).and_then(|n| n.parse::<u64>().ok());
    if let Some(code) = num("status-") {
        return Behaviour::Status(code as u16);
    }
    if let Some(code) = num("quote-") {
        return Behaviour::Quote(code as u16);
    }
    if let Some(code) = num("html-") {
        return Behaviour::Html(code as u16);
    }
    if let Some(ms) = num("slow-") {
        return Behaviour::Slow(ms);
    }
    if let Some(ms) = num("drip-") {
        return Behaviour::Drip(ms);
    }
    if let Some(port) = num("redirect-") {
        return Behaviour::Redirect(port as u16);
    }
    match name {
        "reset" => Behaviour::Reset,
        "no-stop" => Behaviour::NoStop,
        "malformed" => Behaviour::Malformed,
        "family-limit" => Behaviour::FamilyLimit,
        _ => Behaviour::Ok,
    }
}

/// The input tokens a scenario asks the answers to report (`usage-<n>`).
pub(super) fn input_tokens(s: Scenario, path: &str) -> u64 {
    if matches!(s, Scenario::Ok) {
        return INPUT_TOKENS;
    }
    path.strip_prefix("/s/")
        .and_then(|p| p.split('/').next())
        .and_then(|name| {
            name.split('+')
                .find_map(|p| p.strip_prefix("usage-")?.parse().ok())
        })
        .unwrap_or(INPUT_TOKENS)
}

/// The number a `<prefix><n>` part of the scenario names.
fn scenario_number(s: Scenario, path: &str, prefix: &str) -> Option<u64> {
    if matches!(s, Scenario::Ok) {
        return None;
    }
    path.strip_prefix("/s/")
        .and_then(|p| p.split('/').next())
        .and_then(|name| {
            name.split('+')
                .find_map(|p| p.strip_prefix(prefix)?.parse::<u64>().ok())
        })
}

/// The text deltas of an answer: the fixed reply, or `long-<n>` / `big-<n>` pieces.
pub(super) fn reply_parts(s: Scenario, path: &str) -> Vec<String> {
    if let Some(n) = scenario_number(s, path, "long-") {
        return vec!["tok ".to_string(); n as usize];
    }
    if let Some(n) = scenario_number(s, path, "big-") {
        return vec!["x".repeat(1000); n as usize];
    }
    REPLY.iter().map(|p| p.to_string()).collect()
}

/// The output tokens an answer reports: `out-<n>` (else one per `long-` piece, else the
/// default), never more than the request's own output limit.
pub(super) fn output_tokens(s: Scenario, path: &str, body: &[u8]) -> u64 {
    let wanted = scenario_number(s, path, "out-")
        .or_else(|| scenario_number(s, path, "long-"))
        .unwrap_or(OUTPUT_TOKENS);
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let limit = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_u64))
        .chain(
            v.get("generationConfig")
                .and_then(|g| g.get("maxOutputTokens"))
                .and_then(Value::as_u64),
        )
        .min();
    limit.map_or(wanted, |l| wanted.min(l))
}

/// The pause between frames of a `drip-<ms>` scenario.
pub(super) fn drip(b: &Behaviour) -> Option<Duration> {
    match b {
        Behaviour::Drip(ms) => Some(Duration::from_millis(*ms)),
        _ => None,
    }
}

pub(super) fn requested_model(body: &Bytes) -> (String, bool) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-sonnet-4-5-20250929")
        .to_string();
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    (model, stream)
}
