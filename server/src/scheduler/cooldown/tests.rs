use super::*;
use axum::http::HeaderValue;
use chrono::TimeZone;
use proptest::prelude::*;

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

fn anthropic(kind: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}
fn openai(kind: &str, code: Option<&str>, message: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
}
fn gemini(code: u16, status: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message, "status": status}}).to_string()
}

#[test]
fn default_rest_by_class() {
    let h = HeaderMap::new();
    let secs = |v: Verdict| {
        (
            v.class.unwrap().as_str(),
            v.rest.unwrap().as_secs(),
            v.failover,
        )
    };
    assert_eq!(secs(status(503, &h, "")), ("service_unavailable", 60, true));
    assert_eq!(secs(status(504, &h, "")), ("timeout", 300, true));
    assert_eq!(secs(status(500, &h, "")), ("server_error", 300, true));
    assert_eq!(
        secs(status(502, &h, "<html/>")),
        ("server_error", 300, true)
    );
    assert_eq!(secs(status(529, &h, "")), ("overload", 600, true));
    assert_eq!(secs(status(401, &h, "")), ("auth_error", 1800, true));
    assert_eq!(secs(status(429, &h, "")), ("rate_limit", 300, true));
    let p = CooldownPolicy::default();
    assert_eq!(
        classify(&p, Failure::Timeout, "m").rest.unwrap().as_secs(),
        300
    );
    assert_eq!(
        classify(&p, Failure::Unreachable, "m")
            .class
            .map(CooldownClass::as_str),
        Some("unreachable")
    );
    // A redirect: another account may serve, this one does not rest.
    let r = classify(&p, Failure::Redirect, "m");
    assert_eq!(
        (r.class, r.rest, r.block, r.failover),
        (None, None, false, true)
    );
}

#[test]
fn request_errors_go_back_to_the_client() {
    let h = HeaderMap::new();
    for code in [400, 404, 405, 408, 409, 413, 422] {
        for body in [
            String::new(),
            anthropic("invalid_request_error", "max_tokens too large"),
            openai("invalid_request_error", Some("model_not_found"), "no"),
            gemini(code, "INVALID_ARGUMENT", "bad"),
            // Even with an account-level type: the status says the request was wrong.
            anthropic("permission_error", "x"),
        ] {
            assert_eq!(
                status(code, &h, &body),
                Verdict::pass_through(),
                "{code} {body}"
            );
        }
    }
}

