//! What an Anthropic answer says was used: from a JSON body, or tapped from a stream's
//! `message_start` / `message_delta` events while the bytes flow to the client.

use app::domain::TokenUsage;
use serde::Deserialize;

use super::sse::{SseField, SseLines};

#[derive(Debug, Default, Deserialize)]
pub struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation: Option<CacheCreation>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CacheCreation {
    #[serde(default)]
    pub ephemeral_5m_input_tokens: u64,
    #[serde(default)]
    pub ephemeral_1h_input_tokens: u64,
}

impl AnthropicUsage {
    /// Folds these (cumulative) figures into `u`: a field the event carries replaces the old one.
    fn apply(&self, u: &mut TokenUsage) {
        if let Some(v) = self.input_tokens {
            u.input_tokens = v;
        }
        if let Some(v) = self.output_tokens {
            u.output_tokens = v;
        }
        match (&self.cache_creation, self.cache_creation_input_tokens) {
            (Some(cc), _)
                if cc.ephemeral_5m_input_tokens > 0 || cc.ephemeral_1h_input_tokens > 0 =>
            {
                u.cache_create_5m_tokens = cc.ephemeral_5m_input_tokens;
                u.cache_create_1h_tokens = cc.ephemeral_1h_input_tokens;
            }
            // Without the TTL breakdown every cache write counts as a 5-minute write.
            (_, Some(total))
                if total > 0
                    || (u.cache_create_5m_tokens == 0 && u.cache_create_1h_tokens == 0) =>
            {
                u.cache_create_5m_tokens = total;
                u.cache_create_1h_tokens = 0;
            }
            _ => {}
        }
        if let Some(v) = self.cache_read_input_tokens {
            u.cache_read_tokens = v;
        }
    }

