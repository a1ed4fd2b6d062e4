//! What an upstream failure says about the account that produced it (behaviour reference
//! §3.4): how long it rests, whether only one model family is limited, whether it is blocked
//! until an admin resets it, and whether the request may try another account.

use std::time::Duration;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};

/// Rest periods by error class; the original's defaults, overridable by configuration.
#[derive(Clone, Debug)]
pub struct CooldownPolicy {
    pub service_unavailable: Duration,
    pub server_error: Duration,
    pub overload: Duration,
    pub auth: Duration,
    pub timeout: Duration,
    pub rate_limit_default: Duration,
    /// Cap for rest periods the upstream asks for (`retry-after`, reset headers).
    pub max_custom: Duration,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            service_unavailable: Duration::from_secs(60),
            server_error: Duration::from_secs(300),
            overload: Duration::from_secs(600),
            auth: Duration::from_secs(1800),
            timeout: Duration::from_secs(300),
            rate_limit_default: Duration::from_secs(300),
            max_custom: Duration::from_secs(1800),
        }
    }
}

/// A failure before any byte reached the client.
pub enum Failure<'a> {
    Status {
        status: u16,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
    Timeout,
    Unreachable,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// `None`: the failure says nothing about the account (a bad request, say).
    pub class: Option<&'static str>,
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
    fn rest(class: &'static str, rest: Duration) -> Self {
        Verdict {
            class: Some(class),
            rest: Some(rest),
            family: None,
            block: false,
            failover: true,
        }
    }
}

const BLOCKED_PATTERNS: [&str; 3] = [
    "this organization has been disabled",
    "oauth authentication is currently not allowed",
    "account has been disabled",
];

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
        Failure::Timeout => return Verdict::rest("timeout", policy.timeout),
        Failure::Unreachable => return Verdict::rest("unreachable", policy.service_unavailable),
        Failure::Status {
            status,
            headers,
            body,
        } => (status, headers, body),
    };
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    if matches!(status, 400 | 403) && BLOCKED_PATTERNS.iter().any(|p| text.contains(p)) {
        return Verdict {
            class: Some("blocked"),
            rest: None,
            family: None,
            block: true,
            failover: true,
        };
    }
    match status {
        429 => {
            // Billing beyond the plan ("extra usage") is the caller's business, not a limit.
            if text.contains("extra usage") {
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
                class: Some("rate_limit"),
                rest: Some(rest),
                family,
                block: false,
                failover: true,
            }
        }
        529 => Verdict::rest("overload", policy.overload),
        503 => Verdict::rest("service_unavailable", policy.service_unavailable),
        504 => Verdict::rest("timeout", policy.timeout),
        401 | 403 => Verdict::rest("auth_error", policy.auth),
        500..=599 => Verdict::rest("server_error", policy.server_error),
        _ => Verdict::pass_through(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use chrono::TimeZone;

    fn status(code: u16, headers: &HeaderMap, body: &str) -> Verdict {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        classify_at(
            &CooldownPolicy::default(),
            Failure::Status {
                status: code,
                headers,
                body: body.as_bytes(),
            },
            "claude-opus-4-1",
            now,
        )
    }

    #[test]
    fn default_rest_by_class() {
        let h = HeaderMap::new();
        let secs = |v: Verdict| (v.class.unwrap(), v.rest.unwrap().as_secs(), v.failover);
        assert_eq!(secs(status(503, &h, "")), ("service_unavailable", 60, true));
        assert_eq!(secs(status(500, &h, "")), ("server_error", 300, true));
        assert_eq!(secs(status(529, &h, "")), ("overload", 600, true));
        assert_eq!(secs(status(401, &h, "")), ("auth_error", 1800, true));
        assert_eq!(secs(status(403, &h, "")), ("auth_error", 1800, true));
        assert_eq!(secs(status(429, &h, "")), ("rate_limit", 300, true));
        let p = CooldownPolicy::default();
        assert_eq!(
            classify(&p, Failure::Timeout, "m").rest.unwrap().as_secs(),
            300
        );
        assert_eq!(
            classify(&p, Failure::Unreachable, "m").class,
            Some("unreachable")
        );
        let bad = status(
            400,
            &h,
            "{\"error\":{\"message\":\"max_tokens too large\"}}",
        );
        assert_eq!(bad, Verdict::pass_through());
        assert!(!status(404, &h, "").failover);
    }

    #[test]
    fn rate_limit_headers_family_and_cap() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("42"));
        let v = status(429, &h, "");
        assert_eq!((v.rest.unwrap().as_secs(), v.family), (42, None));
        h.insert("retry-after", HeaderValue::from_static("999999"));
        assert_eq!(
            status(429, &h, "").rest.unwrap().as_secs(),
            1800,
            "capped at 30 min"
        );
        let mut h = HeaderMap::new();
        let reset = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 10, 0)
            .unwrap()
            .timestamp()
            .to_string();
        h.insert(
            "anthropic-ratelimit-unified-reset",
            HeaderValue::from_str(&reset).unwrap(),
        );
        let v = status(429, &h, "");
        assert_eq!((v.rest.unwrap().as_secs(), v.family), (600, Some("opus")));
        h.insert(
            "anthropic-ratelimit-unified-reset",
            HeaderValue::from_static("2026-01-01T00:05:00Z"),
        );
        assert_eq!(status(429, &h, "").rest.unwrap().as_secs(), 300);
        assert_eq!(
            status(429, &HeaderMap::new(), "You have run out of extra usage"),
            Verdict::pass_through()
        );
    }

    #[test]
    fn disabled_organisations_are_blocked() {
        let h = HeaderMap::new();
        let v = status(
            400,
            &h,
            r#"{"error":{"message":"This organization has been disabled."}}"#,
        );
        assert!(v.block && v.failover);
        let v = status(
            403,
            &h,
            "OAuth authentication is currently not allowed for this organization",
        );
        assert!(v.block);
    }
}