#[test]
fn a_403_rests_the_account_only_with_an_account_level_type() {
    let h = HeaderMap::new();
    let rests = |body: &str| {
        let v = status(403, &h, body);
        (v.class.map(CooldownClass::as_str), v.failover, v.block)
    };
    let rest = (Some("auth_error"), true, false);
    assert_eq!(
        rests(&anthropic(
            "permission_error",
            "Your API key does not have permission"
        )),
        rest
    );
    assert_eq!(rests(&anthropic("authentication_error", "x")), rest);
    assert_eq!(
        rests(&gemini(403, "PERMISSION_DENIED", "Permission denied")),
        rest
    );
    assert_eq!(
        rests(&openai(
            "invalid_request_error",
            Some("account_deactivated"),
            "x"
        )),
        rest
    );
    assert_eq!(rests(&openai("insufficient_quota", None, "x")), rest);
    assert_eq!(
        rests(
            r#"{"error":{"code":"PermissionDenied","message":"Principal does not have access"}}"#
        ),
        rest
    );
    let mut aws = HeaderMap::new();
    aws.insert(
        "x-amzn-errortype",
        HeaderValue::from_static(
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        ),
    );
    assert_eq!(
        status(403, &aws, r#"{"message":"You don't have access"}"#)
            .class
            .map(CooldownClass::as_str),
        Some("auth_error")
    );

    let pass = (None, false, false);
    // A proxy's or WAF's page, nothing at all, an unknown shape.
    assert_eq!(rests("<html><body>403 Forbidden</body></html>"), pass);
    assert_eq!(rests(""), pass);
    assert_eq!(rests(r#"{"message":"Missing Authentication Token"}"#), pass);
    // Types about the request.
    assert_eq!(rests(&anthropic("invalid_request_error", "x")), pass);
    assert_eq!(
        rests(&openai(
            "invalid_request_error",
            Some("model_not_found"),
            "Project has no access to model `x`"
        )),
        pass
    );
    assert_eq!(rests(&gemini(403, "INVALID_ARGUMENT", "x")), pass);
    // A Gemini status in a message, or an Anthropic type outside Anthropic's envelope,
    // is not a field of the error.
    assert_eq!(
        rests(&openai(
            "api_error",
            Some("403"),
            "PERMISSION_DENIED permission_error"
        )),
        pass
    );
    assert_eq!(
        rests(r#"{"error":{"type":"permission_error","message":"x"}}"#),
        pass
    );
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
        status(
            429,
            &HeaderMap::new(),
            &anthropic("rate_limit_error", "You have run out of extra usage")
        ),
        Verdict::pass_through()
    );
}

#[test]
fn disabled_organisations_are_blocked() {
    let h = HeaderMap::new();
    let blocked = |code, body: &str| {
        let v = status(code, &h, body);
        v.block && v.failover && v.class.map(CooldownClass::as_str) == Some("blocked")
    };
    assert!(blocked(
        400,
        &anthropic(
            "invalid_request_error",
            "This organization has been disabled."
        )
    ));
    assert!(blocked(
        403,
        &anthropic("permission_error", "  this organization has been disabled ")
    ));
    assert!(blocked(
        403,
        &anthropic(
            "permission_error",
            "OAuth authentication is currently not allowed for this organization."
        )
    ));
    assert!(blocked(
        401,
        &anthropic(
            "authentication_error",
            "OAuth authentication is currently not allowed for this organization"
        )
    ));
    // The text, but not the whole message, not Anthropic's envelope, or not a known type.
    assert!(!blocked(
        400,
        &anthropic(
            "invalid_request_error",
            "model: This organization has been disabled"
        )
    ));
    assert!(!blocked(
        400,
        &anthropic(
            "invalid_request_error",
            "This organization has been disabled. Or has it?"
        )
    ));
    assert!(!blocked(
        400,
        &openai(
            "invalid_request_error",
            None,
            "This organization has been disabled."
        )
    ));
    assert!(!blocked(
        400,
        &anthropic("not_found_error", "This organization has been disabled.")
    ));
    assert!(!blocked(400, "This organization has been disabled."));
    assert!(!blocked(
        400,
        &openai(
            "invalid_request_error",
            None,
            "Invalid value: 'account has been disabled'"
        )
    ));
    // Not on statuses that cannot mean it.
    assert!(!blocked(
        404,
        &anthropic(
            "invalid_request_error",
            "This organization has been disabled."
        )
    ));
}

/// What upstreams put before a quoted piece of the request.
const QUOTING: [&str; 10] = [
    "Invalid value: '",
    "model: ",
    "messages.0.content: ",
    "messages.1.content.0.text: ",
    "system: ",
    "Unknown parameter: '",
    "The model `",
    "Invalid 'input[0]': ",
    "* GenerateContentRequest.contents[0].parts[0].text: ",
    "Project does not have access to model ",
];
const PHRASES: [&str; 6] = [
    "This organization has been disabled.",
    "OAuth authentication is currently not allowed for this organization.",
    "account has been disabled",
    "permission_error",
    "PERMISSION_DENIED",
    "account_deactivated",
];

fn quoted_bodies(code: u16, message: &str) -> Vec<(String, HeaderMap)> {
    let mut aws = HeaderMap::new();
    aws.insert(
        "x-amzn-errortype",
        HeaderValue::from_static("ValidationException"),
    );
    let request_kind = match code {
        404 => "not_found_error",
        413 => "request_too_large",
        _ => "invalid_request_error",
    };
    let gemini_status = match code {
        404 => "NOT_FOUND",
        403 => "INVALID_ARGUMENT",
        _ => "INVALID_ARGUMENT",
    };
    let mut bodies = vec![
        (anthropic(request_kind, message), HeaderMap::new()),
        (
            openai("invalid_request_error", None, message),
            HeaderMap::new(),
        ),
        (
            openai("invalid_request_error", Some("model_not_found"), message),
            HeaderMap::new(),
        ),
        (gemini(code, gemini_status, message), HeaderMap::new()),
        (serde_json::json!({"message": message}).to_string(), aws),
        (
            format!("<html><body>{message}</body></html>"),
            HeaderMap::new(),
        ),
        (message.to_string(), HeaderMap::new()),
    ];
    // Status codes that are never about the account may carry any type at all.
    if code != 403 {
        bodies.push((anthropic("permission_error", message), HeaderMap::new()));
        bodies.push((gemini(code, "PERMISSION_DENIED", message), HeaderMap::new()));
    }
    bodies
}

/// In the `proptests` modules the README's `cargo test -p server --lib proptests` runs.
mod proptests {
    use super::*;

    proptest! {
        /// Whatever client text an upstream quotes into a request error, in any provider's
        /// shape, the account is untouched: no class, no rest, no block, no failover.
        #[test]
        fn quoted_client_text_changes_nothing(
            code in prop::sample::select(vec![400u16, 403, 404, 413, 422]),
            prefix in prop::sample::select(QUOTING.to_vec()),
            phrase in prop::option::of(prop::sample::select(PHRASES.to_vec())),
            before in ".{0,40}",
            after in ".{0,40}",
            close in prop::sample::select(vec!["", "'", "`", "'.", " is not supported"]),
        ) {
            let quoted = match phrase {
                Some(p) => format!("{before}{p}{after}"),
                None => format!("{before}{after}"),
            };
            let message = format!("{prefix}{quoted}{close}");
            for (body, headers) in quoted_bodies(code, &message) {
                let v = status(code, &headers, &body);
                prop_assert_eq!(&v, &Verdict::pass_through(), "{} {}", code, body);
            }
        }
    }
}
