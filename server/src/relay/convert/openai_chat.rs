//! OpenAI Chat Completions in, Anthropic Messages out — and the answer back: JSON bodies,
//! SSE streams (event by event, as they arrive) and errors. System messages are kept.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{stream::BoxStream, Stream};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::relay::sse::{SseField, SseLines};

#[derive(Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

#[derive(Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub function: FunctionCall,
}

#[derive(Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Deserialize)]
pub struct Tool {
    pub function: FunctionDef,
}

#[derive(Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An OpenAI content value as Anthropic content blocks (text and images).
fn blocks(content: &Value) -> Result<Vec<Value>, String> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or_default()})),
                Some("image_url") => {
                    let url = p
                        .get("image_url")
                        .and_then(|i| i.get("url").or(Some(i)))
                        .and_then(Value::as_str)
                        .ok_or("image_url.url is required")?;
                    Ok(image(url))
                }
                other => Err(format!("unsupported content part type {other:?}")),
            })
            .collect(),
        _ => Err("content must be a string or a list of parts".into()),
    }
}

fn image(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            let media_type = meta.split(';').next().unwrap_or("image/png");
            return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
        }
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

/// The Anthropic Messages body for a Chat Completions request.
pub fn to_anthropic(req: &ChatRequest) -> Result<Value, String> {
    if req.messages.is_empty() {
        return Err("messages: a non-empty array is required".into());
    }
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut push = |role: &str, content: Vec<Value>| {
        if content.is_empty() {
            return;
        }
        // Anthropic alternates roles: consecutive turns of one role are merged.
        if let Some(last) = messages.last_mut().filter(|m| m["role"] == role) {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.extend(content);
                return;
            }
        }
        messages.push(json!({"role": role, "content": content}));
    };
    for m in &req.messages {
        let content = m.content.clone().unwrap_or(Value::Null);
        match m.role.as_str() {
            "system" | "developer" => system.push(text_of(&content)),
            "user" => push("user", blocks(&content)?),
            "assistant" => {
                let mut b = blocks(&content)?;
                for call in m.tool_calls.iter().flatten() {
                    let input: Value = if call.function.arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&call.function.arguments).map_err(|_| {
                            format!("tool call {} has arguments that are not JSON", call.id)
                        })?
                    };
                    b.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
                }
                push("assistant", b);
            }
            "tool" => {
                let id = m
                    .tool_call_id
                    .clone()
                    .ok_or("tool messages need tool_call_id")?;
                push(
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": id, "content": text_of(&content)}),
                    ],
                );
            }
            other => return Err(format!("unsupported message role {other:?}")),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert(
        "max_tokens".into(),
        json!(req
            .max_completion_tokens
            .or(req.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    let system = system
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    if !system.is_empty() {
        body.insert("system".into(), json!(system));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    match &req.stop {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) => {
            body.insert("stop_sequences".into(), Value::Array(list.clone()));
        }
        _ => {}
    }
    if req.stream == Some(true) {
        body.insert("stream".into(), json!(true));
    }
    if let Some(tools) = &req.tools {
        let converted: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"name": t.function.name, "description": t.function.description.clone().unwrap_or_default(),
                       "input_schema": t.function.parameters.clone().unwrap_or(json!({"type": "object", "properties": {}}))})
            })
            .collect();
        body.insert("tools".into(), Value::Array(converted));
    }
    match &req.tool_choice {
        Some(Value::String(s)) if s == "auto" => {
            body.insert("tool_choice".into(), json!({"type": "auto"}));
        }
        Some(Value::String(s)) if s == "required" => {
            body.insert("tool_choice".into(), json!({"type": "any"}));
        }
        Some(Value::String(s)) if s == "none" => {
            body.insert("tool_choice".into(), json!({"type": "none"}));
        }
        Some(Value::Object(o)) => {
            if let Some(name) = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
            {
                body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
            }
        }
        _ => {}
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(body))
}

pub fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn") | Some("stop_sequence") => json!("stop"),
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// OpenAI usage from Anthropic usage: the prompt includes cached and cache-written tokens.
fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    // Saturating: absurd upstream figures must not overflow (a panic in debug builds).
    let prompt = n("input_tokens")
        .saturating_add(cached)
        .saturating_add(n("cache_creation_input_tokens"));
    let completion = n("output_tokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion),
           "prompt_tokens_details": {"cached_tokens": cached}})
}

