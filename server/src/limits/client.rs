//! Client restrictions: a key may be limited to Claude Code, Gemini CLI or Codex CLI, recognised
//! by their user agents and the signals the original checks (behaviour reference §4.2).

use axum::http::HeaderMap;

/// Whether a request to `path` with these headers comes from one of `allowed`.
pub fn allowed(allowed: &[String], headers: &HeaderMap, path: &str, has_user_id: bool) -> bool {
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    allowed.iter().any(|client| match client.as_str() {
        "claude_code" => {
            let version_ok = ua
                .strip_prefix("claude-cli/")
                .and_then(|rest| rest.split([' ', '(']).next())
                .is_some_and(|v| {
                    v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok())
                });
            let messages = path.ends_with("/messages");
            version_ok
                && (!messages
                    || (header("x-app").is_some()
                        && header("anthropic-version").is_some()
                        && has_user_id))
        }
        "gemini_cli" => ua.starts_with("GeminiCLI/") && path.contains("/gemini/"),
        "codex_cli" => {
            ["codex_vscode/", "codex_cli_rs/", "codex_exec/"]
                .iter()
                .any(|p| ua.starts_with(p))
                && (path.contains("/openai/") || path.contains("/azure/"))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn claude_code_needs_its_signals() {
        let only = vec!["claude_code".to_string()];
        let cc = h(&[
            ("user-agent", "claude-cli/2.1.3 (external, cli)"),
            ("x-app", "cli"),
            ("anthropic-version", "2023-06-01"),
        ]);
        assert!(allowed(&only, &cc, "/v1/messages", true));
        assert!(
            !allowed(&only, &cc, "/v1/messages", false),
            "no metadata.user_id"
        );
        assert!(allowed(&only, &cc, "/v1/messages/count_tokens", false));
        let sdk = h(&[
            ("user-agent", "Anthropic/Python 0.40.0"),
            ("x-app", "cli"),
            ("anthropic-version", "2023-06-01"),
        ]);
        assert!(!allowed(&only, &sdk, "/v1/messages", true));
        let codex = h(&[("user-agent", "codex_cli_rs/0.50.0")]);
        assert!(allowed(
            &["codex_cli".into()],
            &codex,
            "/openai/responses",
            false
        ));
        assert!(!allowed(
            &["codex_cli".into()],
            &codex,
            "/v1/messages",
            false
        ));
        assert!(allowed(
            &["gemini_cli".into()],
            &h(&[("user-agent", "GeminiCLI/0.9.0")]),
            "/gemini/v1beta/models/x",
            false
        ));
    }
}