    pub fn to_usage(&self) -> TokenUsage {
        let mut u = TokenUsage::default();
        self.apply(&mut u);
        u
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// Usage and model of a non-streamed Messages answer.
pub fn from_json_body(body: &[u8]) -> Option<(TokenUsage, Option<String>)> {
    let b: Body = serde_json::from_slice(body).ok()?;
    Some((b.usage?.to_usage(), b.model))
}

#[derive(Deserialize)]
struct StreamEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<Body>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// Accumulates usage over an Anthropic SSE stream. Several messages in one stream are summed.
#[derive(Default)]
pub struct StreamUsage {
    lines: SseLines,
    done: TokenUsage,
    current: TokenUsage,
    pub model: Option<String>,
    pub saw_usage: bool,
    pub saw_message_stop: bool,
    /// The current message's closing `message_delta` (with its final usage) was seen.
    pub saw_final_delta: bool,
}

/// Saturating: absurd upstream figures must not overflow (a panic in debug builds).
fn add(a: &mut TokenUsage, b: &TokenUsage) {
    a.input_tokens = a.input_tokens.saturating_add(b.input_tokens);
    a.output_tokens = a.output_tokens.saturating_add(b.output_tokens);
    a.cache_create_5m_tokens = a
        .cache_create_5m_tokens
        .saturating_add(b.cache_create_5m_tokens);
    a.cache_create_1h_tokens = a
        .cache_create_1h_tokens
        .saturating_add(b.cache_create_1h_tokens);
    a.cache_read_tokens = a.cache_read_tokens.saturating_add(b.cache_read_tokens);
}

impl StreamUsage {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut events = Vec::new();
        self.lines.feed(chunk, |field| {
            if let SseField::Data(data) = field {
                // Only usage-bearing events are parsed; content deltas are skipped cheaply.
                if memchr::memmem::find(data, b"\"message_").is_some() {
                    if let Ok(ev) = serde_json::from_slice::<StreamEvent>(data) {
                        events.push(ev);
                    }
                }
            }
        });
        for ev in events {
            self.on_event(ev);
        }
    }

    fn on_event(&mut self, ev: StreamEvent) {
        match ev.kind.as_str() {
            "message_start" => {
                self.saw_final_delta = false;
                let current = std::mem::take(&mut self.current);
                add(&mut self.done, &current);
                if let Some(msg) = ev.message {
                    if self.model.is_none() {
                        self.model = msg.model;
                    }
                    if let Some(u) = msg.usage {
                        u.apply(&mut self.current);
                        self.saw_usage = true;
                    }
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    u.apply(&mut self.current);
                    self.saw_usage = true;
                    self.saw_final_delta = true;
                }
            }
            "message_stop" => self.saw_message_stop = true,
            _ => {}
        }
    }

    /// The usage seen so far (all of it once the stream ended).
    pub fn total(&self) -> TokenUsage {
        let mut t = self.done;
        add(&mut t, &self.current);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_with_ttl_breakdown() {
        let body = br#"{"model":"claude-x","usage":{"input_tokens":12,"output_tokens":34,
            "cache_creation_input_tokens":30,"cache_read_input_tokens":7,
            "cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20}}}"#;
        let (u, model) = from_json_body(body).unwrap();
        assert_eq!(model.as_deref(), Some("claude-x"));
        assert_eq!(
            u,
            TokenUsage {
                input_tokens: 12,
                output_tokens: 34,
                cache_create_5m_tokens: 10,
                cache_create_1h_tokens: 20,
                cache_read_tokens: 7
            }
        );
        let (u, _) =
            from_json_body(br#"{"usage":{"input_tokens":1,"cache_creation_input_tokens":9}}"#)
                .unwrap();
        assert_eq!(u.cache_create_5m_tokens, 9);
        assert!(from_json_body(b"not json").is_none());
    }

    #[test]
    fn stream_usage_from_start_and_delta_split_anywhere() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi \\\"message_start\\\"\"}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}\n\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        for split in [1usize, 7, 64, stream.len()] {
            let mut tap = StreamUsage::default();
            for chunk in stream.as_bytes().chunks(split) {
                tap.feed(chunk);
            }
            let u = tap.total();
            assert_eq!(
                (u.input_tokens, u.output_tokens, u.cache_read_tokens),
                (25, 42, 5),
                "split {split}"
            );
            assert_eq!(tap.model.as_deref(), Some("claude-x"));
            assert!(tap.saw_message_stop);
        }
    }

    #[test]
    fn two_messages_in_one_stream_are_summed() {
        let mut tap = StreamUsage::default();
        for _ in 0..2 {
            tap.feed(b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n");
            tap.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n");
        }
        assert_eq!(tap.total().input_tokens, 20);
        assert_eq!(tap.total().output_tokens, 10);
    }
}

/// Usage in the OpenAI (Chat Completions, Responses) and Gemini shapes, from a body or a
/// stream event. Cached input is counted once, as a cache read, never again as input.
pub fn from_openai_or_gemini(v: &serde_json::Value) -> Option<(TokenUsage, Option<String>)> {
    use serde_json::Value;
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    // Responses streams wrap the final response: {"type":"response.completed","response":{…}}.
    let v = v
        .get("response")
        .filter(|r| r.get("usage").is_some())
        .unwrap_or(v);
    let model = v
        .get("model")
        .or_else(|| v.get("modelVersion"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(m) = v.get("usageMetadata").filter(|m| m.is_object()) {
        let cached = n(m, "cachedContentTokenCount");
        return Some((
            TokenUsage {
                input_tokens: n(m, "promptTokenCount").saturating_sub(cached),
                output_tokens: n(m, "candidatesTokenCount")
                    .saturating_add(n(m, "thoughtsTokenCount")),
                cache_read_tokens: cached,
                ..Default::default()
            },
            model,
        ));
    }
    let u = v.get("usage").filter(|u| u.is_object())?;
    if u.get("prompt_tokens").is_some() {
        let cached = u
            .get("prompt_tokens_details")
            .map(|d| n(d, "cached_tokens"))
            .unwrap_or(0);
        return Some((
            TokenUsage {
                input_tokens: n(u, "prompt_tokens").saturating_sub(cached),
                output_tokens: n(u, "completion_tokens"),
                cache_read_tokens: cached,
                ..Default::default()
            },
            model,
        ));
    }
    let cached = u
        .get("input_tokens_details")
        .map(|d| n(d, "cached_tokens"))
        .unwrap_or(0);
    Some((
        TokenUsage {
            input_tokens: n(u, "input_tokens").saturating_sub(cached),
            output_tokens: n(u, "output_tokens"),
            cache_read_tokens: cached,
            ..Default::default()
        },
        model,
    ))
}

/// The usage of an OpenAI or Gemini stream: the last usage any event reported (these
/// protocols report cumulative figures, usually once at the end).
#[derive(Default)]
pub struct LastUsage {
    lines: SseLines,
    pub usage: Option<TokenUsage>,
    pub model: Option<String>,
    pub saw_end: bool,
}

impl LastUsage {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut found = Vec::new();
        let mut end = false;
        self.lines.feed(chunk, |field| {
            if let SseField::Data(data) = field {
                if data == b"[DONE]" {
                    end = true;
                } else if memchr::memmem::find(data, b"sage").is_some() {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
                        if v.get("type").and_then(|t| t.as_str()) == Some("response.completed") {
                            end = true;
                        }
                        if let Some(u) = from_openai_or_gemini(&v) {
                            found.push(u);
                        }
                    }
                }
            }
        });
        self.saw_end |= end;
        if let Some((usage, model)) = found.pop() {
            self.usage = Some(usage);
            if model.is_some() {
                self.model = model;
            }
        }
    }
}

#[cfg(test)]
mod other_protocols {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_chat_responses_and_gemini_usage() {
        let chat = json!({"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40}}});
        let (u, m) = from_openai_or_gemini(&chat).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.output_tokens,
                m.as_deref()
            ),
            (60, 40, 7, Some("gpt-4o"))
        );
        let responses = json!({"type": "response.completed", "response": {"model": "gpt-5", "usage": {"input_tokens": 55, "input_tokens_details": {"cached_tokens": 30}, "output_tokens": 12}}});
        let (u, m) = from_openai_or_gemini(&responses).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.output_tokens,
                m.as_deref()
            ),
            (25, 30, 12, Some("gpt-5"))
        );
        let gemini = json!({"modelVersion": "gemini-2.5-pro", "usageMetadata": {"promptTokenCount": 55, "cachedContentTokenCount": 30, "candidatesTokenCount": 12, "thoughtsTokenCount": 3}});
        let (u, m) = from_openai_or_gemini(&gemini).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.output_tokens,
                m.as_deref()
            ),
            (25, 30, 15, Some("gemini-2.5-pro"))
        );
        assert!(from_openai_or_gemini(&json!({"choices": []})).is_none());
    }

    #[test]
    fn stream_taps_split_anywhere() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"h\u{e9}llo\"}}]}\r\n\r\ndata: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\r\n\r\ndata: [DONE]\r\n\r\n";
        for split in [1, 3, 17, stream.len()] {
            let mut tap = LastUsage::default();
            for c in stream.as_bytes().chunks(split) {
                tap.feed(c);
            }
            let u = tap.usage.unwrap();
            assert_eq!((u.input_tokens, u.output_tokens), (9, 3), "split {split}");
            assert!(tap.saw_end);
        }
    }
}

