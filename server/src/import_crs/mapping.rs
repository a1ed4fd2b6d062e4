//! From the original's records (§2, §4.1) to ours: keys with their limits, accounts with their
//! credentials opened by the original's scheme, groups. Whatever has no counterpart here is
//! said in a note, never silently dropped.

mod accounts;
mod keys;

use app::domain::AccountGroup;
use serde_json::Value;

use super::source::Fields;
use crate::timestamps::{format_time, parse_time};

pub use accounts::{account, account_label, Skip};
pub use keys::{key, key_label};

fn get<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name).map(|s| s.trim()).unwrap_or("")
}

fn truthy(v: &str) -> bool {
    v.eq_ignore_ascii_case("true") || v == "1"
}

fn number(v: &str) -> f64 {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .unwrap_or(0.0)
}

fn whole(v: &str) -> u64 {
    number(v).floor() as u64
}

fn small(v: &str) -> u32 {
    whole(v).min(u64::from(u32::MAX)) as u32
}

/// A JSON array of strings, a comma-separated list, or nothing.
fn list(v: &str) -> Vec<String> {
    if v.is_empty() || v == "null" {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(v) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .filter(|s| !s.trim().is_empty())
            .collect(),
        Ok(Value::String(s)) => list(&s),
        _ => v
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// An ISO time or epoch milliseconds, as our RFC 3339; `None` when empty or unreadable.
fn time(v: &str) -> Option<String> {
    if v.is_empty() || v == "null" {
        return None;
    }
    if let Some(t) = parse_time(v) {
        return Some(format_time(t));
    }
    v.parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(format_time)
}

/// Something the import could not bring over as it was.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Unmapped {
    /// What it concerns: `key <id> (<name>)`, `account <type> <id> (<name>)`, …
    pub item: String,
    pub reason: String,
}

/// An original group and its members (only those imported are kept).
pub fn group(
    f: &Fields,
    members: &[String],
    imported: &std::collections::HashSet<String>,
    notes: &mut Vec<Unmapped>,
) -> Option<AccountGroup> {
    let item = format!("group {} ({})", get(f, "id"), get(f, "name"));
    let platform = get(f, "platform");
    if get(f, "id").is_empty() {
        return None;
    }
    if !["claude", "openai", "gemini"].contains(&platform) {
        notes.push(Unmapped {
            item,
            reason: format!("{platform:?} groups have no counterpart here: skipped"),
        });
        return None;
    }
    let mut kept: Vec<String> = Vec::new();
    for m in members {
        if imported.contains(m) {
            kept.push(m.clone());
        } else {
            notes.push(Unmapped {
                item: item.clone(),
                reason: format!("member {m} was not imported: left out of the group"),
            });
        }
    }
    kept.sort();
    let created = time(get(f, "createdAt")).unwrap_or_else(|| format_time(chrono::Utc::now()));
    Some(AccountGroup {
        id: get(f, "id").to_string(),
        name: get(f, "name").to_string(),
        platform: platform.to_string(),
        description: get(f, "description").to_string(),
        members: kept,
        updated_at: time(get(f, "updatedAt")).unwrap_or_else(|| created.clone()),
        created_at: created,
    })
}
