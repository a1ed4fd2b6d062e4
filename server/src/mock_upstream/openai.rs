//! OpenAI Chat Completions and Responses (also served on Azure OpenAI's and Gemini's
//! OpenAI-compatible paths).

use std::{collections::VecDeque, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{
    errors::{failure, openai_error, quoting_error, Shape},
    remember,
    scenario::{behaviour, drip, output_tokens, reply_parts, requested_model, Behaviour},
    stream::{sse, Frame},
    Shared, CACHE_READ_TOKENS, INPUT_TOKENS, REPLY,
};

pub(super) async fn chat_completions(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(Shape::OpenAi, code, &body, None);
    }
    if let Some(resp) = failure(&b, openai_error).await {
        return resp;
    }
    let (model, stream) = requested_model(&body);
    let out = output_tokens(s, uri.path(), &body);
    let usage = json!({"prompt_tokens": INPUT_TOKENS + CACHE_READ_TOKENS, "completion_tokens": out,
        "total_tokens": INPUT_TOKENS + CACHE_READ_TOKENS + out, "prompt_tokens_details": {"cached_tokens": CACHE_READ_TOKENS}});
    let id = format!("chatcmpl-mock{:x}", rand::random::<u32>());
    if !stream {
        return Json(json!({"id": id, "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY.concat()}, "finish_reason": "stop"}],
            "usage": usage})).into_response();
    }
    // OpenAI streams usage only when asked, and then `"usage": null` in every other chunk.
    let include_usage = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["stream_options"]["include_usage"].as_bool())
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut frames: VecDeque<Frame> = VecDeque::new();
    let data = |v: Value| Frame::Bytes(Bytes::from(format!("data: {v}\n\n")));
    frames.push_back(data(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )));
    for part in reply_parts(s, uri.path()) {
        frames.push_back(data(chunk(json!({"content": part}), Value::Null)));
    }
    frames.push_back(data(chunk(json!({}), json!("stop"))));
    if include_usage {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage;
        frames.push_back(data(last));
    }
    frames.push_back(Frame::Bytes(Bytes::from_static(b"data: [DONE]\n\n")));
    let delay = drip(&b);
    if matches!(b, Behaviour::Reset) {
        frames.truncate(3);
        frames.push_back(Frame::Pause(Duration::from_millis(50)));
        frames.push_back(Frame::Reset);
    }
    sse(log, frames, delay)
}

pub(super) async fn responses(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(Shape::OpenAi, code, &body, None);
    }
    if let Some(resp) = failure(&b, openai_error).await {
        return resp;
    }
    let (model, stream) = requested_model(&body);
    let out = output_tokens(s, uri.path(), &body);
    let parts = reply_parts(s, uri.path());
    let id = format!("resp_mock{:x}", rand::random::<u32>());
    let response = json!({"id": id, "object": "response", "created_at": 1_700_000_000, "status": "completed", "model": model,
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": parts.concat(), "annotations": []}]}],
        "usage": {"input_tokens": INPUT_TOKENS + CACHE_READ_TOKENS, "input_tokens_details": {"cached_tokens": CACHE_READ_TOKENS},
            "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + CACHE_READ_TOKENS + out}});
    if !stream {
        return Json(response).into_response();
    }
    let mut in_progress = response.clone();
    in_progress["status"] = json!("in_progress");
    in_progress["output"] = json!([]);
    in_progress["usage"] = Value::Null;
    let message = response["output"][0].clone();
    let mut empty_message = message.clone();
    empty_message["status"] = json!("in_progress");
    empty_message["content"] = json!([]);
    let mut frames = VecDeque::new();
    let mut seq = 0u64;
    let mut ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        Frame::Bytes(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
    };
    // The event sequence of the real Responses API.
    frames.push_back(ev(
        "response.created",
        json!({"response": in_progress.clone()}),
    ));
    frames.push_back(ev("response.in_progress", json!({"response": in_progress})));
    frames.push_back(ev(
        "response.output_item.added",
        json!({"output_index": 0, "item": empty_message}),
    ));
    frames.push_back(ev("response.content_part.added", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})));
    for part in &parts {
        frames.push_back(ev(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": part}),
        ));
    }
    frames.push_back(ev(
        "response.output_text.done",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": parts.concat()}),
    ));
    frames.push_back(ev("response.content_part.done", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": message["content"][0]})));
    frames.push_back(ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": message}),
    ));
    frames.push_back(ev("response.completed", json!({"response": response})));
    sse(log, frames, drip(&b))
}
