//! The wire protocols a client may speak, and how each shapes an error.

use axum::{
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Chat Completions and Responses.
    OpenAi,
    /// Google Gemini (generateContent).
    Gemini,
}

fn gemini_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

impl Protocol {
    /// The protocol a client speaks on a relay path (Anthropic where nothing else fits).
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/gemini/") {
            Protocol::Gemini
        } else if path.starts_with("/openai/")
            || path.starts_with("/azure/")
            || path.ends_with("/chat/completions")
            || path.ends_with("/responses")
        {
            Protocol::OpenAi
        } else {
            Protocol::Anthropic
        }
    }

    /// The protocol's error body. `kind` is the Anthropic error type; `extra` fields (limit
    /// details, `code`) are added where the protocol has room for them.
    pub fn error_body(
        self,
        status: StatusCode,
        kind: &str,
        message: &str,
        extra: Option<&Value>,
    ) -> Value {
        let mut body = match self {
            Protocol::Anthropic => {
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            Protocol::OpenAi => {
                json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            }
            Protocol::Gemini => {
                json!({"error": {"code": status.as_u16(), "message": message, "status": gemini_status(status)}})
            }
        };
        if let Some(Value::Object(extra)) = extra {
            for (k, v) in extra {
                if k == "code" {
                    if self != Protocol::Gemini {
                        body["error"]["code"] = v.clone();
                    }
                } else if let Some(b) = body.as_object_mut() {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        body
    }

    pub fn error(self, status: StatusCode, kind: &str, message: &str) -> Response {
        let mut resp = (status, Json(self.error_body(status, kind, message, None))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("10"));
        }
        resp
    }
}
