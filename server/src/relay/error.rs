//! Failures of a relayed request, rendered in the caller's protocol: `RelayError` in the
//! Anthropic shape, `OpenAiError` and `GeminiError` for the other surfaces' handlers.

use axum::{
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub enum RelayError {
    MissingKey,
    MalformedKey,
    KeyNotFound,
    KeyDisabled,
    KeyExpired,
    PermissionDenied(String),
    BadRequest(String),
    /// The body exceeds `REQUEST_MAX_SIZE_MB`.
    TooLarge,
    NotFound(String),
    /// No account can serve the request right now.
    NoAccount(String),
    /// No account of the requested kind serves this model at all.
    ModelUnavailable(String),
    DedicatedUnavailable(String),
    /// The key's dedicated account is rate limited upstream until this time.
    DedicatedRateLimited(String),
    UpstreamUnreachable,
    /// The upstream answered with this 3xx, which the relay never follows.
    UpstreamRedirect(u16),
    UpstreamTimeout,
    StoreUnavailable,
    /// A key limit said no (429 for concurrency and windows, 402 for cost).
    Limited(crate::limits::Refusal),
    /// The key is restricted to other clients.
    ClientNotAllowed(Vec<String>),
    /// The request's key copy from memory is out of date: the handler runs again with a
    /// fresh one (`auth::key_cache`); a client sees this only if that fails as well.
    KeyChanged,
    /// The model has no price and `UNPRICED_MODEL_POLICY=refuse`.
    Unpriced(String),
}

impl RelayError {
    pub fn status(&self) -> StatusCode {
        use RelayError::*;
        match self {
            MissingKey | MalformedKey | KeyNotFound | KeyDisabled | KeyExpired => {
                StatusCode::UNAUTHORIZED
            }
            PermissionDenied(_) | DedicatedRateLimited(_) => StatusCode::FORBIDDEN,
            BadRequest(_) | Unpriced(_) => StatusCode::BAD_REQUEST,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            NotFound(_) | ModelUnavailable(_) => StatusCode::NOT_FOUND,
            NoAccount(_) | DedicatedUnavailable(_) | StoreUnavailable | KeyChanged => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamUnreachable | UpstreamRedirect(_) => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Limited(crate::limits::Refusal::Cost { .. }) => StatusCode::PAYMENT_REQUIRED,
            Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            ClientNotAllowed(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The message texts of the original service (§1.1 of the behaviour reference).
    pub fn message(&self) -> String {
        use RelayError::*;
        match self {
            MissingKey => "Missing API key: Please provide an API key in the x-api-key, x-goog-api-key, or Authorization header".into(),
            MalformedKey => "Invalid API key format".into(),
            KeyNotFound => "Invalid API key: API key not found".into(),
            KeyDisabled => "Invalid API key: API key is disabled".into(),
            KeyExpired => "Invalid API key: API key has expired".into(),
            PermissionDenied(m) | BadRequest(m) | NotFound(m) | NoAccount(m) | DedicatedUnavailable(m)
            | ModelUnavailable(m) => m.clone(),
            TooLarge => "Request body is too large".into(),
            DedicatedRateLimited(until) => format!(
                "The dedicated account of this API key is rate limited upstream until {until}"
            ),
            UpstreamUnreachable => "Upstream connection error".into(),
            UpstreamRedirect(code) => format!(
                "Upstream answered with a redirect (HTTP {code}), which the relay does not follow"
            ),
            UpstreamTimeout => "Upstream timeout".into(),
            StoreUnavailable => "The relay's store is unavailable; retry shortly".into(),
            KeyChanged => "The API key changed during the request; retry".into(),
            Unpriced(model) => format!(
                "Model {model:?} has no price on this relay, which refuses models it cannot bill"
            ),
            Limited(r) => crate::limits::refusal_message(r),
            ClientNotAllowed(_) => "Client not allowed: your client is not authorized to use this API key".into(),
        }
    }

    fn anthropic_type(&self) -> &'static str {
        use RelayError::*;
        match self {
            MissingKey | MalformedKey | KeyNotFound | KeyDisabled | KeyExpired => {
                "authentication_error"
            }
            PermissionDenied(_) => "permission_error",
            DedicatedRateLimited(_) => "rate_limit_error",
            BadRequest(_) | Unpriced(_) => "invalid_request_error",
            TooLarge => "request_too_large",
            NotFound(_) | ModelUnavailable(_) => "not_found_error",
            NoAccount(_) | DedicatedUnavailable(_) | StoreUnavailable | KeyChanged => {
                "overloaded_error"
            }
            UpstreamUnreachable | UpstreamRedirect(_) => "api_error",
            UpstreamTimeout => "timeout_error",
            Limited(crate::limits::Refusal::Cost { .. }) => "insufficient_quota",
            Limited(_) => "rate_limit_error",
            ClientNotAllowed(_) => "permission_error",
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for RelayError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RelayError::TooLarge
        } else {
            RelayError::BadRequest(r.body_text())
        }
    }
}

impl From<crate::auth::api_key::KeyRefusal> for RelayError {
    fn from(r: crate::auth::api_key::KeyRefusal) -> Self {
        use crate::auth::api_key::KeyRefusal;
        match r {
            KeyRefusal::Missing => RelayError::MissingKey,
            KeyRefusal::Malformed => RelayError::MalformedKey,
            KeyRefusal::NotFound => RelayError::KeyNotFound,
            KeyRefusal::Disabled => RelayError::KeyDisabled,
            KeyRefusal::Expired => RelayError::KeyExpired,
            KeyRefusal::Store(e) => RelayError::from(e),
        }
    }
}

impl From<crate::accounting::Unpriced> for RelayError {
    fn from(u: crate::accounting::Unpriced) -> Self {
        RelayError::Unpriced(u.model)
    }
}

impl From<crate::upstream::UpstreamError> for RelayError {
    fn from(e: crate::upstream::UpstreamError) -> Self {
        use crate::upstream::UpstreamError;
        match e {
            UpstreamError::NoAccount(m) => RelayError::NoAccount(m),
            UpstreamError::BadRequest(m) => RelayError::BadRequest(m),
            UpstreamError::NotFound(m) => RelayError::NotFound(m),
            UpstreamError::Unreachable => RelayError::UpstreamUnreachable,
            // Logged when it arose (`UpstreamError: From<StoreError>`).
            UpstreamError::Store(crate::store::StoreError::KeyChanged) => RelayError::KeyChanged,
            UpstreamError::Store(_) => RelayError::StoreUnavailable,
        }
    }
}

// The wire text lives with the relay's errors; the upstream error reads it from there.
impl crate::upstream::UpstreamError {
    /// The message the relay would answer with.
    pub fn message(self) -> String {
        RelayError::from(self).message()
    }
}

impl From<crate::scheduler::NotServed> for RelayError {
    fn from(n: crate::scheduler::NotServed) -> Self {
        use crate::scheduler::NotServed;
        match n {
            NotServed::DedicatedRateLimited(until) => RelayError::DedicatedRateLimited(until),
            NotServed::DedicatedUnavailable(m) => RelayError::DedicatedUnavailable(m),
            NotServed::ModelUnavailable(m) => RelayError::ModelUnavailable(m),
            NotServed::NoAccount(m) => RelayError::NoAccount(m),
            NotServed::Unsettled => RelayError::StoreUnavailable,
            NotServed::Store(e) => e.into(),
        }
    }
}

impl From<crate::limits::Denied> for RelayError {
    fn from(d: crate::limits::Denied) -> Self {
        use crate::limits::Denied;
        match d {
            Denied::Unpriced(u) => u.into(),
            Denied::PermissionDenied(m) => RelayError::PermissionDenied(m),
            Denied::ClientNotAllowed(clients) => RelayError::ClientNotAllowed(clients),
            Denied::Limited(refusal) => RelayError::Limited(refusal),
            Denied::Store(e) => e.into(),
        }
    }
}

impl From<crate::store::StoreError> for RelayError {
    fn from(err: crate::store::StoreError) -> Self {
        if matches!(err, crate::store::StoreError::KeyChanged) {
            return RelayError::KeyChanged;
        }
        tracing::error!(error = %err, "store error on the relay path");
        RelayError::StoreUnavailable
    }
}

/// The Anthropic error body: `{"type":"error","error":{"type":…,"message":…}}`.
pub fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("10"));
    }
    resp
}

