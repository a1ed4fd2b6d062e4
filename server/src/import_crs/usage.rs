//! The original's usage history (§5.2) as our buckets: per key total, day and month, per key and
//! model, per model day and month, per account total and day, and the global total and days
//! (summed over the imported keys). The cost of our buckets is the real cost (the original's
//! `usage:cost:real:*` when present, else its rated cost, which equals it at rate 1); the keys'
//! limit counters get the rated spending the original charged against its limits (total,
//! today, this week's Claude models), so a key near its limit stays near it.
//!
//! Re-runs add only what grew since the last run: the totals imported are remembered in a
//! document per source, and each bucket receives the difference.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use app::domain::{ApiKey, UsageCounters};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::source::{Fields, Snapshot, UsageKey};
use crate::{
    limits::usd_to_nanos,
    store::{buckets, Periods, UsageImport},
};

const DAY: u64 = 86_400;

/// What earlier runs imported from one source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Remembered {
    pub buckets: BTreeMap<String, UsageCounters>,
    /// `<key id>|<limit counter>` → nano-dollars.
    pub spent: BTreeMap<String, u64>,
}

/// The import of one run.
#[derive(Debug, Default)]
pub struct UsagePlan {
    /// Only what is new since `previous`.
    pub import: UsageImport,
    /// What the source holds now (to remember after writing).
    pub remembered: Remembered,
    /// The imported keys' all-time totals as the source holds them.
    pub key_totals: UsageCounters,
}

fn whole(v: &str) -> u64 {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .map(|n| n.round() as u64)
        .unwrap_or(0)
}

/// A usage hash's counters (`total*` fields for all-time hashes, plain ones otherwise).
/// Cache writes are split by TTL where the original recorded it; the rest count as 5-minute.
pub fn counters(f: &Fields) -> UsageCounters {
    let n = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|k| f.get(*k))
            .map(|v| whole(v))
            .unwrap_or(0)
    };
    let create = n(["totalCacheCreateTokens", "cacheCreateTokens"]);
    let e5 = n(["totalEphemeral5mTokens", "ephemeral5mTokens"]);
    let e1 = n(["totalEphemeral1hTokens", "ephemeral1hTokens"]);
    let (c5, c1) = if create == 0 {
        (e5, e1)
    } else {
        let c1 = e1.min(create);
        (create - c1, c1)
    };
    UsageCounters {
        requests: n(["totalRequests", "requests"]),
        input_tokens: n(["totalInputTokens", "inputTokens"]),
        output_tokens: n(["totalOutputTokens", "outputTokens"]),
        cache_create_5m_tokens: c5,
        cache_create_1h_tokens: c1,
        cache_read_tokens: n(["totalCacheReadTokens", "cacheReadTokens"]),
        cost_nanos: f
            .get("realCostMicro")
            .map(|v| whole(v).saturating_mul(1_000))
            .unwrap_or(0),
    }
}

fn sub(a: &UsageCounters, b: &UsageCounters) -> UsageCounters {
    UsageCounters {
        requests: a.requests.saturating_sub(b.requests),
        input_tokens: a.input_tokens.saturating_sub(b.input_tokens),
        output_tokens: a.output_tokens.saturating_sub(b.output_tokens),
        cache_create_5m_tokens: a
            .cache_create_5m_tokens
            .saturating_sub(b.cache_create_5m_tokens),
        cache_create_1h_tokens: a
            .cache_create_1h_tokens
            .saturating_sub(b.cache_create_1h_tokens),
        cache_read_tokens: a.cache_read_tokens.saturating_sub(b.cache_read_tokens),
        cost_nanos: a.cost_nanos.saturating_sub(b.cost_nanos),
    }
}

fn max(a: &UsageCounters, b: &UsageCounters) -> UsageCounters {
    UsageCounters {
        requests: a.requests.max(b.requests),
        input_tokens: a.input_tokens.max(b.input_tokens),
        output_tokens: a.output_tokens.max(b.output_tokens),
        cache_create_5m_tokens: a.cache_create_5m_tokens.max(b.cache_create_5m_tokens),
        cache_create_1h_tokens: a.cache_create_1h_tokens.max(b.cache_create_1h_tokens),
        cache_read_tokens: a.cache_read_tokens.max(b.cache_read_tokens),
        cost_nanos: a.cost_nanos.max(b.cost_nanos),
    }
}

