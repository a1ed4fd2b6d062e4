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
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn request_keeps_system_tools_images_and_stops() {
        let r = req(json!({
            "model": "claude-sonnet-4-5", "max_tokens": 100, "stop": "END", "stream": true,
            "messages": [
                {"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "found"},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        }));
        let a = to_anthropic(&r).unwrap();
        assert_eq!(a["system"], "Answer in JSON.");
        assert_eq!(a["max_tokens"], 100);
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert_eq!(a["stream"], true);
        assert_eq!(a["tool_choice"], json!({"type": "any"}));
        assert_eq!(a["tools"][0]["input_schema"], json!({"type": "object"}));
        let m = a["messages"].as_array().unwrap();
        assert_eq!(
            m.len(),
            3,
            "tool result and the next user turn merge: {m:?}"
        );
        assert_eq!(
            m[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            m[1]["content"][0],
            json!({"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": 1}})
        );
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][1]["text"], "thanks");
        assert!(to_anthropic(&req(json!({"model": "m", "messages": []}))).is_err());
        assert!(to_anthropic(&req(
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})
        ))
        .is_err());
    }

    #[test]
    fn response_and_usage() {
        let msg = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": 2}}],
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 2}});
        let c = from_anthropic(&msg, "claude-x");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"q\":2}"
        );
        assert_eq!(
            c["usage"],
            json!({"prompt_tokens": 42, "completion_tokens": 5, "total_tokens": 47, "prompt_tokens_details": {"cached_tokens": 30}})
        );
    }

    /// A real-shaped Anthropic stream: a tool call split across deltas, multi-byte UTF-8 split
    /// between network chunks, CRLF line ends, several events in one chunk.
    #[test]
    fn stream_converts_event_by_event_however_it_is_cut() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_9", "model": "claude-x", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo 🌍"}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let raw: String = events
            .iter()
            .map(|e| {
                format!(
                    "event: {}\r\ndata: {}\r\n\r\n",
                    e["type"].as_str().unwrap(),
                    e
                )
            })
            .collect();
        for split in [1, 2, 5, 64, raw.len()] {
            let mut s = ChunkStream::new(futures_util::stream::empty().boxed(), "claude-x", true);
            let out: String = raw
                .as_bytes()
                .chunks(split)
                .map(|c| s.convert_chunk(c))
                .collect();
            let datas: Vec<&str> = out
                .split("\n\n")
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            assert_eq!(*datas.last().unwrap(), "[DONE]", "split {split}");
            let chunks: Vec<Value> = datas
                .iter()
                .filter(|d| **d != "[DONE]")
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(text, "héllo 🌍", "split {split}");
            let args: String = chunks
                .iter()
                .filter_map(|c| {
                    c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
                })
                .collect();
            assert_eq!(args, "{\"a\":1}");
            assert!(chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
            let usage = chunks.iter().find(|c| c.get("usage").is_some()).unwrap();
            assert_eq!(usage["usage"]["completion_tokens"], 9);
            assert_eq!(usage["usage"]["prompt_tokens"], 7);
            assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-msg_9"));
        }
    }
}