impl RelayError {
    /// The error in the caller's protocol.
    pub fn respond(self, protocol: super::protocol::Protocol) -> Response {
        let status = self.status();
        let kind = self.anthropic_type();
        let message = self.message();
        let extra = match &self {
            RelayError::Limited(r) => Some(crate::limits::refusal_fields(r)),
            RelayError::ClientNotAllowed(allowed) => Some(json!({"allowedClients": allowed})),
            _ => None,
        };
        let body = protocol.error_body(status, kind, &message, extra.as_ref());
        let mut resp = (status, Json(body)).into_response();
        let retry = match &self {
            RelayError::Limited(crate::limits::Refusal::Concurrency { .. }) => {
                Some("1".to_string())
            }
            RelayError::Limited(crate::limits::Refusal::WindowRequests { reset_at_ms, .. })
            | RelayError::Limited(crate::limits::Refusal::WindowTokens { reset_at_ms, .. })
            | RelayError::Limited(crate::limits::Refusal::WindowCost { reset_at_ms, .. }) => {
                let secs = (reset_at_ms - chrono::Utc::now().timestamp_millis()).max(1000) / 1000;
                Some(secs.to_string())
            }
            RelayError::NoAccount(_)
            | RelayError::DedicatedUnavailable(_)
            | RelayError::StoreUnavailable => Some("10".to_string()),
            RelayError::KeyChanged => {
                resp.extensions_mut()
                    .insert(crate::auth::key_cache::KeyChanged);
                Some("1".to_string())
            }
            _ => None,
        };
        if let Some(r) = retry.and_then(|r| HeaderValue::from_str(&r).ok()) {
            resp.headers_mut().insert("retry-after", r);
        }
        resp
    }
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        self.respond(super::protocol::Protocol::Anthropic)
    }
}

