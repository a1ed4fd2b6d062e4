//! What a stream delivered to its client: the bytes of generated content (text, thinking, tool
//! call arguments), counted as they are forwarded. When a stream is cut before the upstream
//! reported its final usage, the output billed is estimated from it (README, "Billing"):
//! one token per byte of delivered content, since no tokenizer of these providers makes a token
//! shorter than one byte — never fewer tokens than the client received — and never more than
//! the request's output limit, which the upstream cannot have passed.

use std::borrow::Cow;

use app::domain::TokenUsage;
use serde::Deserialize;

use super::{
    protocol::Protocol,
    sse::{SseField, SseLines},
};

/// Counts delivered content bytes of a stream in its protocol.
pub struct DeliveredContent {
    lines: SseLines,
    protocol: Protocol,
    pub bytes: u64,
}

#[derive(Deserialize)]
struct AnthropicEvent<'a> {
    #[serde(borrow, default)]
    delta: Option<AnthropicDelta<'a>>,
}

#[derive(Deserialize)]
struct AnthropicDelta<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
}

/// OpenAI Chat chunks, Responses events and Gemini chunks, in one lenient shape: only the
/// fields that carry generated content.
#[derive(Deserialize)]
struct OpenAiOrGemini<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    /// Responses: `response.*.delta` events carry the text in `delta`.
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    delta: Option<serde_json::Value>,
    #[serde(borrow, default)]
    candidates: Vec<Candidate<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<ChatDelta<'a>>,
}

#[derive(Deserialize)]
struct ChatDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Vec<ToolCall<'a>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Candidate<'a> {
    #[serde(borrow, default)]
    content: Option<GeminiContent<'a>>,
}

#[derive(Deserialize)]
struct GeminiContent<'a> {
    #[serde(borrow, default)]
    parts: Vec<GeminiPart<'a>>,
}

#[derive(Deserialize)]
struct GeminiPart<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default, rename = "functionCall")]
    function_call: Option<serde_json::Value>,
}

fn len(s: &Option<Cow<'_, str>>) -> u64 {
    s.as_ref().map_or(0, |s| s.len() as u64)
}

impl DeliveredContent {
    pub fn new(protocol: Protocol) -> Self {
        DeliveredContent {
            lines: SseLines::new(),
            protocol,
            bytes: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let protocol = self.protocol;
        let mut bytes = 0u64;
        self.lines.feed(chunk, |field| {
            if let SseField::Data(data) = field {
                bytes = bytes.saturating_add(content_bytes(protocol, data));
            }
        });
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// Generated content bytes in one `data:` payload.
fn content_bytes(protocol: Protocol, data: &[u8]) -> u64 {
    match protocol {
        Protocol::Anthropic => {
            // Only deltas carry content; everything else is skipped without parsing.
            if memchr::memmem::find(data, b"_delta").is_none() {
                return 0;
            }
            serde_json::from_slice::<AnthropicEvent>(data)
                .ok()
                .and_then(|e| e.delta)
                .map_or(0, |d| {
                    len(&d.text) + len(&d.thinking) + len(&d.partial_json)
                })
        }
        Protocol::OpenAi | Protocol::Gemini => {
            let Ok(e) = serde_json::from_slice::<OpenAiOrGemini>(data) else {
                return 0;
            };
            let chat: u64 = e
                .choices
                .iter()
                .filter_map(|c| c.delta.as_ref())
                .map(|d| {
                    len(&d.content)
                        + len(&d.reasoning_content)
                        + len(&d.reasoning)
                        + d.tool_calls
                            .iter()
                            .filter_map(|t| t.function.as_ref())
                            .map(|f| len(&f.name) + len(&f.arguments))
                            .sum::<u64>()
                })
                .sum();
            let responses = match (&e.kind, &e.delta) {
                (Some(k), Some(serde_json::Value::String(s))) if k.ends_with(".delta") => {
                    s.len() as u64
                }
                _ => 0,
            };
            let gemini: u64 = e
                .candidates
                .iter()
                .filter_map(|c| c.content.as_ref())
                .flat_map(|c| c.parts.iter())
                .map(|p| {
                    len(&p.text)
                        + p.function_call
                            .as_ref()
                            .map_or(0, |f| f.to_string().len() as u64)
                })
                .sum();
            chat + responses + gemini
        }
    }
}

/// The usage billed for a stream cut before its final usage: what the upstream reported so
/// far, with the output raised to the delivered content (one token per byte) but never past
/// the request's output limit, and the input estimated from the prompt when the upstream never
/// said it (OpenAI and Gemini report usage only at the end).
pub fn cut_stream_usage(
    reported: TokenUsage,
    delivered_bytes: u64,
    output_limit: Option<u64>,
    input_estimate: u64,
) -> TokenUsage {
    let mut u = reported;
    let mut output = u.output_tokens.max(delivered_bytes);
    if let Some(limit) = output_limit {
        output = output.min(limit.max(u.output_tokens));
    }
    u.output_tokens = output;
    if u.input_tokens == 0 && u.cache_read_tokens == 0 && u.cache_create_tokens() == 0 {
        u.input_tokens = input_estimate;
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn count(protocol: Protocol, stream: &str, split: usize) -> u64 {
        let mut d = DeliveredContent::new(protocol);
        for c in stream.as_bytes().chunks(split.max(1)) {
            d.feed(c);
        }
        d.bytes
    }

    #[test]
    fn anthropic_text_thinking_and_tool_input() {
        let s = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"abcdef\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"h\\u00e9llo \\\"x\\\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n",
        );
        // "hmm" 3 + "héllo \"x\"" 10 + "{\"a\":1}" 7; the signature is not content.
        for split in [1, 5, 64, s.len()] {
            assert_eq!(count(Protocol::Anthropic, s, split), 20, "split {split}");
        }
    }

    #[test]
    fn openai_chat_responses_and_gemini() {
        let chat = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\",\"reasoning_content\":\"r\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(count(Protocol::OpenAi, chat, 7), 6);
        let responses = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n";
        assert_eq!(count(Protocol::OpenAi, responses, 3), 5);
        let gemini =
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"abc\"}]}}]}\r\n\r\n";
        assert_eq!(count(Protocol::Gemini, gemini, 2), 3);
    }

    #[test]
    fn cut_streams_bill_delivered_bytes_within_the_limit() {
        let reported = TokenUsage {
            input_tokens: 100,
            output_tokens: 1,
            ..Default::default()
        };
        let u = cut_stream_usage(reported, 400, Some(1000), 7);
        assert_eq!((u.input_tokens, u.output_tokens), (100, 400));
        let u = cut_stream_usage(reported, 4000, Some(1000), 7);
        assert_eq!(u.output_tokens, 1000, "capped at the output limit");
        let u = cut_stream_usage(TokenUsage::default(), 30, None, 77);
        assert_eq!((u.input_tokens, u.output_tokens), (77, 30));
    }

    proptest! {
        /// Any text, split anywhere and streamed in any number of deltas: the count is its
        /// UTF-8 length, at least the number of tokens any tokenizer could have made of it.
        #[test]
        fn delivered_bytes_are_the_text_length(
            parts in prop::collection::vec(".{0,40}", 0..20),
            split in 1usize..200,
        ) {
            let mut s = String::new();
            for p in &parts {
                let ev = serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}});
                s.push_str(&format!("event: content_block_delta\ndata: {ev}\n\n"));
            }
            let total: usize = parts.iter().map(String::len).sum();
            prop_assert_eq!(count(Protocol::Anthropic, &s, split), total as u64);
        }
    }
}
