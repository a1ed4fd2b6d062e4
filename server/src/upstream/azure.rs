//! Azure OpenAI accounts: `<endpoint>/openai/deployments/<deployment>/<operation>?api-version=…`
//! (Responses: `<endpoint>/openai/responses?api-version=…`), the key in the `api-key` header.

use axum::http::HeaderMap;
use bytes::Bytes;

use crate::store::StoredAccount;

pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The Azure URL for an OpenAI path (`/v1/chat/completions`, `/v1/responses`, …).
pub fn url(account: &StoredAccount, openai_path: &str) -> String {
    let a = &account.account;
    let endpoint = a.api_url.trim_end_matches('/');
    let version = a
        .api_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_API_VERSION);
    let op = openai_path
        .trim_start_matches("/v1/")
        .trim_start_matches('/');
    if op == "responses" {
        return format!("{endpoint}/openai/responses?api-version={version}");
    }
    let deployment = a.deployment_name.as_deref().unwrap_or_default();
    format!("{endpoint}/openai/deployments/{deployment}/{op}?api-version={version}")
}

pub fn build(
    http: &reqwest::Client,
    account: &StoredAccount,
    key: &str,
    openai_path: &str,
    client_headers: &HeaderMap,
    body: Bytes,
) -> reqwest::RequestBuilder {
    use reqwest::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_TYPE, USER_AGENT};
    let mut headers = reqwest::header::HeaderMap::with_capacity(4);
    if let Some(ua) = client_headers.get(USER_AGENT) {
        headers.insert(USER_AGENT, ua.clone());
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if let Ok(mut v) = HeaderValue::from_str(key) {
        v.set_sensitive(true);
        headers.insert("api-key", v);
    }
    http.post(url(account, openai_path))
        .headers(headers)
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::Account;

    #[test]
    fn urls() {
        let a = StoredAccount {
            account: Account {
                api_url: "https://x.openai.azure.com/".into(),
                deployment_name: Some("gpt4o-prod".into()),
                api_version: Some("2025-04-01-preview".into()),
                ..Default::default()
            },
            secret: String::new(),
        };
        assert_eq!(
            url(&a, "/v1/chat/completions"),
            "https://x.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview"
        );
        assert_eq!(
            url(&a, "/v1/responses"),
            "https://x.openai.azure.com/openai/responses?api-version=2025-04-01-preview"
        );
    }
}
