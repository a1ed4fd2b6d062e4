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
            (Some(cc), _) if cc.ephemeral_5m_input_tokens + cc.ephemeral_1h_input_tokens > 0 => {
                u.cache_create_5m_tokens = cc.ephemeral_5m_input_tokens;
                u.cache_create_1h_tokens = cc.ephemeral_1h_input_tokens;
            }
            // Without the TTL breakdown every cache write counts as a 5-minute write.
            (_, Some(total)) if total > 0 || u.cache_create_tokens() == 0 => {
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
}

fn add(a: &mut TokenUsage, b: &TokenUsage) {
    a.input_tokens += b.input_tokens;
    a.output_tokens += b.output_tokens;
    a.cache_create_5m_tokens += b.cache_create_5m_tokens;
    a.cache_create_1h_tokens += b.cache_create_1h_tokens;
    a.cache_read_tokens += b.cache_read_tokens;
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
                output_tokens: n(m, "candidatesTokenCount") + n(m, "thoughtsTokenCount"),
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