/// Properties of the conversion over arbitrary input and arbitrary chunking.
/// `PROPTEST_CASES=100000 cargo test -p server --lib proptests` runs them longer.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::relay::test_strategies::{chunks, json};
    use futures_util::StreamExt;
    use proptest::prelude::*;

    fn stream() -> ChunkStream {
        let mut s = ChunkStream::new(futures_util::stream::empty().boxed(), "claude-x", true);
        s.created = 0;
        s
    }

    /// A chat request: valid-looking roles and parts, arbitrary values where the protocol
    /// leaves room.
    fn chat_request() -> impl Strategy<Value = Value> {
        let content = prop_oneof![
            Just(Value::Null),
            ".{0,12}".prop_map(Value::from),
            proptest::collection::vec(
                prop_oneof![
                    ".{0,8}".prop_map(|t| json!({"type": "text", "text": t})),
                    ".{0,8}".prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
                    Just(json!({"type": "image_url", "image_url": "data:image/png;base64,AAAA"})),
                    json(),
                ],
                0..3
            )
            .prop_map(Value::Array),
            json(),
        ];
        let message = (
            proptest::sample::select(
                &["system", "developer", "user", "assistant", "tool", "x"][..],
            ),
            content,
            proptest::option::of(proptest::collection::vec(
                (".{0,4}", ".{0,4}", prop_oneof![Just(String::new()), Just("{\"a\":1}".to_string()), ".{0,8}"]),
                0..2,
            )),
            proptest::option::of(".{0,6}"),
        )
            .prop_map(|(role, content, calls, tool_call_id)| {
                let mut m = json!({"role": role, "content": content});
                if let Some(calls) = calls {
                    m["tool_calls"] = calls
                        .into_iter()
                        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                        .collect();
                }
                if let Some(id) = tool_call_id {
                    m["tool_call_id"] = json!(id);
                }
                m
            });
        (
            proptest::collection::vec(message, 0..5),
            proptest::option::of(any::<u64>()),
            proptest::option::of(-1e9f64..1e9),
            json(),
            json(),
            proptest::option::of(proptest::collection::vec((".{0,4}", json()), 0..2)),
            any::<bool>(),
        )
            .prop_map(|(messages, max_tokens, temperature, stop, tool_choice, tools, stream)| {
                let mut r = json!({"model": "m", "messages": messages, "stop": stop,
                                   "tool_choice": tool_choice, "stream": stream, "user": "u"});
                if let Some(t) = max_tokens {
                    r["max_tokens"] = json!(t);
                }
                if let Some(t) = temperature {
                    r["temperature"] = json!(t);
                }
                if let Some(tools) = tools {
                    r["tools"] = tools
                        .into_iter()
                        .map(|(name, params)| json!({"type": "function", "function": {"name": name, "parameters": params}}))
                        .collect();
                }
                r
            })
    }

    /// A valid Anthropic stream: text, tool calls, a stop reason and usage.
    fn anthropic_stream() -> impl Strategy<Value = Vec<Value>> {
        (
            proptest::collection::vec(
                prop_oneof![
                    ".{0,12}".prop_map(|t| (false, t)),
                    ".{0,12}".prop_map(|t| (true, t)),
                ],
                0..5,
            ),
            any::<u32>(),
            any::<u32>(),
            proptest::sample::select(&["end_turn", "max_tokens", "tool_use", "stop_sequence"][..]),
        )
            .prop_map(|(blocks, input, output, stop)| {
                let mut events = vec![json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": input, "output_tokens": 1}}})];
                for (i, (tool, text)) in blocks.into_iter().enumerate() {
                    if tool {
                        events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": format!("t{i}"), "name": "f"}}));
                        events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": text}}));
                    } else {
                        events.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
                        events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}));
                    }
                    events.push(json!({"type": "content_block_stop", "index": i}));
                }
                events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": output}}));
                events.push(json!({"type": "message_stop"}));
                events
            })
    }

    /// Found by the properties: a non-object `usage` in `message_start` made the next
    /// `message_delta` panic, and huge figures overflowed the OpenAI usage sums.
    #[test]
    fn odd_usage_does_not_panic() {
        let mut s = stream();
        s.convert(&json!({"type": "message_start", "message": {"usage": 5}}));
        s.convert(&json!({"type": "message_delta", "usage": {"output_tokens": u64::MAX}}));
        s.convert(&json!({"type": "message_delta", "usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX}}));
        let out = s.convert(&json!({"type": "message_stop"}));
        assert!(
            out.contains(&format!("\"total_tokens\":{}", u64::MAX)),
            "{out}"
        );
    }

    proptest! {
        #![proptest_config(crate::relay::test_strategies::config(256))]

        /// Any request body: parsing and conversion never panic, and a converted body is an
        /// Anthropic request with the model, messages and max_tokens.
        #[test]
        fn request_conversion_never_panics(body in prop_oneof![chat_request(), json()]) {
            if let Ok(req) = serde_json::from_value::<ChatRequest>(body) {
                if let Ok(out) = to_anthropic(&req) {
                    prop_assert_eq!(&out["model"], &json!(req.model));
                    prop_assert!(out["messages"].is_array());
                    prop_assert!(out["max_tokens"].is_u64());
                }
            }
        }

        /// Any Anthropic answer or error body converts without a panic.
        #[test]
        fn response_and_error_conversion_never_panic(msg in json(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let c = from_anthropic(&msg, "m");
            prop_assert_eq!(&c["object"], "chat.completion");
            let _ = from_anthropic(&json!({"content": msg, "usage": msg}), "m");
            let _ = error_from_anthropic(msg.to_string().as_bytes());
            let _ = error_from_anthropic(&bytes);
        }

        /// Arbitrary events, in any order, never panic the stream converter.
        #[test]
        fn arbitrary_stream_events(
            events in proptest::collection::vec(
                (proptest::sample::select(&["message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop", "error", "x"][..]), json()),
                0..8,
            ),
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut s = stream();
            for (kind, v) in &events {
                let _ = s.convert(&json!({"type": kind, "message": v, "usage": v, "delta": v, "content_block": v, "index": v, "error": v}));
                let _ = s.convert(v);
            }
            let _ = s.convert_chunk(&bytes);
        }

        /// A valid stream cut at any bytes converts to exactly what it converts to whole.
        #[test]
        fn stream_cut_anywhere_is_the_same(
            events in anthropic_stream(),
            crlf in any::<bool>(),
            raw_cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let raw: String = events
                .iter()
                .map(|e| format!("event: {}{nl}data: {e}{nl}{nl}", e["type"].as_str().unwrap()))
                .collect();
            let whole = stream().convert_chunk(raw.as_bytes());
            let mut s = stream();
            let cut: String = chunks(raw.as_bytes(), &raw_cuts).into_iter().map(|c| s.convert_chunk(c)).collect();
            prop_assert_eq!(&cut, &whole);
            prop_assert!(whole.ends_with("data: [DONE]\n\n"));
        }
    }
}
