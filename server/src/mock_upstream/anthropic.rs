//! Anthropic Messages (JSON and SSE) and count_tokens; the answer is shared with Bedrock.

use std::{collections::VecDeque, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{
    errors::{anthropic_error, failure, quoting_error, Shape},
    remember,
    scenario::{
        behaviour, drip, input_tokens, output_tokens, reply_parts, requested_model, Behaviour,
    },
    stream::{sse, Frame},
    Shared, CACHE_CREATE_1H_TOKENS, CACHE_CREATE_5M_TOKENS, CACHE_READ_TOKENS, INPUT_TOKENS,
};

/// An Anthropic answer: the whole message, and the events of the same answer streamed.
pub(super) fn anthropic_answer(
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
    parts: &[String],
) -> (Value, Vec<(String, Value)>) {
    let usage = json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": CACHE_CREATE_5M_TOKENS + CACHE_CREATE_1H_TOKENS,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "cache_creation": {"ephemeral_5m_input_tokens": CACHE_CREATE_5M_TOKENS, "ephemeral_1h_input_tokens": CACHE_CREATE_1H_TOKENS},
        "output_tokens": output_tokens,
    });
    let id = format!("msg_mock_{:x}", rand::random::<u64>());
    let message = json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": parts.concat()}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
    });
    let mut start_usage = usage;
    start_usage["output_tokens"] = json!(1);
    let mut events: Vec<(String, Value)> = vec![
        (
            "message_start".into(),
            json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        ),
        (
            "content_block_start".into(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping".into(), json!({"type": "ping"})),
    ];
    for part in parts {
        events.push(("content_block_delta".into(), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}})));
    }
    events.push((
        "content_block_stop".into(),
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(("message_delta".into(), json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": output_tokens}})));
    events.push(("message_stop".into(), json!({"type": "message_stop"})));
    (message, events)
}

pub(super) async fn messages(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    if serde_json::from_slice::<Value>(&body).is_err() {
        return (StatusCode::BAD_REQUEST, Json(anthropic_error(400))).into_response();
    }
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(Shape::Anthropic, code, &body, None);
    }
    if let Some(resp) = failure(&b, anthropic_error).await {
        return resp;
    }
    let (model, stream) = requested_model(&body);
    let (message, events) = anthropic_answer(
        &model,
        input_tokens(s, uri.path()),
        output_tokens(s, uri.path(), &body),
        &reply_parts(s, uri.path()),
    );
    if !stream {
        return Json(message).into_response();
    }
    let mut frames: VecDeque<Frame> = events
        .into_iter()
        .map(|(name, data)| Frame::Bytes(Bytes::from(format!("event: {name}\ndata: {data}\n\n"))))
        .collect();
    match b {
        Behaviour::Reset => {
            frames.truncate(4);
            frames.push_back(Frame::Pause(Duration::from_millis(50)));
            frames.push_back(Frame::Reset);
        }
        Behaviour::NoStop => {
            frames.pop_back();
        }
        Behaviour::Malformed => {
            frames.insert(
                2,
                Frame::Bytes(Bytes::from_static(
                    b"data: {not json\n\n:comment\ngarbage without colon\n\n",
                )),
            );
        }
        _ => {}
    }
    let delay = drip(&b);
    sse(log, frames, delay)
}

pub(super) async fn count_tokens(
    State((log, s)): State<Shared>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    if let Some(resp) = failure(&behaviour(s, uri.path()), anthropic_error).await {
        return resp;
    }
    Json(json!({"input_tokens": INPUT_TOKENS})).into_response()
}
