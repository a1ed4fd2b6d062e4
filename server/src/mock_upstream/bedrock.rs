//! AWS Bedrock: the Anthropic answer behind SigV4 (or bearer) auth, streamed as event-stream
//! frames.

use std::collections::VecDeque;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{
    anthropic::anthropic_answer,
    errors::{failure, quoting_error, Shape},
    remember,
    scenario::{behaviour, input_tokens, output_tokens, reply_parts, Behaviour},
    stream::{sse, Frame},
    Shared,
};

/// Bedrock `InvokeModel` and `InvokeModelWithResponseStream`: a signed (or bearer) request in,
/// the Anthropic answer out, streamed as AWS event-stream frames.
pub(super) async fn bedrock(
    State((log, s)): State<Shared>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !(auth.starts_with("AWS4-HMAC-SHA256 Credential=") || auth.starts_with("Bearer ")) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "Missing Authentication Token"})),
        )
            .into_response();
    }
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        return quoting_error(
            Shape::Bedrock,
            code,
            &body,
            params.get("model_id").map(String::as_str),
        );
    }
    if let Some(resp) = failure(
        &b,
        |c| json!({"message": format!("mock bedrock error {c}")}),
    )
    .await
    {
        return resp;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v.get("anthropic_version").is_none() || v.get("model").is_some() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Malformed input request"})),
        )
            .into_response();
    }
    // The model id, without its Bedrock prefix and version, is the answer's model.
    let id = params.get("model_id").cloned().unwrap_or_default();
    let model = id
        .split_once("anthropic.")
        .map(|(_, m)| m.rsplit_once("-v").map(|(m, _)| m).unwrap_or(m))
        .unwrap_or(&id)
        .to_string();
    let (message, events) = anthropic_answer(
        &model,
        input_tokens(s, uri.path()),
        output_tokens(s, uri.path(), &body),
        &reply_parts(s, uri.path()),
    );
    if uri.path().ends_with("/invoke") {
        return Json(message).into_response();
    }
    let events: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
    let raw = crate::upstream::bedrock::encode_events(&events);
    // Sent in uneven pieces, so frames straddle network chunks.
    let frames: VecDeque<Frame> = raw
        .chunks(97)
        .map(|c| Frame::Bytes(Bytes::copy_from_slice(c)))
        .collect();
    let mut resp = sse(log, frames, None);
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    resp
}