/// Builds the run's import from the source's usage of the imported keys and accounts.
pub fn plan(
    snap: &Snapshot,
    keys: &[ApiKey],
    account_ids: &HashSet<String>,
    now: DateTime<Utc>,
    tz_hours: i32,
    previous: &Remembered,
) -> UsagePlan {
    let key_ids: HashSet<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    let cost = |u: UsageKey| snap.costs.get(&u).copied().map(usd_to_nanos);
    let days = |n: u64| Some(Duration::from_secs(n * DAY));
    let mut absolute: HashMap<String, (UsageCounters, Option<Duration>)> = HashMap::new();
    let mut add = |name: String, c: &UsageCounters, ttl: Option<Duration>| {
        absolute
            .entry(name)
            .or_insert((UsageCounters::default(), ttl))
            .0
            .add(c);
    };
    let mut out = UsagePlan::default();
    for (u, f) in &snap.usage {
        let owner = u.owner().to_string();
        let is_account = matches!(u, UsageKey::AccountTotal(_) | UsageKey::AccountDay(..));
        if (is_account && !account_ids.contains(&owner))
            || (!is_account && !key_ids.contains(owner.as_str()))
        {
            continue;
        }
        let mut c = counters(f);
        match u {
            UsageKey::KeyTotal(k) => {
                c.cost_nanos = cost(UsageKey::CostTotal {
                    key: k.clone(),
                    real: true,
                })
                .or_else(|| {
                    cost(UsageKey::CostTotal {
                        key: k.clone(),
                        real: false,
                    })
                })
                .unwrap_or(0);
                out.key_totals.add(&c);
                add(buckets::key_total(k), &c, None);
                add(buckets::global_total(), &c, None);
            }
            UsageKey::KeyDay(k, day) => {
                c.cost_nanos = cost(UsageKey::CostDay {
                    key: k.clone(),
                    day: day.clone(),
                    real: true,
                })
                .or_else(|| {
                    cost(UsageKey::CostDay {
                        key: k.clone(),
                        day: day.clone(),
                        real: false,
                    })
                })
                .unwrap_or(0);
                add(buckets::key_day(k, day), &c, days(32));
                add(buckets::global_day(day), &c, days(32));
            }
            UsageKey::KeyMonth(k, month) => {
                c.cost_nanos = cost(UsageKey::CostMonth(k.clone(), month.clone())).unwrap_or(0);
                add(buckets::key_month(k, month), &c, days(400));
            }
            UsageKey::KeyModelTotal(k, model) => {
                add(buckets::key_model_total(k, model), &c, None);
                out.import
                    .key_models
                    .entry(k.clone())
                    .or_default()
                    .insert(model.clone());
            }
            UsageKey::KeyModelDay(k, model, day) => {
                add(buckets::key_model_day(k, model, day), &c, days(32));
                add(buckets::model_day(model, day), &c, days(32));
                out.import
                    .models_by_day
                    .entry(day.clone())
                    .or_default()
                    .insert(model.clone());
            }
            UsageKey::KeyModelMonth(_, model, month) => {
                add(buckets::model_month(model, month), &c, days(400));
            }
            UsageKey::AccountTotal(a) => add(buckets::account_total(a), &c, None),
            UsageKey::AccountDay(a, day) => add(buckets::account_day(a, day), &c, days(32)),
            UsageKey::CostTotal { .. }
            | UsageKey::CostDay { .. }
            | UsageKey::CostMonth(..)
            | UsageKey::OpusWeek(..) => {}
        }
    }
    for (name, (c, ttl)) in absolute {
        let prev = previous.buckets.get(&name).copied().unwrap_or_default();
        let delta = sub(&c, &prev);
        if delta != UsageCounters::default() {
            out.import.buckets.insert(name.clone(), (delta, ttl));
        }
        out.remembered.buckets.insert(name, max(&c, &prev));
    }

    // The limit counters, as `limits::plan` names them.
    let today = Periods::at(now, tz_hours).day;
    for k in keys {
        let rated = |real| {
            cost(UsageKey::CostTotal {
                key: k.id.clone(),
                real,
            })
        };
        let mut spent: Vec<(String, Option<Duration>, u64)> = Vec::new();
        if let Some(t) = rated(false).or_else(|| rated(true)) {
            spent.push(("t".into(), None, t));
        }
        if let Some(d) = cost(UsageKey::CostDay {
            key: k.id.clone(),
            day: today.clone(),
            real: false,
        }) {
            spent.push((format!("d:{today}"), days(2), d));
        }
        let week = crate::limits::week_start(
            now,
            tz_hours,
            k.weekly_reset_day.max(1),
            k.weekly_reset_hour,
        );
        let week_id = week
            .with_timezone(
                &chrono::FixedOffset::east_opt(tz_hours * 3600)
                    .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset")),
            )
            .format("%Y-%m-%dT%H")
            .to_string();
        if let Some(w) = cost(UsageKey::OpusWeek(k.id.clone(), week_id.clone())) {
            spent.push((format!("wo:{week_id}"), days(8), w));
        }
        for (counter, ttl, nanos) in spent {
            let id = format!("{}|{counter}", k.id);
            let prev = previous.spent.get(&id).copied().unwrap_or(0);
            if nanos > prev {
                out.import
                    .spent
                    .push((k.id.clone(), counter, ttl, nanos - prev));
            }
            out.remembered.spent.insert(id, nanos.max(prev));
        }
    }
    // What earlier runs remembered and this source no longer holds (expired days) stays.
    for (name, c) in &previous.buckets {
        out.remembered.buckets.entry(name.clone()).or_insert(*c);
    }
    for (id, n) in &previous.spent {
        out.remembered.spent.entry(id.clone()).or_insert(*n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_writes_split_by_ttl_and_totals_read_total_fields() {
        let f: Fields = [
            ("totalRequests", "3"),
            ("totalInputTokens", "100"),
            ("totalOutputTokens", "50"),
            ("totalCacheCreateTokens", "30"),
            ("totalEphemeral1hTokens", "10"),
            ("totalCacheReadTokens", "7"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = counters(&f);
        assert_eq!(
            (
                c.requests,
                c.input_tokens,
                c.output_tokens,
                c.cache_read_tokens
            ),
            (3, 100, 50, 7)
        );
        assert_eq!(
            (c.cache_create_5m_tokens, c.cache_create_1h_tokens),
            (20, 10)
        );
    }

    #[test]
    fn a_rerun_adds_only_the_difference() {
        let key = ApiKey {
            id: "k".into(),
            ..Default::default()
        };
        let mut snap = Snapshot::default();
        let fields = |r: &str| -> Fields {
            [("totalRequests", r), ("totalInputTokens", "10")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        snap.usage
            .insert(UsageKey::KeyTotal("k".into()), fields("2"));
        snap.costs.insert(
            UsageKey::CostTotal {
                key: "k".into(),
                real: false,
            },
            1.5,
        );
        let ids = HashSet::new();
        let now = Utc::now();
        let first = plan(
            &snap,
            std::slice::from_ref(&key),
            &ids,
            now,
            8,
            &Remembered::default(),
        );
        let (c, _) = first.import.buckets[&buckets::key_total("k")];
        assert_eq!((c.requests, c.cost_nanos), (2, 1_500_000_000));
        assert_eq!(
            first.import.spent,
            vec![("k".into(), "t".into(), None, 1_500_000_000)]
        );
        // Nothing new: nothing to add.
        let again = plan(
            &snap,
            std::slice::from_ref(&key),
            &ids,
            now,
            8,
            &first.remembered,
        );
        assert!(again.import.buckets.is_empty() && again.import.spent.is_empty());
        assert_eq!(again.remembered, first.remembered);
        // Grown: only the growth.
        snap.usage
            .insert(UsageKey::KeyTotal("k".into()), fields("5"));
        let grown = plan(
            &snap,
            std::slice::from_ref(&key),
            &ids,
            now,
            8,
            &first.remembered,
        );
        let (c, _) = grown.import.buckets[&buckets::key_total("k")];
        assert_eq!((c.requests, c.input_tokens, c.cost_nanos), (3, 0, 0));
    }
}
