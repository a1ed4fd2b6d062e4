//! What an upstream failure says about the account that produced it (behaviour reference
//! §3.4): how long it rests, whether only one model family is limited, whether it is blocked
//! until an admin resets it, and whether the request may try another account.
//!
//! The pool must be safe from its users: a key holder decides what the request says, and
//! upstream error messages often quote the request (`Invalid value: '…'`, `model: …`). So a
//! verdict rests on the status and the error's structured fields only (Anthropic and OpenAI
//! `error.type`, OpenAI and Azure `error.code`, Gemini `error.status`, Bedrock's
//! `x-amzn-errortype` header), never on a search through the message:
//!
//! | upstream answer | verdict |
//! |---|---|
//! | 400/401/403 with Anthropic's `invalid_request_error`, `permission_error` or `authentication_error` and a message that is, whole, "This organization has been disabled." or "OAuth authentication is currently not allowed for this organization." (trimmed, any case, final period optional) | blocked until an admin resets it; failover |
//! | 401 | `auth_error` rest; failover |
//! | 403 with an account-level type: Anthropic `permission_error`/`authentication_error`, Gemini `PERMISSION_DENIED`, an OpenAI/Azure account or organisation code (`account_deactivated`, `billing_not_active`, `PermissionDenied`, …), an AWS access or credential error | `auth_error` rest; failover |
//! | any other 403 (a proxy's or WAF's HTML page, a type about the request) | back to the client; nothing rests; no failover |
//! | 400, 404, 413, 422 and any other 4xx | back to the client; nothing rests; no failover; not in the error history |
//! | 429 | `rate_limit` rest (`retry-after` or the unified reset, capped; with the unified reset only the model family rests); failover — except when the message speaks of "extra usage" (billing beyond the plan, the caller's business) |
//! | 529 | `overload` rest; failover |
//! | 503, 504, other 5xx, a timeout, an unreachable upstream | `service_unavailable`, `timeout`, `server_error`, `unreachable` rests; failover |
//!
//! A verdict without a class (`Verdict::pass_through`) changes nothing about the account: it
//! does not even enter its error history (`health::report`).

use std::time::Duration;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};

// The rest periods are configuration; re-exported beside the classification that applies them.
pub use crate::config::CooldownPolicy;

/// A failure before any byte reached the client.
pub enum Failure<'a> {
    Status {
        status: u16,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
    Timeout,
    Unreachable,
    /// The upstream answered with a 3xx (never followed: it would carry the credential).
    Redirect,
}

/// Why an account rests (or is blocked). Stored by its name (`as_str`) in the account's rests
/// and error history, which the admin pages read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CooldownClass {
    Blocked,
    AuthError,
    RateLimit,
    Overload,
    ServiceUnavailable,
    ServerError,
    Timeout,
    Unreachable,
}

