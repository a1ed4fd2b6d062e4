//! OpenAI-compatible accounts (`openai-responses`): a base URL and a bearer key; the Responses
//! and Chat Completions paths are passed through.

use axum::http::HeaderMap;
use bytes::Bytes;

use crate::store::StoredAccount;

fn forwarded(name: &str) -> bool {
    matches!(
        name,
        "accept"
            | "content-type"
            | "user-agent"
            | "openai-beta"
            | "openai-organization"
            | "openai-project"
            | "session_id"
            | "version"
            | "originator"
    ) || name.starts_with("x-stainless-")
}

/// `<base>/v1/responses`: a base URL ending in `/v1` is not doubled.
pub fn url(api_url: &str, path: &str) -> String {
    let base = api_url.trim_end_matches('/');
    match (base.ends_with("/v1"), path.strip_prefix("/v1")) {
        (true, Some(rest)) => format!("{base}{rest}"),
        _ => format!("{base}{path}"),
    }
}

pub fn build(
    http: &reqwest::Client,
    account: &StoredAccount,
    key: &str,
    path: &str,
    client_headers: &HeaderMap,
    body: Bytes,
) -> reqwest::RequestBuilder {
    use reqwest::header::{HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
    let mut headers = reqwest::header::HeaderMap::with_capacity(8);
    for (name, value) in client_headers {
        if forwarded(name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if let Some(ua) = account
        .account
        .user_agent
        .as_deref()
        .and_then(|u| HeaderValue::from_str(u).ok())
    {
        headers.insert(USER_AGENT, ua);
    }
    if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {key}")) {
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    http.post(url(&account.account.api_url, path))
        .headers(headers)
        .body(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(
            super::url("https://api.openai.com", "/v1/responses"),
            "https://api.openai.com/v1/responses"
        );
        assert_eq!(
            super::url("https://x.test/v1/", "/v1/chat/completions"),
            "https://x.test/v1/chat/completions"
        );
    }
}