/// A chat.completion for an Anthropic message.
pub fn from_anthropic(msg: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    json!({
        "id": format!("chatcmpl-{}", msg["id"].as_str().unwrap_or("relay")),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": msg["model"].as_str().unwrap_or(model),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(msg["stop_reason"].as_str())}],
        "usage": usage(&msg["usage"]),
    })
}

/// An Anthropic error body in OpenAI's shape.
pub fn error_from_anthropic(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["error"]["message"].as_str().unwrap_or("upstream error");
    let kind = v["error"]["type"].as_str().unwrap_or("api_error");
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// Anthropic SSE in, OpenAI chat.completion.chunk SSE out, event by event.
pub struct ChunkStream {
    inner: BoxStream<'static, Result<Bytes, axum::Error>>,
    lines: SseLines,
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    /// Index of each Anthropic content block that is a tool call, in call order.
    tool_index: std::collections::HashMap<u64, usize>,
    usage: Value,
    done: bool,
}

impl ChunkStream {
    pub fn new(
        inner: BoxStream<'static, Result<Bytes, axum::Error>>,
        model: &str,
        include_usage: bool,
    ) -> Self {
        ChunkStream {
            inner,
            lines: SseLines::new(),
            id: "chatcmpl-relay".into(),
            model: model.to_string(),
            created: chrono::Utc::now().timestamp(),
            include_usage,
            tool_index: Default::default(),
            usage: json!({}),
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    /// The OpenAI chunks for one Anthropic event.
    pub fn convert(&mut self, event: &Value) -> String {
        match event["type"].as_str() {
            Some("message_start") => {
                let m = &event["message"];
                if let Some(id) = m["id"].as_str() {
                    self.id = format!("chatcmpl-{id}");
                }
                if let Some(model) = m["model"].as_str() {
                    self.model = model.to_string();
                }
                self.usage = m["usage"].clone();
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            Some("content_block_start") if event["content_block"]["type"] == "tool_use" => {
                let index = self.tool_index.len();
                self.tool_index
                    .insert(event["index"].as_u64().unwrap_or(0), index);
                let b = &event["content_block"];
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": ""}}]}),
                    Value::Null,
                )
            }
            Some("content_block_delta") => {
                let d = &event["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => self.chunk(json!({"content": d["text"]}), Value::Null),
                    Some("input_json_delta") => {
                        let index = self
                            .tool_index
                            .get(&event["index"].as_u64().unwrap_or(0))
                            .copied()
                            .unwrap_or(0);
                        self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": d["partial_json"]}}]}), Value::Null)
                    }
                    _ => String::new(),
                }
            }
            Some("message_delta") => {
                if let Some(u) = event["usage"].as_object() {
                    // A `message_start` whose usage was not an object must not make this panic.
                    if !self.usage.is_object() {
                        self.usage = json!({});
                    }
                    for (k, v) in u {
                        self.usage[k] = v.clone();
                    }
                }
                self.chunk(
                    json!({}),
                    finish_reason(event["delta"]["stop_reason"].as_str()),
                )
            }
            Some("message_stop") => {
                let mut out = String::new();
                if self.include_usage {
                    let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                   "model": self.model, "choices": [], "usage": usage(&self.usage)});
                    out.push_str(&format!("data: {c}\n\n"));
                }
                out.push_str("data: [DONE]\n\n");
                self.done = true;
                out
            }
            Some("error") => {
                let e = json!({"error": {"message": event["error"]["message"], "type": event["error"]["type"]}});
                format!("data: {e}\n\n")
            }
            _ => String::new(),
        }
    }

    fn convert_chunk(&mut self, chunk: &[u8]) -> String {
        let mut events = Vec::new();
        self.lines.feed(chunk, |field| {
            if let SseField::Data(data) = field {
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    events.push(v);
                }
            }
        });
        events.iter().map(|e| self.convert(e)).collect()
    }
}

impl Stream for ChunkStream {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = self.convert_chunk(&chunk);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    if !self.done {
                        // The upstream stream ended early: still close the client's stream properly.
                        self.done = true;
                        return Poll::Ready(Some(Ok(Bytes::from_static(b"data: [DONE]\n\n"))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// Properties of the conversion over arbitrary input and arbitrary chunking.
/// `PROPTEST_CASES=100000 cargo test -p server --lib proptests` runs them longer.
#[cfg(test)]
mod proptests;
