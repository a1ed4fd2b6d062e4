//! Failure answers: the scenario's statuses, HTML pages, redirects and rate limits, and the
//! request errors that quote the client, each in the provider's own error shape.

use std::time::Duration;

use axum::{
    body::Bytes,
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::scenario::Behaviour;

/// Failure answers shared by every protocol; `None` means carry on normally.
pub(super) async fn failure(b: &Behaviour, error_body: impl Fn(u16) -> Value) -> Option<Response> {
    match b {
        Behaviour::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (status, Json(error_body(*code))).into_response();
            if *code == 429 {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("7"));
            }
            Some(resp)
        }
        Behaviour::Html(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY);
            Some(
                (
                    status,
                    [("content-type", "text/html")],
                    "<html><body>Bad gateway</body></html>",
                )
                    .into_response(),
            )
        }
        Behaviour::FamilyLimit => {
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(error_body(429))).into_response();
            let reset = (chrono::Utc::now().timestamp() + 60).to_string();
            if let Ok(v) = HeaderValue::from_str(&reset) {
                resp.headers_mut()
                    .insert("anthropic-ratelimit-unified-reset", v);
            }
            Some(resp)
        }
        Behaviour::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            None
        }
        Behaviour::Redirect(port) => Some(
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("http://127.0.0.1:{port}/captured"))],
            )
                .into_response(),
        ),
        _ => None,
    }
}

/// The provider shapes of a quoting request error.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Anthropic,
    OpenAi,
    Gemini,
    Bedrock,
}

/// The client's own text in a request: the last message's (or input's) text, else the model.
fn client_text(body: &Bytes, path_model: Option<&str>) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text_of = |c: &Value| -> Option<String> {
        match c {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => parts
                .iter()
                .find_map(|p| p.get("text").and_then(Value::as_str).map(str::to_string)),
            _ => None,
        }
    };
    v.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(text_of)
        .or_else(|| v.get("input").and_then(text_of))
        .or_else(|| {
            v.get("contents")
                .and_then(Value::as_array)
                .and_then(|c| c.last())
                .and_then(|c| c.get("parts"))
                .and_then(text_of)
        })
        .or_else(|| v.get("model").and_then(Value::as_str).map(str::to_string))
        .or_else(|| path_model.map(str::to_string))
        .unwrap_or_default()
}

/// A request error that quotes the client (`quote-<code>`), in the provider's shape.
pub(super) fn quoting_error(
    shape: Shape,
    code: u16,
    body: &Bytes,
    path_model: Option<&str>,
) -> Response {
    let text = client_text(body, path_model);
    let message = match code {
        400 => format!("messages.0.content: {text}"),
        403 => format!("Invalid value: '{text}'"),
        404 => format!("model: {text}"),
        413 => format!("Request too large for input: {text}"),
        _ => format!("Invalid 'input[0]': {text}"),
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let (json, aws_type) = match shape {
        Shape::Anthropic => {
            let kind = match code {
                404 => "not_found_error",
                413 => "request_too_large",
                _ => "invalid_request_error",
            };
            (
                json!({"type": "error", "error": {"type": kind, "message": message}}),
                None,
            )
        }
        Shape::OpenAi => {
            let code_field = match code {
                403 | 404 => json!("model_not_found"),
                _ => Value::Null,
            };
            (
                json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code_field}}),
                None,
            )
        }
        Shape::Gemini => {
            let status = match code {
                404 => "NOT_FOUND",
                403 => "FAILED_PRECONDITION",
                _ => "INVALID_ARGUMENT",
            };
            (
                json!({"error": {"code": code, "message": message, "status": status}}),
                None,
            )
        }
        Shape::Bedrock => (
            json!({"message": message}),
            Some(if code == 404 {
                "ResourceNotFoundException"
            } else {
                "ValidationException"
            }),
        ),
    };
    let mut resp = (status, Json(json)).into_response();
    if let Some(t) = aws_type {
        resp.headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(t));
    }
    resp
}

pub(super) fn anthropic_error(code: u16) -> Value {
    let kind = match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": format!("mock upstream error {code}")}})
}

pub(super) fn openai_error(code: u16) -> Value {
    json!({"error": {"message": format!("mock upstream error {code}"), "type": "api_error", "code": code.to_string()}})
}

pub(super) fn gemini_error(code: u16) -> Value {
    json!({"error": {"code": code, "message": format!("mock upstream error {code}"), "status": "UNAVAILABLE"}})
}
