//! Gemini API accounts (`gemini-api`): a base URL and an API key, sent as `x-goog-api-key` so
//! it never appears in a URL (or a log of one).

use axum::http::HeaderMap;
use bytes::Bytes;

use super::UpstreamError;
use crate::store::StoredAccount;

pub const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";

/// The methods the relay passes through.
pub const ACTIONS: [&str; 3] = ["generateContent", "streamGenerateContent", "countTokens"];

/// A Gemini model id that may go into an upstream URL: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`,
/// never `..`. The route checks it on the decoded path segment, so `%2F`, `%2e%2e`, `%23`,
/// `%3f` and the like never reach the upstream.
pub fn valid_model_id(model: &str) -> bool {
    let b = model.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && !model.contains("..")
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `<model>:<action>` with a valid model id and a known action.
pub fn valid_model_action(model_action: &str) -> bool {
    model_action
        .split_once(':')
        .is_some_and(|(m, a)| valid_model_id(m) && ACTIONS.contains(&a))
}

/// `<base>/v1beta/models/<model>:<action>`, keeping `alt=sse` (and only that) from the query.
pub fn url(api_url: &str, model_action: &str, query: Option<&str>) -> String {
    let base = if api_url.is_empty() {
        DEFAULT_BASE
    } else {
        api_url.trim_end_matches('/')
    };
    let base = base.strip_suffix("/v1beta").unwrap_or(base);
    let sse = query.is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
    format!(
        "{base}/v1beta/models/{model_action}{}",
        if sse { "?alt=sse" } else { "" }
    )
}

pub fn build(
    http: &reqwest::Client,
    account: &StoredAccount,
    key: &str,
    model_action: &str,
    query: Option<&str>,
    client_headers: &HeaderMap,
    body: Bytes,
) -> Result<reqwest::RequestBuilder, UpstreamError> {
    use reqwest::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_TYPE, USER_AGENT};
    let mut headers = reqwest::header::HeaderMap::with_capacity(4);
    if let Some(ua) = client_headers.get(USER_AGENT) {
        headers.insert(USER_AGENT, ua.clone());
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    // Chat Completions go to Gemini's OpenAI-compatible endpoint, with the key as a bearer.
    if model_action == "/v1/chat/completions" {
        let base = match account.account.api_url.trim_end_matches('/') {
            "" => DEFAULT_BASE,
            b => b,
        };
        let base = base.strip_suffix("/v1beta").unwrap_or(base);
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {key}")) {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        return Ok(http
            .post(format!("{base}/v1beta/openai/chat/completions"))
            .headers(headers)
            .body(body));
    }
    // The route validated it already; the URL is built from validated parts only.
    if !valid_model_action(model_action) {
        return Err(UpstreamError::BadRequest(
            "Invalid model or method in the request path".into(),
        ));
    }
    if let Ok(mut v) = HeaderValue::from_str(key) {
        v.set_sensitive(true);
        headers.insert("x-goog-api-key", v);
    }
    Ok(http
        .post(url(&account.account.api_url, model_action, query))
        .headers(headers)
        .body(body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(
            super::url("", "gemini-2.5-pro:streamGenerateContent", Some("alt=sse&key=cr_x")),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            super::url("http://m.test/v1beta/", "g:generateContent", None),
            "http://m.test/v1beta/models/g:generateContent"
        );
    }

    #[test]
    fn model_ids_and_actions() {
        use super::{valid_model_action, valid_model_id};
        for ok in ["gemini-2.5-pro", "gemini-1.5-flash-002", "gemma_3.1", "G"] {
            assert!(valid_model_id(ok), "{ok}");
        }
        for bad in [
            "",
            "../../v1beta/cachedContents#",
            "..",
            ".hidden",
            "-x",
            "a..b",
            "a/b",
            "a\\b",
            "a?b",
            "a#b",
            "a b",
            "a%2e",
            "gémini",
            &"g".repeat(129),
        ] {
            assert!(!valid_model_id(bad), "{bad:?}");
        }
        assert!(valid_model_action("gemini-2.5-pro:streamGenerateContent"));
        assert!(!valid_model_action("gemini-2.5-pro:generateContent#"));
        assert!(!valid_model_action("gemini-2.5-pro:explode"));
        assert!(!valid_model_action("gemini-2.5-pro"));
        assert!(!valid_model_action("a/b:generateContent"));
    }
}
