//! The sticky-session key of a request (behaviour reference §3.3): the session Claude Code
//! names in `metadata.user_id`, else a hash of the prompt-cached part of the conversation.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The session id inside `metadata.user_id`: the old `user_<hex>_account_<uuid>_session_<uuid>`
/// form or the JSON form `{"device_id":…,"account_uuid":…,"session_id":…}`.
pub fn from_user_id(user_id: &str) -> Option<String> {
    // Claude Code's ids are ~150 bytes; a longer one is not parsed (no session from it).
    if user_id.len() > MAX_USER_ID {
        return None;
    }
    let user_id = user_id.trim();
    if user_id.starts_with('{') {
        let v: Value = serde_json::from_str(user_id).ok()?;
        return v
            .get("session_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
    }
    let (_, session) = user_id.rsplit_once("_session_")?;
    (!session.is_empty()).then(|| session.to_string())
}

/// `metadata.user_id` longer than this names no session.
pub const MAX_USER_ID: usize = 4096;

/// A request's session as the sticky mapping knows it: always a hash of what the client sent
/// (32 hex chars), never its text, so every store key has the same small length. Hashed once,
/// where the session is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session(String);

impl Session {
    /// A session the client names (`metadata.user_id`, a `session_id` header or field).
    pub fn named(text: &str) -> Self {
        Session(hash(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The store key of a session's sticky mapping: scoped to the service and the API key (two
/// users with the same prompt are not one session).
pub fn sticky_key(service: &str, key_id: &str, session: &Session) -> String {
    format!("{service}:{key_id}:{}", session.0)
}

fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..16])
}

fn has_cache_control(v: &Value) -> bool {
    v.get("cache_control").is_some()
}

/// Text of a `system` or message `content` value (a string or a list of blocks).
fn text_of(content: &Value, only_cached: bool) -> String {
    match content {
        Value::String(s) if !only_cached => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| !only_cached || has_cache_control(b))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The fallback when no session id is given: a hash of the cache-controlled system parts
/// (plus the first message when any message is cache-controlled), else of the whole system
/// text, else of the first message.
pub fn from_content(system: Option<&Value>, messages: Option<&Value>) -> Option<Session> {
    let messages = messages.and_then(Value::as_array);
    let first_text = || {
        messages
            .and_then(|m| m.first())
            .and_then(|m| m.get("content"))
            .map(|c| text_of(c, false))
            .filter(|t| !t.is_empty())
    };
    let cached_system = system.map(|s| text_of(s, true)).unwrap_or_default();
    let any_cached_message = messages.is_some_and(|ms| {
        ms.iter().any(|m| {
            has_cache_control(m)
                || m.get("content")
                    .and_then(Value::as_array)
                    .is_some_and(|blocks| blocks.iter().any(has_cache_control))
        })
    });
    if !cached_system.is_empty() || any_cached_message {
        let mut text = cached_system;
        if any_cached_message {
            text.push_str(&first_text().unwrap_or_default());
        }
        if !text.is_empty() {
            return Some(Session::named(&text));
        }
    }
    if let Some(s) = system.map(|s| text_of(s, false)).filter(|t| !t.is_empty()) {
        return Some(Session::named(&s));
    }
    first_text().map(|t| Session::named(&t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_id_forms() {
        assert_eq!(
            from_user_id("user_abc123_account_11111111-2222_session_9f8e7d6c-aaaa").as_deref(),
            Some("9f8e7d6c-aaaa")
        );
        assert_eq!(
            from_user_id(r#"{"device_id":"d","account_uuid":"","session_id":"sess-42"}"#)
                .as_deref(),
            Some("sess-42")
        );
        assert_eq!(from_user_id("user_abc_account_x"), None);
        assert_eq!(from_user_id(r#"{"device_id":"d"}"#), None);
        assert_eq!(from_user_id("{broken"), None);
    }

    #[test]
    fn sticky_keys_hold_no_client_text() {
        let named = |s: &str| Session::named(s);
        let key = sticky_key("claude", "key-1", &named("sess-42"));
        assert_eq!(key, format!("claude:key-1:{}", hash("sess-42")));
        assert!(!key.contains("sess-42"));
        let huge = "x".repeat(64 * 1024);
        assert_eq!(
            sticky_key("claude", "key-1", &named(&huge)).len(),
            key.len()
        );
        assert_ne!(sticky_key("claude", "key-2", &named("sess-42")), key);
        assert_ne!(sticky_key("openai", "key-1", &named("sess-42")), key);
        // Too long a user_id names no session.
        let long = format!("user_a_account_b_session_{}", "s".repeat(MAX_USER_ID));
        assert_eq!(from_user_id(&long), None);
    }

    #[test]
    fn content_fallbacks() {
        let cached_system = json!([{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]);
        let msgs =
            json!([{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]);
        let a = from_content(Some(&cached_system), Some(&msgs)).unwrap().0;
        assert_eq!(a, hash("B"), "only the cached system part");
        assert_eq!(a.len(), 32);
        // A later message changes nothing: the same conversation keeps its key.
        let more =
            json!([{"role": "user", "content": "first"}, {"role": "user", "content": "third"}]);
        assert_eq!(
            from_content(Some(&cached_system), Some(&more)).unwrap().0,
            a
        );

        let cached_msg = json!([{"role": "user", "content": [{"type": "text", "text": "first", "cache_control": {"type": "ephemeral"}}]}]);
        assert_eq!(
            from_content(Some(&cached_system), Some(&cached_msg))
                .unwrap()
                .0,
            hash("Bfirst")
        );
        assert_eq!(
            from_content(Some(&json!("plain system")), Some(&msgs))
                .unwrap()
                .0,
            hash("plain system")
        );
        assert_eq!(from_content(None, Some(&msgs)).unwrap().0, hash("first"));
        assert_eq!(from_content(None, Some(&json!([]))), None);
    }
}

/// Properties of the `metadata.user_id` parser and the content hash over arbitrary input.
/// `PROPTEST_CASES=100000 cargo test -p server --lib proptests` runs them longer.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #![proptest_config(crate::relay::test_strategies::config(256))]

        /// Any string: no panic, and a session found is a non-empty part of the input.
        #[test]
        fn any_user_id(s in prop_oneof![
            ".{0,64}",
            "(user_[0-9a-f]{0,8}_account_.{0,8}_session_.{0,12}){1,2}",
            "\\{.{0,40}",
        ]) {
            if let Some(session) = from_user_id(&s) {
                prop_assert!(!session.is_empty());
                if !s.trim().starts_with('{') {
                    prop_assert!(s.contains(&session));
                }
            }
        }

        /// The legacy form gives back exactly its session part.
        #[test]
        fn legacy_form(user in "[0-9a-f]{1,64}", account in "[0-9a-f-]{0,36}", session in "[A-Za-z0-9-]{1,36}") {
            let id = format!("user_{user}_account_{account}_session_{session}");
            prop_assert_eq!(from_user_id(&id), Some(session.clone()));
            prop_assert_eq!(from_user_id(&format!("  {id}\n")), Some(session));
        }

        /// The JSON form gives back its session_id, whatever it holds.
        #[test]
        fn json_form(session in ".{1,40}", device in ".{0,10}", other in ".{0,10}") {
            let id = json!({"device_id": device, "account_uuid": other, "session_id": session}).to_string();
            prop_assert_eq!(from_user_id(&id), Some(session));
            let no_session = json!({"device_id": device, "session_id": 7}).to_string();
            prop_assert_eq!(from_user_id(&no_session), None);
        }

        /// The content fallback never panics and always gives a 32-hex-char key when it gives one.
        #[test]
        fn content_hash(system in crate::relay::test_strategies::json(), messages in crate::relay::test_strategies::json()) {
            for (s, m) in [(Some(&system), Some(&messages)), (None, Some(&messages)), (Some(&system), None)] {
                if let Some(k) = from_content(s, m) {
                    let k = k.as_str();
                    prop_assert_eq!(k.len(), 32);
                    prop_assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
                }
            }
        }
    }
}
