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