/// A relay error in one surface's wire shape: what that surface's handlers return, so they
/// can use `?` (`RelayError` itself renders in the Anthropic shape).
macro_rules! error_in {
    ($(#[$doc:meta])* $name:ident, $protocol:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub RelayError);

        impl From<RelayError> for $name {
            fn from(e: RelayError) -> Self {
                $name(e)
            }
        }

        impl From<axum::extract::rejection::BytesRejection> for $name {
            fn from(r: axum::extract::rejection::BytesRejection) -> Self {
                $name(r.into())
            }
        }

        impl From<crate::store::StoreError> for $name {
            fn from(e: crate::store::StoreError) -> Self {
                $name(e.into())
            }
        }

        impl From<crate::limits::Denied> for $name {
            fn from(d: crate::limits::Denied) -> Self {
                $name(d.into())
            }
        }

        impl IntoResponse for $name {
            fn into_response(self) -> Response {
                self.0.respond($protocol)
            }
        }
    };
}

error_in!(
    /// A relay error in OpenAI's shape (`{"error":{"message","type",…}}`).
    OpenAiError,
    super::protocol::Protocol::OpenAi
);
error_in!(
    /// A relay error in Gemini's shape (`{"error":{"code","message","status"}}`).
    GeminiError,
    super::protocol::Protocol::Gemini
);

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn each_surface_renders_in_its_own_shape() {
        let e = || RelayError::BadRequest("no".into());
        let anthropic = body(e().into_response()).await;
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "invalid_request_error");
        let openai = body(OpenAiError::from(e()).into_response()).await;
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        assert!(openai.get("type").is_none());
        let gemini = GeminiError::from(e()).into_response();
        assert_eq!(gemini.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(gemini).await["error"]["status"], "INVALID_ARGUMENT");
    }
}
