//! The pages' key list: filtered by state, tag and search, sorted, one page at a time, with
//! usage and limits for the rows shown only.

use std::collections::HashMap;

use app::{
    backend::KeyScope,
    domain::{ApiKey, KeyPage, KeyQuery, KeyRow, KEYS_PER_PAGE},
};
use chrono::Utc;

use super::{key_report::limits_report, keys::in_scope, AdminError};
use crate::{
    auth::api_key::{format_time, parse_time},
    state::AppState,
    store::{buckets, StoredKey},
};

fn state_matches(k: &ApiKey, state: &str, now: chrono::DateTime<Utc>) -> bool {
    let expired = k
        .expires_at
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|t| t <= now);
    match state {
        "deleted" => k.is_deleted,
        "active" => !k.is_deleted && k.is_active && !k.owner_disabled && !expired,
        "disabled" => !k.is_deleted && (!k.is_active || k.owner_disabled),
        "expired" => !k.is_deleted && expired,
        _ => !k.is_deleted,
    }
}

/// Local users' names by id.
async fn usernames(state: &AppState) -> Result<HashMap<String, String>, AdminError> {
    Ok(crate::users::list(&state.store)
        .await?
        .into_iter()
        .map(|u| (u.user.id, u.user.username))
        .collect())
}

/// One page of the keys `scope` may see that match `q`.
pub async fn page(state: &AppState, scope: &KeyScope, q: &KeyQuery) -> Result<KeyPage, AdminError> {
    let now = Utc::now();
    let all = state.all_keys().await?;
    let scoped: Vec<&StoredKey> = all.iter().filter(|k| in_scope(&k.key, scope)).collect();
    let mut tags: Vec<String> = scoped
        .iter()
        .flat_map(|k| k.key.tags.iter().cloned())
        .collect();
    tags.sort();
    tags.dedup();
    let needle = q.search.trim().to_lowercase();
    let mut rows: Vec<&ApiKey> = scoped
        .into_iter()
        .map(|k| &k.key)
        .filter(|k| state_matches(k, &q.state, now))
        .filter(|k| q.tag.is_empty() || k.tags.contains(&q.tag))
        .filter(|k| {
            needle.is_empty()
                || k.name.to_lowercase().contains(&needle)
                || k.key_preview.to_lowercase().contains(&needle)
                || k.id.contains(&needle)
                || k.tags.iter().any(|t| t.to_lowercase().contains(&needle))
        })
        .collect();
    let last_used = state.store.keys_last_used().await?;
    match q.sort.as_str() {
        "name" => rows.sort_by_key(|k| k.name.to_lowercase()),
        "last_used" => rows.sort_by_key(|k| std::cmp::Reverse(last_used.get(&k.id).copied())),
        "cost" => {
            let names: Vec<String> = rows.iter().map(|k| buckets::key_total(&k.id)).collect();
            let totals = state.store.usage(&names).await?;
            let mut paired: Vec<(&ApiKey, u64)> = rows
                .into_iter()
                .zip(totals)
                .map(|(k, t)| (k, t.cost_nanos))
                .collect();
            paired.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
            rows = paired.into_iter().map(|(k, _)| k).collect();
        }
        _ => rows.sort_by(|a, b| b.created_at.cmp(&a.created_at)),
    }
    let matching = rows.len();
    let pages = matching.div_ceil(KEYS_PER_PAGE).max(1);
    let page = (q.page.max(1) as usize).min(pages);
    let shown: Vec<ApiKey> = rows
        .into_iter()
        .skip((page - 1) * KEYS_PER_PAGE)
        .take(KEYS_PER_PAGE)
        .cloned()
        .collect();
    // Usage and limits only for the rows on this page.
    let names: Vec<String> = shown.iter().map(|k| buckets::key_total(&k.id)).collect();
    let totals = state.store.usage(&names).await?;
    let owners = if shown.iter().any(|k| k.user_id.is_some()) {
        usernames(state).await?
    } else {
        HashMap::new()
    };
    let mut out = Vec::with_capacity(shown.len());
    for (k, total) in shown.into_iter().zip(totals) {
        let report = limits_report(state, &k).await?;
        out.push(KeyRow {
            last_used_at: last_used
                .get(&k.id)
                .and_then(|ms| chrono::DateTime::from_timestamp_millis(*ms))
                .map(format_time),
            owner: k.user_id.as_ref().and_then(|u| owners.get(u).cloned()),
            disabled_by_admin: k.disabled_by_admin && !k.is_active,
            is_active: k.is_active && !k.owner_disabled,
            limits: super::key_report::limit_bars(&report),
            id: k.id,
            name: k.name,
            key_preview: k.key_preview,
            created_at: k.created_at,
            expires_at: k.expires_at,
            is_deleted: k.is_deleted,
            tags: k.tags,
            total,
        });
    }
    Ok(KeyPage {
        rows: out,
        matching: matching as u64,
        page: page as u32,
        pages: pages as u32,
        tags,
    })
}
