//! Proptest strategies shared by the parsers' property tests.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys the relay's parsers look at, mixed with noise, so random objects reach deep code paths.
const KEYS: &[&str] = &[
    "type",
    "message",
    "usage",
    "model",
    "id",
    "content",
    "text",
    "delta",
    "index",
    "role",
    "messages",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "response",
    "stop_reason",
    "content_block",
    "partial_json",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "tool_call_id",
    "image_url",
    "url",
    "stop",
    "tools",
    "tool_choice",
    "user",
    "max_tokens",
    "temperature",
    "stream",
    "error",
    "session_id",
    "x",
];

const WORDS: &[&str] = &[
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "text_delta",
    "input_json_delta",
    "tool_use",
    "text",
    "image_url",
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "end_turn",
    "max_tokens",
    "error",
    "response.completed",
    "auto",
    "required",
    "none",
    "data:image/png;base64,AA",
    "{\"a\":1}",
    "",
    "é🌍",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(u64::MAX), Just(u64::MAX / 2 + 1), 0u64..1000].prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        proptest::sample::select(WORDS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

/// Arbitrary JSON, biased towards the keys and words of the protocols.
pub fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
                        1 => "[a-z_]{0,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Ascending cut points inside `len` bytes.
pub fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    c.sort_unstable();
    c
}

/// `bytes` split at `raw` cut points.
pub fn chunks<'a>(bytes: &'a [u8], raw: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts(bytes.len(), raw)
        .into_iter()
        .chain(std::iter::once(bytes.len()))
    {
        out.push(&bytes[at..c]);
        at = c;
    }
    out
}

/// `cases` by default, or `PROPTEST_CASES` when set (for long runs).
pub fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}
