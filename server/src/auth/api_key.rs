//! Client API keys: where they are read from, what a well-formed one looks like, and the one
//! lookup that authenticates a request.

use app::domain::ExpirationMode;
use axum::http::HeaderMap;
use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::{relay::error::RelayError, state::AppState, store::StoredKey};

/// The first non-empty key among `x-api-key`, `x-goog-api-key`, `Authorization` (with or
/// without `Bearer `), `api-key`, and the `key` query parameter (Gemini clients).
pub fn extract(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(k) = header("x-api-key").or_else(|| header("x-goog-api-key")) {
        return Some(k.to_string());
    }
    if let Some(auth) = header("authorization") {
        let k = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .unwrap_or(auth)
            .trim();
        if !k.is_empty() {
            return Some(k.to_string());
        }
    }
    if let Some(k) = header("api-key") {
        return Some(k.to_string());
    }
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, v)| *k == "key" && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// `<prefix>` followed by exactly 64 hex characters.
pub fn well_formed(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A new key: prefix + 32 random bytes in hex. Shown once; only its hash is stored.
pub fn generate(prefix: &str) -> String {
    format!("{prefix}{}", crate::crypto::random_hex(32))
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Authenticates a request: one store round trip (plus one write the first time an
/// activation-mode key is used).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<StoredKey, RelayError> {
    let raw = extract(headers, query).ok_or(RelayError::MissingKey)?;
    if !well_formed(&raw, &state.config.api_key_prefix) {
        return Err(RelayError::MalformedKey);
    }
    let hash = state.crypto.hash_api_key(&raw);
    let t = std::time::Instant::now();
    let found = state.store.key_by_hash(&hash).await?;
    crate::telemetry::store_round_trip(state.store.engine(), "authenticate", t.elapsed());
    let mut stored = found.ok_or(RelayError::KeyNotFound)?;
    let key = &stored.key;
    if key.is_deleted {
        return Err(RelayError::KeyNotFound);
    }
    if !key.is_active || key.owner_disabled {
        return Err(RelayError::KeyDisabled);
    }
    let now = Utc::now();
    if key.expiration_mode == ExpirationMode::Activation && !key.is_activated {
        let days = i64::from(key.activation_days.max(1));
        stored.key.is_activated = true;
        stored.key.activated_at = Some(format_time(now));
        stored.key.expires_at = Some(format_time(now + ChronoDuration::days(days)));
        state.store.update_key(&stored).await?;
    }
    if let Some(exp) = stored.key.expires_at.as_deref().and_then(parse_time) {
        if exp <= now {
            return Err(RelayError::KeyExpired);
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn key_sources_in_order() {
        assert_eq!(
            extract(&headers(&[("x-api-key", "a")]), None).as_deref(),
            Some("a")
        );
        assert_eq!(
            extract(&headers(&[("authorization", "Bearer b")]), None).as_deref(),
            Some("b")
        );
        assert_eq!(
            extract(&headers(&[("authorization", "c")]), None).as_deref(),
            Some("c")
        );
        assert_eq!(
            extract(&headers(&[("x-goog-api-key", "d")]), None).as_deref(),
            Some("d")
        );
        assert_eq!(
            extract(&headers(&[("api-key", "e")]), None).as_deref(),
            Some("e")
        );
        assert_eq!(
            extract(&HeaderMap::new(), Some("alt=sse&key=f")).as_deref(),
            Some("f")
        );
        assert_eq!(
            extract(
                &headers(&[("x-api-key", "first"), ("authorization", "Bearer second")]),
                None
            )
            .as_deref(),
            Some("first")
        );
        assert_eq!(extract(&headers(&[("x-api-key", "  ")]), None), None);
        assert_eq!(extract(&HeaderMap::new(), None), None);
    }

    #[test]
    fn format_is_prefix_and_64_hex() {
        let k = generate("cr_");
        assert!(well_formed(&k, "cr_"));
        assert_eq!(k.len(), 67);
        assert!(!well_formed(&k[..66], "cr_"));
        assert!(!well_formed(&format!("sk_{}", &k[3..]), "cr_"));
        assert!(!well_formed(&format!("cr_{}", "g".repeat(64)), "cr_"));
    }
}
