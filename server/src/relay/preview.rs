//! The optional, redacted preview of a request body kept with its record (off unless
//! `RECORD_BODY_PREVIEW_CHARS` > 0): the last user message's text, shortened, with anything
//! that looks like a credential masked.

use serde_json::Value;

/// Prefixes of credentials that users paste into prompts.
const SECRET_PREFIXES: [&str; 8] = [
    "cr_", "sk-", "AKIA", "ghp_", "gho_", "xoxb-", "xoxp-", "AIza",
];

/// The preview of `body`, or `None` when off or when nothing readable is there.
pub fn of(body: &[u8], max_chars: usize) -> Option<String> {
    if max_chars == 0 {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = last_user_text(&v)?;
    let redacted = redact(&text);
    let mut out: String = redacted.chars().take(max_chars).collect();
    if redacted.chars().count() > max_chars {
        out.push('…');
    }
    Some(out)
}

/// Anthropic and OpenAI `messages`, OpenAI Responses `input`, Gemini `contents`.
fn last_user_text(v: &Value) -> Option<String> {
    let list = v
        .get("messages")
        .or_else(|| v.get("contents"))
        .or_else(|| v.get("input"))?;
    if let Value::String(s) = list {
        return Some(s.clone());
    }
    let last = list.as_array()?.iter().rev().find(|m| {
        m.get("role")
            .and_then(Value::as_str)
            .is_none_or(|r| r == "user")
    })?;
    let content = last
        .get("content")
        .or_else(|| last.get("parts"))
        .unwrap_or(last);
    Some(flatten(content))
}

fn flatten(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        other => other
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

/// Masks every word that starts like a credential, or is a long unbroken token.
pub fn redact(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|w| {
            let word = w.trim_end();
            let looks_secret = SECRET_PREFIXES.iter().any(|p| word.starts_with(p))
                || (word.len() >= 32
                    && word
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')));
            if looks_secret {
                format!("[redacted]{}", &w[word.len()..])
            } else {
                w.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_the_last_user_text_redacted_and_short() {
        let body = serde_json::json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "use key cr_0123456789abcdef and sk-ant-api03-xyz please"}]}
        ]})
        .to_string();
        let p = of(body.as_bytes(), 200).unwrap();
        assert_eq!(p, "use key [redacted] and [redacted] please");
        assert_eq!(of(body.as_bytes(), 0), None);
        let short = of(body.as_bytes(), 7).unwrap();
        assert_eq!(short, "use key…");
        let token = "a".repeat(40);
        assert_eq!(redact(&format!("x {token} y")), "x [redacted] y");
        let gemini =
            serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]});
        assert_eq!(of(gemini.to_string().as_bytes(), 50).unwrap(), "hi there");
        assert_eq!(of(b"not json", 50), None);
    }
}
