//! Azure OpenAI accounts: `<endpoint>/openai/deployments/<deployment>/<operation>?api-version=…`
//! (Responses: `<endpoint>/openai/responses?api-version=…`), the key in the `api-key` header.
//!
//! The deployment and the API version go into the URL, so both are validated when an account
//! is created or updated and again here: a stored value that fails (an import, say) fails the
//! attempt instead of building a URL. The deployment is the account's; a client's (from the
//! SDK's `/openai/deployments/{deployment}/…` path, validated by the route) is used only when
//! the account names none.

use axum::http::HeaderMap;
use bytes::Bytes;

use super::UpstreamError;
use crate::store::StoredAccount;

pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// An Azure deployment name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, never `..`.
pub fn valid_deployment(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && !name.contains("..")
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// An API version (`2024-10-21`, `2025-04-01-preview`, `preview`, `v1`): letters, digits,
/// `.` and `-`, at most 32.
pub fn valid_api_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 32
        && version
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
}

/// The upstream path of a call whose client named a deployment (the SDK's path shape): the
/// deployment travels with the OpenAI path to `url`, which uses it only if the account has
/// no deployment of its own.
pub fn with_client_deployment(deployment: &str, openai_path: &str) -> String {
    format!("/deployments/{deployment}{openai_path}")
}

/// The Azure URL for an OpenAI path (`/v1/chat/completions`, `/v1/responses`, …, or one made by
/// `with_client_deployment`).
pub fn url(account: &StoredAccount, openai_path: &str) -> Result<String, UpstreamError> {
    let a = &account.account;
    let (client_deployment, openai_path) = match openai_path.strip_prefix("/deployments/") {
        Some(rest) => match rest.split_once('/') {
            Some((d, p)) => (Some(d), &openai_path[openai_path.len() - p.len() - 1..]),
            None => (None, openai_path),
        },
        None => (None, openai_path),
    };
    let endpoint = a.api_url.trim_end_matches('/');
    let version = a
        .api_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_API_VERSION);
    if !valid_api_version(version) {
        return Err(UpstreamError::NoAccount(
            "The Azure account's API version is invalid".into(),
        ));
    }
    let op = openai_path
        .trim_start_matches("/v1/")
        .trim_start_matches('/');
    if !matches!(op, "chat/completions" | "responses") {
        return Err(UpstreamError::NotFound(format!(
            "Azure accounts do not serve /{op}"
        )));
    }
    if op == "responses" {
        return Ok(format!("{endpoint}/openai/responses?api-version={version}"));
    }
    let deployment = match a.deployment_name.as_deref().filter(|d| !d.is_empty()) {
        Some(d) if valid_deployment(d) => d,
        Some(_) => {
            return Err(UpstreamError::NoAccount(
                "The Azure account's deployment name is invalid".into(),
            ))
        }
        None => match client_deployment {
            Some(d) if valid_deployment(d) => d,
            Some(_) => {
                return Err(UpstreamError::BadRequest(
                    "Invalid deployment name in the request path".into(),
                ))
            }
            None => {
                return Err(UpstreamError::NoAccount(
                    "The Azure account has no deployment name".into(),
                ))
            }
        },
    };
    Ok(format!(
        "{endpoint}/openai/deployments/{deployment}/{op}?api-version={version}"
    ))
}

pub fn build(
    http: &reqwest::Client,
    account: &StoredAccount,
    key: &str,
    openai_path: &str,
    client_headers: &HeaderMap,
    body: Bytes,
) -> Result<reqwest::RequestBuilder, UpstreamError> {
    use reqwest::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_TYPE, USER_AGENT};
    let url = url(account, openai_path)?;
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
    Ok(http.post(url).headers(headers).body(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::Account;

    fn account(deployment: Option<&str>, version: Option<&str>) -> StoredAccount {
        StoredAccount {
            account: Account {
                api_url: "https://x.openai.azure.com/".into(),
                deployment_name: deployment.map(str::to_string),
                api_version: version.map(str::to_string),
                ..Default::default()
            },
            secret: String::new(),
        }
    }

    #[test]
    fn urls() {
        let a = account(Some("gpt4o-prod"), Some("2025-04-01-preview"));
        assert_eq!(
            url(&a, "/v1/chat/completions").unwrap(),
            "https://x.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview"
        );
        assert_eq!(
            url(&a, "/v1/responses").unwrap(),
            "https://x.openai.azure.com/openai/responses?api-version=2025-04-01-preview"
        );
        // The account's deployment wins over the client's; the client's serves an account
        // without one.
        let path = with_client_deployment("client-dep", "/v1/chat/completions");
        assert_eq!(
            url(&a, &path).unwrap(),
            "https://x.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview"
        );
        assert_eq!(
            url(&account(None, None), &path).unwrap(),
            "https://x.openai.azure.com/openai/deployments/client-dep/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn only_validated_parts_reach_the_url() {
        for bad in ["../../x", "a/b", "a#b", "a?b=1", "a b", "..", "-x", "dép"] {
            assert!(!valid_deployment(bad), "{bad}");
            assert!(url(&account(Some(bad), None), "/v1/chat/completions").is_err());
            let path = with_client_deployment(bad, "/v1/chat/completions");
            assert!(url(&account(None, None), &path).is_err(), "{bad}");
        }
        for bad in ["2024-10-21&x=1", "2024#", "a/b", "x y"] {
            assert!(!valid_api_version(bad), "{bad}");
            assert!(url(&account(Some("d"), Some(bad)), "/v1/chat/completions").is_err());
        }
        assert!(valid_api_version("2025-04-01-preview") && valid_api_version("v1"));
        assert!(url(&account(Some("d"), None), "/v1/embeddings").is_err());
    }
}
