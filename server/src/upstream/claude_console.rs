//! Claude Console accounts: a base URL and an Anthropic-style key.

use axum::http::HeaderMap;
use bytes::Bytes;

use crate::store::StoredAccount;

/// Sent when the client does not say which API version it speaks.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
const DEFAULT_USER_AGENT: &str = "claude-cli/1.0.69 (external, cli)";

/// Client headers that may travel upstream; everything else (cookies, CDN and proxy headers,
/// the client's own credentials) stays here.
fn forwarded(name: &str) -> bool {
    matches!(
        name,
        "anthropic-version"
            | "anthropic-beta"
            | "anthropic-dangerous-direct-browser-access"
            | "accept"
            | "accept-language"
            | "content-type"
            | "user-agent"
            | "x-app"
    ) || name.starts_with("x-stainless-")
}

/// The upstream URL for an endpoint such as `/v1/messages`. A base URL that already ends with
/// the Messages path (some operators paste the full endpoint) is trimmed back to its base.
pub fn url(api_url: &str, endpoint: &str, beta: bool) -> String {
    let base = api_url.trim_end_matches('/');
    let base = base.strip_suffix("/v1/messages").unwrap_or(base);
    let base = base.strip_suffix("/v1").unwrap_or(base);
    if beta {
        format!("{base}{endpoint}?beta=true")
    } else {
        format!("{base}{endpoint}")
    }
}

/// The client's allowed headers plus the ones every Anthropic upstream gets; `user_agent`
/// overrides the client's.
pub fn forwarded_headers(
    client_headers: &HeaderMap,
    user_agent: Option<&str>,
) -> reqwest::header::HeaderMap {
    use reqwest::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_TYPE, USER_AGENT};
    let mut headers = reqwest::header::HeaderMap::with_capacity(client_headers.len() + 3);
    for (name, value) in client_headers {
        if forwarded(name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    if !headers.contains_key("anthropic-version") {
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
        );
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Compressed answers break byte-for-byte SSE forwarding (original issue #1030).
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    match user_agent
        .filter(|u| !u.is_empty())
        .and_then(|u| HeaderValue::from_str(u).ok())
    {
        Some(ua) => {
            headers.insert(USER_AGENT, ua);
        }
        None if !headers.contains_key(USER_AGENT) => {
            headers.insert(USER_AGENT, HeaderValue::from_static(DEFAULT_USER_AGENT));
        }
        None => {}
    }
    headers
}

pub fn build(
    http: &reqwest::Client,
    account: &StoredAccount,
    credential: &str,
    endpoint: &str,
    beta: bool,
    client_headers: &HeaderMap,
    body: Bytes,
) -> reqwest::RequestBuilder {
    let mut headers = forwarded_headers(client_headers, account.account.user_agent.as_deref());
    let auth = if credential.starts_with("sk-ant-") {
        ("x-api-key", credential.to_string())
    } else {
        ("authorization", format!("Bearer {credential}"))
    };
    if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&auth.1) {
        v.set_sensitive(true);
        headers.insert(auth.0, v);
    }
    http.post(url(&account.account.api_url, endpoint, beta))
        .headers(headers)
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::Account;

    #[test]
    fn url_shapes() {
        assert_eq!(
            url("https://x.test/", "/v1/messages", false),
            "https://x.test/v1/messages"
        );
        assert_eq!(
            url("https://x.test/v1/messages", "/v1/messages", true),
            "https://x.test/v1/messages?beta=true"
        );
        assert_eq!(
            url("https://x.test/api/v1", "/v1/messages/count_tokens", false),
            "https://x.test/api/v1/messages/count_tokens"
        );
    }

    #[test]
    fn auth_and_header_allow_list() {
        let http = reqwest::Client::new();
        let account = StoredAccount {
            account: Account {
                api_url: "http://up.test".into(),
                ..Default::default()
            },
            secret: String::new(),
        };
        let mut client = HeaderMap::new();
        client.insert("x-api-key", "cr_clientkey".parse().unwrap());
        client.insert("cookie", "a=b".parse().unwrap());
        client.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        client.insert("anthropic-beta", "tools-1".parse().unwrap());
        client.insert("x-stainless-os", "Linux".parse().unwrap());
        let req = build(
            &http,
            &account,
            "sk-ant-upstream",
            "/v1/messages",
            false,
            &client,
            Bytes::new(),
        )
        .build()
        .unwrap();
        let h = req.headers();
        assert_eq!(h["x-api-key"], "sk-ant-upstream");
        assert!(h.get("authorization").is_none());
        assert!(h.get("cookie").is_none());
        assert!(h.get("x-forwarded-for").is_none());
        assert_eq!(h["anthropic-beta"], "tools-1");
        assert_eq!(h["x-stainless-os"], "Linux");
        assert_eq!(h["anthropic-version"], DEFAULT_ANTHROPIC_VERSION);
        assert_eq!(h["accept-encoding"], "identity");

        let req = build(
            &http,
            &account,
            "other-key",
            "/v1/messages",
            false,
            &client,
            Bytes::new(),
        )
        .build()
        .unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer other-key");
        assert!(
            req.headers().get("x-api-key").is_none(),
            "the client key never goes upstream"
        );
    }
}
