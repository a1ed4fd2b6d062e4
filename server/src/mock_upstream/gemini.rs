//! Gemini generateContent, streamGenerateContent and countTokens.

use std::collections::VecDeque;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::{
    errors::{failure, gemini_error, quoting_error, Shape},
    remember,
    scenario::{behaviour, drip, output_tokens, reply_parts, Behaviour},
    stream::{sse, Frame},
    Shared, CACHE_READ_TOKENS, INPUT_TOKENS, REPLY,
};

pub(super) async fn gemini(
    State((log, s)): State<Shared>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    remember(&log, &uri, &headers, &body);
    let model_action = params.get("model_action").cloned().unwrap_or_default();
    let b = behaviour(s, uri.path());
    if let Behaviour::Quote(code) = b {
        let model = model_action.split(':').next();
        return quoting_error(Shape::Gemini, code, &body, model);
    }
    if let Some(resp) = failure(&b, gemini_error).await {
        return resp;
    }
    let (model, action) = model_action
        .split_once(':')
        .unwrap_or((model_action.as_str(), "generateContent"));
    let out = output_tokens(s, uri.path(), &body);
    let usage = json!({"promptTokenCount": INPUT_TOKENS + CACHE_READ_TOKENS, "candidatesTokenCount": out,
        "cachedContentTokenCount": CACHE_READ_TOKENS, "thoughtsTokenCount": 3,
        "totalTokenCount": INPUT_TOKENS + CACHE_READ_TOKENS + out + 3});
    let candidate = |text: &str, finish: Option<&str>| {
        let mut c = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        c
    };
    match action {
        "countTokens" => Json(json!({"totalTokens": INPUT_TOKENS})).into_response(),
        "streamGenerateContent" => {
            let parts = reply_parts(s, uri.path());
            let mut frames = VecDeque::new();
            for (i, part) in parts.iter().enumerate() {
                let last = i == parts.len() - 1;
                let mut chunk = json!({"candidates": [candidate(part, last.then_some("STOP"))], "modelVersion": model});
                if last {
                    chunk["usageMetadata"] = usage.clone();
                }
                frames.push_back(Frame::Bytes(Bytes::from(format!("data: {chunk}\r\n\r\n"))));
            }
            sse(log, frames, drip(&b))
        }
        _ => Json(json!({"candidates": [candidate(&REPLY.concat(), Some("STOP"))], "usageMetadata": usage, "modelVersion": model})).into_response(),
    }
}
