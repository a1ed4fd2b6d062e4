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
mod other_protocols;

/// Properties of the usage taps over arbitrary input and arbitrary chunking.
/// `PROPTEST_CASES=100000 cargo test -p server --lib proptests` runs them longer.
#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests;