/// Properties of the usage taps over arbitrary input and arbitrary chunking.
/// `PROPTEST_CASES=100000 cargo test -p server --lib proptests` runs them longer.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::relay::{
        sse::MAX_LINE,
        test_strategies::{chunks, json},
    };
    use proptest::prelude::*;
    use serde_json::json;

    #[derive(Debug, Clone)]
    struct Msg {
        input: u32,
        cache_read: u32,
        cache_5m: u32,
        cache_1h: u32,
        first_output: u32,
        deltas: Vec<u32>,
        text: String,
    }

    fn msg() -> impl Strategy<Value = Msg> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u32>(), 0..3),
            ".{0,24}",
        )
            .prop_map(
                |(input, cache_read, cache_5m, cache_1h, first_output, deltas, text)| Msg {
                    input,
                    cache_read,
                    cache_5m,
                    cache_1h,
                    first_output,
                    deltas,
                    text,
                },
            )
    }

    /// A well-formed Anthropic stream of `msgs` and the usage it must add up to.
    fn anthropic_stream(msgs: &[Msg], crlf: bool) -> (Vec<u8>, TokenUsage) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        let mut want = TokenUsage::default();
        let mut ev = |name: &str, v: serde_json::Value| {
            out.push_str(&format!("event: {name}{nl}data: {v}{nl}{nl}"));
        };
        for m in msgs {
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"model": "claude-x", "usage": {
                "input_tokens": m.input, "cache_read_input_tokens": m.cache_read,
                "cache_creation_input_tokens": u64::from(m.cache_5m) + u64::from(m.cache_1h),
                "cache_creation": {"ephemeral_5m_input_tokens": m.cache_5m, "ephemeral_1h_input_tokens": m.cache_1h},
                "output_tokens": m.first_output}}}),
            );
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": m.text}}),
            );
            for d in &m.deltas {
                ev(
                    "message_delta",
                    json!({"type": "message_delta", "usage": {"output_tokens": d}}),
                );
            }
            let output = m.deltas.last().copied().unwrap_or(m.first_output);
            let split = m.cache_5m > 0 || m.cache_1h > 0;
            add(
                &mut want,
                &TokenUsage {
                    input_tokens: m.input.into(),
                    output_tokens: output.into(),
                    cache_create_5m_tokens: if split { m.cache_5m.into() } else { 0 },
                    cache_create_1h_tokens: if split { m.cache_1h.into() } else { 0 },
                    cache_read_tokens: m.cache_read.into(),
                },
            );
        }
        ev("message_stop", json!({"type": "message_stop"}));
        (out.into_bytes(), want)
    }

    fn tap(chunks: &[&[u8]]) -> StreamUsage {
        let mut t = StreamUsage::default();
        for c in chunks {
            t.feed(c);
        }
        t
    }

    /// A `data:` line holding `v`, prefixed so the tap's cheap filters let it through.
    fn data_line(v: &serde_json::Value) -> Vec<u8> {
        format!("data: {v}\n\n").into_bytes()
    }

    proptest! {
        #![proptest_config(crate::relay::test_strategies::config(256))]

        /// A valid stream cut at any bytes gives the same usage as whole, and the right one.
        #[test]
        fn anthropic_stream_cut_anywhere(
            msgs in proptest::collection::vec(msg(), 1..3),
            crlf in any::<bool>(),
            raw_cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let (bytes, want) = anthropic_stream(&msgs, crlf);
            let whole = tap(&[&bytes]);
            let cut = tap(&chunks(&bytes, &raw_cuts));
            prop_assert_eq!(whole.total(), want);
            prop_assert_eq!(cut.total(), want);
            prop_assert_eq!(cut.model.as_deref(), Some("claude-x"));
            prop_assert!(cut.saw_message_stop && cut.saw_usage);
        }

        /// Arbitrary JSON in Anthropic events (huge numbers included) never panics.
        #[test]
        fn anthropic_arbitrary_events(
            events in proptest::collection::vec(
                (proptest::sample::select(&["message_start", "message_delta", "message_stop", "x"][..]), json(), json()),
                0..6,
            ),
        ) {
            let mut t = StreamUsage::default();
            for (kind, usage, message) in events {
                t.feed(&data_line(&json!({"type": kind, "usage": usage, "message": message})));
                t.feed(&data_line(&json!({"type": kind, "usage": usage, "message": {"usage": usage, "model": message}})));
                t.feed(&data_line(&usage));
            }
            let _ = t.total();
        }

        /// Arbitrary bytes never panic either tap; arbitrary bodies never panic the body parsers.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            StreamUsage::default().feed(&bytes);
            LastUsage::default().feed(&bytes);
            let _ = from_json_body(&bytes);
        }

        #[test]
        fn openai_and_gemini_arbitrary_json(v in json()) {
            let _ = from_openai_or_gemini(&v);
            let _ = from_openai_or_gemini(&json!({"usage": v}));
            let _ = from_openai_or_gemini(&json!({"usageMetadata": v}));
            let _ = from_openai_or_gemini(&json!({"response": {"usage": v}}));
            let mut t = LastUsage::default();
            t.feed(&data_line(&json!({"usage": v})));
            t.feed(&data_line(&json!({"usageMetadata": v, "modelVersion": v})));
            let _ = from_json_body(v.to_string().as_bytes());
        }

        /// OpenAI and Gemini streams: cut anywhere, the last usage reported is the same.
        #[test]
        fn last_usage_cut_anywhere(
            prompt in any::<u32>(), completion in any::<u32>(), cached in any::<u32>(),
            texts in proptest::collection::vec(".{0,16}", 0..4),
            gemini in any::<bool>(),
            raw_cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut s = String::new();
            for t in &texts {
                s.push_str(&format!("data: {}\r\n\r\n", json!({"choices": [{"delta": {"content": t}}]})));
            }
            let last = if gemini {
                json!({"modelVersion": "g", "usageMetadata": {"promptTokenCount": u64::from(prompt) + u64::from(cached), "cachedContentTokenCount": cached, "candidatesTokenCount": completion}})
            } else {
                json!({"model": "g", "choices": [], "usage": {"prompt_tokens": u64::from(prompt) + u64::from(cached), "completion_tokens": completion, "prompt_tokens_details": {"cached_tokens": cached}}})
            };
            s.push_str(&format!("data: {last}\r\n\r\ndata: [DONE]\r\n\r\n"));
            let mut t = LastUsage::default();
            for c in chunks(s.as_bytes(), &raw_cuts) {
                t.feed(c);
            }
            let u = t.usage.expect("usage");
            prop_assert_eq!((u.input_tokens, u.output_tokens, u.cache_read_tokens), (u64::from(prompt), u64::from(completion), u64::from(cached)));
            prop_assert_eq!(t.model.as_deref(), Some("g"));
            prop_assert!(t.saw_end);
        }
    }

    /// Found by the properties: huge figures overflowed the sums (a panic in debug builds).
    #[test]
    fn huge_figures_saturate() {
        let mut t = StreamUsage::default();
        for _ in 0..2 {
            t.feed(format!("data: {}\n", json!({"type": "message_start", "message": {"usage": {
                "input_tokens": u64::MAX, "cache_creation": {"ephemeral_5m_input_tokens": u64::MAX, "ephemeral_1h_input_tokens": u64::MAX}}}})).as_bytes());
            t.feed(
                format!(
                    "data: {}\n",
                    json!({"type": "message_delta", "usage": {"cache_creation_input_tokens": 0}})
                )
                .as_bytes(),
            );
        }
        assert_eq!(t.total().input_tokens, u64::MAX);
        let (u, _) = from_openai_or_gemini(
            &json!({"usageMetadata": {"candidatesTokenCount": u64::MAX, "thoughtsTokenCount": 1}}),
        )
        .unwrap();
        assert_eq!(u.output_tokens, u64::MAX);
    }

    /// 64 MiB of one `data:` line with no newline: both taps hold at most one capped line, and
    /// the usage after it still counts.
    #[test]
    fn sixty_four_mib_line_is_not_buffered() {
        let block = vec![b'7'; 1 << 20];
        let mut a = StreamUsage::default();
        let mut o = LastUsage::default();
        a.feed(b"data: {\"type\":\"message_start\",\"usage\":");
        o.feed(b"data: {\"usage\":");
        for _ in 0..64 {
            a.feed(&block);
            o.feed(&block);
            for (len, cap) in [a.lines.buffered(), o.lines.buffered()] {
                assert!(
                    len <= MAX_LINE && cap <= 2 * MAX_LINE,
                    "len {len} cap {cap}"
                );
            }
        }
        a.feed(
            b"\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n",
        );
        o.feed(b"\ndata: {\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n");
        assert_eq!(a.total().input_tokens, 3);
        assert_eq!(o.usage.unwrap().input_tokens, 4);
    }
}