impl CooldownClass {
    pub fn as_str(self) -> &'static str {
        match self {
            CooldownClass::Blocked => "blocked",
            CooldownClass::AuthError => "auth_error",
            CooldownClass::RateLimit => "rate_limit",
            CooldownClass::Overload => "overload",
            CooldownClass::ServiceUnavailable => "service_unavailable",
            CooldownClass::ServerError => "server_error",
            CooldownClass::Timeout => "timeout",
            CooldownClass::Unreachable => "unreachable",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// `None`: the failure says nothing about the account (a bad request, say).
    pub class: Option<CooldownClass>,
    /// How long the account (or the family) rests.
    pub rest: Option<Duration>,
    /// Only this model family is limited.
    pub family: Option<&'static str>,
    /// The account is blocked until an admin resets it.
    pub block: bool,
    /// Another account may be tried with the same request.
    pub failover: bool,
}

impl Verdict {
    fn pass_through() -> Self {
        Verdict {
            class: None,
            rest: None,
            family: None,
            block: false,
            failover: false,
        }
    }
    fn rest(class: CooldownClass, rest: Duration) -> Self {
        Verdict {
            class: Some(class),
            rest: Some(rest),
            family: None,
            block: false,
            failover: true,
        }
    }
}

/// Seconds until a reset time given as epoch seconds or RFC 3339, or as `retry-after` seconds
/// or an HTTP date.
fn header_secs(headers: &HeaderMap, now: DateTime<Utc>) -> (Option<u64>, bool) {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let until = |t: DateTime<Utc>| (t - now).num_seconds().max(1) as u64;
    let unified = get("anthropic-ratelimit-unified-reset").and_then(|v| {
        v.parse::<i64>()
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .or_else(|| {
                DateTime::parse_from_rfc3339(v)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })
            .map(until)
    });
    if unified.is_some() {
        return (unified, true);
    }
    let retry_after = get("retry-after").and_then(|v| {
        v.parse::<u64>().ok().or_else(|| {
            DateTime::parse_from_rfc2822(v)
                .ok()
                .map(|t| until(t.with_timezone(&Utc)))
        })
    });
    (retry_after, false)
}

pub fn classify(policy: &CooldownPolicy, failure: Failure<'_>, model: &str) -> Verdict {
    classify_at(policy, failure, model, Utc::now())
}

pub fn classify_at(
    policy: &CooldownPolicy,
    failure: Failure<'_>,
    model: &str,
    now: DateTime<Utc>,
) -> Verdict {
    let (status, headers, body) = match failure {
        Failure::Timeout => return Verdict::rest(CooldownClass::Timeout, policy.timeout),
        Failure::Unreachable => {
            return Verdict::rest(CooldownClass::Unreachable, policy.service_unavailable)
        }
        // Says nothing certain about the account (a client-chosen model name can be part of the
        // upstream path, and a path can be redirected): no rest, but another account may serve.
        Failure::Redirect => {
            return Verdict {
                failover: true,
                ..Verdict::pass_through()
            }
        }
        Failure::Status {
            status,
            headers,
            body,
        } => (status, headers, body),
    };
    let error = UpstreamError::parse(headers, body);
    if matches!(status, 400 | 401 | 403) && error.is_account_disabled() {
        return Verdict {
            class: Some(CooldownClass::Blocked),
            rest: None,
            family: None,
            block: true,
            failover: true,
        };
    }
    match status {
        401 => Verdict::rest(CooldownClass::AuthError, policy.auth),
        403 if error.is_account_level_denial() => {
            Verdict::rest(CooldownClass::AuthError, policy.auth)
        }
        429 => {
            // Billing beyond the plan ("extra usage") is the caller's business, not a limit.
            if error
                .message
                .as_deref()
                .is_some_and(|m| m.to_ascii_lowercase().contains("extra usage"))
            {
                return Verdict::pass_through();
            }
            let (secs, has_reset) = header_secs(headers, now);
            let rest = secs
                .map(Duration::from_secs)
                .unwrap_or(policy.rate_limit_default)
                .min(policy.max_custom);
            let family = if has_reset {
                app::domain::model_family(model)
            } else {
                None
            };
            Verdict {
                class: Some(CooldownClass::RateLimit),
                rest: Some(rest),
                family,
                block: false,
                failover: true,
            }
        }
        529 => Verdict::rest(CooldownClass::Overload, policy.overload),
        503 => Verdict::rest(
            CooldownClass::ServiceUnavailable,
            policy.service_unavailable,
        ),
        504 => Verdict::rest(CooldownClass::Timeout, policy.timeout),
        500..=599 => Verdict::rest(CooldownClass::ServerError, policy.server_error),
        // 400, 404, 413, 422, a 403 about the request or from a proxy, any other 4xx: the
        // request's own fault, so the client gets it and no account is touched.
        _ => Verdict::pass_through(),
    }
}

/// The structured fields of an upstream error, in any provider's shape: Anthropic
/// `{"type":"error","error":{"type","message"}}`, OpenAI and Azure `{"error":{"type","code",
/// "message"}}`, Gemini `{"error":{"code","status","message"}}`, Bedrock's
/// `x-amzn-errortype` header. Only the upstream sets these; the message may quote the client.
#[derive(Debug, Default)]
struct UpstreamError {
    /// `error.type` (Anthropic, OpenAI).
    kind: Option<String>,
    /// `error.code` when a string (OpenAI, Azure).
    code: Option<String>,
    /// `error.status` (Gemini).
    status: Option<String>,
    /// The body is Anthropic's envelope (`"type": "error"`).
    anthropic: bool,
    /// Bedrock's `x-amzn-errortype`, without its `:…` namespace.
    aws: Option<String>,
    message: Option<String>,
}

/// Anthropic error types that speak about the account, not the request.
const ANTHROPIC_ACCOUNT_TYPES: [&str; 2] = ["permission_error", "authentication_error"];
/// Gemini statuses that speak about the account.
const GEMINI_ACCOUNT_STATUSES: [&str; 2] = ["PERMISSION_DENIED", "UNAUTHENTICATED"];
/// OpenAI and Azure codes and types that speak about the account or its organisation.
const OPENAI_ACCOUNT_CODES: [&str; 13] = [
    "account_deactivated",
    "organization_deactivated",
    "deactivated_workspace",
    "invalid_organization",
    "no_organization",
    "organization_not_found",
    "billing_not_active",
    "access_terminated",
    "insufficient_quota",
    "unsupported_country_region_territory",
    "invalid_api_key",
    // Azure
    "PermissionDenied",
    "AuthenticationTypeDisabled",
];
/// AWS error types that speak about the Bedrock account's credentials or access.
const AWS_ACCOUNT_TYPES: [&str; 6] = [
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
];
/// The upstream's fixed messages for a disabled account; compared whole, never searched for.
const DISABLED_MESSAGES: [&str; 2] = [
    "this organization has been disabled",
    "oauth authentication is currently not allowed for this organization",
];

impl UpstreamError {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Self {
        let aws = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(':').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return UpstreamError {
                aws,
                ..Default::default()
            };
        };
        let string = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).map(str::to_string);
        let error = v.get("error").filter(|e| e.is_object());
        UpstreamError {
            kind: string(error.and_then(|e| e.get("type"))),
            code: string(error.and_then(|e| e.get("code"))),
            status: string(error.and_then(|e| e.get("status"))),
            anthropic: v.get("type").and_then(|t| t.as_str()) == Some("error"),
            aws,
            message: string(error.and_then(|e| e.get("message")))
                .or_else(|| string(v.get("message").or_else(|| v.get("Message")))),
        }
    }

    /// A 403 that says the account may not do this (its permissions, its organisation, its
    /// credentials), as opposed to a 403 about the request or an unstructured one.
    fn is_account_level_denial(&self) -> bool {
        let is = |field: &Option<String>, set: &[&str]| {
            field.as_deref().is_some_and(|f| set.contains(&f))
        };
        (self.anthropic && is(&self.kind, &ANTHROPIC_ACCOUNT_TYPES))
            || is(&self.status, &GEMINI_ACCOUNT_STATUSES)
            || is(&self.code, &OPENAI_ACCOUNT_CODES)
            || (!self.anthropic && is(&self.kind, &OPENAI_ACCOUNT_CODES))
            || is(&self.aws, &AWS_ACCOUNT_TYPES)
    }

    /// Anthropic's account-disabled errors: an error type the upstream uses for them and a
    /// message that is one of the fixed texts, whole (trimmed, any case, final period
    /// optional). A message quoting such a text among others never matches.
    fn is_account_disabled(&self) -> bool {
        let typed = self.anthropic
            && matches!(
                self.kind.as_deref(),
                Some("invalid_request_error" | "permission_error" | "authentication_error")
            );
        let Some(message) = self.message.as_deref().filter(|_| typed) else {
            return false;
        };
        let m = message.trim();
        let m = m.strip_suffix('.').unwrap_or(m).trim_end();
        DISABLED_MESSAGES.iter().any(|d| m.eq_ignore_ascii_case(d))
    }
}

#[cfg(test)]
mod tests;
