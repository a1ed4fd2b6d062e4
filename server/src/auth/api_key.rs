//! Client API keys: where they are read from, what a well-formed one looks like, and the one
//! lookup that authenticates a request.

use app::domain::ExpirationMode;
use axum::http::HeaderMap;
use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::{
    auth::key_cache::KeyCache,
    crypto::Crypto,
    store::{DynStore, StoreError, StoredKey},
};

/// What authenticating a key reads: the store, the key hashing (`Crypto`), the key format and
/// the copies kept in memory (`AppState::key_lookup` hands them out).
#[derive(Clone, Copy)]
pub struct KeyLookup<'a> {
    pub store: &'a DynStore,
    pub crypto: &'a Crypto,
    pub copies: &'a KeyCache,
    /// `API_KEY_PREFIX`.
    pub prefix: &'a str,
}

/// Why a request's key is refused; the relay answers each in its protocol's shape.
#[derive(Debug)]
pub enum KeyRefusal {
    Missing,
    Malformed,
    NotFound,
    Disabled,
    Expired,
    Store(StoreError),
}

impl From<StoreError> for KeyRefusal {
    fn from(e: StoreError) -> Self {
        KeyRefusal::Store(e)
    }
}

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

// The stored time format lives in `timestamps`; these names are kept for the callers that
// still reach it through here.
pub use crate::timestamps::{format_time, parse_time};

/// Authenticates a request: one store round trip (plus one write the first time an
/// activation-mode key is used; a key imported under the original's hash scheme costs one
/// more lookup).
pub async fn authenticate(
    keys: &KeyLookup<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<StoredKey, KeyRefusal> {
    lookup(keys, headers, query, false).await
}

/// Authenticates a request that will be relayed: from an in-memory copy when there is one —
/// no store round trip; the request's first store step checks the copy is current, and the
/// request runs again (`routes::key_first`, `key_cache::run_again`) if not — else as
/// [`authenticate`], keeping a copy.
pub async fn authenticate_relay(
    keys: &KeyLookup<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<StoredKey, KeyRefusal> {
    lookup(keys, headers, query, true).await
}

async fn lookup(
    keys: &KeyLookup<'_>,
    headers: &HeaderMap,
    query: Option<&str>,
    from_memory: bool,
) -> Result<StoredKey, KeyRefusal> {
    let raw = extract(headers, query).ok_or(KeyRefusal::Missing)?;
    if !well_formed(&raw, keys.prefix) {
        return Err(KeyRefusal::Malformed);
    }
    let hash = keys.crypto.hash_api_key(&raw);
    if from_memory {
        // Only a copy that lets the request in is trusted: a refusal (the key may have been
        // enabled since) and a first use (it activates the key) are decided on a fresh read.
        if let Some(copy) = keys
            .copies
            .get(&hash)
            .filter(|c| !pending_activation(&c.key) && refusal(&c.key, Utc::now()).is_none())
        {
            return Ok(copy);
        }
    }
    let t = std::time::Instant::now();
    let (mut found, version) = keys.store.key_by_hash_versioned(&hash).await?;
    crate::telemetry::store_round_trip(keys.store.engine(), "authenticate", t.elapsed());
    if let Some(k) = &found {
        keys.copies.put(&hash, k, version);
    }
    if found.is_none() {
        // Keys imported under an original deployment's ENCRYPTION_KEY (its salt list is
        // cached: with none, a miss costs at most one document read every few seconds).
        found = super::legacy_keys::find(keys.store, keys.crypto, &raw).await?;
        // Kept under this lookup's hash, so a migrated team's keys also come from memory; the
        // version was read before this lookup, so a write in between only makes it look older.
        if let Some(k) = &found {
            keys.copies.put(&hash, k, version);
        }
    }
    usable(keys.store, found.ok_or(KeyRefusal::NotFound)?).await
}

fn pending_activation(key: &app::domain::ApiKey) -> bool {
    key.expiration_mode == ExpirationMode::Activation && !key.is_activated
}

/// Why the key may not be used now, if it may not: deleted, disabled or expired.
fn refusal(key: &app::domain::ApiKey, now: DateTime<Utc>) -> Option<KeyRefusal> {
    if key.is_deleted {
        return Some(KeyRefusal::NotFound);
    }
    if !key.is_active || key.owner_disabled {
        return Some(KeyRefusal::Disabled);
    }
    match key.expires_at.as_deref().and_then(parse_time) {
        Some(exp) if exp <= now => Some(KeyRefusal::Expired),
        _ => None,
    }
}

/// The key may be used now (see [`refusal`]); activated on its first use — by a
/// compare-and-set on the record as it is now, so a concurrent disable is never undone, and
/// decided again on that record.
async fn usable(store: &DynStore, stored: StoredKey) -> Result<StoredKey, KeyRefusal> {
    let now = Utc::now();
    if let Some(e) = refusal(&stored.key, now) {
        return Err(e);
    }
    if !pending_activation(&stored.key) {
        return Ok(stored);
    }
    let mut refused = None;
    let activated = crate::store::modify_key(&**store, &stored.key.id, |k| {
        refused = refusal(&k.key, now);
        if refused.is_some() || !pending_activation(&k.key) {
            return false;
        }
        let days = i64::from(k.key.activation_days.max(1));
        k.key.is_activated = true;
        k.key.activated_at = Some(format_time(now));
        k.key.expires_at = Some(format_time(now + ChronoDuration::days(days)));
        true
    })
    .await?;
    if let Some(e) = refused {
        return Err(e);
    }
    activated.ok_or(KeyRefusal::NotFound)
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

/// Properties of the key extractor and the format check over arbitrary headers and queries.
/// `PROPTEST_CASES=100000 cargo test -p server --lib proptests` runs them longer.
#[cfg(test)]
mod proptests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    const NAMES: &[&str] = &[
        "x-api-key",
        "x-goog-api-key",
        "authorization",
        "api-key",
        "cookie",
        "x-other",
    ];

    /// Header values as a client could send them: visible ASCII, spaces, tabs, obs-text.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                8 => 0x20u8..0x7f,
                1 => Just(b'\t'),
                1 => 0x80u8..=0xff,
            ],
            0..80,
        )
    }

    proptest! {
        #![proptest_config(crate::relay::test_strategies::config(256))]

        /// Any headers and query: no panic, and a key found is trimmed and non-empty.
        #[test]
        fn arbitrary_headers_and_query(
            pairs in proptest::collection::vec((proptest::sample::select(NAMES), value()), 0..6),
            query in proptest::option::of(".{0,80}"),
        ) {
            let mut h = HeaderMap::new();
            for (name, v) in &pairs {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(HeaderName::from_static(name), v);
                }
            }
            if let Some(k) = extract(&h, query.as_deref()) {
                prop_assert!(!k.is_empty());
                let from_query = query.as_deref().is_some_and(|q| q.contains(&format!("key={k}")));
                prop_assert!(from_query || k.trim() == k, "{:?}", k);
            }
        }

        /// A key in any supported place comes back exactly, `x-api-key` first.
        #[test]
        fn key_round_trips(key in "[!-~]{1,80}", pad in "[ \t]{0,3}", place in 0usize..5, other in "[!-~]{1,20}") {
            let mut h = HeaderMap::new();
            let padded = format!("{pad}{key}{pad}");
            let mut query = None;
            match place {
                0 => { h.insert("x-api-key", HeaderValue::from_str(&padded).unwrap()); }
                1 => { h.insert("x-goog-api-key", HeaderValue::from_str(&padded).unwrap()); }
                2 => { h.insert("authorization", HeaderValue::from_str(&format!("Bearer {padded}")).unwrap()); }
                3 => { h.insert("api-key", HeaderValue::from_str(&padded).unwrap()); }
                _ => {
                    prop_assume!(!key.contains('&') && !key.contains('='));
                    query = Some(format!("alt=sse&key={key}&x=1"));
                }
            }
            prop_assert_eq!(extract(&h, query.as_deref()), Some(key.clone()));
            // x-api-key wins over anything else.
            h.insert("x-api-key", HeaderValue::from_str(&other).unwrap());
            prop_assert_eq!(extract(&h, query.as_deref()), Some(other));
        }

        /// Only `<prefix>` + 64 hex characters is well formed, whatever the input.
        #[test]
        fn format_check(s in ".{0,80}", hex in "[0-9a-fA-F]{64}", n in 0usize..64) {
            let ok = s.strip_prefix("cr_").is_some_and(|r| r.len() == 64 && r.bytes().all(|b| b.is_ascii_hexdigit()));
            prop_assert_eq!(well_formed(&s, "cr_"), ok);
            let (full, short, long) = (format!("cr_{hex}"), format!("cr_{}", &hex[..n]), format!("cr_{hex}0"));
            prop_assert!(well_formed(&full, "cr_"));
            prop_assert!(!well_formed(&short, "cr_"));
            prop_assert!(!well_formed(&long, "cr_"));
        }
    }
}
